"""CleverTap's own count of each event and day the run read, beside the tap's (`event_counts`).

The event streams record what they emitted, per window and day (`CountLedger`, written after
each whole window). After them (the tap syncs `event_counts` last), this stream asks the
count API for each of those days (`POST /1/counts/events.json`, polled by `req_id` while
CleverTap answers `partial`), `max_concurrent_requests` at a time through the same request
slots, and emits one record per event and day with both numbers. A count that fails or
times out is null, with one WARNING: never a failed run.

Its bookmark, per event stream (`counted_to`), is the event stream's bookmark once the counts
of the days read up to it were emitted. An event stream reads from the older of its own
bookmark and this one: a run stopped after an event window but before its counts reads that
window again, so every day gets its record.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from tap_clevertap.client import EVENT_COUNTS_PATH, CleverTapStream
from tap_clevertap.discovery import EVENT_COUNTS_STREAM
from tap_clevertap.errors import CleverTapError, ExportNotReady
from tap_clevertap.schemas import EVENT_COUNT_SCHEMA
from tap_clevertap.windows import ONE_DAY, Window, day_int, parse_day_int
from tap_clevertap.wire import response_head

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterable, Mapping

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.streams.windowed import PageShaper

# Key of the per-event-stream bookmarks in `bookmarks.event_counts`.
COUNTED_TO_KEY = "counted_to"
# The counts' bookmark of an event stream that had none when counting began: from start_date.
NOTHING_COUNTED = 0


class DayTally:
    """Counts a window's records by their day (`ts` // 10**6), page by page.

    Wraps the window's shaper; a fresh one per attempt, so a window requested again from
    step 1 is counted once.
    """

    def __init__(self, shaper: PageShaper) -> None:
        """Count what `shaper` (the event stream's) passes through."""
        self.shaper = shaper
        self.days: Counter[int] = Counter()

    def shape_page(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The shaper's page, its records counted by day."""
        page = self.shaper.shape_page(records)
        days = self.days
        for record in page:
            ts = record.get("ts")
            if type(ts) is int:
                days[ts // 1_000_000] += 1
        return page


@dataclass(frozen=True)
class WindowRead:
    """One window of one event stream, read to its end: the records emitted per day."""

    stream: str
    event_name: str
    window: Window
    emitted: Mapping[int, int]  # YYYYMMDD -> records

    def days(self) -> list[dt.date]:
        """The window's days, in order."""
        days, day = [], self.window.first
        while day <= self.window.last:
            days.append(day)
            day += ONE_DAY
        return days


@dataclass
class CountLedger:
    """What the event streams read in this run, for the count stream to compare.

    Inactive (nothing recorded, no bookmark held back) unless the tap `start`s it with the
    count stream selected.
    """

    active: bool = False  # the count stream is selected: the event streams record windows
    counted_to: dict[str, int] = field(default_factory=dict)  # the counts' bookmarks
    windows: list[WindowRead] = field(default_factory=list)
    bookmarks: dict[str, int] = field(default_factory=dict)  # event streams' after the run

    def start(self, *, active: bool, counted_to: Mapping[str, int]) -> None:
        """A run begins: whether counts are wanted, and the counts' bookmarks so far."""
        self.active = active
        self.counted_to = dict(counted_to)
        self.windows.clear()
        self.bookmarks.clear()

    def resume_before(self, stream: str, bookmark: dt.date | None) -> dt.date | None:
        """The bookmark an event stream reads after: its own, or the counts' if older."""
        counted = self.counted_to.get(stream)
        if not self.active or counted is None or bookmark is None:
            return bookmark
        if counted == NOTHING_COUNTED:
            return None  # from start_date
        return min(bookmark, parse_day_int(counted))

    def window_read(self, read: WindowRead, bookmark: dt.date | None) -> None:
        """An event stream emitted every record of a window; its bookmark is now `bookmark`."""
        if not self.active:
            return
        self.windows.append(read)
        if bookmark is not None:
            self.bookmarks[read.stream] = day_int(bookmark)


@dataclass(frozen=True)
class DayCount:
    """One event and day: what CleverTap counts and what the run emitted."""

    event_name: str
    day: dt.date
    exported: int
    clevertap: int | None


class EventCountStream(CleverTapStream):
    """One record per event and day the run read: CleverTap's count and the tap's."""

    name = EVENT_COUNTS_STREAM
    record_schema = EVENT_COUNT_SCHEMA
    path = EVENT_COUNTS_PATH
    primary_keys = ("event_name", "day")
    # Named so that catalogs show the stream as INCREMENTAL; records go out in day order.
    replication_key = "day"
    is_sorted = True

    def __init__(
        self, tap: Tap, *, request_slots: threading.BoundedSemaphore, ledger: CountLedger
    ) -> None:
        """The `event_counts` stream, reading what the event streams wrote in `ledger`."""
        super().__init__(tap, request_slots=request_slots)
        self.ledger = ledger

    def begin(self, bookmarks: Mapping[str, dt.date | None]) -> None:
        """Before the event streams run (`bookmarks`: theirs): start the ledger.

        Each event stream the counts have no bookmark for gets its own (or none: from
        start_date).

        That goes into the state at once, so every STATE of the run holds it: a run stopped
        before the counts were emitted leaves the event streams to read those days again.
        """
        counted = self.saved_counted_to()
        for stream, bookmark in bookmarks.items():
            if stream not in counted:
                counted[stream] = NOTHING_COUNTED if bookmark is None else day_int(bookmark)
        self.stream_state[COUNTED_TO_KEY] = dict(counted)
        self.ledger.start(active=True, counted_to=counted)

    def saved_counted_to(self) -> dict[str, int]:
        """Per event stream, the last day whose count was emitted (YYYYMMDD), from the state."""
        saved = self.tap_state.get("bookmarks", {}).get(self.name, {}).get(COUNTED_TO_KEY)
        if saved is None:
            return {}
        try:
            counted = {str(stream): int(day) for stream, day in saved.items()}
            for day in counted.values():
                if day != NOTHING_COUNTED:
                    parse_day_int(day)
        except (AttributeError, TypeError, ValueError) as exc:
            raise CleverTapError(
                f"state bookmarks.{self.name}.{COUNTED_TO_KEY} = {saved!r:.100} is not a map "
                "of stream names to YYYYMMDD days: fix it or run without this stream's state"
            ) from exc
        return counted

    @override
    def validate_response(self, response: requests.Response) -> None:
        # A count still being made: poll the same `req_id` again, as an export being prepared.
        if response.request.method == "GET" and response.status_code == 200:
            head = response_head(response)
            if head.get("status") == "partial":
                raise ExportNotReady(str(head.get("error") or "count still being made"))
        super().validate_response(response)

    def clevertap_count(self, event_day: tuple[str, dt.date]) -> int | None:
        """CleverTap's count of the event on the day; None (with a WARNING) if it failed."""
        event_name, day = event_day
        try:
            return self.ask_count(event_name, day)
        except CleverTapError as exc:
            self.log(
                "%s: CleverTap's count of %r on %s failed (%s): its clevertap_count is null",
                self.name,
                event_name,
                day,
                exc.one_line(),
                level=logging.WARNING,
            )
            return None

    def ask_count(self, event_name: str, day: dt.date) -> int:
        """The count API's answer for the event on the day, polled while `partial`.

        Raises:
            CleverTapError: the count failed, timed out, or the answer has no count.
        """
        context = {"event_name": event_name, "from": day_int(day), "to": day_int(day)}
        body = self.fetch_body("POST", self.path, data=context, context=context)
        if body.get("status") == "partial":
            params = {"req_id": body.get("req_id")}
            body = self.fetch_body("GET", self.path, params=params, context=context)
        count = body.get("count")
        if type(count) is not int:
            raise CleverTapError(f"CleverTap's answer has no count: {body!r:.200}")
        return count

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        ledger = self.ledger
        wanted = [(read, day) for read in ledger.windows for day in read.days()]
        asked = [(read.event_name, day) for read, day in wanted]
        counted = list(self.concurrently(self.clevertap_count, asked))
        counts = [
            DayCount(read.event_name, day, read.emitted.get(day_int(day), 0), clevertap)
            for (read, day), clevertap in zip(wanted, counted, strict=True)
        ]
        self._log_windows(ledger.windows, counts)
        self._warn_of_differences(counts)
        checked_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        for count in sorted(counts, key=lambda c: (c.day, c.event_name)):
            yield {
                "event_name": count.event_name,
                "day": count.day.isoformat(),
                "clevertap_count": count.clevertap,
                "exported_count": count.exported,
                "checked_at": checked_at,
            }
        # Every count of the windows read is out: the event streams may move past them.
        self.stream_state.setdefault(COUNTED_TO_KEY, {}).update(ledger.bookmarks)

    def _log_windows(self, windows: list[WindowRead], counts: list[DayCount]) -> None:
        """One INFO line per window: both totals, and on how many days they differ."""
        remaining = iter(counts)
        for read in windows:
            days = [next(remaining) for _ in read.days()]
            known = [c for c in days if c.clevertap is not None]
            differ = sum(1 for c in known if c.clevertap != c.exported)
            self.log(
                "%s: %r %s: CleverTap counts %s, the tap exported %d%s",
                self.name,
                read.event_name,
                read.window,
                sum(c.clevertap or 0 for c in known) if known else "nothing (failed)",
                sum(c.exported for c in days),
                f"; they differ on {differ} day(s)" if differ else "",
            )

    def _warn_of_differences(self, counts: list[DayCount]) -> None:
        """One WARNING per event whose counts differ from the export on some days."""
        by_event: dict[str, list[DayCount]] = {}
        for count in counts:
            if count.clevertap is not None and count.clevertap != count.exported:
                by_event.setdefault(count.event_name, []).append(count)
        for event_name, differing in by_event.items():
            self.log(
                "%s: %r: CleverTap's count differs from what the tap exported on %d day(s): %s. "
                "Events that reach CleverTap after a day was read count but were not exported: "
                "a later run re-reads the last lookback_days",
                self.name,
                event_name,
                len(differing),
                ", ".join(
                    f"{c.day} (CleverTap {c.clevertap}, exported {c.exported})"
                    for c in sorted(differing, key=lambda c: c.day)
                ),
                level=logging.WARNING,
            )
