"""The singer-sdk internals this tap leans on. When the SDK changes under them, these fail.

EventStream switches off record-driven bookmarks (`_increment_stream_state`,
`_write_starting_replication_value`) and writes STATE after each window through
`state_manager.is_flushed` + `_write_state_message`; the tap writes STATE on SIGTERM through
`_state_writer`. Those are private: pinned to singer-sdk 0.54 in pyproject.toml.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
from importlib.metadata import version
from typing import Any

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.exceptions import AbortedSyncFailedException, AbortedSyncPausedException
from singer_sdk.helpers._state import StateWriter
from singer_sdk.streams._state import StreamStateManager

from tap_clevertap.output import LINES_PER_WRITE
from tap_clevertap.sandbox import SandboxData, SandboxServer, SandboxSettings
from tap_clevertap.streams import EventStream
from tap_clevertap.tap import TapClevertap
from tests.conftest import make_config, run_tap


def test_sdk_minor_version_is_the_pinned_one() -> None:
    assert version("singer-sdk").startswith("0.54.")


@pytest.mark.parametrize("name", ["_increment_stream_state", "_write_starting_replication_value"])
def test_overridden_stream_internals_still_exist(name: str) -> None:
    assert callable(getattr(Stream, name))
    assert getattr(EventStream, name) is not getattr(Stream, name)


def test_sync_records_calls_the_hooks_we_override() -> None:
    source = inspect.getsource(Stream._sync_records)
    assert "self._increment_stream_state(record" in source
    assert "self._write_starting_replication_value(" in source
    # A record is written before the next one is asked for: so once the generator resumes
    # after a window's last record, that record is out and the window can be bookmarked.
    assert source.index("self._write_record_message(record)") < source.index("yield record")


def test_state_flush_flag_and_writer_exist() -> None:
    assert "is_flushed" in inspect.getsource(StreamStateManager.__init__)
    assert "if not self.state_manager.is_flushed" in inspect.getsource(Stream._write_state_message)
    assert "_state_writer" in inspect.getsource(Tap.__init__)
    assert callable(StateWriter.write_state)
    assert callable(Tap._handle_termination)


def test_state_holds_only_the_window_bookmark(sandbox: SandboxServer) -> None:
    run = run_tap(make_config(sandbox, event_names=["Charged"], end_date="2024-01-03"))
    for state in run.states:
        for stream_state in state["bookmarks"].values():
            assert set(stream_state) <= {"window_to"}, stream_state


def test_direct_record_lines_equal_the_sdk_messages(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(sandbox, event_names=["Charged"], end_date="2024-01-02")
    direct = run_tap(config).records()
    monkeypatch.setattr(EventStream, "_plain_records", property(lambda self: False))
    through_sdk = run_tap(config).records()
    assert direct == through_sdk
    assert len(direct) > 50


class _OneHugeInteger(SandboxData):
    """Each day's 70th event carries an integer beyond 64 bits, which orjson can neither read
    exactly nor write."""

    def events(self, event_name: str, day: dt.date, **kwargs: bool) -> list[dict[str, object]]:
        rows = super().events(event_name, day, **kwargs)
        props = rows[70]["event_props"]
        assert isinstance(props, dict)
        props["Big"] = 2**70 + 1
        return rows


def test_direct_record_lines_equal_the_sdk_messages_over_several_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SandboxServer(_OneHugeInteger(events_per_day=160), SandboxSettings()) as server:
        config = make_config(server, event_names=["Charged"], end_date="2024-01-02")
        config["batch_size"] = 5000  # one page per day: its lines go out in several writes
        direct = run_tap(config).records()
        monkeypatch.setattr(EventStream, "_plain_records", property(lambda self: False))
        through_sdk = run_tap(config).records()
    assert direct == through_sdk
    assert len(direct) > 2 * 2 * LINES_PER_WRITE
    # Read and written with every digit (orjson alone reads it as a double).
    assert sum(r["event_props"].get("Big") == 2**70 + 1 for r in direct) == 2


def test_deselected_properties_still_go_through_the_sdk(sandbox: SandboxServer) -> None:
    config = make_config(sandbox, event_names=["Charged"], end_date="2024-01-01")
    catalog = TapClevertap(config=config).catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == ["properties", "profile"]:
                item["metadata"]["selected"] = False
    records = run_tap(config, catalog=catalog).records()
    assert records
    assert all("profile" not in r and "event_id" in r for r in records)


def test_sync_records_still_does_what_the_page_loop_does() -> None:
    # EventStream._sync_records writes a page at a time when the SDK's per-record work would
    # change nothing; it keeps the SDK loop's counter, timer and final STATE.
    source = inspect.getsource(Stream._sync_records)
    for step in (
        "record_counter = self.get_record_counter()",
        "timer = self.get_sync_timer()",
        "with record_counter, timer:",
        "record_counter.with_context(",
        "timer.with_context(",
        "record_counter.increment()",
        "self._finalize_state(self.stream_state)",
        "self._write_state_message()",
        # Skipped by the page loop, so they must stay no-ops for this stream:
        "self._check_max_record_limit(",
        "record = self.post_process(record, current_context)",
        "self._process_record(",
    ):
        assert step in source, step
    assert EventStream.post_process is Stream.post_process
    assert "_sync_children" in inspect.getsource(Stream._process_record)


def test_the_dry_run_record_limit_goes_through_the_sdk_loop(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EventStream, "ABORT_AT_RECORD_COUNT", 7)
    sink: list[dict[str, Any]] = []
    with pytest.raises((AbortedSyncFailedException, AbortedSyncPausedException)):
        run_tap(make_config(sandbox, event_names=["Charged"]), sink=sink)
    assert sum(1 for m in sink if m["type"] == "RECORD") == 7


def test_the_page_loop_counts_records_like_the_sdk(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="singer_sdk.metrics")
    run = run_tap(make_config(sandbox, event_names=["Charged"], end_date="2024-01-02"))
    counted = [
        json.loads(r.getMessage().split("METRIC: ", 1)[1])
        for r in caplog.records
        if "record_count" in r.getMessage()
    ]
    assert sum(m["value"] for m in counted) == len(run.records()) > 50
