"""The event stream: windows in order, one bookmark per whole window, record emission."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Generator, Iterable, Iterator
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
LINES_PER_WRITE = 64


def _record_json(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _write_bytes(data: bytes) -> None:
    """To stdout, without a flush: the SDK flushes with each STATE, which follows the
    records it covers, so no STATE can reach a target ahead of its records."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # stdout replaced by a text stream (tests, embedding)
        sys.stdout.write(data.decode())
        return
    view = memoryview(data)
    while view:
        # A signal handled in the middle of a large write to a full pipe makes
        # BufferedWriter.write return early, with what it wrote: write the rest.
        view = view[out.write(view) :]


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

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, None]:
        """The SDK's record loop, a page at a time when its per-record work would change
        nothing.

        Per record, the SDK filters deselected properties, conforms types, applies maps,
        builds a message object, reads the clock and checks limits: several times the cost
        of the rest of the tap. When nothing is deselected or mapped (`_plain_records`), no
        dry-run limit is set and there is no partition or child stream, each page's RECORD
        lines are written here a few dozen per write, with the SDK's record counter, timer, and
        final STATE as in its loop. Otherwise this is the SDK's loop. Private SDK method, pinned to
        singer-sdk 0.54: tests/test_sdk_contract.py checks both ways write the same
        records and that the SDK's loop still does what this one does.
        """
        direct = (
            write_messages
            and context is None
            and self.selected
            and self._plain_records
            and self.ABORT_AT_RECORD_COUNT is None
            and not self.child_streams
            and not self.partitions
        )
        if not direct:
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        record_counter = self.get_record_counter()
        timer = self.get_sync_timer()
        with record_counter, timer:
            record_counter.with_context({})
            timer.with_context({})
            for page in self._shaped_pages():
                self._write_record_lines(page)
                record_counter.increment(len(page))
                page.clear()  # free the parsed page (~12 MB) before the next is parsed
        self._finalize_state(self.stream_state)
        self._write_state_message()

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        for page in self._shaped_pages():
            yield from page
            page.clear()  # free the parsed page (~12 MB) before the next is parsed

    def _write_record_lines(self, records: list[dict[str, Any]]) -> None:
        """The RECORD messages of a page, as the SDK writes them, a few dozen per write.

        orjson gives each line a 4 KB buffer whatever its length: a whole page's lines at
        once would hold ~20 MB, where a chunk's lines stay in the CPU cache."""
        if not records:
            return
        prefix = b'{"type":"RECORD","stream":%s,"record":' % orjson.dumps(self.name)
        extracted = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        suffix = b',"time_extracted":"%s"}\n' % extracted.encode()
        between = suffix + prefix
        dumps = orjson.dumps
        with self._tap.whole_lines():  # type: ignore[attr-defined]
            for start in range(0, len(records), LINES_PER_WRITE):
                chunk = records[start : start + LINES_PER_WRITE]
                try:
                    lines = [dumps(record) for record in chunk]
                except TypeError:
                    lines = [_record_json(record) for record in chunk]
                _write_bytes(prefix + between.join(lines) + suffix)
        self.state_manager.is_flushed = False

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

    def _shaped_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Every window's records in order, shaped, a page at a time; after a window's last
        page has been written (the caller asks for the next page), its bookmark moves."""
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
                for page in self._window_pages(window):
                    count += len(page)
                    yield page
            except BaseException as exc:
                self.exports.stop()  # the exports opened ahead will not be read
                if isinstance(exc, CleverTapError):
                    exc.where = f"stream {self.name} ({self.event_name!r}), window {window}"
                raise
            self.exports.read(self.export_key(window))
            # The window's last RECORD was written before the next page was asked for.
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

    def _window_pages(self, window: Window) -> Iterator[list[dict[str, Any]]]:
        """The window's records, shaped, a page at a time. The window is requested again from
        step 1 when its cursor is refused (copies then numbered from 1 again, so ids do not
        change)."""
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
                    opened,
                    fetch_now=lambda paginator: self.fetch_page(paginator, context),
                    fetch_ahead=lambda paginator: self.fetch_page_ahead(paginator, context),
                    checked=lambda paginator, page: self.checked_page(paginator, page, context),
                ):
                    page = shaper.shape_page(self.parse_response(response))
                    del response  # its body (MBs) need not outlive the parse of the next
                    emitted += len(page)
                    yield page
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
