"""Scheduled import ("Импорт по расписанию"), stream `scheduledimport-<id>`: a URL imported on a schedule.

A scheduled import names a database, a URL that answers CSV, XLSX or JSON
(an array of objects, or one object per line), the file import's mapping and
options, and a campaign schedule (any of its plans, with its timezone and
"Деактивировать расписание после указанной даты"). While active its stream
holds the timer of its next run (`ScheduledImportRunScheduled`); when the
timer is due the service fetches the URL (through the SSRF guard) and starts
a file import job for it (`ScheduledImportRunStarted`, naming the job), or
records why it could not (`ScheduledImportRunFailed`); either way the next
run's timer follows, until the schedule has no run left.

Decisions where the guide is silent:
- The guide's source is an SQL connector made in the admin panel; Herald reads
  a URL instead (the issue's design), so the connector's "{lastitem}" cursor
  and the source-table clean-up have no counterpart here.
- "Запустить сразу" (run now, on save or later) schedules a run due at once;
  the planned timer comes after it.
- Sending in the profile's time zone means nothing for an import and is refused.
- A run's number counts every run, planned or immediate; a timer fires once
  (its number must be the next one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import Field, HttpUrl

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.import_spec import TableMapping
from herald.domain.matching import MatchMode
from herald.domain.schedules import Schedule, check_schedule, next_runs


def scheduled_import_stream(import_id: str) -> str:
    return f"scheduledimport-{import_id}"


class ScheduledImportSettings(TableMapping):
    name: str = Field(min_length=1, max_length=200)
    database_id: str
    url: HttpUrl
    format: str = Field("auto", pattern="^(auto|csv|xlsx|json)$")
    schedule: Schedule
    tags: tuple[str, ...] = ()


# --- events ------------------------------------------------------------------------------------


@registry.register("ScheduledImportSaved")
class ScheduledImportSaved(Event):
    import_id: str
    settings: ScheduledImportSettings
    at: datetime


@registry.register("ScheduledImportActivated")
class ScheduledImportActivated(Event):
    import_id: str
    at: datetime


@registry.register("ScheduledImportDeactivated")
class ScheduledImportDeactivated(Event):
    import_id: str
    at: datetime
    reason: str = "manual"  # or "schedule_ended"


@registry.register("ScheduledImportRunScheduled")
class ScheduledImportRunScheduled(Event):
    import_id: str
    run_number: int
    due_at: datetime


@registry.register("ScheduledImportRunStarted")
class ScheduledImportRunStarted(Event):
    import_id: str
    run_number: int
    job_id: str
    at: datetime


@registry.register("ScheduledImportRunFailed")
class ScheduledImportRunFailed(Event):
    import_id: str
    run_number: int
    reason: str
    at: datetime


@registry.register("ScheduledImportDeleted")
class ScheduledImportDeleted(Event):
    import_id: str
    at: datetime


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduledImportState:
    import_id: str = ""
    settings: ScheduledImportSettings | None = None
    active: bool = False
    deleted: bool = False
    runs: int = 0
    next_run: ScheduledImportRunScheduled | None = None

    @property
    def exists(self) -> bool:
        return self.settings is not None and not self.deleted


def evolve(state: ScheduledImportState, event: Event) -> ScheduledImportState:
    match event:
        case ScheduledImportSaved():
            return replace(state, import_id=event.import_id, settings=event.settings)
        case ScheduledImportActivated():
            return replace(state, active=True)
        case ScheduledImportDeactivated():
            return replace(state, active=False, next_run=None)
        case ScheduledImportRunScheduled():
            return replace(state, next_run=event)
        case ScheduledImportRunStarted() | ScheduledImportRunFailed():
            return replace(state, runs=event.run_number, next_run=None)
        case ScheduledImportDeleted():
            return replace(state, deleted=True, active=False, next_run=None)
    return state


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveScheduledImport:
    """Create or replace; `active` starts (or keeps) the timers, `run_now` adds a run due at once."""

    import_id: str
    settings: ScheduledImportSettings
    at: datetime
    account_timezone: str
    active: bool = True
    run_now: bool = False
    create: bool = True


@dataclass(frozen=True, slots=True)
class ActivateScheduledImport:
    at: datetime
    account_timezone: str


@dataclass(frozen=True, slots=True)
class DeactivateScheduledImport:
    at: datetime


@dataclass(frozen=True, slots=True)
class RunScheduledImportNow:
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordRunStarted:
    run_number: int
    job_id: str
    at: datetime
    account_timezone: str


@dataclass(frozen=True, slots=True)
class RecordRunFailed:
    run_number: int
    reason: str
    at: datetime
    account_timezone: str


@dataclass(frozen=True, slots=True)
class DeleteScheduledImport:
    at: datetime


ScheduledImportCommand = (
    SaveScheduledImport
    | ActivateScheduledImport
    | DeactivateScheduledImport
    | RunScheduledImportNow
    | RecordRunStarted
    | RecordRunFailed
    | DeleteScheduledImport
)


def decide(command: ScheduledImportCommand, state: ScheduledImportState) -> list[Event]:
    if isinstance(command, SaveScheduledImport):
        return _save(command, state)
    if not state.exists:
        raise NotFound("there is no such scheduled import", "import_id")
    match command:
        case ActivateScheduledImport():
            if state.active:
                return []
            activated = ScheduledImportActivated(import_id=state.import_id, at=command.at)
            return [activated, *_next_timer(state, command.at, command.account_timezone, state.runs + 1)]
        case DeactivateScheduledImport():
            return (
                [ScheduledImportDeactivated(import_id=state.import_id, at=command.at)] if state.active else []
            )
        case RunScheduledImportNow():
            if state.next_run is not None and state.next_run.due_at <= command.at:
                return []  # a run is due already
            number = state.next_run.run_number if state.next_run else state.runs + 1
            return [
                ScheduledImportRunScheduled(import_id=state.import_id, run_number=number, due_at=command.at)
            ]
        case RecordRunStarted() | RecordRunFailed():
            return _run_recorded(command, state)
        case DeleteScheduledImport():
            return [ScheduledImportDeleted(import_id=state.import_id, at=command.at)]
    raise TypeError(f"not a scheduled import command: {command!r}")  # pragma: no cover


def _save(command: SaveScheduledImport, state: ScheduledImportState) -> list[Event]:
    if command.create and state.settings is not None:
        raise AlreadyExists(f"scheduled import {command.import_id!r} exists already", "import_id")
    if not command.create and not state.exists:
        raise NotFound("there is no such scheduled import", "import_id")
    settings = _checked(command.settings, command.at, command.account_timezone, command.active)
    events: list[Event] = []
    if settings != state.settings:
        events.append(ScheduledImportSaved(import_id=command.import_id, settings=settings, at=command.at))
    saved = evolve(replace(state, import_id=command.import_id), events[0]) if events else state
    if not command.active:
        if state.active:
            events.append(ScheduledImportDeactivated(import_id=command.import_id, at=command.at))
        return events
    if not state.active:
        events.append(ScheduledImportActivated(import_id=command.import_id, at=command.at))
    number = state.runs + 1
    if command.run_now:
        events.append(
            ScheduledImportRunScheduled(import_id=command.import_id, run_number=number, due_at=command.at)
        )
    elif settings != state.settings or not state.active:
        events += _next_timer(saved, command.at, command.account_timezone, number)
    return events


def _checked(
    settings: ScheduledImportSettings, at: datetime, timezone: str, active: bool
) -> ScheduledImportSettings:
    schedule = settings.schedule
    if schedule.profile_timezone:
        raise ValidationFailed(
            "an import runs at one time, not in each profile's time zone", "schedule.profile_timezone"
        )
    if settings.match is MatchMode.CUSTOM and not settings.field_name:
        raise ValidationFailed("matching by a custom field needs its field_name", "field_name")
    checked = check_schedule(schedule, now=at if active else None, account_timezone=timezone)
    return settings.model_copy(update={"schedule": checked})


def _next_timer(state: ScheduledImportState, after: datetime, timezone: str, number: int) -> list[Event]:
    assert state.settings is not None
    upcoming = next_runs(state.settings.schedule, after, 1, timezone)
    if not upcoming:
        return [ScheduledImportDeactivated(import_id=state.import_id, at=after, reason="schedule_ended")]
    return [ScheduledImportRunScheduled(import_id=state.import_id, run_number=number, due_at=upcoming[0])]


def _run_recorded(command: RecordRunStarted | RecordRunFailed, state: ScheduledImportState) -> list[Event]:
    if command.run_number <= state.runs:
        return []  # this run is recorded already
    timer = state.next_run
    if timer is None or timer.run_number != command.run_number or timer.due_at > command.at:
        raise RuleViolated(f"run {command.run_number} is not due", "run_number")
    done: Event
    if isinstance(command, RecordRunStarted):
        done = ScheduledImportRunStarted(
            import_id=state.import_id, run_number=command.run_number, job_id=command.job_id, at=command.at
        )
    else:
        done = ScheduledImportRunFailed(
            import_id=state.import_id, run_number=command.run_number, reason=command.reason, at=command.at
        )
    # the next planned run comes after both this run's due time and now (an immediate run keeps the plan)
    after = max(command.at, timer.due_at)
    return [done, *_next_timer(evolve(state, done), after, command.account_timezone, command.run_number + 1)]


scheduled_import_decider: Decider[ScheduledImportCommand, ScheduledImportState] = Decider(
    ScheduledImportState(), decide, evolve
)
