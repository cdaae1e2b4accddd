"""The event stream: all events of one CleverTap event name (Get Events API)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from typing_extensions import override

from tap_clevertap.client import EVENTS_PATH
from tap_clevertap.records import EventTimes, RecordShaper
from tap_clevertap.schemas import EVENT_SCHEMA, with_extra_columns
from tap_clevertap.streams.windowed import Collaborators, WindowedExportStream

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.windows import Window


class EventStream(WindowedExportStream):
    """All events of one CleverTap event name, incremental by day.

    `ts` is named as the replication key only so that catalogs show the stream as
    INCREMENTAL: the bookmark is a day (see `WindowedExportStream`).
    """

    path = EVENTS_PATH
    replication_key = "ts"
    primary_keys = ("event_id",)

    def __init__(
        self, tap: Tap, event_name: str, *, stream_name: str, collaborators: Collaborators
    ) -> None:
        """The stream `stream_name` of `event_name`, with the tap's shared collaborators."""
        flattened = bool(tap.config.get("flattening_enabled")) and bool(
            tap.config.get("flattening_max_depth")
        )
        schema = with_extra_columns(EVENT_SCHEMA) if flattened else EVENT_SCHEMA
        super().__init__(tap, name=stream_name, schema=schema, collaborators=collaborators)
        self.event_name = event_name
        self._times = EventTimes(self.config["timezone"])
        # Flattened output can only carry declared keys: fold the others into EXTRA_KEY.
        self._fold_schema = schema if flattened else None

    @property
    @override
    def event_names(self) -> list[str]:
        return [self.event_name]

    @property
    @override
    def export_flags(self) -> dict[str, bool]:
        return {
            "app": bool(self.config.get("include_app_fields", False)),
            "events": bool(self.config.get("include_event_summary", False)),
            "profile": bool(self.config.get("include_profile_fields", False)),
        }

    @override
    def new_shaper(self, context: Context, window: Window) -> RecordShaper:
        # A fresh shaper per attempt: copies are numbered from 1 again, ids do not change.
        return RecordShaper(
            self.event_name,
            self._times,
            fold_schema=self._fold_schema,
        )

    @override
    def stream_done(self, windows: list[Window], total: int) -> None:
        if total == 0:
            self.log(
                "%s: CleverTap returned no %r events from %s to %s; if that is unexpected, "
                "check the event name's exact spelling (names are case-sensitive)",
                self.name,
                self.event_name,
                windows[0].first,
                windows[-1].last,
                level=logging.WARNING,
            )
