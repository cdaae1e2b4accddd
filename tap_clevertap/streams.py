"""The event stream: windows in order, one bookmark per whole window, record emission."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson
from singer_sdk.mapper import SameRecordTransform

from tap_clevertap.client import CleverTapError, CleverTapStream, CursorRejected
from tap_clevertap.config import parse_date, stream_name_for
from tap_clevertap.exports import ExportKey, ExportScheduler
from tap_clevertap.records import EventsOutOfOrder, EventTimes, RecordShaper
from tap_clevertap.schemas import EVENT_SCHEMA, with_extra_columns
from tap_clevertap.windows import (
    Window,
    bookmark_after,
    day_int,
    parse_day_int,
    split,
    sync_range,
    today_in,
)

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context, Record

# Key of the bookmark in `bookmarks.<stream>`: the last day (YYYYMMDD, account time zone)
# whose events were all emitted.
BOOKMARK_KEY = "window_to"


def write_line(message: dict[str, Any]) -> None:
    """One Singer message to stdout, without a flush: the SDK flushes with each STATE, which
    follows the records it covers, so no STATE can reach a target ahead of its records."""
    try:
        line = orjson.dumps(message)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # stdout replaced by a text stream (tests, embedding)
        sys.stdout.write(line.decode() + "\n")
    else:
        out.write(line + b"\n")


class EventStream(CleverTapStream):
    """All events of one CleverTap event name.

    Replication is incremental by day. The SDK keeps bookmarks from a record field and writes
    STATE every 10,000 records; here the bookmark is the `to` day of the last window whose
    records were all emitted, written right after each window. So the SDK's per-record
    bookmarking is switched off (`_increment_stream_state`, `_write_starting_replication_value`)
    and STATE is written after each window (`_write_state_message`): private SDK methods,
    pinned to singer-sdk 0.54 by tests/test_sdk_contract.py. `ts` is named as the replication
    key only so that catalogs show the stream as INCREMENTAL.
    """

    replication_key = "ts"
    is_sorted = False
    primary_keys = ("event_id",)

    def __init__(self, tap: Tap, event_name: str) -> None:
        flattened = bool(tap.config.get("flattening_enabled")) and bool(
            tap.config.get("flattening_max_depth")
        )
        schema = with_extra_columns(EVENT_SCHEMA) if flattened else EVENT_SCHEMA
        super().__init__(tap, name=stream_name_for(event_name), schema=schema)
        self.event_name = event_name
        self._times = EventTimes(self.config["timezone"])
        # Flattened output can only carry declared keys: fold the others into EXTRA_KEY.
        self._fold_schema = schema if flattened else None
        self._extracted_second = -1
        self._extracted_text = ""

    # --- state ---------------------------------------------------------------------------

    @property
    def bookmark(self) -> dt.date | None:
        value = self.stream_state.get(BOOKMARK_KEY)
        if value is None:
            return None
        try:
            return parse_day_int(int(value))
        except (TypeError, ValueError) as exc:
            raise CleverTapError(
                f"state bookmark bookmarks.{self.name}.{BOOKMARK_KEY} = {value!r} is not a "
                "YYYYMMDD day: fix it or run without this stream's state"
            ) from exc

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Records never move the bookmark: whole windows do (see `_finish_window`)."""

    def _write_starting_replication_value(self, context: Context | None) -> None:
        """The start comes from the bookmark day, not from a record value."""

    # --- RECORD messages ---------------------------------------------------------------------

    @cached_property
    def _plain_records(self) -> bool:
        """True when the SDK's per-record work would change nothing: every property is
        selected, and the only stream map is the identity without flattening."""
        maps = self.stream_maps
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == self.name
            and all(self.mask.values())
        )

    def _write_record_message(self, record: Record) -> None:
        """The SDK's per-record message generation (deselection, type conformance, maps,
        a message object, a clock read and a flush per record) costs several times the
        rest of the tap. Records here are plain JSON values from CleverTap; when nothing is
        deselected or mapped, write the same RECORD line directly. Otherwise: the SDK's way.
        tests/test_sdk_contract.py checks both ways write the same records."""
        if not self._plain_records:
            super()._write_record_message(record)
            return
        message = {
            "type": "RECORD",
            "stream": self.name,
            "record": record,
            "time_extracted": self._extracted_at(),
        }
        write_line(message)
        self.state_manager.is_flushed = False

    def _extracted_at(self) -> str:
        now = time.time()
        if int(now) != self._extracted_second:
            self._extracted_second = int(now)
            moment = dt.datetime.fromtimestamp(int(now), tz=dt.timezone.utc)
            self._extracted_text = moment.isoformat()
        return self._extracted_text

    def _finish_window(self, window: Window, today: dt.date) -> None:
        """Every record of `window` has been written: move the bookmark and write STATE."""
        new = bookmark_after(window, today=today, previous=self.bookmark)
        if new is not None:
            self.stream_state[BOOKMARK_KEY] = day_int(new)
        self.state_manager.is_flushed = False
        self._write_state_message()

    # --- records -------------------------------------------------------------------------

    def plan(self, today: dt.date) -> list[Window]:
        end = parse_date(self.config["end_date"]) if self.config.get("end_date") else today
        span = sync_range(
            start_date=parse_date(self.config["start_date"]),
            end_date=end,
            bookmark=self.bookmark,
            lookback_days=self.config["lookback_days"],
        )
        return split(*span, self.config["window_days"]) if span else []

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        today = today_in(self.config["timezone"])
        windows = self.plan(today)
        if not windows:
            self.log("%s: nothing to read (bookmark %s)", self.name, self.bookmark)
            return
        self.log(
            "%s: reading %s..%s in %d window(s) (bookmark %s)",
            self.name,
            windows[0].first,
            windows[-1].last,
            len(windows),
            self.bookmark,
        )
        total = 0
        for number, window in enumerate(windows, start=1):
            count = 0
            try:
                for record in self._window_records(window):
                    count += 1
                    yield record
            except BaseException as exc:
                self.exports.stop()  # the exports opened ahead will not be read
                if isinstance(exc, CleverTapError):
                    exc.where = f"stream {self.name} ({self.event_name!r}), window {window}"
                raise
            self.exports.read(self.export_key(window))
            # The SDK wrote the window's last RECORD before asking for the next item.
            self._finish_window(window, today)
            total += count
            self.log(
                "%s: window %s done (%d/%d): %d records, %d so far; bookmark %s",
                self.name,
                window,
                number,
                len(windows),
                count,
                total,
                self.bookmark,
            )
        if total == 0:
            self.log(
                "%s: CleverTap returned no %r events from %s to %s; if that is unexpected, "
                "check the event name's exact spelling (names are case-sensitive)",
                self.name,
                self.event_name,
                windows[0].first,
                windows[-1].last,
                level=logging.WARNING,
            )

    def export_key(self, window: Window) -> ExportKey:
        return (self.name, window.from_int, window.to_int)

    def export_context(self, window: Window) -> dict[str, Any]:
        return {"event_name": self.event_name, "from": window.from_int, "to": window.to_int}

    def _window_records(self, window: Window) -> Iterator[dict[str, Any]]:
        """The window's records, shaped; the window is requested again from step 1 when its
        cursor is refused (copies then numbered from 1 again, so ids do not change)."""
        context = self.export_context(window)
        scheduler = self.exports
        restarts = 0
        remember_all = False
        while True:
            shaper = RecordShaper(
                self.event_name,
                self._times,
                remember_all=remember_all,
                fold_schema=self._fold_schema,
            )
            emitted = 0
            try:
                opened = (
                    scheduler.take(self.export_key(window), lambda: self.open_export(context))
                    if restarts == 0 and not remember_all
                    else self.open_export(context)
                )
                for response in scheduler.pages(
                    opened, lambda paginator: self.fetch_page(paginator, context)
                ):
                    for raw in self.parse_response(response):
                        yield shaper.shape(raw)
                        emitted += 1
            except CursorRejected as exc:
                restarts += 1
                if restarts > self.config["max_window_restarts"]:
                    raise
                reason = str(exc)
            except EventsOutOfOrder as exc:
                remember_all = True  # one pass only: it cannot be out of order again
                reason = f"events out of ts order ({exc}); counting copies over the window"
            else:
                return
            self.log(
                "%s: window %s requested again from the start (%s); its %d records already "
                "sent are sent again with the same event_id",
                self.name,
                window,
                reason,
                emitted,
                level=logging.WARNING,
            )

    @property
    def exports(self) -> ExportScheduler:
        scheduler: ExportScheduler = self._tap.exports  # type: ignore[attr-defined]
        return scheduler
