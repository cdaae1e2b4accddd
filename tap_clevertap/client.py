"""The HTTP conversation with CleverTap: Get Events, Get User Profiles and getSchema.

Owns hosts, auth headers, request building, response validation and the one retry policy.
Only this module knows CleverTap's wire format (with `wire.py` for bodies).
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import backoff
import requests
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import HTTPRequest, PageContext
from typing_extensions import override

from tap_clevertap.config import POLL_GROWTH, POLL_MAX_WAIT, base_url, seconds
from tap_clevertap.errors import (
    CleverTapError,
    CredentialsRefused,
    CursorRejected,
    ExportNotReady,
    ExportRefused,
    ExportWaitTimeout,
    InvalidBody,
    RetriesExhausted,
    Throttled,
    describe,
)
from tap_clevertap.pagination import CursorPaginator
from tap_clevertap.wire import parse_body, read_whole_body, response_body, response_head

if TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.exports import FetchedPage

    RequestFunc = Callable[[requests.PreparedRequest, Context | None], requests.Response]

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

EVENTS_PATH = "/1/events.json"
PROFILES_PATH = "/1/profiles.json"
SCHEMA_PATH = "/getSchema"  # no /1/ prefix
CAMPAIGNS_PATH = "/1/targets/list.json"
CAMPAIGN_RESULT_PATH = "/1/targets/result.json"
MESSAGE_REPORT_PATH = "/1/message/report.json"
CONTENT_BLOCKS_PATH = "/v1/contentBlock/list"  # no /1/ prefix
CATEGORY_GROUPS_PATH = "/category-groups"  # no /1/ prefix
EVENT_COUNTS_PATH = "/1/counts/events.json"

# CleverTap's body codes (often sent with HTTP 200).
CODE_THROTTLED = 1
CODE_IN_PROGRESS = 2
CODE_INCORRECT_USAGE = 3
RETRY_MAX_WAIT = 300.0


class CleverTapAuth(requests.auth.AuthBase):
    """Adds the account headers. Its repr never shows the passcode."""

    def __init__(self, account_id: str, passcode: str) -> None:
        """Keep the two header values."""
        self._headers = {"X-CleverTap-Account-Id": account_id, "X-CleverTap-Passcode": passcode}

    @override
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the headers to `request`."""
        request.headers.update(self._headers)
        return request

    @override
    def __repr__(self) -> str:
        """Name the class, never the passcode."""
        return "CleverTapAuth(passcode=***)"


class CleverTapStream(RESTStream[str | None]):
    """A stream that talks to CleverTap: auth, requests, validation, retries, request slots.

    Every request attempt holds one of `request_slots` (CleverTap allows 3 requests in flight
    per account), and only while it is in flight: not while backing off or polling.
    """

    # The record schema of a stream that sets it on the class (with `name`).
    record_schema: ClassVar[dict[str, Any] | None] = None

    def __init__(
        self,
        tap: Tap,
        *,
        request_slots: threading.BoundedSemaphore,
        name: str | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        """A stream whose requests share `request_slots` with the tap's other streams.

        `name` and `schema` default to the class's `name` and `record_schema`.
        """
        super().__init__(tap, name=name, schema=schema or self.record_schema)
        self.request_slots = request_slots

    @property
    @override
    def url_base(self) -> str:
        return base_url(self.config)

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        # CleverTap requires the JSON content type on every request, GETs included.
        return {"Content-Type": "application/json", "User-Agent": self.user_agent}

    @property
    @override
    def authenticator(self) -> CleverTapAuth:
        return CleverTapAuth(self.config["account_id"], self.config["passcode"])

    @property
    @override
    def requests_session(self) -> requests.Session:
        session = super().requests_session
        session.stream = True  # bodies are read in one call by `validate_response`
        return session

    @property
    @override
    def timeout(self) -> int:
        # requests takes any number of seconds; the SDK's annotation says int.
        return cast("int", seconds(self.config, "request_timeout"))

    def send(self, request: HTTPRequest, context: Context | None) -> requests.Response:
        """The validated response to `request`, with the retries, polling and slots.

        Its body is read with `wire.response_body` (parsed once, whatever validation read).
        """
        return self._with_policy(self.prepare(request), context)

    def fetch_body(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        context: Context | None = None,
    ) -> dict[str, Any]:
        """The body of CleverTap's answer to one request (JSON `data`), validated."""
        request = HTTPRequest(
            url=self.url_base + path,
            method=method,
            params=params or {},
            headers=self.http_headers,
            data=data,
        )
        return response_body(self.send(request, context))

    def concurrently(
        self, function: Callable[[_Item], _Result], items: Sequence[_Item]
    ) -> Generator[_Result, None, None]:
        """`function(item)` of each item, in order, `max_concurrent_requests` at a time.

        For requests that do not depend on each other (a campaign's result, a day's count):
        each goes through the request slots like any other. A call's failure is raised here,
        in its turn; once the caller stops (that failure, a signal), no further call starts,
        and the calls in flight are not waited for (the threads are daemons).
        """
        results: list[Future[_Result]] = [Future() for _ in items]
        pending = iter(range(len(items)))
        lock = threading.Lock()
        stopped = threading.Event()

        def work() -> None:
            while not stopped.is_set():
                with lock:
                    index = next(pending, None)
                if index is None:
                    return
                try:
                    results[index].set_result(function(items[index]))
                except BaseException as exc:  # handed to the caller, in order
                    results[index].set_exception(exc)

        workers = min(len(items), self.config["max_concurrent_requests"])
        for number in range(workers):
            name = f"clevertap-{self.name}-{number}"
            threading.Thread(target=work, name=name, daemon=True).start()
        try:
            for result in results:
                yield result.result()
        finally:
            stopped.set()

    @contextlib.contextmanager
    def naming_failures(self, what: str) -> Iterator[None]:
        """A failure inside ends the run with a line that names this stream and `what`."""
        try:
            yield
        except CleverTapError as exc:
            exc.where = exc.where or f"stream {self.name} ({what})"
            raise

    @property
    def incomplete(self) -> bool:
        """True when the stream ended without some of its data (and said so in a WARNING)."""
        return False

    def prepare(self, request: HTTPRequest) -> requests.PreparedRequest:
        """`request` as `requests` sends it, authenticated.

        `HTTPRequest.encode_params` honours `safe_query_chars`, so a cursor goes out as
        CleverTap sent it (the deprecated `prepare_request` would encode it twice).
        """
        return self.build_prepared_request(
            method=request.method,
            url=request.url,
            params=request.encode_params(),
            headers=request.headers,
            json=request.data,
        )

    # --- response validation -----------------------------------------------------------

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Raise for anything but a usable answer; see the README's failure table.

        Every answer is judged by its head (`wire.response_head`: status, code, cursors), so
        that an export page's records are not parsed here; a caller that wants the records
        asks for the body (`wire.response_body`), parsed once.
        """
        status = response.status_code
        read_whole_body(response)
        if status in (401, 403):
            raise CredentialsRefused(
                f"CleverTap refused the credentials (HTTP {status}): check account_id and "
                "passcode, and that region/api_url is the account's region"
            )
        try:
            body = response_head(response)
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
        if "not allowed" in error.lower() or "invalid event" in error.lower():
            raise ExportRefused(_event_name(response), f"{_refusal_text(error)} (HTTP {status})")
        raise CleverTapError(f"CleverTap refused the request (HTTP {status}, code {code}): {error}")

    # --- the one retry policy ----------------------------------------------------------

    @cached_property
    def _with_policy(self) -> RequestFunc:
        # `_request` is the SDK's one attempt: send, log its duration metric, validate.
        return self.request_decorator(self._request)

    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """Slots, retries and export polling around one attempt (`func`).

        Each attempt holds a request slot. Retries (429, 5xx, throttling, broken replies,
        connection errors) run inside export polling (`code` 2): a poll is not a failure
        and has its own time budget. What is left when both give up is one-line error.
        """

        def attempt(prepared: requests.PreparedRequest, context: Context | None) -> Any:
            with self.request_slots:
                return func(prepared, context)

        retried = super().request_decorator(attempt)
        polled = backoff.on_exception(
            backoff.expo,
            ExportNotReady,
            max_time=lambda: seconds(self.config, "export_wait_timeout"),
            jitter=None,
            on_backoff=self._log_export_wait,
            logger=None,
            base=POLL_GROWTH,
            factor=seconds(self.config, "export_poll_seconds"),
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
                    f"({describe(exc)}): rerun later; the last STATE resumes without loss"
                ) from exc

        return request

    @override
    def backoff_max_tries(self) -> int:
        return int(self.config["max_retries"]) + 1

    @override
    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """Exponential waits, except that throttling waits what CleverTap asked for."""
        base = seconds(self.config, "retry_wait_seconds")
        throttle = seconds(self.config, "throttle_wait_seconds")
        attempt = 0
        exc = yield  # type: ignore[misc]  # backoff primes the generator, then sends each error
        while True:
            if isinstance(exc, Throttled):
                wait = exc.wait if exc.wait is not None else max(throttle, base * 2**attempt)
            else:
                wait = base * 2**attempt
            attempt += 1
            exc = yield min(wait, RETRY_MAX_WAIT)

    @override
    def backoff_jitter(self, value: float) -> float:
        # Up to 25% more, never less: a Retry-After is a minimum.
        return value * (1 + random.random() / 4)

    @override
    def backoff_handler(self, details: Details) -> None:
        self.log(
            "Retrying in %.1f s (try %d of %d): %s",
            details.get("wait") or 0.0,
            details.get("tries"),
            self.backoff_max_tries(),
            describe(details.get("exception")),
            level=logging.WARNING,
        )

    def _log_export_wait(self, details: Details) -> None:
        self.log(
            "Export %s still being prepared by CleverTap; polling again in %.1f s "
            "(waited %.0f s so far)",
            _export_of(details),
            details.get("wait") or 0.0,
            details.get("elapsed") or 0.0,
        )


class ExportClient:
    """One stream's export conversation: step 1, the page at a cursor, a page's records.

    What the threads reading exports ahead use (`exports.py`). It holds the stream's request
    function (`send`: one request under the retry policy, polling and request slots) and the
    few values a request is built from, and nothing else of the stream.
    """

    def __init__(
        self,
        *,
        url: str,
        headers: dict[str, str],
        batch_size: int,
        flags: dict[str, bool],
        send: Callable[[HTTPRequest, Context | None], requests.Response],
        logger: logging.Logger,
    ) -> None:
        """The conversation with `url` (an export endpoint), sending through `send`."""
        self.url = url
        self.headers = headers
        self.batch_size = batch_size
        self.flags = flags
        self.send = send
        self.logger = logger

    def request(self, cursor: str | None, context: Context) -> HTTPRequest:
        """Step 1 (a POST with the export's flags) without a cursor, else the page at it."""
        if cursor is None:
            params: dict[str, Any] = {"batch_size": self.batch_size}
            for flag, value in self.flags.items():
                params[flag] = "true" if value else "false"
            return HTTPRequest(
                url=self.url,
                method="POST",
                params=params,
                headers=self.headers,
                data={
                    "event_name": context["event_name"],
                    "from": context["from"],
                    "to": context["to"],
                },
            )
        # Cursors arrive percent-encoded; "%" kept safe sends them exactly as received.
        return HTTPRequest(
            url=self.url,
            method="GET",
            params={"cursor": cursor},
            headers=self.headers,
            safe_query_chars="%",
        )

    def open(
        self, context: Context, on_cursor: Callable[[], None] | None = None
    ) -> tuple[CursorPaginator, requests.Response]:
        """Step 1 (POST for a cursor), then the export's first page, polled until ready.

        `on_cursor` is called once step 1 gave a cursor (CleverTap did not refuse the
        event), before the export is prepared.
        """
        paginator = CursorPaginator()
        paginator.advance(self.fetch_page(paginator, context))
        if paginator.finished:
            raise CleverTapError("CleverTap answered the export request without a cursor")
        if on_cursor is not None:
            on_cursor()
        return paginator, self.fetch_page(paginator, context)

    def fetch_page(self, paginator: CursorPaginator, context: Context) -> requests.Response:
        """The response at the paginator's position, with the retries and polling.

        Step 1's POST while the paginator has no cursor, then the page at its cursor.
        """
        return self.send(self.request(paginator.current_value, context), context)

    def page_records(self, page: FetchedPage, context: Context) -> list[dict[str, Any]]:
        """The page's records, its body parsed here (in the writing thread) unless it was.

        A body that does not parse is fetched again (with the usual retries and polling).

        Raises:
            CursorRejected: the page does not lead to the cursor that was followed after
                it (read ahead from a body that was not what it seemed): the export is
                requested again from step 1.
        """
        try:
            body = page.parsed if page.parsed is not None else parse_body(page.body)
        except InvalidBody as exc:
            self.logger.warning(
                "A page of %s could not be parsed (%s); requesting it again",
                _export_name(context),
                exc,
            )
            body = response_body(self.send(self.request(page.cursor, context), context))
        if (body.get("next_cursor") or None) != page.next_cursor:
            raise CursorRejected("a page's next_cursor is not the cursor read ahead after it")
        # The last page may be just {"status": "success"} without a records key.
        records: list[dict[str, Any]] = body.get("records") or []
        return records


class CleverTapExportStream(CleverTapStream):
    """The two-step export: a POST that returns a cursor, then GETs that follow it.

    Get Events and Get User Profiles share it. The stream context carries the export:
    `event_name`, `from` and `to` (YYYYMMDD ints). Subclasses set `path` and
    `export_flags`; the conversation itself is the `export_client`'s.
    """

    @property
    @abc.abstractmethod
    def export_flags(self) -> dict[str, bool]:
        """The step-1 flags `app`, `events`, `profile`, each sent as true or false.

        Always sent: CleverTap's defaults for a missing flag (events and profile on) are not
        the settings' defaults.
        """

    @cached_property
    def export_client(self) -> ExportClient:
        """This stream's export conversation, for the reading threads and the writer."""
        return ExportClient(
            url=self.url_base + self.path,
            headers=self.http_headers,
            batch_size=self.config["batch_size"],
            flags=self.export_flags,
            send=self.send,
            logger=self.logger,
        )

    @override
    def get_http_request(self, *, page: PageContext[str | None]) -> HTTPRequest:
        return self.export_client.request(page.next_page_token, page.stream_context or {})

    @override
    def get_new_paginator(self) -> CursorPaginator:
        return CursorPaginator()


def _export_of(details: Details) -> str:
    """The export a backoff callback is about, from the decorated call's context."""
    args = details.get("args") or ()
    return _export_name(args[1] if len(args) > 1 else None)


def _export_name(context: object) -> str:
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


def _refusal_text(error: str) -> str:
    """CleverTap's words: "Invalid event" comes as a JSON list inside a string."""
    try:
        parsed = json.loads(error)
    except ValueError:
        return error
    return "; ".join(map(str, parsed)) if isinstance(parsed, list) else error


def _event_name(response: requests.Response) -> str:
    try:
        return str(json.loads(response.request.body or b"{}")["event_name"])
    except (ValueError, KeyError, TypeError):
        return "?"
