"""Content blocks (incremental) and category (subscription) groups (full table).

- `content_blocks`: `GET /v1/contentBlock/list` (no `/1/`), page by page (`pageNumber`,
  `pageSize` 100, until a page is short). The first run reads every block, whatever its age
  (blocks are configuration that events are joined to, not events). Later runs ask only for
  the blocks updated, or created, since the bookmark less `CONTENT_BLOCK_OVERLAP`: a block
  never edited has no `updatedAt`, so `updatedFrom` alone would miss new blocks. The
  bookmark (`modified_at`: `updatedAt`, else `createdAt`) is the SDK's, kept as a progress
  marker until the whole page sequence is read (`is_sorted = False`).
- `category_groups`: `GET /category-groups` (no `/1/`), the `list` array.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from singer_sdk.pagination import PageNumberPaginator
from singer_sdk.streams.rest import HTTPRequest, PageContext
from typing_extensions import override

from tap_clevertap.client import CATEGORY_GROUPS_PATH, CONTENT_BLOCKS_PATH, CleverTapStream
from tap_clevertap.discovery import CATEGORY_GROUPS_STREAM, CONTENT_BLOCKS_STREAM
from tap_clevertap.errors import FeatureNotEnabled
from tap_clevertap.schemas import CATEGORY_GROUP_SCHEMA, CONTENT_BLOCK_SCHEMA, folded
from tap_clevertap.wire import error_text, items_of, response_body

if TYPE_CHECKING:
    from collections.abc import Iterable

    import requests
    from singer_sdk.helpers.types import Context

CONTENT_BLOCK_PAGE_SIZE = 100  # the largest page CleverTap serves
# Read again before the bookmark: blocks saved in the same instant as the last one read, or
# whose save was not yet visible when it was read.
CONTENT_BLOCK_OVERLAP = dt.timedelta(minutes=5)


def utc_time(value: object) -> dt.datetime | None:
    """An ISO-8601 time as sent (`2024-04-01T12:00:00.000Z`) in UTC; None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # no offset: the zone is unknown
    return moment.astimezone(dt.timezone.utc)


def iso_utc(moment: dt.datetime | None) -> str | None:
    """A UTC time as the records carry it: one fixed form, so that bookmarks sort as text."""
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def clevertap_millis(moment: dt.datetime) -> str:
    """A time as content-block filters take it: ISO 8601 UTC with milliseconds and `Z`.

    CleverTap refuses the form without milliseconds ("Enter date in ISO format").
    """
    utc = moment.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class ContentBlockPages(PageNumberPaginator):
    """Pages 1, 2, ... until one holds fewer than a full page of blocks."""

    def __init__(self, page_size: int) -> None:
        """From page 1; a page of `page_size` blocks may be followed by another."""
        super().__init__(1)
        self.page_size = page_size

    @override
    def has_more(self, response: requests.Response) -> bool:
        return len(response_body(response).get("contentBlocks") or []) >= self.page_size


class ContentBlockStream(CleverTapStream):
    """Every content block, then those updated or created since the bookmark."""

    name = CONTENT_BLOCKS_STREAM
    record_schema = CONTENT_BLOCK_SCHEMA
    path = CONTENT_BLOCKS_PATH
    primary_keys = ("id",)
    replication_key = "modified_at"
    # The bookmark moves only once the whole page sequence has been read.
    is_sorted = False

    @property
    def bookmark(self) -> dt.datetime | None:
        """The `modified_at` of the last whole run, from the state; None without one."""
        if self.stream_state.get("replication_key") != self.replication_key:
            return None
        return utc_time(self.stream_state.get("replication_key_value"))

    def filters(self) -> list[dict[str, str]]:
        """The page sequences of this run: everything, or what changed since the bookmark."""
        bookmark = self.bookmark
        if bookmark is None:
            return [{}]
        since = clevertap_millis(bookmark - CONTENT_BLOCK_OVERLAP)
        return [{"updatedFrom": since}, {"createdAtFrom": since}]

    @override
    def get_new_paginator(self) -> ContentBlockPages:
        return ContentBlockPages(CONTENT_BLOCK_PAGE_SIZE)

    @override
    def get_http_request(self, *, page: PageContext[int]) -> HTTPRequest:
        params: dict[str, Any] = {
            "pageNumber": page.next_page_token,
            "pageSize": CONTENT_BLOCK_PAGE_SIZE,
            **(page.stream_context or {}),
        }
        return HTTPRequest(
            url=self.url_base + self.path, method="GET", params=params, headers=self.http_headers
        )

    @override
    def validate_response(self, response: requests.Response) -> None:
        if response.status_code == 403 and "enabled" in error_text(response):
            raise FeatureNotEnabled(
                "Content Blocks isn't enabled on this CleverTap account (HTTP 403)"
            )
        super().validate_response(response)

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        return items_of(response_body(response), "contentBlocks")

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        seen: set[object] = set()
        for query in self.filters():
            self.log("%s: reading %s", self.name, _describe(query))
            try:
                with self.naming_failures(_describe(query)):
                    for block in self.request_records(query):
                        if block.get("id") is None or block["id"] in seen:
                            continue  # unkeyed, or both updated and created since
                        seen.add(block["id"])
                        yield self.shape(block)
            except FeatureNotEnabled as exc:
                self.log(
                    "%s: %s: skipped; the other streams go on",
                    self.name,
                    exc,
                    level=logging.WARNING,
                )
                return

    def shape(self, block: dict[str, Any]) -> dict[str, Any]:
        """The block as sent, with its times parsed and `modified_at` (the replication key)."""
        created = utc_time(block.get("createdAt"))
        updated = utc_time(block.get("updatedAt"))
        block["created_at"] = iso_utc(created)
        block["updated_at"] = iso_utc(updated)
        block["modified_at"] = iso_utc(updated or created)
        return folded(block, self.schema)


def _describe(query: dict[str, str]) -> str:
    if not query:
        return "every block"
    (name, value), *_ = query.items()
    return f"blocks with {name}={value}"


class CategoryGroupStream(CleverTapStream):
    """The account's subscription (category) groups, whole every run."""

    name = CATEGORY_GROUPS_STREAM
    record_schema = CATEGORY_GROUP_SCHEMA
    path = CATEGORY_GROUPS_PATH
    primary_keys = ("key",)
    replication_key = None

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        with self.naming_failures("GET /category-groups"):
            groups = items_of(self.fetch_body("GET", self.path), "list")
        for group in groups:
            if group.get("key") is not None:
                yield folded(group, self.schema)
