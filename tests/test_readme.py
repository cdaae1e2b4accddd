"""Files generated from `--about`: the README settings table and the Hub definition."""

from __future__ import annotations

from scripts.settings_table import README, readme_with_table, settings_table


def test_readme_settings_table_matches_about() -> None:
    readme = README.read_text()
    assert readme_with_table(readme, settings_table()) == readme, (
        "README settings table is stale: run python scripts/settings_table.py --write"
    )


def test_hub_definition_matches_about() -> None:
    from scripts.hub_definition import DEFINITION, render  # noqa: PLC0415

    assert DEFINITION.read_text() == render(), (
        "plugins/extractors/tap-clevertap.yml is stale: "
        "run python scripts/hub_definition.py --write"
    )
