"""The Get Events flags, the profiles stream and the schema catalog streams, over HTTP."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import requests

from tap_clevertap.errors import EventsRefused
from tap_clevertap.sandbox import DEFAULT_ACCOUNT_ID, DEFAULT_PASSCODE, SandboxServer
from tap_clevertap.sandbox.dataset import USER_PROPERTIES
from tap_clevertap.streams.profiles import clevertap_id
from tap_clevertap.tap import TapClevertap
from tests.helpers import (
    TapRun,
    api_requests,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    run_tap,
)

DAY1, DAY3 = dt.date(2024, 1, 1), dt.date(2024, 1, 3)
THREE_DAYS = {"event_names": ["Charged"], "end_date": "2024-01-03"}


def post_flags(server: SandboxServer, path: str) -> list[str]:
    return [p["query"] for p in api_requests(server, "POST") if p["path"] == path]


# --- the Get Events flags, explicit -----------------------------------------------------------


def test_every_flag_is_sent_false_by_default_and_nothing_is_added(sandbox: SandboxServer) -> None:
    records = run_tap(make_config(sandbox, **THREE_DAYS)).records()
    assert set(post_flags(sandbox, "/1/events.json")) == {
        "batch_size=25&app=false&events=false&profile=false"
    }
    expected = expected_rows(sandbox, "Charged", DAY1, DAY3)
    assert content_multiset([raw_view(r) for r in records]) == content_multiset(expected)
    assert not any({"events", "profileData", "make"} & set(r["profile"]) for r in records)


@pytest.mark.parametrize(
    ("setting", "flag", "key"),
    [
        ("include_app_fields", "app", "make"),
        ("include_event_summary", "events", "events"),
        ("include_profile_fields", "profile", "profileData"),
    ],
)
def test_each_flag_adds_its_fields_and_no_event_id_changes(
    sandbox: SandboxServer, setting: str, flag: str, key: str
) -> None:
    plain = run_tap(make_config(sandbox, **THREE_DAYS)).records()
    sandbox.reset()
    flagged = run_tap(make_config(sandbox, **THREE_DAYS, **{setting: True})).records()
    assert all(f"{flag}=true" in q for q in post_flags(sandbox, "/1/events.json"))
    expected = expected_rows(sandbox, "Charged", DAY1, DAY3, **{flag: True})
    assert content_multiset([raw_view(r) for r in flagged]) == content_multiset(expected)
    assert all(key in r["profile"] for r in flagged)
    # The id depends on nothing a flag changes: record for record, the same ids.
    assert [r["event_id"] for r in flagged] == [r["event_id"] for r in plain]


def test_the_sandbox_applies_the_documented_defaults_when_a_flag_is_omitted(
    sandbox: SandboxServer,
) -> None:
    headers = {
        "X-CleverTap-Account-Id": DEFAULT_ACCOUNT_ID,
        "X-CleverTap-Passcode": DEFAULT_PASSCODE,
        "Content-Type": "application/json",
    }
    body = {"event_name": "Charged", "from": 20240101, "to": 20240101}
    url = f"{sandbox.url}/1/events.json"
    cursor = requests.post(url, params={"batch_size": 5}, json=body, headers=headers, timeout=10)
    page = requests.get(f"{url}?cursor={cursor.json()['cursor']}", headers=headers, timeout=10)
    profile = page.json()["records"][0]["profile"]
    # Current docs: events and profile default to true, app to false.
    assert "events" in profile
    assert "profileData" in profile
    assert "make" not in profile


# --- profiles ---------------------------------------------------------------------------------

PROFILES = {**THREE_DAYS, "profile_event_names": ["Charged", "App Launched"]}


def expected_profiles(server: SandboxServer, event: str, day: dt.date) -> list[dict[str, Any]]:
    return server.data.profiles(event, day, day, app=True, events=True, profile=True)


def test_no_profiles_stream_unless_profile_event_names_is_set(sandbox: SandboxServer) -> None:
    assert set(TapClevertap(config=make_config(sandbox)).streams) == {"app_launched", "charged"}
    tap = TapClevertap(config=make_config(sandbox, **PROFILES))
    catalog = {entry["tap_stream_id"]: entry for entry in tap.catalog_dict["streams"]}
    assert set(catalog) == {"charged", "profiles"}
    entry = catalog["profiles"]
    assert list(entry["key_properties"]) == ["clevertap_id"]
    assert entry["replication_key"] == "window_to"
    assert entry["replication_method"] == "INCREMENTAL"
    assert "export time" in entry["schema"]["description"]


def test_profiles_are_complete_and_keyed_by_clevertap_id(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    run = run_tap(make_config(sandbox, **PROFILES))
    assert set(post_flags(sandbox, "/1/profiles.json")) == {
        "batch_size=25&app=true&events=true&profile=true"
    }
    records = run.records("profiles")
    skipped = 0
    for day_number in range(3):
        day = DAY1 + dt.timedelta(days=day_number)
        window_to = int(day.strftime("%Y%m%d"))
        for event in ("Charged", "App Launched"):
            landed = [r for r in records if r["window_to"] == window_to]
            expected = expected_profiles(sandbox, event, day)
            keyed = [p for p in expected if clevertap_id(p) is not None]
            skipped += len(expected) - len(keyed)
            # Each user who did the event that day, as sent, plus the key and the window.
            assert {r["clevertap_id"] for r in landed} >= {clevertap_id(p) for p in keyed}
            by_key = {r["clevertap_id"]: r for r in landed}
            for profile in keyed:
                got = dict(by_key[clevertap_id(profile)])
                assert got.pop("window_to") == window_to
                assert got.pop("clevertap_id") == clevertap_id(profile)
                assert got == profile
        assert len(landed) == sum(
            len([p for p in expected_profiles(sandbox, e, day) if clevertap_id(p)])
            for e in ("Charged", "App Launched")
        )
    # The sandbox's variety is there: no top-level objectId, two devices, no identity.
    assert any("objectId" not in r and r["clevertap_id"] for r in records)
    assert any(len(r["platformInfo"]) == 2 for r in records)
    assert any("identity" not in r for r in records)
    assert all(
        r["clevertap_id"] == (r.get("objectId") or r["platformInfo"][0]["objectId"])
        for r in records
    )
    # Profiles without any objectId are skipped, and said so once per window, with a count.
    assert skipped > 0
    warnings = [r.getMessage() for r in caplog.records if "without any objectId" in r.getMessage()]
    assert sum(int(w.split(": ")[2].split()[0]) for w in warnings) == skipped
    assert run.last_state["bookmarks"]["profiles"] == {"window_to": 20240103}


def test_profiles_are_incremental_across_runs(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, **PROFILES)
    first = run_tap(config)
    sandbox.reset()
    second = run_tap(config, state=first.last_state)
    asked = sorted(
        (p["event_name"], p["day_from"], p["day_to"])
        for p in api_requests(sandbox, "POST")
        if p["path"] == "/1/profiles.json"
    )
    assert asked == [("App Launched", 20240103, 20240103), ("Charged", 20240103, 20240103)]
    assert {r["clevertap_id"] for r in second.records("profiles")} <= {
        r["clevertap_id"] for r in first.records("profiles")
    }
    assert second.last_state["bookmarks"]["profiles"] == {"window_to": 20240103}


def test_a_refused_profile_event_is_skipped_and_fails_the_run_at_the_end(
    sandbox: SandboxServer,
) -> None:
    sink: list[dict[str, Any]] = []
    config = make_config(sandbox, **{**PROFILES, "profile_event_names": ["Nope", "Charged"]})
    with pytest.raises(EventsRefused, match=r"^refused by CleverTap: 'Nope'"):
        run_tap(config, sink=sink)
    run = TapRun(sink)
    assert run.records("profiles")
    assert run.last_state["bookmarks"]["profiles"] == {"window_to": 20240103}
    nope = [p for p in api_requests(sandbox, "POST") if p["event_name"] == "Nope"]
    assert len(nope) == 1


# --- schema catalogs --------------------------------------------------------------------------


def test_catalog_streams_hold_the_whole_catalogs_every_run(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, include_catalog_streams=True)
    tap = TapClevertap(config=config)
    catalog = {entry["tap_stream_id"]: entry for entry in tap.catalog_dict["streams"]}
    for name in ("event_schema", "user_properties"):
        assert catalog[name]["replication_method"] == "FULL_TABLE"
        assert list(catalog[name]["key_properties"]) == ["name"]
    for _ in range(2):  # full table: the same whole catalog again
        run = run_tap(config)
        events = run.records("event_schema")
        assert [r["item"] for r in events] == sandbox.data.schema_events()
        assert [r["name"] for r in events] == [i["name"] for i in sandbox.data.schema_events()]
        assert [r["name"] for r in run.records("user_properties")] == list(USER_PROPERTIES)
    gets = [r["query"] for r in api_requests(sandbox, "GET") if r["path"] == "/getSchema"]
    assert sorted(gets) == ["type=events"] * 2 + ["type=userProperties"] * 2


def test_no_catalog_streams_by_default(sandbox: SandboxServer) -> None:
    run = run_tap(make_config(sandbox, end_date="2024-01-01"))
    assert not [r for r in api_requests(sandbox) if r["path"] == "/getSchema"]
    assert {m["stream"] for m in run.messages if m["type"] == "SCHEMA"} == {
        "app_launched",
        "charged",
    }
    assert json.dumps(run.last_state)
