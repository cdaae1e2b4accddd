"""`event_id`: the canonical form (RFC 8785), golden ids, copy numbering of identical events."""

from __future__ import annotations

import copy
import decimal
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from tap_clevertap.canonical import (
    _GENERAL,
    _orjson_ready,
    canonical_json,
    ecmascript_number,
    identity_array,
)
from tap_clevertap.copies import CopyCounter, DigestCounts
from tap_clevertap.streams.events import EventShaper, EventTimes

pytestmark = pytest.mark.unit

GOLDEN = json.loads((Path(__file__).parent / "golden" / "event_ids.json").read_text())


def shape_all(cases: list[dict[str, Any]]) -> list[str]:
    shapers: dict[str, EventShaper] = {}
    ids = []
    for case in cases:
        name = case["event_name"]
        shaper = shapers.setdefault(name, EventShaper(name, EventTimes("UTC")))
        ids.append(shaper.shape(copy.deepcopy(case["raw"]))["event_id"])
    return ids


def test_golden_event_ids_never_change() -> None:
    assert shape_all(GOLDEN["cases"]) == [c["event_id"] for c in GOLDEN["cases"]]


def test_golden_id_matches_the_documented_definition() -> None:
    # event_id = SHA-256(JCS([event_name, objectId, ts, event_props, session_props, copy]))
    text = (
        '["App Launched","a8ffcbc9-a747-4ee3-a791-c5e58ad03097",20151023140416,'
        '{"value":"pizza"},'
        '{"session_source":"Direct","utm_campaign":"FooBar","utm_medium":"Bar","utm_source":"Foo"}'
        ",1]"
    )
    assert hashlib.sha256(text.encode()).hexdigest() == GOLDEN["cases"][0]["event_id"]


@pytest.mark.parametrize(
    "loads",
    [
        json.loads,
        orjson.loads,
        lambda text: json.loads(text, parse_float=decimal.Decimal),
    ],
    ids=["json", "orjson", "json-decimal"],
)
def test_ids_do_not_depend_on_the_json_parser(loads: Any) -> None:
    text = json.dumps([c["raw"] for c in GOLDEN["cases"]])
    cases = [
        {"event_name": c["event_name"], "raw": raw}
        for c, raw in zip(GOLDEN["cases"], loads(text), strict=True)
    ]
    assert shape_all(cases) == [c["event_id"] for c in GOLDEN["cases"]]


def test_key_order_does_not_matter() -> None:
    raw = GOLDEN["cases"][0]["raw"]
    reordered = json.loads(json.dumps(raw, sort_keys=True))
    reordered["session_props"] = dict(reversed(list(raw["session_props"].items())))
    shaper = EventShaper("App Launched", EventTimes("UTC"))
    assert shaper.shape(reordered)["event_id"] == GOLDEN["cases"][0]["event_id"]


def test_profile_fields_other_than_object_id_do_not_change_the_id() -> None:
    raw = copy.deepcopy(GOLDEN["cases"][0]["raw"])
    raw["profile"].update(email="new@example.com", profileData={"x": 1}, os_version="15")
    shaper = EventShaper("App Launched", EventTimes("UTC"))
    assert shaper.shape(raw)["event_id"] == GOLDEN["cases"][0]["event_id"]


def test_identical_events_get_distinct_ids_and_a_new_window_numbers_again() -> None:
    raw = GOLDEN["cases"][2]["raw"]
    shaper = EventShaper("Charged", EventTimes("UTC"))
    first, second = (shaper.shape(copy.deepcopy(raw))["event_id"] for _ in range(2))
    assert first != second
    again = EventShaper("Charged", EventTimes("UTC"))
    assert again.shape(copy.deepcopy(raw))["event_id"] == first


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (2.5e21, "2.5e+21"),
        (123.456e-10, "1.23456e-8"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-19.99, "-19.99"),
    ],
)
def test_numbers_follow_ecmascript(value: float, text: str) -> None:
    assert ecmascript_number(value) == text


def test_canonical_json_sorts_by_utf16_and_escapes_minimally() -> None:
    value = {
        "b": [1, 2.0, None, True],
        "a": 'é\n"\u0001',
        "\u20ac": 1,
        "\U0001f600": 2,
        "\ufb00": 3,
    }
    assert canonical_json(value) == (
        '{"a":"é\\n\\"\\u0001","b":[1,2,null,true],"€":1,"😀":2,"ﬀ":3}'
    )
    with pytest.raises(ValueError, match="NaN"):
        canonical_json(float("nan"))
    assert canonical_json({2: "x", "10": None}) == '{"10":null,"2":"x"}'  # keys as text


def _digest(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def test_copy_counter_is_bounded_while_ordered() -> None:
    counter = CopyCounter()
    assert [counter.next_copy(10, c, _digest(c)) for c in (b"10a", b"10a", b"10b")] == [1, 2, 1]
    assert counter.next_copy(11, b"11a", _digest(b"11a")) == 1
    assert len(counter._counts) == 1  # only the current second is remembered
    assert counter.ordered


def test_copy_counter_numbers_events_out_of_order_as_in_order() -> None:
    # Real content always includes ts (see identity_array).
    events = [(ts, b"%d|%s" % (ts, kind)) for ts in range(100, 160) for kind in (b"a", b"b")]
    events += [events[7], events[7], events[50], events[99]]  # copies, in order of arrival
    ordered = sorted(events)
    counter = CopyCounter()
    expected = [counter.next_copy(ts, c, _digest(c)) for ts, c in ordered]
    assert counter.ordered
    assert sorted(expected) == [1] * 120 + [2, 2, 2, 3]
    for shuffle_seed in range(5):
        arrival = list(ordered)
        random.Random(shuffle_seed).shuffle(arrival)
        counter = CopyCounter()
        got = {}
        for number, (ts, c) in enumerate(arrival):
            if number % 7 == 0:
                counter.settle()  # as after each page
            copy = counter.next_copy(ts, c, _digest(c))
            assert (c, copy) not in got, "two events of a window with one id"
            got[(c, copy)] = True
        assert not counter.ordered
        # Copies are numbered in arrival order: the multiset of (content, copy) is the same.
        assert sorted(got) == sorted(zip([c for _, c in ordered], expected, strict=True))


def test_copy_counter_switches_to_the_table_late_without_renumbering() -> None:
    counter = CopyCounter()
    first = [counter.next_copy(ts, b"%d" % ts, _digest(b"%d" % ts)) for ts in range(5000)]
    counter.settle()
    first += [counter.next_copy(ts, b"%d" % ts, _digest(b"%d" % ts)) for ts in range(5000, 5003)]
    assert first == [1] * 5003
    assert counter.ordered
    assert len(counter._digests) == 8 * 5000  # 8 bytes an event, once settled
    # Disorder noticed after 5,003 events (3 not settled yet): those already counted are remembered.
    assert counter.next_copy(17, b"17", _digest(b"17")) == 2
    assert not counter.ordered
    assert counter.next_copy(4999, b"4999", _digest(b"4999")) == 2
    assert counter.next_copy(5002, b"5002", _digest(b"5002")) == 2
    assert counter.next_copy(17, b"17", _digest(b"17")) == 3
    assert counter.next_copy(6000, b"6000", _digest(b"6000")) == 1


def test_digest_counts_stay_compact() -> None:
    table = DigestCounts()
    for number in range(200_000):
        assert table.add(hashlib.sha256(b"%d" % number).digest()) == 1
    assert table.add(hashlib.sha256(b"7").digest()) == 2
    # 8 bytes a slot, at most 3/4 full: at most ~22 bytes a digest right after growing.
    assert table._keys.itemsize * len(table._keys) / 200_000 <= 22


def reference_canonical(value: Any) -> str:
    """RFC 8785 written plainly, to check the optimised canonical_json against."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ecmascript_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return (
            "{"
            + ",".join(f"{reference_canonical(k)}:{reference_canonical(v)}" for k, v in items)
            + "}"
        )
    return "[" + ",".join(reference_canonical(v) for v in value) + "]"


def random_json(rng: random.Random, depth: int = 0) -> Any:
    alphabet = ["a", "B", "é", "\u20ac", "\ufb00", "\U0001f600", '"', "\\", "\n", "\x01", " ", "9"]
    kind = rng.randrange(8 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(10**20), 10**20)
    if kind == 2:
        return rng.choice(
            [rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-30, 30), 0.0, -0.0]
        )
    if kind in (3, 4, 5):
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))): random_json(rng, depth + 1)
        for _ in range(rng.randint(0, 5))
    }


def test_canonical_json_matches_the_plain_reference_on_random_values() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        value = random_json(rng)
        assert canonical_json(value) == reference_canonical(value)


def random_object(rng: random.Random) -> dict[str, Any]:
    value = random_json(rng, depth=1)
    return value if isinstance(value, dict) else {"v": value}


def test_identity_array_matches_the_plain_reference_on_random_events() -> None:
    rng = random.Random(20240101)
    fast = 0
    for _ in range(3000):
        raw: dict[str, Any] = {
            "profile": {"objectId": rng.choice([str(rng.random()), None, random_json(rng)])},
            "ts": rng.choice([20240101000000 + rng.randrange(10**6), random_json(rng)]),
            "event_props": random_object(rng),
        }
        if rng.random() < 0.7:
            raw["session_props"] = random_object(rng)
        identity = [
            "Añadir",
            raw["profile"]["objectId"],
            raw["ts"],
            raw["event_props"],
            raw.get("session_props") or {},
        ]
        expected = reference_canonical(identity).encode()
        assert identity_array("Añadir", raw) == expected
        fast += _orjson_ready(identity) is not _GENERAL
    assert fast > 1500  # the orjson path (floats as fragments) was the one checked


def test_identity_array_writes_floats_in_ecmascript_form_through_orjson() -> None:
    raw = {"ts": 1, "event_props": {"b": [1.0, 1e-7, 2.5e21], "a": {"x": 0.1, "y": -0.0}}}
    assert _orjson_ready(["e", None, 1, raw["event_props"], {}]) is not _GENERAL
    assert identity_array("e", raw) == (
        b'["e",null,1,{"a":{"x":0.1,"y":0},"b":[1,1e-7,2.5e+21]},{}]'
    )
