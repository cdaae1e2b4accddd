"""Date windows and bookmarks."""

from __future__ import annotations

import datetime as dt

import pytest

from tap_clevertap.windows import (
    Window,
    bookmark_after,
    day_int,
    parse_day_int,
    split,
    sync_range,
    today_in,
)

pytestmark = pytest.mark.unit

D = dt.date


def test_day_ints_round_trip() -> None:
    assert day_int(D(2024, 2, 29)) == 20240229
    assert parse_day_int(20240229) == D(2024, 2, 29)


def test_sync_range_without_state_starts_at_start_date() -> None:
    span = sync_range(
        start_date=D(2024, 1, 1), end_date=D(2024, 1, 7), bookmark=None, lookback_days=1
    )
    assert span == (D(2024, 1, 1), D(2024, 1, 7))


def test_sync_range_resumes_after_bookmark_minus_lookback() -> None:
    span = sync_range(
        start_date=D(2024, 1, 1), end_date=D(2024, 1, 7), bookmark=D(2024, 1, 5), lookback_days=1
    )
    assert span == (D(2024, 1, 5), D(2024, 1, 7))
    span = sync_range(
        start_date=D(2024, 1, 1), end_date=D(2024, 1, 7), bookmark=D(2024, 1, 5), lookback_days=0
    )
    assert span == (D(2024, 1, 6), D(2024, 1, 7))


def test_sync_range_never_before_start_nor_after_end() -> None:
    span = sync_range(
        start_date=D(2024, 1, 3), end_date=D(2024, 1, 7), bookmark=D(2024, 1, 2), lookback_days=9
    )
    assert span == (D(2024, 1, 3), D(2024, 1, 7))
    assert (
        sync_range(
            start_date=D(2024, 1, 1),
            end_date=D(2024, 1, 7),
            bookmark=D(2024, 1, 7),
            lookback_days=0,
        )
        is None
    )


def test_split_covers_every_day_once_in_order() -> None:
    windows = split(D(2024, 1, 30), D(2024, 2, 5), 3)
    assert windows == [
        Window(D(2024, 1, 30), D(2024, 2, 1)),
        Window(D(2024, 2, 2), D(2024, 2, 4)),
        Window(D(2024, 2, 5), D(2024, 2, 5)),
    ]
    assert (windows[0].from_int, windows[0].to_int) == (20240130, 20240201)
    assert str(windows[2]) == "2024-02-05"


def test_bookmark_stops_at_yesterday_and_never_moves_back() -> None:
    today = D(2024, 1, 10)
    assert bookmark_after(Window(D(2024, 1, 8), D(2024, 1, 8)), today=today, previous=None) == D(
        2024, 1, 8
    )
    assert bookmark_after(Window(D(2024, 1, 9), D(2024, 1, 10)), today=today, previous=None) == D(
        2024, 1, 9
    )
    assert bookmark_after(
        Window(D(2024, 1, 5), D(2024, 1, 5)), today=today, previous=D(2024, 1, 8)
    ) == D(2024, 1, 8)


def test_today_is_the_account_zone_day() -> None:
    moment = dt.datetime(2024, 1, 1, 20, 0, tzinfo=dt.timezone.utc)
    assert today_in("UTC", moment) == D(2024, 1, 1)
    assert today_in("Asia/Kolkata", moment) == D(2024, 1, 2)
    assert today_in("America/Los_Angeles", moment) == D(2024, 1, 1)
