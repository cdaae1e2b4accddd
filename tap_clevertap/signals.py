"""SIGTERM/SIGINT end the run, but only where the writing thread can be interrupted safely.

Python runs a signal handler in the main thread between two bytecodes, and an exception it
raises lands wherever that thread was: half-way through a RECORD line written to a full
pipe, in `Thread.start` before the thread is marked started, or in `Condition.wait` before
the lock is taken back (the `with` block then fails to release it, and the cleanup that
follows fails on the same lock). So inside `deferred()` the handler only notes the signal,
and the run is stopped when the outermost such block ends. A wait inside such a block
(`SignalSafeCondition.wait`) wakes up often enough to notice a pending signal and leaves its
block, so a stop stays prompt while the writer waits for a page.

Outside those blocks the handler stops the run at once (a request or a sleep in the main
thread is not waited for). Python may then be running a weakref callback or a `__del__`,
where it prints the exception and goes on: the gate sees that (`sys.unraisablehook`) and
raises the same exit again at the next block's start or end.

Signals belong to the process and are delivered to the main thread: there is one gate, and
blocks entered by other threads do not count.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from typing_extensions import override

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a wait in the main thread may go before it checks for a pending signal.
WAIT_SLICE_SECONDS = 0.1


class StopRequested(BaseException):
    """A signal arrived while the main thread waited: its block is left so it is handled."""


class SignalGate:
    """Where SIGTERM/SIGINT may stop the run: outside every `deferred()` block."""

    def __init__(self) -> None:
        """No handler installed, nothing deferred."""
        self._depth = 0
        self._stop: Callable[[int], None] | None = None
        self._stopping = False
        self._exit: SystemExit | None = None  # the stop's exit, raised where Python dropped it
        self._swallowed: SystemExit | None = None  # ... and found dropped: to raise again
        self.pending: int | None = None
        self._next_unraisable_hook = sys.unraisablehook

    def install(self, stop: Callable[[int], None]) -> None:
        """Call `stop(signum)` on the first SIGTERM/SIGINT, at a safe point.

        Handlers can only be installed from the main thread; elsewhere (a tap embedded in a
        worker thread) the process keeps the handlers it has.
        """
        self._stop = stop
        self._stopping = False
        self._exit = self._swallowed = None
        self.pending = None
        if _in_main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._on_signal)
            if sys.unraisablehook != self._on_unraisable:  # bound methods: equal, not same
                self._next_unraisable_hook = sys.unraisablehook
                sys.unraisablehook = self._on_unraisable

    def enter(self) -> None:
        """Signals arriving from now on wait for the matching `leave`."""
        if _in_main_thread():
            self._raise_swallowed()
            self._depth += 1

    def leave(self) -> None:
        """End of a block: a signal that arrived inside the outermost one stops the run now."""
        if not _in_main_thread():
            return
        self._depth -= 1
        if not self._depth:
            self._raise_swallowed()
            if self.pending is not None:
                signum, self.pending = self.pending, None
                self._run_stop(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that a signal does not interrupt (blocks may nest)."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return  # already stopping: the STATE is being written, the exit follows
        if self._depth:
            self.pending = self.pending or signum
        else:
            self._run_stop(signum)

    def _run_stop(self, signum: int) -> None:
        if self._stop is None or self._stopping:
            return
        self._stopping = True
        try:
            self._stop(signum)
        except SystemExit as exc:
            self._exit = exc
            raise

    def _on_unraisable(self, unraisable: sys.UnraisableHookArgs) -> None:
        if self._exit is not None and unraisable.exc_value is self._exit:
            self._swallowed = self._exit
            return
        self._next_unraisable_hook(unraisable)

    @property
    def swallowed(self) -> bool:
        """Whether the stop's exit was dropped by Python and waits to be raised again."""
        return self._swallowed is not None

    def _raise_swallowed(self) -> None:
        if self._swallowed is not None:
            exc, self._swallowed = self._swallowed, None
            raise exc


GATE = SignalGate()


class SignalSafeCondition(threading.Condition):
    """A `threading.Condition` whose holder in the main thread is not interrupted by signals.

    Holding it is a `GATE.deferred()` block; `wait` in the main thread raises `StopRequested`
    once a signal is pending, with the lock held, so the block is left in order and the
    signal handled as it ends.
    """

    @override
    def __enter__(self) -> bool:
        GATE.enter()
        try:
            return super().__enter__()
        except BaseException:
            GATE.leave()
            raise

    @override
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, traceback)
        finally:
            GATE.leave()

    @override
    def wait(self, timeout: float | None = None) -> bool:
        """`Condition.wait`, in slices in the main thread so that a pending signal is seen.

        Without a timeout it returns after one slice at most, notified or not: callers wait
        in a loop on their predicate (as a condition requires), and a notification that
        comes just as a slice times out is reported as a timeout by `Condition.wait`, so a
        loop here would miss it and wait for good.
        """
        if not _in_main_thread():
            return super().wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if GATE.pending is not None or GATE.swallowed:
                raise StopRequested
            left = WAIT_SLICE_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            if super().wait(min(left, WAIT_SLICE_SECONDS)) or deadline is None:
                return True


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
