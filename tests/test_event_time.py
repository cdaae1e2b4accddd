"""`event_time`: CleverTap's `ts` (account time zone) as UTC, around clock changes too."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from tap_clevertap.streams.events import EventTimes

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("zone", "ts", "utc"),
    [
        ("UTC", 20240101000000, "2024-01-01T00:00:00+00:00"),
        ("Asia/Kolkata", 20240101053000, "2024-01-01T00:00:00+00:00"),
        ("America/New_York", 20240310013000, "2024-03-10T06:30:00+00:00"),  # EST
        ("America/New_York", 20240310033000, "2024-03-10T07:30:00+00:00"),  # EDT
        ("America/New_York", 20241103013000, "2024-11-03T05:30:00+00:00"),  # first 1:30
        ("Asia/Kathmandu", 20240615120000, "2024-06-15T06:15:00+00:00"),
    ],
)
def test_event_time_reads_ts_in_the_account_zone(zone: str, ts: int, utc: str) -> None:
    assert EventTimes(zone).utc_iso(ts) == utc


def test_event_time_is_null_for_a_malformed_ts() -> None:
    times = EventTimes("UTC")
    assert times.utc_iso(20241399000000) is None
    assert times.utc_iso("20240101000000") is None


@pytest.mark.parametrize(
    "zone", ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]
)
def test_event_time_matches_zoneinfo_for_every_minute_of_transition_days(zone: str) -> None:
    times = EventTimes(zone)
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    days = [
        dt.date(2024, 3, 10),
        dt.date(2024, 3, 31),
        dt.date(2024, 4, 7),
        dt.date(2024, 10, 6),
        dt.date(2024, 11, 3),
    ]
    for day in days:
        for minute in range(0, 24 * 60, 7):
            local = dt.datetime.combine(day, dt.time()) + dt.timedelta(
                minutes=minute, seconds=rng.randrange(60)
            )
            ts = int(local.strftime("%Y%m%d%H%M%S"))
            expected = (
                local - (local.replace(tzinfo=tz).utcoffset() or dt.timedelta())
            ).isoformat() + "+00:00"
            assert times.utc_iso(ts) == expected
