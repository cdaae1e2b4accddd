"""Stops that must lose nothing: the tap killed at seeded points, then rerun with the last
STATE it emitted; the union of the runs must hold every sandbox event."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.sandbox import SandboxData, SandboxServer, SandboxSettings
from tests.helpers import (
    WEEK,
    Spawned,
    capture_output,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    select_only,
    spawn,
)

EVENTS = {"app_launched": "App Launched", "charged": "Charged"}
SEED = 20240107

Trigger = Callable[[dict[str, Any], list[dict[str, Any]]], bool]


def run_until(
    run: Spawned, trigger: Trigger | None, sig: int = signal.SIGKILL
) -> tuple[list[dict[str, Any]], str]:
    """Read messages; when `trigger` says so, signal the tap and keep only what was read."""
    proc = run.proc
    assert proc.stdout is not None
    messages: list[dict[str, Any]] = []
    try:
        for line in proc.stdout:
            message = json.loads(line)
            messages.append(message)
            if trigger is not None and trigger(message, messages):
                proc.send_signal(sig)
                if sig == signal.SIGKILL:
                    break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # a failed assertion above: do not leave the tap running
            proc.kill()
            proc.wait()
        proc.stdout.close()
    err = run.log.read_text()
    capture_output(json.dumps(messages) + err)
    return messages, err


def records_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "RECORD"]


def last_state(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return states[-1] if states else None


def after_kth_record(k: int) -> Trigger:
    return lambda m, ms: m["type"] == "RECORD" and len(records_of(ms)) == k


def after_nth_state(n: int) -> Trigger:
    return lambda m, ms: m["type"] == "STATE" and sum(x["type"] == "STATE" for x in ms) == n


def between_streams(m: dict[str, Any], ms: list[dict[str, Any]]) -> bool:
    return bool(m["type"] == "SCHEMA" and m["stream"] == "charged")


rng = random.Random(SEED)
KILL_POINTS: dict[str, Trigger] = {
    "after-kth-record": after_kth_record(rng.randint(30, 120)),
    # Pages hold 10 records: the 5th record of the 14th page is mid-page.
    "mid-page": after_kth_record(13 * 10 + 5),
    "right-after-a-state": after_nth_state(rng.randint(2, 5)),
    "between-streams": between_streams,
}


@pytest.fixture
def slow_sandbox(sandbox: SandboxServer) -> SandboxServer:
    # Slow enough that the tap cannot finish before the kill point is read.
    sandbox.settings.page_delay = 0.01
    return sandbox


@pytest.mark.parametrize("point", list(KILL_POINTS), ids=list(KILL_POINTS))
def test_sigkill_then_rerun_with_last_state_loses_nothing(
    slow_sandbox: SandboxServer, tmp_path: Path, point: str
) -> None:
    config = make_config(slow_sandbox, batch_size=10)
    killed = spawn(config, tmp_path, None)
    first, _ = run_until(killed, KILL_POINTS[point])
    assert killed.returncode == -signal.SIGKILL, "the tap finished before the kill point"

    rerun = spawn(config, tmp_path, last_state(first))
    second, err = run_until(rerun, None)
    assert rerun.returncode == 0, err

    for stream, event_name in EVENTS.items():
        expected = content_multiset(expected_rows(slow_sandbox, event_name))
        got_first = {
            m["record"]["event_id"]: m["record"] for m in records_of(first) if m["stream"] == stream
        }
        got_second = {
            m["record"]["event_id"]: m["record"]
            for m in records_of(second)
            if m["stream"] == stream
        }
        union = {**got_first, **got_second}
        assert content_multiset([raw_view(r) for r in union.values()]) == expected
        assert len(union) == sum(expected.values())
        if stream == "charged" or point != "between-streams":
            assert len(got_first) < len(union), "the killed run was not missing events"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_ctrl_c_stops_promptly_with_the_state_earned(
    slow_sandbox: SandboxServer, tmp_path: Path, sig: signal.Signals
) -> None:
    config = make_config(slow_sandbox, batch_size=10)
    proc = spawn(config, tmp_path, None)
    first, err = run_until(proc, after_kth_record(75), sig=sig)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert f"Stopped by signal {int(sig)}" in err
    state = last_state(first)
    assert state is not None
    # Every day the STATE bookmarks was emitted in full before the stop.
    mark = state["bookmarks"]["app_launched"]["window_to"]
    emitted = content_multiset([raw_view(m["record"]) for m in records_of(first)])
    done = expected_rows(slow_sandbox, "App Launched", WEEK[0], WEEK[0].replace(day=mark % 100))
    assert not content_multiset(done) - emitted

    rerun = spawn(config, tmp_path, state)
    second, _ = run_until(rerun, None)
    union = {m["record"]["event_id"] for m in records_of(first) + records_of(second)}
    total = sum(len(expected_rows(slow_sandbox, e)) for e in EVENTS.values())
    assert len(union) == total


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_while_a_page_is_written_never_cuts_a_line(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # A page of ~1 MB is written to a pipe of 64 KB that nobody reads for a while: the tap is
    # blocked part-way through the write when the signal comes.
    with SandboxServer(SandboxData(events_per_day=3000), SandboxSettings()) as big:
        config = make_config(big, batch_size=5000, end_date="2024-01-02")
        proc = spawn(config, tmp_path, None).proc
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while json.loads(lines[-1])["type"] != "RECORD":
            lines.append(proc.stdout.readline())
        time.sleep(0.5)  # the tap fills the pipe and blocks in the middle of the page
        proc.send_signal(sig)
        lines += proc.stdout.readlines()
        proc.wait(timeout=30)
        proc.stdout.close()
    messages = [json.loads(line) for line in lines]  # every line whole
    assert proc.returncode == 128 + sig
    assert messages[-1]["type"] == "STATE"
    assert 1000 < sum(m["type"] == "RECORD" for m in messages) < 12000


BLOCK_KILL_POINTS: dict[str, Trigger] = {
    "first-page": after_kth_record(rng.randint(1, 99)),
    "second-page": after_kth_record(rng.randint(101, 199)),
    "last-page": after_kth_record(rng.randint(201, 229)),
    "after-the-last-block": lambda m, ms: m["type"] == "STATE" and bool(records_of(ms)),
}


@pytest.mark.parametrize("point", list(BLOCK_KILL_POINTS), ids=list(BLOCK_KILL_POINTS))
def test_content_blocks_killed_then_rerun_lose_no_block(
    sandbox: SandboxServer, tmp_path: Path, point: str
) -> None:
    sandbox.settings.messaging_delay = 0.05  # the kill point comes before the end
    config = make_config(sandbox, include_campaign_streams=True)
    catalog = select_only(config, {"content_blocks"})
    blocks = sandbox.messaging
    # A first whole run, then edits, then a run killed at `point`, then a rerun.
    first, _ = run_until(spawn(config, tmp_path, None, catalog), None)
    state = last_state(first)
    assert state is not None
    edited = {r["record"]["id"]: r["record"]["modified_at"] for r in records_of(first)[::37]}
    later = dt.datetime.now(dt.timezone.utc)
    for block_id in edited:
        blocks.edit_content_block(block_id, later)
    added = blocks.add_content_block(later)
    if point != "after-the-last-block":
        state = {}  # the kill comes in a first run: no bookmark yet
    killed = spawn(config, tmp_path, state, catalog)
    second, _ = run_until(killed, BLOCK_KILL_POINTS[point])
    assert killed.returncode == -signal.SIGKILL, "the tap finished before the kill point"
    rerun = spawn(config, tmp_path, last_state(second) or state, catalog)
    third, err = run_until(rerun, None)
    assert rerun.returncode == 0, err

    landed: dict[int, dict[str, Any]] = {}
    for run in (first, second, third):
        landed.update({m["record"]["id"]: m["record"] for m in records_of(run)})
    now = {b["id"]: b for b in blocks.content_blocks()}
    assert set(landed) == set(now)
    assert added in landed
    for block_id in edited:
        assert landed[block_id]["updatedAt"] == now[block_id]["updatedAt"], block_id
