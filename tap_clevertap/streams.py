"""The event stream: windows in order, one bookmark per whole window, record emission."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from singer_sdk.mapper import SameRecordTransform
from typing_extensions import override

from tap_clevertap.client import CleverTapStream, Page
from tap_clevertap.config import parse_date, stream_name_for
from tap_clevertap.errors import CleverTapError, CursorRejected
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
    import threading
    from collections.abc import Callable

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context, Record, TapState

    from tap_clevertap.exports import ExportKey, ExportScheduler
    from tap_clevertap.output import SingerOutput

# Key of the bookmark in `bookmarks.<stream>`: the last day (YYYYMMDD, account time zone)
# whose events were all emitted.
BOOKMARK_KEY = "window_to"


@dataclass
class WindowRestarts:
    """When a window is requested again from step 1, and how its copies are then numbered.

    A refused or expired cursor (`code` 3) restarts the window, at most `limit` times. Events
    that arrive out of `ts` order restart it once, numbering copies over the whole window.
    Either way the window's records come again with the same `event_id`s.
    """

    limit: int
    restarts: int = 0
    count_whole_window: bool = False

    @property
    def first_attempt(self) -> bool:
        """No restart yet: the export may have been opened ahead."""
        return self.restarts == 0 and not self.count_whole_window

    def restart_after(self, exc: Exception) -> str:
        """Record a restart caused by `exc` and say why; re-raise when none is left."""
        if isinstance(exc, EventsOutOfOrder) and not self.count_whole_window:
            self.count_whole_window = True
            return f"events out of ts order ({exc}); counting copies over the window"
        if isinstance(exc, CursorRejected) and self.restarts < self.limit:
            self.restarts += 1
            return str(exc)
        raise exc


class EventStream(CleverTapStream):
    """All events of one CleverTap event name.

    Replication is incremental by day. The SDK keeps bookmarks from a record field and writes
    STATE every 10,000 records; here the bookmark is the `to` day of the last window whose
    records were all emitted, written right after each window (`_finish_window`). So the SDK's
    per-record bookmarking is switched off (`_increment_stream_state`,
    `_write_starting_replication_value`: private SDK methods, pinned to singer-sdk 0.54 by
    tests/test_sdk_contract.py). `ts` is named as the replication key only so that catalogs
    show the stream as INCREMENTAL.
    """

    replication_key = "ts"
    is_sorted = False
    primary_keys = ("event_id",)

    def __init__(
        self,
        tap: Tap,
        event_name: str,
        *,
        request_slots: threading.BoundedSemaphore,
        exports: ExportScheduler,
        output: SingerOutput,
        write_state: Callable[[TapState], None],
    ) -> None:
        """The stream of `event_name`, with the tap's shared collaborators.

        Args:
            tap: The tap (the SDK's streams belong to one).
            event_name: The CleverTap event name.
            request_slots: HTTP requests in flight, shared by every stream.
            exports: Opens exports ahead, across streams.
            output: Writes RECORD lines.
            write_state: Writes the tap's state as STATE (after each window).
        """
        flattened = bool(tap.config.get("flattening_enabled")) and bool(
            tap.config.get("flattening_max_depth")
        )
        schema = with_extra_columns(EVENT_SCHEMA) if flattened else EVENT_SCHEMA
        super().__init__(
            tap, name=stream_name_for(event_name), schema=schema, request_slots=request_slots
        )
        self.event_name = event_name
        self.exports = exports
        self.output = output
        self.write_state = write_state
        self._times = EventTimes(self.config["timezone"])
        # Flattened output can only carry declared keys: fold the others into EXTRA_KEY.
        self._fold_schema = schema if flattened else None

    # --- state ---------------------------------------------------------------------------

    @property
    def bookmark(self) -> dt.date | None:
        """The last day whose events were all emitted, from the state; None without one."""
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

    @override
    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Records never move the bookmark: whole windows do (see `_finish_window`)."""

    @override
    def _write_starting_replication_value(self, context: Context | None) -> None:
        """The start comes from the bookmark day, not from a record value."""

    def _finish_window(self, window: Window, today: dt.date) -> None:
        """Every record of `window` has been written: move the bookmark and write STATE."""
        new = bookmark_after(window, today=today, previous=self.bookmark)
        if new is not None:
            self.stream_state[BOOKMARK_KEY] = day_int(new)
        self.write_state(self.tap_state)

    # --- RECORD messages ---------------------------------------------------------------------

    @cached_property
    def _plain_records(self) -> bool:
        """True when the SDK's per-record work would change nothing.

        That is: every property is selected, and the only stream map is the identity
        without flattening.
        """
        maps = self.stream_maps
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == self.name
            and all(self.mask.values())
        )

    @override
    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, None]:
        """The SDK's record loop, a page at a time when its per-record work changes nothing.

        Per record, the SDK filters deselected properties, conforms types, applies maps,
        builds a message object, reads the clock and checks limits: several times the cost
        of the rest of the tap. When nothing is deselected or mapped (`_plain_records`), no
        dry-run limit is set and there is no partition or child stream, each page's RECORD
        lines are written by `SingerOutput.write_record_lines`, with the SDK's record counter,
        timer and final STATE as in its loop. Otherwise this is the SDK's loop. Private SDK
        method, pinned to singer-sdk 0.54: tests/test_sdk_contract.py checks both ways write
        the same records and that the SDK's loop still does what this one does.
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
                self.output.write_record_lines(self.name, page)
                record_counter.increment(len(page))
                page.clear()  # free the parsed page (~12 MB) before the next is parsed
        self.write_state(self.tap_state)

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        for page in self._shaped_pages():
            yield from page
            page.clear()  # free the parsed page (~12 MB) before the next is parsed

    # --- records -------------------------------------------------------------------------

    def plan(self, today: dt.date) -> list[Window]:
        """The windows this sync reads, in order (from the bookmark, config and `today`)."""
        end = parse_date(self.config["end_date"]) if self.config.get("end_date") else today
        span = sync_range(
            start_date=parse_date(self.config["start_date"]),
            end_date=end,
            bookmark=self.bookmark,
            lookback_days=self.config["lookback_days"],
        )
        return split(*span, self.config["window_days"]) if span else []

    def planned_exports(self, today: dt.date) -> list[tuple[ExportKey, Callable[[], Page]]]:
        """Every window's export, with what opens it ahead, for the tap's scheduler."""
        return [
            (self.export_key(window), partial(self.open_export, context, ahead=True))
            for window in self.plan(today)
            for context in [self.export_context(window)]
        ]

    def _shaped_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Every window's records in order, shaped, a page at a time.

        After a window's last page has been written (the caller asks for the next page), its
        bookmark moves.
        """
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
        """The scheduler's key of the window's export."""
        return (self.name, window.from_int, window.to_int)

    def export_context(self, window: Window) -> dict[str, Any]:
        """The stream context of the window's export (the step-1 body)."""
        return {"event_name": self.event_name, "from": window.from_int, "to": window.to_int}

    def _window_pages(self, window: Window) -> Iterator[list[dict[str, Any]]]:
        """The window's records, shaped, a page at a time, restarted as `WindowRestarts` says.

        Copies are numbered from 1 again on each attempt, so ids do not change.
        """
        context = self.export_context(window)
        restarts = WindowRestarts(limit=self.config["max_window_restarts"])
        while True:
            shaper = RecordShaper(
                self.event_name,
                self._times,
                remember_all=restarts.count_whole_window,
                fold_schema=self._fold_schema,
            )
            emitted = 0
            try:
                opened = (
                    self.exports.take(self.export_key(window), partial(self.open_export, context))
                    if restarts.first_attempt
                    else self.open_export(context)
                )
                for response in self.exports.pages(opened, self, context):
                    page = shaper.shape_page(self.parse_response(response))
                    del response  # its body (MBs) need not outlive the parse of the next
                    emitted += len(page)
                    yield page
            except (CursorRejected, EventsOutOfOrder) as exc:
                reason = restarts.restart_after(exc)
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
