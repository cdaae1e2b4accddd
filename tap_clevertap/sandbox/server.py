"""A local simulator of CleverTap's read APIs, over real HTTP.

Get Events (`/1/events.json`), Get User Profiles (`/1/profiles.json`), the schema
catalogs (`GET /getSchema?type=events|userProperties`, no `/1/`), and the messaging side
(campaigns, their results, message reports, content blocks, category groups: see
`_messaging` and `clevertap-more-apis.md` section 4). It follows
`clevertap-get-events-api.txt` and the API notes: header auth, a step-1 POST that returns a
percent-encoded cursor, step-2 GETs that page with `next_cursor` until none is returned,
`code` 2 while an export is being prepared, inclusive `from`/`to` days, the batch_size limit,
the `app`/`events`/`profile` flags with the current docs' defaults when omitted (events and
profile on, app off), HTTP 400 for the events the API cannot export ("Export not allowed")
and for names the project does not have ("Invalid event"), errors as `{"status": "fail", ...}`
bodies (often with HTTP 200), and CleverTap's 3 concurrent requests per account (HTTP 429
over it). Faults are switched on per test through `faults` (or `POST /_sandbox/faults` from
another process).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from typing_extensions import override

from tap_clevertap.sandbox.dataset import SandboxData
from tap_clevertap.sandbox.messaging import CONTENT_BLOCK_PAGE_MAX, Messaging

EVENTS_PATH = "/1/events.json"
PROFILES_PATH = "/1/profiles.json"
SCHEMA_PATH = "/getSchema"
CAMPAIGNS_PATH = "/1/targets/list.json"
CAMPAIGN_RESULT_PATH = "/1/targets/result.json"
MESSAGE_REPORT_PATH = "/1/message/report.json"
CONTENT_BLOCKS_PATH = "/v1/contentBlock/list"  # no /1/ prefix
CATEGORY_GROUPS_PATH = "/category-groups"  # no /1/ prefix
MESSAGING_PATHS = frozenset(
    {
        CAMPAIGNS_PATH,
        CAMPAIGN_RESULT_PATH,
        MESSAGE_REPORT_PATH,
        CONTENT_BLOCKS_PATH,
        CATEGORY_GROUPS_PATH,
    }
)
COUNTS_PATH = "/1/counts/events.json"
API_PATHS = frozenset({EVENTS_PATH, PROFILES_PATH, SCHEMA_PATH, COUNTS_PATH}) | MESSAGING_PATHS
# How a campaign without a result yet is answered: HTTP 409 (documented), HTTP 500 with a
# `fail` body, or HTTP 200 with an `error` and no `result` (both seen live).
NO_RESULT_ANSWERS = ("409", "500", "200")
# Flags a step-1 POST may leave out, and what CleverTap's current docs say they default to.
FLAG_DEFAULTS = {"app": False, "events": True, "profile": True}
MAX_BATCH_SIZE = 5000
DEFAULT_ACCOUNT_ID = "SANDBOX-ACCOUNT"
DEFAULT_PASSCODE = "sandbox-passcode"


@dataclass
class Fault:
    """One fault rule, switched on for matching requests.

    A request matches when method, day and event match; `after` matching requests pass
    untouched, then the next `times` (None: all) get `action`.
    """

    # status | fail_code | html | truncate | reset | delay | repeat_cursor, and on pages:
    # truncate_page (the real page cut in half, sent as a whole 200 response) and cut_page
    # (the real page's headers, half its body, then the connection closed), garble_page (the
    # real page with bytes in the middle of its records overwritten: start and end intact);
    # on getSchema:
    # no_items (a success without the list) and empty_items (an empty list).
    action: str
    method: str | None = None
    path: str | None = None  # e.g. /1/targets/result.json; None: any
    day: int | None = None  # YYYYMMDD inside the export's from..to
    event_name: str | None = None  # the export's event
    times: int | None = 1
    after: int = 0
    status: int = 503
    code: int = 2
    error: str = "Request still in progress, please retry later"
    retry_after: str | None = None
    seconds: float = 0.0
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)


@dataclass
class _Export:
    kind: str  # "events" or "profiles"
    event_name: str
    days: list[dt.date]
    batch_size: int
    flags: dict[str, bool]
    ready_at: float
    first_raw: str = ""

    @property
    def segments(self) -> int:
        """Events are served day by day; profiles once for the whole range."""
        return len(self.days) if self.kind == "events" else 1


@dataclass
class _Cursor:
    export: _Export
    day_index: int
    position: int
    page_number: int
    created: float
    last_used: float
    next_raw: str | None = None


@dataclass
class SandboxSettings:
    """How the simulated account behaves (changeable while it runs)."""

    account_id: str = DEFAULT_ACCOUNT_ID
    passcode: str = DEFAULT_PASSCODE
    prepare_seconds: float = 0.0  # how long an export answers code 2 after the POST
    page_delay: float = 0.0  # seconds to serve each page
    max_concurrent: int = 3
    cursor_idle_seconds: float = 3600.0
    cursor_max_age_seconds: float = 4 * 3600.0
    unordered: bool = False  # serve each day's events shuffled (out of ts order)
    schema_shuffle_seed: int | None = None  # getSchema lists its items in a shuffled order
    cursor_bytes: int = 1200  # real cursors are ~1.5-2.4 KB once encoded
    no_result_answer: str = "409"  # one of NO_RESULT_ANSWERS
    content_blocks_enabled: bool = True  # False: HTTP 403 "isn't enabled on your account"
    messaging_delay: float = 0.0  # seconds to serve each messaging request (latency)
    # The last records of an export come without a next_cursor (instead of a page of records
    # followed by a bare {"status": "success"}): both are valid ends of an export.
    records_on_last_page: bool = False
    # Counts: answered `partial` this many times (the POST first, then polls) before the
    # count; and a day (YYYYMMDD) whose count is one more than its export, as when an event
    # reaches CleverTap after the day was exported.
    count_partial_polls: int = 0
    late_event_day: int | None = None


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client goes away mid-request (a killed or stopped tap)."""

    @override
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SandboxServer:
    """The simulator. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        data: SandboxData | None = None,
        settings: SandboxSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        messaging: Messaging | None = None,
    ) -> None:
        """A server on `host`:`port` (0: a free port) serving `data`, not yet started."""
        self.data = data or SandboxData()
        self.messaging = messaging or Messaging(seed=self.data.seed)
        self.settings = settings or SandboxSettings()
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight_seen = 0
        self._cursors: dict[str, _Cursor] = {}
        self._counts: dict[int, list[int]] = {}  # req_id -> [count, partial answers left]
        self._pages: OrderedDict[tuple[object, ...], list[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._httpd = _QuietServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.sandbox = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give the tap as `api_url`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SandboxServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        """The started server."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    def reset(self) -> None:
        """Forget faults, recorded requests and the concurrency high-water mark."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self.max_in_flight_seen = 0

    # --- bookkeeping used by the handler -------------------------------------------------

    def enter(self) -> bool:
        """Count a request in flight; False when the account is at its limit (HTTP 429)."""
        with self._lock:
            if self._in_flight >= self.settings.max_concurrent:
                return False
            self._in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
            return True

    def leave(self) -> None:
        """A request in flight is done."""
        with self._lock:
            self._in_flight -= 1

    def match_fault(
        self,
        method: str,
        days: tuple[int, int] | None,
        event_name: str | None = None,
        path: str | None = None,
    ) -> Fault | None:
        """The first switched-on fault that matches the request, counted as fired."""
        with self._lock:
            for fault in self.faults:
                if fault.method and fault.method != method:
                    continue
                if fault.path is not None and fault.path != path:
                    continue
                if fault.event_name is not None and fault.event_name != event_name:
                    continue
                if fault.day is not None and (days is None or not days[0] <= fault.day <= days[1]):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                fault.fired += 1
                return fault
        return None

    def new_cursor(self, export: _Export, day_index: int, position: int, page: int) -> str:
        """A new cursor to a position in `export`, percent-encoded as CleverTap sends it."""
        raw = base64.b64encode(secrets.token_bytes(self.settings.cursor_bytes)).decode()
        now = time.monotonic()
        with self._lock:
            self._cursors[raw] = _Cursor(export, day_index, position, page, now, now)
        # CleverTap hands cursors out already percent-encoded.
        return quote(raw, safe="")

    def find_cursor(self, raw: str) -> tuple[_Cursor | None, str]:
        """The cursor sent (decoded once), or None and why it is refused."""
        now = time.monotonic()
        with self._lock:
            cursor = self._cursors.get(raw)
            if cursor is None:
                return None, "Incorrect Usage"
            if (
                now - cursor.last_used > self.settings.cursor_idle_seconds
                or now - cursor.created > self.settings.cursor_max_age_seconds
            ):
                return None, "Incorrect Usage: cursor expired"
            cursor.last_used = now
            return cursor, ""

    def segment_records(self, export: _Export, segment: int) -> list[bytes]:
        """A day's events (or a range's profiles), serialised once and kept in a small cache."""
        flags = tuple(sorted(export.flags.items()))
        key: tuple[object, ...] = (export.kind, export.event_name, export.days[segment])
        key += (export.days[-1], flags, self.data.profile_version)
        with self._lock:
            cached = self._pages.get(key)
            if cached is not None:
                self._pages.move_to_end(key)
                return cached
        if export.kind == "events":
            rows = self.data.events(export.event_name, export.days[segment], **export.flags)
            if self.settings.unordered:
                # Shuffled, the same way each time the day is asked for.
                random.Random(export.days[segment].toordinal()).shuffle(rows)
        else:
            rows = self.data.profiles(
                export.event_name, export.days[0], export.days[-1], **export.flags
            )
        encoded = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
        with self._lock:
            self._pages[key] = encoded
            while len(self._pages) > 64:
                self._pages.popitem(last=False)
        return encoded


class _Refusal(Exception):
    """An HTTP 400 answer to a step-1 POST, with its body."""

    def __init__(self, body: dict[str, Any]) -> None:
        """The body CleverTap sends with the HTTP 400."""
        super().__init__(body)
        self.body = body

    @classmethod
    def fail(cls, error: str) -> _Refusal:
        """The usual `{"status": "fail", ...}` body."""
        return cls({"status": "fail", "error": error, "code": 400})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One buffered write per response, no Nagle: otherwise headers and body leave as two
    # small segments and delayed ACKs add ~40 ms to every keep-alive request.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    @property
    def sandbox(self) -> SandboxServer:
        return self.server.sandbox  # type: ignore[attr-defined,no-any-return]

    @override
    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr line."""

    # --- responses ------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json;charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any], **headers: str) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _fail(self, status: int, error: str, code: int, **headers: str) -> None:
        self._entry["status"] = status
        self._entry["code"] = code
        self._json(status, {"status": "fail", "error": error, "code": code}, **headers)

    # --- routing --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        if parts.path.startswith("/_sandbox/"):
            self._admin(method, parts.path, raw_body)
            return
        self._entry: dict[str, Any] = {
            "method": method,
            "path": parts.path,
            "query": parts.query,
            "body": raw_body.decode("utf-8", "replace"),
            "account_id": self.headers.get("X-CleverTap-Account-Id"),
            "content_type": self.headers.get("Content-Type"),
            "started": time.monotonic(),
        }
        sandbox = self.sandbox
        with sandbox._lock:
            sandbox.requests.append(self._entry)
        if not sandbox.enter():
            self._fail(429, "Too many concurrent requests", 429)
            return
        try:
            self._api(method, parts.path, parts.query, raw_body)
        finally:
            self._entry["ended"] = time.monotonic()
            sandbox.leave()

    def _api(self, method: str, path: str, query: str, raw_body: bytes) -> None:
        settings = self.sandbox.settings
        if path not in API_PATHS:
            self._fail(404, "Not found", 404)
            return
        if (
            self.headers.get("X-CleverTap-Account-Id") != settings.account_id
            or self.headers.get("X-CleverTap-Passcode") != settings.passcode
        ):
            self._fail(401, "Invalid Credentials", 401)
            return
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._fail(400, "Content-Type must be application/json", 400)
            return
        params = _query_params(query)
        if path in MESSAGING_PATHS:
            self._messaging(method, path, params, raw_body)
        elif path == COUNTS_PATH:
            self._count(method, params, raw_body)
        elif path == SCHEMA_PATH:
            self._schema(method, params)
        elif method == "POST":
            self._create_export("events" if path == EVENTS_PATH else "profiles", params, raw_body)
        else:
            self._page(params)

    def _schema(self, method: str, params: dict[str, str]) -> None:
        kind = params.get("type")
        if method != "GET" or kind not in ("events", "userProperties"):
            self._fail(400, "Invalid request: GET /getSchema?type=events|userProperties", 400)
            return
        if self._apply_fault(None):
            return
        data = self.sandbox.data
        items = data.schema_events() if kind == "events" else data.user_properties()
        seed = self.sandbox.settings.schema_shuffle_seed
        if seed is not None:
            random.Random(seed).shuffle(items)
        self._entry["status"] = 200
        self._json(200, {"status": "success", kind: items})

    # --- campaigns, their results, message reports, content blocks, category groups ------

    def _messaging(self, method: str, path: str, params: dict[str, str], raw_body: bytes) -> None:
        expected = "GET" if path in (CONTENT_BLOCKS_PATH, CATEGORY_GROUPS_PATH) else "POST"
        if method != expected:
            self._fail(405, f"Use {expected} for {path}", 405)
            return
        try:
            body = _json_object(raw_body) if expected == "POST" else {}
            days = _body_days(path, body)
        except ValueError as exc:
            self._fail(400, str(exc), 400)
            return
        if days is not None:
            self._entry.update(day_from=days[0], day_to=days[1])
        if self._apply_fault(days):
            return
        if self.sandbox.settings.messaging_delay:
            time.sleep(self.sandbox.settings.messaging_delay)
        self._messaging_answer(path, params, body, days)

    def _messaging_answer(
        self,
        path: str,
        params: dict[str, str],
        body: dict[str, Any],
        days: tuple[int, int] | None,
    ) -> None:
        messaging = self.sandbox.messaging
        if path == CAMPAIGNS_PATH:
            assert days is not None
            targets = messaging.campaigns(_parse_day(days[0]), _parse_day(days[1]))
            self._success({"targets": targets})
        elif path == CAMPAIGN_RESULT_PATH:
            self._campaign_result(body.get("id"))
        elif path == MESSAGE_REPORT_PATH:
            assert days is not None
            messages = messaging.message_reports(_parse_day(days[0]), _parse_day(days[1]))
            self._success({"messages": messages, "total_results": len(messages)})
        elif path == CONTENT_BLOCKS_PATH:
            self._content_blocks(params)
        else:
            self._success({"list": messaging.category_groups()})

    def _success(
        self, payload: dict[str, Any], status: int = 200, status_word: str = "success"
    ) -> None:
        self._entry["status"] = status
        self._json(status, {"status": status_word, **payload})

    def _campaign_result(self, campaign_id: object) -> None:
        if not isinstance(campaign_id, int) or isinstance(campaign_id, bool):
            self._fail(400, "Invalid campaign id", 400)
            return
        try:
            result = self.sandbox.messaging.campaign_result(campaign_id)
        except KeyError:
            self._fail(400, "Invalid campaign id", 400)
            return
        if result is not None:
            self._success({"result": result})
            return
        self._entry["no_result"] = True
        answer = self.sandbox.settings.no_result_answer
        if answer == "500":
            self._fail(500, "This target has no result as of yet", 500)
        elif answer == "200":
            self._success({"error": "This target hasn't been completed", "code": 200})
        else:
            self._fail(409, "The campaign has not completed yet: no result", 409)

    def _content_blocks(self, params: dict[str, str]) -> None:
        if not self.sandbox.settings.content_blocks_enabled:
            self._fail(403, "Content Blocks isn't enabled on your account", 403)
            return
        try:
            page_number = int(params.get("pageNumber", "1"))
            page_size = int(params.get("pageSize", "10"))
        except ValueError:
            self._fail(400, "pageNumber and pageSize must be numbers", 400)
            return
        if page_number < 1 or not 1 <= page_size <= CONTENT_BLOCK_PAGE_MAX:
            self._fail(400, f"pageSize must be 1..{CONTENT_BLOCK_PAGE_MAX}, pageNumber >= 1", 400)
            return
        bounds: dict[str, dt.datetime] = {}
        for name in ("updatedFrom", "createdAtFrom"):
            if name in params:
                value = unquote(params[name])
                if not _ISO_MILLIS.fullmatch(value):
                    self._fail(400, "Enter date in ISO format", 400)
                    return
                bounds[name] = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
        blocks = self.sandbox.messaging.content_blocks(
            updated_from=bounds.get("updatedFrom"), created_from=bounds.get("createdAtFrom")
        )
        start = (page_number - 1) * page_size
        self._entry["records"] = len(blocks[start : start + page_size])
        self._success({"contentBlocks": blocks[start : start + page_size], "total": len(blocks)})

    # --- counts (POST /1/counts/events.json, then GET ?req_id= while partial) --------------

    def _count(self, method: str, params: dict[str, str], raw_body: bytes) -> None:
        if method == "GET":
            self._count_poll(params)
            return
        sandbox = self.sandbox
        asked = self._event_days(raw_body)
        if asked is None:
            return
        event_name, first, last = asked
        data = sandbox.data
        if not data.has_event(event_name) and data.exportable(event_name):
            self._fail(400, f"Invalid event name: {event_name}", 400)
            return
        count = sum(
            data.day_count(event_name, first + dt.timedelta(days=i))
            for i in range((last - first).days + 1)
        )
        late = sandbox.settings.late_event_day
        if late is not None and _day_int(first) <= late <= _day_int(last):
            count += 1
        partial = sandbox.settings.count_partial_polls
        if partial <= 0:
            self._success({"count": count})
            return
        with sandbox._lock:
            req_id = 10**12 + len(sandbox._counts)
            sandbox._counts[req_id] = [count, partial - 1]
        self._success({"req_id": req_id}, status_word="partial")

    def _event_days(self, raw_body: bytes) -> tuple[Any, dt.date, dt.date] | None:
        """The event name and days of an export or count request.

        None once answered: a bad body, or a fault served in its place.
        """
        try:
            body = _json_object(raw_body)
            event_name = body["event_name"]
            first, last = _parse_day(body["from"]), _parse_day(body["to"])
        except (ValueError, KeyError, TypeError):
            self._fail(400, "Invalid request body: need event_name, from, to (YYYYMMDD)", 400)
            return None
        self._entry.update(event_name=event_name, day_from=body["from"], day_to=body["to"])
        if self._apply_fault((body["from"], body["to"])):
            return None
        return event_name, first, last

    def _count_poll(self, params: dict[str, str]) -> None:
        if self._apply_fault(None):
            return
        try:
            req_id = int(params.get("req_id", ""))
        except ValueError:
            req_id = -1
        with self.sandbox._lock:
            pending = self.sandbox._counts.get(req_id)
            still_partial = pending is not None and pending[1] > 0
            if pending is not None and still_partial:
                pending[1] -= 1
        if pending is None:
            self._fail(400, "Invalid request id", 400)
        elif still_partial:
            self._success({"req_id": req_id}, status_word="partial")
        else:
            self._success({"count": pending[0]})

    def _apply_fault(self, days: tuple[int, int] | None) -> bool:
        """Serve a switched-on fault instead of the real answer; True when one was served."""
        fault = self.sandbox.match_fault(
            self.command, days, self._entry.get("event_name"), self._entry["path"]
        )
        if fault is None:
            return False
        self._entry["fault"] = fault.action
        if fault.action == "delay":
            time.sleep(fault.seconds)
            return False
        if fault.action == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._fail(fault.status, fault.error, fault.status, **extra)
        elif fault.action == "fail_code":
            self._fail(200, fault.error, fault.code)
        elif fault.action == "html":
            self._entry["status"] = fault.status
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self._send(fault.status, page, content_type="text/html")
        elif fault.action == "truncate":
            self._entry["status"] = 200
            self._send(200, b'{"status": "success", "next_cursor": "abc", "records": [{"pro')
        elif fault.action in ("no_items", "empty_items"):
            self._entry["status"] = 200
            kind = _query_params(urlsplit(self.path).query).get("type", "events")
            body: dict[str, Any] = {"status": "success"} | (
                {kind: []} if fault.action == "empty_items" else {}
            )
            self._json(200, body)
        elif fault.action == "reset":
            self._entry["status"] = 0
            self.close_connection = True
            self.connection.close()
        else:  # delay, repeat_cursor and *_page change the real answer instead of replacing it
            return False
        return True

    def _create_export(self, kind: str, params: dict[str, str], raw_body: bytes) -> None:
        asked = self._event_days(raw_body)
        if asked is None:
            return
        event_name, first, last = asked
        try:
            batch_size, flags = self._export_params(params, event_name, first, last)
        except _Refusal as refusal:
            self._entry["status"] = 400
            self._json(400, refusal.body)
            return
        self._entry["flags"] = flags
        export = _Export(
            kind=kind,
            event_name=event_name,
            days=[first + dt.timedelta(days=i) for i in range((last - first).days + 1)],
            batch_size=batch_size,
            flags=flags,
            ready_at=time.monotonic() + self.sandbox.settings.prepare_seconds,
        )
        cursor = self.sandbox.new_cursor(export, 0, 0, 0)
        export.first_raw = unquote(cursor)
        self._entry["status"] = 200
        self._entry["cursor_issued"] = cursor
        self._json(200, {"cursor": cursor, "status": "success"})

    def _export_params(
        self, params: dict[str, str], event_name: object, first: dt.date, last: dt.date
    ) -> tuple[int, dict[str, bool]]:
        """batch_size and the flags of a step-1 POST; `_Refusal` for what CleverTap refuses."""
        try:
            batch_size = int(params.get("batch_size", MAX_BATCH_SIZE))
        except ValueError:
            raise _Refusal.fail("batch_size must be an integer") from None
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise _Refusal.fail(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if first > last or not isinstance(event_name, str) or not event_name:
            raise _Refusal.fail("Invalid date range or event name")
        if not self.sandbox.data.exportable(event_name):
            raise _Refusal.fail("Export not allowed for this event")
        if not self.sandbox.data.has_event(event_name):
            # Seen live: no `status` and no `code`, the error a JSON list inside a string.
            raise _Refusal({"error": json.dumps([f"Invalid event : {event_name}"])})
        flags = {}
        for flag, default in FLAG_DEFAULTS.items():
            value = params.get(flag)
            if value not in (None, "true", "false"):
                raise _Refusal.fail(f"{flag} must be true or false")
            flags[flag] = default if value is None else value == "true"
        return batch_size, flags

    def _page(self, params: dict[str, str]) -> None:
        if "cursor" not in params:
            self._fail(400, "cursor is required", 400)
            return
        # The value as sent; CleverTap decodes it once. A cursor encoded twice by the
        # client therefore does not match and is "Incorrect Usage".
        cursor, problem = self.sandbox.find_cursor(unquote(params["cursor"]))
        if cursor is None:
            if not self._apply_fault(None):
                self._fail(200, problem, 3)
            return
        export = cursor.export
        days_key = (_day_int(export.days[0]), _day_int(export.days[-1]))
        self._entry.update(event_name=export.event_name, day_from=days_key[0], day_to=days_key[1])
        if self._apply_fault(days_key):
            return
        if time.monotonic() < export.ready_at:
            self._fail(200, "Request still in progress, please retry later", 2)
            return
        if self.sandbox.settings.page_delay:
            time.sleep(self.sandbox.settings.page_delay)
        records, day_index, position = self._take_page(cursor)
        self._entry["status"] = 200
        self._entry["records"] = len(records)
        if not records:
            # The end of an export: just a success, no records key and no next_cursor.
            self._send(200, b'{"status": "success"}')
            return
        if self.sandbox.settings.records_on_last_page and day_index >= export.segments:
            self._entry["cursor_issued"] = None
            records_json = b",".join(records)
            self._send_page(b'{"status": "success", "records": [' + records_json + b"]}")
            return
        if self._entry.get("fault") == "repeat_cursor":
            # A broken server: hand back the export's first cursor, one already used.
            next_raw = quote(export.first_raw, safe="")
        else:
            if cursor.next_raw is None:
                cursor.next_raw = self.sandbox.new_cursor(
                    export, day_index, position, cursor.page_number + 1
                )
            next_raw = cursor.next_raw
        self._entry["cursor_issued"] = next_raw
        head = json.dumps({"status": "success", "next_cursor": next_raw})[:-1]
        payload = head.encode() + b', "records": [' + b",".join(records) + b"]}"
        self._send_page(payload)

    def _send_page(self, payload: bytes) -> None:
        if self._entry.get("fault") == "truncate_page":
            self._send(200, payload[: len(payload) // 2])
        elif self._entry.get("fault") == "garble_page":
            middle = len(payload) // 2
            self._send(200, payload[:middle] + b'}}"{[' + payload[middle + 5 :])
        elif self._entry.get("fault") == "cut_page":
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
        else:
            self._send(200, payload)

    def _take_page(self, cursor: _Cursor) -> tuple[list[bytes], int, int]:
        export = cursor.export
        # Pages are not always full: every third page is a third short.
        size = export.batch_size
        if cursor.page_number % 3 == 2 and size >= 3:
            size -= size // 3
        taken: list[bytes] = []
        day_index, position = cursor.day_index, cursor.position
        while len(taken) < size and day_index < export.segments:
            day = self.sandbox.segment_records(export, day_index)
            chunk = day[position : position + size - len(taken)]
            taken.extend(chunk)
            position += len(chunk)
            if position >= len(day):
                day_index, position = day_index + 1, 0
        return taken, day_index, position

    # --- control plane for tests in other processes ------------------------------------------

    def _admin(self, method: str, path: str, raw_body: bytes) -> None:
        sandbox = self.sandbox
        if path == "/_sandbox/requests" and method == "GET":
            with sandbox._lock:
                entries = list(sandbox.requests)
            self._json(200, {"requests": entries, "max_in_flight": sandbox.max_in_flight_seen})
        elif path == "/_sandbox/faults" and method == "POST":
            rules = [Fault(**rule) for rule in json.loads(raw_body or b"[]")]
            with sandbox._lock:
                sandbox.faults[:] = rules
            self._json(200, {"faults": [asdict(f) for f in rules]})
        elif path == "/_sandbox/settings" and method == "POST":
            changes = json.loads(raw_body or b"{}")
            if "profile_version" in changes:
                sandbox.data.profile_version = int(changes.pop("profile_version"))
            for key, value in changes.items():
                setattr(sandbox.settings, key, value)
            self._json(200, {"settings": asdict(sandbox.settings)})
        elif path == "/_sandbox/reset" and method == "POST":
            sandbox.reset()
            self._json(200, {"status": "success"})
        else:
            self._json(404, {"status": "fail", "error": "unknown sandbox endpoint"})


def _query_params(query: str) -> dict[str, str]:
    """Split a query string without decoding values (cursors are decoded by the caller)."""
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            params[key] = value
    return params


_ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def _json_object(raw_body: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw_body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError("Invalid request body: a JSON object is required")  # noqa: TRY004
    return body


def _body_days(path: str, body: dict[str, Any]) -> tuple[int, int] | None:
    """The `from`/`to` days of a campaign list or message report body; None for the others.

    targets/list.json takes YYYYMMDD integers, message/report.json YYYYMMDD strings (as their
    docs type them).
    """
    if path not in (CAMPAIGNS_PATH, MESSAGE_REPORT_PATH):
        return None
    kind = int if path == CAMPAIGNS_PATH else str
    try:
        first, last = body["from"], body["to"]
        if not isinstance(first, kind) or not isinstance(last, kind) or isinstance(first, bool):
            raise TypeError  # noqa: TRY301
        days = int(first), int(last)
        if _parse_day(days[0]) > _parse_day(days[1]):
            raise ValueError  # noqa: TRY301
    except (KeyError, TypeError, ValueError):
        form = "integers" if kind is int else "strings"
        raise ValueError(f"Invalid from/to: YYYYMMDD {form}, from <= to") from None
    return days


def _parse_day(value: object) -> dt.date:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("day must be an int YYYYMMDD")
    return dt.datetime.strptime(str(value), "%Y%m%d").replace(tzinfo=dt.timezone.utc).date()


def _day_int(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


__all__ = ["Fault", "SandboxData", "SandboxServer", "SandboxSettings"]
