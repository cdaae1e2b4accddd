"""The errors of the CleverTap conversation, and how each one ends a run.

A `CleverTapError` ends the run with one line (`one_line`) saying what happened and what to
do, and exit code 1. The others are retried or polled by the client and never reach the user
as such: `ExportNotReady` (`code` 2) is polled, `Throttled` and the SDK's `RetriableAPIError`
are retried.
"""

from __future__ import annotations

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError


class CleverTapError(FatalAPIError):
    """An error that ends the run with one line saying what happened and what to do."""

    where: str = ""

    def one_line(self) -> str:
        """The message on one line, prefixed with where it happened (stream, window)."""
        message = " ".join(str(self).split())
        return f"{self.where}: {message}" if self.where else message


class CredentialsRefused(CleverTapError):
    """HTTP 401/403: the account id, passcode or region is wrong. Never retried."""


class ExportRefused(CleverTapError):
    """CleverTap will not export this event.

    HTTP 400 with "Export not allowed for this event" (the Notification events, and others
    the project forbids) or "Invalid event : X" (a name the project does not have). The
    stream skips the event and the run goes on (see `Refusals`).
    """

    def __init__(self, event_name: str, reason: str) -> None:
        """The event refused and CleverTap's words."""
        super().__init__(f"CleverTap refused to export event {event_name!r}: {reason}")
        self.event_name = event_name
        self.reason = reason


class EventsRefused(CleverTapError):
    """Events named in the config were refused: the run ends non-zero after every stream."""


class CursorRejected(CleverTapError):
    """`code` 3 on a cursor (malformed or expired): the window must be requested again."""


class CursorLoopError(CleverTapError):
    """CleverTap handed back a cursor already followed in this export."""


class ExportWaitTimeout(CleverTapError):
    """An export was still being prepared after `export_wait_timeout` seconds."""


class RetriesExhausted(CleverTapError):
    """A request kept failing after `max_retries` retries."""


class FeatureNotEnabled(CleverTapError):
    """HTTP 403 naming a feature the account does not have (e.g. Content Blocks): skipped."""


class NoResultYet(Exception):
    """A campaign without a result yet (HTTP 409, or HTTP 500 saying so): skipped, not retried."""


class ExportNotReady(Exception):
    """`code` 2: the export is still being prepared; poll the same cursor again."""


class Throttled(RetriableAPIError):
    """HTTP 429 or `code` 1; `wait` is what the server asked for, if anything."""

    def __init__(self, message: str, response: requests.Response, wait: float | None) -> None:
        """Keep the wait the server asked for (Retry-After), if any."""
        super().__init__(message, response)
        self.wait = wait


class InvalidBody(ValueError):
    """A response body that is not a JSON object."""


def describe(exc: BaseException | None) -> str:
    """A short, secret-free reason: never the request (its headers carry the passcode)."""
    if isinstance(exc, RetriableAPIError):
        return str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}: connection failed or timed out"
    return type(exc).__name__ if exc else "unknown error"
