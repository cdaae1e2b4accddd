"""The HTTP conversation with CleverTap's Get Events API.

Owns hosts, auth headers, request building, response validation and the one retry policy.
Only this module knows CleverTap's wire format.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import weakref
from collections.abc import Callable, Generator, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

import backoff
import orjson
import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import HTTPRequest, PageContext

from tap_clevertap.config import base_url

if TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk.helpers.types import Context

    from tap_clevertap.pagination import CursorPaginator

    RequestFunc = Callable[[requests.PreparedRequest, Context | None], requests.Response]

EVENTS_PATH = "/1/events.json"

# CleverTap's body codes (often sent with HTTP 200).
CODE_THROTTLED = 1
CODE_IN_PROGRESS = 2
CODE_INCORRECT_USAGE = 3
POLL_GROWTH = 1.5
POLL_MAX_WAIT = 60.0
RETRY_MAX_WAIT = 300.0


class CleverTapError(FatalAPIError):
    """An error that ends the run with one line saying what happened and what to do."""

    where: str = ""

    def one_line(self) -> str:
        message = " ".join(str(self).split())
        return f"{self.where}: {message}" if self.where else message


class CredentialsRefused(CleverTapError):
    pass


class ExportRefused(CleverTapError):
    pass


class CursorRejected(CleverTapError):
    """`code` 3 on a cursor (malformed or expired): the window must be requested again."""


class CursorLoopError(CleverTapError):
    pass


class ExportWaitTimeout(CleverTapError):
    pass


class RetriesExhausted(CleverTapError):
    pass


class ExportNotReady(Exception):
    """`code` 2: the export is still being prepared; poll the same cursor again."""


class Throttled(RetriableAPIError):
    """HTTP 429 or `code` 1; `wait` is what the server asked for, if anything."""

    def __init__(self, message: str, response: requests.Response, wait: float | None) -> None:
        super().__init__(message, response)
        self.wait = wait


class InvalidBody(ValueError):
    pass


# Bodies fetched by a thread reading ahead and larger than this are left unparsed there: a
# parsed 5,000-record page takes ~12 MB, and the thread that reads the page parses it anyway.
LARGE_BODY_BYTES = 64 * 1024

_reading_ahead = threading.local()


@contextlib.contextmanager
def _read_ahead() -> Iterator[None]:
    """Marks this thread as reading ahead for the duration (see `validate_response`)."""
    _reading_ahead.active = True
    try:
        yield
    finally:
        _reading_ahead.active = False


_bodies: weakref.WeakKeyDictionary[requests.Response, dict[str, Any]] = weakref.WeakKeyDictionary()


def response_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, parsed once and shared by validation, records and paging."""
    body = _bodies.get(response)
    if body is None:
        body = _parse(response.content)
        _bodies[response] = body
    return body


def read_whole_body(response: requests.Response) -> bytes:
    """The body, read in one call. `requests` reads bodies in 10 KB pieces, each needing
    the GIL back from the thread writing records: a page fetched ahead in a thread then
    arrives later than if it had not been fetched ahead. Sessions stream (`stream=True`),
    and the body is read here, with requests' own error translation, into `_content`,
    where `response.content` keeps it (checked by tests/test_sync.py)."""
    if response._content is False:  # type: ignore[comparison-overlap]  # False: not read yet
        response._content = b"".join(response.iter_content(chunk_size=None))
    return response.content


# orjson reads an integer beyond 64 bits as a float, dropping digits, where the json module
# keeps it whole. Such an integer is a run of at least 19 digits: a body holding one (or a
# long digit run in a string) is parsed by the json module.
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_LONG_DIGIT_RUN = b"9" * 19


def _parse(content: bytes) -> dict[str, Any]:
    # Floats become Python floats (IEEE doubles), as with the json module: a value that
    # needs more than 17 significant digits is rounded, which no CleverTap value does.
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


class CleverTapAuth(requests.auth.AuthBase):
    """Adds the account headers. Its repr never shows the passcode."""

    def __init__(self, account_id: str, passcode: str) -> None:
        self._headers = {"X-CleverTap-Account-Id": account_id, "X-CleverTap-Passcode": passcode}

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers)
        return request

    def __repr__(self) -> str:
        return "CleverTapAuth(passcode=***)"


class CleverTapStream(RESTStream[str | None]):
    """The Get Events conversation: a POST that returns a cursor, then GETs that follow it.

    The stream context carries the export: `event_name`, `from` and `to` (YYYYMMDD ints).
    """

    path = EVENTS_PATH

    @property
    def url_base(self) -> str:
        return base_url(self.config)

    @property
    def http_headers(self) -> dict[str, str]:
        # CleverTap requires the JSON content type on every request, GETs included.
        return {"Content-Type": "application/json", "User-Agent": self.user_agent}

    @property
    def authenticator(self) -> CleverTapAuth:
        return CleverTapAuth(self.config["account_id"], self.config["passcode"])

    @property
    def requests_session(self) -> requests.Session:
        session = super().requests_session
        session.stream = True  # bodies are read in one call by `validate_response`
        return session

    @property
    def timeout(self) -> int:
        return self.config["request_timeout"]  # type: ignore[no-any-return]

    def get_http_request(self, *, page: PageContext[str | None]) -> HTTPRequest:
        context = page.stream_context or {}
        cursor = page.next_page_token
        if cursor is None:
            params: dict[str, Any] = {"batch_size": self.config["batch_size"]}
            if self.config.get("include_app_fields"):
                params["app"] = "true"
            if self.config.get("include_profile_fields"):
                params["profile"] = "true"
            return HTTPRequest(
                url=self.get_url(context),
                method="POST",
                params=params,
                headers=self.http_headers,
                data={
                    "event_name": context["event_name"],
                    "from": context["from"],
                    "to": context["to"],
                },
            )
        # Cursors arrive percent-encoded; "%" kept safe sends them exactly as received.
        return HTTPRequest(
            url=self.get_url(context),
            method="GET",
            params={"cursor": cursor},
            headers=self.http_headers,
            safe_query_chars="%",
        )

    # --- one export: step 1 and the pages ------------------------------------------------

    @property
    def slots(self) -> threading.BoundedSemaphore | None:
        """The tap-wide limit of HTTP requests in flight, when the tap sets one."""
        return getattr(self._tap, "request_slots", None)

    def _request(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        # A slot is held for the request itself only, not while backing off or polling.
        slots = self.slots
        if slots is None:
            return super()._request(prepared_request, context)
        with slots:
            return super()._request(prepared_request, context)

    @cached_property
    def _send(self) -> RequestFunc:
        return self.request_decorator(self._request)

    def open_export(self, context: Context) -> tuple[CursorPaginator, requests.Response]:
        """Step 1 (POST for a cursor), then the export's first page, polled until ready."""
        paginator = self.get_new_paginator()
        paginator.advance(self.fetch_page(paginator, context))
        if paginator.finished:
            raise CleverTapError("CleverTap answered the export request without a cursor")
        return paginator, self.fetch_page(paginator, context)

    def open_export_ahead(self, context: Context) -> tuple[CursorPaginator, requests.Response]:
        """`open_export` in a thread reading ahead: see `fetch_page_ahead`."""
        with _read_ahead():
            return self.open_export(context)

    def fetch_page_ahead(self, paginator: CursorPaginator, context: Context) -> requests.Response:
        """`fetch_page` in a thread reading ahead: a large successful page is kept as bytes
        (LARGE_BODY_BYTES), to be parsed and checked by `checked_page` in the reading thread."""
        with _read_ahead():
            return self.fetch_page(paginator, context)

    def checked_page(
        self, paginator: CursorPaginator, response: requests.Response, context: Context
    ) -> requests.Response:
        """The response, validated in full (parsed here if it was read ahead unparsed);
        if that fails, the page is requested again, with the usual retries and polling."""
        try:
            self.validate_response(response)
        except (RetriableAPIError, ExportNotReady) as exc:
            self.log(
                "A page read ahead failed validation (%s); requesting it again",
                _describe(exc),
                level=logging.WARNING,
            )
            return self.fetch_page(paginator, context)
        return response

    def fetch_page(self, paginator: CursorPaginator, context: Context) -> requests.Response:
        """The response at the paginator's position: step 1's POST while it has no cursor,
        then the page at its cursor (the SDK's request building, validation and retries)."""
        return self._send(self._prepare_request(context=context, page=paginator), context)

    def get_new_paginator(self) -> CursorPaginator:
        from tap_clevertap.pagination import CursorPaginator  # noqa: PLC0415  (cycle)

        return CursorPaginator()

    def parse_response(self, response: requests.Response) -> list[dict[str, Any]]:
        # The last page may be just {"status": "success"} without a records key.
        records: list[dict[str, Any]] = response_body(response).get("records") or []
        return records

    # --- response validation -----------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        body_bytes = read_whole_body(response)
        if (
            status == 200
            and len(body_bytes) > LARGE_BODY_BYTES
            and getattr(_reading_ahead, "active", False)
        ):
            return  # a page read ahead: `checked_page` validates it when it is read
        if status in (401, 403):
            raise CredentialsRefused(
                f"CleverTap refused the credentials (HTTP {status}): check account_id and "
                "passcode, and that region/api_url is the account's region"
            )
        try:
            body = response_body(response)
        except InvalidBody as exc:
            reason = f"CleverTap answered HTTP {status} with a body that is {exc}"
            if status == 429 or status >= 500 or status < 400:
                raise RetriableAPIError(reason, response) from exc
            raise CleverTapError(reason) from exc
        if status == 429:
            raise Throttled(
                "too many concurrent requests (HTTP 429)", response, _retry_after(response)
            )
        if status >= 500:
            raise RetriableAPIError(f"CleverTap server error (HTTP {status})", response)
        if body.get("status") != "fail" and status < 400:
            return
        code = body.get("code")
        error = str(body.get("error") or "no error text")
        if code == CODE_IN_PROGRESS:
            raise ExportNotReady(error)
        if code == CODE_THROTTLED:
            wait = _retry_after(response)
            raise Throttled(f"throttled by CleverTap (code 1): {error}", response, wait)
        if code == CODE_INCORRECT_USAGE and response.request.method == "GET":
            raise CursorRejected(f"CleverTap refused the export's cursor (code 3): {error}")
        if "not allowed" in error.lower():
            raise ExportRefused(
                f"CleverTap does not allow exporting event {_event_name(response)!r}: {error}; "
                "remove it from event_names"
            )
        raise CleverTapError(f"CleverTap refused the request (HTTP {status}, code {code}): {error}")

    # --- the one retry policy ----------------------------------------------------------

    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """Retries (429, 5xx, throttling, broken replies, connection errors) inside
        export polling (`code` 2): a poll is not a failure and has its own time budget."""
        retried = super().request_decorator(func)
        polled = backoff.on_exception(
            backoff.expo,
            ExportNotReady,
            max_time=lambda: self.config["export_wait_timeout"],
            jitter=None,
            on_backoff=self._log_export_wait,
            logger=None,
            base=POLL_GROWTH,
            factor=self.config["export_poll_seconds"],
            max_value=POLL_MAX_WAIT,
        )(retried)

        def request(
            prepared: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            try:
                return polled(prepared, context)
            except ExportNotReady as exc:
                raise ExportWaitTimeout(
                    f"the export was still being prepared after "
                    f"{self.config['export_wait_timeout']} s: raise "
                    "export_wait_timeout or use smaller windows (window_days)"
                ) from exc
            except (RetriableAPIError, requests.RequestException) as exc:
                raise RetriesExhausted(
                    f"CleverTap kept failing after {self.backoff_max_tries()} tries "
                    f"({_describe(exc)}): rerun later; the last STATE resumes without loss"
                ) from exc

        return request

    def backoff_max_tries(self) -> int:
        return int(self.config["max_retries"]) + 1

    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """Exponential waits, except that throttling waits what CleverTap asked for."""
        base = float(self.config["retry_wait_seconds"])
        throttle = float(self.config["throttle_wait_seconds"])
        attempt = 0
        exc = yield  # type: ignore[misc]  # backoff primes the generator, then sends each error
        while True:
            if isinstance(exc, Throttled):
                wait = exc.wait if exc.wait is not None else max(throttle, base * 2**attempt)
            else:
                wait = base * 2**attempt
            attempt += 1
            exc = yield min(wait, RETRY_MAX_WAIT)

    def backoff_jitter(self, value: float) -> float:
        # Up to 25% more, never less: a Retry-After is a minimum.
        return value * (1 + random.random() / 4)

    def backoff_handler(self, details: Details) -> None:
        self.log(
            "Retrying in %.1f s (try %d of %d): %s",
            details.get("wait") or 0.0,
            details.get("tries"),
            self.backoff_max_tries(),
            _describe(details.get("exception")),
            level=logging.WARNING,
        )

    def _log_export_wait(self, details: Details) -> None:
        context = self.context_of(details)
        self.log(
            "Export %s still being prepared by CleverTap; polling again in %.1f s "
            "(waited %.0f s so far)",
            context,
            details.get("wait") or 0.0,
            details.get("elapsed") or 0.0,
        )

    @staticmethod
    def context_of(details: Details) -> str:
        args = details.get("args") or ()
        context = args[1] if len(args) > 1 else None
        if isinstance(context, dict) and "from" in context:
            return f"{context['event_name']!r} {context['from']}..{context['to']}"
        return ""


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to the throttle wait


def _event_name(response: requests.Response) -> str:
    try:
        return str(json.loads(response.request.body or b"{}")["event_name"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _describe(exc: BaseException | None) -> str:
    """A short, secret-free reason: never the request (its headers carry the passcode)."""
    if isinstance(exc, RetriableAPIError):
        return str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}: connection failed or timed out"
    return type(exc).__name__ if exc else "unknown error"
