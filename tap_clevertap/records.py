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
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tap_clevertap.schemas import EXTRA_KEY

# The C string escaper of the json module: escapes only '"', '\\' and control characters,
# which is RFC 8785's minimal escaping.
_dumps_string: Callable[[str], str] = json.encoder.encode_basestring

_ORJSON_SAFE = frozenset({str, int, bool, type(None)})


def _beyond_bmp(utf8: bytes) -> bool:
    """Whether the text holds a character beyond U+FFFF (its UTF-8 starts with F0..F4)."""
    # `int in bytes` is a memchr; a one-byte `bytes in bytes` is a much slower search.
    return 0xF0 in utf8 or 0xF1 in utf8 or 0xF2 in utf8 or 0xF3 in utf8 or 0xF4 in utf8


def _object(value: Mapping[Any, Any]) -> str:
    # Keys in UTF-16 code unit order, as RFC 8785 requires (not code point order).
    keys = sorted(value, key=lambda key: str(key).encode("utf-16-be"))
    members = [f"{_dumps_string(str(k))}:{canonical_json(value[k])}" for k in keys]
    return "{" + ",".join(members) + "}"


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


_JSON_KINDS = frozenset({str, int, bool, type(None), float, dict, list})
_SCALAR_KINDS = frozenset({str, int, bool, type(None), float})

# Prices repeat: keep the RFC 8785 text of recent floats as orjson fragments (a few
# thousand: amounts that never repeat would only fill the cache).
_FLOAT_FRAGMENTS: dict[float, orjson.Fragment] = {}


def _float_fragment(value: float) -> orjson.Fragment:
    fragment = _FLOAT_FRAGMENTS.get(value)
    if fragment is None:
        if len(_FLOAT_FRAGMENTS) > 4096:
            _FLOAT_FRAGMENTS.clear()
        # -0.0 == 0.0 shares the entry: both are written "0".
        fragment = _FLOAT_FRAGMENTS[value] = orjson.Fragment(_float(value))
    return fragment


def _orjson_ready(value: Any) -> Any:
    """`value` in a form that orjson (sorted keys) writes as its RFC 8785 text.

    `_GENERAL` when only `canonical_json` can write it.

    orjson writes strings, integers up to 64 bits, booleans and nulls exactly as RFC 8785 does
    (same minimal escapes), but floats in its own notation (`1.0`, `1e+16`): each float is
    handed over as a fragment already in ECMAScript's form. Anything but the types a JSON
    parser returns (a Decimal, a subclass) goes to the general path.
    """
    kind = type(value)
    if kind is float:
        return _float_fragment(value)
    if kind is dict or kind is list:
        return _ready_container(value, kind)
    return value if kind in _ORJSON_SAFE else _GENERAL


def _ready_container(value: Any, kind: type) -> Any:
    items = value.values() if kind is dict else value
    kinds = set(map(type, items))
    if kinds <= _ORJSON_SAFE:
        return value
    if not kinds <= _JSON_KINDS:
        return _GENERAL
    # Copy, then replace only floats and the containers that change: most items stay.
    ready = value.copy()
    for key, item in value.items() if kind is dict else enumerate(value):
        item_kind = type(item)
        if item_kind is float:
            ready[key] = _float_fragment(item)
        elif item_kind is dict or item_kind is list:
            inner = _ready_container(item, item_kind)
            if inner is _GENERAL:
                return _GENERAL
            ready[key] = inner
    return ready


_GENERAL = object()


_all_orjson_safe: Callable[[Any], bool] = _ORJSON_SAFE.issuperset


def identity_array(event_name: str, raw: Mapping[str, Any]) -> bytes:
    """The canonical text (UTF-8) of everything that identifies the event.

    That is the JCS array `[event_name, objectId, ts, event_props, session_props]`, without
    the copy number.
    """
    profile = raw.get("profile")
    # `type() is dict` first: the ABC check is slow.
    object_id = (
        profile.get("objectId") if type(profile) is dict or isinstance(profile, Mapping) else None
    )
    ts = raw.get("ts")
    event_props = raw.get("event_props") or {}
    session_props = raw.get("session_props") or {}
    if type(object_id) in _ORJSON_SAFE and type(ts) in _ORJSON_SAFE:
        # Most property maps hold only strings, integers, booleans and nulls: ready as is.
        event_ready = (
            event_props
            if type(event_props) is dict and _all_orjson_safe(map(type, event_props.values()))
            else _orjson_ready(event_props)
        )
        session_ready = (
            session_props
            if type(session_props) is dict and _all_orjson_safe(map(type, session_props.values()))
            else _orjson_ready(session_props)
        )
        if event_ready is not _GENERAL and session_ready is not _GENERAL:
            try:
                data = orjson.dumps(
                    (event_name, object_id, ts, event_ready, session_ready),
                    option=orjson.OPT_SORT_KEYS,
                )
            except TypeError:  # an integer beyond 64 bits, a non-string key
                pass
            else:
                # orjson sorts keys by code point, RFC 8785 by UTF-16 unit: they differ
                # only with characters beyond U+FFFF, whose UTF-8 starts with F0..F4.
                if data.isascii() or not _beyond_bmp(data):
                    return data
    identity = [event_name, object_id, ts, event_props, session_props]
    return canonical_json(identity).encode()


_SECONDS = [f"{second:02d}+00:00" for second in range(60)]


class EventTimes:
    """`ts` (yyyyMMddHHmmss in the account's zone) -> ISO-8601 UTC text.

    The zone offset is looked up once per local minute (zone transitions fall on whole
    minutes), and the minute's UTC text is kept, so most events only append their second.
    """

    def __init__(self, timezone: str) -> None:
        """Times read in the IANA zone `timezone`."""
        self.zone = ZoneInfo(timezone)
        self._minutes: dict[int, str | None] = {}

    def utc_iso(self, ts: Any) -> str | None:
        """`ts` as ISO-8601 UTC text; None when it is not a valid yyyyMMddHHmmss integer."""
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
        fold_schema: Mapping[str, Any] | None = None,
    ) -> None:
        """A shaper for one attempt at one window of `event_name`."""
        self.event_name = event_name
        self.times = times
        self.copies = CopyCounter()
        self.fold_schema = fold_schema

    def shape_page(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`shape` for every record of a page, in place: the hot loop of the tap."""
        name = self.event_name
        utc_iso = self.times.utc_iso
        next_copy = self.copies.next_copy
        fold_schema = self.fold_schema
        sha256 = hashlib.sha256
        for raw in records:
            ts = raw.get("ts")
            identity = identity_array(name, raw)
            # JCS text of [event_name, objectId, ts, event_props, session_props, copy]
            first = sha256(identity[:-1] + b",1]").digest()
            copy = next_copy(ts, identity, first)
            raw["event_name"] = name
            raw["event_time"] = utc_iso(ts)
            raw["event_id"] = (
                first.hex() if copy == 1 else sha256(identity[:-1] + b",%d]" % copy).hexdigest()
            )
            if fold_schema is not None:
                fold_unlisted(raw, fold_schema, EXTRA_KEY)
        self.copies.settle()
        return records

    def shape(self, raw: dict[str, Any]) -> dict[str, Any]:
        """`shape_page` for one record."""
        return self.shape_page([raw])[0]


def folded(item: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """`item` with the top-level keys `schema` does not declare moved into EXTRA_KEY."""
    fold_unlisted(item, schema, EXTRA_KEY)
    return item


def fold_unlisted(node: dict[str, Any], schema: Mapping[str, Any], key: str) -> None:
    """Move the keys `schema` does not declare into `node[key]`, at every declared level.

    For flattened output, whose SCHEMA can only name declared keys.
    """
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
