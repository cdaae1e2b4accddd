"""The profiles stream: the users who did the configured events, window by window."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from tap_clevertap.client import PROFILES_PATH
from tap_clevertap.discovery import PROFILES_STREAM
from tap_clevertap.schemas import PROFILE_SCHEMA
from tap_clevertap.streams.windowed import Collaborators, WindowedExportStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.windows import Window

CLEVERTAP_ID = "clevertap_id"


def clevertap_id(record: dict[str, Any]) -> str | None:
    """The profile's key: its `objectId`, else its first device's (`platformInfo`).

    Top-level `objectId` is missing on some real profiles; the CleverTap ID is device
    scoped, so a person with two devices has two (`identity` is the person).
    """
    top = record.get("objectId")
    if isinstance(top, str) and top:
        return top
    devices = record.get("platformInfo")
    if isinstance(devices, list):
        for device in devices:
            if isinstance(device, dict):
                object_id = device.get("objectId")
                if isinstance(object_id, str) and object_id:
                    return object_id
    return None


class ProfileShaper:
    """Adds `clevertap_id` and `window_to` to a window's profiles; drops those without an ID."""

    def __init__(self, window: Window, on_skipped: Callable[[int], None]) -> None:
        """Profiles of `window`; `on_skipped(n)` hears of each page's profiles without an ID."""
        self.window_to = window.to_int
        self.on_skipped = on_skipped

    def shape_page(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The page's profiles with their key, in order; those without one are left out."""
        shaped = []
        for record in records:
            key = clevertap_id(record)
            if key is None:
                continue
            record[CLEVERTAP_ID] = key
            record["window_to"] = self.window_to
            shaped.append(record)
        if len(shaped) < len(records):
            self.on_skipped(len(records) - len(shaped))
        return shaped


class ProfileStream(WindowedExportStream):
    """The profiles of the users who did `profile_event_names`, incremental by activity.

    Each window asks Get User Profiles for each event (a user appears once per event per
    window; targets upsert on `clevertap_id`). `window_to` is the replication key, so that
    catalogs show the stream as INCREMENTAL; the bookmark moves per whole window, as for
    events.
    """

    path = PROFILES_PATH
    replication_key = "window_to"
    primary_keys = (CLEVERTAP_ID,)

    def __init__(self, tap: Tap, *, collaborators: Collaborators) -> None:
        """The profiles stream, with the tap's shared collaborators."""
        super().__init__(
            tap, name=PROFILES_STREAM, schema=PROFILE_SCHEMA, collaborators=collaborators
        )
        self._skipped_in_window = 0

    @property
    @override
    def event_names(self) -> list[str]:
        return list(self.config.get("profile_event_names") or [])

    @property
    @override
    def export_flags(self) -> dict[str, bool]:
        return {
            "app": bool(self.config.get("profiles_include_app_fields", True)),
            "events": bool(self.config.get("profiles_include_event_summary", True)),
            "profile": bool(self.config.get("profiles_include_profile_fields", True)),
        }

    @override
    def new_shaper(self, context: Context, window: Window) -> ProfileShaper:
        return ProfileShaper(window, self.count_skipped)

    def count_skipped(self, count: int) -> None:
        """Profiles without any objectId seen in the current window."""
        self._skipped_in_window += count

    @override
    def window_done(self, window: Window, count: int) -> None:
        if self._skipped_in_window:
            self.log(
                "%s: window %s: %d profile(s) without any objectId (top-level or in "
                "platformInfo) skipped: they cannot be keyed",
                self.name,
                window,
                self._skipped_in_window,
                level=logging.WARNING,
            )
        self._skipped_in_window = 0
