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
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tap_clevertap.schemas import EXTRA_KEY

# The C string escaper of the json module: escapes only '"', '\\' and control characters,
# which is RFC 8785's minimal escaping.
_dumps_string: Callable[[str], str] = json.encoder.encode_basestring

# Keys repeat from event to event: remember their escaped text and whether they hold a
# character beyond U+FFFF (only then do UTF-16 and code point order disagree).
_KEYS: dict[str, tuple[str, bool]] = {}


def _key(key: str) -> tuple[str, bool]:
    known = _KEYS.get(key)
    if known is None:
        if len(_KEYS) > 50_000:
            _KEYS.clear()
        known = _KEYS[key] = (_dumps_string(key) + ":", any(c > "\uffff" for c in key))
    return known


_ORJSON_SAFE = frozenset({str, int, bool, type(None)})
_FOUR_BYTE_UTF8 = re.compile(b"[\xf0-\xf4]")


def _object(value: Mapping[Any, Any]) -> str:
    # For strings, integers, booleans and nulls, orjson with sorted keys writes exactly the
    # RFC 8785 text (same minimal escapes), except for keys beyond U+FFFF, whose order
    # differs, and integers beyond 64 bits, which it refuses. Checked against a plain
    # reference implementation in tests/test_records.py.
    if all(type(item) in _ORJSON_SAFE for item in value.values()):
        try:
            data: bytes | None = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an integer beyond 64 bits: the general path below writes it
            data = None
        if data is not None and not _FOUR_BYTE_UTF8.search(data):  # nothing beyond U+FFFF
            return data.decode()
    # The hot path of every event id: scalars are encoded inline, not through calls.
    parts = []
    astral = False
    for key in sorted(value):  # JSON object keys are strings
        known = _KEYS.get(key) or _key(key)
        astral = astral or known[1]
        item = value[key]
        kind = type(item)
        if kind is str:
            parts.append(known[0] + _dumps_string(item))
        elif kind is int:
            parts.append(known[0] + int.__repr__(item))
        elif item is None:
            parts.append(known[0] + "null")
        elif kind is float:
            parts.append(known[0] + _float(item))
        else:
            parts.append(known[0] + canonical_json(item))
    if astral:  # code point order and UTF-16 order differ only for keys beyond U+FFFF
        pairs = sorted(
            zip(sorted(value), parts, strict=True), key=lambda kp: str(kp[0]).encode("utf-16-be")
        )
        parts = [part for _, part in pairs]
    return "{" + ",".join(parts) + "}"


def _array(value: Sequence[Any]) -> str:
    return "[" + ",".join([canonical_json(v) for v in value]) + "]"


def _float(value: float) -> str:
    text = float.__repr__(value)
    # repr() writes fixed notation for 1e-4 <= |x| < 1e16 with the same shortest digits as
    # ECMAScript, which also writes fixed notation there; only "x.0" differs ("x").
    if "e" in text or "n" in text or value == 0:
        return ecmascript_number(value)
    return text[:-2] if text.endswith(".0") else text


def _number(value: float | Decimal) -> str:
    return _float(float(value))


_BY_TYPE: dict[type, Callable[[Any], str]] = {
    str: _dumps_string,
    int: int.__repr__,
    bool: lambda v: "true" if v else "false",
    type(None): lambda _: "null",
    float: _float,
    Decimal: _number,
    dict: _object,
    list: _array,
    tuple: _array,
}


def canonical_json(value: Any) -> str:
    """RFC 8785 (JCS) text of a JSON value; see the module docstring for the one deviation."""
    encode = _BY_TYPE.get(type(value))
    if encode is not None:
        return encode(value)
    # Subclasses (a str enum, an OrderedDict, ...): dispatch on what they are.
    for kind in (bool, str, int, float, Decimal):
        if isinstance(value, kind):
            return _BY_TYPE[kind](value)
    if isinstance(value, Mapping):
        return _object(value)
    if isinstance(value, Sequence):
        return _array(value)
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


_SECONDS = [f"{second:02d}+00:00" for second in range(60)]


class EventTimes:
    """`ts` (yyyyMMddHHmmss in the account's zone) -> ISO-8601 UTC text.

    The zone offset is looked up once per local minute (zone transitions fall on whole
    minutes), and the minute's UTC text is kept, so most events only append their second.
    """

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._minutes: dict[int, str | None] = {}

    def utc_iso(self, ts: Any) -> str | None:
        if type(ts) is not int:
            return None
        second = ts % 100
        prefix = self._minutes.get(ts // 100, "")
        if prefix == "":
            prefix = self._minute_prefix(ts // 100)
        if prefix is None or second > 59:
            return self._slow(ts)
        return prefix + _SECONDS[second]

    def _minute_prefix(self, minute: int) -> str | None:
        if len(self._minutes) > 100_000:
            self._minutes.clear()
        utc = self._to_utc(minute * 100)
        # An offset with seconds (only in zones' distant past) cannot share a prefix.
        prefix = utc.isoformat()[:17] if utc is not None and utc.second == 0 else None
        self._minutes[minute] = prefix
        return prefix

    def _slow(self, ts: int) -> str | None:
        utc = self._to_utc(ts)
        return None if utc is None else utc.isoformat() + "+00:00"

    def _to_utc(self, ts: int) -> dt.datetime | None:
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
        # fold=0: a wall time that occurs twice (clocks going back) is read as the first.
        offset = local.replace(tzinfo=self.zone).utcoffset() or dt.timedelta(0)
        return local - offset


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
