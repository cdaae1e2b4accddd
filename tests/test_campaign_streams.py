"""The campaign family over HTTP against the sandbox: campaigns, campaign_reports,
message_reports, content_blocks and category_groups, their requests, records, state,
skip paths and faults. Record sets are compared exactly with the sandbox's own data."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pytest

from tap_clevertap.errors import CleverTapError, CredentialsRefused
from tap_clevertap.sandbox import Fault, SandboxServer
from tap_clevertap.streams import CampaignStream
from tap_clevertap.streams.content import CONTENT_BLOCK_OVERLAP
from tap_clevertap.tap import TapClevertap
from tests.helpers import make_config, run_tap, select_only

FAMILY = ("campaigns", "campaign_reports", "message_reports", "content_blocks", "category_groups")
# One event for a day, and the campaign family over a short span.
ON = {
    "include_campaign_streams": True,
    "event_names": ["Charged"],
    "end_date": "2024-01-01",
    "campaign_lookahead_days": 20,
}
TODAY = dt.datetime.now(dt.timezone.utc).date()
START = dt.date(2024, 1, 1)
# Six weeks of campaigns and message reports (and one day of events): for the fault matrix.
RECENT = (TODAY - dt.timedelta(days=42)).isoformat()
SHORT = {"start_date": RECENT, "end_date": RECENT, "max_concurrent_requests": 1}


def family_config(sandbox: SandboxServer, **overrides: Any) -> dict[str, Any]:
    return make_config(sandbox, **{**ON, **overrides})


def requests_to(sandbox: SandboxServer, path: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests if r["path"] == path]


def expected_campaigns(sandbox: SandboxServer, lookahead: int = 20) -> list[dict[str, Any]]:
    return sandbox.messaging.campaigns(START, TODAY + dt.timedelta(days=lookahead))


def day(value: int | str) -> dt.date:
    """A YYYYMMDD int or string as a date."""
    return dt.datetime.strptime(str(value), "%Y%m%d").replace(tzinfo=dt.timezone.utc).date()


def span(body: dict[str, Any]) -> int:
    """Days from..to of a request body, both inclusive."""
    return (day(body["to"]) - day(body["from"])).days + 1


def most_at_once(requests: list[dict[str, Any]]) -> int:
    """The most of `requests` the sandbox was serving at the same time."""
    edges = sorted([(r["started"], 1) for r in requests] + [(r["ended"], -1) for r in requests])
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    return most


def as_sent(record: dict[str, Any], added: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record as CleverTap sent the item: the extra object unfolded, added fields dropped."""
    item = {k: v for k, v in record.items() if k != "_sdc_extra" and k not in added}
    return {**item, **record.get("_sdc_extra", {})}


# --- the catalog ------------------------------------------------------------------------------


def test_the_family_is_off_by_default_and_listed_with_keys_and_modes(
    sandbox: SandboxServer,
) -> None:
    assert not set(FAMILY) & set(TapClevertap(config=make_config(sandbox)).streams)
    catalog = TapClevertap(config=family_config(sandbox)).catalog_dict
    entries = {e["tap_stream_id"]: e for e in catalog["streams"]}
    assert set(FAMILY) <= set(entries)
    keys = {name: list(entries[name]["key_properties"]) for name in FAMILY}
    assert keys == {
        "campaigns": ["id"],
        "campaign_reports": ["id"],
        "message_reports": ["message_id"],
        "content_blocks": ["id"],
        "category_groups": ["key"],
    }
    modes = {name: entries[name]["replication_method"] for name in FAMILY}
    assert modes == dict.fromkeys(FAMILY, "FULL_TABLE") | {"content_blocks": "INCREMENTAL"}
    assert entries["content_blocks"]["replication_key"] == "modified_at"
    # Discovery asked nothing of the campaign endpoints.
    assert {r["path"] for r in sandbox.requests} <= {"/getSchema"}


def test_an_event_stream_keeps_the_name_campaigns_while_the_family_is_off(
    sandbox: SandboxServer,
) -> None:
    sandbox.data.catalog = (*sandbox.data.catalog, "Campaigns")
    config = make_config(sandbox)
    config.pop("event_names")
    assert "campaigns" in TapClevertap(config=config).streams
    streams = TapClevertap(config={**config, "include_campaign_streams": True}).streams
    renamed = [s for s in streams.values() if getattr(s, "event_name", None) == "Campaigns"]
    assert len(renamed) == 1
    assert renamed[0].name.startswith("campaigns_")


# --- campaigns and their reports -------------------------------------------------------------


def test_campaigns_are_listed_in_31_day_windows_through_the_look_ahead(
    sandbox: SandboxServer,
) -> None:
    run = run_tap(family_config(sandbox))
    bodies = [json.loads(r["body"]) for r in requests_to(sandbox, "/1/targets/list.json")]
    assert bodies[0]["from"] == 20240101
    last = TODAY + dt.timedelta(days=20)
    assert bodies[-1]["to"] == int(last.strftime("%Y%m%d"))
    for before, after in itertools.pairwise(bodies):
        assert day(after["from"]) - dt.timedelta(days=1) == day(before["to"])
    assert max(span(b) for b in bodies) == 31
    assert all(isinstance(b["from"], int) and isinstance(b["to"], int) for b in bodies)
    expected = expected_campaigns(sandbox)
    assert [as_sent(r) for r in run.records("campaigns")] == expected
    assert any(c["status"] == "scheduled" for c in expected), "no campaign in the look-ahead"


@pytest.mark.parametrize("answer", ["409", "500", "200"])
def test_campaigns_without_a_result_yet_are_skipped_without_retries(
    sandbox: SandboxServer, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.settings.no_result_answer = answer
    caplog.set_level(logging.INFO)
    run = run_tap(family_config(sandbox))
    campaigns = expected_campaigns(sandbox)
    results = {c["id"]: sandbox.messaging.campaign_result(c["id"]) for c in campaigns}
    with_result = {i: r for i, r in results.items() if r is not None}
    assert 0 < len(with_result) < len(campaigns)
    reports = run.records("campaign_reports")
    assert {r["id"]: as_sent(r, ("id",)) for r in reports} == with_result
    assert len(reports) == len(with_result)
    # One request per campaign: "no result yet" (even as HTTP 500) spends no retry.
    asked = [json.loads(r["body"])["id"] for r in requests_to(sandbox, "/1/targets/result.json")]
    assert sorted(asked) == sorted(c["id"] for c in campaigns)
    lines = [r.getMessage() for r in caplog.records if "without a result yet" in r.getMessage()]
    skipped = len(campaigns) - len(with_result)
    assert lines == [
        f"campaign_reports: {len(campaigns)} campaign(s) asked, {skipped} without a result "
        "yet (not completed, or scheduled later): skipped"
    ]
    assert all(r.levelno < logging.WARNING for r in caplog.records if "result" in r.getMessage())


def test_a_500_that_is_not_no_result_is_retried(sandbox: SandboxServer) -> None:
    campaign = next(c for c in expected_campaigns(sandbox) if c["status"] == "completed")
    sandbox.faults.append(Fault("status", path="/1/targets/result.json", status=500, times=2))
    run = run_tap(family_config(sandbox, max_concurrent_requests=1))
    assert campaign["id"] in {r["id"] for r in run.records("campaign_reports")}
    faulted = [r for r in requests_to(sandbox, "/1/targets/result.json") if r.get("fault")]
    assert len(faulted) == 2


@pytest.mark.parametrize("limit", [1, 3])
def test_reports_are_asked_concurrently_within_the_request_slots(
    sandbox: SandboxServer, limit: int
) -> None:
    sandbox.settings.messaging_delay = 0.02
    config = family_config(sandbox, start_date=RECENT, end_date=RECENT)
    run = run_tap({**config, "max_concurrent_requests": limit})
    reports = requests_to(sandbox, "/1/targets/result.json")
    assert reports
    assert len(run.records("campaign_reports")) > 0
    # In flight at once, from the sandbox's clock (it answers 429 over 3).
    assert most_at_once(reports) == limit
    assert all(r["status"] != 429 for r in sandbox.requests)


def test_reports_alone_still_list_the_campaigns_but_emit_none(sandbox: SandboxServer) -> None:
    config = family_config(sandbox)
    run = run_tap(config, catalog=select_only(config, {"campaign_reports"}))
    assert run.records("campaigns") == []
    assert run.records("campaign_reports")
    assert {m["stream"] for m in run.messages if m["type"] == "RECORD"} == {"campaign_reports"}


# --- message reports -------------------------------------------------------------------------


def test_message_reports_in_14_day_windows_with_the_key_renamed(sandbox: SandboxServer) -> None:
    run = run_tap(family_config(sandbox))
    bodies = [json.loads(r["body"]) for r in requests_to(sandbox, "/1/message/report.json")]
    assert all(isinstance(b["from"], str) and isinstance(b["to"], str) for b in bodies)
    assert bodies[0]["from"] == "20240101"
    assert bodies[-1]["to"] == TODAY.strftime("%Y%m%d")
    assert max(span(b) for b in bodies) == 14
    expected = sandbox.messaging.message_reports(START, TODAY)
    records = run.records("message_reports")
    assert not any("message id" in r or "message id" in r.get("_sdc_extra", {}) for r in records)
    renamed = [{**as_sent(r, ("message_id",)), "message id": r["message_id"]} for r in records]
    assert renamed == expected
    # Dashboard campaigns appear here only; every API campaign's id appears here too.
    listed = {c["id"] for c in expected_campaigns(sandbox, 0)}
    assert listed < {r["message_id"] for r in records}


def test_a_message_report_window_that_keeps_failing_ends_that_stream_only(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The second window (2024-01-15..28) answers HTTP 500 every time.
    sandbox.faults.append(
        Fault("status", path="/1/message/report.json", day=20240120, status=500, times=None)
    )
    run = run_tap(family_config(sandbox, max_retries=2))
    failing = [r for r in requests_to(sandbox, "/1/message/report.json") if r.get("fault")]
    assert len(failing) == 3  # max_retries + 1, then no more windows
    assert len(requests_to(sandbox, "/1/message/report.json")) == 4
    first_window = sandbox.messaging.message_reports(START, dt.date(2024, 1, 14))
    assert [r["message_id"] for r in run.records("message_reports")] == [
        m["message id"] for m in first_window
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "message_reports" in w] == [
        "message_reports: window 2024-01-15..2024-01-28: CleverTap kept failing after 3 tries "
        "(CleverTap server error (HTTP 500)); this stream ends here, without its windows from "
        "2024-01-15 on; the other streams go on"
    ]
    # The others completed.
    assert len(run.records("content_blocks")) == len(sandbox.messaging.content_blocks())
    assert run.records("category_groups")


# --- content blocks --------------------------------------------------------------------------


def content_config(sandbox: SandboxServer) -> tuple[dict[str, Any], dict[str, Any]]:
    config = family_config(sandbox)
    return config, select_only(config, {"content_blocks"})


def block_queries(sandbox: SandboxServer) -> list[dict[str, list[str]]]:
    return [parse_qs(r["query"]) for r in requests_to(sandbox, "/v1/contentBlock/list")]


def test_the_first_run_reads_every_block_page_by_page(sandbox: SandboxServer) -> None:
    config, catalog = content_config(sandbox)
    run = run_tap(config, catalog=catalog)
    blocks = sandbox.messaging.content_blocks()
    records = run.records("content_blocks")
    added = ("created_at", "updated_at", "modified_at")
    assert [as_sent(r, added) for r in records] == blocks
    queries = block_queries(sandbox)
    assert [q["pageNumber"] for q in queries] == [["1"], ["2"], ["3"]]
    assert all(q["pageSize"] == ["100"] for q in queries)
    assert not any("updatedFrom" in q or "createdAtFrom" in q for q in queries)
    for record in records:
        source = record.get("updatedAt") or record["createdAt"]
        assert record["modified_at"] == source.replace("Z", "+00:00")
    unedited = [r for r in records if "updatedAt" not in r]
    assert unedited
    assert all(r["updated_at"] is None for r in unedited)
    bookmark = run.last_state["bookmarks"]["content_blocks"]
    assert bookmark == {
        "replication_key": "modified_at",
        "replication_key_value": max(r["modified_at"] for r in records),
    }
    # The other full-table streams write no bookmark.
    for name in set(FAMILY) - {"content_blocks"}:
        assert not run.last_state["bookmarks"].get(name)


def test_a_rerun_asks_only_for_blocks_changed_since_and_loses_none(
    sandbox: SandboxServer,
) -> None:
    config, catalog = content_config(sandbox)
    first = run_tap(config, catalog=catalog)
    state = first.last_state
    latest = dt.datetime.fromisoformat(
        state["bookmarks"]["content_blocks"]["replication_key_value"]
    )
    latest_id = max(first.records("content_blocks"), key=lambda r: r["modified_at"])["id"]
    # After the first run: one block saved at the very instant of the bookmark, two edited
    # later, one created (never edited).
    same_instant = next(r["id"] for r in first.records("content_blocks") if r["id"] != latest_id)
    sandbox.messaging.edit_content_block(same_instant, latest)
    sandbox.messaging.edit_content_block(5001, latest + dt.timedelta(days=3))
    sandbox.messaging.edit_content_block(5002, latest + dt.timedelta(days=4))
    created = sandbox.messaging.add_content_block(latest + dt.timedelta(days=5))
    sandbox.reset()

    second = run_tap(config, state=state, catalog=catalog)
    since = (latest - CONTENT_BLOCK_OVERLAP).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    queries = block_queries(sandbox)
    assert [(q.get("updatedFrom"), q.get("createdAtFrom")) for q in queries] == [
        ([since], None),
        (None, [since]),
    ]
    ids = [r["id"] for r in second.records("content_blocks")]
    assert len(ids) == len(set(ids))
    assert {same_instant, 5001, 5002, created, latest_id} <= set(ids)
    # Only what changed since the bookmark less the overlap.
    changed = {
        b["id"]
        for b in sandbox.messaging.content_blocks()
        if max(str(b.get("updatedAt") or ""), str(b["createdAt"])) >= since
    }
    assert set(ids) == changed
    assert len(ids) < 10
    # Nothing lost: every block, as it is now, is in the union of both runs (latest wins).
    landed = {r["id"]: r for r in first.records("content_blocks")}
    landed.update({r["id"]: r for r in second.records("content_blocks")})
    added = ("created_at", "updated_at", "modified_at")
    assert [as_sent(landed[i], added) for i in sorted(landed)] == sandbox.messaging.content_blocks()
    new_bookmark = second.last_state["bookmarks"]["content_blocks"]["replication_key_value"]
    assert new_bookmark == landed[created]["modified_at"]


def test_a_run_that_fails_mid_pages_keeps_the_old_bookmark_and_a_rerun_loses_nothing(
    sandbox: SandboxServer,
) -> None:
    config, catalog = content_config(sandbox)
    sandbox.faults.append(
        Fault("reset", path="/v1/contentBlock/list", after=1, times=None)  # page 2 on
    )
    messages: list[dict[str, Any]] = []
    with pytest.raises(CleverTapError):
        run_tap({**config, "max_retries": 1}, catalog=catalog, sink=messages)
    partial = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert len(partial) == 100
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert not any(
        s["bookmarks"].get("content_blocks", {}).get("replication_key_value") for s in states
    )
    sandbox.reset()
    rerun = run_tap(config, state=states[-1] if states else None, catalog=catalog)
    assert {r["id"] for r in rerun.records("content_blocks")} == {
        b["id"] for b in sandbox.messaging.content_blocks()
    }


def test_content_blocks_not_enabled_skip_the_stream_with_one_warning(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.settings.content_blocks_enabled = False
    run = run_tap(family_config(sandbox))
    assert run.records("content_blocks") == []
    assert run.records("campaigns")
    assert run.records("category_groups")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "content_blocks" in w] == [
        "content_blocks: Content Blocks isn't enabled on this CleverTap account (HTTP 403): "
        "skipped; the other streams go on"
    ]
    assert len(requests_to(sandbox, "/v1/contentBlock/list")) == 1
    assert not run.last_state["bookmarks"].get("content_blocks")


def test_a_bad_passcode_still_stops_before_any_record(sandbox: SandboxServer) -> None:
    config = family_config(sandbox, passcode="not-the-passcode")
    messages: list[dict[str, Any]] = []
    with pytest.raises(CredentialsRefused):
        run_tap(config, catalog=select_only(config, set(FAMILY)), sink=messages)
    assert not [m for m in messages if m["type"] == "RECORD"]
    assert len(sandbox.requests) == 1


# --- category groups -------------------------------------------------------------------------


def test_category_groups_are_the_list_keyed_on_key(sandbox: SandboxServer) -> None:
    run = run_tap(family_config(sandbox))
    assert [as_sent(r) for r in run.records("category_groups")] == (
        sandbox.messaging.category_groups()
    )
    assert requests_to(sandbox, "/category-groups")[0]["method"] == "GET"


# --- faults on every endpoint ----------------------------------------------------------------

PATHS = {
    "campaigns": "/1/targets/list.json",
    "campaign_reports": "/1/targets/result.json",
    "message_reports": "/1/message/report.json",
    "content_blocks": "/v1/contentBlock/list",
    "category_groups": "/category-groups",
}
SURVIVED = [
    {"action": "status", "status": 429},
    {"action": "status", "status": 503},
    {"action": "html", "status": 502},
    {"action": "reset"},
    {"action": "truncate"},
    {"action": "fail_code", "code": 1, "error": "Throttled"},
]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """What a run without faults emits, per stream (module-wide: the data is seeded)."""
    with SandboxServer() as server:
        run = run_tap(family_config(server, **SHORT))
        return {name: run.records(name) for name in FAMILY}


@pytest.mark.parametrize("fault", SURVIVED, ids=lambda f: f"{f['action']}-{f.get('status')}")
@pytest.mark.parametrize("stream", list(PATHS))
def test_faults_on_each_endpoint_are_survived(
    stream: str, fault: dict[str, Any], clean: dict[str, list[dict[str, Any]]]
) -> None:
    with SandboxServer() as sandbox:
        sandbox.faults.append(Fault(**fault, path=PATHS[stream], times=2))
        run = run_tap(family_config(sandbox, **SHORT))
        assert sum(1 for r in sandbox.requests if r.get("fault")) == 2
        for name in FAMILY:
            assert run.records(name) == clean[name], name
            assert clean[name], name


@pytest.mark.parametrize("stream", list(PATHS))
def test_a_fail_body_on_each_endpoint_ends_the_run_with_one_line(
    sandbox: SandboxServer, stream: str
) -> None:
    sandbox.faults.append(
        Fault("fail_code", path=PATHS[stream], code=5, error="Something is off", times=None)
    )
    with pytest.raises(CleverTapError) as info:
        run_tap(family_config(sandbox, **SHORT))
    line = info.value.one_line()
    assert line.startswith(f"stream {stream} (")
    assert "CleverTap refused the request (HTTP 200, code 5): Something is off" in line


def test_concurrent_calls_come_back_in_order_and_a_failure_stops_the_rest(
    sandbox: SandboxServer,
) -> None:
    stream = TapClevertap(config=family_config(sandbox, max_concurrent_requests=3)).streams[
        "campaigns"
    ]
    assert isinstance(stream, CampaignStream)
    started: list[int] = []
    lock = threading.Lock()
    at_once = most = 0

    def slow_square(n: int) -> int:
        nonlocal at_once, most
        with lock:
            started.append(n)
            at_once += 1
            most = max(most, at_once)
        time.sleep(0.01 * (n % 3))
        with lock:
            at_once -= 1
        if n == 5:
            raise ValueError("five")
        return n * n

    results = stream.concurrently(slow_square, list(range(200)))
    assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="five"):
        next(results)
    results.close()
    time.sleep(0.1)
    assert most == 3
    assert len(started) < 200  # no call starts once the caller has stopped
