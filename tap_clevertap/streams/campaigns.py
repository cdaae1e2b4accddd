"""Campaigns, their results and the message reports: what a campaign did, to join events to.

Plain request/response endpoints (no cursor export) on the shared client (`CleverTapStream`:
auth, `fail` bodies, throttling, retries, request slots). All three are full table: a
scheduled date is not a change date, and a message's counts keep changing after its send.

- `campaigns`: `POST /1/targets/list.json` for each window of `campaign_window_days` from
  `start_date` to today + `campaign_lookahead_days` (CleverTap matches campaigns on their
  scheduled start, which can lie in the future).
- `campaign_reports`: `POST /1/targets/result.json` for each campaign listed: the SDK's child
  stream of `campaigns`, handed a window's campaigns at a time and asking for their results
  `max_concurrent_requests` at once.
- `message_reports`: `POST /1/message/report.json` for each window of
  `message_report_window_days` from `start_date` to today.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from tap_clevertap.client import (
    CAMPAIGN_RESULT_PATH,
    CAMPAIGNS_PATH,
    MESSAGE_REPORT_PATH,
    CleverTapStream,
)
from tap_clevertap.config import parse_date
from tap_clevertap.discovery import (
    CAMPAIGN_REPORTS_STREAM,
    CAMPAIGNS_STREAM,
    MESSAGE_REPORTS_STREAM,
)
from tap_clevertap.errors import (
    NoResultYet,
    RetriesExhausted,
    describe,
)
from tap_clevertap.schemas import (
    CAMPAIGN_REPORT_SCHEMA,
    CAMPAIGN_SCHEMA,
    MESSAGE_REPORT_SCHEMA,
    folded,
)
from tap_clevertap.windows import Window, split, today_in
from tap_clevertap.wire import error_text, items_of

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterable

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context


class CampaignStream(CleverTapStream):
    """The campaigns created through the API, scheduled from `start_date` to the look-ahead."""

    name = CAMPAIGNS_STREAM
    record_schema = CAMPAIGN_SCHEMA
    path = CAMPAIGNS_PATH
    primary_keys = ("id",)
    replication_key = None
    # The campaigns of the window just listed, handed to the child stream with the window's
    # last record (`generate_child_contexts`).
    _listed_window: dict[str, Any] | None = None

    def windows(self) -> list[Window]:
        """The windows listed this run: `start_date` to today + the look-ahead."""
        today = today_in(self.config["timezone"])
        last = today + dt.timedelta(days=self.config["campaign_lookahead_days"])
        return split(
            parse_date(self.config["start_date"]), last, self.config["campaign_window_days"]
        )

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        windows = self.windows()
        self.log(
            "%s: listing campaigns scheduled %s..%s in %d window(s)",
            self.name,
            windows[0].first,
            windows[-1].last,
            len(windows),
        )
        for window in windows:
            with self.naming_failures(f"window {window}"):
                body = self.fetch_body(
                    "POST", self.path, data={"from": window.from_int, "to": window.to_int}
                )
                targets = [t for t in items_of(body, "targets") if t.get("id") is not None]
            for number, target in enumerate(targets, start=1):
                if number == len(targets):
                    self._listed_window = {
                        "window": str(window),
                        "campaign_ids": [t["id"] for t in targets],
                    }
                yield folded(target, self.schema)
        for child in self.child_streams:
            if isinstance(child, CampaignReportStream):
                child.log_skipped()

    @override
    def generate_child_contexts(
        self, record: dict[str, Any], context: Context | None
    ) -> Iterable[Context | None]:
        """One context per window (its campaign ids), with the window's last campaign."""
        listed, self._listed_window = self._listed_window, None
        if listed is not None:
            yield listed


class CampaignReportStream(CleverTapStream):
    """The result of each campaign listed; campaigns without one yet are skipped and counted.

    "No result yet" comes three ways: HTTP 409 (documented), HTTP 500 "This target has no
    result as of yet" and HTTP 200 with an `error` and no `result` (both seen live). The
    first two are recognised before the retry policy would spend its tries on them.
    """

    parent_stream_type = CampaignStream
    name = CAMPAIGN_REPORTS_STREAM
    record_schema = CAMPAIGN_REPORT_SCHEMA
    path = CAMPAIGN_RESULT_PATH
    primary_keys = ("id",)
    replication_key = None

    def __init__(self, tap: Tap, *, request_slots: threading.BoundedSemaphore) -> None:
        """The `campaign_reports` stream, a child of `campaigns`."""
        super().__init__(tap, request_slots=request_slots)
        # Full table: the state holds nothing per window of campaigns.
        self.state_partitioning_keys = []
        self.asked = 0
        self.without_result = 0

    @override
    def validate_response(self, response: requests.Response) -> None:
        if _says_no_result(response):
            raise NoResultYet(response.status_code)
        super().validate_response(response)

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        ids: list[int] = list((context or {}).get("campaign_ids") or [])
        for campaign_id, result in zip(ids, self.concurrently(self._result_of, ids), strict=True):
            self.asked += 1
            if result is None:
                self.without_result += 1
                continue
            yield folded({**result, "id": campaign_id}, self.schema)

    def _result_of(self, campaign_id: int) -> dict[str, Any] | None:
        """The campaign's `result`, or None when it has none yet (each in a pool thread)."""
        with self.naming_failures(f"campaign {campaign_id}"):
            try:
                body = self.fetch_body("POST", self.path, data={"id": campaign_id})
            except NoResultYet:
                return None
        result = body.get("result")
        return result if isinstance(result, dict) else None

    def log_skipped(self) -> None:
        """One INFO line: the campaigns of this run that had no result yet."""
        self.log(
            "%s: %d campaign(s) asked, %d without a result yet (not completed, or scheduled "
            "later): skipped",
            self.name,
            self.asked,
            self.without_result,
        )


def _says_no_result(response: requests.Response) -> bool:
    # Any other 500 (an HTML error page too) is an ordinary server error, retried.
    status = response.status_code
    return status == 409 or (status == 500 and "no result" in error_text(response))


class MessageReportStream(CleverTapStream):
    """Every message (API or dashboard campaign) started from `start_date` to today.

    An HTTP 500 (seen on a live account) that outlasts the retries ends this stream with one
    WARNING naming the window; the run goes on.
    """

    name = MESSAGE_REPORTS_STREAM
    record_schema = MESSAGE_REPORT_SCHEMA
    path = MESSAGE_REPORT_PATH
    primary_keys = ("message_id",)
    replication_key = None
    _ended_early = False  # a window kept failing: the stream ended there

    @property
    @override
    def incomplete(self) -> bool:
        return self._ended_early

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        today = today_in(self.config["timezone"])
        start = parse_date(self.config["start_date"])
        if start > today:
            return
        unkeyed = 0
        for window in split(start, today, self.config["message_report_window_days"]):
            # Strings, as CleverTap's page types them (targets/list.json takes integers).
            data = {"from": str(window.from_int), "to": str(window.to_int)}
            try:
                with self.naming_failures(f"window {window}"):
                    messages = items_of(self.fetch_body("POST", self.path, data=data), "messages")
            except RetriesExhausted as exc:
                self._ended_early = True
                self.log(
                    "%s: window %s: CleverTap kept failing after %d tries (%s); this stream "
                    "ends here, without its windows from %s on; the other streams go on",
                    self.name,
                    window,
                    self.backoff_max_tries(),
                    describe(exc.__cause__),
                    window.first,
                    level=logging.WARNING,
                )
                return
            for message in messages:
                # The live key has a space: `"message id"`.
                message_id = message.pop("message id", None)
                if message_id is None:
                    message_id = message.get("message_id")
                if message_id is None:
                    unkeyed += 1
                    continue
                message["message_id"] = message_id
                yield folded(message, self.schema)
        if unkeyed:
            self.log(
                "%s: %d message(s) without a message id skipped: they cannot be keyed",
                self.name,
                unkeyed,
                level=logging.WARNING,
            )
