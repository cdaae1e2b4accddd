"""Exports prepared ahead and pages fetched ahead, within CleverTap's 3 concurrent requests."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

from tap_clevertap import client, wire
from tap_clevertap.sandbox import Fault, SandboxServer
from tests.conftest import (
    api_requests,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    run_tap,
)

THREE_STREAMS = ["App Launched", "Charged", "Product Viewed"]


def assert_all_events(sandbox: SandboxServer, records: list[dict[str, object]]) -> None:
    expected = [row for name in THREE_STREAMS for row in expected_rows(sandbox, name)]
    assert content_multiset([raw_view(r) for r in records]) == content_multiset(expected)
    assert len({r["event_id"] for r in records}) == len(expected)


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


def assert_window_order(messages: list[dict[str, object]]) -> None:
    """Records come stream by stream and day by day, each STATE after its window."""
    days: list[tuple[str, int]] = []
    for message in messages:
        if message["type"] == "RECORD":
            record = message["record"]
            assert isinstance(record, dict)
            day = (str(message["stream"]), int(str(record["ts"])[:8]))
            if not days or days[-1] != day:
                assert day not in days, f"{day} came back after another window"
                days.append(day)


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


def test_large_pages_read_ahead_are_parsed_by_the_thread_that_reads_them(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A parsed page is ~40 MB at full size: pages fetched ahead wait as bytes.
    monkeypatch.setattr(client, "LARGE_BODY_BYTES", 2000)
    parsed_in: list[tuple[str, int]] = []
    parse = wire.parse_body

    def spy(content: bytes) -> dict[str, Any]:
        parsed_in.append((threading.current_thread().name, len(content)))
        return parse(content)

    monkeypatch.setattr(wire, "parse_body", spy)
    run = run_tap(make_config(sandbox, event_names=THREE_STREAMS))
    assert_all_events(sandbox, run.records())
    large = [thread for thread, size in parsed_in if size > 2000]
    assert len(large) > 20
    assert set(large) == {threading.main_thread().name}


def test_a_broken_large_page_read_ahead_is_requested_again(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(client, "LARGE_BODY_BYTES", 1000)
    # Pages of a day read ahead: the first page of an export opened ahead (day 3), and
    # the second page of an export, fetched while the first is written (day 4).
    assert sandbox.data.day_count("App Launched", dt.date(2024, 1, 4)) > 25
    sandbox.faults += [
        Fault("truncate_page", method="GET", day=20240103),
        Fault("truncate_page", method="GET", day=20240104, after=1),
    ]
    run = run_tap(make_config(sandbox, event_names=THREE_STREAMS))
    assert_all_events(sandbox, run.records())
    assert sum(1 for r in api_requests(sandbox) if r.get("fault") == "truncate_page") == 2
    assert "A page read ahead failed validation" in caplog.text


def test_an_event_s_later_exports_open_as_soon_as_it_has_a_cursor(sandbox: SandboxServer) -> None:
    # Refused events are refused at step 1, so only the cursor is waited for, not the
    # export's preparation: the next windows are opened while the first is prepared.
    sandbox.settings.prepare_seconds = 0.5
    run_tap(make_config(sandbox, event_names=["Charged"], end_date="2024-01-03"))
    posts = api_requests(sandbox, "POST")
    assert [p["day_from"] for p in posts] == [20240101, 20240102, 20240103]
    assert posts[2]["started"] - posts[0]["started"] < 0.25
