"""Process-wide settings for a sync: the garbage collector and the C allocator.

Applied by the command lines (`tap-clevertap`, `source-clevertap read`), not on import: a
program that embeds the tap keeps its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

# New containers (net of those freed) between collections of the youngest generation.
YOUNG_GC_THRESHOLD = 100_000
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def tune_for_a_sync() -> None:
    """Collector and allocator settings for parsing and writing pages by the million."""
    # A sync allocates objects by the million (parsed pages), so the cyclic garbage
    # collector runs often, and each full pass walks every object the imports created.
    # Those live as long as the process: frozen, collections skip them.
    gc.freeze()
    # A parsed page of 5,000 events is a tree of 25,000-40,000 containers, which reference
    # counting frees once the page is written. At the default threshold (700 new
    # containers) the collector scans it piece by piece while it is parsed, finding
    # nothing, and moves it to older generations that full collections scan again. Above
    # a page's worth, a page is usually freed before any collection sees it.
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    _one_heap()


def _one_heap() -> None:
    """One C heap for every thread, so that page bodies freed by one are reused by the next.

    glibc gives each thread that allocates its own heap (arena), up to 8 per core. Page
    bodies (megabytes each) are read by the reading threads and freed by the writing thread,
    so memory freed in one thread's heap sat unused while another's grew. One heap lowers
    the peak at the same speed; fixing the mmap threshold instead lowered it further but
    cost throughput in page faults (figures: CHANGELOG, `benchmarks/bench.py` memory).
    Other C libraries (musl) have no mallopt: nothing to do there.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass
