"""CleverTap's response bodies: read in one call, parsed once, shared by every reader.

Validation, paging and record shaping all read the same body; it is parsed once per response
(`response_body`) and the result is shared.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from typing import Any

import orjson
import requests

from tap_clevertap.errors import InvalidBody

_bodies: weakref.WeakKeyDictionary[requests.Response, dict[str, Any]] = weakref.WeakKeyDictionary()


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
