"""Keeping CleverTap busy: exports opened and read ahead, up to the account's request limit.

CleverTap prepares an export after the step-1 POST (answering `code` 2 until it is ready),
then serves it a page at a time, each page taking its own round trip. Done one after
another, a backfill waits on preparation and then on page latency. Here each export is read
by its own thread (`_Reader`): step 1, polling, then following its cursors, each page's raw
body put in the spool (`spool.py`). While the writing thread drains one export, the next ones
in the order the tap will read them (`Plan`: every window of every selected stream) are read
ahead, so that up to `max_concurrent_requests` requests are busy whenever there is work.

Records are still emitted by the writing thread only, one export after another in plan order,
and each page is parsed there, once: STATE and ordering are exactly as without this.

Limits:
- at most `max_concurrent_requests` HTTP requests in flight (CleverTap allows 3 per account;
  a slot is held only during a request, not while waiting to retry or poll: `client.py`);
- at most `max_exports_ahead` exports being read ahead at once, besides the current one (an
  export whose pages are all spooled no longer counts), and none more than
  `LOOKAHEAD_EXPORTS` exports beyond the current one;
- the spool's budgets: when they are used up, reading ahead pauses.
With `max_concurrent_requests` 1 nothing runs ahead and there is no spool: one request at a
time, in the writing thread.

An event CleverTap refuses to export is refused at its first step-1 POST. So that none of its
other windows is requested, only an event's first export is opened ahead until CleverTap has
given one of its exports a cursor (`on_cursor`); its other exports open as soon as it has.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from tap_clevertap.spool import SpooledPage
from tap_clevertap.wire import read_whole_body

if TYPE_CHECKING:
    import requests

    from tap_clevertap.pagination import CursorPaginator
    from tap_clevertap.spool import Spool

# An export's key: (stream name, event name, from, to).
ExportKey = tuple[str, str, int, int]
# Exports read ahead are started among the next this many in the plan, no further.
LOOKAHEAD_EXPORTS = 64
STOP_GRACE_SECONDS = 2.0


class ExportSource(Protocol):
    """What reads an export's pages from CleverTap (the stream the export belongs to)."""

    def open_export(
        self, context: Any, on_cursor: Callable[[], None] | None = None
    ) -> tuple[CursorPaginator, requests.Response]:
        """Step 1, then the first page: the paginator at it and the response."""

    def fetch_page(self, paginator: CursorPaginator, context: Any) -> requests.Response:
        """The response at the paginator's position, with retries and polling."""


# Every export of the run in reading order: its key, its source and its stream context.
Plan = Iterable[tuple[ExportKey, ExportSource, Any]]


@dataclass(frozen=True)
class FetchedPage:
    """One page of an export, as fetched: its raw body and the cursors around it."""

    cursor: str  # the cursor it was fetched with (to fetch it again)
    next_cursor: str | None  # the cursor followed after it; None on the export's last page
    body: bytes


def read_in_line(
    source: ExportSource,
    context: Any,
    *,
    on_cursor: Callable[[], None] | None = None,
    paginator: CursorPaginator | None = None,
) -> Iterator[FetchedPage]:
    """An export's pages fetched by the caller, one request at a time.

    From step 1, or from where `paginator` stands (a reader stopped part-way).
    """
    if paginator is None:
        paginator, response = source.open_export(context, on_cursor)
    else:
        response = source.fetch_page(paginator, context)
    yield from _follow(source, context, paginator, response)


def _follow(
    source: ExportSource, context: Any, paginator: CursorPaginator, response: requests.Response
) -> Iterator[FetchedPage]:
    """The page `response` holds, then the export's next pages up to its last."""
    while True:
        page = _advance(paginator, response)
        del response  # its body is in the page
        yield page
        if page.next_cursor is None:
            return
        response = source.fetch_page(paginator, context)


def _advance(paginator: CursorPaginator, response: requests.Response) -> FetchedPage:
    """The page `response` holds; the paginator moves on to the cursor after it."""
    cursor = paginator.current_value or ""
    paginator.advance(response)
    next_cursor = None if paginator.finished else paginator.current_value
    return FetchedPage(cursor, next_cursor, read_whole_body(response))


class _Reader:
    """One export read in its own thread, its pages spooled in order until the last.

    Its state is guarded by the spool's condition, shared with the writer and the other
    readers.
    """

    def __init__(
        self,
        key: ExportKey,
        source: ExportSource,
        context: Any,
        scheduler: ExportScheduler,
    ) -> None:
        """A reader not started yet."""
        self.key = key
        self.source = source
        self.context = context
        self.scheduler = scheduler
        self.pages: collections.deque[tuple[str, str | None, SpooledPage]] = collections.deque()
        self.paginator: CursorPaginator | None = None  # once step 1 gave a cursor
        self.running = True  # the thread has not ended
        self.finished = False  # the last page is in `pages`
        self.error: BaseException | None = None  # what ended the thread, raised to the writer
        self.cancelled = False
        self.thread = threading.Thread(
            target=self._run, name=f"clevertap-read-{key[1]}-{key[2]}", daemon=True
        )

    def _needed_now(self) -> bool:
        return self.scheduler.current is self and not self.pages

    def _run(self) -> None:
        scheduler = self.scheduler
        spool = scheduler.spool
        try:
            on_cursor = partial(scheduler.accept, self.key[:2])
            paginator, response = self.source.open_export(self.context, on_cursor)
            self.paginator = paginator
            fetched = _follow(self.source, self.context, paginator, response)
            del response  # held by `fetched` until its body is in the first page
            for page in fetched:
                spooled = spool.put(
                    page.body, needed_now=self._needed_now, cancelled=lambda: self.cancelled
                )
                if spooled is None:
                    return
                with spool.changed:
                    self.pages.append((page.cursor, page.next_cursor, spooled))
                    self.finished = page.next_cursor is None
                    spool.changed.notify_all()
                if self.finished or self.cancelled or not scheduler.reading_ahead:
                    return
        except BaseException as exc:  # raised in the writing thread when it gets here
            self.error = exc
        finally:
            with spool.changed:
                self.running = False
                scheduler.reader_ended(self)
                spool.changed.notify_all()

    def cancel(self) -> None:
        """Stop after the current request; give back the pages spooled (locked)."""
        self.cancelled = True
        while self.pages:
            self.scheduler.spool.release(self.pages.popleft()[2])


class ExportScheduler:
    """Reads exports ahead in plan order, within the request limit and the spool's budgets.

    The plan is asked of `planner` when the first export is read: only then are the state
    and the catalog's selection known. Reading ahead stops after the last planned export or
    a failure (`stop`), and for good, with one WARNING, if the spool cannot write a file.
    """

    def __init__(
        self,
        *,
        max_concurrent_requests: int,
        max_exports_ahead: int,
        planner: Callable[[], Plan],
        spool: Spool,
        logger: logging.Logger,
    ) -> None:
        """Nothing runs ahead with one request at a time (`max_concurrent_requests` 1)."""
        self.ahead = max_exports_ahead
        self.prefetch = max_concurrent_requests > 1
        self._planner: Callable[[], Plan] | None = planner
        self.spool = spool  # nothing on disk until a page does not fit in memory
        self.logger = logger
        self._plan: list[tuple[ExportKey, ExportSource, Any]] = []
        self._index: dict[ExportKey, int] = {}
        self._readers: dict[ExportKey, _Reader] = {}  # started ahead, not yet read
        self._started: set[ExportKey] = set()
        self._accepted: set[tuple[str, str]] = set()  # (stream, event) given a cursor
        self._first: dict[tuple[str, str], ExportKey] = {}  # each (stream, event)'s first
        self.current: _Reader | None = None  # the reader of the export being drained
        self._current_key: ExportKey | None = None
        self._live: set[_Reader] = set()  # readers whose thread has not ended
        self._warned = False
        self._stopped = False

    @property
    def reading_ahead(self) -> bool:
        """Whether exports are read ahead (until the end, a failure, or a spool failure)."""
        return self.prefetch and not self._stopped and self.spool.failure is None

    def _ensure_planned(self) -> None:
        """Ask for the plan, once, when the first export is read."""
        if self._planner is None:
            return
        planner, self._planner = self._planner, None
        for key, source, context in planner():
            self._index[key] = len(self._plan)
            self._plan.append((key, source, context))
            self._first.setdefault(key[:2], key)

    def pages(self, key: ExportKey, source: ExportSource, context: Any) -> Iterator[FetchedPage]:
        """The export's pages in order, read ahead when they can be."""
        self._ensure_planned()
        on_cursor = partial(self.accept, key[:2])
        if not self.reading_ahead:
            yield from read_in_line(source, context, on_cursor=on_cursor)
            return
        changed = self.spool.changed
        with changed:
            reader = self._readers.pop(key, None)
            if reader is None:  # not planned, or read again from step 1 after a failure
                reader = self._start(key, source, context)
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
                    cursor, next_cursor, spooled = reader.pages.popleft()
                yield FetchedPage(cursor, next_cursor, self.spool.take(spooled))
            if reader.error is not None:
                raise reader.error
            if not reader.finished:
                # Reading ahead stopped part-way: the rest of the export in this thread.
                self._warn_of_spool_failure()
                yield from read_in_line(
                    source, context, on_cursor=on_cursor, paginator=reader.paginator
                )
        finally:
            with changed:
                reader.cancel()  # nothing left, unless the writer gave up on this export
                if self.current is reader:
                    self.current = None

    def _start(self, key: ExportKey, source: ExportSource, context: Any) -> _Reader:
        """A reader for the export, in its own thread (locked)."""
        reader = _Reader(key, source, context, self)
        self._started.add(key)
        reader.thread.start()
        self._live.add(reader)
        return reader

    def accept(self, group: tuple[str, str]) -> None:
        """CleverTap gave an export of this (stream, event) a cursor: it is not refused."""
        with self.spool.changed:
            if group not in self._accepted:
                self._accepted.add(group)
                self._open_ahead()

    def reader_ended(self, reader: _Reader) -> None:
        """A reader's thread ended: another export may be read ahead (locked)."""
        self._live.discard(reader)
        self._open_ahead()

    def _open_ahead(self) -> None:
        """Start readers for the exports after the current one, within the limits (locked)."""
        key = self._current_key
        index = self._index.get(key) if key is not None else None
        if index is None or not self.reading_ahead:
            return
        busy = sum(reader.running for reader in self._readers.values())
        for key, source, context in self._plan[index + 1 : index + 1 + LOOKAHEAD_EXPORTS]:
            if busy >= self.ahead:
                return
            group = key[:2]
            if key not in self._started and (group in self._accepted or self._first[group] == key):
                self._readers[key] = self._start(key, source, context)
                busy += 1

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

    def forget(self, stream: str, event_name: str) -> None:
        """CleverTap refused the event: stop reading its exports ahead, start no more."""
        group = (stream, event_name)
        with self.spool.changed:
            self._plan = [entry for entry in self._plan if entry[0][:2] != group]
            self._index = {entry[0]: number for number, entry in enumerate(self._plan)}
            for key in [key for key in self._readers if key[:2] == group]:
                self._readers.pop(key).cancel()

    def read(self, key: ExportKey) -> None:
        """The export has been read to the end; after the last planned one, stop."""
        if self._plan and self._plan[-1][0] == key:
            self.stop()

    def stop(self) -> None:
        """Stop reading ahead, drop what was read ahead and remove the spool (idempotent).

        Requests in flight are given `STOP_GRACE_SECONDS` to end, so that their log lines
        come before the run's last line rather than after it. (A thread waiting to retry or
        to poll is left: it is a daemon and ends with the process.)
        """
        with self.spool.changed:
            self._stopped = True
            for reader in self._readers.values():
                reader.cancel()
            self._readers.clear()
            live = list(self._live)
            for reader in live:
                reader.cancelled = True
            self.spool.changed.notify_all()
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
