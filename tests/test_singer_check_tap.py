"""singer-tools' `singer-check-tap` validates the tap's output, first run and rerun with state.

singer-tools pins old jsonschema/attrs, so it lives in its own venv (`make test` builds it);
it reads the tap's output from stdin, which also avoids its crash when a tap exits quickly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tap_clevertap.sandbox import SandboxServer
from tests.helpers import capture_output, ecosystem_tool, make_config


def check(tap_args: list[str], check_tap: str) -> tuple[str, list[dict[str, object]]]:
    tap = subprocess.run(
        [sys.executable, "-m", "tap_clevertap", *tap_args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    checked = subprocess.run(
        [check_tap], input=tap.stdout, capture_output=True, text=True, timeout=120, check=False
    )
    capture_output(tap.stdout + tap.stderr + checked.stdout + checked.stderr)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    messages = [json.loads(line) for line in tap.stdout.splitlines()]
    return checked.stdout, messages


def test_singer_check_tap_accepts_first_run_and_rerun(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    check_tap = ecosystem_tool("SINGER_CHECK_TAP_BIN")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(make_config(sandbox)))
    report, messages = check(["--config", str(config)], check_tap)
    assert "The output is valid." in report
    assert "2 schema messages" in report

    state = tmp_path / "state.json"
    state.write_text(json.dumps([m["value"] for m in messages if m["type"] == "STATE"][-1]))
    report, _ = check(["--config", str(config), "--state", str(state)], check_tap)
    assert "The output is valid." in report
