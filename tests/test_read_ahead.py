"""Exports prepared and read ahead, within CleverTap's 3 concurrent requests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest

from tap_clevertap import client, wire
from tap_clevertap.sandbox import Fault, SandboxServer
from tests.helpers import (
    THREE_STREAMS,
    api_requests,
    assert_all_events,
    content_multiset,
    make_config,
    run_tap,
)


@pytest.mark.parametrize("limit", [2, 3])
def test_requests_in_flight_never_exceed_the_limit(sandbox: SandboxServer, limit: int) -> None:
    sandbox.settings.prepare_seconds = 0.05
    sandbox.settings.page_delay = 0.01
    # The sandbox answers 429 past `limit`: the tap must not even get there.
    sandbox.settings.max_concurrent = limit
    run = run_tap(
        make_config(
            sandbox, event_names=THREE_STREAMS, max_concurrent_requests=limit, max_exports_ahead=4
        )
    )
    assert_all_events(sandbox, run.records())
    assert sandbox.max_in_flight_seen == limit  # it did overlap, up to the limit
    assert all(r.get("status") != 429 for r in api_requests(sandbox))


def test_one_request_at_a_time_when_the_limit_is_one(sandbox: SandboxServer) -> None:
    sandbox.settings.page_delay = 0.01
    run_tap(make_config(sandbox, event_names=THREE_STREAMS[:2], max_concurrent_requests=1))
    assert sandbox.max_in_flight_seen == 1


def test_exports_are_opened_ahead_across_streams_in_order(sandbox: SandboxServer) -> None:
    sandbox.settings.prepare_seconds = 0.1
    run = run_tap(make_config(sandbox, event_names=THREE_STREAMS, end_date="2024-01-02"))
    assert_window_order(run.messages)
    posts = api_requests(sandbox, "POST")
    # The first export of a stream was created before the previous stream finished.
    first_charged = next(i for i, p in enumerate(posts) if p["event_name"] == "Charged")
    last_launch_get = max(
        i for i, r in enumerate(api_requests(sandbox)) if r["event_name"] == "App Launched"
    )
    assert api_requests(sandbox).index(posts[first_charged]) < last_launch_get


def assert_window_order(messages: list[dict[str, Any]]) -> None:
    """Records come stream by stream and day by day, and each STATE after its window.

    A window's STATE follows its last record and bookmarks its day; no STATE bookmarks a day
    of a stream whose records come later.
    """
    days: list[tuple[str, int]] = []
    last_record: dict[tuple[str, int], int] = {}
    for position, message in enumerate(messages):
        if message["type"] == "RECORD":
            window = (str(message["stream"]), int(str(message["record"]["ts"])[:8]))
            if not days or days[-1] != window:
                assert window not in days, f"{window} came back after another window"
                days.append(window)
            last_record[window] = position
    states = [(i, m["value"]["bookmarks"]) for i, m in enumerate(messages) if m["type"] == "STATE"]
    for (stream, day), position in last_record.items():
        later = [b for i, b in states if i > position]
        assert any(b.get(stream, {}).get("window_to", 0) >= day for b in later), (stream, day)
    for position, bookmarks in states:
        for (stream, day), last in last_record.items():
            if bookmarks.get(stream, {}).get("window_to", 0) >= day:
                assert last < position, f"a STATE covers {stream} {day} before its records"


def test_faults_while_exports_are_prepared_ahead_lose_nothing(sandbox: SandboxServer) -> None:
    sandbox.faults += [
        Fault("status", status=503, times=3, method="POST"),
        # The second page of one export (its first was written): that window comes again.
        Fault(
            "fail_code",
            code=3,
            error="Incorrect Usage",
            method="GET",
            event_name="App Launched",
            day=20240104,
            after=1,
            times=1,
        ),
        # (Not on App Launched: a retried page would take the fault above off page 2.)
        Fault("reset", times=2, after=7, event_name="Charged"),
        Fault("status", status=429, times=2, after=9, event_name="Product Viewed"),
    ]
    assert sandbox.data.day_count("App Launched", dt.date(2024, 1, 4)) > 25  # two pages
    run = run_tap(make_config(sandbox, event_names=THREE_STREAMS))
    # The refused cursor's window is read again: its records come twice, with the same ids.
    unique = list({r["event_id"]: r for r in run.records()}.values())
    assert len(run.records()) > len(unique)
    assert_all_events(sandbox, unique)
    assert_window_order(run.messages)


def test_pages_are_parsed_only_by_the_thread_that_writes_them(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A parsed page is ~12 MB at full size: pages read ahead wait as bytes.
    parsed_in: list[tuple[str, int]] = []
    parse = wire.parse_body

    def spy(content: bytes) -> dict[str, Any]:
        parsed_in.append((threading.current_thread().name, len(content)))
        return parse(content)

    monkeypatch.setattr(wire, "parse_body", spy)
    monkeypatch.setattr(client, "parse_body", spy)
    # Bodies up to _HEAD_BYTES (step 1, failures, the end of an export) are parsed where
    # they are fetched; the sandbox's pages of 25 events are ~10 KB.
    monkeypatch.setattr(wire, "_HEAD_BYTES", 4096)
    sandbox.settings.page_delay = 0.005
    run = run_tap(make_config(sandbox, event_names=THREE_STREAMS))
    assert_all_events(sandbox, run.records())
    large = [thread for thread, size in parsed_in if size > 4096]
    assert len(large) > 20
    assert set(large) == {threading.main_thread().name}


# Faults on pages read ahead: the second and later pages of exports after the first.
READ_AHEAD_FAULTS = {
    "429": Fault("status", status=429, times=2, after=1, event_name="Product Viewed"),
    "503": Fault("status", status=503, times=2, after=2, event_name="Charged"),
    "reset": Fault("reset", times=1, after=1, event_name="Product Viewed"),
    "truncated body": Fault("truncate_page", method="GET", after=1, event_name="Charged"),
    "cut connection": Fault("cut_page", method="GET", after=2, event_name="Product Viewed"),
    "garbled records": Fault("garble_page", method="GET", after=1, times=3, event_name="Charged"),
}


@pytest.mark.parametrize("fault", list(READ_AHEAD_FAULTS))
def test_faults_on_pages_read_ahead_give_the_records_of_one_request_at_a_time(
    sandbox: SandboxServer, fault: str
) -> None:
    config = make_config(sandbox, event_names=THREE_STREAMS, end_date="2024-01-04")
    sandbox.settings.page_delay = 0.002
    alone = run_tap(config | {"max_concurrent_requests": 1}).records()
    sandbox.faults.append(dataclasses.replace(READ_AHEAD_FAULTS[fault]))
    sandbox.requests.clear()
    ahead = run_tap(config).records()
    assert sandbox.faults[0].fired >= 1
    assert sandbox.max_in_flight_seen == 3
    assert content_multiset(ahead) == content_multiset(alone)
    assert all(r.get("status") != 429 or r.get("fault") for r in api_requests(sandbox))


def test_an_expired_cursor_read_ahead_restarts_its_window_with_the_same_ids(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(sandbox, event_names=THREE_STREAMS, end_date="2024-01-04")
    alone = run_tap(config | {"max_concurrent_requests": 1}).records()
    sandbox.faults.append(
        Fault(
            "fail_code",
            code=3,
            error="Incorrect Usage: cursor expired",
            method="GET",
            event_name="Product Viewed",
            day=20240103,
            after=1,
        )
    )
    ahead = run_tap(config).records()
    assert "requested again from the start" in caplog.text
    assert set(content_multiset(ahead)) == set(content_multiset(alone))
    restarted = [
        r for r in ahead if r["event_name"] == "Product Viewed" and r["ts"] // 10**6 == 20240103
    ]
    assert len(restarted) > len({r["event_id"] for r in restarted})  # sent twice, same ids


def test_exports_are_drained_up_to_three_at_a_time(sandbox: SandboxServer) -> None:
    sandbox.settings.page_delay = 0.02
    config = make_config(sandbox, event_names=THREE_STREAMS, end_date="2024-01-01")
    run_tap(config | {"batch_size": 5})
    gets = [r for r in api_requests(sandbox, "GET") if r.get("records")]
    first_export_done = max(r["started"] for r in gets if r["event_name"] == "App Launched")
    # Pages of the later exports, beyond their first, fetched while the first is drained.
    ahead = [
        r for r in gets if r["event_name"] != "App Launched" and r["started"] < first_export_done
    ]
    assert len(ahead) > 2 * 2
    assert sandbox.max_in_flight_seen == 3


def test_an_event_s_later_exports_open_as_soon_as_it_has_a_cursor(sandbox: SandboxServer) -> None:
    # Refused events are refused at step 1, so only the cursor is waited for, not the
    # export's preparation: the next windows are opened while the first is prepared.
    sandbox.settings.prepare_seconds = 0.5
    run_tap(make_config(sandbox, event_names=["Charged"], end_date="2024-01-03"))
    posts = api_requests(sandbox, "POST")
    # The first window goes alone; the next two are opened together, in either order.
    assert posts[0]["day_from"] == 20240101
    assert sorted(p["day_from"] for p in posts[1:]) == [20240102, 20240103]
    assert max(p["started"] for p in posts) - posts[0]["started"] < 0.25


@pytest.mark.parametrize("limit", [1, 3])
def test_an_export_ending_on_a_page_of_records_parses_each_page_once(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    # Its last page has records and no next_cursor: its head needs a full parse, which the
    # writer then uses. Small pages (parsed whole for their head) are not parsed again either.
    sandbox.settings.records_on_last_page = True
    parsed: Counter[bytes] = Counter()
    parse = wire.parse_body

    def spy(content: bytes) -> dict[str, Any]:
        parsed[bytes(content)] += 1
        return parse(content)

    monkeypatch.setattr(wire, "parse_body", spy)
    monkeypatch.setattr(client, "parse_body", spy)
    config = make_config(sandbox, event_names=THREE_STREAMS, max_concurrent_requests=limit)
    run = run_tap(config)
    assert_all_events(sandbox, run.records())
    gets = api_requests(sandbox, "GET")
    assert gets
    assert all(r.get("cursor_issued") or r.get("records") for r in gets)  # no bare last page
    assert sum(1 for r in gets if r.get("cursor_issued") is None) == len(THREE_STREAMS) * 7
    assert parsed
    assert set(parsed.values()) == {1}
