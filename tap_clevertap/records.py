"""Record shaping: `event_name`, `event_time` and a deterministic `event_id` per event.

CleverTap has no event id, and the `profile` block shows the user as they are at export
time, so the id is derived only from what belongs to the event:

    event_id = hex(SHA-256(UTF-8(JCS([event_name, objectId, ts, event_props,
                                      session_props, copy]))))

JCS is RFC 8785 JSON canonicalisation: object keys sorted by UTF-16 code units, no
whitespace, strings with minimal escaping, numbers in ECMAScript's shortest form (so `1.0`
and `1` are the same number, and a float parsed as `Decimal` or by another JSON library gives
the same text). One deliberate difference: integers are written with all their digits even
beyond 2**53, where RFC 8785 would round them through a double. A missing `objectId` is
`null`; missing `event_props`/`session_props` are `{}`. `copy` numbers identical events
(same everything) within one export window: 1, 2, 3, ...
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tap_clevertap.schemas import EXTRA_KEY

_dumps_string = json.JSONEncoder(ensure_ascii=False).encode


def canonical_json(value: Any) -> str:  # noqa: PLR0911  (one return per JSON type)
    """RFC 8785 (JCS) text of a JSON value; see the module docstring for the one deviation."""
    if isinstance(value, str):
        return _dumps_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        return ecmascript_number(float(value))
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]).encode("utf-16-be"))
        return (
            "{" + ",".join(f"{_dumps_string(str(k))}:{canonical_json(v)}" for k, v in items) + "}"
        )
    if isinstance(value, Sequence):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def ecmascript_number(value: float) -> str:
    """ECMAScript Number::toString, the number form RFC 8785 prescribes."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires;
    # value = digits * 10**exponent, and n places the decimal point (ECMA-262 Number::toString).
    parts = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    k = len(digits)
    n = k + int(parts.exponent)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return sign + text


class EventsOutOfOrder(Exception):
    """Records of one window arrived out of `ts` order, so the bounded copy counter cannot
    number copies; the window must be read again with `CopyCounter(remember_all=True)`."""


class CopyCounter:
    """Numbers identical events 1, 2, 3, ... within one export window.

    Identical events share their `ts`, so while records arrive ordered by `ts` it is enough
    to count within the current second: memory stays at one second's events, whatever the
    size of the export. `remember_all=True` keeps every second (memory grows with the
    window) for exports that arrive unordered.
    """

    def __init__(self, *, remember_all: bool = False) -> None:
        self.remember_all = remember_all
        self._current_ts: Any = None
        self._counts: dict[Any, int] = {}

    def next_copy(self, ts: Any, content: str) -> int:
        if self.remember_all:
            key: Any = hashlib.sha256(content.encode()).digest()
        else:
            if ts != self._current_ts:
                if self._current_ts is not None and _ts_before(ts, self._current_ts):
                    raise EventsOutOfOrder(f"ts {ts} arrived after ts {self._current_ts}")
                self._current_ts = ts
                self._counts.clear()
            key = content
        copy = self._counts.get(key, 0) + 1
        self._counts[key] = copy
        return copy


def _ts_before(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return True


def identity_content(event_name: str, raw: Mapping[str, Any]) -> str:
    """The canonical text of everything that identifies the event, without the copy number."""
    profile = raw.get("profile")
    object_id = profile.get("objectId") if isinstance(profile, Mapping) else None
    return ",".join(
        (
            _dumps_string(event_name),
            canonical_json(object_id),
            canonical_json(raw.get("ts")),
            canonical_json(raw.get("event_props") or {}),
            canonical_json(raw.get("session_props") or {}),
        )
    )


def event_id(content: str, copy: int) -> str:
    return hashlib.sha256(f"[{content},{copy}]".encode()).hexdigest()


class EventTimes:
    """`ts` (yyyyMMddHHmmss in the account's zone) -> ISO-8601 UTC text, with the zone
    offset looked up once per local minute (zone transitions fall on whole minutes)."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._offsets: dict[int, dt.timedelta] = {}

    def utc_iso(self, ts: Any) -> str | None:
        if not isinstance(ts, int) or isinstance(ts, bool):
            return None
        try:
            local = dt.datetime(
                ts // 10**10,
                ts // 10**8 % 100,
                ts // 10**6 % 100,
                ts // 10**4 % 100,
                ts // 100 % 100,
                ts % 100,
            )
        except ValueError:
            return None
        minute = ts // 100
        offset = self._offsets.get(minute)
        if offset is None:
            if len(self._offsets) > 100_000:
                self._offsets.clear()
            # fold=0: a wall time that occurs twice (clocks going back) is read as the first.
            offset = local.replace(tzinfo=self.zone).utcoffset() or dt.timedelta(0)
            self._offsets[minute] = offset
        return (local - offset).isoformat() + "+00:00"


class RecordShaper:
    """Adds `event_name`, `event_time` and `event_id` to the raw records of one window.

    A fresh shaper per attempt at a window, so that re-reading a window numbers copies again
    from 1 and every event gets the same id as before.
    """

    def __init__(
        self,
        event_name: str,
        times: EventTimes,
        *,
        remember_all: bool = False,
        fold_schema: Mapping[str, Any] | None = None,
    ) -> None:
        self.event_name = event_name
        self.times = times
        self.copies = CopyCounter(remember_all=remember_all)
        self.fold_schema = fold_schema

    def shape(self, raw: dict[str, Any]) -> dict[str, Any]:
        ts = raw.get("ts")
        content = identity_content(self.event_name, raw)
        raw["event_name"] = self.event_name
        raw["event_time"] = self.times.utc_iso(ts)
        raw["event_id"] = event_id(content, self.copies.next_copy(ts, content))
        if self.fold_schema is not None:
            fold_unlisted(raw, self.fold_schema, EXTRA_KEY)
        return raw


def fold_unlisted(node: dict[str, Any], schema: Mapping[str, Any], key: str) -> None:
    """Move the keys `schema` does not declare into `node[key]`, at every declared level
    (for flattened output, whose SCHEMA can only name declared keys)."""
    declared = schema.get("properties")
    if not declared:
        return
    unlisted = [name for name in node if name not in declared]
    if unlisted:
        node[key] = {name: node.pop(name) for name in unlisted}
    for name, sub_schema in declared.items():
        value = node.get(name)
        if isinstance(value, dict) and sub_schema.get("properties"):
            fold_unlisted(value, sub_schema, key)
