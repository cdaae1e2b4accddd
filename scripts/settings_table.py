"""Print the README's settings table, from `tap-clevertap --about --format=markdown`.

`python scripts/settings_table.py --write` updates README.md in place; the test suite fails
when the README and `--about` drift apart.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def settings_table() -> str:
    about = subprocess.run(
        [sys.executable, "-m", "tap_clevertap", "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = about.split("## Settings", 1)[1].strip().splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def readme_with_table(readme: str, table: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


if __name__ == "__main__":
    table = settings_table()
    if "--write" in sys.argv:
        README.write_text(readme_with_table(README.read_text(), table))
    else:
        print(table)
