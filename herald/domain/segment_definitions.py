"""The segment aggregate: a named query, dynamic or static, and a static segment's recalculations.

A segment (guide, "Сегменты") is a named `SegmentQuery` (`domain/segments.py`)
over one or more profile databases, of one of two kinds:
- `dynamic`: its members are whoever matches the query at the moment it is
  used (a campaign launch, a count); Herald also keeps its membership in
  real time as events (`domain/memberships.py`), so triggers and "a
  profile's segments" see entries and exits as they happen;
- `static`: a list of profiles fixed when it is built. It is recalculated
  from its query on demand or on a `recalculation` schedule (any plan of
  `domain/schedules.py`), and profiles are added or removed by hand or by
  another segment's conditions. Every recalculation and edit is recorded
  here with its counts; the profiles themselves enter and leave through
  membership events.

Stream `segment-<id>`. The query stored is the checked one
(`segments.check_query`); `timezone` is the one evaluation uses for "today"
and date ranges (the account's when the segment was saved).

Decisions where the guide is silent:
- The kind is fixed at creation: turning a list into a rule (or back) is a new segment.
- A static segment built by hand only may have an empty query (no sources); it
  cannot be recalculated or scheduled.
- A recalculation timer (`StaticRecalculationScheduled`) is the next run of the
  schedule after the last recalculation (or after the save); a due timer
  recalculates once even if several runs were missed while the server was down.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.schedules import Schedule, next_runs
from herald.domain.segments import SegmentQuery

NAME_MAX_LENGTH = 255
SegmentKind = Literal["dynamic", "static"]
RecalculationReason = Literal["created", "changed", "manual", "schedule"]
EditHow = Literal["hand", "segment"]


def segment_stream(segment_id: str) -> str:
    """The stream of one segment's definition and recalculations."""
    return f"segment-{segment_id}"


class SegmentSettings(BaseModel):
    """What a user edits: the name, the query and (static) the recalculation schedule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    query: SegmentQuery = SegmentQuery()
    recalculation: Schedule | None = None


# --- events ------------------------------------------------------------------------------------


@registry.register("SegmentCreated")
class SegmentCreated(Event):
    segment_id: str
    kind: SegmentKind
    settings: SegmentSettings
    timezone: str
    at: datetime


@registry.register("SegmentChanged")
class SegmentChanged(Event):
    segment_id: str
    settings: SegmentSettings
    timezone: str
    at: datetime


@registry.register("SegmentDeleted")
class SegmentDeleted(Event):
    segment_id: str
    at: datetime


@registry.register("StaticSegmentRecalculated")
class StaticSegmentRecalculated(Event):
    """A static segment's members were set to its query's members (the changes are membership events)."""

    segment_id: str
    recalculation_id: str
    reason: RecalculationReason
    entered: int
    left: int
    size: int
    at: datetime


@registry.register("StaticSegmentEdited")
class StaticSegmentEdited(Event):
    """Profiles were added to or removed from a static segment by hand or by another segment's rules."""

    segment_id: str
    edit_id: str
    how: EditHow
    source_segment_id: str | None = None  # how == "segment"
    added: int
    removed: int
    size: int
    at: datetime


@registry.register("StaticRecalculationScheduled")
class StaticRecalculationScheduled(Event):
    segment_id: str
    due_at: datetime


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentState:
    segment_id: str = ""
    kind: SegmentKind = "dynamic"
    settings: SegmentSettings | None = None
    timezone: str = "UTC"
    created: bool = False
    deleted: bool = False
    recalculations: int = 0
    next_recalculation_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.created and not self.deleted

    @property
    def query(self) -> SegmentQuery:
        return self.settings.query if self.settings is not None else SegmentQuery()


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateSegment:
    """`settings.query` must have passed `segments.check_query`."""

    segment_id: str
    kind: SegmentKind
    settings: SegmentSettings
    timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeSegment:
    segment_id: str
    settings: SegmentSettings
    timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteSegment:
    segment_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordRecalculation:
    """The service computed and appended the membership changes; this records them on the segment."""

    segment_id: str
    recalculation_id: str
    reason: RecalculationReason
    entered: int
    left: int
    size: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordEdit:
    segment_id: str
    edit_id: str
    how: EditHow
    added: int
    removed: int
    size: int
    at: datetime
    source_segment_id: str | None = None


SegmentCommand = CreateSegment | ChangeSegment | DeleteSegment | RecordRecalculation | RecordEdit


def _valid_name(name: str) -> str:
    text = name.strip()
    if not text:
        raise ValidationFailed("a segment needs a name", "name")
    if len(text) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"the name is longer than {NAME_MAX_LENGTH} characters", "name")
    return text


def _checked(kind: SegmentKind, settings: SegmentSettings) -> SegmentSettings:
    if kind == "dynamic" and not settings.query.sources:
        raise ValidationFailed("a dynamic segment needs a query with at least one source", "query.sources")
    if settings.recalculation is not None and kind == "dynamic":
        raise ValidationFailed(
            "only static segments are recalculated on a schedule (a dynamic one is always current)",
            "recalculation",
        )
    if settings.recalculation is not None and not settings.query.sources:
        raise ValidationFailed("a static segment built by hand has no query to recalculate", "recalculation")
    return settings.model_copy(update={"name": _valid_name(settings.name)})


def _next_timer(segment_id: str, settings: SegmentSettings, timezone: str, after: datetime) -> list[Event]:
    if settings.recalculation is None:
        return []
    runs = next_runs(settings.recalculation, after, 1, timezone)
    return [StaticRecalculationScheduled(segment_id=segment_id, due_at=runs[0])] if runs else []


def decide(command: SegmentCommand, state: SegmentState) -> list[Event]:
    """The events `command` causes on the segment in `state`."""
    if isinstance(command, CreateSegment):
        if not command.segment_id.strip():
            raise ValidationFailed("a segment needs an id", "segment_id")
        if state.created:
            raise AlreadyExists(f"the segment id {command.segment_id!r} is taken", "segment_id")
        settings = _checked(command.kind, command.settings)
        created = SegmentCreated(
            segment_id=command.segment_id,
            kind=command.kind,
            settings=settings,
            timezone=command.timezone,
            at=command.at,
        )
        return [created, *_next_timer(command.segment_id, settings, command.timezone, command.at)]
    if not state.exists:
        gone = "was deleted" if state.deleted else "does not exist"
        raise NotFound(f"the segment {command.segment_id!r} {gone}", "segment_id")
    if isinstance(command, ChangeSegment):
        return _change(command, state)
    if isinstance(command, DeleteSegment):
        return [SegmentDeleted(segment_id=state.segment_id, at=command.at)]
    if isinstance(command, RecordRecalculation):
        return _recalculated(command, state)
    return _edited(command, state)


def _change(command: ChangeSegment, state: SegmentState) -> list[Event]:
    settings = _checked(state.kind, command.settings)
    if settings == state.settings and command.timezone == state.timezone:
        return []
    changed = SegmentChanged(
        segment_id=state.segment_id, settings=settings, timezone=command.timezone, at=command.at
    )
    schedule_moved = settings.recalculation != (state.settings.recalculation if state.settings else None)
    timer = _next_timer(state.segment_id, settings, command.timezone, command.at) if schedule_moved else []
    return [changed, *timer]


def _recalculated(command: RecordRecalculation, state: SegmentState) -> list[Event]:
    if state.kind != "static":
        raise RuleViolated("a dynamic segment is never recalculated: it is always current", "segment_id")
    if not state.query.sources:
        raise RuleViolated("this static segment was built by hand and has no query to recalculate", "query")
    recalculated = StaticSegmentRecalculated(
        segment_id=state.segment_id,
        recalculation_id=command.recalculation_id,
        reason=command.reason,
        entered=command.entered,
        left=command.left,
        size=command.size,
        at=command.at,
    )
    assert state.settings is not None
    return [recalculated, *_next_timer(state.segment_id, state.settings, state.timezone, command.at)]


def _edited(command: RecordEdit, state: SegmentState) -> list[Event]:
    if state.kind != "static":
        raise RuleViolated("profiles are added to and removed from static segments only", "segment_id")
    return [
        StaticSegmentEdited(
            segment_id=state.segment_id,
            edit_id=command.edit_id,
            how=command.how,
            source_segment_id=command.source_segment_id,
            added=command.added,
            removed=command.removed,
            size=command.size,
            at=command.at,
        )
    ]


def evolve(state: SegmentState, event: Event) -> SegmentState:
    """The segment after `event`."""
    if isinstance(event, SegmentCreated):
        return SegmentState(event.segment_id, event.kind, event.settings, event.timezone, created=True)
    if isinstance(event, SegmentChanged):
        timer = state.next_recalculation_at if event.settings.recalculation is not None else None
        return replace(state, settings=event.settings, timezone=event.timezone, next_recalculation_at=timer)
    if isinstance(event, SegmentDeleted):
        return replace(state, deleted=True, next_recalculation_at=None)
    if isinstance(event, StaticSegmentRecalculated):
        return replace(state, recalculations=state.recalculations + 1, next_recalculation_at=None)
    if isinstance(event, StaticRecalculationScheduled):
        return replace(state, next_recalculation_at=event.due_at)
    return state


segment_decider: Decider[SegmentCommand, SegmentState] = Decider(SegmentState(), decide, evolve)
