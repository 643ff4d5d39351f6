"""Segment members now: the SQL engine (chDB and 18.16) and the in-process engine give the same answers.

Profiles are made through the profile commands into a real log; the report sink folds that log into
`profile_snapshots` (with a small profile cache, so it also loads profiles it evicted); the in-process
engine reads the same profiles from the log. Segment rules resolve through a segment catalog (one
dynamic, one static segment), external rules through a real local HTTP server and a stored CSV.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from herald.domain.errors import NotFound, RuleViolated
from herald.domain.events import registry
from herald.domain.profiles import (
    CreateProfile,
    DeleteProfile,
    ProfileState,
    UpdateProfile,
    profile_decider,
    profile_stream,
)
from herald.domain.segment_definitions import SegmentKind
from herald.domain.segment_eval import HistoryEvent, ProfileFacts
from herald.domain.segments import MessageAction, SegmentQuery
from herald.domain.statuses import Status
from herald.infra.clickhouse import ClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.infra.clock import ManualClock
from herald.infra.external_sets import ExternalSetFailed, ExternalSets
from herald.infra.ids import IdSource
from herald.infra.segment_files import SegmentFiles
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.projections.clickhouse_sink import ClickHouseSink, table_contents
from herald.projections.profile_states import profile_loader
from herald.services.aggregates import Aggregates, CommandContext
from herald.services.segment_members import (
    FetchedSets,
    InProcessMembers,
    MembersEngine,
    SegmentMembers,
    SqlMembers,
)
from tests.integration.test_external_sets import LOOPBACK, serve
from tests.integration.test_segment_sql import write_facts
from tests.unit.test_segment_eval import NOW, TZ, subscribe
from tests.unit.test_segments import DB, T0, check, external, field, history, query, segment, subscription

CONTEXT = CommandContext(actor="test", source="test")
PEOPLE = 24
CLICKED = {f"p{i:02d}" for i in range(0, PEOPLE, 3)}  # clicked yesterday
STATIC = ("p01", "p02", "p05", "p08", "p99")  # p99 does not exist: a stale entry matches nothing


def person(i: int) -> dict[str, Any]:
    return {"email": f"User{i}@Example.com", "score": i % 4, "_fname": f"N{i}"}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SqliteEventStore]:
    """Profiles made by commands: created (some subscribed), some updated later, one deleted."""
    clock = ManualClock(T0)
    store = SqliteEventStore(tmp_path / "events.sqlite", clock)
    aggregates = Aggregates(store, registry, clock, IdSource())
    for i in range(PEOPLE):
        status = Status.UNSUBSCRIBED if i % 5 == 0 else None
        subscriptions = (subscribe("email", f"user{i}@example.com", status=status),) if i % 2 == 0 else ()
        create = CreateProfile(
            f"p{i:02d}", f"md5-{i}", f"xxh-{i}", DB, person(i), T0, subscriptions=subscriptions
        )
        aggregates.execute(profile_decider, profile_stream(f"p{i:02d}"), create, CONTEXT)
    for i in range(0, PEOPLE, 4):  # later events of profiles the sink saw in an earlier batch
        update = UpdateProfile(f"p{i:02d}", DB, {"score": 3}, T0 + timedelta(days=1))
        aggregates.execute(profile_decider, profile_stream(f"p{i:02d}"), update, CONTEXT)
    aggregates.execute(profile_decider, profile_stream("p07"), DeleteProfile("p07", T0), CONTEXT)
    yield store
    store.close()


def sink_everything(ch: ClickHouse, store: SqliteEventStore, batch: int) -> None:
    """The whole log through a sink in batches of `batch` events, restarted between batches."""
    records = list(store.read_all())
    for start in range(0, len(records), batch):
        sink = ClickHouseSink(ch, load_profile=profile_loader(store), profile_cache_size=3)
        for record in records[start : start + batch]:
            sink.apply(record)
        sink.commit(records[min(start + batch, len(records)) - 1].position)


FACTS = {
    profile_id: ProfileFacts(history=(HistoryEvent(MessageAction.CLICKED, NOW - timedelta(days=1), "c1"),))
    for profile_id in CLICKED
}


class Catalog:
    """Two stored segments: `plain` (dynamic: score 1) and `static` (a stored list)."""

    def segment(self, segment_id: str) -> tuple[SegmentKind, SegmentQuery, str]:
        if segment_id == "plain":
            return "dynamic", check(query(field("score", "equal", 1))), "Europe/Moscow"
        if segment_id == "static":
            return "static", SegmentQuery(), TZ
        raise NotFound(f"there is no segment {segment_id!r}", "segment_id")

    def static_members(self, segment_id: str) -> Collection[str]:
        return STATIC


class LogProfiles:
    """The in-process engine's port over the log (a real deployment reads the profiles projection)."""

    def __init__(self, store: SqliteEventStore) -> None:
        self._load = profile_loader(store)
        self._ids = sorted(
            {e.stream.removeprefix("profile-") for e in store.read_all() if e.stream.startswith("profile-")}
        )

    def profile_ids(self, database_id: str) -> Iterable[str]:
        return self._ids

    def profile(self, profile_id: str) -> ProfileState:
        return self._load(profile_id, 10**9)

    def facts(self, profile_id: str) -> ProfileFacts:
        return FACTS.get(profile_id, ProfileFacts())


@pytest.fixture
def server() -> Iterator[str]:
    with serve() as base:
        yield base


@pytest.fixture
def files(tmp_path: Path) -> SegmentFiles:
    return SegmentFiles.in_data_dir(tmp_path / "data")


@pytest.fixture
def fetched(files: SegmentFiles) -> Iterator[FetchedSets]:
    with ExternalSets(LOOPBACK) as sets:
        yield FetchedSets(sets.post_url, files.column)


@pytest.fixture
def engines(clickhouse: ClickHouse, log: SqliteEventStore, fetched: FetchedSets) -> dict[str, SegmentMembers]:
    """The service over each engine: SQL on this ClickHouse (sink-written snapshots), and in-process."""
    migrate(clickhouse)
    sink_everything(clickhouse, log, batch=7)
    write_facts(clickhouse, FACTS)
    built: dict[str, MembersEngine] = {
        "sql": SqlMembers(clickhouse),
        "in_process": InProcessMembers(LogProfiles(log)),
    }
    return {name: SegmentMembers(Catalog(), engine, fetched) for name, engine in built.items()}


def answers(engines: dict[str, SegmentMembers], checked: SegmentQuery) -> tuple[str, ...]:
    """Both engines' members, count and sample, asserted equal; the members."""
    found = {name: service.members(checked, NOW, TZ) for name, service in engines.items()}
    assert found["sql"] == found["in_process"], checked.model_dump(mode="json", exclude_defaults=True)
    members = found["sql"]
    for service in engines.values():
        assert service.count(checked, NOW, TZ) == len(members)
        assert service.sample(checked, NOW, TZ, 3) == list(members[:3])
    return members


def ids(*numbers: int) -> tuple[str, ...]:
    return tuple(f"p{i:02d}" for i in numbers)


def test_field_subscription_and_history_rules(engines: dict[str, SegmentMembers]) -> None:
    clicked = history(action="clicked", period={"kind": "last_days", "days": 30})
    rules = (field("score", "equal", 3), subscription(status_in=["subscribed"]), clicked)
    members = answers(engines, check(query(*rules)))
    # score 3: i % 4 == 3 or updated (i % 4 == 0); subscribed: even, not i % 5 == 0; clicked: i % 3 == 0
    assert members == ids(12)
    assert answers(engines, check(query(field("score", "equal", 3), condition="or"))) == ids(
        *(i for i in range(PEOPLE) if i % 4 in (0, 3) and i != 7)
    )


def test_segment_rules_resolve_dynamic_and_static_segments(engines: dict[str, SegmentMembers]) -> None:
    assert answers(engines, check(query(segment("plain")))) == ids(1, 5, 9, 13, 17, 21)
    assert answers(engines, check(query(segment("static")))) == ids(1, 2, 5, 8)
    both = check(query(segment("plain"), segment("static", "not_in")))
    assert answers(engines, both) == ids(9, 13, 17, 21)
    for service in engines.values():
        assert service.of_segment("plain", NOW) == ids(1, 5, 9, 13, 17, 21)
        assert service.of_segment("static", NOW) == STATIC
        with pytest.raises(NotFound):
            service.of_segment("nope", NOW)


def test_external_rules_from_a_post_url_and_a_csv(
    engines: dict[str, SegmentMembers],
    server: str,
    files: SegmentFiles,
) -> None:
    # The local server's /lines answer has no profile's email; /array's "1", 2 are scores.
    listed = files.store(b"email;note\nUSER3@example.com;x\nuser4@example.com;y\nnot an email;z\n")
    from_csv = check(query(external({"kind": "csv", "file_id": listed, "column": 1})))
    assert answers(engines, from_csv) == ids(3, 4)
    scores = check(query(external({"kind": "post_url", "url": f"{server}/array"}, name="score")))
    assert answers(engines, scores) == ids(*(i for i in range(PEOPLE) if i % 4 in (1, 2)))  # "3.5": no int
    nobody = check(query(external({"kind": "post_url", "url": f"{server}/lines"})))
    assert answers(engines, nobody) == ()
    outside = check(
        query({**external({"kind": "csv", "file_id": listed, "column": 1}), "operator": "not_in"})
    )
    assert set(answers(engines, outside)) == set(ids(*range(PEOPLE))) - set(ids(3, 4, 7))
    empty = files.store(b"email\n")  # a header and no values: an empty set
    assert answers(engines, check(query(external({"kind": "csv", "file_id": empty, "column": 1})))) == ()
    everyone = check(
        query({**external({"kind": "csv", "file_id": empty, "column": 1}), "operator": "not_in"})
    )
    assert len(answers(engines, everyone)) == PEOPLE - 1


def test_a_failed_fetch_fails_the_evaluation(engines: dict[str, SegmentMembers], server: str) -> None:
    broken = check(
        query(field("score", "equal", 1), external({"kind": "post_url", "url": f"{server}/missing"}))
    )
    for service in engines.values():
        with pytest.raises(ExternalSetFailed) as failed:
            service.members(broken, NOW, TZ)
        assert failed.value.path == "query.sources.0.rules.1.source"
    unknown = check(query(external({"kind": "csv", "file_id": "0" * 64, "column": 1})))
    with pytest.raises(NotFound):
        engines["sql"].count(unknown, NOW, TZ)


def test_a_cycle_met_at_evaluation_is_refused(log: SqliteEventStore, fetched: FetchedSets) -> None:
    class Looping(Catalog):
        """A store whose `plain` names itself (check_query refuses that at save time; data may be old)."""

        def segment(self, segment_id: str) -> tuple[SegmentKind, SegmentQuery, str]:
            return "dynamic", SegmentQuery.model_validate(query(segment("plain"))), TZ

    looping = SegmentMembers(Looping(), InProcessMembers(LogProfiles(log)), fetched)
    with pytest.raises(RuleViolated) as refused:
        looping.members(check(query(segment("plain"))), NOW, TZ)
    assert "plain → plain" in refused.value.reason


def test_the_sink_writes_each_profiles_latest_state(clickhouse: ClickHouse, log: SqliteEventStore) -> None:
    migrate(clickhouse)
    sink_everything(clickhouse, log, batch=7)
    in_batches = table_contents(clickhouse, "profile_snapshots")
    assert len(in_batches) == PEOPLE
    by_id = {row[0]: row for row in in_batches}
    assert (
        by_id["p07"][3] == 0 and by_id["p00"][-1] > by_id["p01"][-1]
    )  # deleted; versioned by its last event
    clickhouse.execute("TRUNCATE TABLE profile_snapshots")
    sink_everything(clickhouse, log, batch=1000)  # one batch: the same rows
    assert table_contents(clickhouse, "profile_snapshots") == in_batches


def test_the_sink_without_a_loader_writes_no_snapshots(clickhouse: ClickHouse, log: SqliteEventStore) -> None:
    migrate(clickhouse)
    sink = ClickHouseSink(clickhouse)
    records = list(log.read_all())
    for record in records:
        sink.apply(record)
    sink.commit(records[-1].position)
    assert table_contents(clickhouse, "profile_snapshots") == []
    assert table_contents(clickhouse, "profile_creations")
