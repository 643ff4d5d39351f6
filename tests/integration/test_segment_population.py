"""A saved dynamic segment populated from the report store decides exactly what the per-profile path decides.

One log, made by commands and events: profiles (some subscribed, some without a snapshot in the
report store, as profiles made before snapshots existed), message history with events on the very
edges of a 30-day window and in the second of the save, goal events, a segment another names, then
the segment saved, then profiles changed, created and deleted after the save (so the report store,
which has the whole log, is ahead of the save). The log is copied; one copy is populated by the
membership processor profile by profile, the other from the report store (chDB and Debian's 18.16).
Both must append the same membership events (ids, causes, payloads) and end with the same members
and timers; the store's run must have folded only the profiles the store cannot decide.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from herald.domain import deliveries as dl
from herald.domain.events import Event, registry
from herald.domain.memberships import SegmentPopulationContinued
from herald.domain.profiles import (
    CreateProfile,
    DeleteProfile,
    UpdateProfile,
    profile_decider,
    profile_stream,
)
from herald.domain.segment_definitions import CreateSegment, SegmentSettings, segment_decider, segment_stream
from herald.domain.segments import SegmentQuery, check_query
from herald.domain.tracking import ActivityTracked
from herald.infra.clickhouse import ClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.infra.clock import ManualClock
from herald.infra.event_store import EventStore, NewEvent, RecordedEvent
from herald.infra.ids import IdSource, deterministic_id
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.bulk_population import bulk_evaluable
from herald.processors.runtime import InProcessRuntime
from herald.processors.segment_membership import SegmentMembershipProcessor
from herald.projections.clickhouse_sink import ClickHouseSink
from herald.projections.profile_states import profile_loader
from herald.reports.bulk_members import ReportStoreMembers, draining
from herald.services.aggregates import Aggregates, CommandContext
from tests.unit.test_segment_eval import subscribe
from tests.unit.test_segments import (
    DATABASES,
    RESOURCES,
    T0,
    field,
    goal,
    history,
    query,
    segment,
    subscription,
)

CONTEXT = CommandContext(actor="test", source="test")
PEOPLE = 60
SAVED = datetime(2026, 3, 15, 10, 0, 0, 400_000, tzinfo=UTC)  # the save, 0.4 s into its second
WINDOW = timedelta(days=30)
UNSNAPPED = 6  # the first profiles have no snapshot (the sink made them without its profile loader)
SCORED = {"sources": [{"database_id": "db1", "rules": [field("score", "gte", 2)]}]}
LAST_30_DAYS = {"kind": "last_days", "days": 30}

QUERIES: dict[str, dict[str, Any]] = {
    "fields, subscription, clicked in 30 days": query(
        field("score", "gte", 1),
        subscription(resource_id="r1", status_in=["subscribed"]),
        history(action="clicked", period=LAST_30_DAYS),
    ),
    "never clicked in 30 days, or pro": query(
        history(action="clicked", at_least=None, never=True, period=LAST_30_DAYS),
        field("plan", "equal", "Pro"),
        condition="or",
    ),
    "in a named segment, opened twice": query(segment("scored"), history(action="opened", at_least=2)),
    "a percent of the pro": query(field("plan", "equal", "Pro"), limit={"kind": "percent", "to_pct": 60}),
    "goal sum": query(goal(value=50), field("score", "lte", 3)),
}


def check(data: dict[str, Any]) -> SegmentQuery:
    lookup = {"scored": check_query(SCORED, DATABASES, {}.get, resources=RESOURCES)}
    return check_query(data, DATABASES, lookup.get, resources=RESOURCES)


# --------------------------------------------------------------------------------- the log


@dataclass
class Log:
    """The base log (no membership processor has run over it) and what the report store knows of it."""

    path: Path
    saved: int  # the position of the saved segment's SegmentCreated
    edges: set[str]  # profiles with a click on a second the 30-day window's edges fall in
    goals: set[str]  # profiles with goal events


def profile_id(n: int) -> str:
    return f"p{n:02d}"


def build_log(path: Path, data: dict[str, Any], populated_first: bool = False) -> Log:
    """The log; `populated_first`: a processor populated the segment (its bookmarks and membership
    events are in the log) before the changes that follow the save."""
    clock = ManualClock(T0)
    store = SqliteEventStore(path, clock)
    aggregates = Aggregates(store, registry, clock, IdSource(7))
    try:
        for n in range(PEOPLE):
            subscriptions = (subscribe("email", f"user{n}@example.com"),) if n % 3 else ()
            fields = {"email": f"user{n}@example.com", "score": n % 5, "plan": ("Basic", "Pro")[n % 2]}
            create = CreateProfile(profile_id(n), f"md5-{n}", f"xxh-{n}", DATABASES["db1"], fields, T0,
                                   subscriptions=subscriptions)  # fmt: skip
            aggregates.execute(profile_decider, profile_stream(profile_id(n)), create, CONTEXT)
        edges = _history(store)
        goals = {profile_id(n) for n in range(0, PEOPLE, 6)}
        for n in range(0, PEOPLE, 6):
            tracked = ActivityTracked(database_id="db1", profile_id=profile_id(n), name="buy",
                                      properties={"goal": "purchase", "value": 20 + n},
                                      at=SAVED - timedelta(days=n))  # fmt: skip
            _append(store, f"activity-{profile_id(n)}", tracked, n)
        clock.set(SAVED - timedelta(hours=1))
        _save(aggregates, "scored", SCORED)
        clock.set(SAVED)
        saved = _save(aggregates, "tested", data)
        if populated_first:
            run_processor(store, path.with_name("first-pass.sqlite"), None)
        clock.set(SAVED + timedelta(minutes=5))
        _after_the_save(aggregates, store)
        return Log(path, saved, edges, goals)
    finally:
        store.close()


def _history(store: SqliteEventStore) -> set[str]:
    """Clicks and opens before the save; returns the profiles with an event on an edge of a second."""
    window_start = SAVED - WINDOW
    moments: dict[int, list[datetime]] = {
        n: [SAVED - timedelta(days=2)]
        for n in range(0, PEOPLE, 4)  # clicked within the window
    }
    for n in range(1, PEOPLE, 4):
        moments[n] = [SAVED - timedelta(days=40)]  # long ago
    moments[5] = [window_start + timedelta(microseconds=300_000)]  # in at µs (0.7 s > 0.4 s), out at s
    moments[9] = [
        window_start - timedelta(microseconds=200_000)
    ]  # out either way, but its second is the edge
    moments[13] = [window_start + timedelta(seconds=1)]  # in either way
    moments[17] = [SAVED + timedelta(microseconds=300_000)]  # after the save's instant, in its second
    edges = {profile_id(n) for n in (5, 9, 17)}
    for n, ats in moments.items():
        for k, at in enumerate(ats):
            _track(store, n, dl.LinkClicked, at, k, link_id="l1", url="https://shop.example/")
    for n in range(2, PEOPLE, 3):
        for k in range(n % 4):  # 0 to 3 opens
            _track(store, n, dl.MessageOpened, SAVED - timedelta(days=3 + k), 10 + k)
    return edges


def _track(store: SqliteEventStore, n: int, kind: type[Event], at: datetime, k: int, **extra: Any) -> None:
    message_id = f"m-{n}-{k}"
    tracked = kind(message_id=message_id, campaign_id="c1", template_id="t1", template_version=1,
                   profile_id=profile_id(n), database_id="db1", resource_id="r1", channel="email",
                   contact=f"user{n}@example.com", unique=True, at=at, **extra)  # fmt: skip
    _append(store, f"message-{message_id}", tracked, k)


def _append(store: SqliteEventStore, stream: str, event: Event, k: int) -> None:
    new = NewEvent(deterministic_id("test", stream, k), event.type_name, event.to_data(), event.at)  # type: ignore[attr-defined]
    store.append(stream, [new])


def _save(aggregates: Aggregates, segment_id: str, data: dict[str, Any]) -> int:
    settings = SegmentSettings(name=segment_id, query=check(data))
    create = CreateSegment(segment_id, "dynamic", settings, "UTC", aggregates.clock.now())
    aggregates.execute(segment_decider, segment_stream(segment_id), create, CONTEXT)
    return aggregates.store.read_stream(segment_stream(segment_id))[-1].position


def _after_the_save(aggregates: Aggregates, store: SqliteEventStore) -> None:
    """Changes the report store sees but a decision as of the save must not."""
    at = aggregates.clock.now()
    for n in (12, 20, 21, 30):
        update = UpdateProfile(profile_id(n), DATABASES["db1"], {"score": 4 - n % 5, "plan": "Pro"}, at)
        aggregates.execute(profile_decider, profile_stream(profile_id(n)), update, CONTEXT)
    aggregates.execute(
        profile_decider, profile_stream(profile_id(22)), DeleteProfile(profile_id(22), at), CONTEXT
    )
    late = CreateProfile("p99", "md5-99", "xxh-99", DATABASES["db1"], {"score": 3, "plan": "Pro"}, at)
    aggregates.execute(profile_decider, profile_stream("p99"), late, CONTEXT)
    # a click of yesterday tracked only now (a late tracker batch): after the bookmarks in the log
    _track(
        store, 26, dl.LinkClicked, SAVED - timedelta(days=1), 50, link_id="l1", url="https://shop.example/"
    )


def fill_report_store(ch: ClickHouse, log: Log, until: int | None = None) -> None:
    """The sink over the log (to `until`), without snapshots for the first profiles' creations."""
    migrate(ch)
    store = SqliteEventStore(log.path, ManualClock(T0))
    try:
        records = [r for r in store.read_all() if until is None or r.position <= until]
        unsnapped = next(
            i for i, r in enumerate(records) if r.stream == profile_stream(profile_id(UNSNAPPED))
        )
        for sink, batch in (
            (ClickHouseSink(ch), records[:unsnapped]),
            (ClickHouseSink(ch, load_profile=profile_loader(store)), records[unsnapped:]),
        ):
            for start in range(0, len(batch), 25):
                chunk = batch[start : start + 25]
                for record in chunk:
                    sink.apply(record)
                sink.commit(chunk[-1].position)
    finally:
        store.close()


# ---------------------------------------------------------------------------- populating


class CountingStore:
    """The log, counting which profile streams are read (each read is one profile folded)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.read: set[str] = set()

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        if stream.startswith("profile-"):
            self.read.add(stream.removeprefix("profile-"))
        return self._store.read_stream(stream, from_version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class Population:
    appended: list[tuple[str, str, str, dict[str, Any]]]  # (id, type, stream, data) of what it appended
    members: list[tuple[str, str]]
    timers: list[tuple[str, str, int, str]]
    folded: set[str]  # the profiles it folded from their streams


def populate(source: Path, workdir: Path, ch: ClickHouse | None, **options: Any) -> Population:
    """Copy the log and run a fresh membership processor over the copy to its end (`run_processor`)."""
    workdir.mkdir()
    copy = workdir / "events.sqlite"
    with sqlite3.connect(source) as original, sqlite3.connect(copy) as target:
        original.backup(target)
    store = SqliteEventStore(copy, ManualClock(T0))
    try:
        return run_processor(store, workdir / "readmodels.sqlite", ch, **options)
    finally:
        store.close()


def run_processor(
    store: SqliteEventStore,
    readmodels: Path,
    ch: ClickHouse | None,
    chunk: int = 5,
    bulk_chunk: int = 5,
    catch_up: bool = True,
) -> Population:
    """A fresh membership processor over the log to its end, and what it did.

    With `ch`, it populates from that report store, whose sink goes on over the log when the processor
    brings it up (as the embedded engine's does), unless `catch_up` is off."""
    conn = open_readmodel_db(readmodels)
    try:
        head = store.head_position()
        counting = CountingStore(store)
        bulk = None
        if ch is not None:
            sink = ClickHouseSink(ch, load_profile=profile_loader(store))
            sink_runtime = InProcessRuntime(store, SqliteCheckpoints(conn), projections=[sink])
            bulk = ReportStoreMembers(ch, draining(sink_runtime) if catch_up else lambda: None)
        processor = SegmentMembershipProcessor(
            conn,
            counting,
            population_chunk=chunk,
            bulk=bulk,
            bulk_chunk=bulk_chunk,  # type: ignore[arg-type]
        )
        InProcessRuntime(store, SqliteCheckpoints(conn), projections=[processor], batch_size=50).drain()
        appended = [(str(e.event_id), e.type, e.stream, e.data) for e in store.read_all(head + 1)]
        members = conn.execute("SELECT segment_id, profile_id FROM segmem_members ORDER BY 1, 2").fetchall()
        timers = conn.execute("SELECT * FROM segmem_timers ORDER BY segment_id, profile_id").fetchall()
        return Population(appended, members, timers, counting.read)
    finally:
        conn.close()


@pytest.mark.parametrize("name", list(QUERIES))
def test_the_store_decides_what_the_profile_by_profile_path_decides(
    name: str, clickhouse: ClickHouse, tmp_path: Path
) -> None:
    log = build_log(tmp_path / "base.sqlite", QUERIES[name])
    fill_report_store(clickhouse, log)
    by_profile = populate(log.path, tmp_path / "by-profile", None)
    in_bulk = populate(log.path, tmp_path / "in-bulk", clickhouse)

    assert in_bulk.appended == by_profile.appended
    assert (in_bulk.members, in_bulk.timers) == (by_profile.members, by_profile.timers)
    assert any(e[1] == "ProfileEnteredSegment" and e[3]["segment_id"] == "tested" for e in in_bulk.appended)
    # The store decided the rest: only the profiles it cannot decide as of the save were folded,
    # besides those the events after the save touch (every one of them was folded profile by profile).
    everyone = {profile_id(n) for n in range(PEOPLE)}
    assert by_profile.folded >= everyone
    undecidable = {profile_id(n) for n in range(UNSNAPPED)} | {profile_id(n) for n in (12, 20, 21, 22, 30)}
    if "clicked in 30 days" in name:
        undecidable |= log.edges
    if "goal" in name:
        undecidable |= log.goals
    # A profile entering the named segment is evaluated for the segments naming it, profile by profile.
    cascaded = {
        e[3]["profile_id"]
        for e in in_bulk.appended
        if e[1].startswith("Profile") and e[3]["segment_id"] == "scored"
    }
    touched = {profile_id(26), "p99"} | (cascaded if "named segment" in name else set())
    assert undecidable <= in_bulk.folded <= undecidable | touched


@pytest.mark.parametrize(
    "name", ["fields, subscription, clicked in 30 days", "never clicked in 30 days, or pro"]
)
def test_steps_after_which_profiles_changed_are_decided_as_of_their_bookmarks(
    name: str, clickhouse: ClickHouse, tmp_path: Path
) -> None:
    """A processor rebuilt over a log where profiles changed and clicked after the population's
    bookmarks, with a report store that has every change: each step still decides as of its bookmark
    (profiles whose snapshot is newer are folded; clicks after it do not count), as the first
    population did: in bulk or profile by profile, the rebuild appends only the answers to those changes."""
    log = build_log(tmp_path / "base.sqlite", QUERIES[name], populated_first=True)
    fill_report_store(clickhouse, log)
    by_profile = populate(log.path, tmp_path / "by-profile", None)
    in_bulk = populate(log.path, tmp_path / "in-bulk", clickhouse)

    assert in_bulk.appended == by_profile.appended
    assert (in_bulk.members, in_bulk.timers) == (by_profile.members, by_profile.timers)
    # What the rebuild appended answers the changes after the bookmarks, never a population step again.
    assert {e[3]["cause"]["kind"] for e in in_bulk.appended if e[1].startswith("Profile")} <= {"event"}
    assert len(in_bulk.folded) < len(by_profile.folded) // 2


def test_a_rebuild_takes_the_steps_the_population_recorded(tmp_path: Path, clickhouse: ClickHouse) -> None:
    """Steps sized for the store (11 profiles) are in the bookmarks: a processor rebuilt over that log,
    deciding profile by profile (steps of 5), takes them again and appends nothing new."""
    log = build_log(tmp_path / "base.sqlite", QUERIES["fields, subscription, clicked in 30 days"])
    fill_report_store(clickhouse, log)
    first = populate(log.path, tmp_path / "first", clickhouse, bulk_chunk=11)
    chunks = [e[3]["chunk"] for e in first.appended if e[1] == SegmentPopulationContinued.type_name]
    assert chunks and set(chunks) == {11}

    populated = tmp_path / "first" / "events.sqlite"
    rebuilt = populate(populated, tmp_path / "rebuilt", None)
    assert rebuilt.appended == []  # every event it appended again was already in the log
    assert (rebuilt.members, rebuilt.timers) == (first.members, first.timers)


def test_a_report_store_behind_the_save_leaves_the_step_to_the_profiles(
    tmp_path: Path, clickhouse: ClickHouse
) -> None:
    log = build_log(tmp_path / "base.sqlite", QUERIES["fields, subscription, clicked in 30 days"])
    fill_report_store(clickhouse, log, until=log.saved - 2)
    behind = populate(log.path, tmp_path / "behind", clickhouse, catch_up=False)
    by_profile = populate(log.path, tmp_path / "by-profile", None)

    assert behind.appended == by_profile.appended
    assert behind.folded >= {profile_id(n) for n in range(PEOPLE)}  # nothing decided by the store


def test_which_queries_the_store_may_decide() -> None:
    assert all(bulk_evaluable(check(data)) for data in QUERIES.values())
    birthday = query(field("renewal", "anniversary", 0))  # a date crossing midnight: timers need the value
    assert not bulk_evaluable(check(birthday))
