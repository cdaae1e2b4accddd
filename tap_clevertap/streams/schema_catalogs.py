"""The project's schema catalogs: `event_schema` and `user_properties` (getSchema).

`GET /getSchema?type=events|userProperties` (no `/1/` prefix) also serves event discovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typing_extensions import override

from tap_clevertap.client import SCHEMA_PATH, CleverTapStream
from tap_clevertap.errors import CleverTapError
from tap_clevertap.schemas import CATALOG_SCHEMA

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterable

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context


class SchemaCatalogStream(CleverTapStream):
    """One record per getSchema item: its `name` (the key) and the whole `item` as sent.

    Full table: the whole catalog every run (CleverTap gives no change date).
    """

    path = SCHEMA_PATH
    primary_keys = ("name",)
    replication_key = None

    def __init__(
        self,
        tap: Tap,
        *,
        name: str,
        kind: str,
        request_slots: threading.BoundedSemaphore,
    ) -> None:
        """The stream `name` of getSchema's `kind` (`events` or `userProperties`)."""
        super().__init__(tap, name=name, schema=CATALOG_SCHEMA, request_slots=request_slots)
        self.kind = kind

    def schema_items(self) -> list[dict[str, Any]]:
        """The items of `GET /getSchema?type=<kind>`, this stream's kind.

        Raises:
            CleverTapError: the answer has no `<kind>` list of objects.
        """
        kind = self.kind
        items = self.fetch_body("GET", self.path, params={"type": kind}).get(kind)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise CleverTapError(
                f"CleverTap's getSchema answer has no {kind!r} list: check region/api_url, "
                "or set event_names to skip discovery"
            )
        return items

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        for item in self.schema_items():
            name = item.get("name")
            if isinstance(name, str) and name:  # the key; an item without one cannot land
                yield {"name": name, "item": item}
