"""The pause node's waits: until when a profile waits before the next node (guide, "Пауза").

Variants (`kind`):
- `relative` ("Ожидать дни, часы или минуты"): days, hours and minutes after the node is reached
  (after the capture, or after the previous action);
- `time_of_day` ("в ближайшее выбранное время"): the next time the clock shows `time`;
- `date` ("в конкретную дату"): a date and time; once it has passed, the pause lets profiles through;
- `weekday` ("Ожидать дня недели и времени", "11:30 Воскресенье"): the next such weekday and time;
- `window` ("Ожидать периода времени"): the next element's active hours, `start`–`end`; inside
  them a profile goes on at once, outside it waits until they open (an `end` before `start` is a
  window over midnight, 21:00–09:00).

Time zone: the pause's `timezone`, else the account's; with `use_profile_timezone` the profile's
`_tz` when it is known and valid ("Использовать часовой пояс профиля, если известен").

Decisions where the guide is silent:
- "The next" time of day or weekday is strictly after the moment the pause is reached, so such a
  pause always waits (reaching 10:00 exactly with a 10:00 pause waits a day); that is what lets it
  break a loop. A `date` or `window` pause may let a profile through at once, and a relative pause
  of zero does, so none of them breaks a loop (`always_waits`).
- A naive `date` is a wall time in the pause's zone; an aware one is that instant.
- Wall times go through `schedules.local_run_instant`: a time skipped by a clock change is the
  first instant after the gap, a time that happens twice is its first occurrence.
- Times are whole minutes, as the guide's forms; the window's start and end differ.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import suppress
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.errors import ValidationFailed
from herald.domain.schedules import Weekday, local_run_instant, zone_named

MAX_RELATIVE_DAYS = 3_650


class _Wait(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RelativeWait(_Wait):
    kind: Literal["relative"] = "relative"
    days: int = Field(0, ge=0, le=MAX_RELATIVE_DAYS)
    hours: int = Field(0, ge=0, le=23 * MAX_RELATIVE_DAYS)
    minutes: int = Field(0, ge=0, le=59 * MAX_RELATIVE_DAYS)

    @property
    def delay(self) -> dt.timedelta:
        return dt.timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


class TimeOfDayWait(_Wait):
    kind: Literal["time_of_day"] = "time_of_day"
    time: dt.time


class DateWait(_Wait):
    kind: Literal["date"] = "date"
    at: dt.datetime


class WeekdayWait(_Wait):
    kind: Literal["weekday"] = "weekday"
    weekday: Weekday
    time: dt.time


class WindowWait(_Wait):
    kind: Literal["window"] = "window"
    start: dt.time
    end: dt.time


Wait = Annotated[
    RelativeWait | TimeOfDayWait | DateWait | WeekdayWait | WindowWait, Field(discriminator="kind")
]


def check_wait(wait: Wait, timezone: str | None, path: str) -> None:
    """Refuse a wait that cannot be computed: seconds in a time, an unknown zone, an empty window."""
    if timezone is not None:
        zone_named(timezone, f"{path}.timezone")
    for name in ("time", "start", "end"):
        value = getattr(wait, name, None)
        if isinstance(value, dt.time) and (value.second or value.microsecond or value.tzinfo):
            raise ValidationFailed(
                "a time is hours and minutes, without seconds or an offset", f"{path}.wait.{name}"
            )
    if isinstance(wait, WindowWait) and wait.start == wait.end:
        raise ValidationFailed("the active hours start and end at different times", f"{path}.wait.end")


def always_waits(wait: Wait) -> bool:
    """Whether a profile reaching the pause always waits some time (so the pause breaks a loop)."""
    if isinstance(wait, RelativeWait):
        return wait.delay > dt.timedelta(0)
    return isinstance(wait, TimeOfDayWait | WeekdayWait)


def wait_zone(
    timezone: str | None, use_profile_timezone: bool, profile_timezone: str | None, account_timezone: str
) -> str:
    """The zone a pause counts in: the profile's if asked for and known, else the pause's or the account's."""
    if use_profile_timezone and profile_timezone:
        with suppress(ValidationFailed):
            zone_named(profile_timezone)
            return profile_timezone
    return timezone or account_timezone


def wait_until(wait: Wait, reached_at: dt.datetime, zone: str) -> dt.datetime:
    """When a profile that reached the pause at `reached_at` goes on (at or before it: at once)."""
    if isinstance(wait, RelativeWait):
        return reached_at + wait.delay
    if isinstance(wait, TimeOfDayWait):
        return _next_wall(reached_at, wait.time, zone, lambda day: True)
    if isinstance(wait, WeekdayWait):
        number = wait.weekday.number
        return _next_wall(reached_at, wait.time, zone, lambda day: day.weekday() == number)
    if isinstance(wait, DateWait):
        if wait.at.tzinfo is not None:
            return wait.at.astimezone(dt.UTC)
        return local_run_instant(wait.at, zone)
    if _inside(wait, reached_at, zone):
        return reached_at
    return _next_wall(reached_at, wait.start, zone, lambda day: True)


def _inside(window: WindowWait, moment: dt.datetime, zone: str) -> bool:
    local = moment.astimezone(zone_named(zone)).time().replace(tzinfo=None)
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end


def _next_wall(
    after: dt.datetime, time: dt.time, zone: str, day_fits: Callable[[dt.date], bool]
) -> dt.datetime:
    """The first instant strictly after `after` when the zone's clock shows `time` on a fitting day."""
    day = after.astimezone(zone_named(zone)).date() - dt.timedelta(days=1)
    for _ in range(9):  # a week and the day either side covers any weekday
        if day_fits(day):
            instant = local_run_instant(dt.datetime.combine(day, time.replace(tzinfo=None)), zone)
            if instant > after:
                return instant
        day += dt.timedelta(days=1)
    raise AssertionError("no such day within nine days")  # pragma: no cover
