"""CleverTap's response bodies: read in one call, parsed once, shared by every reader.

A page's records are parsed once, where they are written (`parse_body`). Following an export's
cursors needs only the page's `status`, `code` and `next_cursor`: `page_head` reads the top
level of the body around `records` without building them, so that threads reading ahead
cost the writing thread neither a second parse nor the memory of parsed pages.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from typing import Any

import orjson
import requests

from tap_clevertap.errors import CleverTapError, InvalidBody

_bodies: weakref.WeakKeyDictionary[requests.Response, dict[str, Any]] = weakref.WeakKeyDictionary()
_heads: weakref.WeakKeyDictionary[requests.Response, dict[str, Any]] = weakref.WeakKeyDictionary()


def response_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, parsed once and shared by validation, records and paging.

    Raises:
        InvalidBody: the body is not a JSON object.
    """
    body = _bodies.get(response)
    if body is None:
        body = parse_body(response.content)
        _bodies[response] = body
    return body


def response_head(response: requests.Response) -> dict[str, Any]:
    """The response's top-level scalars (`status`, `code`, `next_cursor`...), computed once.

    What validation reads of every response. A body that needed a full parse to answer (a
    small body, a failure, an export's last page) is kept whole, and the whole body is the
    answer: `response_body` then parses nothing again.

    Raises:
        InvalidBody: the body is not a JSON object.
    """
    known = _bodies.get(response) or _heads.get(response)
    if known is not None:
        return known
    head, whole = _head_or_body(read_whole_body(response))
    if whole is not None:
        _bodies[response] = whole
        return whole
    _heads[response] = head
    return head


def error_text(response: requests.Response) -> str:
    """The `error` CleverTap's body gives, lower-cased; empty when the body is not JSON."""
    try:
        return str(response_head(response).get("error") or "").lower()
    except InvalidBody:
        return ""


def parsed_body(response: requests.Response) -> dict[str, Any] | None:
    """The response's body if it has been parsed whole already (else None: not parsed)."""
    return _bodies.get(response)


def items_of(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The list `key` of a success body (none when CleverTap leaves it out).

    Raises:
        CleverTapError: `key` is there but is not a list of objects.
    """
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise CleverTapError(f"CleverTap's answer has a {key!r} that is not a list of objects")
    return items


def read_whole_body(response: requests.Response) -> bytes:
    """The body, read in one call.

    `requests` reads bodies in 10 KB pieces, each needing the GIL back from the thread writing
    records: a page fetched ahead in a thread then arrives later than if it had not been
    fetched ahead. Sessions stream (`stream=True`), and the body is read here, with requests'
    own error translation, into `Response._content` (private to requests), where
    `response.content` keeps it; tests/test_sdk_contract.py fails if requests changes that.
    """
    if response._content is False:  # type: ignore[comparison-overlap]  # False: not read yet
        response._content = b"".join(response.iter_content(chunk_size=None))
    return response.content


# orjson reads an integer beyond 64 bits as a float, dropping digits, where the json module
# keeps it whole. Such an integer is a run of at least 19 digits: a body holding one (or a
# long digit run in a string) is parsed by the json module.
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_LONG_DIGIT_RUN = b"9" * 19


def parse_body(content: bytes) -> dict[str, Any]:
    """A body as a JSON object: floats as Python floats, integers with every digit.

    Floats become IEEE doubles, as with the json module: a value that needs more than 17
    significant digits is rounded, which no CleverTap value does.

    Raises:
        InvalidBody: the body is not JSON, or not a JSON object.
    """
    parsed: Any = None
    if _LONG_DIGIT_RUN not in content.translate(_DIGITS_AS_NINES):
        with contextlib.suppress(orjson.JSONDecodeError):  # the json module says why
            parsed = orjson.loads(content)
    if parsed is None:
        try:
            parsed = json.loads(content)
        except ValueError as exc:
            raise InvalidBody(f"not JSON ({len(content)} bytes)") from exc
    if not isinstance(parsed, dict):
        raise InvalidBody("not a JSON object")
    return parsed


# Bytes of a body's start read forward for the members before `records`: the status and a
# cursor (~2.4 KB encoded) fit, with room.
_HEAD_BYTES = 16 * 1024
_WHITESPACE = b" \t\n\r"
_TOKEN_BYTES = frozenset(b"0123456789+-.eEtrufalsn")
_decoder = json.JSONDecoder()


def page_head(content: bytes) -> dict[str, Any]:
    """The body's top-level members that are not arrays or objects: `status`, `next_cursor`...

    Exact for any key order and any record content, without parsing the records: members
    are read forward from the start up to the first array or object (`records`), and
    backward from the end down to the last one. Backward works because inside a JSON string
    every `"` is escaped, that is preceded by an odd run of backslashes. When that does not
    settle `status` and, on success, `next_cursor` (a member between two arrays, the last
    page of an export, a failure), the body is parsed in full.

    Raises:
        InvalidBody: the body is not a JSON object.
    """
    head, whole = _head_or_body(content)
    return head if whole is None else _scalars(whole)


def _head_or_body(content: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`page_head`'s members, and the whole body when it had to be parsed for them."""
    if len(content) <= _HEAD_BYTES:
        whole = parse_body(content)  # small (a failure, step 1): parse it
        return whole, whole
    try:
        forward = _members_forward(content)
        backward = _members_backward(content)
    except (ValueError, IndexError):
        backward = None  # not what it should be: the full parse says what is wrong
    if backward is not None:
        head = forward | backward  # the last of a repeated key wins, as in a full parse
        if head.get("status") == "success" and head.get("next_cursor"):
            return head, None
    whole = parse_body(content)
    return whole, whole


def _scalars(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if not isinstance(value, (list, dict))}


def _members_forward(content: bytes) -> dict[str, Any]:
    """The members before the first array or object (which a large body has)."""
    text = content[:_HEAD_BYTES].decode("utf-8", "replace")
    members: dict[str, Any] = {}
    at = _skip(text, 0)
    if text[at] != "{":
        raise ValueError("not an object")
    at = _skip(text, at + 1)
    while True:
        if text[at] != '"':
            raise ValueError("no key")
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _skip(text, at)
        if text[at] != ":":
            raise ValueError("no colon")
        at = _skip(text, at + 1)
        if text[at] in "[{":
            return members
        members[key], at = _decoder.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] != ",":  # "}" too: a large body ending here is not a page
            raise ValueError("no comma")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


def _members_backward(content: bytes) -> dict[str, Any] | None:
    """The members after the last array or object; None when the body ends otherwise."""
    members: dict[str, Any] = {}
    end = _skip_back(content, len(content) - 1)
    if content[end] != ord("}"):
        return None
    end = _skip_back(content, end - 1)
    while content[end] not in b"]}{":
        start = (
            _string_start(content, end) if content[end] == ord('"') else _token_start(content, end)
        )
        value = json.loads(content[start : end + 1])
        colon = _skip_back(content, start - 1)
        if content[colon] != ord(":"):
            return None
        key_end = _skip_back(content, colon - 1)
        if content[key_end] != ord('"'):
            return None
        key_start = _string_start(content, key_end)
        members.setdefault(json.loads(content[key_start : key_end + 1]), value)
        before = _skip_back(content, key_start - 1)
        if content[before] == ord("{"):
            return None  # no array or object: then this is not a large page
        if content[before] != ord(","):
            return None
        end = _skip_back(content, before - 1)
    return members


def _skip_back(content: bytes, at: int) -> int:
    """The last position at or before `at` that is not whitespace (ValueError: none)."""
    while at >= 0 and content[at] in _WHITESPACE:
        at -= 1
    if at < 0:
        raise ValueError("nothing before")
    return at


def _string_start(content: bytes, closing: int) -> int:
    """Where the string whose closing quote is at `closing` opens."""
    at = closing
    while True:
        at = content.rindex(b'"', 0, at)
        escape = at - 1
        while content[escape] == 0x5C:  # a backslash
            escape -= 1
        if (at - 1 - escape) % 2 == 0:
            return at


def _token_start(content: bytes, end: int) -> int:
    """Where the number, true, false or null ending at `end` starts."""
    at = end
    while at > 0 and content[at - 1] in _TOKEN_BYTES:
        at -= 1
    return at
