"""The spool of pages read ahead: bounded, private, removed on exit, never read by another run."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.canonical import canonical_json
from tap_clevertap.sandbox import SandboxServer
from tap_clevertap.spool import Spool, SpoolBudget, remove_stale_directories
from tests.helpers import (
    THREE_STREAMS,
    assert_all_events,
    capture_output,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    run_tap,
    spawn,
)


def never() -> bool:
    return False


def always() -> bool:
    return True


@pytest.mark.unit
def test_pages_go_to_memory_then_files_then_wait(tmp_path: Path) -> None:
    spool = Spool(SpoolBudget(memory_bytes=10, disk_bytes=10, directory=str(tmp_path)))
    in_memory = spool.put(b"a" * 6, needed_now=never, cancelled=never)
    on_disk = spool.put(b"b" * 6, needed_now=never, cancelled=never)
    assert in_memory is not None
    assert on_disk is not None
    assert in_memory.path is None
    assert on_disk.path is not None
    assert on_disk.path.parent.name.startswith(f"tap-clevertap-{os.getpid()}-")
    assert on_disk.path.parent.stat().st_mode & 0o777 == 0o700
    # Full: a page the writer waits for is handed over beyond the budget; others wait.
    handed = spool.put(b"c" * 6, needed_now=always, cancelled=never)
    assert handed is not None
    assert not handed.counted
    waiting: list[Any] = []
    thread = threading.Thread(
        target=lambda: waiting.append(spool.put(b"d" * 6, needed_now=never, cancelled=never))
    )
    thread.start()
    time.sleep(0.2)
    assert not waiting  # paused, not failed, not dropped
    assert spool.take(in_memory) == b"a" * 6
    thread.join(5)
    assert waiting[0] is not None
    assert spool.take(waiting[0]) == b"d" * 6
    path = on_disk.path
    assert spool.take(on_disk) == b"b" * 6
    assert not path.exists()
    assert spool.memory_used == spool.disk_used == 0
    directory = spool.directory
    assert directory is not None
    spool.close()
    assert not directory.exists()


@pytest.mark.unit
def test_a_failed_file_write_keeps_the_page_and_is_reported(tmp_path: Path) -> None:
    spool = Spool(SpoolBudget(memory_bytes=1, disk_bytes=100, directory=str(tmp_path / "missing")))
    page = spool.put(b"page", needed_now=never, cancelled=never)
    assert page is not None
    assert isinstance(spool.failure, OSError)
    assert spool.take(page) == b"page"
    spool.close()


@pytest.mark.unit
def test_only_directories_of_runs_that_are_gone_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / "tap-clevertap-1-dead"
    live = tmp_path / "tap-clevertap-2-live"
    young = tmp_path / "tap-clevertap-3-young"
    for directory in (dead, live, young):
        directory.mkdir()
        (directory / "lock").touch()
        (directory / "page-0").write_bytes(b"x")
    old = time.time() - 3600
    for directory in (dead, live):
        os.utime(directory, (old, old))
    fd = os.open(live / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a run still going (this process stands in for it)
    try:
        assert remove_stale_directories(tmp_path) == [dead]
    finally:
        os.close(fd)
    assert live.exists()
    assert young.exists()


def spool_budgets_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, int]]:
    """(memory used, memory budget, disk used, disk budget) after every page put."""
    seen: list[tuple[int, int, int, int]] = []
    put = Spool.put

    def recording(self: Spool, data: bytes, **kwargs: Any) -> Any:
        page = put(self, data, **kwargs)
        seen.append((self.memory_used, self.memory_bytes, self.disk_used, self.disk_bytes))
        return page

    monkeypatch.setattr(Spool, "put", recording)
    return seen


def test_a_tiny_spool_holds_reading_ahead_within_its_bounds(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = spool_budgets_seen(monkeypatch)
    sandbox.settings.page_delay = 0.002
    config = make_config(
        sandbox,
        event_names=THREE_STREAMS,
        batch_size=5,
        spool_memory_bytes=8_000,
        spool_disk_bytes=20_000,
        spool_dir=str(tmp_path),
    )
    run = run_tap(config)
    assert_all_events(sandbox, run.records())
    assert len(seen) > 100
    assert all(
        memory <= memory_max and disk <= disk_max for memory, memory_max, disk, disk_max in seen
    )
    assert max(disk for _, _, disk, _ in seen) > 0  # files were used
    assert not list(tmp_path.iterdir())  # and removed at the end


def test_a_spool_that_cannot_write_turns_reading_ahead_off_with_one_warning(
    sandbox: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(sandbox, event_names=THREE_STREAMS, batch_size=5)
    alone = run_tap(config | {"max_concurrent_requests": 1}).records()
    sandbox.settings.page_delay = 0.002
    broken = config | {"spool_memory_bytes": 1000, "spool_dir": str(tmp_path / "not-there")}
    records = run_tap(broken).records()
    assert Counter(map(canonical_json, records)) == Counter(map(canonical_json, alone))
    warnings = [r for r in caplog.records if "could not be written to the spool" in r.message]
    assert len(warnings) == 1
    assert "reading ahead is off for the rest of the run" in warnings[0].message


def _spool_config(sandbox: SandboxServer, spool_dir: Path) -> dict[str, Any]:
    return make_config(
        sandbox,
        event_names=THREE_STREAMS,
        batch_size=5,
        spool_memory_bytes=1,  # every page read ahead goes to a file
        spool_dir=str(spool_dir),
    )


def _wait_for_spool(spool_dir: Path, proc: Any) -> None:
    deadline = time.monotonic() + 30
    while not any(spool_dir.glob("tap-clevertap-*/page-*")):
        assert proc.poll() is None, "the run ended before spooling"
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_leaves_no_spool_behind(
    sandbox: SandboxServer, tmp_path: Path, signum: int
) -> None:
    sandbox.settings.page_delay = 0.01
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    run = spawn(_spool_config(sandbox, spool_dir), tmp_path)
    proc = run.proc
    _wait_for_spool(spool_dir, proc)
    proc.send_signal(signum)
    proc.communicate(timeout=30)
    capture_output(run.log.read_text())
    assert proc.returncode == 128 + signum
    assert not list(spool_dir.iterdir())


def test_a_killed_run_loses_nothing_and_its_spool_is_never_read(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.settings.page_delay = 0.01
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    config = _spool_config(sandbox, spool_dir)
    run = spawn(config, tmp_path)
    proc = run.proc
    lines: list[str] = []
    assert proc.stdout is not None
    while sum('"type":"STATE"' in line for line in lines) < 3:
        lines.append(proc.stdout.readline())
    _wait_for_spool(spool_dir, proc)
    proc.kill()
    # Through the same buffered reader: `communicate` would skip what `readline` read ahead.
    lines += proc.stdout.readlines()
    proc.wait(timeout=10)
    proc.stdout.close()
    # A line cut by the kill never reached the target.
    messages = [json.loads(line) for line in lines if line.endswith("\n")]
    capture_output(run.log.read_text())
    leftover = list(spool_dir.iterdir())
    assert len(leftover) == 1
    # Were the rerun to read the dead run's pages, it would meet these.
    for page in leftover[0].glob("page-*"):
        page.write_bytes(b'{"status": "success", "records": [{"ts": "poison"}]}')
    old = time.time() - 3600
    os.utime(leftover[0], (old, old))
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]

    rerun = run_tap(config, state=state)
    first = [m["record"] for m in messages if m["type"] == "RECORD"]
    union = {r["event_id"]: raw_view(r) for r in first + rerun.records()}
    expected = [row for name in THREE_STREAMS for row in expected_rows(sandbox, name)]
    assert content_multiset(list(union.values())) == content_multiset(expected)
    assert all(r["ts"] != "poison" for r in rerun.records())
    assert not leftover[0].exists()  # the dead run's spool, removed by the rerun
    assert not list(spool_dir.iterdir())
