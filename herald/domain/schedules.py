"""Campaign schedules: the plans, their validation, their runs, and when each profile's message is due.

A schedule (guide, "Расписание кампании") is a value embedded in broadcast,
regular and split-test campaigns. It is one of the guide's plans, the `kind`:

- `daily`: "Каждый день в выбранное время"; `time`.
- `daily_times`: "Каждый день, несколько раз в день"; `hours`, `minutes`.
- `once`: "В определённую дату в выбранное время"; `date`, `time`.
- `date_times`: "В заданную дату в различное время"; `date`, `hours`, `minutes`.
- `weekdays`: "В заданные дни недели определённых месяцев в выбранное время";
  `weekdays`, `months`, `time`, and `order` for "В заданный день недели
  относительно начала месяца" (the third Tuesday, the last Friday).
- `weekdays_times`: "В заданные дни недели определённых месяцев в различное
  время"; `weekdays`, `months`, `order`, `hours`, `minutes`.
- `month_days`: "В заданные дни определённых месяцев в выбранное время";
  `days`, `months`, `time`.
- `month_days_times`: "В заданные дни определённых месяцев в различное время";
  `days`, `months`, `hours`, `minutes`.

Several times a day are the product `hours × minutes` (hours 10, 13, 16 with
minute 0: three runs). The hour presets ("Каждый час", "Каждый второй час", …)
are `every_n_hours(1|2|3|4|6)`. Every plan has the common options `timezone`
(None: the account's), `profile_timezone`, `send_past_local_times_now` and
`deactivate_after`.

Runs are computed in the schedule's timezone. Clock changes:
- a wall time that does not exist (spring forward, e.g. 02:30 in Berlin on the
  last Sunday of March) runs at the first instant after the gap (03:00 CEST);
  several wall times inside one gap collapse into that one run;
- a wall time that happens twice (fall back) runs once, at its first occurrence.
`local_run_instant` is that rule, and every wall time goes through it.

Profile time zone ("Отправлять в часовом поясе профиля, если он известен"):
one run is one wall date and time (`Run.wall`); a profile whose `_tz` is known
gets its message at that wall time in its zone, a profile without one (or with
a zone this build does not know) at the run's instant in the schedule's zone.
So a run is live from the wall time at UTC+14 to the wall time at UTC−12
(`Run.opens_at`, `Run.closes_at`); the processor starts it when it opens, or
when the campaign is activated if that is later. A profile whose due time is
before the run's start has "already passed" (the guide: the time had passed
"на момент создания кампании"): with `send_past_local_times_now` it is sent at
the run's start, without it it is skipped for that run (it waits for the next
run; a one-off plan never sends to it). See `profile_due_at`.

Decisions where the guide is silent:
- The guide offers the profile time zone on its two one-time-a-day plans; Herald
  allows it on every plan with one `time` a day (so also `weekdays` and
  `month_days`) and refuses it on the several-times plans, whose overlapping
  26-hour windows would make "already passed" ambiguous.
  `send_past_local_times_now` without `profile_timezone` is refused (it would
  mean nothing).
- `order` is first … fifth or last occurrence of each chosen weekday in the month
  ("first Monday", "last Friday"); a month without a fifth such weekday has no run.
- A chosen day of the month that does not exist in some chosen month is skipped
  there (day 31 runs in the 31-day months); a day that exists in none of the
  chosen months is refused (day 30 with only February, day 31 with February and April).
- `months` defaults to all twelve; lists are stored sorted without duplicates.
- Run times are whole minutes (the guide's forms have hours and minutes).
- `deactivate_after`: a run exactly at it still happens, later ones do not. A
  naive value is a wall time in the schedule's timezone (the form shows date and
  time next to the timezone), an aware value an instant. The cut-off is by the
  run's instant in the schedule's zone, so a run that started before it sends to
  every profile even in profile-time-zone mode.
- Impossible schedules are refused with the field's dotted path: an unknown
  timezone, an empty or out-of-range list, an impossible day, and, given `now`,
  a schedule with no run left (the date has passed, or `deactivate_after` comes
  before the next run). A one-off plan in profile-time-zone mode is still possible
  while its run is live for some zone.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

from herald.domain.errors import ValidationFailed

UTC = dt.UTC
ALL_MONTHS: tuple[int, ...] = tuple(range(1, 13))
HOUR_PRESET_STEPS: tuple[int, ...] = (1, 2, 3, 4, 6)
"""The guide's hour presets: every hour, every 2nd, 3rd, 4th and 6th hour."""

EARLIEST_OFFSET = dt.timedelta(hours=14)  # Pacific/Kiritimati, the easternmost zone in use
LATEST_OFFSET = dt.timedelta(hours=-12)  # Etc/GMT+12, the westernmost
# Any pattern of weekdays and month days repeats within the 400-year Gregorian cycle,
# so a search that finds nothing in 401 years will never find anything.
_SEARCH_YEARS = 401


class Weekday(StrEnum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @property
    def number(self) -> int:
        """Monday 0 … Sunday 6, as `date.weekday()` counts."""
        return list(Weekday).index(self)


class WeekdayOrder(StrEnum):
    """Which occurrence of a weekday in its month ("Порядок"): the Nth, or the last."""

    FIRST = "first"
    SECOND = "second"
    THIRD = "third"
    FOURTH = "fourth"
    FIFTH = "fifth"
    LAST = "last"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Common(_Value):
    """The options every plan has."""

    timezone: str | None = None
    profile_timezone: bool = False
    send_past_local_times_now: bool = False
    deactivate_after: dt.datetime | None = None


class _AtTime(_Value):
    time: dt.time


class _AtTimes(_Value):
    hours: tuple[StrictInt, ...]
    minutes: tuple[StrictInt, ...] = (0,)


class _OnWeekdays(_Value):
    weekdays: tuple[Weekday, ...]
    months: tuple[StrictInt, ...] = ALL_MONTHS
    order: WeekdayOrder | None = None


class _OnMonthDays(_Value):
    days: tuple[StrictInt, ...]
    months: tuple[StrictInt, ...] = ALL_MONTHS


class DailySchedule(_Common, _AtTime):
    """Every day at `time`."""

    kind: Literal["daily"] = "daily"


class DailyTimesSchedule(_Common, _AtTimes):
    """Every day at each of `hours` × `minutes`."""

    kind: Literal["daily_times"] = "daily_times"


class OnceSchedule(_Common, _AtTime):
    """Once, on `date` at `time`."""

    kind: Literal["once"] = "once"
    date: dt.date


class DateTimesSchedule(_Common, _AtTimes):
    """On `date`, at each of `hours` × `minutes`."""

    kind: Literal["date_times"] = "date_times"
    date: dt.date


class WeekdaysSchedule(_Common, _OnWeekdays, _AtTime):
    """On `weekdays` (or only their `order`-th occurrence) of `months`, at `time`."""

    kind: Literal["weekdays"] = "weekdays"


class WeekdaysTimesSchedule(_Common, _OnWeekdays, _AtTimes):
    """On `weekdays` (or only their `order`-th occurrence) of `months`, at each of `hours` × `minutes`."""

    kind: Literal["weekdays_times"] = "weekdays_times"


class MonthDaysSchedule(_Common, _OnMonthDays, _AtTime):
    """On `days` of `months`, at `time`."""

    kind: Literal["month_days"] = "month_days"


class MonthDaysTimesSchedule(_Common, _OnMonthDays, _AtTimes):
    """On `days` of `months`, at each of `hours` × `minutes`."""

    kind: Literal["month_days_times"] = "month_days_times"


Schedule = Annotated[
    DailySchedule
    | DailyTimesSchedule
    | OnceSchedule
    | DateTimesSchedule
    | WeekdaysSchedule
    | WeekdaysTimesSchedule
    | MonthDaysSchedule
    | MonthDaysTimesSchedule,
    Field(discriminator="kind"),
]
SCHEDULE_ADAPTER: TypeAdapter[Schedule] = TypeAdapter(Schedule)
"""Parses a schedule on its own (the campaign embeds `Schedule` as a field)."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a schedule.

    `wall` is the scheduled local date and time (naive, in the schedule's zone);
    `at` the run's instant in that zone (UTC), the one previews show. In
    profile-time-zone mode messages fall due from `opens_at` to `closes_at`;
    otherwise both equal `at`.
    """

    wall: dt.datetime
    at: dt.datetime
    opens_at: dt.datetime
    closes_at: dt.datetime


def every_n_hours(step: int) -> tuple[int, ...]:
    """The hours of a preset: every `step`-th hour from midnight (step 1, 2, 3, 4 or 6)."""
    if step not in HOUR_PRESET_STEPS:
        raise ValueError(f"the hour presets are every {HOUR_PRESET_STEPS} hours, not {step}")
    return tuple(range(0, 24, step))


# --- validation --------------------------------------------------------------------------------


def check_schedule(
    schedule: Schedule,
    path: str = "schedule",
    *,
    now: dt.datetime | None = None,
    account_timezone: str | None = None,
) -> Schedule:
    """`schedule` with its lists sorted and deduplicated; refuses an impossible one.

    Given `now` (at save and at activation) it also refuses a schedule with no
    run left; that check needs `account_timezone` when the schedule has no zone.
    """
    if schedule.timezone is not None:
        zone_named(schedule.timezone, f"{path}.timezone")
    update: dict[str, object] = {}
    if isinstance(schedule, _AtTime):
        _check_time(schedule.time, f"{path}.time")
    if isinstance(schedule, _AtTimes):
        update["hours"] = _check_numbers(schedule.hours, 0, 23, "an hour", f"{path}.hours")
        update["minutes"] = _check_numbers(schedule.minutes, 0, 59, "a minute", f"{path}.minutes")
    if isinstance(schedule, _OnWeekdays):
        if not schedule.weekdays:
            raise ValidationFailed("pick at least one day of the week", f"{path}.weekdays")
        update["weekdays"] = tuple(sorted(set(schedule.weekdays), key=lambda day: day.number))
    if isinstance(schedule, _OnWeekdays | _OnMonthDays):
        update["months"] = _check_numbers(schedule.months, 1, 12, "a month", f"{path}.months")
    if isinstance(schedule, _OnMonthDays):
        update["days"] = _check_numbers(schedule.days, 1, 31, "a day of the month", f"{path}.days")
        _check_days_exist(schedule.days, schedule.months, f"{path}.days")
    _check_options(schedule, path)
    checked = schedule.model_copy(update=update)
    if now is not None:
        _check_runs_left(checked, now, _zone_of(checked, account_timezone, path), path)
    return checked


def zone_named(name: str, path: str = "timezone") -> ZoneInfo:
    """The IANA time zone called `name`; refuses a name this build's tz database lacks."""
    try:
        return ZoneInfo(name)
    # ZoneInfo raises ValueError for malformed keys and OSError for a directory such as "Europe"
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationFailed(
            f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin", path
        ) from None


def _check_time(time: dt.time, path: str) -> None:
    if time.tzinfo is not None:
        raise ValidationFailed("a run time carries no UTC offset: set the schedule's timezone", path)
    if time.second or time.microsecond:
        raise ValidationFailed("a run time is hours and minutes, without seconds", path)


def _check_numbers(values: Sequence[int], low: int, high: int, what: str, path: str) -> tuple[int, ...]:
    if not values:
        raise ValidationFailed(f"pick at least one: {what} from {low} to {high}", path)
    for index, value in enumerate(values):
        if not low <= value <= high:
            raise ValidationFailed(f"{what} is {low}–{high}, not {value}", f"{path}.{index}")
    return tuple(sorted(set(values)))


def _check_days_exist(days: Sequence[int], months: Sequence[int], path: str) -> None:
    # February counts 29 days: day 29 runs in leap years
    longest = max(calendar.monthrange(2000, month)[1] for month in months)
    for index, day in enumerate(days):
        if day > longest:
            names = ", ".join(calendar.month_name[month] for month in sorted(set(months)))
            raise ValidationFailed(
                f"day {day} falls in none of the chosen months ({names})", f"{path}.{index}"
            )


def _check_options(schedule: Schedule, path: str) -> None:
    if schedule.profile_timezone and isinstance(schedule, _AtTimes):
        raise ValidationFailed(
            "sending at the profile's local time needs a plan with one run time a day",
            f"{path}.profile_timezone",
        )
    if schedule.send_past_local_times_now and not schedule.profile_timezone:
        raise ValidationFailed(
            "sending at once to profiles whose local time has passed needs sending at their local time",
            f"{path}.send_past_local_times_now",
        )


def _zone_of(schedule: Schedule, account_timezone: str | None, path: str) -> ZoneInfo:
    if schedule.timezone is not None:
        return zone_named(schedule.timezone, f"{path}.timezone")
    if account_timezone is None:
        raise ValueError("the schedule has no timezone of its own: pass the account timezone")
    return zone_named(account_timezone, f"{path}.timezone")


def _check_runs_left(schedule: Schedule, now: dt.datetime, zone: ZoneInfo, path: str) -> None:
    _require_aware(now, "now")
    first = next(_live_runs(schedule, zone, now), None)
    if first is None:
        where = f"{path}.date" if isinstance(schedule, OnceSchedule | DateTimesSchedule) else path
        raise ValidationFailed("the schedule has no run left: its date and time have passed", where)
    cutoff = _cutoff(schedule, zone)
    if cutoff is not None and first.at > cutoff:
        reason = "has passed" if cutoff <= now else "comes before the next run"
        raise ValidationFailed(f"the deactivation date {reason}", f"{path}.deactivate_after")


# --- runs --------------------------------------------------------------------------------------


def next_runs(schedule: Schedule, after: dt.datetime, count: int, account_timezone: str) -> list[dt.datetime]:
    """The instants (UTC) of the next `count` runs strictly after `after`, up to `deactivate_after`."""
    _require_aware(after, "after")
    zone = _zone_of(schedule, account_timezone, "schedule")
    runs = (run for run in _runs_from(schedule, zone, after) if run.at > after)
    return [run.at for run in _take(runs, count, _cutoff(schedule, zone))]


def pending_runs(schedule: Schedule, after: dt.datetime, count: int, account_timezone: str) -> list[Run]:
    """The next `count` runs still live after `after` (`closes_at > after`), up to `deactivate_after`.

    Without the profile time zone these are the runs of `next_runs`. With it, a
    run whose instant has passed stays pending while it is due in some zone
    further west. An empty list means the schedule is over.
    """
    _require_aware(after, "after")
    zone = _zone_of(schedule, account_timezone, "schedule")
    return _take(_live_runs(schedule, zone, after), count, _cutoff(schedule, zone))


def _live_runs(schedule: Schedule, zone: ZoneInfo, after: dt.datetime) -> Iterator[Run]:
    return (run for run in _runs_from(schedule, zone, after) if run.closes_at > after)


def _take(runs: Iterator[Run], count: int, cutoff: dt.datetime | None) -> list[Run]:
    if count < 0:
        raise ValueError("count is not negative")
    taken: list[Run] = []
    for run in runs:
        if len(taken) >= count or (cutoff is not None and run.at > cutoff):
            break
        taken.append(run)
    return taken


def _cutoff(schedule: Schedule, zone: ZoneInfo) -> dt.datetime | None:
    end = schedule.deactivate_after
    if end is None:
        return None
    return end.astimezone(UTC) if end.tzinfo is not None else _resolve(end, zone)


def _runs_from(schedule: Schedule, zone: ZoneInfo, after: dt.datetime) -> Iterator[Run]:
    """Every run in order from a little before `after` (callers filter), as long as there are any."""
    # Two days back covers any zone's offset plus the 12 hours a profile-time-zone run stays live.
    start = after.astimezone(zone).date() - dt.timedelta(days=2)
    times = _times_of_day(schedule)
    previous: dt.datetime | None = None
    for day in _days(schedule, start):
        for time in times:
            wall = dt.datetime.combine(day, time)
            at = _resolve(wall, zone)
            if previous is not None and at <= previous:
                continue  # another wall time in the same spring-forward gap: one run
            previous = at
            yield _run(wall, at, schedule.profile_timezone)


def _run(wall: dt.datetime, at: dt.datetime, profile_timezone: bool) -> Run:
    if not profile_timezone:
        return Run(wall=wall, at=at, opens_at=at, closes_at=at)
    as_utc = wall.replace(tzinfo=UTC)
    return Run(wall=wall, at=at, opens_at=as_utc - EARLIEST_OFFSET, closes_at=as_utc - LATEST_OFFSET)


def _times_of_day(schedule: Schedule) -> list[dt.time]:
    if isinstance(schedule, _AtTimes):
        return sorted(
            dt.time(hour, minute) for hour in set(schedule.hours) for minute in set(schedule.minutes)
        )
    return [schedule.time.replace(tzinfo=None)]


def _days(schedule: Schedule, start: dt.date) -> Iterator[dt.date]:
    """The days with runs, from `start` on, in order."""
    if isinstance(schedule, OnceSchedule | DateTimesSchedule):
        if schedule.date >= start:
            yield schedule.date
        return
    if isinstance(schedule, DailySchedule | DailyTimesSchedule):
        last = _last_searched_day(start)
        day = start
        while day <= last:
            yield day
            day += dt.timedelta(days=1)
        return
    for year, month in _months(start, schedule.months):
        for day in sorted(_days_in_month(schedule, year, month)):
            if day >= start:
                yield day


def _last_searched_day(start: dt.date) -> dt.date:
    return dt.date(min(start.year + _SEARCH_YEARS, dt.MAXYEAR - 1), 12, 31)


def _months(start: dt.date, months: Sequence[int]) -> Iterator[tuple[int, int]]:
    chosen = set(months)
    for year in range(start.year, _last_searched_day(start).year + 1):
        for month in range(start.month if year == start.year else 1, 13):
            if month in chosen:
                yield year, month


def _days_in_month(
    schedule: WeekdaysSchedule | WeekdaysTimesSchedule | MonthDaysSchedule | MonthDaysTimesSchedule,
    year: int,
    month: int,
) -> set[dt.date]:
    length = calendar.monthrange(year, month)[1]
    if isinstance(schedule, MonthDaysSchedule | MonthDaysTimesSchedule):
        return {dt.date(year, month, day) for day in schedule.days if day <= length}
    days: set[dt.date] = set()
    for weekday in schedule.weekdays:
        matching = [
            dt.date(year, month, day)
            for day in range(1, length + 1)
            if dt.date(year, month, day).weekday() == weekday.number
        ]
        days.update(_pick(matching, schedule.order))
    return days


def _pick(matching: list[dt.date], order: WeekdayOrder | None) -> list[dt.date]:
    if order is None:
        return matching
    if order is WeekdayOrder.LAST:
        return matching[-1:]
    index = list(WeekdayOrder).index(order)
    return matching[index : index + 1]


# --- wall time to instant ----------------------------------------------------------------------


def local_run_instant(wall: dt.datetime, timezone: str) -> dt.datetime:
    """The instant (UTC) when the naive wall time `wall` happens in `timezone`.

    A wall time skipped by a clock change is due at the first instant after the
    gap; one that happens twice is due at its first occurrence.
    """
    if wall.tzinfo is not None:
        raise ValueError("the wall time is naive: the zone says where it is")
    return _resolve(wall, zone_named(timezone))


def _resolve(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    # fold=0 is the first occurrence of an ambiguous wall time (PEP 495)
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap fold=0 reads the wall time with the offset from before the change (an instant
    # after the gap) and fold=1 with the offset after it (an instant before): the change is between.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition(min(before, instant), max(before, instant), zone)


def _transition(before: dt.datetime, after: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The first instant in (before, after] with `after`'s UTC offset: the end of the gap."""
    low, high = int(before.timestamp()), int(after.timestamp())
    target = _offset(high, zone)
    # tz database changes happen on whole seconds
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, zone) == target:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, UTC)


def _offset(timestamp: int, zone: ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(timestamp, zone).utcoffset()


def _require_aware(moment: dt.datetime, name: str) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone")


# --- profile time zone -------------------------------------------------------------------------


def profile_due_at(
    schedule: Schedule, run: Run, profile_timezone: str | None, started_at: dt.datetime
) -> dt.datetime | None:
    """When the profile's message of `run` is due, or None when it is skipped this run.

    `started_at` is when the run started: `run.opens_at`, or the campaign's
    activation if that came later. Without the profile-time-zone option every
    profile is due at `run.at`. With it, a profile is due at the run's wall time
    in its own zone (the schedule's zone when unknown); if that is before
    `started_at` it is due at `started_at` with `send_past_local_times_now`,
    and skipped without.
    """
    _require_aware(started_at, "started_at")
    if not schedule.profile_timezone:
        return run.at
    due = run.at
    if profile_timezone:
        # a zone this build's tz database lacks: the schedule's zone
        with suppress(ValidationFailed):
            due = local_run_instant(run.wall, profile_timezone)
    if due >= started_at:
        return due
    return started_at if schedule.send_past_local_times_now else None
