"""The tap as an Airbyte source: `source-clevertap spec|check|discover|read`.

Only the protocol lives here: the command line, the message format and the state envelope.
Everything else (config checks, streams, client, scheduler, bookmarks) is the Singer tap's,
run unchanged: `AirbyteOutput` is the tap's message writer, and translates what the tap
writes. STATE still goes out only after whole windows; it becomes one per-stream state
message for each configured stream whose bookmark changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import orjson
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage
from typing_extensions import override

from tap_clevertap.client import CleverTapStream
from tap_clevertap.config import CONFIG_SCHEMA, TAP_SETTINGS
from tap_clevertap.discovery import EVENT_SCHEMA_STREAM
from tap_clevertap.errors import (
    CleverTapError,
    CredentialsRefused,
    EventsRefused,
    ExportWaitTimeout,
    RetriesExhausted,
)
from tap_clevertap.output import SingerOutput, write_bytes
from tap_clevertap.runtime import tune_for_a_sync
from tap_clevertap.tap import TapClevertap

LOG_LEVELS = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}


class AirbyteConfigError(Exception):
    """A config, catalog or state file Airbyte handed over that the source cannot use."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


class AirbyteOutput(SingerOutput):
    """Writes the tap's messages as Airbyte messages (the tap's message writer for `read`).

    SCHEMA -> stream status STARTED; the first RECORD of a stream -> RUNNING; RECORD ->
    RECORD with `emitted_at`; STATE -> a STREAM state per configured stream whose bookmark
    changed; log records -> LOG. A stream ends COMPLETE, or INCOMPLETE when CleverTap refused
    its export or the run failed in it (`finish`).
    """

    def __init__(self, configured: set[str], state: dict[str, Any]) -> None:
        """For the `configured` streams, whose bookmarks start as in `state`."""
        super().__init__()
        self.configured = configured
        self._emitted: dict[str, Any] = dict(state.get("bookmarks", {}))
        # The streams started and not yet ended: one, or a parent and its child streams
        # (whose SCHEMA comes again with each batch the parent hands them).
        self._open: list[str] = []
        self._running: set[str] = set()
        self._watched: TapClevertap | None = None

    def watch(self, tap: TapClevertap) -> None:
        """The tap whose streams say whether they ended incomplete, and which are children."""
        self._watched = tap

    def incomplete_streams(self) -> set[str]:
        """The streams that ended without some of their data, so far (refused events...)."""
        if self._watched is None:
            return set()
        return {
            stream.name
            for stream in self._watched.streams.values()
            if isinstance(stream, CleverTapStream) and stream.incomplete
        }

    def write_line(self, message: dict[str, Any]) -> None:
        """One Airbyte message, whole, flushed."""
        with self.whole_lines():
            write_bytes(_line(message))
            sys.stdout.flush()

    @override
    def write_message(self, message: Any) -> None:
        if isinstance(message, SchemaMessage):
            self._stream_started(message.stream)
        elif isinstance(message, RecordMessage):
            self.write_record_lines(message.stream, [message.record])
        elif isinstance(message, StateMessage):
            self._write_state(message.value)
        # ACTIVATE_VERSION and BATCH have no Airbyte counterpart.

    @override
    def record_framing(self, stream: str) -> tuple[bytes, bytes]:
        if stream not in self._running:
            self._running.add(stream)
            self.write_line(self._status(stream, "RUNNING"))
        prefix = b'{"type":"RECORD","record":{"stream":%s,"emitted_at":%d,"data":' % (
            orjson.dumps(stream),
            _now_ms(),
        )
        return prefix, b"}}\n"

    def write_log(self, level: int, text: str) -> None:
        """A LOG message (the tap's log records, from any thread)."""
        level_name = LOG_LEVELS.get(level, "INFO" if level < logging.WARNING else "ERROR")
        self.write_line({"type": "LOG", "log": {"level": level_name, "message": text}})

    def write_error(self, message: str, failure_type: str, internal: str = "") -> None:
        """An ERROR trace: what went wrong, for the user, and its failure type."""
        error: dict[str, Any] = {"message": message, "failure_type": failure_type}
        if internal:
            error["internal_message"] = internal
        self.write_line(
            {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": _now_ms(), "error": error}}
        )

    def finish(self, *, failed: bool) -> None:
        """The status of the streams running when the run (or the stream) ended."""
        incomplete = self.incomplete_streams()
        for stream in self._open:
            complete = not failed and stream not in incomplete
            self.write_line(self._status(stream, "COMPLETE" if complete else "INCOMPLETE"))
        self._open.clear()
        sys.stdout.flush()

    def _stream_started(self, stream: str) -> None:
        if stream in self._open:
            return  # a child stream's SCHEMA again, with its parent's next batch
        if not self._is_child(stream):
            self.finish(failed=False)
        self._open.append(stream)
        self.write_line(self._status(stream, "STARTED"))

    def _is_child(self, stream: str) -> bool:
        tap_stream = None if self._watched is None else self._watched.streams.get(stream)
        return tap_stream is not None and tap_stream.parent_stream_type is not None

    def _write_state(self, value: Mapping[str, Any]) -> None:
        for name, bookmark in value.get("bookmarks", {}).items():
            if name in self.configured and bookmark and self._emitted.get(name) != bookmark:
                self._emitted[name] = dict(bookmark)
                descriptor = {"stream_descriptor": {"name": name}, "stream_state": bookmark}
                self.write_line(
                    {"type": "STATE", "state": {"type": "STREAM", "stream": descriptor}}
                )

    @staticmethod
    def _status(stream: str, status: str) -> dict[str, Any]:
        return {
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "emitted_at": _now_ms(),
                "stream_status": {"stream_descriptor": {"name": stream}, "status": status},
            },
        }


class _LogToAirbyte(logging.Handler):
    def __init__(self, output: AirbyteOutput) -> None:
        super().__init__(logging.INFO)
        self.output = output
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    @override
    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.output.write_log(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)


@contextmanager
def _logs_to(output: AirbyteOutput) -> Iterator[None]:
    """Every log record becomes a LOG message on stdout (Airbyte reads only stdout)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    for name in logging.root.manager.loggerDict:
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    root.handlers = [_LogToAirbyte(output)]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])


# --- spec, check, discover, read --------------------------------------------------------------


def spec() -> dict[str, Any]:
    """The connection specification, from the tap's own settings."""
    properties = {}
    for name in TAP_SETTINGS:
        prop = dict(CONFIG_SCHEMA["properties"][name])
        if prop.pop("secret", False):
            prop["airbyte_secret"] = True
        prop.pop("writeOnly", None)
        prop["title"] = name.replace("_", " ").capitalize()
        properties[name] = prop
    return {
        "connectionSpecification": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "CleverTap",
            "type": "object",
            "required": sorted(CONFIG_SCHEMA.get("required", [])),
            "properties": properties,
            "additionalProperties": True,
        },
        "supportsIncremental": True,
        "supported_destination_sync_modes": ["overwrite", "append", "append_dedup"],
    }


def check(config: dict[str, Any]) -> dict[str, Any]:
    """SUCCEEDED, or FAILED with the tap's own one-line message; one getSchema request."""
    try:
        tap = TapClevertap(config=config, setup_mapper=False)  # no discovery yet
        tap.schema_catalog_stream(EVENT_SCHEMA_STREAM, "events").schema_items()
    except ConfigValidationError as exc:
        return {"status": "FAILED", "message": "; ".join(exc.errors)}
    except CleverTapError as exc:
        return {"status": "FAILED", "message": exc.one_line()}
    return {"status": "SUCCEEDED"}


def catalog(config: dict[str, Any]) -> dict[str, Any]:
    """Every stream the tap has for this config, as an Airbyte catalog."""
    tap = TapClevertap(config=config, setup_mapper=False)
    streams = []
    for stream in tap.streams.values():
        entry: dict[str, Any] = {
            "name": stream.name,
            "json_schema": stream.schema,
            "source_defined_primary_key": [[key] for key in stream.primary_keys or []],
        }
        if stream.replication_key:
            entry["supported_sync_modes"] = ["full_refresh", "incremental"]
            entry["source_defined_cursor"] = True
            entry["default_cursor_field"] = [stream.replication_key]
        else:
            entry["supported_sync_modes"] = ["full_refresh"]
        streams.append(entry)
    return {"streams": streams}


def singer_state(airbyte_state: Any) -> dict[str, Any]:
    """Airbyte's list of per-stream states as the tap's Singer state.

    Raises:
        AirbyteConfigError: not a list of STREAM state messages.
    """
    if airbyte_state in (None, []):
        return {}
    problem = "the state must be a list of per-stream state messages (type STREAM)"
    if not isinstance(airbyte_state, list):
        raise AirbyteConfigError(problem)
    bookmarks = {}
    for message in airbyte_state:
        if not isinstance(message, dict) or message.get("type") != "STREAM":
            raise AirbyteConfigError(problem)
        try:
            stream = message["stream"]
            name = stream["stream_descriptor"]["name"]
            bookmarks[name] = dict(stream.get("stream_state") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise AirbyteConfigError(problem) from exc
    return {"bookmarks": bookmarks}


def read(config: dict[str, Any], configured_catalog: dict[str, Any], state: Any) -> int:
    """Sync the configured streams; the exit code (0, or 1 after an ERROR trace)."""
    try:
        modes = {
            item["stream"]["name"]: item.get("sync_mode", "full_refresh")
            for item in configured_catalog["streams"]
        }
    except (KeyError, TypeError) as exc:
        raise AirbyteConfigError("the configured catalog has no streams list") from exc
    state_in = singer_state(state)
    # Full refresh ignores state: those streams start from start_date.
    bookmarks = state_in.get("bookmarks", {})
    state_in = {"bookmarks": {s: b for s, b in bookmarks.items() if modes.get(s) == "incremental"}}
    output = AirbyteOutput(set(modes), state_in)
    with _logs_to(output):
        try:
            tap = TapClevertap(config=config, state=state_in, message_writer=output)
            output.watch(tap)
            singer_catalog = tap.catalog
            for entry in singer_catalog.streams:
                entry.metadata.root.selected = entry.tap_stream_id in modes
            for stream in tap.streams.values():
                stream.apply_catalog(singer_catalog)
            tap.sync_all()  # stops reading ahead (and removes the spool) whatever happens
        except EventsRefused as exc:
            # Raised after the last stream: each ran; the refused ones end INCOMPLETE.
            output.finish(failed=False)
            return _report(output, exc)
        except BaseException as exc:
            output.finish(failed=True)
            return _report(output, exc)
    output.finish(failed=False)
    return 0


def _report(output: AirbyteOutput, exc: BaseException) -> int:
    """An ERROR trace with its failure type; the exit code."""
    if isinstance(exc, SystemExit):  # SIGTERM/SIGINT: STATE was written on the way out
        raise exc
    if isinstance(exc, ConfigValidationError):
        output.write_error("; ".join(exc.errors), "config_error")
    elif isinstance(exc, (CredentialsRefused, EventsRefused, AirbyteConfigError)):
        message = exc.one_line() if isinstance(exc, CleverTapError) else str(exc)
        output.write_error(message, "config_error")
    elif isinstance(exc, (RetriesExhausted, ExportWaitTimeout)):
        output.write_error(exc.one_line(), "transient_error")
    elif isinstance(exc, CleverTapError):
        output.write_error(exc.one_line(), "system_error")
    else:
        output.write_error(f"unexpected error: {type(exc).__name__}", "system_error", repr(exc))
    return 1


# --- the command line -------------------------------------------------------------------------


def _load(path: str | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AirbyteConfigError(f"cannot read {path}: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="source-clevertap", description="CleverTap as an Airbyte source (tap-clevertap)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("spec", help="the connection specification")
    for name in ("check", "discover", "read"):
        command = commands.add_parser(name)
        command.add_argument("--config", required=True)
        if name == "read":
            command.add_argument("--catalog", required=True)
            command.add_argument("--state")
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """`source-clevertap`: the Airbyte protocol on stdout; exit 0, or 1 after an ERROR."""
    args = _parser().parse_args(argv)
    output = AirbyteOutput(set(), {})
    try:
        if args.command == "spec":
            output.write_line({"type": "SPEC", "spec": spec()})
        elif args.command == "check":
            status = check(_load(args.config))
            output.write_line({"type": "CONNECTION_STATUS", "connectionStatus": status})
        elif args.command == "discover":
            with _logs_to(output):
                output.write_line({"type": "CATALOG", "catalog": catalog(_load(args.config))})
        else:
            tune_for_a_sync()
            code = read(_load(args.config), _load(args.catalog), _load(args.state))
            sys.exit(code)
    except SystemExit:
        raise
    except BaseException as exc:
        sys.exit(_report(output, exc))
    sys.exit(0)


if __name__ == "__main__":
    main()
