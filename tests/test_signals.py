"""SIGTERM/SIGINT stop the run at safe points only (tap_clevertap.signals), in this process."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tap_clevertap.signals import GATE, WAIT_SLICE_SECONDS, SignalSafeCondition, StopRequested

pytestmark = pytest.mark.unit


@pytest.fixture
def stops() -> Iterator[list[int]]:
    """The gate installed with a stop that records the signal and exits 128 + n."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    unraisable_hook = sys.unraisablehook
    calls: list[int] = []

    def stop(signum: int) -> None:
        calls.append(signum)
        sys.exit(128 + signum)

    GATE.install(stop)
    try:
        yield calls
    finally:
        GATE.install(lambda signum: None)  # forget this test's stop and exit
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.unraisablehook = unraisable_hook


def test_a_signal_inside_a_block_stops_the_run_when_the_block_ends(stops: list[int]) -> None:
    def write_a_page() -> None:
        with GATE.deferred():
            signal.raise_signal(signal.SIGTERM)
            assert stops == []  # not yet: the block goes on
            with GATE.deferred():
                pass  # an inner block's end is not the end
            assert stops == []

    with pytest.raises(SystemExit) as info:
        write_a_page()
    assert info.value.code == 128 + signal.SIGTERM
    assert stops == [signal.SIGTERM]


def test_a_signal_outside_any_block_stops_the_run_at_once(stops: list[int]) -> None:
    def request() -> None:
        signal.raise_signal(signal.SIGINT)
        time.sleep(1)

    with pytest.raises(SystemExit):
        request()
    assert stops == [signal.SIGINT]


def test_a_wait_for_a_page_is_left_promptly_with_its_lock_released(stops: list[int]) -> None:
    condition = SignalSafeCondition()

    def wait_for_a_page() -> None:
        with condition:
            condition.wait(5)  # nobody notifies

    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    with pytest.raises(SystemExit) as info:
        wait_for_a_page()
    assert time.monotonic() - started < 2
    assert isinstance(info.value.__context__, StopRequested)
    assert stops == [signal.SIGTERM]
    assert condition.acquire(blocking=False)  # the `with` released it: cleanup can take it
    condition.release()


def test_a_stop_python_drops_is_raised_again_at_the_next_safe_point(stops: list[int]) -> None:
    class Collected:
        def __del__(self) -> None:
            # The handler runs here, where Python prints an exception and goes on (as in a
            # weakref callback during garbage collection).
            signal.raise_signal(signal.SIGTERM)

    Collected()
    assert stops == [signal.SIGTERM]  # the STATE was written once ...
    signal.raise_signal(signal.SIGTERM)  # ... and a second signal does not write it again
    with pytest.raises(SystemExit) as info:
        GATE.enter()  # the next block: not entered
    assert info.value.code == 128 + signal.SIGTERM
    assert stops == [signal.SIGTERM]


def test_installed_again_the_gate_still_passes_other_unraisable_exceptions_on(
    stops: list[int],
) -> None:
    seen: list[BaseException | None] = []
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)
    GATE.install(stops.append)
    GATE.install(stops.append)  # a second tap in the same process
    error = ValueError("from a __del__")

    class Failing:
        def __del__(self) -> None:
            raise error

    Failing()
    assert seen == [error]


def test_other_threads_neither_defer_nor_raise(stops: list[int]) -> None:
    condition = SignalSafeCondition()
    done: list[bool] = []

    def waiter() -> None:
        with condition:
            done.append(condition.wait(0.05))  # a plain timed wait: False

    thread = threading.Thread(target=waiter)
    thread.start()
    thread.join()
    assert done == [False]
    assert stops == []


def test_a_wait_without_timeout_returns_to_its_caller_after_a_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `Condition.wait` reports a notification that comes just as its timeout runs out as a
    # timeout. Were the slices looped over inside, the caller's predicate (say, "the last
    # page is in") would never be checked again: here, after one slice, it is.
    calls: list[float | None] = []

    def notified_as_it_timed_out(self: threading.Condition, timeout: float | None = None) -> bool:
        calls.append(timeout)
        if len(calls) > 20:
            raise AssertionError("the wait never returned to re-check its predicate")
        return False  # the notification was consumed, and reported as a timeout

    monkeypatch.setattr(threading.Condition, "wait", notified_as_it_timed_out)
    condition = SignalSafeCondition()
    with condition:
        assert condition.wait() is True  # back to the caller, which checks its predicate
    assert calls == [WAIT_SLICE_SECONDS]
