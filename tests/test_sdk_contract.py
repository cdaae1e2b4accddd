"""The private singer-sdk (and requests) members this tap touches, in one list, each guarded.

Everything else goes through public SDK hooks. Each private member below has a test here
that fails when the SDK (pinned to 0.54.x in pyproject.toml) changes it, and
`test_no_other_private_member_is_touched` fails when the package starts touching one that is
not listed. The README's "singer-sdk internals" section lists the same members.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import re
import signal
from importlib.metadata import version
from typing import Any

import pytest
import requests
from singer_sdk import Stream, Tap
from singer_sdk.exceptions import AbortedSyncFailedException, AbortedSyncPausedException
from singer_sdk.io_base import SingerWriter
from singer_sdk.plugin_base import PluginBase
from singer_sdk.streams import RESTStream

from tap_clevertap.output import LINES_PER_WRITE, SingerOutput
from tap_clevertap.sandbox import SandboxData, SandboxServer, SandboxSettings
from tap_clevertap.signals import GATE, STOP_SIGNALS
from tap_clevertap.streams import EventStream
from tap_clevertap.tap import TapClevertap
from tests.helpers import REPO, make_config, run_tap

# Every private member touched, and why. Keep in step with the README.
PRIVATE_MEMBERS = {
    "PluginBase._validate_config": "overridden: whole-config checks before streams are built",
    "Stream._sync_records": "overridden: the page loop (RECORD lines a page at a time)",
    "Stream._increment_stream_state": "overridden (no-op): records never move the bookmark",
    "Stream._write_starting_replication_value": "overridden (no-op): the start is a day",
    "_HTTPStream._request": "called: one attempt (send, duration metric, validate_response)",
    "requests.Response._content": "set: the body read in one call (wire.read_whole_body)",
}


def _private_names_in(cls: type) -> set[str]:
    """Private methods and attributes a class defines or sets (`self._x = ...` included)."""
    source = inspect.getsource(cls)
    return set(re.findall(r"(?:self|cls)\.(_[a-z]\w*)", source)) | set(
        re.findall(r"def (_[a-z]\w*)", source)
    )


def sdk_private_names() -> dict[str, str]:
    """Each private name of the SDK classes the tap builds on (and of requests.Response),
    with the first class (in method resolution order) that has it."""
    owners: dict[str, str] = {}
    classes = [
        cls
        for base in (TapClevertap, EventStream)
        for cls in base.__mro__
        if cls.__module__.startswith("singer_sdk")
    ]
    for cls in [*classes, requests.Response]:
        label = "requests.Response" if cls is requests.Response else cls.__name__
        for name in sorted(_private_names_in(cls)):
            owners.setdefault(name, label)
    return owners


def private_members_touched() -> set[str]:
    """Private SDK/requests names that the package (not its sandbox) uses or defines."""
    ours: set[str] = set()
    for path in (REPO / "tap_clevertap").rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        text = path.read_text()
        ours |= set(re.findall(r"\.(_[a-z]\w*)", text))
        ours |= set(re.findall(r"def (_[a-z]\w*)", text))
    owners = sdk_private_names()
    return {f"{owners[name]}.{name}" for name in ours if name in owners}


def test_no_other_private_member_is_touched() -> None:
    assert private_members_touched() == set(PRIVATE_MEMBERS)
    assert len(PRIVATE_MEMBERS) == 6  # the count the README gives
    for path in (REPO / "tap_clevertap").rglob("*.py"):
        text = path.read_text()
        assert not re.findall(r"singer_sdk[\w.]*\._\w+", text), f"private SDK module in {path}"
        assert "state_manager" not in text, path


def test_sdk_minor_version_is_the_pinned_one() -> None:
    assert version("singer-sdk").startswith("0.54.")


def test_config_is_validated_before_the_streams_are_built() -> None:
    # `_validate_config(raise_errors=...)` runs inside PluginBase.__init__; Tap.__init__ builds
    # the catalog (discovery) only after it. Our override relies on both.
    assert "self._validate_config(raise_errors=validate_config)" in inspect.getsource(
        PluginBase.__init__
    )
    assert list(inspect.signature(PluginBase._validate_config).parameters) == [
        "self",
        "raise_errors",
    ]
    tap_init = inspect.getsource(Tap.__init__)
    assert tap_init.index("super().__init__(") < tap_init.index("self.setup_mapper()")
    assert TapClevertap._validate_config is not PluginBase._validate_config


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


def test_one_request_attempt_sends_and_validates() -> None:
    # The retry decorator wraps `_request`: one send, then `validate_response`.
    source = inspect.getsource(RESTStream._request)
    assert list(inspect.signature(RESTStream._request).parameters) == [
        "self",
        "prepared_request",
        "context",
    ]
    assert source.index("self.requests_session.send(") < source.index(
        "self.validate_response(response)"
    )


def test_requests_keeps_a_body_read_into_content() -> None:
    # `response.content` returns `_content` once it is no longer False (not read yet).
    source = inspect.getsource(requests.Response.content.fget)  # type: ignore[attr-defined]
    assert "if self._content is False:" in source
    assert requests.Response()._content is False  # type: ignore[comparison-overlap]


def test_state_is_written_through_the_public_state_writer() -> None:
    assert isinstance(inspect.getattr_static(Tap, "state_writer"), property)
    assert "state_writer.write_state" in inspect.getsource(Stream._write_state_message)


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


def test_the_command_line_is_the_sdk_invoke_which_calls_our_sync_all() -> None:
    # TapClevertap.invoke only wraps the SDK's; the SDK builds the tap and calls the public
    # `sync_all`, which TapClevertap overrides (typed `final`, overridden all the same).
    source = inspect.getsource(Tap.invoke)
    steps = ["tap = cls(", "validate_config=True,", "tap.sync_all()"]
    positions = [source.index(step) for step in steps]
    assert positions == sorted(positions)
    ours = inspect.getsource(TapClevertap.invoke)
    assert "super().invoke(" in ours
    assert "tap = cls(" not in ours
    assert TapClevertap.sync_all is not Tap.sync_all
    # The SDK's sync_all syncs the streams in `self.streams` order, each by `sync()`.
    sync_all = inspect.getsource(Tap.sync_all)
    assert "for stream in self.streams.values():" in sync_all
    assert "stream.sync()" in sync_all
    assert list(inspect.signature(Tap.invoke).parameters) == [
        "about",
        "about_format",
        "config",
        "state",
        "catalog",
    ]


def test_the_sdk_sets_its_signal_handlers_in_plugin_init_and_ours_replace_them(
    sandbox: SandboxServer,
) -> None:
    # PluginBase.__init__ installs the SDK's SIGINT/SIGTERM handlers; TapClevertap installs
    # its own (signals.GATE) after it, so that a stop writes whole windows' STATE only.
    init = inspect.getsource(PluginBase.__init__)
    assert "self._setup_signal_handlers()" in init
    assert "signal.signal(signal.SIGTERM" in inspect.getsource(PluginBase._setup_signal_handlers)
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        TapClevertap(config=make_config(sandbox))
        for sig in STOP_SIGNALS:
            assert signal.getsignal(sig) == GATE._on_signal, sig
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_the_sdk_writes_each_message_to_the_text_layer_and_flushes() -> None:
    # The ordering rule of output.py: SDK messages (STATE) go to sys.stdout and are flushed,
    # so they reach the target after the RECORD bytes written below the text layer.
    source = inspect.getsource(SingerWriter.write_message)
    assert source.index("sys.stdout.write(") < source.index("sys.stdout.flush()")
    assert SingerOutput.write_message is not SingerWriter.write_message
