"""Exports read window by window, with one bookmark per whole window (events and profiles).

The SDK keeps bookmarks from a record field and writes STATE every 10,000 records; here the
bookmark is the `to` day of the last window whose records were all emitted, written right
after each window (`_finish_window`). So the SDK's per-record bookmarking is switched off
(`_increment_stream_state`, `_write_starting_replication_value`: private SDK methods, pinned
to singer-sdk 0.54 by tests/test_sdk_contract.py).
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from singer_sdk.mapper import SameRecordTransform
from typing_extensions import override

from tap_clevertap.client import CleverTapExportStream
from tap_clevertap.config import parse_date
from tap_clevertap.errors import CleverTapError, CursorRejected, EventsRefused, ExportRefused
from tap_clevertap.exports import ExportKey, PlannedExport, StreamEvent
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

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context, Record, TapState

    from tap_clevertap.exports import ExportScheduler
    from tap_clevertap.output import SingerOutput
    from tap_clevertap.streams.counts import CountLedger

# Key of the bookmark in `bookmarks.<stream>`: the last day (YYYYMMDD, account time zone)
# whose records were all emitted.
BOOKMARK_KEY = "window_to"


class Refusals:
    """The events CleverTap refused to export during the run, with its reasons, in order."""

    def __init__(self) -> None:
        """None yet."""
        self.reasons: dict[str, str] = {}

    def add(self, refused: ExportRefused) -> None:
        """Remember a refused event (once)."""
        self.reasons.setdefault(refused.event_name, refused.reason)

    def raise_for(self, named: set[str]) -> None:
        """End the run if any refused event was named in the config (not discovered).

        Raises:
            EventsRefused: one line listing them.
        """
        refused = [name for name in self.reasons if name in named]
        if refused:
            raise EventsRefused(
                "refused by CleverTap: "
                + ", ".join(repr(name) for name in refused)
                + ": remove them from event_names/profile_event_names (the warnings above say "
                "why), or leave event_names out to export every event CleverTap allows"
            )


@dataclass(frozen=True)
class Collaborators:
    """What the tap hands each export stream when it creates it."""

    request_slots: threading.BoundedSemaphore  # HTTP requests in flight, shared
    exports: ExportScheduler  # opens exports ahead, across streams
    output: SingerOutput  # writes RECORD lines
    write_state: Callable[[TapState], None]  # writes the tap's state as STATE
    refusals: Refusals  # the events CleverTap refused to export, for the end of the run
    counts: CountLedger  # what the event streams read, for the event_counts stream


class PageShaper(Protocol):
    """Turns one attempt at one export's raw records into the stream's records."""

    def shape_page(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The page's records, shaped in place (records may be dropped)."""


@dataclass
class WindowRestarts:
    """When an export is requested again from step 1.

    A refused or expired cursor (`code` 3) restarts the export, at most `limit` times; its
    records then come again with the same ids. (Events out of `ts` order do not: see
    `copies.CopyCounter`.)
    """

    limit: int
    restarts: int = 0

    def restart_after(self, exc: CursorRejected) -> str:
        """Record a restart caused by `exc` and say why; re-raise when none is left."""
        if self.restarts < self.limit:
            self.restarts += 1
            return str(exc)
        raise exc


@dataclass
class _Progress:
    """Records of the current window and of the whole sync."""

    window: int = 0
    total: int = 0
    refused: set[str] = field(default_factory=set)


class WindowedExportStream(CleverTapExportStream):
    """Windows in order; per window, one export per event name; a bookmark per whole window.

    Subclasses say which exports a window has (`export_contexts`) and how their pages are
    shaped (`new_shaper`). An event CleverTap refuses to export is skipped for the rest of
    the run (one WARNING, recorded in `Refusals`); a window none of whose exports was read
    leaves the bookmark where it was.
    """

    is_sorted = False

    def __init__(
        self,
        tap: Tap,
        *,
        name: str,
        schema: dict[str, Any],
        collaborators: Collaborators,
    ) -> None:
        """A stream reading its exports through the tap's shared `collaborators`."""
        super().__init__(tap, name=name, schema=schema, request_slots=collaborators.request_slots)
        self.exports = collaborators.exports
        self.output = collaborators.output
        self.write_state = collaborators.write_state
        self.refusals = collaborators.refusals
        self.counts = collaborators.counts
        self._progress = _Progress()

    # --- what subclasses say ---------------------------------------------------------------

    @property
    @abc.abstractmethod
    def event_names(self) -> list[str]:
        """The event names whose exports this stream reads, in order."""

    @abc.abstractmethod
    def new_shaper(self, context: Context, window: Window) -> PageShaper:
        """A shaper for one attempt at the export of `context` in `window`."""

    @property
    def refused_events(self) -> set[str]:
        """The event names CleverTap refused to export in this run (skipped since)."""
        return self._progress.refused

    @property
    @override
    def incomplete(self) -> bool:
        return bool(self._progress.refused)

    def window_done(self, window: Window, count: int) -> None:
        """Called after each whole window (`count` records): subclasses may log."""

    def stream_done(self, windows: list[Window], total: int) -> None:
        """Called after the last window (`total` records): subclasses may log."""

    # --- state ---------------------------------------------------------------------------

    @property
    def bookmark(self) -> dt.date | None:
        """The last day whose records were all emitted, from the state; None without one.

        Read without adding the stream to the state (as `stream_state` would): the exports
        are planned before the SDK writes the state it starts from.
        """
        value = self.tap_state.get("bookmarks", {}).get(self.name, {}).get(BOOKMARK_KEY)
        if value is None:
            return None
        try:
            return parse_day_int(int(value))
        except (TypeError, ValueError) as exc:
            raise CleverTapError(
                f"state bookmark bookmarks.{self.name}.{BOOKMARK_KEY} = {value!r} is not a "
                "YYYYMMDD day: fix it or run without this stream's state"
            ) from exc

    @property
    def read_after(self) -> dt.date | None:
        """The day a sync reads after (less the lookback): the bookmark, for most streams."""
        return self.bookmark

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
                page.clear()  # free the parsed page (megabytes) before the next is parsed
        self.write_state(self.tap_state)

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        for page in self._shaped_pages():
            yield from page
            page.clear()  # free the parsed page (megabytes) before the next is parsed

    # --- windows and exports -------------------------------------------------------------

    def plan(self, today: dt.date) -> list[Window]:
        """The windows this sync reads, in order (from the bookmark, config and `today`)."""
        end = parse_date(self.config["end_date"]) if self.config.get("end_date") else today
        span = sync_range(
            start_date=parse_date(self.config["start_date"]),
            end_date=end,
            bookmark=self.read_after,
            lookback_days=self.config["lookback_days"],
        )
        return split(*span, self.config["window_days"]) if span else []

    def export_context(self, event_name: str, window: Window) -> dict[str, Any]:
        """The stream context of an export (the step-1 body)."""
        return {"event_name": event_name, "from": window.from_int, "to": window.to_int}

    def planned_export(self, context: Context) -> PlannedExport:
        """The export of `context`, for the scheduler: its key, client and context."""
        key = ExportKey(self.name, context["event_name"], context["from"], context["to"])
        return PlannedExport(key, self.export_client, dict(context))

    def planned_exports(self, today: dt.date) -> list[PlannedExport]:
        """Every export of the sync in reading order."""
        return [
            self.planned_export(self.export_context(name, window))
            for window in self.plan(today)
            for name in self.event_names
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
        progress = self._progress
        for number, window in enumerate(windows, start=1):
            names = [name for name in self.event_names if name not in progress.refused]
            if not names:
                return  # every event refused: nothing more to read, the bookmark stays
            progress.window = 0
            read_any = False
            for name in names:
                context = self.export_context(name, window)
                try:
                    for page in self._export_pages(window, context):
                        progress.window += len(page)
                        yield page
                except ExportRefused as refused:
                    self._skip_refused(refused, window)
                    continue
                except BaseException as exc:
                    self.exports.stop()  # the exports read ahead will not be written
                    if isinstance(exc, CleverTapError):
                        exc.where = f"stream {self.name} ({name!r}), window {window}"
                    raise
                read_any = True
            if not read_any:
                return
            # The window's last RECORD was written before the next page was asked for.
            self._finish_window(window, today)
            progress.total += progress.window
            self.window_done(window, progress.window)
            self.log(
                "%s: window %s done (%d/%d): %d records, %d so far; bookmark %s",
                self.name,
                window,
                number,
                len(windows),
                progress.window,
                progress.total,
                self.bookmark,
            )
        self.stream_done(windows, progress.total)

    def _skip_refused(self, refused: ExportRefused, window: Window) -> None:
        """Leave a refused event out for the rest of the run, with one WARNING."""
        self._progress.refused.add(refused.event_name)
        self.refusals.add(refused)
        self.exports.forget(StreamEvent(self.name, refused.event_name))
        self.log(
            "%s: CleverTap refused to export %r (%s) at window %s: skipped; the other "
            "streams go on",
            self.name,
            refused.event_name,
            refused.reason,
            window,
            level=logging.WARNING,
        )

    def _export_pages(self, window: Window, context: Context) -> Iterator[list[dict[str, Any]]]:
        """One export's records, shaped, a page at a time, restarted as `WindowRestarts` says.

        Each attempt gets a fresh shaper, so ids do not change.
        """
        restarts = WindowRestarts(limit=self.config["max_window_restarts"])
        export = self.planned_export(context)
        while True:
            shaper = self.new_shaper(context, window)
            emitted = 0
            try:
                for fetched in self.exports.pages(export):
                    page = shaper.shape_page(self.export_client.page_records(fetched, context))
                    del fetched  # its body (MBs) need not outlive the parse of the next
                    emitted += len(page)
                    yield page
            except CursorRejected as exc:
                reason = restarts.restart_after(exc)
            else:
                self.exports.done_with(export.key)
                return
            self.log(
                "%s: window %s (%r) requested again from the start (%s); its %d records "
                "already sent are sent again with the same %s",
                self.name,
                window,
                context["event_name"],
                reason,
                emitted,
                self.primary_keys[0],
                level=logging.WARNING,
            )
