"""Date windows and the bookmark: pure date arithmetic in the account's time zone.

CleverTap's `from`/`to` are whole days (YYYYMMDD ints, both inclusive) in the account's time
zone, so everything here works on local calendar days, never on instants.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from typing_extensions import override

ONE_DAY = dt.timedelta(days=1)


def day_int(day: dt.date) -> int:
    """2024-01-31 -> 20240131, CleverTap's wire form of a day."""
    return day.year * 10000 + day.month * 100 + day.day


def parse_day_int(value: int) -> dt.date:
    """20240131 -> 2024-01-31."""
    return dt.date(value // 10000, value // 100 % 100, value % 100)


def today_in(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """Today (or `now`'s day) in the IANA zone `timezone`."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return moment.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Window:
    """Days `first`..`last`, both inclusive: one export request."""

    first: dt.date
    last: dt.date

    @property
    def from_int(self) -> int:
        """The first day as CleverTap's YYYYMMDD int."""
        return day_int(self.first)

    @property
    def to_int(self) -> int:
        """The last day as CleverTap's YYYYMMDD int."""
        return day_int(self.last)

    @override
    def __str__(self) -> str:
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


def sync_range(
    *,
    start_date: dt.date,
    end_date: dt.date,
    bookmark: dt.date | None,
    lookback_days: int,
) -> tuple[dt.date, dt.date] | None:
    """The days a sync reads; None when there is nothing to read.

    From bookmark + 1 - lookback (never before start_date) to end_date.
    """
    first = start_date
    if bookmark is not None:
        first = max(start_date, bookmark + ONE_DAY - lookback_days * ONE_DAY)
    if first > end_date:
        return None
    return first, end_date


def split(first: dt.date, last: dt.date, window_days: int) -> list[Window]:
    """Consecutive windows of `window_days` days covering first..last, in order."""
    windows: list[Window] = []
    start = first
    while start <= last:
        end = min(last, start + (window_days - 1) * ONE_DAY)
        windows.append(Window(start, end))
        start = end + ONE_DAY
    return windows


def bookmark_after(window: Window, *, today: dt.date, previous: dt.date | None) -> dt.date | None:
    """The bookmark once `window` is fully emitted.

    Never past the last complete day (yesterday): events of today can still arrive, so a
    window that ends today is bookmarked as yesterday. Never moves backwards, as a lookback
    window ends before the existing bookmark.
    """
    candidate = min(window.last, today - ONE_DAY)
    if previous is not None and previous >= candidate:
        return previous
    return candidate
