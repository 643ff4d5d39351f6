"""The segment aggregate as tables: given events, when a command, then events or an error with its path."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event
from herald.domain.schedules import DailySchedule
from herald.domain.segment_definitions import (
    ChangeSegment,
    CreateSegment,
    DeleteSegment,
    RecordEdit,
    RecordRecalculation,
    SegmentChanged,
    SegmentCreated,
    SegmentDeleted,
    SegmentSettings,
    StaticRecalculationScheduled,
    StaticSegmentEdited,
    StaticSegmentRecalculated,
    segment_decider,
    segment_stream,
)
from herald.domain.segments import SegmentQuery, Source
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
TZ = "UTC"
QUERY = SegmentQuery(sources=(Source(database_id="1"),))
DAILY = DailySchedule(time=time(6, 0))
NEXT_6AM = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)

DYNAMIC = SegmentSettings(name="Buyers", query=QUERY)
STATIC = SegmentSettings(name="List", query=QUERY)
SCHEDULED = SegmentSettings(name="Nightly", query=QUERY, recalculation=DAILY)
BY_HAND = SegmentSettings(name="By hand")


def created(kind: str = "static", settings: SegmentSettings = STATIC) -> SegmentCreated:
    return SegmentCreated(segment_id="1", kind=kind, settings=settings, timezone=TZ, at=T0)  # type: ignore[arg-type]


def recalculated(reason: str = "manual", rid: str = "r1") -> StaticSegmentRecalculated:
    return StaticSegmentRecalculated(
        segment_id="1",
        recalculation_id=rid,
        reason=reason,
        entered=2,
        left=1,
        size=5,
        at=T1,  # type: ignore[arg-type]
    )


def record(rid: str = "r1") -> RecordRecalculation:
    return RecordRecalculation("1", rid, "manual", 2, 1, 5, T1)


def edit(how: str = "hand", source: str | None = None) -> RecordEdit:
    return RecordEdit("1", "e1", how, 3, 0, 8, T1, source)  # type: ignore[arg-type]


def test_the_stream_is_named_after_the_segment() -> None:
    assert segment_stream("7") == "segment-7"


@pytest.mark.parametrize(
    ("given", "when", "expected"),
    [
        pytest.param(
            [],
            CreateSegment("1", "dynamic", DYNAMIC, TZ, T0),
            [created("dynamic", DYNAMIC)],
            id="create dynamic",
        ),
        pytest.param([], CreateSegment("1", "static", STATIC, TZ, T0), [created()], id="create static"),
        pytest.param(
            [],
            CreateSegment("1", "static", BY_HAND, TZ, T0),
            [created("static", BY_HAND)],
            id="a static list by hand has no query",
        ),
        pytest.param(
            [],
            CreateSegment("1", "static", SegmentSettings(name="  Trim  ", query=QUERY), TZ, T0),
            [created("static", SegmentSettings(name="Trim", query=QUERY))],
            id="the name is trimmed",
        ),
        pytest.param(
            [],
            CreateSegment("1", "static", SCHEDULED, TZ, T0),
            [created("static", SCHEDULED), StaticRecalculationScheduled(segment_id="1", due_at=NEXT_6AM)],
            id="a schedule sets the first timer",
        ),
        pytest.param(
            [created()],
            ChangeSegment("1", SegmentSettings(name="Renamed", query=QUERY), TZ, T1),
            [
                SegmentChanged(
                    segment_id="1", settings=SegmentSettings(name="Renamed", query=QUERY), timezone=TZ, at=T1
                )
            ],
            id="change",
        ),
        pytest.param(
            [created()], ChangeSegment("1", STATIC, TZ, T1), [], id="an unchanged save records nothing"
        ),
        pytest.param(
            [created()],
            ChangeSegment("1", SCHEDULED, TZ, T1),
            [
                SegmentChanged(segment_id="1", settings=SCHEDULED, timezone=TZ, at=T1),
                StaticRecalculationScheduled(segment_id="1", due_at=NEXT_6AM),
            ],
            id="a new schedule sets a timer",
        ),
        pytest.param(
            [created("static", SCHEDULED), StaticRecalculationScheduled(segment_id="1", due_at=NEXT_6AM)],
            ChangeSegment("1", SCHEDULED.model_copy(update={"name": "Other"}), TZ, T1),
            [
                SegmentChanged(
                    segment_id="1",
                    settings=SCHEDULED.model_copy(update={"name": "Other"}),
                    timezone=TZ,
                    at=T1,
                )
            ],
            id="the same schedule keeps its timer",
        ),
        pytest.param(
            [created()], DeleteSegment("1", T1), [SegmentDeleted(segment_id="1", at=T1)], id="delete"
        ),
        pytest.param([created()], record(), [recalculated()], id="record a recalculation"),
        pytest.param(
            [created("static", SCHEDULED)],
            record(),
            [recalculated(), StaticRecalculationScheduled(segment_id="1", due_at=NEXT_6AM)],
            id="a recalculation sets the next timer after itself",
        ),
        pytest.param(
            [created("static", BY_HAND)],
            edit(),
            [
                StaticSegmentEdited(
                    segment_id="1", edit_id="e1", how="hand", added=3, removed=0, size=8, at=T1
                )
            ],
            id="edit by hand",
        ),
        pytest.param(
            [created()],
            edit("segment", "2"),
            [
                StaticSegmentEdited(
                    segment_id="1",
                    edit_id="e1",
                    how="segment",
                    source_segment_id="2",
                    added=3,
                    removed=0,
                    size=8,
                    at=T1,
                )
            ],
            id="edit by another segment",
        ),
    ],
)
def test_decide(given: list[Event], when: object, expected: list[Event]) -> None:
    assert then(segment_decider, given, when) == expected


@pytest.mark.parametrize(
    ("given", "when", "error", "path"),
    [
        pytest.param(
            [], CreateSegment(" ", "static", STATIC, TZ, T0), ValidationFailed, "segment_id", id="no id"
        ),
        pytest.param(
            [created()], CreateSegment("1", "static", STATIC, TZ, T0), AlreadyExists, "segment_id", id="taken"
        ),
        pytest.param(
            [created(), SegmentDeleted(segment_id="1", at=T1)],
            CreateSegment("1", "static", STATIC, TZ, T0),
            AlreadyExists,
            "segment_id",
            id="a deleted id is never reused",
        ),
        pytest.param(
            [],
            CreateSegment("1", "static", SegmentSettings(name=" "), TZ, T0),
            ValidationFailed,
            "name",
            id="no name",
        ),
        pytest.param(
            [],
            CreateSegment("1", "static", SegmentSettings(name="x" * 256), TZ, T0),
            ValidationFailed,
            "name",
            id="name too long",
        ),
        pytest.param(
            [],
            CreateSegment("1", "dynamic", BY_HAND, TZ, T0),
            ValidationFailed,
            "query.sources",
            id="a dynamic segment needs a query",
        ),
        pytest.param(
            [],
            CreateSegment("1", "dynamic", SCHEDULED, TZ, T0),
            ValidationFailed,
            "recalculation",
            id="a dynamic segment has no schedule",
        ),
        pytest.param(
            [],
            CreateSegment("1", "static", BY_HAND.model_copy(update={"recalculation": DAILY}), TZ, T0),
            ValidationFailed,
            "recalculation",
            id="a hand-built list has nothing to recalculate on a schedule",
        ),
        pytest.param([], ChangeSegment("1", STATIC, TZ, T1), NotFound, "segment_id", id="change unknown"),
        pytest.param(
            [created(), SegmentDeleted(segment_id="1", at=T1)],
            DeleteSegment("1", T1),
            NotFound,
            "segment_id",
            id="delete twice",
        ),
        pytest.param(
            [created(), SegmentDeleted(segment_id="1", at=T1)],
            record(),
            NotFound,
            "segment_id",
            id="record deleted",
        ),
        pytest.param(
            [created("dynamic", DYNAMIC)],
            record(),
            RuleViolated,
            "segment_id",
            id="a dynamic one is never recalculated",
        ),
        pytest.param(
            [created("static", BY_HAND)], record(), RuleViolated, "query", id="a hand-built list has no query"
        ),
        pytest.param(
            [created("dynamic", DYNAMIC)], edit(), RuleViolated, "segment_id", id="edit a dynamic one"
        ),
        pytest.param(
            [created()],
            ChangeSegment("1", BY_HAND.model_copy(update={"recalculation": DAILY}), TZ, T1),
            ValidationFailed,
            "recalculation",
            id="a change is checked like a creation",
        ),
    ],
)
def test_refused(given: list[Event], when: object, error: type[DomainError], path: str) -> None:
    then_error(segment_decider, given, when, error, path)


def test_the_state_follows_timers_recalculations_and_deletion() -> None:
    timer = StaticRecalculationScheduled(segment_id="1", due_at=NEXT_6AM)
    state = segment_decider.fold([created("static", SCHEDULED), timer])
    assert state.exists and state.kind == "static" and state.next_recalculation_at == NEXT_6AM
    assert state.query == QUERY
    state = segment_decider.fold([recalculated()], state)
    assert (state.recalculations, state.next_recalculation_at) == (1, None)
    state = segment_decider.fold(
        [timer, SegmentChanged(segment_id="1", settings=STATIC, timezone=TZ, at=T1)], state
    )
    assert state.next_recalculation_at is None  # the schedule was dropped, so is its timer
    state = segment_decider.fold([SegmentDeleted(segment_id="1", at=T1)], state)
    assert not state.exists and state.deleted
