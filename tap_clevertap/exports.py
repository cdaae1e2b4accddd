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
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import requests

    from tap_clevertap.pagination import CursorPaginator

T = TypeVar("T")

# An export's key: (stream name, from, to).
ExportKey = tuple[str, int, int]
Page = tuple["CursorPaginator", "requests.Response"]


class _Workers:
    """Daemon threads running submitted calls. Daemon, so that a worker sleeping in a
    60-second poll never holds the process open after the run ends or fails."""

    def __init__(self, count: int) -> None:
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
        for _ in self._threads:
            self._tasks.put(None)


class ExportScheduler:
    """Opens exports in plan order, up to `ahead` beyond the one being drained."""

    def __init__(self, *, max_concurrent_requests: int, max_exports_ahead: int) -> None:
        self.slots = threading.BoundedSemaphore(max_concurrent_requests)
        self.ahead = max_exports_ahead if max_concurrent_requests > 1 else 0
        self.prefetch = max_concurrent_requests > 1
        self._workers = _Workers(self.ahead + 1) if self.prefetch else None
        self._plan: list[tuple[ExportKey, Callable[[], Page]]] = []
        self._index: dict[ExportKey, int] = {}
        self._opened: dict[ExportKey, Future[Page]] = {}

    def plan(self, key: ExportKey, open_export: Callable[[], Page]) -> None:
        """Add an export to the reading order (call for every window of every stream first)."""
        self._index[key] = len(self._plan)
        self._plan.append((key, open_export))

    def take(self, key: ExportKey, open_export: Callable[[], Page]) -> Page:
        """The export's paginator and first page, opened ahead if it was planned."""
        index = self._index.get(key)
        if index is None or self._workers is None:
            return open_export()
        for later_key, later_open in self._plan[index + 1 : index + 1 + self.ahead]:
            if later_key not in self._opened:
                self._opened[later_key] = self._workers.submit(later_open)
        future = self._opened.pop(key, None)
        return future.result() if future is not None else open_export()

    def pages(
        self,
        first: Page,
        *,
        fetch_now: Callable[[CursorPaginator], requests.Response],
        fetch_ahead: Callable[[CursorPaginator], requests.Response],
        checked: Callable[[CursorPaginator, requests.Response], requests.Response],
    ) -> Iterator[requests.Response]:
        """The export's responses in order, the next one fetched (`fetch_ahead`) while the
        caller works; each is `checked` in the caller's thread before it is used."""
        paginator, response = first
        while True:
            response = checked(paginator, response)
            paginator.advance(response)
            upcoming: Future[requests.Response] | None = None
            if not paginator.finished and self._workers is not None:
                upcoming = self._workers.submit(lambda: fetch_ahead(paginator))
            yield response
            if paginator.finished:
                return
            response = upcoming.result() if upcoming is not None else fetch_now(paginator)

    def read(self, key: ExportKey) -> None:
        """The export has been read to the end; after the last planned one, stop the threads."""
        if self._plan and self._plan[-1][0] == key:
            self.stop()

    def stop(self) -> None:
        for future in self._opened.values():
            future.cancel()
        self._opened.clear()
        if self._workers is not None:
            self._workers.stop()
            self._workers = None
