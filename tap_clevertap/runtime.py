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
# Buffers from this size up get their own memory mapping, given back to the OS when freed.
MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def tune_for_a_sync() -> None:
    """Collector and allocator settings for parsing and writing pages by the million."""
    # A sync allocates objects by the million (parsed pages), so the cyclic garbage
    # collector runs often, and each full pass walks every object the imports created.
    # Those live as long as the process: frozen, collections skip them (~10% of a run).
    gc.freeze()
    # A parsed page of 5,000 events is a tree of 25,000-40,000 containers, which reference
    # counting frees once the page is written. At the default threshold (700 new
    # containers) the collector scans it piece by piece while it is parsed, finding
    # nothing, and moves it to older generations that full collections scan again. Above
    # a page's worth, a page is usually freed before any collection sees it.
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    _map_large_buffers()


def _map_large_buffers() -> None:
    """Page bodies (MBs each, read by several threads) go back to the OS once freed.

    glibc raises its mmap threshold to the size of each large buffer freed, up to 32 MB, so
    after the first page bodies are served from the heaps of the threads that read them
    (one per thread), where freed memory mostly stays: peak RSS with reading ahead was 40-90
    MiB higher (benchmarks/bench.py, memory). Setting the threshold fixes it at 1 MiB. Other C
    libraries (musl) have no mallopt: nothing to do there.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass
