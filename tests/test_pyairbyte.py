"""PyAirbyte runs `source-clevertap` as a local executable against the sandbox.

PyAirbyte (`airbyte` 0.71) lives in a virtual environment of its own (`make test` installs
it as `.venv-airbyte`; its pins clash with singer-sdk's) and runs offline here only with
`AIRBYTE_OFFLINE_MODE=1`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.sandbox import SandboxServer
from tests.helpers import api_requests, capture_output, ecosystem_tool, make_config, run_tap

RUNNER = Path(__file__).parent / "pyairbyte" / "run_source.py"
CONFIG = {"event_names": ["App Launched", "Charged"], "end_date": "2024-01-03"}


def source_executable() -> str:
    path = shutil.which("source-clevertap", path=str(Path(sys.executable).parent))
    assert path, "source-clevertap is not installed beside this interpreter"
    return path


def pyairbyte(python: str, config: dict[str, Any], work: Path, action: str) -> dict[str, Any]:
    for folder in (work, work / "tmp", work / "logs"):
        folder.mkdir(exist_ok=True)
    (work / "config.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "AIRBYTE_OFFLINE_MODE": "1",
        "DO_NOT_TRACK": "1",
        "AIRBYTE_LOGGING_ROOT": str(work / "logs"),
        "AIRBYTE_TEMP_DIR": str(work / "tmp"),
        "HOME": str(work),
    }
    result = subprocess.run(
        [python, str(RUNNER), source_executable(), str(work / "config.json"), str(work), action],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    capture_output(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads((work / "result.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def python() -> str:
    return ecosystem_tool("PYAIRBYTE_PYTHON")


def test_pyairbyte_checks_the_connection(
    sandbox: SandboxServer, tmp_path: Path, python: str
) -> None:
    assert pyairbyte(python, make_config(sandbox, **CONFIG), tmp_path / "ok", "check") == {
        "check": "succeeded"
    }
    failed = pyairbyte(
        python,
        make_config(sandbox, **CONFIG, passcode="not-the-passcode"),
        tmp_path / "no",
        "check",
    )
    assert failed["check"] == "failed"
    assert "refused the credentials" in failed["message"]


def test_pyairbyte_reads_every_event_once_then_only_the_lookback(
    sandbox: SandboxServer, tmp_path: Path, python: str
) -> None:
    config = make_config(sandbox, **CONFIG)
    singer = run_tap(config)
    sandbox.reset()
    work = tmp_path / "read"
    first = pyairbyte(python, config, work, "read")
    for stream in ("app_launched", "charged"):
        assert first["keys"][stream] == sorted(r["event_id"] for r in singer.records(stream))
    assert len(first["keys"]["charged"]) > 50
    # The same cache: PyAirbyte hands the saved state back; only the lookback day is read.
    sandbox.reset()
    second = pyairbyte(python, config, work, "read")
    assert sorted((p["event_name"], p["day_from"]) for p in api_requests(sandbox, "POST")) == [
        ("App Launched", 20240103),
        ("Charged", 20240103),
    ]
    assert second["keys"] == first["keys"]  # upserted on the primary key: nothing doubled


def test_pyairbyte_reads_the_campaign_family(
    sandbox: SandboxServer, tmp_path: Path, python: str
) -> None:
    recent = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=30)).isoformat()
    config = make_config(
        sandbox,
        event_names=["Charged"],
        start_date=recent,
        end_date=recent,
        include_campaign_streams=True,
        campaign_lookahead_days=10,
    )
    singer = run_tap(config)
    keys = {
        "charged": "event_id",
        "campaigns": "id",
        "campaign_reports": "id",
        "message_reports": "message_id",
        "content_blocks": "id",
        "category_groups": "key",
    }
    landed = pyairbyte(python, config, tmp_path / "family", "read")["keys"]
    assert set(landed) == set(keys)
    for stream, key in keys.items():
        assert landed[stream] == sorted(r[key] for r in singer.records(stream)), stream
        assert landed[stream], stream
