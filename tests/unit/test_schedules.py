"""Schedules: each plan's runs (month ends, leap years, Nth weekdays, DST), checks, profile time zones."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest

from herald.domain.errors import ValidationFailed
from herald.domain.schedules import (
    SCHEDULE_ADAPTER,
    DailySchedule,
    DailyTimesSchedule,
    OnceSchedule,
    Run,
    Schedule,
    Weekday,
    WeekdaysSchedule,
    WeekdaysTimesSchedule,
    check_schedule,
    every_n_hours,
    local_run_instant,
    next_runs,
    pending_runs,
    profile_due_at,
)

UTC = dt.UTC


def plan(**fields: Any) -> Schedule:
    """A schedule parsed the way the API and the event store parse it."""
    return SCHEDULE_ADAPTER.validate_python(fields)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_midnight(zone: str, year: int, month: int, day: int) -> dt.datetime:
    """The instant `zone`'s day starts, as UTC."""
    return dt.datetime(year, month, day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def bad(name: str, path: str, *extra: str, **body: Any) -> Any:
    """A table row: a schedule body, the path its error names (and words of its reason)."""
    return pytest.param(body, path, *extra, id=name)


def walls(runs: list[dt.datetime], zone: str) -> list[str]:
    return [run.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") for run in runs]


# --- parsing -----------------------------------------------------------------------------------


def test_every_kind_parses_and_round_trips_through_json() -> None:
    bodies: list[dict[str, Any]] = [
        {"kind": "daily", "time": "10:00"},
        {"kind": "daily_times", "hours": [10, 13, 16], "minutes": [0]},
        {"kind": "once", "date": "2020-06-08", "time": "10:00", "timezone": "Europe/Moscow"},
        {"kind": "date_times", "date": "2020-06-13", "hours": [10, 13, 16]},
        {"kind": "weekdays", "time": "10:00", "weekdays": ["tuesday"], "months": [6, 7, 8], "order": "third"},
        {"kind": "weekdays_times", "hours": [16], "minutes": [20], "weekdays": ["wednesday"]},
        {"kind": "month_days", "time": "10:00", "days": [8, 13, 16], "months": [6, 7, 8]},
        {"kind": "month_days_times", "hours": [16], "minutes": [20], "days": [8], "deactivate_after": None},
    ]
    for body in bodies:
        schedule = plan(**body)
        assert schedule.kind == body["kind"]
        stored = SCHEDULE_ADAPTER.dump_python(schedule, mode="json")
        assert SCHEDULE_ADAPTER.validate_python(stored) == schedule


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "hourly", "time": "10:00"},  # no such plan
        {"kind": "daily", "time": "24:00"},
        {"kind": "daily", "time": "10:00", "colour": "red"},  # extra fields are refused
        {"kind": "weekdays", "time": "10:00", "weekdays": ["funday"]},
        {"kind": "weekdays", "time": "10:00", "weekdays": ["monday"], "order": "sixth"},
        {"kind": "once", "date": "2021-02-30", "time": "10:00"},
        {"kind": "daily_times", "hours": ["10"]},  # numbers, not strings
    ],
)
def test_malformed_bodies_are_refused_by_the_model(body: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        plan(**body)


def test_schedules_are_frozen() -> None:
    schedule = DailySchedule(time=dt.time(10, 0))
    with pytest.raises(pydantic.ValidationError):
        schedule.time = dt.time(11, 0)  # type: ignore[misc]


def test_hour_presets_fill_the_hours() -> None:
    assert every_n_hours(1) == tuple(range(24))
    assert every_n_hours(2) == (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22)
    assert every_n_hours(3) == (0, 3, 6, 9, 12, 15, 18, 21)
    assert every_n_hours(4) == (0, 4, 8, 12, 16, 20)
    assert every_n_hours(6) == (0, 6, 12, 18)
    with pytest.raises(ValueError):
        every_n_hours(5)


# --- next runs ---------------------------------------------------------------------------------

NEXT_RUNS: list[tuple[str, dict[str, Any], dt.datetime, int, str, list[str]]] = [
    (
        "daily, strictly after",
        {"kind": "daily", "time": "09:00"},
        utc(2024, 1, 1, 9, 0),
        3,
        "UTC",
        ["2024-01-02 09:00 UTC", "2024-01-03 09:00 UTC", "2024-01-04 09:00 UTC"],
    ),
    (
        "daily in the account's zone",
        {"kind": "daily", "time": "10:00"},
        utc(2024, 1, 1),
        2,
        "Europe/Moscow",
        ["2024-01-01 10:00 MSK", "2024-01-02 10:00 MSK"],
    ),
    (
        "daily across the year end",
        {"kind": "daily", "time": "23:30"},
        utc(2024, 12, 30, 23, 31),
        2,
        "UTC",
        ["2024-12-31 23:30 UTC", "2025-01-01 23:30 UTC"],
    ),
    (
        "several times a day: hours × minutes",
        {"kind": "daily_times", "hours": [16, 10, 13], "minutes": [30, 0]},
        utc(2024, 5, 1, 13, 0),
        5,
        "UTC",
        [
            "2024-05-01 13:30 UTC",
            "2024-05-01 16:00 UTC",
            "2024-05-01 16:30 UTC",
            "2024-05-02 10:00 UTC",
            "2024-05-02 10:30 UTC",
        ],
    ),
    (
        "every sixth hour preset",
        {"kind": "daily_times", "hours": list(every_n_hours(6)), "minutes": [15]},
        utc(2024, 5, 1, 7, 0),
        4,
        "UTC",
        ["2024-05-01 12:15 UTC", "2024-05-01 18:15 UTC", "2024-05-02 00:15 UTC", "2024-05-02 06:15 UTC"],
    ),
    (
        "once, the guide's example",
        {"kind": "once", "date": "2020-06-08", "time": "10:00"},
        utc(2020, 6, 1),
        12,
        "Europe/Moscow",
        ["2020-06-08 10:00 MSK"],
    ),
    (
        "once, already run",
        {"kind": "once", "date": "2020-06-08", "time": "10:00"},
        utc(2020, 6, 8, 7, 0),
        12,
        "Europe/Moscow",
        [],
    ),
    (
        "a date at several times, part of it passed",
        {"kind": "date_times", "date": "2020-06-13", "hours": [10, 13, 16], "minutes": [0]},
        utc(2020, 6, 13, 11, 0),
        12,
        "UTC",
        ["2020-06-13 13:00 UTC", "2020-06-13 16:00 UTC"],
    ),
    (
        "the guide's preview: Tuesdays and Thursdays at 18:14",
        {"kind": "weekdays", "time": "18:14", "weekdays": ["tuesday", "thursday"]},
        utc(2020, 1, 1),
        12,
        "UTC",
        [
            f"2020-{day} 18:14 UTC"
            for day in (
                "01-02",
                "01-07",
                "01-09",
                "01-14",
                "01-16",
                "01-21",
                "01-23",
                "01-28",
                "01-30",
                "02-04",
                "02-06",
                "02-11",
            )
        ],
    ),
    (
        "weekdays of the summer months jump to the next summer",
        {"kind": "weekdays", "time": "10:00", "weekdays": ["tuesday", "thursday"], "months": [6, 7, 8]},
        utc(2020, 8, 25),
        4,
        "UTC",
        ["2020-08-25 10:00 UTC", "2020-08-27 10:00 UTC", "2021-06-01 10:00 UTC", "2021-06-03 10:00 UTC"],
    ),
    (
        "the guide's third Tuesday of June to August",
        {"kind": "weekdays", "time": "10:00", "weekdays": ["tuesday"], "months": [6, 7, 8], "order": "third"},
        utc(2020, 1, 1),
        4,
        "UTC",
        ["2020-06-16 10:00 UTC", "2020-07-21 10:00 UTC", "2020-08-18 10:00 UTC", "2021-06-15 10:00 UTC"],
    ),
    (
        "the guide's second Thursday of November",
        {"kind": "weekdays", "time": "12:00", "weekdays": ["thursday"], "months": [11], "order": "second"},
        utc(2024, 1, 1),
        2,
        "UTC",
        ["2024-11-14 12:00 UTC", "2025-11-13 12:00 UTC"],
    ),
    (
        "first Monday: the 1st itself counts",
        {"kind": "weekdays", "time": "09:00", "weekdays": ["monday"], "order": "first"},
        utc(2024, 1, 1),
        3,
        "UTC",
        ["2024-01-01 09:00 UTC", "2024-02-05 09:00 UTC", "2024-03-04 09:00 UTC"],
    ),
    (
        "last Friday",
        {"kind": "weekdays", "time": "09:00", "weekdays": ["friday"], "order": "last"},
        utc(2024, 1, 1),
        3,
        "UTC",
        ["2024-01-26 09:00 UTC", "2024-02-23 09:00 UTC", "2024-03-29 09:00 UTC"],
    ),
    (
        "second Tuesday and second Thursday",
        {"kind": "weekdays", "time": "09:00", "weekdays": ["thursday", "tuesday"], "order": "second"},
        utc(2024, 1, 1),
        4,
        "UTC",
        ["2024-01-09 09:00 UTC", "2024-01-11 09:00 UTC", "2024-02-08 09:00 UTC", "2024-02-13 09:00 UTC"],
    ),
    (
        "fifth Monday of February: leap years whose February starts on a Monday",
        {"kind": "weekdays", "time": "09:00", "weekdays": ["monday"], "months": [2], "order": "fifth"},
        utc(2000, 1, 1),
        3,
        "UTC",
        ["2016-02-29 09:00 UTC", "2044-02-29 09:00 UTC", "2072-02-29 09:00 UTC"],
    ),
    (
        "fifth Saturday skips months without one",
        {"kind": "weekdays", "time": "09:00", "weekdays": ["saturday"], "order": "fifth"},
        utc(2024, 1, 1),
        3,
        "UTC",
        ["2024-03-30 09:00 UTC", "2024-06-29 09:00 UTC", "2024-08-31 09:00 UTC"],
    ),
    (
        "weekdays at several times",
        {
            "kind": "weekdays_times",
            "hours": [16, 9],
            "minutes": [20],
            "weekdays": ["wednesday"],
            "months": [6],
        },
        utc(2024, 6, 26, 10, 0),
        3,
        "UTC",
        ["2024-06-26 16:20 UTC", "2025-06-04 09:20 UTC", "2025-06-04 16:20 UTC"],
    ),
    (
        "the guide's days 8, 13, 16 of June to August",
        {"kind": "month_days", "time": "10:00", "days": [16, 8, 13], "months": [6, 7, 8]},
        utc(2020, 8, 10),
        4,
        "UTC",
        ["2020-08-13 10:00 UTC", "2020-08-16 10:00 UTC", "2021-06-08 10:00 UTC", "2021-06-13 10:00 UTC"],
    ),
    (
        "day 31 runs only in 31-day months",
        {"kind": "month_days", "time": "10:00", "days": [31]},
        utc(2024, 1, 1),
        4,
        "UTC",
        ["2024-01-31 10:00 UTC", "2024-03-31 10:00 UTC", "2024-05-31 10:00 UTC", "2024-07-31 10:00 UTC"],
    ),
    (
        "February 29 runs in leap years",
        {"kind": "month_days", "time": "10:00", "days": [29], "months": [2]},
        utc(2024, 3, 1),
        3,
        "UTC",
        ["2028-02-29 10:00 UTC", "2032-02-29 10:00 UTC", "2036-02-29 10:00 UTC"],
    ),
    (
        "the month's 1st across the year end",
        {"kind": "month_days", "time": "00:00", "days": [1], "months": [1, 12]},
        utc(2024, 12, 1, 0, 0),
        2,
        "UTC",
        ["2025-01-01 00:00 UTC", "2025-12-01 00:00 UTC"],
    ),
    (
        "month days at several times",
        {"kind": "month_days_times", "hours": [8, 20], "minutes": [0], "days": [30, 1], "months": [2, 3]},
        utc(2024, 2, 1, 12, 0),
        4,
        "UTC",
        ["2024-02-01 20:00 UTC", "2024-03-01 08:00 UTC", "2024-03-01 20:00 UTC", "2024-03-30 08:00 UTC"],
    ),
    (
        "the schedule's own zone beats the account's",
        {"kind": "daily", "time": "10:00", "timezone": "Asia/Tokyo"},
        utc(2024, 1, 1),
        1,
        "Europe/Moscow",
        ["2024-01-01 04:00 MSK"],
    ),
    (
        "count caps the list",
        {"kind": "daily", "time": "10:00"},
        utc(2024, 1, 1),
        1,
        "UTC",
        ["2024-01-01 10:00 UTC"],
    ),
    (
        "count zero",
        {"kind": "daily", "time": "10:00"},
        utc(2024, 1, 1),
        0,
        "UTC",
        [],
    ),
]


@pytest.mark.parametrize(
    ("body", "after", "count", "zone", "expected"),
    [case[1:] for case in NEXT_RUNS],
    ids=[case[0] for case in NEXT_RUNS],
)
def test_next_runs(
    body: dict[str, Any], after: dt.datetime, count: int, zone: str, expected: list[str]
) -> None:
    runs = next_runs(plan(**body), after, count, zone)
    assert walls(runs, zone) == expected
    assert all(run.tzinfo is UTC for run in runs)


# --- clock changes -----------------------------------------------------------------------------

CLOCK_CHANGES: list[tuple[str, dict[str, Any], dt.datetime, int, str, list[str]]] = [
    (
        "Berlin spring forward: 02:30 does not exist, runs when the gap ends",
        {"kind": "daily", "time": "02:30"},
        utc(2024, 3, 29, 12, 0),
        3,
        "Europe/Berlin",
        ["2024-03-30 02:30 CET", "2024-03-31 03:00 CEST", "2024-04-01 02:30 CEST"],
    ),
    (
        "Berlin fall back: 02:30 happens twice, runs once at the first",
        {"kind": "daily", "time": "02:30"},
        utc(2024, 10, 26),
        3,
        "Europe/Berlin",
        ["2024-10-26 02:30 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:30 CET"],
    ),
    (
        "New York spring forward",
        {"kind": "daily", "time": "02:30"},
        utc(2024, 3, 9, 12, 0),
        2,
        "America/New_York",
        ["2024-03-10 03:00 EDT", "2024-03-11 02:30 EDT"],
    ),
    (
        "New York fall back",
        {"kind": "daily", "time": "01:30"},
        utc(2024, 11, 2, 12, 0),
        2,
        "America/New_York",
        ["2024-11-03 01:30 EDT", "2024-11-04 01:30 EST"],
    ),
    (
        "wall times inside one gap collapse into one run",
        {"kind": "daily_times", "hours": [1, 2, 3], "minutes": [0, 30]},
        utc(2024, 3, 30, 23, 0),
        5,
        "Europe/Berlin",
        [
            "2024-03-31 01:00 CET",
            "2024-03-31 01:30 CET",
            "2024-03-31 03:00 CEST",
            "2024-03-31 03:30 CEST",
            "2024-04-01 01:00 CEST",
        ],
    ),
    (
        "ambiguous wall times run once each",
        {"kind": "daily_times", "hours": [2], "minutes": [0, 30]},
        utc(2024, 10, 26, 12, 0),
        3,
        "Europe/Berlin",
        ["2024-10-27 02:00 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:00 CET"],
    ),
    (
        "a monthly run on the clock-change day",
        {"kind": "weekdays", "time": "02:15", "weekdays": ["sunday"], "months": [3], "order": "last"},
        utc(2024, 1, 1),
        2,
        "Europe/Berlin",
        ["2024-03-31 03:00 CEST", "2025-03-30 03:00 CEST"],
    ),
]


@pytest.mark.parametrize(
    ("body", "after", "count", "zone", "expected"),
    [case[1:] for case in CLOCK_CHANGES],
    ids=[case[0] for case in CLOCK_CHANGES],
)
def test_clock_changes(
    body: dict[str, Any], after: dt.datetime, count: int, zone: str, expected: list[str]
) -> None:
    assert walls(next_runs(plan(**body), after, count, zone), zone) == expected


@pytest.mark.parametrize(
    ("day", "runs"),
    [((2024, 3, 10), 23), ((2024, 3, 11), 24), ((2024, 11, 3), 24)],
    ids=["spring forward loses the 02:00 run", "an ordinary day", "fall back runs 01:00 once"],
)
def test_hourly_runs_on_clock_change_days(day: tuple[int, int, int], runs: int) -> None:
    hourly = plan(kind="daily_times", hours=list(every_n_hours(1)), minutes=[0])
    start = local_midnight("America/New_York", *day) - dt.timedelta(seconds=1)
    end = local_midnight("America/New_York", *day) + dt.timedelta(days=1, hours=2)
    found = [run for run in next_runs(hourly, start, 30, "America/New_York") if run < end]
    on_day = [run for run in found if run.astimezone(ZoneInfo("America/New_York")).date() == dt.date(*day)]
    assert len(on_day) == runs
    assert len(set(on_day)) == runs


@pytest.mark.parametrize(
    ("wall", "zone", "expected"),
    [
        (dt.datetime(2024, 6, 10, 10, 0), "Asia/Tokyo", utc(2024, 6, 10, 1, 0)),
        (dt.datetime(2024, 3, 31, 2, 30), "Europe/Berlin", utc(2024, 3, 31, 1, 0)),  # gap: its end
        (dt.datetime(2024, 10, 27, 2, 30), "Europe/Berlin", utc(2024, 10, 27, 0, 30)),  # twice: the first
        (dt.datetime(2024, 3, 10, 2, 59), "America/New_York", utc(2024, 3, 10, 7, 0)),
        (dt.datetime(2024, 11, 3, 1, 0), "America/New_York", utc(2024, 11, 3, 5, 0)),
        (dt.datetime(2024, 10, 6, 2, 15), "Australia/Lord_Howe", utc(2024, 10, 5, 15, 30)),  # 30-minute gap
        (dt.datetime(2011, 12, 30, 10, 0), "Pacific/Apia", utc(2011, 12, 30, 10, 0)),  # a skipped day
    ],
)
def test_local_run_instant(wall: dt.datetime, zone: str, expected: dt.datetime) -> None:
    assert local_run_instant(wall, zone) == expected


def test_local_run_instant_refuses_unknown_zones_and_aware_walls() -> None:
    with pytest.raises(ValidationFailed):
        local_run_instant(dt.datetime(2024, 1, 1, 10), "Mars/Olympus")
    with pytest.raises(ValueError):
        local_run_instant(utc(2024, 1, 1, 10), "UTC")


# --- deactivation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deactivate_after", "expected"),
    [
        ("2024-01-03T10:00:00", ["01-01", "01-02", "01-03"]),  # wall time in the zone; a run at it still runs
        ("2024-01-03T09:59:00", ["01-01", "01-02"]),
        ("2024-01-03T07:00:00Z", ["01-01", "01-02", "01-03"]),  # an instant: 10:00 MSK
        ("2024-01-03T06:59:59+00:00", ["01-01", "01-02"]),
        ("2023-12-31T00:00:00", []),
    ],
)
def test_deactivate_after_cuts_runs_off(deactivate_after: str, expected: list[str]) -> None:
    schedule = plan(kind="daily", time="10:00", deactivate_after=deactivate_after)
    runs = next_runs(schedule, utc(2024, 1, 1), 12, "Europe/Moscow")
    assert [run.astimezone(ZoneInfo("Europe/Moscow")).strftime("%m-%d") for run in runs] == expected
    assert [run.at for run in pending_runs(schedule, utc(2024, 1, 1), 12, "Europe/Moscow")] == runs


def test_deactivate_after_in_a_gap_ends_where_the_gap_ends() -> None:
    schedule = plan(kind="daily_times", hours=[1, 3, 4], minutes=[0], deactivate_after="2024-03-31T02:30:00")
    runs = next_runs(schedule, utc(2024, 3, 30, 12), 12, "Europe/Berlin")
    assert walls(runs, "Europe/Berlin") == ["2024-03-31 01:00 CET", "2024-03-31 03:00 CEST"]


def test_next_runs_refuses_naive_after_and_negative_counts() -> None:
    schedule = plan(kind="daily", time="10:00")
    with pytest.raises(ValueError):
        next_runs(schedule, dt.datetime(2024, 1, 1), 1, "UTC")
    with pytest.raises(ValueError):
        next_runs(schedule, utc(2024, 1, 1), -1, "UTC")


def test_an_impossible_schedule_has_no_runs_rather_than_looping() -> None:
    never = plan(kind="month_days", time="10:00", days=[30], months=[2])
    assert next_runs(never, utc(2024, 1, 1), 3, "UTC") == []


# --- validation --------------------------------------------------------------------------------

NOW = utc(2024, 6, 10, 9, 0)  # 12:00 in Moscow

INVALID = [
    bad("unknown timezone", "schedule.timezone", kind="daily", time="10:00", timezone="Mars/Olympus"),
    bad("a folder is no timezone", "schedule.timezone", kind="daily", time="10:00", timezone="Europe"),
    bad("malformed timezone", "schedule.timezone", kind="daily", time="10:00", timezone="../etc"),
    bad("seconds in a run time", "schedule.time", kind="daily", time="10:00:30"),
    bad("an offset in a run time", "schedule.time", kind="daily", time="10:00+03:00"),
    bad("hour 24", "schedule.hours.1", kind="daily_times", hours=[10, 24]),
    bad("negative hour", "schedule.hours.0", kind="daily_times", hours=[-1]),
    bad("no hours", "schedule.hours", kind="daily_times", hours=[]),
    bad("minute 60", "schedule.minutes.0", kind="date_times", date="2024-07-01", hours=[10], minutes=[60]),
    bad("no minutes", "schedule.minutes", kind="daily_times", hours=[10], minutes=[]),
    bad("no weekdays", "schedule.weekdays", kind="weekdays", time="10:00", weekdays=[]),
    bad("no months", "schedule.months", kind="weekdays", time="10:00", weekdays=["monday"], months=[]),
    bad(
        "month 13", "schedule.months.1", kind="weekdays_times", hours=[1], weekdays=["monday"], months=[1, 13]
    ),
    bad("month 0", "schedule.months.0", kind="month_days", time="10:00", days=[1], months=[0]),
    bad("no days", "schedule.days", kind="month_days", time="10:00", days=[]),
    bad("day 32", "schedule.days.0", kind="month_days", time="10:00", days=[32]),
    bad("day 0", "schedule.days.0", kind="month_days_times", hours=[1], days=[0]),
    bad("February 30", "schedule.days.0", kind="month_days", time="10:00", days=[30], months=[2]),
    bad(
        "day 31 of Feb and Apr",
        "schedule.days.1",
        kind="month_days",
        time="10:00",
        days=[15, 31],
        months=[2, 4],
    ),
    bad(
        "profile zone with several times a day",
        "schedule.profile_timezone",
        kind="daily_times",
        hours=[10],
        profile_timezone=True,
    ),
    bad(
        "send-past without the profile zone",
        "schedule.send_past_local_times_now",
        kind="daily",
        time="10:00",
        send_past_local_times_now=True,
    ),
]


@pytest.mark.parametrize(("body", "path"), INVALID)
def test_impossible_schedules_are_refused_with_their_path(body: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_schedule(plan(**body))
    assert caught.value.path == path
    assert caught.value.reason


ONCE_JULY_1 = {"kind": "once", "date": "2024-07-01", "time": "10:00"}
DAILY_10 = {"kind": "daily", "time": "10:00"}
FIFTH_FEB_MONDAY = {
    "kind": "weekdays",
    "time": "09:00",
    "weekdays": ["monday"],
    "months": [2],
    "order": "fifth",
}
INVALID_AT_NOW = [
    bad("a date in the past", "schedule.date", "passed", kind="once", date="2024-06-09", time="10:00"),
    bad("today, an hour ago", "schedule.date", "passed", kind="once", date="2024-06-10", time="11:00"),
    bad(
        "every time passed",
        "schedule.date",
        "passed",
        kind="date_times",
        date="2024-06-10",
        hours=[9, 10, 11],
    ),
    bad(
        "deactivated before the one run",
        "schedule.deactivate_after",
        "comes before",
        **ONCE_JULY_1,
        deactivate_after="2024-06-30T00:00:00",
    ),
    bad(
        "deactivated already",
        "schedule.deactivate_after",
        "has passed",
        **DAILY_10,
        deactivate_after="2024-06-01",
    ),
    bad(
        "deactivated before the next run",
        "schedule.deactivate_after",
        "comes before",
        **DAILY_10,
        deactivate_after="2024-06-10T23:00",
    ),
    bad(
        "the next fifth Monday of February is after the cut-off",
        "schedule.deactivate_after",
        "comes before",
        **FIFTH_FEB_MONDAY,
        deactivate_after="2040-01-01T00:00:00Z",
    ),
]


@pytest.mark.parametrize(("body", "path", "reason"), INVALID_AT_NOW)
def test_schedules_without_runs_left_are_refused_at_now(body: dict[str, Any], path: str, reason: str) -> None:
    schedule = check_schedule(plan(**body))  # possible in itself
    with pytest.raises(ValidationFailed) as caught:
        check_schedule(schedule, now=NOW, account_timezone="Europe/Moscow")
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_the_path_prefix_is_the_callers() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_schedule(plan(kind="daily_times", hours=[24]), "campaign.schedule")
    assert caught.value.path == "campaign.schedule.hours.0"


def test_an_unknown_account_timezone_is_refused_when_checking_runs() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_schedule(plan(kind="daily", time="10:00"), now=NOW, account_timezone="Nowhere/Land")
    assert caught.value.path == "schedule.timezone"


def test_checking_runs_needs_a_zone() -> None:
    with pytest.raises(ValueError):
        check_schedule(plan(kind="daily", time="10:00"), now=NOW)


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "month_days", "time": "10:00", "days": [29], "months": [2]},  # leap years
        {"kind": "month_days", "time": "10:00", "days": [31], "months": [2, 3]},  # runs in March
        {"kind": "weekdays", "time": "10:00", "weekdays": ["monday"], "months": [2], "order": "fifth"},
        {"kind": "weekdays", "time": "10:00", "weekdays": ["monday"], "profile_timezone": True},
        {"kind": "month_days", "time": "10:00", "days": [1], "profile_timezone": True},
        {"kind": "once", "date": "2024-06-10", "time": "12:01", "timezone": "Europe/Moscow"},
        # one run left, exactly at the cut-off
        {"kind": "daily", "time": "10:00", "deactivate_after": "2024-06-11T10:00:00"},
        # 10:00 has passed in Moscow but not further west: the run is still live
        {"kind": "once", "date": "2024-06-10", "time": "10:00", "profile_timezone": True},
    ],
)
def test_possible_schedules_pass(body: dict[str, Any]) -> None:
    schedule = plan(**body)
    assert check_schedule(schedule, now=NOW, account_timezone="Europe/Moscow") == schedule


def test_check_schedule_sorts_and_deduplicates_lists() -> None:
    unsorted = plan(
        kind="weekdays_times",
        hours=[16, 10, 16, 13],
        minutes=[30, 0],
        weekdays=["thursday", "tuesday", "thursday"],
        months=[8, 6, 7, 6],
    )
    checked = check_schedule(unsorted)
    assert checked == plan(
        kind="weekdays_times",
        hours=[10, 13, 16],
        minutes=[0, 30],
        weekdays=["tuesday", "thursday"],
        months=[6, 7, 8],
    )
    assert isinstance(checked, WeekdaysTimesSchedule)
    assert checked.weekdays == (Weekday.TUESDAY, Weekday.THURSDAY)


# --- profile time zone -------------------------------------------------------------------------

MOSCOW_10 = {"kind": "daily", "time": "10:00", "profile_timezone": True}
ACTIVATED = NOW  # 12:00 in Moscow on 2024-06-10


def first_pending(schedule: Schedule, after: dt.datetime = ACTIVATED) -> Run:
    return pending_runs(schedule, after, 1, "Europe/Moscow")[0]


def test_a_profile_zone_run_is_live_from_utc_plus_14_to_utc_minus_12() -> None:
    run = first_pending(plan(**MOSCOW_10))
    assert run == Run(
        wall=dt.datetime(2024, 6, 10, 10, 0),
        at=utc(2024, 6, 10, 7, 0),
        opens_at=utc(2024, 6, 9, 20, 0),
        closes_at=utc(2024, 6, 10, 22, 0),
    )
    # the nominal run has passed, so the preview shows tomorrow's
    assert next_runs(plan(**MOSCOW_10), ACTIVATED, 1, "Europe/Moscow") == [utc(2024, 6, 11, 7, 0)]


def test_without_the_profile_zone_pending_runs_are_the_next_runs() -> None:
    schedule = plan(kind="daily", time="10:00")
    runs = pending_runs(schedule, ACTIVATED, 2, "Europe/Moscow")
    assert [run.at for run in runs] == next_runs(schedule, ACTIVATED, 2, "Europe/Moscow")
    assert all(run.opens_at == run.at == run.closes_at for run in runs)
    assert profile_due_at(schedule, runs[0], "Asia/Tokyo", runs[0].at) == runs[0].at


PROFILE_DUE: list[tuple[str | None, bool, dt.datetime | None]] = [
    # activated mid-window: 12:00 Moscow = 09:00 UTC
    ("America/New_York", False, utc(2024, 6, 10, 14, 0)),  # still ahead: 10:00 EDT
    ("America/New_York", True, utc(2024, 6, 10, 14, 0)),
    ("Europe/London", False, utc(2024, 6, 10, 9, 0)),  # exactly now: due, not passed
    ("Asia/Tokyo", False, None),  # 10:00 JST passed: skipped this run
    ("Asia/Tokyo", True, ACTIVATED),  # … or sent at once
    ("Europe/Moscow", False, None),
    (None, False, None),  # unknown zone: the schedule's (10:00 Moscow, passed)
    (None, True, ACTIVATED),
    ("Mars/Olympus", True, ACTIVATED),  # a zone this build lacks: the schedule's
    ("America/Los_Angeles", True, utc(2024, 6, 10, 17, 0)),
]


@pytest.mark.parametrize(("profile_zone", "send_past", "due"), PROFILE_DUE)
def test_profile_due_times_when_activated_mid_run(
    profile_zone: str | None, send_past: bool, due: dt.datetime | None
) -> None:
    schedule = plan(**MOSCOW_10, send_past_local_times_now=send_past)
    run = first_pending(schedule)
    assert profile_due_at(schedule, run, profile_zone, started_at=max(run.opens_at, ACTIVATED)) == due


@pytest.mark.parametrize(
    ("profile_zone", "due"),
    [
        ("Pacific/Kiritimati", utc(2024, 6, 10, 20, 0)),  # the run opens with it
        ("Asia/Tokyo", utc(2024, 6, 11, 1, 0)),
        ("Europe/Moscow", utc(2024, 6, 11, 7, 0)),
        ("America/New_York", utc(2024, 6, 11, 14, 0)),
        ("Etc/GMT+12", utc(2024, 6, 11, 22, 0)),  # … and closes with it
    ],
)
def test_a_run_started_when_it_opens_skips_nobody(profile_zone: str, due: dt.datetime) -> None:
    schedule = plan(**MOSCOW_10)  # without send-past
    run = pending_runs(schedule, ACTIVATED, 2, "Europe/Moscow")[1]
    assert run.wall == dt.datetime(2024, 6, 11, 10, 0)
    assert profile_due_at(schedule, run, profile_zone, started_at=run.opens_at) == due


def test_a_profile_zone_follows_its_own_clock_changes() -> None:
    schedule = plan(kind="daily", time="02:30", profile_timezone=True, timezone="America/New_York")
    run = first_pending(schedule, utc(2024, 3, 30, 15, 0))  # the 30th's run closed at 14:30
    assert run.wall == dt.datetime(2024, 3, 31, 2, 30)
    # 02:30 does not exist in Berlin that night: due when its gap ends, 03:00 CEST
    assert profile_due_at(schedule, run, "Europe/Berlin", run.opens_at) == utc(2024, 3, 31, 1, 0)


def test_a_one_off_profile_zone_run_ends_when_the_westernmost_zone_is_served() -> None:
    schedule = plan(kind="once", date="2024-06-10", time="10:00", profile_timezone=True)
    assert [run.wall for run in pending_runs(schedule, ACTIVATED, 5, "Europe/Moscow")] == [
        dt.datetime(2024, 6, 10, 10, 0)
    ]
    assert pending_runs(schedule, utc(2024, 6, 10, 22, 0), 5, "Europe/Moscow") == []
    with pytest.raises(ValidationFailed):
        check_schedule(schedule, now=utc(2024, 6, 10, 22, 0), account_timezone="Europe/Moscow")


def test_profile_due_at_needs_an_aware_start() -> None:
    schedule = OnceSchedule(date=dt.date(2024, 6, 10), time=dt.time(10, 0), profile_timezone=True)
    run = first_pending(schedule)
    with pytest.raises(ValueError):
        profile_due_at(schedule, run, "UTC", dt.datetime(2024, 6, 10))


def test_models_construct_directly_too() -> None:
    schedule = WeekdaysSchedule(time=dt.time(9, 0), weekdays=(Weekday.MONDAY,), months=(1,))
    assert check_schedule(schedule) == schedule
    assert DailyTimesSchedule(hours=(10,)).minutes == (0,)
