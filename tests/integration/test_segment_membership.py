"""The realtime segment membership processor over the real SQLite log, driven by the runtime and a clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.api.wiring import Herald
from herald.domain import deliveries as dl
from herald.domain.bots import BotVerdict
from herald.domain.memberships import membership_stream
from herald.domain.messages import DecideMessage, MessageQueued, message_decider, message_stream
from herald.domain.segment_definitions import (
    ChangeSegment,
    CreateSegment,
    DeleteSegment,
    SegmentKind,
    SegmentSettings,
    segment_decider,
    segment_stream,
)
from herald.domain.segments import MessageAction, SegmentQuery, check_query
from herald.infra.clock import ManualClock
from herald.infra.event_store import RecordedEvent
from herald.infra.readmodel_db import SqliteCheckpoints
from herald.processors.runtime import InProcessRuntime
from herald.processors.segment_membership import SegmentMembershipProcessor
from herald.services.tracking import TrackInput
from tests.builders import CTX, DB, RESOURCE, create_resource, customers

ADULTS = {
    "sources": [
        {"database_id": DB, "rules": [{"kind": "field", "field": "age", "operator": "gte", "value": 18}]}
    ]
}
GOAL_OVER_10 = {"kind": "goal", "goal": "purchase", "aggregate": "sum", "operator": "gt", "value": 10}
CLICKED_30_DAYS = {
    "sources": [
        {
            "database_id": DB,
            "rules": [
                {
                    "kind": "message_history",
                    "action": "clicked",
                    "at_least": 1,
                    "period": {"kind": "last_days", "days": 30},
                }
            ],
        }
    ]
}


@dataclass
class World:
    herald: Herald
    clock: ManualClock
    processor: SegmentMembershipProcessor
    runtime: InProcessRuntime
    queries: dict[str, SegmentQuery]

    def drain(self) -> None:
        self.herald.runtime.drain()
        self.runtime.drain()

    def profile(self, email: str, **fields: Any) -> str:
        result = self.herald.profiles.create(DB, {"email": email, **fields}, CTX)
        assert result.profile_id is not None
        return result.profile_id

    def segment(self, segment_id: str, query: dict[str, Any], kind: SegmentKind = "dynamic") -> None:
        checked = check_query(
            query,
            {DB: self.herald.catalog.database(DB)},
            self.queries.get,
            resources={RESOURCE: self.herald.catalog.resource(RESOURCE)},
        )
        self.queries[segment_id] = checked
        settings = SegmentSettings(name=segment_id, query=checked)
        command = CreateSegment(segment_id, kind, settings, "UTC", self.clock.now())
        self.herald.aggregates.execute(segment_decider, segment_stream(segment_id), command, CTX)

    def message(self, message_id: str, profile_id: str, is_test: bool = False) -> str:
        now = self.clock.now()
        queued = MessageQueued(
            message_id=message_id,
            campaign_id="c1",
            run_id="r1",
            profile_id=profile_id,
            database_id=DB,
            resource_id=RESOURCE,
            channel="email",
            contact="x@example.org",
            template_id="t1",
            template_version=1,
            due_at=now,
            local_day=now.date(),
            is_test=is_test,
            at=now,
        )
        self.herald.aggregates.execute(
            message_decider, message_stream(message_id), DecideMessage(queued), CTX
        )
        return message_id

    def click(self, message_id: str, bot: bool = False) -> RecordedEvent:
        verdict = BotVerdict("user_agent", "a scanner") if bot else None
        hit = dl.RecordHit(
            "click", "1.2.3.4", "Mozilla/5.0", verdict, self.clock.now(), "l1", "https://x.example"
        )
        self.herald.aggregates.execute(dl.delivery_decider, message_stream(message_id), hit, CTX)
        return self.herald.store.read_stream(message_stream(message_id))[-1]

    def changes(self, segment_id: str) -> list[RecordedEvent]:
        return [
            e
            for e in self.herald.store.read_stream(membership_stream(segment_id))
            if e.type in ("ProfileEnteredSegment", "ProfileLeftSegment")
        ]

    def last_event(self, stream: str) -> RecordedEvent:
        return self.herald.store.read_stream(stream)[-1]


@pytest.fixture
def world(herald: Herald, clock: ManualClock) -> Iterator[World]:
    customers(herald)
    create_resource(herald)
    # the server's own processor, run by its runtime with every other consumer
    yield World(herald, clock, herald.projections.membership, herald.runtime, {})


def _summary(events: list[RecordedEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.data["profile_id"]) for e in events]


def test_a_field_change_enters_and_leaves_naming_the_event(world: World) -> None:
    world.segment("adults", ADULTS)
    world.drain()
    anna = world.profile("anna@example.org", age=17)
    world.drain()
    assert world.processor.members("adults") == []

    world.clock.advance(timedelta(hours=1))
    world.herald.profiles.update_fields(anna, {"age": 18}, CTX)
    world.drain()
    grown = world.last_event(f"profile-{anna}")
    [entered] = world.changes("adults")
    assert entered.type == "ProfileEnteredSegment"
    assert datetime.fromisoformat(entered.data["at"]) == grown.occurred_at
    assert entered.data["cause"] == {
        "kind": "event",
        "event_id": str(grown.event_id),
        "event_type": "ProfileFieldsUpdated",
        "stream": f"profile-{anna}",
    }
    assert world.processor.segments_of(anna) == ["adults"]

    world.herald.profiles.update_fields(anna, {"age": 16}, CTX)
    world.drain()
    younger = world.last_event(f"profile-{anna}")
    assert _summary(world.changes("adults")) == [
        ("ProfileEnteredSegment", anna),
        ("ProfileLeftSegment", anna),
    ]
    assert world.changes("adults")[-1].data["cause"]["event_id"] == str(younger.event_id)
    assert world.processor.members("adults") == []


def test_a_goal_tracked_for_a_profile_enters_though_its_properties_are_sealed_in_the_log(
    world: World,
) -> None:
    # The runtime skips tracked events whose stored JSON names no goal; the goal sits in the
    # properties, which the log holds sealed, so the sealed event must still say it names one.
    world.segment("buyers", {"sources": [{"database_id": DB, "rules": [GOAL_OVER_10]}]})
    anna = world.profile("anna@example.org")
    world.drain()
    bought = TrackInput(
        "Purchase", profile={"email": "anna@example.org"}, properties={"goal": "purchase", "value": 25}
    )
    viewed = TrackInput("Viewed", profile={"email": "anna@example.org"}, properties={"page": "/"})
    world.herald.tracking.track(DB, [viewed, bought], CTX)
    world.drain()
    as_stored = world.herald.store.inner.read_stream(f"activity-{anna}")  # type: ignore[attr-defined]
    assert [b"purchase" in e.stored_data for e in as_stored] == [False, False]  # the goal is sealed
    assert world.processor.members("buyers") == [anna]


def test_a_click_enters_and_the_window_expires_at_exactly_thirty_days(world: World) -> None:
    world.segment("clickers", CLICKED_30_DAYS)
    anna = world.profile("anna@example.org")
    world.message("m1", anna)
    world.drain()
    clicked_at = world.clock.advance(timedelta(minutes=5))
    click = world.click("m1")
    world.drain()
    [entered] = world.changes("clickers")
    assert entered.type == "ProfileEnteredSegment"
    assert entered.data["cause"]["event_id"] == str(click.event_id)
    due = clicked_at + timedelta(days=30)
    assert [(t.segment_id, t.profile_id, t.due_at) for t in world.processor.due_timers(due)] == [
        ("clickers", anna, due)
    ]

    assert world.processor.tick(due - timedelta(seconds=1)) == 0
    before = world.herald.store.head_position()
    world.drain()
    assert world.herald.store.head_position() == before

    world.clock.set(due + timedelta(seconds=3))  # the tick runs a little after the instant
    assert world.processor.tick(world.clock.now()) == 1
    assert world.processor.tick(world.clock.now()) == 1  # due still: a double tick appends the same id
    elapsed = [
        e
        for e in world.herald.store.read_stream(membership_stream("clickers"))
        if e.type == "SegmentWindowElapsed"
    ]
    assert len(elapsed) == 1
    world.drain()
    left = world.changes("clickers")[-1]
    assert left.type == "ProfileLeftSegment"
    assert datetime.fromisoformat(left.data["at"]) == due
    assert left.data["cause"] == {
        "kind": "timer",
        "event_id": str(elapsed[0].event_id),
        "event_type": "SegmentWindowElapsed",
        "stream": membership_stream("clickers"),
    }
    assert world.processor.due_timers(due + timedelta(days=365)) == []
    assert world.processor.tick(world.clock.now()) == 0


def test_a_second_click_before_expiry_moves_the_exit(world: World) -> None:
    world.segment("clickers", CLICKED_30_DAYS)
    anna = world.profile("anna@example.org")
    world.message("m1", anna)
    first = world.clock.advance(timedelta(minutes=5))
    world.click("m1")
    second = world.clock.advance(timedelta(days=10))
    world.click("m1")
    world.drain()
    assert _summary(world.changes("clickers")) == [("ProfileEnteredSegment", anna)]

    world.clock.set(first + timedelta(days=30))
    world.processor.tick(world.clock.now())
    world.drain()
    assert _summary(world.changes("clickers")) == [("ProfileEnteredSegment", anna)]  # still in
    [timer] = world.processor.due_timers(second + timedelta(days=30))
    assert timer.due_at == second + timedelta(days=30)

    world.clock.set(second + timedelta(days=30))
    world.processor.tick(world.clock.now())
    world.drain()
    left = world.changes("clickers")[-1]
    assert left.type == "ProfileLeftSegment"
    assert datetime.fromisoformat(left.data["at"]) == second + timedelta(days=30)


def test_entering_a_segment_enters_the_segment_whose_rule_names_it(world: World) -> None:
    world.segment("adults", ADULTS)
    world.segment(
        "in_adults",
        {"sources": [{"database_id": DB, "rules": [{"kind": "segment", "segment_id": "adults"}]}]},
    )
    anna = world.profile("anna@example.org", age=15)
    world.drain()
    world.herald.profiles.update_fields(anna, {"age": 30}, CTX)
    world.drain()
    grown = world.last_event(f"profile-{anna}")
    [entered] = world.changes("in_adults")
    assert entered.type == "ProfileEnteredSegment"
    assert entered.data["cause"]["event_id"] == str(grown.event_id)
    assert world.processor.segments_of(anna) == ["adults", "in_adults"]

    world.herald.profiles.update_fields(anna, {"age": 10}, CTX)
    world.drain()
    assert world.processor.segments_of(anna) == []
    assert world.changes("in_adults")[-1].type == "ProfileLeftSegment"


def test_a_new_segment_evaluates_the_existing_profiles(world: World) -> None:
    anna = world.profile("anna@example.org", age=40)
    world.profile("boris@example.org", age=12)
    carl = world.profile("carl@example.org", age=18)
    gone = world.profile("dora@example.org", age=50)
    world.herald.profiles.update_fields(anna, {"age": 41}, CTX)
    world.herald.profiles.delete(gone, CTX)
    world.drain()  # no segment yet: the processor only notes who exists
    world.segment("adults", ADULTS)
    world.drain()
    created = world.last_event(segment_stream("adults"))
    assert sorted(_summary(world.changes("adults"))) == sorted(
        [("ProfileEnteredSegment", anna), ("ProfileEnteredSegment", carl)]
    )
    assert {e.data["cause"]["kind"] for e in world.changes("adults")} == {"segment_saved"}
    assert {e.data["cause"]["event_id"] for e in world.changes("adults")} == {str(created.event_id)}
    assert world.processor.members("adults") == sorted([anna, carl])
    assert len(world.processor.profile_ids(DB)) == 3


def test_deleting_a_profile_or_the_segment_makes_members_leave(world: World) -> None:
    world.segment("adults", ADULTS)
    anna = world.profile("anna@example.org", age=40)
    boris = world.profile("boris@example.org", age=41)
    world.drain()
    world.herald.profiles.delete(anna, CTX)
    world.drain()
    assert world.changes("adults")[-1].type == "ProfileLeftSegment"
    assert world.changes("adults")[-1].data["profile_id"] == anna
    assert world.processor.profile_ids(DB) == [boris]

    world.herald.aggregates.execute(
        segment_decider, segment_stream("adults"), DeleteSegment("adults", world.clock.now()), CTX
    )
    world.drain()
    last = world.changes("adults")[-1]
    assert (last.type, last.data["profile_id"], last.data["cause"]["kind"]) == (
        "ProfileLeftSegment",
        boris,
        "segment_deleted",
    )
    assert world.processor.members("adults") == []
    assert world.processor.segments_of(boris) == []


def test_test_messages_and_bot_clicks_do_not_count(world: World) -> None:
    world.segment("clickers", CLICKED_30_DAYS)
    anna = world.profile("anna@example.org")
    world.message("test", anna, is_test=True)
    world.message("real", anna)
    world.clock.advance(timedelta(minutes=1))
    world.click("test")
    world.click("real", bot=True)
    world.drain()
    assert world.changes("clickers") == []
    assert world.processor.facts(anna).history == ()
    world.click("real")
    world.drain()
    assert _summary(world.changes("clickers")) == [("ProfileEnteredSegment", anna)]
    # the person's click, and the open it implies (the bot's click implied none)
    history = sorted(h.action.value for h in world.processor.facts(anna).history)
    assert history == [MessageAction.CLICKED.value, MessageAction.OPENED.value]


def test_a_discarded_batch_applied_again_appends_nothing_twice(world: World) -> None:
    world.segment("adults", ADULTS)
    world.segment("clickers", CLICKED_30_DAYS)
    world.herald.runtime.drain()
    start = world.processor.checkpoint()
    anna = world.profile("anna@example.org", age=30)
    world.message("m1", anna)
    world.click("m1")
    batch = list(world.herald.store.read_all(start + 1))
    for event in batch:
        world.processor.apply(event)
    appended = world.herald.store.head_position()
    assert len(world.changes("adults")) == 1 and len(world.changes("clickers")) == 1
    world.processor.discard()  # a crash before the commit
    assert world.processor.checkpoint() == start
    assert world.processor.members("adults") == []

    world.runtime.drain()
    assert world.herald.store.head_position() == appended
    assert _summary(world.changes("adults")) == [("ProfileEnteredSegment", anna)]
    assert _summary(world.changes("clickers")) == [("ProfileEnteredSegment", anna)]
    assert world.processor.members("adults") == [anna]


def test_a_processor_rebuilt_from_the_log_appends_nothing_new(world: World, tmp_path: Any) -> None:
    from herald.infra.readmodel_db import open_readmodel_db

    world.segment("adults", ADULTS)
    world.segment("clickers", CLICKED_30_DAYS)
    world.segment(
        "in_adults",
        {"sources": [{"database_id": DB, "rules": [{"kind": "segment", "segment_id": "adults"}]}]},
    )
    anna = world.profile("anna@example.org", age=30)
    boris = world.profile("boris@example.org", age=10)
    world.message("m1", anna)
    world.message("m2", boris)
    world.clock.advance(timedelta(hours=1))
    world.click("m1")
    world.click("m2")
    world.drain()
    world.herald.profiles.update_fields(boris, {"age": 20}, CTX)
    world.drain()
    world.clock.advance(timedelta(days=31))
    assert world.processor.tick(world.clock.now()) == 2
    world.drain()
    head = world.herald.store.head_position()
    members = {s: world.processor.members(s) for s in ("adults", "clickers", "in_adults")}
    assert members == {"adults": sorted([anna, boris]), "clickers": [], "in_adults": sorted([anna, boris])}

    conn = open_readmodel_db(tmp_path / "fresh.sqlite")
    rebuilt = SegmentMembershipProcessor(conn, world.herald.store)
    InProcessRuntime(world.herald.store, SqliteCheckpoints(conn), projections=[rebuilt], batch_size=7).drain()
    assert world.herald.store.head_position() == head
    assert {s: rebuilt.members(s) for s in members} == members
    assert rebuilt.checksum() == world.processor.checksum()
    conn.close()


def test_static_membership_is_folded_for_segment_rules(world: World) -> None:
    from herald.domain.memberships import MembershipCause, ProfileEnteredSegment
    from herald.infra.event_store import NewEvent
    from herald.infra.ids import deterministic_id

    world.segment("vip", {"sources": [{"database_id": DB}]}, kind="static")
    world.segment(
        "in_vip", {"sources": [{"database_id": DB, "rules": [{"kind": "segment", "segment_id": "vip"}]}]}
    )
    anna = world.profile("anna@example.org")
    world.drain()
    assert world.processor.members("in_vip") == []
    entered = ProfileEnteredSegment(
        segment_id="vip", profile_id=anna, at=world.clock.now(), cause=MembershipCause(kind="added", ref="e1")
    )
    world.herald.store.append(
        membership_stream("vip"),
        [
            NewEvent(
                deterministic_id("test", 1),
                "ProfileEnteredSegment",
                entered.to_data(),
                datetime.now(UTC),
                metadata={"actor": "test"},
            )
        ],
    )
    world.drain()
    assert world.processor.segments_of(anna) == ["in_vip", "vip"]
    assert world.changes("in_vip")[0].data["cause"]["event_type"] == "ProfileEnteredSegment"


def _age_at_least(years: int) -> dict[str, Any]:
    rule = {"kind": "field", "field": "age", "operator": "gte", "value": years}
    return {"sources": [{"database_id": DB, "rules": [rule]}]}


def test_a_saved_segment_is_populated_in_chunks_and_a_later_save_takes_over(
    world: World, tmp_path: Any
) -> None:
    from herald.infra.readmodel_db import open_readmodel_db

    ages = {world.profile(f"p{age}@example.org", age=age): age for age in range(20, 27)}
    world.segment("adults", _age_at_least(21))
    changed = _age_at_least(24)
    checked = check_query(changed, {DB: world.herald.catalog.database(DB)}, world.queries.get)
    change = ChangeSegment("adults", SegmentSettings(name="adults", query=checked), "UTC", world.clock.now())
    world.herald.aggregates.execute(segment_decider, segment_stream("adults"), change, CTX)

    # a processor of its own, three profiles a step (the server's, with 1,000 a step, is not drained)
    conn = open_readmodel_db(tmp_path / "chunked.sqlite")
    chunked = SegmentMembershipProcessor(conn, world.herald.store, population_chunk=3)
    InProcessRuntime(world.herald.store, SqliteCheckpoints(conn), projections=[chunked]).drain()
    assert chunked.members("adults") == sorted(p for p, age in ages.items() if age >= 24)
    log = world.herald.store.read_stream(membership_stream("adults"))
    bookmarks = [e for e in log if e.type == "SegmentPopulationContinued"]
    saves = [e.event_id for e in world.herald.store.read_stream(segment_stream("adults"))]
    # 7 profiles in steps of 3: two bookmarks per save; the first save's second one found it superseded
    assert [b.data["saved_event_id"] for b in bookmarks] == [str(saves[0]), str(saves[1]), str(saves[1])]
    changes = [e for e in log if e.type in ("ProfileEnteredSegment", "ProfileLeftSegment")]
    assert {e.data["cause"]["event_id"] for e in changes} == {str(saves[0]), str(saves[1])}
    # the first save's one step let some in, the second save let the under-24s out again
    assert sum(e.type == "ProfileEnteredSegment" for e in changes) - sum(
        e.type == "ProfileLeftSegment" for e in changes
    ) == len(chunked.members("adults"))
    conn.close()
