"""Copy numbers: identical events of one export window are numbered 1, 2, 3, ...

Two identical events (same user, second and properties) are two rows: `event_id` includes
the copy number, counted in arrival order within the window (see `CopyCounter`).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from typing import Any


class CopyCounter:
    """Numbers identical events 1, 2, 3, ... within one export window, in arrival order.

    Identical events share their `ts`, so while records arrive ordered by `ts` it is enough
    to count within the current second, by canonical content. CleverTap does not promise that
    order (its pages look assembled from 23 storage buckets), and it is only noticed late, so
    every event also leaves the first 8 bytes of its digest (`settle`, a page at a time: 8
    bytes an event). At the first event out of order they become a `DigestCounts` table
    (8-22 bytes an event) that numbers the rest of the window: the window is read once
    whatever its order, and numbered as the ordered path would have numbered it.

    The digest is the SHA-256 of the event's copy-1 id text: two different events of one
    window share its first 8 bytes with a probability of about n**2 / 2**65 (3e-6 for ten
    million events), and since it is deterministic, a rerun numbers them the same way.
    """

    def __init__(self) -> None:
        """Count from nothing."""
        self._current_ts: Any = None
        self._counts: dict[bytes, int] = {}  # the current second's events, by content
        self._recent: list[bytes] = []  # digests since the last `settle`, while ordered
        self._digests = bytearray()  # 8 bytes of each earlier digest, while ordered
        self._table: DigestCounts | None = None  # after the first event out of order

    @property
    def ordered(self) -> bool:
        """No event of the window so far arrived before the second of the one before it."""
        return self._table is None

    def next_copy(self, ts: Any, content: bytes, digest: bytes) -> int:
        """The copy number of the event with this `ts`, canonical `content` and `digest`.

        `digest` is the 32-byte SHA-256 that identifies `content` (see the class docstring).
        """
        table = self._table
        if table is not None:
            return table.add(digest)
        if ts != self._current_ts:
            if self._current_ts is not None and _ts_before(ts, self._current_ts):
                return self._unordered().add(digest)
            self._current_ts = ts
            self._counts.clear()
        copy = self._counts.get(content, 0) + 1
        self._counts[content] = copy
        self._recent.append(digest)
        return copy

    def settle(self) -> None:
        """Keep only 8 bytes of each digest given since the last call (after each page).

        One strided copy for the page, rather than a slice per event in the hot loop.
        """
        if self._recent:
            heads = memoryview(b"".join(self._recent)).cast("Q")[::4]
            self._digests += heads.tobytes()
            self._recent.clear()

    def _unordered(self) -> DigestCounts:
        """Switch to the digest table, with every event seen so far."""
        self.settle()
        table = DigestCounts(memoryview(self._digests).cast("Q"))
        self._table, self._digests = table, bytearray()
        self._counts.clear()
        return table


class DigestCounts:
    """How often each 8-byte digest was seen: an open-addressing table in an array.

    8 bytes a slot, at most 3/4 full (8-22 bytes a digest counting growth), plus a dict for
    the digests seen more than once (few: identical events are rare).
    """

    def __init__(self, digests: Iterable[int] = ()) -> None:
        """A table of `digests`, each counted as seen once more."""
        self._keys = array("Q", [0]) * 1024
        self._slots_mask = 1023
        self._used = 0
        self._repeats: dict[int, int] = {}
        for key in digests:
            self._count(key or 1)

    def add(self, digest: bytes) -> int:
        """Count `digest` (its first 8 bytes) once more; how many times it has now been seen."""
        # Native byte order, as the array of digests counted at the switch reads them.
        return self._count(int.from_bytes(digest[:8], sys.byteorder) or 1)  # 0: empty slot

    def _count(self, key: int) -> int:
        keys, mask = self._keys, self._slots_mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                seen = self._repeats.get(key, 1) + 1
                self._repeats[key] = seen
                return seen
            if not found:
                break
            slot = (slot + 1) & mask
        keys[slot] = key
        self._used += 1
        if self._used * 4 > len(keys) * 3:
            self._grow()
        return 1

    def _grow(self) -> None:
        old = self._keys
        self._keys = keys = array("Q", [0]) * (2 * len(old))
        self._slots_mask = mask = len(keys) - 1
        for key in old:
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot] = key


def _ts_before(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return True
