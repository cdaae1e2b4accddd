"""`page_head`: a page's status and cursor without parsing its records, for any layout."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tap_clevertap import wire
from tap_clevertap.errors import InvalidBody
from tap_clevertap.wire import page_head

pytestmark = pytest.mark.unit

# Strings that would fool a scan that is not exact: quotes, escapes, braces, key names.
TRICKY = [
    'a"b',
    "a\\",
    "\\",
    '\\"',
    '"next_cursor": "fake"',
    '}, "next_cursor": "fake"}',
    "]}",
    "{[",
    "é\u2028😀",
    ', "status": "fail"',
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(TRICKY)
    if kind == 1:
        return rng.choice([0, -1, 3.5e-7, 10**30, True, False, None])
    if kind == 2:
        return "".join(rng.choice('ab"\\{}[],: ') for _ in range(rng.randrange(8)))
    if kind == 3:
        return rng.randrange(10**6)
    if kind == 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [rng.choice(TRICKY), "next_cursor", "status", "k"]
    return {k: _value(rng, depth + 1) for k in rng.sample(keys, rng.randrange(4))}


def _page(rng: random.Random, *, records: int) -> tuple[bytes, dict[str, Any]]:
    members: list[tuple[str, Any]] = [
        ("status", "success"),
        ("next_cursor", "abc%2F" + rng.choice(TRICKY)),
        ("records", [_value(rng, 1) for _ in range(records)]),
        ("previous_cursor", rng.choice(TRICKY)),
        ("meta", {"n": rng.choice(TRICKY)}),
    ]
    rng.shuffle(members)
    comma, colon = rng.choice([(",", ":"), (",\n  ", ": "), (", ", " : ")])
    dumps = json.dumps if rng.random() < 0.5 else lambda v: json.dumps(v, ensure_ascii=False)
    body = comma.join(f"{dumps(k)}{colon}{dumps(v)}" for k, v in members)
    expected = {k: v for k, v in members if not isinstance(v, (list, dict))}
    return ("{" + body + "}\n").encode(), expected


@pytest.mark.parametrize("seed", range(300))
def test_page_head_matches_a_full_parse_for_any_key_order_and_content(seed: int) -> None:
    rng = random.Random(seed)
    content, expected = _page(rng, records=rng.choice([0, 3, 800]))
    head = page_head(content)
    # What paging and validation read is exact; other members may be left out.
    for key in ("status", "next_cursor", "code", "error"):
        assert head.get(key) == expected.get(key)
    assert head.items() <= expected.items()


def test_page_head_of_a_large_page_does_not_parse_it(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [{"ts": 20240101000000 + i, "p": TRICKY} for i in range(2000)]
    content = json.dumps(
        {"status": "success", "records": records, "next_cursor": 'x"\\'}, ensure_ascii=False
    ).encode()
    assert len(content) > 100_000

    def no_parse(_: bytes) -> dict[str, Any]:
        raise AssertionError("parsed in full")

    monkeypatch.setattr(wire, "parse_body", no_parse)
    assert page_head(content) == {"status": "success", "next_cursor": 'x"\\'}


@pytest.mark.parametrize(
    "content",
    [
        b'{"status": "success", "next_cursor": "abc", "records": [{"pro',  # truncated
        b"<html>" + b"x" * 20_000 + b"</html>",
        b'{"status": "success", "next_cursor": "a", "records": [' + b"1," * 10_000 + b"]",
    ],
)
def test_page_head_of_a_broken_body_is_invalid(content: bytes) -> None:
    with pytest.raises(InvalidBody):
        page_head(content)


def test_the_last_page_and_failures_are_read_whole() -> None:
    assert page_head(b'{"status": "success"}') == {"status": "success"}
    assert page_head(b'{"status":"fail","code":2,"error":"later"}')["code"] == 2
    last = json.dumps({"status": "success", "records": [{"ts": i} for i in range(5000)]})
    assert page_head(last.encode()) == {"status": "success"}
