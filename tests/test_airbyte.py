"""`source-clevertap`: the tap under the Airbyte protocol, against the sandbox over HTTP.

Every message is validated against Airbyte's published protocol models
(`airbyte-protocol-models-pdv2`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from airbyte_protocol.models import AirbyteMessage

from tap_clevertap.config import CONFIG_SCHEMA, TAP_SETTINGS
from tap_clevertap.sandbox import Fault, SandboxServer
from tests.helpers import api_requests, capture_output, make_config, run_tap

SOURCE = [sys.executable, "-m", "tap_clevertap.airbyte"]
TWO = {"event_names": ["App Launched", "Charged"], "end_date": "2024-01-03"}


def source(
    tmp_path: Path, *args: str, config: dict[str, Any] | None = None, **files: Any
) -> tuple[int, list[dict[str, Any]]]:
    """Run `source-clevertap`; its exit code and its messages, each validated."""
    argv = [*SOURCE, *args]
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        argv += ["--config", str(tmp_path / "config.json")]
    for name, content in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        argv += [f"--{name}", str(path)]
    result = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    capture_output(result.stdout.decode() + result.stderr.decode())
    messages = []
    for line in result.stdout.decode().splitlines():
        message = json.loads(line)  # every line a whole JSON message
        AirbyteMessage.model_validate(message)
        messages.append(message)
    return result.returncode, messages


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == kind]


def configured(*names: str, mode: str = "incremental") -> dict[str, Any]:
    return {
        "streams": [
            {
                "stream": {"name": name, "json_schema": {}, "supported_sync_modes": [mode]},
                "sync_mode": mode,
                "destination_sync_mode": "append",
            }
            for name in names
        ]
    }


def statuses(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (
            m["trace"]["stream_status"]["stream_descriptor"]["name"],
            m["trace"]["stream_status"]["status"],
        )
        for m in of_type(messages, "TRACE")
        if m["trace"]["type"] == "STREAM_STATUS"
    ]


def errors(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m["trace"]["error"] for m in of_type(messages, "TRACE") if m["trace"]["type"] == "ERROR"
    ]


def test_spec_needs_no_config_and_mirrors_the_tap_settings(tmp_path: Path) -> None:
    code, messages = source(tmp_path, "spec")
    assert code == 0
    (message,) = messages
    spec = message["spec"]
    schema = spec["connectionSpecification"]
    jsonschema.Draft7Validator.check_schema(schema)
    assert list(schema["properties"]) == list(TAP_SETTINGS)
    assert schema["required"] == ["account_id", "passcode", "start_date"]
    assert schema["properties"]["passcode"]["airbyte_secret"] is True
    for name in TAP_SETTINGS:
        tap_prop = CONFIG_SCHEMA["properties"][name]
        assert schema["properties"][name].get("default") == tap_prop.get("default"), name
        assert schema["properties"][name].get("description") == tap_prop.get("description")
    assert spec["supportsIncremental"] is True


def test_check_succeeds_with_one_getschema_request(sandbox: SandboxServer, tmp_path: Path) -> None:
    code, messages = source(tmp_path, "check", config=make_config(sandbox))
    assert code == 0
    assert messages[-1]["connectionStatus"] == {"status": "SUCCEEDED"}
    assert [(r["method"], r["path"]) for r in api_requests(sandbox)] == [("GET", "/getSchema")]


@pytest.mark.parametrize(
    ("change", "message", "requests"),
    [
        ({"passcode": "wrong-passcode"}, "CleverTap refused the credentials (HTTP 401)", 1),
        ({"batch_size": 9000}, "9000 is greater than the maximum of 5000", 0),
        ({"start_date": "2024-02-30"}, "`start_date` '2024-02-30' is not a date", 0),
    ],
)
def test_check_fails_with_the_tap_s_one_line_and_exit_0(
    sandbox: SandboxServer, tmp_path: Path, change: dict[str, Any], message: str, requests: int
) -> None:
    code, messages = source(tmp_path, "check", config=make_config(sandbox, **change))
    assert code == 0
    status = messages[-1]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert message in status["message"]
    assert "wrong-passcode" not in status["message"]
    assert len(api_requests(sandbox)) == requests


def test_discover_lists_every_stream_with_its_sync_modes(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = make_config(sandbox, profile_event_names=["Charged"], include_catalog_streams=True)
    code, messages = source(tmp_path, "discover", config=config)
    assert code == 0
    streams = {s["name"]: s for s in of_type(messages, "CATALOG")[0]["catalog"]["streams"]}
    assert set(streams) == {
        "app_launched",
        "charged",
        "profiles",
        "event_schema",
        "user_properties",
    }
    assert streams["charged"]["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert streams["charged"]["source_defined_primary_key"] == [["event_id"]]
    assert streams["charged"]["source_defined_cursor"] is True
    assert streams["charged"]["default_cursor_field"] == ["ts"]
    assert streams["profiles"]["source_defined_primary_key"] == [["clevertap_id"]]
    assert streams["profiles"]["default_cursor_field"] == ["window_to"]
    assert streams["event_schema"]["supported_sync_modes"] == ["full_refresh"]
    assert "event_id" in streams["charged"]["json_schema"]["properties"]


def test_read_emits_what_the_tap_emits_with_states_after_whole_windows(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = make_config(sandbox, **TWO)
    singer = run_tap(config)
    sandbox.reset()
    code, messages = source(
        tmp_path, "read", config=config, catalog=configured("app_launched", "charged")
    )
    assert code == 0
    records = [m["record"] for m in of_type(messages, "RECORD")]
    assert all(isinstance(r["emitted_at"], int) for r in records)
    for stream in ("app_launched", "charged"):
        assert [r["data"] for r in records if r["stream"] == stream] == singer.records(stream)
    states = [m["state"]["stream"] for m in of_type(messages, "STATE")]
    assert all(m["state"]["type"] == "STREAM" for m in of_type(messages, "STATE"))
    assert [(s["stream_descriptor"]["name"], s["stream_state"]) for s in states] == [
        (stream, {"window_to": day})
        for stream in ("app_launched", "charged")
        for day in (20240101, 20240102, 20240103)
    ]
    assert statuses(messages) == [
        ("app_launched", "STARTED"),
        ("app_launched", "RUNNING"),
        ("app_launched", "COMPLETE"),
        ("charged", "STARTED"),
        ("charged", "RUNNING"),
        ("charged", "COMPLETE"),
    ]
    # The tap's log lines come as LOG messages.
    assert any("window 2024-01-01 done" in m["log"]["message"] for m in of_type(messages, "LOG"))


def test_read_takes_the_state_back_and_full_refresh_ignores_it(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = make_config(sandbox, **TWO)
    code, first = source(tmp_path, "read", config=config, catalog=configured("charged"))
    assert code == 0
    state = [m["state"] for m in of_type(first, "STATE")][-1:]
    sandbox.reset()
    code, second = source(
        tmp_path, "read", config=config, catalog=configured("charged"), state=state
    )
    assert code == 0
    assert [(p["day_from"], p["day_to"]) for p in api_requests(sandbox, "POST")] == [
        (20240103, 20240103)
    ]
    # Nothing changed: no STATE goes out for an unchanged bookmark.
    assert of_type(second, "STATE") == []
    sandbox.reset()
    code, full = source(
        tmp_path,
        "read",
        config=config,
        catalog=configured("charged", mode="full_refresh"),
        state=state,
    )
    assert code == 0
    assert len(api_requests(sandbox, "POST")) == 3
    assert len(of_type(full, "RECORD")) == len(of_type(first, "RECORD"))


@pytest.mark.parametrize("state", [[], None])
def test_an_empty_state_means_none(sandbox: SandboxServer, tmp_path: Path, state: Any) -> None:
    files = {"catalog": configured("charged")} | ({"state": state} if state is not None else {})
    code, messages = source(tmp_path, "read", config=make_config(sandbox, **TWO), **files)
    assert code == 0
    assert of_type(messages, "RECORD")


@pytest.mark.parametrize(
    "state",
    [{"bookmarks": {"charged": {"window_to": 20240101}}}, [{"type": "GLOBAL", "global": {}}]],
)
def test_any_other_state_shape_is_a_config_error(
    sandbox: SandboxServer, tmp_path: Path, state: Any
) -> None:
    code, messages = source(
        tmp_path,
        "read",
        config=make_config(sandbox, **TWO),
        catalog=configured("charged"),
        state=state,
    )
    assert code == 1
    (error,) = errors(messages)
    assert error["failure_type"] == "config_error"
    assert "per-stream state messages" in error["message"]
    assert api_requests(sandbox) == []


@pytest.mark.parametrize(
    ("config_change", "faults", "failure_type", "message"),
    [
        ({"batch_size": 0}, [], "config_error", "0 is less than the minimum of 1"),
        ({"passcode": "wrong-passcode"}, [], "config_error", "refused the credentials"),
        (
            {"max_retries": 1},
            [Fault("status", status=503, times=None)],
            "transient_error",
            "CleverTap kept failing after 2 tries",
        ),
    ],
    ids=["bad config", "refused credentials", "server keeps failing"],
)
def test_failures_end_with_an_error_trace_of_their_type(
    sandbox: SandboxServer,
    tmp_path: Path,
    config_change: dict[str, Any],
    faults: list[Fault],
    failure_type: str,
    message: str,
) -> None:
    sandbox.faults += faults
    config = make_config(sandbox, **TWO, **config_change)
    code, messages = source(tmp_path, "read", config=config, catalog=configured("charged"))
    assert code == 1
    (error,) = errors(messages)
    assert error["failure_type"] == failure_type
    assert message in error["message"]
    assert all("wrong-passcode" not in json.dumps(m) for m in messages)
    if faults:  # the stream was running: it ends INCOMPLETE before the error
        assert statuses(messages)[-1] == ("charged", "INCOMPLETE")


def test_a_discover_failure_is_an_error_trace(sandbox: SandboxServer, tmp_path: Path) -> None:
    config = make_config(sandbox, passcode="wrong-passcode")
    config.pop("event_names")
    code, messages = source(tmp_path, "discover", config=config)
    assert code == 1
    (error,) = errors(messages)
    assert error["failure_type"] == "config_error"
    assert "discovering the project's events" in error["message"]


def test_refused_streams_end_incomplete_and_named_ones_fail_the_read(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = make_config(sandbox, event_names=["Charged", "Nope"], end_date="2024-01-02")
    code, messages = source(tmp_path, "read", config=config, catalog=configured("charged", "nope"))
    assert code == 1
    assert ("nope", "INCOMPLETE") in statuses(messages)
    assert ("charged", "COMPLETE") in statuses(messages)
    warnings = [m for m in of_type(messages, "LOG") if m["log"]["level"] == "WARN"]
    assert any("refused to export 'Nope'" in m["log"]["message"] for m in warnings)
    (error,) = errors(messages)
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("refused by CleverTap: 'Nope'")
    assert messages[-1]["type"] == "TRACE"  # after the last stream

    # Discovered events CleverTap refuses only end their stream INCOMPLETE.
    sandbox.faults.append(
        Fault(
            "status",
            status=400,
            error="Export not allowed for this event",
            method="POST",
            event_name="UTM Visited",
            times=None,
        )
    )
    config.pop("event_names")
    code, messages = source(
        tmp_path, "read", config=config, catalog=configured("utm_visited", "charged")
    )
    assert code == 0
    assert ("utm_visited", "INCOMPLETE") in statuses(messages)
    assert errors(messages) == []


def test_log_lines_from_reading_threads_never_cut_a_record_line(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Pages fetched ahead fail once each: the reading threads log their retries while the
    # main thread writes records. Every stdout line must still be one whole message.
    sandbox.settings.page_delay = 0.002
    # Every third page or so fails once (each rule fires once, on its own turn).
    sandbox.faults += [
        Fault("status", status=503, method="GET", after=2 * k + 2, times=1) for k in range(40)
    ]
    config = make_config(sandbox, **TWO, batch_size=5, max_retries=50)
    code, messages = source(
        tmp_path, "read", config=config, catalog=configured("app_launched", "charged")
    )
    assert code == 0
    kinds = Counter(m["type"] for m in messages)
    assert kinds["RECORD"] > 150  # in pages of 5: the main thread writes all the time
    retries = [m for m in of_type(messages, "LOG") if "Retrying in" in m["log"]["message"]]
    assert len(retries) >= 20


def test_the_console_script_is_installed() -> None:
    assert shutil.which("source-clevertap", path=str(Path(sys.executable).parent))


# --- the campaign family ------------------------------------------------------------------

RECENT = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=40)).isoformat()
FAMILY_CONFIG = {
    "include_campaign_streams": True,
    "event_names": ["Charged"],
    "start_date": RECENT,
    "end_date": RECENT,
    "campaign_lookahead_days": 10,
}
FAMILY = ("campaigns", "campaign_reports", "message_reports", "content_blocks", "category_groups")


def test_discover_lists_the_campaign_family_with_modes_and_keys(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    code, messages = source(tmp_path, "discover", config=make_config(sandbox, **FAMILY_CONFIG))
    assert code == 0
    streams = {s["name"]: s for s in of_type(messages, "CATALOG")[0]["catalog"]["streams"]}
    assert set(FAMILY) < set(streams)
    assert {name: streams[name]["source_defined_primary_key"] for name in FAMILY} == {
        "campaigns": [["id"]],
        "campaign_reports": [["id"]],
        "message_reports": [["message_id"]],
        "content_blocks": [["id"]],
        "category_groups": [["key"]],
    }
    for name in set(FAMILY) - {"content_blocks"}:
        assert streams[name]["supported_sync_modes"] == ["full_refresh"], name
    blocks = streams["content_blocks"]
    assert blocks["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert blocks["default_cursor_field"] == ["modified_at"]


def test_read_of_the_campaign_family_with_one_status_each_and_a_content_block_state(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = make_config(sandbox, **FAMILY_CONFIG)
    singer = run_tap(config)
    sandbox.reset()
    # A message report window that keeps failing: that stream alone ends INCOMPLETE.
    sandbox.faults.append(
        Fault("status", path="/1/message/report.json", status=500, after=1, times=None)
    )
    code, messages = source(
        tmp_path,
        "read",
        config={**config, "max_retries": 1},
        catalog=configured(*FAMILY),
    )
    assert code == 0
    records = [m["record"] for m in of_type(messages, "RECORD")]
    landed = {name: [r["data"] for r in records if r["stream"] == name] for name in FAMILY}
    for name in set(FAMILY) - {"message_reports"}:
        assert landed[name] == singer.records(name), name
        assert landed[name], name
    reports = singer.records("message_reports")
    assert 0 < len(landed["message_reports"]) < len(reports)
    assert landed["message_reports"] == reports[: len(landed["message_reports"])]
    # Each stream starts once and ends once, the child (campaign_reports) with its parent.
    seen = statuses(messages)
    for name in FAMILY:
        assert [s for n, s in seen if n == name] == [
            "STARTED",
            "RUNNING",
            "INCOMPLETE" if name == "message_reports" else "COMPLETE",
        ], name
    assert seen.index(("campaign_reports", "STARTED")) < seen.index(("campaigns", "COMPLETE"))
    # Full-table streams send no state; content_blocks sends its bookmark.
    states = [m["state"]["stream"] for m in of_type(messages, "STATE")]
    assert {s["stream_descriptor"]["name"] for s in states} == {"content_blocks"}
    (state,) = states
    assert state["stream_state"]["replication_key"] == "modified_at"

    sandbox.reset()
    code, again = source(
        tmp_path,
        "read",
        config=config,
        catalog=configured("content_blocks"),
        state=[{"type": "STREAM", "stream": state}],
    )
    assert code == 0
    queries = [r["query"] for r in sandbox.requests if r["path"] == "/v1/contentBlock/list"]
    assert len(queries) == 2
    assert "updatedFrom=" in queries[0]
    assert "createdAtFrom=" in queries[1]
    assert len(of_type(again, "RECORD")) < len(singer.records("content_blocks"))


def test_the_event_counts_stream_under_the_airbyte_protocol(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    config = make_config(sandbox, **TWO, include_event_counts=True)
    code, messages = source(tmp_path, "discover", config=config)
    assert code == 0
    streams = {s["name"]: s for s in of_type(messages, "CATALOG")[0]["catalog"]["streams"]}
    counts = streams["event_counts"]
    assert counts["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert counts["source_defined_primary_key"] == [["event_name"], ["day"]]
    assert counts["default_cursor_field"] == ["day"]
    singer = run_tap(config)
    sandbox.reset()
    code, messages = source(
        tmp_path,
        "read",
        config=config,
        catalog=configured("app_launched", "charged", "event_counts"),
    )
    assert code == 0
    landed = [
        m["record"]["data"]
        for m in of_type(messages, "RECORD")
        if m["record"]["stream"] == "event_counts"
    ]
    strip = [{k: v for k, v in r.items() if k != "checked_at"} for r in landed]
    assert strip == [
        {k: v for k, v in r.items() if k != "checked_at"} for r in singer.records("event_counts")
    ]
    assert len(landed) == 2 * 3
    assert [s for n, s in statuses(messages) if n == "event_counts"] == [
        "STARTED",
        "RUNNING",
        "COMPLETE",
    ]
    state = [m["state"]["stream"] for m in of_type(messages, "STATE")][-1]
    assert state["stream_descriptor"]["name"] == "event_counts"
    assert state["stream_state"]["counted_to"] == {"app_launched": 20240103, "charged": 20240103}
