"""The README's settings table is `--about --format=markdown`."""

from __future__ import annotations

from scripts.settings_table import README, readme_with_table, settings_table


def test_readme_settings_table_matches_about() -> None:
    readme = README.read_text()
    assert readme_with_table(readme, settings_table()) == readme, (
        "README settings table is stale: run python scripts/settings_table.py --write"
    )
