"""Pause waits to the exact instant: relative, nearest time of day, date, weekday + time, active hours."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from herald.domain.scenario_waits import (
    DateWait,
    RelativeWait,
    TimeOfDayWait,
    Wait,
    WeekdayWait,
    WindowWait,
    always_waits,
    wait_until,
    wait_zone,
)
from herald.domain.schedules import Weekday


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("wait", "reached", "zone", "due"),
    [
        (RelativeWait(days=1, hours=2, minutes=3), "2026-03-02 09:00", "UTC", "2026-03-03 11:03"),
        (RelativeWait(), "2026-03-02 09:00", "UTC", "2026-03-02 09:00"),
        # the nearest 10:00 in Moscow (UTC+3) after 09:00 UTC (12:00 there) is tomorrow's
        (TimeOfDayWait(time=time(10, 0)), "2026-03-02 09:00", "Europe/Moscow", "2026-03-03 07:00"),
        (TimeOfDayWait(time=time(13, 0)), "2026-03-02 09:00", "Europe/Moscow", "2026-03-02 10:00"),
        # reaching the time exactly waits a day: "the next" is strictly later
        (TimeOfDayWait(time=time(9, 0)), "2026-03-02 09:00", "UTC", "2026-03-03 09:00"),
        # 02:30 does not exist in Berlin on 2026-03-29: the first instant after the gap (03:00 CEST)
        (TimeOfDayWait(time=time(2, 30)), "2026-03-28 12:00", "Europe/Berlin", "2026-03-29 01:00"),
        # 2026-03-02 is a Monday; the nearest Sunday 11:30
        (
            WeekdayWait(weekday=Weekday.SUNDAY, time=time(11, 30)),
            "2026-03-02 09:00",
            "UTC",
            "2026-03-08 11:30",
        ),
        (WeekdayWait(weekday=Weekday.MONDAY, time=time(8, 0)), "2026-03-02 09:00", "UTC", "2026-03-09 08:00"),
        (
            WeekdayWait(weekday=Weekday.MONDAY, time=time(10, 0)),
            "2026-03-02 09:00",
            "UTC",
            "2026-03-02 10:00",
        ),
        (DateWait(at=datetime(2026, 5, 1, 10, 0)), "2026-03-02 09:00", "Europe/Moscow", "2026-05-01 07:00"),
        (
            DateWait(at=datetime.fromisoformat("2026-05-01T10:00:00+02:00")),
            "2026-03-02 09:00",
            "Europe/Moscow",
            "2026-05-01 08:00",
        ),
        # a date that has passed lets profiles through: due before they arrived
        (DateWait(at=datetime(2026, 1, 1, 0, 0)), "2026-03-02 09:00", "UTC", "2026-01-01 00:00"),
        # active hours 09:00–21:00: inside goes on at once, outside waits for the next opening
        (WindowWait(start=time(9), end=time(21)), "2026-03-02 12:00", "UTC", "2026-03-02 12:00"),
        (WindowWait(start=time(9), end=time(21)), "2026-03-02 22:00", "UTC", "2026-03-03 09:00"),
        (WindowWait(start=time(9), end=time(21)), "2026-03-02 07:00", "UTC", "2026-03-02 09:00"),
        (WindowWait(start=time(9), end=time(21)), "2026-03-02 21:00", "UTC", "2026-03-03 09:00"),
        # a window over midnight
        (WindowWait(start=time(21), end=time(9)), "2026-03-02 23:30", "UTC", "2026-03-02 23:30"),
        (WindowWait(start=time(21), end=time(9)), "2026-03-02 12:00", "UTC", "2026-03-02 21:00"),
    ],
)
def test_a_pause_waits_until_the_exact_instant(wait: Wait, reached: str, zone: str, due: str) -> None:
    assert wait_until(wait, utc(reached), zone) == utc(due)


def test_the_profiles_time_zone_is_used_when_asked_for_and_known() -> None:
    assert wait_zone(None, True, "Asia/Tokyo", "UTC") == "Asia/Tokyo"
    assert wait_zone("Europe/Moscow", True, None, "UTC") == "Europe/Moscow"
    assert wait_zone("Europe/Moscow", True, "Not/AZone", "UTC") == "Europe/Moscow"
    assert wait_zone(None, False, "Asia/Tokyo", "Europe/Berlin") == "Europe/Berlin"


@pytest.mark.parametrize(
    ("wait", "breaks"),
    [
        (RelativeWait(minutes=1), True),
        (RelativeWait(), False),
        (TimeOfDayWait(time=time(10)), True),
        (WeekdayWait(weekday=Weekday.FRIDAY, time=time(10)), True),
        (DateWait(at=datetime(2030, 1, 1)), False),
        (WindowWait(start=time(9), end=time(21)), False),
    ],
)
def test_only_pauses_that_always_wait_break_a_loop(wait: Wait, breaks: bool) -> None:
    assert always_waits(wait) is breaks
