"""The Singer output of a fixed sandbox run, compared line by line with a golden file.

Refactorings must not change what the tap writes (apart from `time_extracted`). After a
deliberate change of output: `python scripts/singer_output.py --write`, and say why.
"""

from __future__ import annotations

from scripts.singer_output import GOLDEN, singer_output


def test_singer_output_of_a_fixed_run_is_unchanged() -> None:
    expected = GOLDEN.read_text().splitlines()
    actual = singer_output().splitlines()
    assert len(actual) == len(expected)
    for number, (got, want) in enumerate(zip(actual, expected, strict=True), start=1):
        assert got == want, f"line {number} of {GOLDEN.name} differs"
