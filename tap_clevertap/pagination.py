"""The cursor paginator for CleverTap's two-step export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singer_sdk.pagination import BaseAPIPaginator
from typing_extensions import override

from tap_clevertap.errors import CursorLoopError
from tap_clevertap.wire import response_head

if TYPE_CHECKING:
    import requests


class CursorPaginator(BaseAPIPaginator[str | None]):
    """Follows an export's cursors.

    The token starts as None (the step-1 POST), then is the `cursor` the POST returned, then
    each page's `next_cursor`; no `next_cursor` means the export is done. Cursors are kept as
    CleverTap sent them (already percent-encoded). A cursor seen before means the server is
    sending us around in a circle: stop rather than loop or truncate.
    """

    def __init__(self) -> None:
        """Start before step 1: no cursor yet."""
        super().__init__(None)
        self._seen: set[str] = set()

    @override
    def get_next(self, response: requests.Response) -> str | None:
        body = response_head(response)
        token = body.get("cursor") if self.current_value is None else body.get("next_cursor")
        if not token:
            return None
        if token in self._seen:
            raise CursorLoopError(
                f"CleverTap returned a cursor already used on page {self.count} of this export"
            )
        self._seen.add(token)
        return str(token)

    @override
    def has_more(self, response: requests.Response) -> bool:
        body = response_head(response)
        key = "cursor" if self.current_value is None else "next_cursor"
        return bool(body.get(key))

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        # The POST returns a cursor and no records, and a page may be empty while more
        # follow: keep going as long as there is a cursor to follow.
        return self.has_more(response)
