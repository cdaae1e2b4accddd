"""What the tests share: the tap run in process (`run_tap`) or as a command (`spawn`,
`run_cli`), the sandbox's expected data, and the assertions that compare the two.

Fixtures and hooks are in conftest.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.canonical import canonical_json
from tap_clevertap.sandbox import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_PASSCODE,
    SandboxServer,
)
from tap_clevertap.tap import TapClevertap

ADDED_FIELDS = ("event_name", "event_time", "event_id")
REPO = Path(__file__).resolve().parent.parent


def ecosystem_tool(env_name: str) -> str:
    """Path of a tool `make test` installs in its own venv (Meltano, singer-check-tap)."""
    path = os.environ.get(env_name)
    if path and Path(path).exists():
        return path
    if os.environ.get("REQUIRE_ECOSYSTEM"):
        pytest.fail(f"{env_name} is not set to an installed tool: run `make test`")
    pytest.skip(f"{env_name} not set: `make test` installs it")


# Everything the tap printed in this test session (stdout, logs, errors), and every passcode
# it was given: at the end of the session no passcode may appear in any of it.
CAPTURED: list[str] = []
PASSCODES: set[str] = {DEFAULT_PASSCODE}


def capture_output(text: str) -> None:
    CAPTURED.append(text)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


WEEK = (dt.date(2024, 1, 1), dt.date(2024, 1, 7))


@dataclass
class Spawned:
    """The tap run as a command (`python -m tap_clevertap`), its stderr in a file."""

    proc: subprocess.Popen[str]
    log: Path

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def spawn(
    config: dict[str, Any],
    work: Path,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
) -> Spawned:
    """Start the tap with `config` (and `state`, `catalog`), written to files in `work`."""
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    args = [sys.executable, "-m", "tap_clevertap", "--config", str(config_path)]
    for option, content in (("state", state), ("catalog", catalog)):
        if content is not None:
            path = work / f"{option}.json"
            path.write_text(json.dumps(content))
            args += [f"--{option}", str(path)]
    # stderr to a file: a pipe nobody reads would fill up with logs and block the tap.
    log = work / f"stderr-{len(list(work.iterdir()))}.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
    return Spawned(proc, log)


def run_cli(
    config: dict[str, Any], work: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`tap-clevertap --config ... ARGS` to the end; its output is captured for the leak check."""
    path = work / "config.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "tap_clevertap", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    capture_output(result.stdout + result.stderr)
    return result


def make_config(server: SandboxServer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "account_id": DEFAULT_ACCOUNT_ID,
        "passcode": DEFAULT_PASSCODE,
        "api_url": server.url,
        "event_names": ["App Launched", "Charged"],
        "start_date": WEEK[0].isoformat(),
        "end_date": WEEK[1].isoformat(),
        "batch_size": 25,
        # Tiny waits: tests never sleep for real.
        "retry_wait_seconds": 0.001,
        "throttle_wait_seconds": 0.001,
        "export_poll_seconds": 0.001,
    }
    config.update(overrides)
    if isinstance(config.get("passcode"), str) and len(config["passcode"]) > 3:
        PASSCODES.add(config["passcode"])
    return config


@dataclass
class TapRun:
    messages: list[dict[str, Any]]

    def records(self, stream: str | None = None) -> list[dict[str, Any]]:
        return [
            m["record"]
            for m in self.messages
            if m["type"] == "RECORD" and (stream is None or m["stream"] == stream)
        ]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict[str, Any]:
        return self.states[-1]


def run_tap(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    sink: list[dict[str, Any]] | None = None,
    *,
    sync: Callable[[TapClevertap], None] = TapClevertap.sync_all,
    text_stdout: bool = False,
) -> TapRun:
    """Run the tap in this process (`sync`: all of it) and parse what it wrote to stdout
    (into `sink` too, which keeps the messages when the run fails).

    Stdout is a text layer over bytes, as a process's is, so RECORD lines take the tap's
    byte path; `text_stdout` gives a plain text stream instead (a program that replaced
    stdout), for which the tap falls back to writing text.
    """
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    raw = io.BytesIO()
    out: io.TextIOBase = (
        io.StringIO() if text_stdout else io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    )
    messages = sink if sink is not None else []
    logs = _Collect()
    root = logging.getLogger()
    root.addHandler(logs)
    try:
        with redirect_stdout(out):
            sync(TapClevertap(config=config, state=state, catalog=catalog))
    except Exception as exc:
        logs.lines.append(f"{exc!r} {exc}")
        raise
    finally:
        root.removeHandler(logs)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        out.flush()
        text = out.getvalue() if isinstance(out, io.StringIO) else raw.getvalue().decode()
        capture_output(text + "\n".join(logs.lines))
        messages.extend(json.loads(line) for line in text.splitlines() if line)
    return TapRun(messages)


def select_only(config: dict[str, Any], streams: set[str]) -> dict[str, Any]:
    """The tap's catalog for `config` with only `streams` selected."""
    catalog = TapClevertap(config=config).catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def raw_view(record: dict[str, Any]) -> dict[str, Any]:
    """A tap record as CleverTap sent it: without the fields the tap adds."""
    return {k: v for k, v in record.items() if k not in ADDED_FIELDS}


def content_multiset(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(canonical_json(r) for r in rows)


def expected_rows(
    server: SandboxServer,
    event_name: str,
    first: dt.date = WEEK[0],
    last: dt.date = WEEK[1],
    **flags: bool,
) -> list[dict[str, Any]]:
    return server.data.window(event_name, first, last, **flags)


THREE_STREAMS = ["App Launched", "Charged", "Product Viewed"]


def assert_all_events(
    sandbox: SandboxServer,
    records: list[dict[str, Any]],
    names: list[str] = THREE_STREAMS,
    last: dt.date = WEEK[1],
) -> None:
    """Every event of `names` from the week's start to `last`, each once (by content), with
    a distinct id."""
    expected = [row for name in names for row in expected_rows(sandbox, name, last=last)]
    assert content_multiset([raw_view(r) for r in records]) == content_multiset(expected)
    assert len({r["event_id"] for r in records}) == len(expected)


def api_requests(server: SandboxServer, method: str | None = None) -> list[dict[str, Any]]:
    return [r for r in server.requests if method is None or r["method"] == method]
