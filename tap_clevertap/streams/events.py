"""The event stream: all events of one CleverTap event name (Get Events API).

And their shaping: `event_name`, `event_time` and the deterministic `event_id` (its
canonical form is in `canonical`, its copy number in `copies`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from typing_extensions import override

from tap_clevertap.canonical import identity_array
from tap_clevertap.client import EVENTS_PATH
from tap_clevertap.copies import CopyCounter
from tap_clevertap.schemas import EVENT_SCHEMA, EXTRA_KEY, fold_unlisted, with_extra_columns
from tap_clevertap.streams.counts import DayTally, WindowRead
from tap_clevertap.streams.windowed import Collaborators, WindowedExportStream

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.windows import Window


_SECONDS = [f"{second:02d}+00:00" for second in range(60)]


class EventTimes:
    """`ts` (yyyyMMddHHmmss in the account's zone) -> ISO-8601 UTC text.

    The zone offset is looked up once per local minute (zone transitions fall on whole
    minutes), and the minute's UTC text is kept, so most events only append their second.
    """

    def __init__(self, timezone: str) -> None:
        """Times read in the IANA zone `timezone`."""
        self.zone = ZoneInfo(timezone)
        self._minutes: dict[int, str | None] = {}

    def utc_iso(self, ts: Any) -> str | None:
        """`ts` as ISO-8601 UTC text; None when it is not a valid yyyyMMddHHmmss integer."""
        if type(ts) is not int:
            return None
        second = ts % 100
        prefix = self._minutes.get(ts // 100, "")
        if prefix == "":
            prefix = self._minute_prefix(ts // 100)
        if prefix is None or second > 59:
            return self._slow(ts)
        return prefix + _SECONDS[second]

    def _minute_prefix(self, minute: int) -> str | None:
        if len(self._minutes) > 100_000:
            self._minutes.clear()
        utc = self._to_utc(minute * 100)
        # An offset with seconds (only in zones' distant past) cannot share a prefix.
        prefix = utc.isoformat()[:17] if utc is not None and utc.second == 0 else None
        self._minutes[minute] = prefix
        return prefix

    def _slow(self, ts: int) -> str | None:
        utc = self._to_utc(ts)
        return None if utc is None else utc.isoformat() + "+00:00"

    def _to_utc(self, ts: int) -> dt.datetime | None:
        try:
            local = dt.datetime(
                ts // 10**10,
                ts // 10**8 % 100,
                ts // 10**6 % 100,
                ts // 10**4 % 100,
                ts // 100 % 100,
                ts % 100,
            )
        except ValueError:
            return None
        # fold=0: a wall time that occurs twice (clocks going back) is read as the first.
        offset = local.replace(tzinfo=self.zone).utcoffset() or dt.timedelta(0)
        return local - offset


class EventShaper:
    """Adds `event_name`, `event_time` and `event_id` to the raw records of one window.

    A fresh shaper per attempt at a window, so that re-reading a window numbers copies again
    from 1 and every event gets the same id as before.
    """

    def __init__(
        self,
        event_name: str,
        times: EventTimes,
        *,
        fold_schema: Mapping[str, Any] | None = None,
    ) -> None:
        """A shaper for one attempt at one window of `event_name`."""
        self.event_name = event_name
        self.times = times
        self.copies = CopyCounter()
        self.fold_schema = fold_schema

    def shape_page(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`shape` for every record of a page, in place: the hot loop of the tap."""
        name = self.event_name
        utc_iso = self.times.utc_iso
        next_copy = self.copies.next_copy
        fold_schema = self.fold_schema
        sha256 = hashlib.sha256
        for raw in records:
            ts = raw.get("ts")
            identity = identity_array(name, raw)
            # JCS text of [event_name, objectId, ts, event_props, session_props, copy]
            first = sha256(identity[:-1] + b",1]").digest()
            copy = next_copy(ts, identity, first)
            raw["event_name"] = name
            raw["event_time"] = utc_iso(ts)
            raw["event_id"] = (
                first.hex() if copy == 1 else sha256(identity[:-1] + b",%d]" % copy).hexdigest()
            )
            if fold_schema is not None:
                fold_unlisted(raw, fold_schema, EXTRA_KEY)
        self.copies.settle()
        return records

    def shape(self, raw: dict[str, Any]) -> dict[str, Any]:
        """`shape_page` for one record."""
        return self.shape_page([raw])[0]


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
        self._tally: DayTally | None = None  # the current attempt's, when counts are on

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

    @property
    @override
    def read_after(self) -> dt.date | None:
        # The day after which event_counts has every count, if older than the bookmark.
        return self.counts.resume_before(self.name, self.bookmark)

    @override
    def new_shaper(self, context: Context, window: Window) -> EventShaper | DayTally:
        # A fresh shaper per attempt: copies are numbered from 1 again, ids do not change.
        shaper = EventShaper(self.event_name, self._times, fold_schema=self._fold_schema)
        if not self.counts.active:
            return shaper
        self._tally = DayTally(shaper)  # and the attempt's records are counted afresh
        return self._tally

    @override
    def window_done(self, window: Window, count: int) -> None:
        if self._tally is not None:
            read = WindowRead(self.name, self.event_name, window, self._tally.days)
            self.counts.window_read(read, self.bookmark)
            self._tally = None

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
