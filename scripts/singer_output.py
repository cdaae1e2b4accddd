"""The Singer output of one fixed run against the sandbox, without `time_extracted`.

A refactoring must not change what the tap writes. This runs `python -m tap_clevertap` (the
real command line) against a seeded in-process sandbox with a fixed config, state and a
refused cursor, and prints every stdout line with `time_extracted` removed.

    python scripts/singer_output.py --write   # update tests/golden/singer_output.jsonl
    python scripts/singer_output.py           # print it

`tests/test_singer_output.py` fails when the output and the golden file differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tap_clevertap.sandbox import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_PASSCODE,
    Fault,
    SandboxData,
    SandboxServer,
    SandboxSettings,
)

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "singer_output.jsonl"


def singer_output() -> str:
    """The normalised stdout of the fixed run, one message per line."""
    with (
        SandboxServer(SandboxData(events_per_day=20), SandboxSettings()) as server,
        tempfile.TemporaryDirectory() as work,
    ):
        # A cursor refused once (the second page of one window): that window is read again
        # and its first page's records come twice.
        server.faults.append(
            Fault(
                "fail_code",
                code=3,
                error="Incorrect Usage",
                method="GET",
                event_name="App Launched",
                day=20240103,
                after=1,
            )
        )
        config = {
            "account_id": DEFAULT_ACCOUNT_ID,
            "passcode": DEFAULT_PASSCODE,
            "api_url": server.url,
            "event_names": ["App Launched", "Charged", "Añadir al carrito"],
            "start_date": "2024-01-01",
            "end_date": "2024-01-04",
            "batch_size": 7,
            "include_app_fields": True,
            "window_days": 2,
            "retry_wait_seconds": 0.001,
        }
        state = {"bookmarks": {"charged": {"window_to": 20240102}}}
        config_path = Path(work) / "config.json"
        state_path = Path(work) / "state.json"
        config_path.write_text(json.dumps(config))
        state_path.write_text(json.dumps(state))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tap_clevertap",
                "--config",
                str(config_path),
                "--state",
                str(state_path),
            ],
            capture_output=True,
            check=True,
        ).stdout
    lines = []
    for line in out.decode().splitlines():
        message = json.loads(line)
        message.pop("time_extracted", None)
        lines.append(json.dumps(message, ensure_ascii=False, sort_keys=True))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = singer_output()
    if "--write" in sys.argv:
        GOLDEN.write_text(text)
    else:
        sys.stdout.write(text)
