"""The whole tap against the sandbox over HTTP: every event once, state, incremental reruns."""

from __future__ import annotations

import datetime as dt
import gc
import json
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tap_clevertap.errors import EventsRefused
from tap_clevertap.exports import ExportScheduler, PlannedExport
from tap_clevertap.runtime import YOUNG_GC_THRESHOLD
from tap_clevertap.sandbox import SandboxData, SandboxServer
from tap_clevertap.streams import EventStream
from tap_clevertap.wire import read_whole_body, response_body
from tests.helpers import (
    WEEK,
    TapRun,
    api_requests,
    assert_all_events,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    run_tap,
)


def test_week_of_two_events_emits_every_event_exactly_once(sandbox: SandboxServer) -> None:
    run = run_tap(make_config(sandbox))

    for event_name, stream in (("App Launched", "app_launched"), ("Charged", "charged")):
        records = run.records(stream)
        expected = expected_rows(sandbox, event_name)
        assert len(expected) > 150
        # Exactly once, compared by content (a multiset: identical events count twice) ...
        assert content_multiset([raw_view(r) for r in records]) == content_multiset(expected)
        # ... and by key: one event_id per event, identical copies included.
        assert len({r["event_id"] for r in records}) == len(expected)
        assert all(r["event_name"] == event_name for r in records)

    assert run.last_state == {
        "bookmarks": {"app_launched": {"window_to": 20240107}, "charged": {"window_to": 20240107}}
    }


def test_identical_events_in_the_data_stay_separate_rows(sandbox: SandboxServer) -> None:
    expected = expected_rows(sandbox, "App Launched")
    distinct = content_multiset(expected)
    assert any(count > 1 for count in distinct.values()), "the sandbox seeds identical events"
    records = run_tap(make_config(sandbox, event_names=["App Launched"])).records()
    assert len(records) == len(expected)
    assert len({r["event_id"] for r in records}) == len(expected)


def test_state_is_written_after_each_window_and_only_covers_emitted_days(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK also writes STATE every STATE_MSG_FREQUENCY records: make that happen mid-window
    # and check no STATE ever bookmarks a day whose events were not all emitted before it.
    monkeypatch.setattr(EventStream, "STATE_MSG_FREQUENCY", 7)
    run = run_tap(make_config(sandbox, event_names=["App Launched"], window_days=2))
    expected_days = {
        day: content_multiset(expected_rows(sandbox, "App Launched", day, day))
        for day in (WEEK[0] + dt.timedelta(days=i) for i in range(7))
    }
    seen: list[dict[str, object]] = []
    bookmarks: list[int] = []
    for message in run.messages:
        if message["type"] == "RECORD":
            seen.append(raw_view(message["record"]))
        elif message["type"] == "STATE":
            mark = message["value"].get("bookmarks", {}).get("app_launched", {}).get("window_to")
            if mark is None:
                continue
            bookmarks.append(mark)
            emitted = content_multiset(seen)
            for day, rows in expected_days.items():
                if int(day.strftime("%Y%m%d")) <= mark:
                    assert not rows - emitted, f"STATE {mark} written before all of {day}"
    # Windows of two days: 01-02, 03-04, 05-06, 07.
    assert bookmarks == [20240102, 20240104, 20240106, 20240107]


def test_rerun_with_final_state_reads_only_the_lookback(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, lookback_days=2)
    first = run_tap(config)
    sandbox.reset()
    second = run_tap(config, state=first.last_state)

    posts = api_requests(sandbox, "POST")
    asked = sorted((p["event_name"], p["day_from"], p["day_to"]) for p in posts)
    assert asked == [
        ("App Launched", 20240106, 20240106),
        ("App Launched", 20240107, 20240107),
        ("Charged", 20240106, 20240106),
        ("Charged", 20240107, 20240107),
    ]
    # The re-read days come out with the same ids, so targets upsert rather than duplicate.
    first_ids = {r["event_id"] for r in first.records()}
    assert {r["event_id"] for r in second.records()} <= first_ids
    assert second.last_state == first.last_state


def test_window_ending_today_is_bookmarked_as_yesterday(sandbox: SandboxServer) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    config = make_config(
        sandbox,
        event_names=["Charged"],
        start_date=(today - dt.timedelta(days=2)).isoformat(),
        end_date=None,
        window_days=3,
        lookback_days=0,
    )
    config.pop("end_date")
    run = run_tap(config)
    yesterday = today - dt.timedelta(days=1)
    assert run.last_state["bookmarks"]["charged"]["window_to"] == int(yesterday.strftime("%Y%m%d"))
    # With lookback 0 the next run still reads today again: nothing of today is lost.
    sandbox.reset()
    run_tap(config, state=run.last_state)
    posts = api_requests(sandbox, "POST")
    assert [(p["day_from"], p["day_to"]) for p in posts] == [
        (int(today.strftime("%Y%m%d")), int(today.strftime("%Y%m%d")))
    ]


def test_start_date_is_the_start_without_state_and_never_crossed(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, event_names=["Charged"], lookback_days=5)
    state = {"bookmarks": {"charged": {"window_to": 20240102}}}
    run_tap(config, state=state)
    posts = api_requests(sandbox, "POST")
    # bookmark 01-02 + 1 - 5 days would be 2023-12-29: clamped to start_date.
    assert min(p["day_from"] for p in posts) == 20240101
    assert max(p["day_to"] for p in posts) == 20240107


def test_profile_changes_between_exports_keep_event_ids(sandbox: SandboxServer) -> None:
    config = make_config(
        sandbox, event_names=["App Launched"], include_profile_fields=True, include_app_fields=True
    )
    before = run_tap(config).records()
    sandbox.data.profile_version = 3
    after = run_tap(config).records()
    assert [r["profile"] for r in before] != [r["profile"] for r in after]
    assert sorted(r["event_id"] for r in before) == sorted(r["event_id"] for r in after)


def test_app_and_profile_fields_are_requested_and_delivered(sandbox: SandboxServer) -> None:
    config = make_config(
        sandbox, event_names=["Charged"], include_profile_fields=True, include_app_fields=True
    )
    records = run_tap(config).records()
    expected = expected_rows(sandbox, "Charged", app=True, profile=True)
    assert content_multiset([raw_view(r) for r in records]) == content_multiset(expected)
    assert all("profileData" in r["profile"] and "make" in r["profile"] for r in records)
    post = api_requests(sandbox, "POST")[0]
    assert "app=true" in post["query"]
    assert "profile=true" in post["query"]


def test_an_event_the_project_does_not_have_is_refused_and_the_others_go_on(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    # CleverTap answers HTTP 400 {"error": "[\"Invalid event : App Lanched\"]"}.
    sink: list[dict[str, object]] = []
    config = make_config(sandbox, event_names=["App Lanched", "Charged"])
    with pytest.raises(EventsRefused, match=r"^refused by CleverTap: 'App Lanched'"):
        run_tap(config, sink=sink)
    run = TapRun(sink)
    assert any(m["type"] == "SCHEMA" and m["stream"] == "app_lanched" for m in sink)
    assert run.records("app_lanched") == []
    assert "window_to" not in run.last_state["bookmarks"].get("app_lanched", {})
    expected = expected_rows(sandbox, "Charged")
    assert content_multiset([raw_view(r) for r in run.records("charged")]) == content_multiset(
        expected
    )
    assert run.last_state["bookmarks"]["charged"]["window_to"] == 20240107
    # Only its first window was asked for; one WARNING names it and the reason.
    asked = [p for p in api_requests(sandbox, "POST") if p["event_name"] == "App Lanched"]
    assert len(asked) == 1
    warnings = [r for r in caplog.records if "refused to export 'App Lanched'" in r.getMessage()]
    assert len(warnings) == 1
    assert "Invalid event : App Lanched" in warnings[0].getMessage()


def test_bodies_read_in_one_call_stay_readable_as_requests_keeps_them(
    sandbox: SandboxServer,
) -> None:
    from tap_clevertap.tap import TapClevertap  # noqa: PLC0415

    tap = TapClevertap(config=make_config(sandbox, event_names=["App Launched"]))
    stream = tap.streams["app_launched"]
    assert isinstance(stream, EventStream)
    assert stream.requests_session.stream  # bodies are left to `read_whole_body`
    context = stream.export_context("App Launched", stream.plan(dt.date(2024, 1, 8))[0])
    paginator, page = stream.export_client.open(context)
    body = read_whole_body(page)
    plain = requests.get(page.url, headers=page.request.headers, timeout=10)  # read by requests
    assert body == page.content == plain.content
    assert page.text == plain.text
    assert page.json() == plain.json() == response_body(page)
    day_count = sandbox.data.day_count("App Launched", dt.date(2024, 1, 1))
    assert len(page.json()["records"]) == min(25, day_count) > 0
    assert paginator.current_value  # the cursor followed to this page


def test_a_parsed_page_of_5000_events_stays_under_the_young_gc_threshold() -> None:
    # The CLI raises the threshold so that the collector does not scan a page while it is
    # parsed and written (it holds no cycles; refcounting frees it). Richer events would
    # need a higher threshold.
    rows = SandboxData(events_per_day=7000).events("Charged", dt.date(2024, 1, 1))[:5000]
    body = json.dumps({"status": "success", "records": rows}).encode()
    gc.disable()
    try:
        before = gc.get_count()[0]
        page = orjson.loads(body)
        containers = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert len(page["records"]) == 5000
    assert 5000 < containers < YOUNG_GC_THRESHOLD


def test_an_embedding_program_s_sync_all_fails_for_a_refused_named_event(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # The public sync_all (not only the command line) ends the run, after every stream, and
    # stops reading ahead: no spool directory and no reading thread is left behind.
    config = make_config(
        sandbox,
        event_names=["Charged", "Nope"],
        end_date="2024-01-03",
        spool_dir=str(tmp_path),
        spool_memory_bytes=1,  # pages read ahead go to files
    )
    sink: list[dict[str, Any]] = []
    with pytest.raises(EventsRefused, match="refused by CleverTap: 'Nope'"):
        run_tap(config, sink=sink)
    charged = [m["record"] for m in sink if m["type"] == "RECORD" and m["stream"] == "charged"]
    assert len(charged) == len(expected_rows(sandbox, "Charged", last=dt.date(2024, 1, 3)))
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("clevertap-read-")]


def test_a_bare_stream_sync_reads_one_export_at_a_time(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the SDK's dry run does: no plan, so no reading thread, one request at a time.
    readers: list[object] = []
    start = ExportScheduler._start

    def spy(self: ExportScheduler, export: PlannedExport) -> Any:
        readers.append(export)
        return start(self, export)

    monkeypatch.setattr(ExportScheduler, "_start", spy)
    sandbox.settings.page_delay = 0.005
    config = make_config(sandbox, event_names=["Charged"], end_date="2024-01-03")
    run_tap(config)
    assert readers  # a whole sync does read ahead
    readers.clear()
    sandbox.reset()
    run = run_tap(config, sync=lambda tap: tap.streams["charged"].sync())
    assert readers == []
    assert_all_events(sandbox, run.records(), ["Charged"], last=dt.date(2024, 1, 3))
    assert sandbox.max_in_flight_seen == 1
    assert len(api_requests(sandbox, "POST")) == 3
