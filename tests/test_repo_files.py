"""Repository files that cannot run here: GitHub workflows and dependabot, schema-checked."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_is_valid_and_pins_actions_by_sha(path: object) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    text = REPO.joinpath(".github", "workflows", path.name).read_text()  # type: ignore[attr-defined]
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


def test_dependabot_config_is_valid() -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.dependabot",
            str(REPO / ".github" / "dependabot.yml"),
        ],
        check=True,
        capture_output=True,
    )
