"""Keeping CleverTap busy: exports opened and read ahead, up to the account's request limit.

A page's path, hop by hop (data flows one way; nothing downstream calls back up):

1. `Tap.sync_all` hands the scheduler the run's plan (`ExportPlan.of`): every export of every
   selected windowed stream, in the order the streams will read them, each with the
   `ExportClient` (client.py) that reads it.
2. A stream asks for an export's pages (`ExportScheduler.pages`).
3. A reading thread (`_Reader`) opens that export, and the next ones in the plan, with their
   client: step 1 (a POST that returns a cursor), polling while CleverTap prepares the export
   (`code` 2), then each page by its cursor; every request with the retries and request slots.
4. A page's cursors come from its head (`wire.page_head`), without parsing its records; its
   raw body waits in the `Spool` (memory, then files).
5. The writing thread takes the pages in plan order (`FetchedPage`), parses each once
   (`ExportClient.page_records`), shapes and writes its records; after a window's last page
   the stream moves its bookmark and writes STATE.

With `max_concurrent_requests` 1, or without a plan (a bare `stream.sync()`), step 3 runs in
the writing thread, one request at a time, and nothing is spooled.

Limits: at most `max_concurrent_requests` HTTP requests in flight (CleverTap allows 3 per
account; a slot is held only during a request, not while waiting to retry or poll); at most
`max_exports_ahead` exports being read ahead at once besides the current one (an export whose
pages are all spooled no longer counts), none more than `LOOKAHEAD_EXPORTS` beyond the
current one; the spool's budgets (when they are used up, reading ahead pauses).

An event CleverTap refuses to export is refused at its first step-1 POST. So that none of its
other windows is requested, only an event's first export is opened ahead until CleverTap has
given one of its exports a cursor (`ExportPlan.accept`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from tap_clevertap.signals import SignalSafeCondition
from tap_clevertap.spool import Spool, SpoolBudget
from tap_clevertap.wire import parsed_body, read_whole_body

if TYPE_CHECKING:
    import requests

    from tap_clevertap.client import ExportClient
    from tap_clevertap.pagination import CursorPaginator
    from tap_clevertap.spool import SpooledPage

# Exports read ahead are started among the next this many in the plan, no further.
LOOKAHEAD_EXPORTS = 64
STOP_GRACE_SECONDS = 2.0


class StreamEvent(NamedTuple):
    """An event as one stream exports it: CleverTap refuses or accepts it as a whole."""

    stream: str
    event_name: str


class ExportKey(NamedTuple):
    """One export: a stream's event over days `first`..`last` (YYYYMMDD ints)."""

    stream: str
    event_name: str
    first: int
    last: int

    @property
    def event(self) -> StreamEvent:
        """The stream and event this export belongs to."""
        return StreamEvent(self.stream, self.event_name)


class PlannedExport(NamedTuple):
    """An export of the plan: its key, the client that reads it and its stream context."""

    key: ExportKey
    client: ExportClient
    context: dict[str, Any]


@dataclass(frozen=True)
class FetchedPage:
    """One page of an export, as fetched: its raw body and the cursors around it.

    `parsed` is the whole body when reading its head already parsed it (a small page, an
    export's last page), so that it is not parsed again.
    """

    cursor: str  # the cursor it was fetched with (to fetch it again)
    next_cursor: str | None  # the cursor followed after it; None on the export's last page
    body: bytes
    parsed: dict[str, Any] | None = None


class ExportPlan:
    """The exports of a run in reading order, and which of them to open next: no threads.

    An event's first export may be opened at once; its later ones only once CleverTap has
    given one of its exports a cursor (`accept`): an event it refuses costs one request.
    """

    def __init__(self, exports: Iterable[PlannedExport] = ()) -> None:
        """The plan of `exports`, in order, none opened yet."""
        self._exports: list[PlannedExport] = []
        self._index: dict[ExportKey, int] = {}
        self._first: dict[StreamEvent, ExportKey] = {}
        self._accepted: set[StreamEvent] = set()
        self._opened: set[ExportKey] = set()
        self._extend(exports)

    def _extend(self, exports: Iterable[PlannedExport]) -> None:
        for export in exports:
            self._index[export.key] = len(self._exports)
            self._exports.append(export)
            self._first.setdefault(export.key.event, export.key)

    def __bool__(self) -> bool:
        """Whether anything is planned."""
        return bool(self._exports)

    def __contains__(self, key: object) -> bool:
        """Whether the export `key` is planned."""
        return key in self._index

    def is_last(self, key: ExportKey) -> bool:
        """Whether `key` is the plan's last export."""
        return bool(self._exports) and self._exports[-1].key == key

    def accept(self, event: StreamEvent) -> bool:
        """CleverTap gave an export of `event` a cursor; True the first time."""
        if event in self._accepted:
            return False
        self._accepted.add(event)
        return True

    def opened(self, key: ExportKey) -> None:
        """The export `key` has been opened (it is not to be opened again ahead)."""
        self._opened.add(key)

    def forget(self, event: StreamEvent) -> None:
        """CleverTap refused `event`: none of its exports is to be opened."""
        kept = [export for export in self._exports if export.key.event != event]
        self._exports, self._index = [], {}
        self._extend(kept)

    def to_open(self, current: ExportKey, *, reading: int, limit: int) -> list[PlannedExport]:
        """The exports to open after `current`, when `reading` of at most `limit` are open.

        In plan order among the next `LOOKAHEAD_EXPORTS`: those not opened yet whose event
        is accepted, or that are their event's first export.
        """
        index = self._index.get(current)
        if index is None:
            return []
        chosen: list[PlannedExport] = []
        for export in self._exports[index + 1 : index + 1 + LOOKAHEAD_EXPORTS]:
            if reading + len(chosen) >= limit:
                break
            key = export.key
            first = self._first.get(key.event) == key
            if key not in self._opened and (key.event in self._accepted or first):
                chosen.append(export)
        return chosen


def read_in_line(
    export: PlannedExport,
    *,
    on_cursor: Any = None,
    paginator: CursorPaginator | None = None,
) -> Iterator[FetchedPage]:
    """An export's pages fetched by the caller, one request at a time.

    From step 1, or from where `paginator` stands (a reader stopped part-way).
    """
    client, context = export.client, export.context
    if paginator is None:
        paginator, response = client.open(context, on_cursor)
    else:
        response = client.fetch_page(paginator, context)
    yield from _follow(export, paginator, response)


def _follow(
    export: PlannedExport, paginator: CursorPaginator, response: requests.Response
) -> Iterator[FetchedPage]:
    """The page `response` holds, then the export's next pages up to its last."""
    while True:
        page = _advance(paginator, response)
        del response  # its body is in the page
        yield page
        if page.next_cursor is None:
            return
        response = export.client.fetch_page(paginator, export.context)


def _advance(paginator: CursorPaginator, response: requests.Response) -> FetchedPage:
    """The page `response` holds; the paginator moves on to the cursor after it."""
    cursor = paginator.current_value or ""
    paginator.advance(response)
    next_cursor = None if paginator.finished else paginator.current_value
    return FetchedPage(cursor, next_cursor, read_whole_body(response), parsed_body(response))


@dataclass
class _SpooledFetch:
    """A page read ahead: its cursors, its body in the spool, its parse if already made."""

    cursor: str
    next_cursor: str | None
    spooled: SpooledPage
    parsed: dict[str, Any] | None


class _Reader:
    """One export read in its own thread, its pages spooled in order until the last.

    Its fields are guarded by the scheduler's condition.
    """

    def __init__(self, export: PlannedExport, scheduler: ExportScheduler) -> None:
        """A reader not started yet."""
        self.export = export
        self.scheduler = scheduler
        self.pages: collections.deque[_SpooledFetch] = collections.deque()
        self.paginator: CursorPaginator | None = None  # once step 1 gave a cursor
        self.running = True  # the thread has not ended
        self.finished = False  # the last page is in `pages`
        self.error: BaseException | None = None  # what ended the thread, raised to the writer
        self.cancelled = False
        key = export.key
        self.thread = threading.Thread(
            target=self._run, name=f"clevertap-read-{key.event_name}-{key.first}", daemon=True
        )

    def _needed_now(self) -> bool:
        return self.scheduler.current is self and not self.pages

    def _run(self) -> None:
        scheduler, export = self.scheduler, self.export
        spool, changed = scheduler.spool, scheduler.changed
        try:
            on_cursor = partial(scheduler.cursor_given, export.key.event)
            paginator, response = export.client.open(export.context, on_cursor)
            self.paginator = paginator
            fetched = _follow(export, paginator, response)
            del response  # held by `fetched` until its body is in the first page
            for page in fetched:
                spooled = spool.put(
                    page.body, needed_now=self._needed_now, cancelled=lambda: self.cancelled
                )
                if spooled is None:
                    return
                # A parse already made is kept while the body waits in memory (it is what
                # the writer would make of it), not for a body that went to a file.
                parsed = page.parsed if spooled.path is None else None
                with changed:
                    self.pages.append(_SpooledFetch(page.cursor, page.next_cursor, spooled, parsed))
                    self.finished = page.next_cursor is None
                    changed.notify_all()
                if self.finished or self.cancelled or not scheduler.active:
                    return
        except BaseException as exc:  # raised in the writing thread when it gets here
            self.error = exc
        finally:
            with changed:
                self.running = False
                scheduler.reader_ended(self)
                changed.notify_all()

    def take(self) -> FetchedPage:
        """The next page read ahead (one is there), its spool room given back (locked)."""
        entry = self.pages.popleft()
        spool = self.scheduler.spool
        if entry.parsed is not None:
            spool.release(entry.spooled)
            return FetchedPage(entry.cursor, entry.next_cursor, b"", entry.parsed)
        return FetchedPage(entry.cursor, entry.next_cursor, spool.take(entry.spooled))

    def cancel(self) -> None:
        """Stop after the current request; give back the pages spooled (locked)."""
        self.cancelled = True
        while self.pages:
            self.scheduler.spool.release(self.pages.popleft().spooled)


class ExportScheduler:
    """Reads the plan's exports ahead, within the request limit and the spool's budgets.

    It owns the condition that guards its readers and hands it to its spool. Reading ahead
    stops after the last planned export or a failure (`stop`), and for good, with one
    WARNING, if the spool cannot write a file.
    """

    def __init__(
        self,
        *,
        max_concurrent_requests: int,
        max_exports_ahead: int,
        spool_budget: SpoolBudget,
        logger: logging.Logger,
    ) -> None:
        """Nothing is read ahead with one request at a time (`max_concurrent_requests` 1)."""
        self.max_exports_ahead = max_exports_ahead
        self.may_read_ahead = max_concurrent_requests > 1
        self.changed = SignalSafeCondition()
        self.spool = Spool(spool_budget, changed=self.changed)  # nothing on disk until needed
        self.logger = logger
        self.plan = ExportPlan()
        self._readers: dict[ExportKey, _Reader] = {}  # started ahead, not yet read
        self.current: _Reader | None = None  # the reader of the export being drained
        self._current_key: ExportKey | None = None
        self._live: set[_Reader] = set()  # readers whose thread has not ended
        self._warned = False
        self._stopped = False

    @property
    def active(self) -> bool:
        """Whether exports are read ahead now: allowed, planned, not stopped, spool sound."""
        return (
            self.may_read_ahead
            and bool(self.plan)
            and not self._stopped
            and self.spool.failure is None
        )

    def start(self, exports: Iterable[PlannedExport]) -> None:
        """The run's plan: every export the streams will read, in that order."""
        with self.changed:
            self.plan = ExportPlan(exports)

    def pages(self, export: PlannedExport) -> Iterator[FetchedPage]:
        """The export's pages in order, read ahead when they can be."""
        key = export.key
        on_cursor = partial(self.cursor_given, key.event)
        if not self.active:
            yield from read_in_line(export, on_cursor=on_cursor)
            return
        changed = self.changed
        with changed:
            reader = self._readers.pop(key, None)
            if reader is None:  # not opened ahead, or read again from step 1 after a failure
                reader = self._start(export)
            self.current, self._current_key = reader, key
            self._open_ahead()
            changed.notify_all()
        try:
            while True:
                with changed:
                    while not reader.pages and reader.running:
                        changed.wait()
                    if not reader.pages:
                        break
                    page = reader.take()
                yield page
            if reader.error is not None:
                raise reader.error
            if not reader.finished:
                # Reading ahead stopped part-way: the rest of the export in this thread.
                self._warn_of_spool_failure()
                yield from read_in_line(export, on_cursor=on_cursor, paginator=reader.paginator)
        finally:
            with changed:
                reader.cancel()  # nothing left, unless the writer gave up on this export
                if self.current is reader:
                    self.current = None

    def _start(self, export: PlannedExport) -> _Reader:
        """A reader for the export, in its own thread (locked)."""
        reader = _Reader(export, self)
        self.plan.opened(export.key)
        reader.thread.start()
        self._live.add(reader)  # only once started: `stop` joins the live readers
        return reader

    def cursor_given(self, event: StreamEvent) -> None:
        """CleverTap gave an export of `event` a cursor: its other exports may open."""
        with self.changed:
            if self.plan.accept(event):
                self._open_ahead()

    def reader_ended(self, reader: _Reader) -> None:
        """A reader's thread ended: another export may be read ahead (locked)."""
        self._live.discard(reader)
        self._open_ahead()

    def _open_ahead(self) -> None:
        """Start readers for the exports after the current one, within the limits (locked)."""
        current = self._current_key
        if current is None or not self.active:
            return
        reading = sum(reader.running for reader in self._readers.values())
        for export in self.plan.to_open(current, reading=reading, limit=self.max_exports_ahead):
            self._readers[export.key] = self._start(export)

    def _warn_of_spool_failure(self) -> None:
        failure = self.spool.failure
        if failure is not None and not self._warned:
            self._warned = True
            self.logger.warning(
                "Pages read ahead could not be written to the spool (%s: %s): reading ahead "
                "is off for the rest of the run, which goes on one export at a time; check "
                "spool_dir and its free space",
                type(failure).__name__,
                failure,
            )

    def forget(self, event: StreamEvent) -> None:
        """CleverTap refused `event`: stop reading its exports ahead, start no more."""
        with self.changed:
            self.plan.forget(event)
            for key in [key for key in self._readers if key.event == event]:
                self._readers.pop(key).cancel()

    def done_with(self, key: ExportKey) -> None:
        """The export has been read to the end; after the plan's last one, stop."""
        if self.plan.is_last(key):
            self.stop()

    def stop(self) -> None:
        """Stop reading ahead, drop what was read ahead and remove the spool (idempotent).

        Requests in flight are given `STOP_GRACE_SECONDS` to end, so that their log lines
        come before the run's last line rather than after it. (A thread waiting to retry or
        to poll is left: it is a daemon and ends with the process.)
        """
        with self.changed:
            self._stopped = True
            for reader in self._readers.values():
                reader.cancel()
            self._readers.clear()
            live = list(self._live)
            for reader in live:
                reader.cancelled = True
            self.changed.notify_all()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for reader in live:
            reader.thread.join(max(0.0, deadline - time.monotonic()))
        self._warn_of_spool_failure()
        if self.spool.disk_peak:
            self.logger.info(
                "Pages read ahead used up to %.1f MiB of disk in %s",
                self.spool.disk_peak / 2**20,
                self.spool.parent,
            )
            self.spool.disk_peak = 0
        self.spool.close()
