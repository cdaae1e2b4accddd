"""The canonical form of an event (RFC 8785), from which its `event_id` is derived.

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

import json
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

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
