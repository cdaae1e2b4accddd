"""Pages read ahead, waiting to be written: memory first, then temporary files, bounded.

Threads reading exports ahead `put` each page's raw body here; the thread writing records
`take`s them in order. When both budgets are used up, `put` waits (reading ahead pauses),
unless the page is the very one the writer waits for, which is handed over at once: reading
ahead never fails the run and never drops a page. Besides what is spooled, each reading
thread holds at most the one page it just fetched.

Files go to a directory private to the run, `tap-clevertap-<pid>-<random>` (mode 0700),
created at the first page that does not fit in memory and removed by `close` (on success, on
error, and on SIGTERM/SIGINT, which end the run through `close`). Nothing is ever read back
from another run: after a SIGKILL, the next run starts from its state and the API. The
directory holds a lock for as long as its run lives, so a leftover one is removed (by the
next run that spools) only when no live process holds its lock: a concurrent run's spool is
never touched.

A file that cannot be written (disk full, directory gone) is reported once (`failure`), the
page stays in memory, and the caller stops reading ahead.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tap_clevertap.signals import SignalSafeCondition

DIRECTORY_PREFIX = "tap-clevertap-"
LOCK_NAME = "lock"
# A directory whose lock is free is left alone this long after it was made: its run may not
# have taken the lock yet.
STALE_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class SpoolBudget:
    """What pages read ahead may take: bytes in memory, then bytes in files.

    The files go under `directory` (default: the system's temporary directory).
    """

    memory_bytes: int
    disk_bytes: int
    directory: str | None = None


@dataclass
class SpooledPage:
    """One page's body: in memory, or in a file of the spool's directory."""

    size: int
    data: bytes | None = None
    path: Path | None = None
    counted: bool = True  # False: handed over beyond the budget, to the waiting writer


class Spool:
    """A bounded buffer of page bodies: `memory_bytes` in memory, then `disk_bytes` in files.

    One condition (`changed`) guards the spool; its owner (the export scheduler) hands it
    over, so that readers waiting for room and the writer waiting for pages share it.
    Signals do not interrupt its holder (see `signals`).
    """

    def __init__(self, budget: SpoolBudget, *, changed: SignalSafeCondition | None = None) -> None:
        """An empty spool; nothing is created on disk until a page does not fit in memory."""
        self.memory_bytes = budget.memory_bytes
        self.disk_bytes = budget.disk_bytes
        self.parent = Path(budget.directory or tempfile.gettempdir())
        self.changed = changed or SignalSafeCondition()
        self.memory_used = 0
        self.disk_used = 0
        self.disk_peak = 0  # for the benchmark's report
        self.failure: OSError | None = None  # the first failed write; files are off since
        self.directory: Path | None = None
        self._lock_fd: int | None = None
        self._names = itertools.count()
        self._closed = False

    def put(
        self, data: bytes, *, needed_now: Callable[[], bool], cancelled: Callable[[], bool]
    ) -> SpooledPage | None:
        """Keep `data`, waiting for room; None when `cancelled` while waiting.

        With no room, a page the writer waits for (`needed_now`) is handed over uncounted.
        """
        size = len(data)
        with self.changed:
            while True:
                if self._closed or cancelled():
                    return None
                if self.memory_used + size <= self.memory_bytes:
                    self.memory_used += size
                    return SpooledPage(size, data=data)
                if self.failure is None and self.disk_used + size <= self.disk_bytes:
                    self.disk_used += size  # reserved while the file is written
                    self.disk_peak = max(self.disk_peak, self.disk_used)
                    break
                if needed_now() or self.failure is not None:
                    return SpooledPage(size, data=data, counted=False)
                self.changed.wait(1.0)
        try:
            path = self._write(data)
        except OSError as exc:
            with self.changed:
                self.disk_used -= size
                self.failure = self.failure or exc
                self.changed.notify_all()
            return SpooledPage(size, data=data, counted=False)
        return SpooledPage(size, path=path)

    def take(self, page: SpooledPage) -> bytes:
        """The page's body, given back; its room is free again."""
        if page.path is not None:
            data = page.path.read_bytes()
            page.path.unlink()
        else:
            data = page.data or b""
        self.release(page)
        return data

    def release(self, page: SpooledPage) -> None:
        """Free the page's room without reading it (an export that will not be read)."""
        with self.changed:
            if page.path is not None:
                self.disk_used -= page.size
                with contextlib.suppress(OSError):
                    page.path.unlink()
            elif page.counted:
                self.memory_used -= page.size
            page.data = page.path = None
            page.counted = False
            self.changed.notify_all()

    def close(self) -> None:
        """Remove the directory (if any); pages put after this are not kept."""
        with self.changed:
            self._closed = True
            self.changed.notify_all()
            directory, self.directory = self.directory, None
            lock_fd, self._lock_fd = self._lock_fd, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        if lock_fd is not None:
            os.close(lock_fd)

    def _write(self, data: bytes) -> Path:
        directory = self._directory()
        path = directory / f"page-{next(self._names)}"
        with path.open("xb") as file:
            file.write(data)
        return path

    def _directory(self) -> Path:
        with self.changed:
            if self._closed:
                raise OSError("the spool is closed")
            if self.directory is None:
                remove_stale_directories(self.parent)
                directory = Path(
                    tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-", dir=self.parent)
                )
                fd = os.open(directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self.directory, self._lock_fd = directory, fd
            return self.directory


def remove_stale_directories(parent: Path) -> list[Path]:
    """Remove the spool directories of runs that are gone; the ones removed.

    Gone: nobody holds the directory's lock, and it is older than `STALE_AFTER_SECONDS` (a
    run takes its lock right after making it).
    """
    removed = []
    with contextlib.suppress(OSError):
        for directory in parent.glob(f"{DIRECTORY_PREFIX}*"):
            if not directory.is_dir() or directory.is_symlink():
                continue
            with contextlib.suppress(OSError):
                if time.time() - directory.stat().st_mtime < STALE_AFTER_SECONDS:
                    continue
                try:
                    fd = os.open(directory / LOCK_NAME, os.O_RDONLY)
                except FileNotFoundError:  # its run died before taking the lock
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(directory)
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live run's spool
                else:
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(directory)
                finally:
                    os.close(fd)
    return removed
