"""Keeping CleverTap busy: exports prepared ahead and pages fetched ahead.

CleverTap prepares an export after the step-1 POST and answers `code` 2 until it is ready.
Done one after another, a backfill spends most of its time waiting. Here the next exports (of
this stream and of the streams to come, in the order the tap will read them) are opened in
background threads while the current one is drained, and the next page of an export is
fetched while the current page is written. Records are still emitted by the main thread, one
window after another, so STATE and ordering are exactly as without this.

Limits: at most `max_concurrent_requests` HTTP requests in flight (CleverTap allows 3 per
account; a slot is held only during a request, not while waiting to retry or poll), and at
most `max_exports_ahead` exports opened ahead (each holds a cursor, which expires when idle).
With `max_concurrent_requests` 1 nothing runs ahead: one request at a time.

An event CleverTap refuses to export is refused at its first step-1 POST. So that none of its
other windows is requested, only an event's first export is opened ahead until CleverTap has
given one of its exports a cursor (`on_cursor`); its other exports open as soon as it has.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import requests

    from tap_clevertap.client import Page
    from tap_clevertap.pagination import CursorPaginator

T = TypeVar("T")

# An export's key: (stream name, event name, from, to).
ExportKey = tuple[str, str, int, int]
# What opens an export: called with `on_cursor`, which it calls once step 1 gave a cursor.
Opener = Callable[[Callable[[], None]], "Page"]
# Every export of the run in reading order, with what opens it ahead.
Plan = Iterable[tuple[ExportKey, Opener]]


class PageSource(Protocol):
    """Where an export's pages come from (the stream that reads them)."""

    def fetch_page(
        self, paginator: CursorPaginator, context: Any, *, ahead: bool = False
    ) -> requests.Response:
        """The response at the paginator's position (`ahead`: fetched by a thread)."""

    def checked_page(
        self, paginator: CursorPaginator, response: requests.Response, context: Any
    ) -> requests.Response:
        """The response validated in full in the reading thread (or fetched again)."""


class _Workers:
    """Daemon threads running submitted calls.

    Daemon, so that a worker sleeping in a 60-second poll never holds the process open after
    the run ends or fails.
    """

    def __init__(self, count: int) -> None:
        """Start `count` threads."""
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"clevertap-export-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Run `call` in a worker; its result or exception lands in the future."""
        future: Future[T] = Future()
        self._tasks.put((future, call))
        return future

    def _run(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, call = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def stop(self) -> None:
        """Let each thread finish its current call, then end."""
        for _ in self._threads:
            self._tasks.put(None)


class ExportScheduler:
    """Opens exports in plan order, up to `max_exports_ahead` beyond the one being drained.

    The plan (every window of every selected stream, in the order the tap reads them) is
    asked of `planner` when the first export is taken: only then are the state and the
    catalog's selection known. The threads start then too, and stop after the last planned
    export or a failure (`stop`).
    """

    def __init__(
        self,
        *,
        max_concurrent_requests: int,
        max_exports_ahead: int,
        planner: Callable[[], Plan],
    ) -> None:
        """Nothing runs ahead with one request at a time (`max_concurrent_requests` 1)."""
        self.ahead = max_exports_ahead if max_concurrent_requests > 1 else 0
        self.prefetch = max_concurrent_requests > 1
        self._planner: Callable[[], Plan] | None = planner
        self._workers: _Workers | None = None
        self._plan: list[tuple[ExportKey, Opener]] = []
        self._index: dict[ExportKey, int] = {}
        self._opened: dict[ExportKey, Future[Page]] = {}
        self._accepted: set[tuple[str, str]] = set()  # (stream, event) given a cursor
        self._first: dict[tuple[str, str], ExportKey] = {}  # each (stream, event)'s first
        self._current: ExportKey | None = None  # the export being drained
        # Cursors arrive in worker threads too: the bookkeeping above is shared.
        self._lock = threading.Lock()

    def _ensure_planned(self) -> None:
        """Ask for the plan and start the threads, once, when the first export is taken."""
        if self._planner is None:
            return
        planner, self._planner = self._planner, None
        for key, open_export in planner():
            self._index[key] = len(self._plan)
            self._plan.append((key, open_export))
            self._first.setdefault(key[:2], key)
        if self.prefetch:
            self._workers = _Workers(self.ahead + 1)

    def take(self, key: ExportKey, open_export: Opener) -> Page:
        """The export's paginator and first page, opened ahead if it was planned."""
        self._ensure_planned()
        with self._lock:
            planned = key in self._index and self._workers is not None
            if planned:
                self._current = key
                self._open_ahead()
            future = self._opened.pop(key, None) if planned else None
        if future is not None:
            return future.result()
        return open_export(partial(self._accept, key[:2]))

    def _accept(self, group: tuple[str, str]) -> None:
        """CleverTap gave an export of this (stream, event) a cursor: it is not refused."""
        with self._lock:
            if group not in self._accepted:
                self._accepted.add(group)
                self._open_ahead()

    def _open_ahead(self) -> None:
        """Open the exports after the current one, within `ahead`, that may open (locked)."""
        index = self._index.get(self._current) if self._current is not None else None
        if index is None or self._workers is None:
            return
        for key, opener in self._plan[index + 1 : index + 1 + self.ahead]:
            group = key[:2]
            if key not in self._opened and (group in self._accepted or self._first[group] == key):
                accept = partial(self._accept, group)
                self._opened[key] = self._workers.submit(partial(opener, accept))

    def pages(self, first: Page, source: PageSource, context: Any) -> Iterator[requests.Response]:
        """The export's responses in order, the next one fetched while the caller works.

        Each response is checked by `source.checked_page` in the caller's thread before it is
        used.
        """
        paginator, response = first
        while True:
            response = source.checked_page(paginator, response, context)
            paginator.advance(response)
            upcoming: Future[requests.Response] | None = None
            if not paginator.finished and self._workers is not None:
                upcoming = self._workers.submit(
                    partial(source.fetch_page, paginator, context, ahead=True)
                )
            yield response
            if paginator.finished:
                return
            if upcoming is not None:
                response = upcoming.result()
            else:
                response = source.fetch_page(paginator, context)

    def forget(self, stream: str, event_name: str) -> None:
        """CleverTap refused the event: cancel its exports opened ahead, open no more."""
        group = (stream, event_name)
        with self._lock:
            self._plan = [(key, opener) for key, opener in self._plan if key[:2] != group]
            self._index = {key: number for number, (key, _) in enumerate(self._plan)}
            for key in [key for key in self._opened if key[:2] == group]:
                self._opened.pop(key).cancel()

    def read(self, key: ExportKey) -> None:
        """The export has been read to the end; after the last planned one, stop the threads."""
        if self._plan and self._plan[-1][0] == key:
            self.stop()

    def stop(self) -> None:
        """Cancel the exports opened ahead and stop the threads (after a failure too)."""
        with self._lock:
            for future in self._opened.values():
                future.cancel()
            self._opened.clear()
            if self._workers is not None:
                self._workers.stop()
                self._workers = None
