"""Event discovery (getSchema), stable stream names, exclusions, and refused events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tap_clevertap.config import base_url, config_problems
from tap_clevertap.discovery import NOT_EXPORTABLE_EVENTS, hashed_stream_name
from tap_clevertap.sandbox import Fault, SandboxData, SandboxServer, SandboxSettings
from tap_clevertap.sandbox.dataset import DEFAULT_CATALOG
from tap_clevertap.tap import TapClevertap
from tests.helpers import (
    TapRun,
    api_requests,
    content_multiset,
    expected_rows,
    make_config,
    raw_view,
    run_cli,
    run_tap,
)

TWO_DAYS = {"start_date": "2024-01-01", "end_date": "2024-01-02"}


def discovered_config(server: SandboxServer, **overrides: Any) -> dict[str, Any]:
    config = make_config(server, **{**TWO_DAYS, **overrides})
    config.pop("event_names")
    return config


def test_discovery_lists_every_exportable_event_without_requesting_the_others(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    result = run_cli(discovered_config(sandbox), tmp_path, "--discover")
    assert result.returncode == 0, result.stderr
    catalog = json.loads(result.stdout)
    streams = {entry["tap_stream_id"] for entry in catalog["streams"]}
    assert streams == {
        "app_launched",
        "charged",
        "product_viewed",
        "app_installed",
        "utm_visited",
        "added_to_cart",
        "anadir_al_carrito",
        hashed_stream_name("ऐप खोला"),
    }
    assert hashed_stream_name("ऐप खोला").startswith("event_")
    # One getSchema request; the Notification events it lists are never asked for.
    assert [(r["method"], r["path"], r["query"]) for r in api_requests(sandbox)] == [
        ("GET", "/getSchema", "type=events")
    ]
    assert {"Notification Sent", "Notification Viewed"} <= NOT_EXPORTABLE_EVENTS


def test_a_sync_without_event_names_exports_every_event(sandbox: SandboxServer) -> None:
    run = run_tap(discovered_config(sandbox))
    for event in DEFAULT_CATALOG:
        records = [r for r in run.records() if r["event_name"] == event]
        expected = expected_rows(sandbox, event, *_days())
        assert content_multiset([raw_view(r) for r in records]) == content_multiset(expected)
    posted = {p["event_name"] for p in api_requests(sandbox, "POST")}
    assert posted == set(DEFAULT_CATALOG)


def _days() -> tuple[Any, Any]:
    import datetime as dt  # noqa: PLC0415

    return dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def test_exclude_event_names_takes_exact_names_and_patterns(sandbox: SandboxServer) -> None:
    config = discovered_config(sandbox, exclude_event_names=["Product *", "App Installed", "A?d*"])
    tap = TapClevertap(config=config)
    assert set(tap.streams) == {
        "app_launched",
        "charged",
        "utm_visited",
        "anadir_al_carrito",
        hashed_stream_name("ऐप खोला"),
    }
    # fnmatchcase: patterns are case-sensitive.
    config["exclude_event_names"] = ["charged"]
    assert "charged" in TapClevertap(config=config).streams


CATALOG = ("App Launched", "Product Viewed", "product-viewed", "ऐप खोला", "Profiles", "شراء")


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_stream_names_are_stable_whatever_the_order_of_getschema(
    seed: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    data = SandboxData(catalog=CATALOG, events_per_day=5)
    with SandboxServer(data, SandboxSettings(schema_shuffle_seed=seed)) as server:
        tap = TapClevertap(config=discovered_config(server))
        names = {stream.event_name: name for name, stream in tap.streams.items()}  # type: ignore[attr-defined]
    assert names == {
        "App Launched": "app_launched",
        # Shared once normalised: both hashed, so neither depends on which came first.
        "Product Viewed": hashed_stream_name("Product Viewed"),
        "product-viewed": hashed_stream_name("product-viewed"),
        "ऐप खोला": hashed_stream_name("ऐप खोला"),
        # The tap's own stream name.
        "Profiles": hashed_stream_name("Profiles"),
        "شراء": hashed_stream_name("شراء"),
    }
    assert hashed_stream_name("Product Viewed").startswith("product_viewed_")
    assert len(hashed_stream_name("شراء")) == len("event_") + 8
    warnings = [
        r.getMessage() for r in caplog.records if "get a stream name with a hash" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "'product-viewed' -> product_viewed_" in warnings[0]


def test_every_discovered_event_gets_its_records(tmp_path: Path) -> None:
    data = SandboxData(catalog=CATALOG, events_per_day=5)
    with SandboxServer(data, SandboxSettings()) as server:
        run = run_tap(discovered_config(server, end_date="2024-01-01"))
        for event in CATALOG:
            stream = "app_launched" if event == "App Launched" else hashed_stream_name(event)
            records = run.records(stream)
            assert {r["event_name"] for r in records} == {event}
            assert len(records) == len(expected_rows(server, event, *[_days()[0]] * 2))


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("status", status=401, error="Invalid Credentials"), "refused the credentials"),
        (Fault("status", status=403, error="Forbidden"), "refused the credentials"),
        (Fault("fail_code", code=9, error="Something broke"), "Something broke"),
        (Fault("no_items"), "getSchema answer has no 'events' list"),
        (Fault("empty_items"), "getSchema listed no events"),
    ],
    ids=["401", "403", "fail body", "no events array", "empty list"],
)
def test_a_getschema_failure_ends_discover_and_sync_with_one_line(
    sandbox: SandboxServer, tmp_path: Path, fault: Fault, message: str
) -> None:
    for args in (["--discover"], []):
        sandbox.reset()
        sandbox.faults.append(fault)
        fault.seen = fault.fired = 0
        result = run_cli(discovered_config(sandbox, max_retries=0), tmp_path, *args)
        assert result.returncode == 1, (args, result.stderr[-2000:])
        last = result.stderr.strip().splitlines()[-1]
        assert "discovering the project's events (GET /getSchema?type=events)" in last
        assert message in last
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_nothing_left_after_exclusions_is_an_error(sandbox: SandboxServer, tmp_path: Path) -> None:
    result = run_cli(discovered_config(sandbox, exclude_event_names=["*"]), tmp_path, "--discover")
    assert result.returncode == 1
    assert "narrow exclude_event_names" in result.stderr.strip().splitlines()[-1]


def test_a_selected_stream_getschema_no_longer_lists_is_skipped_with_a_warning(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = discovered_config(sandbox)
    catalog = TapClevertap(config=config).catalog_dict
    sandbox.data.catalog = tuple(name for name in DEFAULT_CATALOG if name != "Charged")
    sandbox.reset()
    run = run_tap(config, catalog=catalog)
    assert run.records("charged") == []
    assert "Charged" not in {p["event_name"] for p in api_requests(sandbox, "POST")}
    warnings = [r.getMessage() for r in caplog.records if "no longer lists" in r.getMessage()]
    assert warnings == [
        "Stream 'charged' is selected in the catalog but CleverTap no longer lists its event "
        "(or the config leaves it out): skipped"
    ]
    assert run.records("app_launched")


REFUSE_UTM = Fault(
    "status",
    status=400,
    error="Export not allowed for this event",
    method="POST",
    event_name="UTM Visited",
    times=None,
)


def test_a_refused_discovered_event_is_skipped_and_the_run_succeeds(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.faults.append(REFUSE_UTM)
    result = run_cli(discovered_config(sandbox), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    run = TapRun(messages)
    assert any(m["type"] == "SCHEMA" and m["stream"] == "utm_visited" for m in messages)
    assert run.records("utm_visited") == []
    assert "window_to" not in run.last_state["bookmarks"].get("utm_visited", {})
    assert len(run.records("charged")) == len(expected_rows(sandbox, "Charged", *_days()))
    # Its first window only: none of its other windows is requested.
    assert [
        p["day_from"] for p in api_requests(sandbox, "POST") if p["event_name"] == "UTM Visited"
    ] == [20240101]
    assert result.stderr.count("CleverTap refused to export 'UTM Visited'") == 1


def test_refused_events_named_in_the_config_end_the_run_non_zero_after_every_stream(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.faults.append(REFUSE_UTM)
    config = make_config(
        sandbox, **TWO_DAYS, event_names=["UTM Visited", "Charged", "Not An Event"]
    )
    result = run_cli(config, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    # In the order the streams ran (the SDK sorts them by name).
    assert "refused by CleverTap: 'Not An Event', 'UTM Visited'" in last
    run = TapRun([json.loads(line) for line in result.stdout.splitlines()])
    assert run.last_state["bookmarks"]["charged"] == {"window_to": 20240102}
    assert run.records("utm_visited") == run.records("not_an_event") == []


def test_global_is_the_eu1_region() -> None:
    assert base_url({"region": "global"}) == base_url({"region": "eu1"})
    config = {"account_id": "A", "passcode": "p", "start_date": "2024-01-01", "region": "global"}
    assert config_problems(config) == []


class _CountingSlots:
    """A stand-in for the tap's request slots that counts the requests holding one."""

    def __init__(self) -> None:
        self.held = 0

    def __enter__(self) -> None:
        self.held += 1

    def __exit__(self, *exc: object) -> None:
        return None


def test_getschema_requests_take_a_request_slot(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = _CountingSlots()
    monkeypatch.setattr(TapClevertap, "request_slots", property(lambda self: slots))
    config = discovered_config(sandbox, include_catalog_streams=True)
    tap = TapClevertap(config=config)
    assert slots.held == 1  # discovery's getSchema
    list(tap.streams["user_properties"].get_records(None))
    assert slots.held == 2
    assert len(api_requests(sandbox)) == 2
