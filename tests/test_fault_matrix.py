"""Every fault the API throws, against the sandbox over HTTP: survived with every event, or
stopped with one clear line and a state from which a rerun loses nothing.

Record sets are compared exactly, by event_id and by content, with a clean run / the
sandbox's own data. Waits are configured tiny: no test sleeps for long.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import time
from typing import Any

import pytest

from tap_clevertap.errors import (
    CleverTapError,
    CursorLoopError,
    ExportWaitTimeout,
    RetriesExhausted,
)
from tap_clevertap.sandbox import Fault, SandboxServer
from tap_clevertap.streams import EventStream
from tap_clevertap.tap import TapClevertap
from tests.helpers import (
    api_requests,
    assert_all_events,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    run_tap,
)

# One request at a time, so that each test can assert the exact sequence of requests;
# tests/test_read_ahead.py covers faults while exports are prepared ahead.
ONE_EVENT = {
    "event_names": ["App Launched"],
    "end_date": "2024-01-03",
    "max_concurrent_requests": 1,
}


def assert_complete(sandbox: SandboxServer, records: list[dict[str, Any]]) -> None:
    """Exactly the sandbox's events of ONE_EVENT, each once, with a distinct id."""
    assert_all_events(sandbox, records, ["App Launched"], last=dt.date(2024, 1, 3))


@pytest.fixture
def clean_ids(sandbox: SandboxServer) -> set[str]:
    ids = {r["event_id"] for r in run_tap(make_config(sandbox, **ONE_EVENT)).records()}
    sandbox.reset()
    return ids


# --- the wire form --------------------------------------------------------------------------


def test_wire_form_of_both_steps(sandbox: SandboxServer) -> None:
    run_tap(make_config(sandbox, **ONE_EVENT, include_app_fields=True))
    post, first_get = api_requests(sandbox)[:2]
    assert post["method"] == "POST"
    assert post["path"] == "/1/events.json"
    # Every flag is sent, true or false: CleverTap's defaults for a missing one differ.
    assert post["query"] == "batch_size=25&app=true&events=false&profile=false"
    assert json.loads(post["body"]) == {
        "event_name": "App Launched",
        "from": 20240101,
        "to": 20240101,
    }
    assert post["content_type"] == first_get["content_type"] == "application/json"
    assert post["account_id"] == "SANDBOX-ACCOUNT"
    # The cursor goes back exactly as CleverTap gave it: already percent-encoded, not again.
    issued = post["cursor_issued"]
    assert "%2F" in issued or "%2B" in issued or "%3D" in issued
    assert first_get["query"] == f"cursor={issued}"
    assert all("%25" not in r["query"] for r in api_requests(sandbox, "GET"))


def test_short_pages_are_not_taken_for_the_end(sandbox: SandboxServer) -> None:
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    pages: list[int] = [r["records"] for r in api_requests(sandbox, "GET") if r.get("records")]
    assert any(0 < n < 25 for n in pages[:-1]), pages  # the sandbox serves short pages
    assert_complete(sandbox, records)


# --- faults survived ------------------------------------------------------------------------


def test_code_2_for_a_long_time_polls_the_same_cursor_outside_the_retry_budget(
    sandbox: SandboxServer,
) -> None:
    sandbox.settings.prepare_seconds = 0.3
    records = run_tap(make_config(sandbox, **ONE_EVENT, max_retries=0)).records()
    assert_complete(sandbox, records)
    polls = [r for r in api_requests(sandbox, "GET") if r.get("code") == 2]
    assert len(polls) >= 3 * 3  # several polls in each of the 3 windows ...
    first_window = [r["query"] for r in api_requests(sandbox, "GET") if r["day_from"] == 20240101]
    assert first_window[0] == first_window[1]  # ... of the same cursor


def test_code_2_past_export_wait_timeout_stops_clearly(sandbox: SandboxServer) -> None:
    sandbox.settings.prepare_seconds = 60
    with pytest.raises(ExportWaitTimeout) as info:
        run_tap(make_config(sandbox, **ONE_EVENT, export_wait_timeout=0.2))
    assert "still being prepared after 0.2 s" in info.value.one_line()
    assert "window 2024-01-01" in info.value.one_line()


def test_code_1_throttled_waits_and_retries(sandbox: SandboxServer, clean_ids: set[str]) -> None:
    sandbox.faults.append(Fault("fail_code", code=1, error="Throttled", times=2))
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert {r["event_id"] for r in records} == clean_ids
    assert_complete(sandbox, records)
    assert [r.get("code") for r in api_requests(sandbox)][:2] == [1, 1]


def test_http_429_honours_retry_after(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.faults.append(Fault("status", status=429, retry_after="0.25", times=1))
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert_complete(sandbox, records)
    first, second = api_requests(sandbox)[:2]
    assert first["status"] == 429
    assert second["started"] - first["ended"] >= 0.25
    assert "too many concurrent requests (HTTP 429)" in caplog.text


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_retried_with_backoff(sandbox: SandboxServer, status: int) -> None:
    sandbox.faults.append(Fault("status", status=status, times=2, method="GET"))
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert_complete(sandbox, records)
    assert [r["status"] for r in api_requests(sandbox, "GET")][:3] == [status, status, 200]


@pytest.mark.parametrize("action", ["html", "truncate"])
def test_html_error_page_or_broken_json_retried(sandbox: SandboxServer, action: str) -> None:
    sandbox.faults.append(Fault(action, status=502, times=2, method="GET", after=1))
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert_complete(sandbox, records)
    assert sum(1 for r in api_requests(sandbox) if r.get("fault") == action) == 2


def test_connection_closed_in_the_middle_of_a_page_retried(sandbox: SandboxServer) -> None:
    # Headers promise the whole page; half of it arrives, then the connection closes.
    sandbox.faults.append(Fault("cut_page", times=2, method="GET", after=1))
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert_complete(sandbox, records)
    assert sum(1 for r in api_requests(sandbox) if r.get("fault") == "cut_page") == 2


def test_connection_reset_retried(sandbox: SandboxServer) -> None:
    sandbox.faults.append(Fault("reset", times=2, after=2))
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert_complete(sandbox, records)


def test_a_client_gone_mid_request_leaves_the_sandbox_quiet(
    sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A killed tap resets its connections: no traceback in the test's output for that.
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /1/events.json?cursor=")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.2)
    assert run_tap(make_config(sandbox, **ONE_EVENT)).records()  # still serving
    assert "Traceback" not in capsys.readouterr().err


def test_read_timeout_retried(sandbox: SandboxServer) -> None:
    sandbox.faults.append(Fault("delay", seconds=0.6, times=1, method="GET", after=1))
    records = run_tap(make_config(sandbox, **ONE_EVENT, request_timeout=0.2)).records()
    assert_complete(sandbox, records)


def test_persistent_5xx_stops_clearly_after_bounded_tries(sandbox: SandboxServer) -> None:
    sandbox.faults.append(Fault("status", status=503, times=None))
    with pytest.raises(RetriesExhausted) as info:
        run_tap(make_config(sandbox, **ONE_EVENT, max_retries=3))
    assert len(api_requests(sandbox)) == 4
    line = info.value.one_line()
    assert "kept failing after 4 tries" in line
    assert "HTTP 503" in line


@pytest.mark.parametrize("error", ["Incorrect Usage", "Incorrect Usage: cursor expired"])
def test_cursor_refused_or_expired_rerequests_the_window(
    sandbox: SandboxServer, clean_ids: set[str], error: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The second GET of day 2 (29 events: pages of 25 and 4) is refused.
    assert sandbox.data.day_count("App Launched", dt.date(2024, 1, 2)) == 29
    sandbox.faults.append(
        Fault("fail_code", code=3, error=error, method="GET", after=1, day=20240102)
    )
    run = run_tap(make_config(sandbox, **ONE_EVENT))
    records = run.records()
    # Every event once by id; the window's first page (re-sent) comes twice with the same id.
    assert {r["event_id"] for r in records} == clean_ids
    assert len(records) == len(clean_ids) + 25
    assert "its 25 records already sent are sent again with the same event_id" in caplog.text
    posts = [p["day_from"] for p in api_requests(sandbox, "POST")]
    assert posts == [20240101, 20240102, 20240102, 20240103]


def test_cursor_refused_again_and_again_stops(sandbox: SandboxServer) -> None:
    sandbox.faults.append(
        Fault("fail_code", code=3, error="Incorrect Usage", method="GET", times=None)
    )
    with pytest.raises(CleverTapError, match="refused the export's cursor"):
        run_tap(make_config(sandbox, **ONE_EVENT, max_window_restarts=2))
    assert len(api_requests(sandbox, "POST")) == 3


def test_a_repeated_cursor_stops_naming_the_window(sandbox: SandboxServer) -> None:
    sandbox.faults.append(Fault("repeat_cursor", method="GET", after=1, day=20240102))
    with pytest.raises(CursorLoopError) as info:
        run_tap(make_config(sandbox, **ONE_EVENT))
    line = info.value.one_line()
    assert "window 2024-01-02" in line
    assert "cursor already used" in line


def test_events_out_of_ts_order_are_read_once_and_numbered_as_in_order(
    sandbox: SandboxServer, clean_ids: set[str]
) -> None:
    sandbox.settings.unordered = True
    records = run_tap(make_config(sandbox, **ONE_EVENT)).records()
    assert len(records) == len(clean_ids)
    assert {r["event_id"] for r in records} == clean_ids
    windows = {(r["day_from"], r["day_to"]) for r in api_requests(sandbox, "POST")}
    assert len(api_requests(sandbox, "POST")) == len(windows)  # one step 1 per window


# --- a persistent failure in a backfill -------------------------------------------------------


def test_persistent_failure_on_day_n_keeps_the_bookmark_before_it(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, event_names=["App Launched"], max_retries=1)
    sandbox.faults.append(Fault("status", status=500, times=None, day=20240104))
    seen: list[dict[str, Any]] = []
    with pytest.raises(RetriesExhausted):
        run_tap(config, sink=seen)
    states = [m["value"] for m in seen if m["type"] == "STATE"]
    assert states[-1]["bookmarks"]["app_launched"]["window_to"] == 20240103
    first_records = [m["record"] for m in seen if m["type"] == "RECORD"]

    sandbox.faults.clear()
    rerun = run_tap(config, state=states[-1])
    union = {r["event_id"]: raw_view(r) for r in first_records + rerun.records()}
    expected = expected_rows(sandbox, "App Launched")
    assert content_multiset(list(union.values())) == content_multiset(expected)


# --- stops at once ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused_stop_without_retries(sandbox: SandboxServer, status: int) -> None:
    config = make_config(sandbox, **ONE_EVENT)
    if status == 401:
        config["passcode"] = "not-the-passcode"
    else:
        sandbox.faults.append(Fault("status", status=403, error="Forbidden", times=None))
    with pytest.raises(CleverTapError, match=rf"refused the credentials \(HTTP {status}\)"):
        run_tap(config)
    assert len(api_requests(sandbox)) == 1


def test_export_refused_at_run_time_names_the_event(sandbox: SandboxServer) -> None:
    # CleverTap's answer for an event it will not export (HTTP 400, code 400).
    sandbox.faults.append(
        Fault("status", status=400, error="Export not allowed for this event", method="POST")
    )
    with pytest.raises(CleverTapError) as info:
        run_tap(make_config(sandbox, **ONE_EVENT))
    # Named in event_names: the run ends non-zero, after the other streams.
    assert info.value.one_line().startswith("refused by CleverTap: 'App Launched'")
    assert len(api_requests(sandbox)) == 1


def test_tls_verification_stays_on(sandbox: SandboxServer) -> None:
    tap = TapClevertap(config=make_config(sandbox, **ONE_EVENT))
    stream = tap.streams["app_launched"]
    assert isinstance(stream, EventStream)
    assert stream.requests_session.verify is True
