"""`event_counts`: CleverTap's own count beside every event and day the tap read, over HTTP
against the sandbox (its count API, `partial` polls, a late event, faults, kills)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.sandbox import Fault, SandboxServer
from tap_clevertap.tap import TapClevertap
from tests.helpers import (
    WEEK,
    capture_output,
    make_config,
    run_tap,
    select_only,
    spawn,
)

COUNTS = "/1/counts/events.json"
EVENTS = {"app_launched": "App Launched", "charged": "Charged"}
FOUR_DAYS = {"include_event_counts": True, "end_date": "2024-01-04"}
DAYS = [WEEK[0] + dt.timedelta(days=n) for n in range(4)]


def expected_counts(sandbox: SandboxServer, days: list[dt.date] = DAYS) -> dict[Any, int]:
    return {
        (event, day.isoformat()): sandbox.data.day_count(event, day)
        for event in EVENTS.values()
        for day in days
    }


def by_key(records: list[dict[str, Any]]) -> dict[Any, int | None]:
    """CleverTap's count per (event, day), the last record of each winning (an upsert)."""
    return {(r["event_name"], r["day"]): r["clevertap_count"] for r in records}


def count_requests(sandbox: SandboxServer, method: str = "POST") -> list[dict[str, Any]]:
    return [r for r in sandbox.requests if r["path"] == COUNTS and r["method"] == method]


def test_counts_equal_on_every_day_and_come_after_the_windows_they_describe(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    run = run_tap(make_config(sandbox, **FOUR_DAYS))
    records = run.records("event_counts")
    assert by_key(records) == expected_counts(sandbox)
    assert len(records) == len(EVENTS) * len(DAYS)  # one per event and day
    for record in records:
        emitted = [
            r
            for stream in EVENTS
            for r in run.records(stream)
            if r["event_name"] == record["event_name"]
            and str(r["ts"]).startswith(record["day"].replace("-", ""))
        ]
        assert record["exported_count"] == len(emitted) == record["clevertap_count"]
    # After every record of the windows they describe, and in day order.
    kinds = [m["stream"] for m in run.messages if m["type"] == "RECORD"]
    assert kinds[-len(records) :] == ["event_counts"] * len(records)
    assert [r["day"] for r in records] == sorted(r["day"] for r in records)
    # One count request per event and day, each for that day alone.
    posts = [json.loads(r["body"]) for r in count_requests(sandbox)]
    assert sorted((p["event_name"], p["from"], p["to"]) for p in posts) == sorted(
        (event, int(day.strftime("%Y%m%d")), int(day.strftime("%Y%m%d")))
        for event in EVENTS.values()
        for day in DAYS
    )
    infos = [r.getMessage() for r in caplog.records if "CleverTap counts" in r.getMessage()]
    assert len(infos) == len(EVENTS) * len(DAYS)  # one line per window (a day each here)
    assert "event_counts: 'Charged' 2024-01-02: CleverTap counts" in " ".join(infos)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    counted_to = run.last_state["bookmarks"]["event_counts"]["counted_to"]
    assert counted_to == {"app_launched": 20240104, "charged": 20240104}


def test_a_late_event_makes_exactly_its_day_differ_with_one_warning_per_event(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.settings.late_event_day = 20240103
    run = run_tap(make_config(sandbox, **FOUR_DAYS))
    differ = {
        (r["event_name"], r["day"])
        for r in run.records("event_counts")
        if r["clevertap_count"] != r["exported_count"]
    }
    assert differ == {(event, "2024-01-03") for event in EVENTS.values()}
    late = next(r for r in run.records("event_counts") if r["day"] == "2024-01-03")
    assert late["clevertap_count"] == late["exported_count"] + 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(EVENTS)
    for event in EVENTS.values():
        count = sandbox.data.day_count(event, dt.date(2024, 1, 3))
        assert any(
            f"event_counts: {event!r}: CleverTap's count differs from what the tap exported "
            f"on 1 day(s): 2024-01-03 (CleverTap {count + 1}, exported {count})" in w
            for w in warnings
        )


def test_partial_counts_are_polled_by_their_req_id(sandbox: SandboxServer) -> None:
    sandbox.settings.count_partial_polls = 3  # partial, partial, partial, then the count
    run = run_tap(make_config(sandbox, **FOUR_DAYS))
    assert {
        (r["event_name"], r["day"]): r["clevertap_count"] for r in run.records("event_counts")
    } == (expected_counts(sandbox))
    polls = count_requests(sandbox, "GET")
    assert len(polls) == 3 * len(EVENTS) * len(DAYS)
    assert all(p["query"].startswith("req_id=") for p in polls)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", path=COUNTS, day=20240102, status=500, times=None),
        Fault("fail_code", path=COUNTS, day=20240102, code=7, error="Quota", times=None),
        Fault("html", path=COUNTS, day=20240102, status=502, times=None),
    ],
    ids=["http-500", "fail-body", "html"],
)
def test_a_count_that_fails_is_null_with_a_warning_and_the_run_goes_on(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    sandbox.faults.append(fault)
    run = run_tap(make_config(sandbox, **FOUR_DAYS, max_retries=1))
    nulls = {
        (r["event_name"], r["day"])
        for r in run.records("event_counts")
        if r["clevertap_count"] is None
    }
    assert nulls == {(event, "2024-01-02") for event in EVENTS.values()}
    assert len(run.records("event_counts")) == len(EVENTS) * len(DAYS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    failed = [w for w in warnings if "its clevertap_count is null" in w]
    assert len(failed) == len(EVENTS)
    assert all("on 2024-01-02 failed" in w for w in failed)
    # The bookmark moves all the same: the day has its record, with a null count.
    assert run.last_state["bookmarks"]["event_counts"]["counted_to"]["charged"] == 20240104


def test_a_count_still_partial_past_the_wait_is_null(sandbox: SandboxServer) -> None:
    sandbox.settings.count_partial_polls = 10**6
    config = make_config(sandbox, **{**FOUR_DAYS, "end_date": "2024-01-01"})
    config["export_wait_timeout"] = 0.05
    run = run_tap(config)
    assert [r["clevertap_count"] for r in run.records("event_counts")] == [None, None]


def test_counts_share_the_request_slots(sandbox: SandboxServer) -> None:
    sandbox.settings.count_partial_polls = 2
    sandbox.settings.page_delay = 0.002
    run_tap(make_config(sandbox, **FOUR_DAYS, max_concurrent_requests=2))
    assert sandbox.max_in_flight_seen == 2
    assert all(r["status"] != 429 for r in sandbox.requests)


def test_without_the_stream_selected_nothing_is_counted_nor_held_back(
    sandbox: SandboxServer,
) -> None:
    config = make_config(sandbox, **FOUR_DAYS)
    run = run_tap(config, catalog=select_only(config, set(EVENTS)))
    assert count_requests(sandbox) == []
    assert run.records("event_counts") == []
    assert "event_counts" not in run.last_state["bookmarks"]


def test_a_rerun_recounts_the_lookback_days(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, **FOUR_DAYS)
    state = run_tap(config).last_state
    sandbox.reset()
    again = run_tap(config, state=state)
    assert {(r["event_name"], r["day"]) for r in again.records("event_counts")} == {
        (event, "2024-01-04") for event in EVENTS.values()
    }


def test_events_are_read_again_from_the_counts_bookmark_when_it_lags(
    sandbox: SandboxServer,
) -> None:
    # A run stopped after the event windows but before their counts: the counts' bookmark
    # is two days behind, so those days are read (and counted) again.
    config = make_config(sandbox, **FOUR_DAYS)
    state = {
        "bookmarks": {
            "app_launched": {"window_to": 20240104},
            "charged": {"window_to": 20240104},
            "event_counts": {"counted_to": {"app_launched": 20240102, "charged": 20240104}},
        }
    }
    run = run_tap(config, state=state)
    days = {(r["event_name"], r["day"]) for r in run.records("event_counts")}
    assert days == {
        ("App Launched", "2024-01-02"),
        ("App Launched", "2024-01-03"),
        ("App Launched", "2024-01-04"),
        ("Charged", "2024-01-04"),
    }


def test_a_broken_counts_bookmark_stops_with_one_line(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, **FOUR_DAYS)
    state = {"bookmarks": {"event_counts": {"counted_to": {"charged": "yesterday"}}}}
    with pytest.raises(Exception, match="counted_to") as info:
        run_tap(config, state=state)
    assert "YYYYMMDD" in str(info.value)
    assert sandbox.requests == []


def test_the_stream_is_listed_last_incremental_and_its_name_reserved(
    sandbox: SandboxServer,
) -> None:
    tap = TapClevertap(config=make_config(sandbox, **FOUR_DAYS))
    assert list(tap.streams)[-1] == "event_counts"
    entry = next(e for e in tap.catalog_dict["streams"] if e["tap_stream_id"] == "event_counts")
    assert list(entry["key_properties"]) == ["event_name", "day"]
    assert entry["replication_method"] == "INCREMENTAL"
    assert "event_counts" not in TapClevertap(config=make_config(sandbox)).streams


KILL_POINTS = {
    "mid-events": lambda m, ms: (
        m["type"] == "RECORD" and sum(x["type"] == "RECORD" for x in ms) == 70
    ),
    "after-the-last-event-window": lambda m, ms: (
        m["type"] == "SCHEMA" and m["stream"] == "event_counts"
    ),
    "mid-counts": lambda m, ms: m["type"] == "RECORD" and m["stream"] == "event_counts",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_kill_and_a_rerun_leave_one_record_per_event_and_day(
    sandbox: SandboxServer, tmp_path: Path, point: str
) -> None:
    sandbox.settings.page_delay = 0.005
    config = make_config(sandbox, **FOUR_DAYS)
    killed = spawn(config, tmp_path)
    first: list[dict[str, Any]] = []
    assert killed.proc.stdout is not None
    for line in killed.proc.stdout:
        first.append(json.loads(line))
        if KILL_POINTS[point](first[-1], first):
            killed.proc.kill()
            break
    killed.proc.wait(timeout=30)
    killed.proc.stdout.close()
    capture_output(json.dumps(first) + killed.log.read_text())
    assert killed.returncode == -signal.SIGKILL, "the tap finished before the kill point"
    states = [m["value"] for m in first if m["type"] == "STATE"]
    rerun = spawn(config, tmp_path, states[-1] if states else None)
    out, _ = rerun.proc.communicate(timeout=120)
    capture_output(out + rerun.log.read_text())
    assert rerun.returncode == 0
    second = [json.loads(line) for line in out.splitlines()]
    records = [
        m["record"]
        for m in first + second
        if m["type"] == "RECORD" and m["stream"] == "event_counts"
    ]
    assert by_key(records) == expected_counts(sandbox)
    upserted = {(r["event_name"], r["day"]): r for r in records}
    assert all(r["exported_count"] == r["clevertap_count"] for r in upserted.values())
