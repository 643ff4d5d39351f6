"""The event store contract: every adapter runs all of it, and is done when it passes.

Each test runs once per adapter (`sqlite`, `esdb`). Tests name their streams
with a per-test suffix and count positions from the head they find, so the
suite also runs against a shared server that already holds events.

Subscriptions are driven with asyncio and never wait by sleeping: the
`asyncio.wait_for` timeouts are a safety net. The `store` fixture polls for
other processes' appends only once an hour, so a subscription test that passes
proves appends in the same process wake subscribers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import traceback
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID, uuid4

import pytest

from herald.infra.clock import Clock, ManualClock
from herald.infra.event_store import (
    ANY,
    NO_STREAM,
    AppendResult,
    EventFilter,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from herald.infra.sqlite_event_store import SqliteEventStore

OCCURRED = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
AN_HOUR = 3600.0
SAFETY_NET = 5.0  # seconds; a healthy subscription answers in milliseconds
T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """Where an adapter keeps its events; picklable, so writer processes open it too."""

    kind: str
    target: str  # the SQLite file, or the server's URL

    def open(self, clock: Clock, *, poll_interval: float = 0.05) -> EventStore:
        """A new store object on this backend (one per process, as in production)."""
        if self.kind == "sqlite":
            return SqliteEventStore(self.target, clock, poll_interval=poll_interval)
        if self.kind == "sqlite-colliding":
            return SqliteEventStore(
                self.target,
                clock,
                poll_interval=poll_interval,
                id_hash=colliding_hash,
                stream_hash=colliding_stream_hash,
            )
        from herald.infra.esdb_event_store import EsdbEventStore

        store: EventStore = EsdbEventStore(self.target, clock)
        return store


def colliding_hash(event_ids: Sequence[bytes]) -> list[int]:
    """A hash with 4 values: most ids share theirs with stored ones, so every check must compare ids."""
    return [event_id[0] % 4 for event_id in event_ids]


def colliding_stream_hash(stream: str) -> int:
    """Two keys for every stream name: a stream's key finds other streams' events too."""
    return len(stream) % 2


@pytest.fixture(params=["sqlite", "sqlite-colliding", "esdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # `sqlite-colliding` runs the whole contract with the id and stream hashes made weak on purpose.
    if request.param.startswith("sqlite"):
        return Backend(request.param, str(tmp_path / "events.db"))
    url = os.environ.get("HERALD_ESDB_URL")
    if not url:
        pytest.skip(
            "EventStoreDB/KurrentDB cannot be installed on these machines;"
            " set HERALD_ESDB_URL to run the contract against one"
        )
    return Backend("esdb", url)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))


@pytest.fixture
def store(backend: Backend, clock: ManualClock) -> Iterator[EventStore]:
    opened = backend.open(clock, poll_interval=AN_HOUR)
    yield opened
    opened.close()


@pytest.fixture
def name() -> Callable[[str], str]:
    """Stream names unique to the test: `name("profile")` → `profile-<suffix>`."""
    suffix = uuid4().hex[:12]
    return lambda stem: f"{stem}-{suffix}"


def events(count: int, type_: str = "ProfileUpdated") -> list[NewEvent]:
    """`count` events with fresh ids."""
    return [NewEvent(uuid4(), type_, {"ordinal": i}, OCCURRED) for i in range(count)]


def positions_of(store: EventStore, from_position: int) -> list[int]:
    return [event.position for event in store.read_all(from_position)]


@contextlib.asynccontextmanager
async def subscribed(store: EventStore, from_position: int) -> AsyncIterator[AsyncIterator[RecordedEvent]]:
    """A subscription, ended on leaving the block."""
    # Adapters implement `subscribe` as an async generator; closing it unsubscribes.
    subscription = cast(AsyncGenerator[RecordedEvent, None], store.subscribe(from_position))
    try:
        yield subscription
    finally:
        await subscription.aclose()


async def take(subscription: AsyncIterator[RecordedEvent], count: int) -> list[RecordedEvent]:
    """The subscription's next `count` events."""
    # asyncio.timeout rather than wait_for: the subscription runs in the caller's
    # task, so a `take` scheduled before `then` has caught up and waits for news
    # by the time `then` runs.
    async with asyncio.timeout(SAFETY_NET):
        return [await anext(subscription) for _ in range(count)]


def then(call: Callable[[], T]) -> asyncio.Task[T]:
    """`call`, in a task that runs after the tasks already scheduled."""

    async def run() -> T:
        return call()

    return asyncio.ensure_future(run())


def assert_log_is_whole(store: EventStore, base: int, written: Collection[UUID]) -> None:
    """Positions after `base` run without gaps, hold each written id once, and
    every stream's versions run 1..k."""
    log = list(store.read_all(base + 1))
    assert [event.position for event in log] == list(range(base + 1, base + 1 + len(log)))
    assert sorted(event.event_id for event in log) == sorted(written)
    versions: dict[str, list[int]] = defaultdict(list)
    for event in log:
        versions[event.stream].append(event.version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), stream
        assert store.stream_version(stream) == len(seen)


# -- appending and reading ----------------------------------------------------


def test_a_round_trip_keeps_every_envelope_field(
    store: EventStore, clock: ManualClock, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    base = store.head_position()
    created = NewEvent(
        event_id=uuid4(),
        type="ProfileCreated",
        data={
            "email": "анна@example.com",
            "fields": {"age": 31, "score": 4.5, "vip": True, "tags": ["a", "b"], "note": None},
        },
        # Another zone and microseconds: the store keeps the instant, in UTC.
        occurred_at=datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=3))),
        schema_version=3,
        metadata={"correlation_id": "c-1", "causation_id": "c-0", "actor": "user-7"},
    )
    updated = NewEvent(uuid4(), "ProfileUpdated", {}, OCCURRED)

    result = store.append(stream, [created, updated], NO_STREAM)

    assert result == AppendResult(stream_version=2, positions=(base + 1, base + 2))
    first, second = store.read_stream(stream)
    assert first == RecordedEvent(
        event_id=created.event_id,
        stream=stream,
        version=1,
        position=base + 1,
        type="ProfileCreated",
        schema_version=3,
        occurred_at=created.occurred_at,
        recorded_at=clock.now(),
        data=created.data,
        metadata=created.metadata,
    )
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert first.recorded_at.utcoffset() == timedelta(0)
    assert (second.version, second.position, second.schema_version) == (2, base + 2, 1)
    assert (second.data, second.metadata) == ({}, {})
    assert list(store.read_all(base + 1)) == [first, second]


def test_recorded_at_comes_from_the_clock(
    store: EventStore, clock: ManualClock, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    store.append(stream, events(1))
    later = clock.advance(timedelta(minutes=5, microseconds=7))
    store.append(stream, events(1))

    first, second = store.read_stream(stream)

    assert second.recorded_at - first.recorded_at == timedelta(minutes=5, microseconds=7)
    assert second.recorded_at == later


def test_a_new_store_starts_at_position_one(store: EventStore, name: Callable[[str], str]) -> None:
    if store.head_position() != 0:
        pytest.skip("this store is shared and already holds events")
    assert list(store.read_all()) == []

    assert store.append(name("profile"), events(1)).positions == (1,)
    assert store.head_position() == 1


def test_versions_count_from_one_in_each_stream(store: EventStore, name: Callable[[str], str]) -> None:
    ann, bob = name("profile-ann"), name("profile-bob")
    assert store.stream_version(ann) == 0
    assert store.read_stream(ann) == []

    store.append(ann, events(2))
    store.append(bob, events(1))
    store.append(ann, events(1))

    assert [e.version for e in store.read_stream(ann)] == [1, 2, 3]
    assert [e.version for e in store.read_stream(bob)] == [1]
    assert (store.stream_version(ann), store.stream_version(bob)) == (3, 1)
    assert [e.version for e in store.read_stream(ann, from_version=2)] == [2, 3]


def test_read_all_starts_at_a_position_and_stops_at_a_limit(
    store: EventStore, name: Callable[[str], str]
) -> None:
    base = store.head_position()
    store.append(name("profile"), events(5))

    assert positions_of(store, base + 3) == [base + 3, base + 4, base + 5]
    assert [e.position for e in store.read_all(base + 2, limit=2)] == [base + 2, base + 3]
    assert list(store.read_all(base + 1, limit=0)) == []
    assert list(store.read_all(base + 6)) == []


def test_read_range_reads_the_positions_asked_with_the_events_the_filter_matches(
    store: EventStore, name: Callable[[str], str]
) -> None:
    base = store.head_position()
    profile, message, other = name("profile"), name("message"), name("campaign")
    store.append_many(
        [
            StreamAppend(profile, events(2, "ProfileCreated")),
            StreamAppend(message, events(2, "MessageQueued")),
            StreamAppend(other, events(2, "CampaignCreated")),
        ]
    )
    everything = list(store.read_all(base + 1))

    only = EventFilter(frozenset({"MessageQueued"}), (profile[: len("profile-")],))
    assert store.read_range(base + 1, base + 6) == everything
    assert store.read_range(base + 1, base + 6, only) == everything[:4]
    assert store.read_range(base + 2, base + 3, only) == everything[1:3]
    assert store.read_range(base + 1, base + 6, EventFilter(frozenset({"CampaignCreated"}))) == everything[4:]
    assert store.read_range(base + 1, base + 6, EventFilter()) == []
    assert store.read_range(base + 5, base + 4) == []


def test_read_range_narrows_a_type_to_the_events_whose_payload_mentions_a_mark(
    store: EventStore, name: Callable[[str], str]
) -> None:
    base = store.head_position()
    # The third mentions a mark as a value: a byte search lets it through, the reader decides.
    payloads = [{"properties": {"goal": "signup"}}, {"properties": {"sku": 1}}, {"note": "pixel_id"}]
    store.append(name("activity"), [NewEvent(uuid4(), "Tracked", p, OCCURRED) for p in payloads])
    store.append(name("profile"), events(1, "ProfileCreated"))
    everything = list(store.read_all(base + 1))
    goals = EventFilter(frozenset({"Tracked", "ProfileCreated"}), (), {"Tracked": (b'"goal"', b'"pixel_id"')})

    assert store.read_range(base + 1, base + 4, goals) == [everything[0], everything[2], everything[3]]
    assert [goals.matches(e) for e in everything] == [True, False, True, True]
    # A reader that wants every Tracked event widens the union back to all of them.
    every = goals.union(EventFilter(frozenset({"Tracked"})))
    assert every.mentions == {}
    assert store.read_range(base + 1, base + 4, every) == everything


def test_head_position_is_the_last_committed_event(store: EventStore, name: Callable[[str], str]) -> None:
    base = store.head_position()
    store.append(name("profile"), events(3))
    assert store.head_position() == base + 3
    store.append_many([StreamAppend(name("campaign"), events(2))])
    assert store.head_position() == base + 5


def test_the_log_has_no_gaps_and_streams_no_holes(store: EventStore, name: Callable[[str], str]) -> None:
    base = store.head_position()
    written: list[UUID] = []
    for round_ in range(10):
        batch = events(1 + round_ % 3)
        store.append(name(f"profile-{round_ % 4}"), batch)
        more = events(2)
        store.append_many([StreamAppend(name("campaign"), more[:1]), StreamAppend(name("message"), more[1:])])
        written += [e.event_id for e in batch + more]

    assert_log_is_whole(store, base, written)


def test_a_big_batch_crosses_every_internal_page(store: EventStore, name: Callable[[str], str]) -> None:
    # More events than the SQLite adapter's IN-list chunk (500) and read page (5,000).
    base = store.head_position()
    appends = [StreamAppend(name(f"profile-{i}"), events(1)) for i in range(6000)]

    results = store.append_many(appends)

    assert [r.positions for r in results] == [(base + i,) for i in range(1, 6001)]
    assert store.append_many(appends) == results
    assert positions_of(store, base + 1) == list(range(base + 1, base + 6001))
    assert_log_is_whole(store, base, [a.events[0].event_id for a in appends])


# -- optimistic concurrency ---------------------------------------------------


def test_an_expected_version_that_matches_appends(store: EventStore, name: Callable[[str], str]) -> None:
    stream = name("profile")
    store.append(stream, events(2))

    assert store.append(stream, events(1), expected_version=2).stream_version == 3


def test_a_stale_expected_version_is_refused_with_the_actual_one(
    store: EventStore, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    store.append(stream, events(3))
    head = store.head_position()

    with pytest.raises(WrongExpectedVersion) as refused:
        store.append(stream, events(1), expected_version=2)

    assert (refused.value.stream, refused.value.expected, refused.value.actual) == (stream, 2, 3)
    assert store.stream_version(stream) == 3
    assert store.head_position() == head


def test_no_stream_appends_to_an_empty_stream_only(store: EventStore, name: Callable[[str], str]) -> None:
    stream = name("profile")
    assert store.append(stream, events(1), NO_STREAM).stream_version == 1

    with pytest.raises(WrongExpectedVersion) as refused:
        store.append(stream, events(1), NO_STREAM)

    assert (refused.value.expected, refused.value.actual) == (NO_STREAM, 1)
    assert store.stream_version(stream) == 1


def test_any_appends_wherever_the_stream_is(store: EventStore, name: Callable[[str], str]) -> None:
    stream = name("profile")
    assert store.append(stream, events(1), ANY).stream_version == 1
    assert store.append(stream, events(2)).stream_version == 3


def test_an_append_of_nothing_still_checks_the_expected_version(
    store: EventStore, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    store.append(stream, events(2))

    assert store.append(stream, [], expected_version=2) == AppendResult(2, ())
    with pytest.raises(WrongExpectedVersion):
        store.append(stream, [], NO_STREAM)


# -- idempotent append ----------------------------------------------------------


def test_re_appending_stored_ids_returns_the_stored_positions(
    store: EventStore, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    batch = events(2)
    first = store.append(stream, batch, NO_STREAM)
    store.append(stream, events(1))  # the stream moves on: the retry's version is stale now
    head = store.head_position()

    assert store.append(stream, batch, NO_STREAM) == first
    assert store.append(stream, batch, expected_version=0) == first
    assert store.append(stream, batch) == first
    assert store.head_position() == head
    assert [e.event_id for e in store.read_stream(stream)][:2] == [e.event_id for e in batch]
    assert len(store.read_stream(stream)) == 3


def test_a_partial_overlap_appends_only_the_new_events(store: EventStore, name: Callable[[str], str]) -> None:
    stream = name("profile")
    a, b, c = events(3)
    stored = store.append(stream, [a, b])

    result = store.append(stream, [b, c], expected_version=2)

    assert result == AppendResult(3, (stored.positions[1], stored.positions[1] + 1))
    assert [e.event_id for e in store.read_stream(stream)] == [a.event_id, b.event_id, c.event_id]


def test_a_partial_overlap_still_checks_the_expected_version(
    store: EventStore, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    a, b = events(2)
    store.append(stream, [a])

    with pytest.raises(WrongExpectedVersion):
        store.append(stream, [a, b], NO_STREAM)
    assert store.stream_version(stream) == 1


def test_an_id_stored_through_another_store_object_is_not_stored_again(
    backend: Backend, store: EventStore, clock: ManualClock, name: Callable[[str], str]
) -> None:
    # Another process's append: this store object's view of the stored ids must include it.
    stream = name("profile")
    store.append(stream, events(1))  # this object has seen ids before the other one writes
    batch = events(3)
    other = backend.open(clock)
    try:
        stored = other.append(stream, batch)
    finally:
        other.close()
    head = store.head_position()

    assert store.append(stream, batch) == stored
    assert store.append_many([StreamAppend(stream, batch[1:])])[0].positions == stored.positions[1:]
    assert store.head_position() == head


def test_a_stream_moved_on_through_another_store_object_is_checked_at_its_real_version(
    backend: Backend, store: EventStore, clock: ManualClock, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    store.append(stream, events(1), NO_STREAM)  # this object now knows the stream at version 1
    other = backend.open(clock)
    try:
        other.append(stream, events(2), 1)
    finally:
        other.close()

    with pytest.raises(WrongExpectedVersion) as refused:
        store.append(stream, events(1), 1)
    assert refused.value.actual == 3
    assert store.append(stream, events(1), 3).stream_version == 4


def test_every_id_of_many_batches_is_stored_once(store: EventStore, name: Callable[[str], str]) -> None:
    streams = [name(f"message{i}") for i in range(3)]
    sent = [events(40) for _ in streams]
    first = store.append_many([StreamAppend(s, b) for s, b in zip(streams, sent, strict=True)])
    # Every batch again, each mixed with new events, in another order.
    fresh = [events(5) for _ in streams]
    again = store.append_many(
        [StreamAppend(s, [*n, *b]) for s, b, n in zip(streams[::-1], sent[::-1], fresh[::-1], strict=True)]
    )

    for result, old in zip(again, first[::-1], strict=True):
        assert result.positions[5:] == old.positions
    for stream, batch, new in zip(streams, sent, fresh, strict=True):
        assert [e.event_id for e in store.read_stream(stream)] == [e.event_id for e in [*batch, *new]]


def test_an_event_id_twice_in_one_append_is_refused(store: EventStore, name: Callable[[str], str]) -> None:
    (event,) = events(1)
    with pytest.raises(ValueError, match="twice"):
        store.append_many([StreamAppend(name("campaign"), [event]), StreamAppend(name("message"), [event])])


# -- atomic multi-stream append ---------------------------------------------------


def test_append_many_answers_each_stream_in_order(store: EventStore, name: Callable[[str], str]) -> None:
    base = store.head_position()
    campaign, message = name("campaign"), name("message")
    store.append(campaign, events(1))

    results = store.append_many(
        [
            StreamAppend(campaign, events(2), expected_version=1),
            StreamAppend(message, events(1), NO_STREAM),
            StreamAppend(campaign, events(1), expected_version=3),
        ]
    )

    assert results == [
        AppendResult(3, (base + 2, base + 3)),
        AppendResult(1, (base + 4,)),
        AppendResult(4, (base + 5,)),
    ]


def test_one_conflict_in_append_many_writes_nothing_anywhere(
    store: EventStore, name: Callable[[str], str]
) -> None:
    campaign, message, profile = name("campaign"), name("message"), name("profile")
    store.append(message, events(1))
    head = store.head_position()
    appends = [
        StreamAppend(campaign, events(2)),
        StreamAppend(profile, events(1), NO_STREAM),
        StreamAppend(message, events(1), NO_STREAM),  # the stream exists: conflict
    ]

    with pytest.raises(WrongExpectedVersion) as refused:
        store.append_many(appends)

    assert refused.value.stream == message
    assert store.head_position() == head
    assert store.read_stream(campaign) == store.read_stream(profile) == []
    assert store.stream_version(message) == 1
    # Nothing of the refused call was stored, so its ids go in on a corrected retry.
    corrected = [*appends[:2], StreamAppend(message, appends[2].events, expected_version=1)]
    assert [r.stream_version for r in store.append_many(corrected)] == [2, 1, 2]
    assert positions_of(store, head + 1) == list(range(head + 1, head + 5))


def test_a_retried_append_many_returns_the_same_answers(
    store: EventStore, name: Callable[[str], str]
) -> None:
    appends = [
        StreamAppend(name("campaign"), events(2), NO_STREAM),
        StreamAppend(name("message"), events(1), NO_STREAM),
    ]
    first = store.append_many(appends)
    head = store.head_position()

    assert store.append_many(appends) == first
    assert store.head_position() == head


def test_appends_from_many_threads_keep_the_log_whole(store: EventStore, name: Callable[[str], str]) -> None:
    base = store.head_position()

    def write(thread: int) -> list[UUID]:
        written = []
        for round_ in range(25):
            shared, own = events(1), events(2)
            store.append(name("shared"), shared)
            store.append(name(f"own-{thread}"), own, expected_version=2 * round_)
            written += [e.event_id for e in shared + own]
        return written

    with ThreadPoolExecutor(4) as pool:
        written = [event_id for ids in pool.map(write, range(4)) for event_id in ids]

    assert_log_is_whole(store, base, written)


# -- subscriptions ------------------------------------------------------------------


async def test_subscribe_catches_up_then_follows_live_appends(
    store: EventStore, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    base = store.head_position()
    history = store.append(stream, events(3))

    async with subscribed(store, base + 1) as subscription:
        caught_up = await take(subscription, 3)
        following = asyncio.ensure_future(take(subscription, 2))
        appended = await then(lambda: store.append(stream, events(2)))
        followed = await following

    assert tuple(e.position for e in caught_up) == history.positions
    assert tuple(e.position for e in followed) == appended.positions


async def test_subscribe_is_woken_by_appends_from_other_threads(
    store: EventStore, name: Callable[[str], str]
) -> None:
    base = store.head_position()

    async with subscribed(store, base + 1) as subscription:
        following = asyncio.ensure_future(take(subscription, 1))
        appending = asyncio.ensure_future(asyncio.to_thread(store.append, name("profile"), events(1)))
        (followed,) = await following

    assert followed.position == (await appending).positions[0]


async def test_subscribe_from_a_position_skips_what_came_before(
    store: EventStore, name: Callable[[str], str]
) -> None:
    stream = name("profile")
    store.append(stream, events(4))
    head = store.head_position()

    async with subscribed(store, head - 1) as subscription:
        caught_up = await take(subscription, 2)
        following = asyncio.ensure_future(take(subscription, 1))
        appended = await then(lambda: store.append(stream, events(1)))
        followed = await following

    assert [e.position for e in caught_up + followed] == [head - 1, head, *appended.positions]
    assert [e.version for e in caught_up + followed] == [3, 4, 5]


async def test_subscribe_sees_appends_made_through_another_store(
    backend: Backend, clock: ManualClock, name: Callable[[str], str]
) -> None:
    # Another store object on the same backend stands in for another process:
    # its appends cannot wake this one's subscribers, only polling finds them.
    reader = backend.open(clock, poll_interval=0.01)
    writer = backend.open(clock)
    try:
        base = reader.head_position()
        async with subscribed(reader, base + 1) as subscription:
            following = asyncio.ensure_future(take(subscription, 2))
            appended = await then(lambda: writer.append(name("profile"), events(2)))
            followed = await following
    finally:
        reader.close()
        writer.close()

    assert tuple(e.position for e in followed) == appended.positions


async def test_wait_for_new_returns_at_once_when_the_head_is_past(
    store: EventStore, name: Callable[[str], str]
) -> None:
    base = store.head_position()
    store.append(name("profile"), events(2))

    await asyncio.wait_for(store.wait_for_new(base + 1), SAFETY_NET)


async def test_wait_for_new_returns_when_an_append_passes_the_position(
    store: EventStore, name: Callable[[str], str]
) -> None:
    head = store.head_position()
    waiting = asyncio.ensure_future(asyncio.wait_for(store.wait_for_new(head), SAFETY_NET))
    appended = await then(lambda: store.append(name("profile"), events(1)))

    await waiting
    assert store.head_position() == appended.positions[0] == head + 1


async def test_wait_for_new_sees_appends_made_through_another_store(
    backend: Backend, clock: ManualClock, name: Callable[[str], str]
) -> None:
    reader = backend.open(clock, poll_interval=0.01)
    writer = backend.open(clock)
    try:
        head = reader.head_position()
        waiting = asyncio.ensure_future(asyncio.wait_for(reader.wait_for_new(head), SAFETY_NET))
        await then(lambda: writer.append(name("profile"), events(1)))
        await waiting
    finally:
        reader.close()
        writer.close()


# -- several processes on one store ------------------------------------------------------

WRITERS = 4
ROUNDS = 200


def batch_size(round_: int) -> int:
    return 1 + round_ % 3


def write_from_process(backend: Backend, streams: str, writer: int, start: Any, results: Any) -> None:
    """A writer process: small batches to shared and private streams, with ANY
    and with expected versions retried on conflict."""
    try:
        store = backend.open(ManualClock())
        written: list[str] = []
        own_version = 0
        start.wait()  # a barrier: all writers begin together, so they contend
        for round_ in range(ROUNDS):
            batch = [
                NewEvent(uuid4(), "Written", {"writer": writer, "round": round_}, OCCURRED)
                for _ in range(batch_size(round_))
            ]
            shared = f"{streams}-shared-{round_ % 2}"
            if round_ % 3 == 0:
                store.append(shared, batch)
            elif round_ % 3 == 1:
                own = f"{streams}-own-{writer}"
                own_version = store.append(own, batch, own_version).stream_version
            else:
                while True:
                    try:
                        store.append(shared, batch, store.stream_version(shared))
                        break
                    except WrongExpectedVersion:
                        continue
            written += [str(e.event_id) for e in batch]
        store.close()
        results.put(("writer", written))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def tail_from_process(backend: Backend, from_position: int, total: int, ready: Any, results: Any) -> None:
    """A reader process: follows the log while the writers write, noting every position seen."""

    async def tail() -> list[int]:
        store = backend.open(ManualClock(), poll_interval=0.005)
        seen: list[int] = []
        try:
            async with asyncio.timeout(120), subscribed(store, from_position) as log:
                ready.set()
                async for event in log:
                    seen.append(event.position)
                    if len(seen) == total:
                        break
        finally:
            store.close()
        return seen

    try:
        results.put(("reader", asyncio.run(tail())))
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.slow
def test_writer_processes_share_one_store_without_gaps_or_losses(
    backend: Backend, store: EventStore, name: Callable[[str], str]
) -> None:
    base = store.head_position()
    total = WRITERS * sum(batch_size(r) for r in range(ROUNDS))
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    ready, start = spawn.Event(), spawn.Barrier(WRITERS)
    reader = spawn.Process(target=tail_from_process, args=(backend, base + 1, total, ready, results))
    reader.start()
    assert ready.wait(60), "the reader process did not start"
    writers = [
        spawn.Process(target=write_from_process, args=(backend, name("s"), w, start, results))
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()

    reports = [results.get(timeout=180) for _ in range(WRITERS + 1)]
    for process in [reader, *writers]:
        process.join(30)

    errors = [detail for kind, detail in reports if kind == "error"]
    assert not errors, "\n".join(errors)
    (seen,) = [detail for kind, detail in reports if kind == "reader"]
    assert seen == list(range(base + 1, base + total + 1)), "the reader saw a gap"
    written = [UUID(i) for kind, ids in reports if kind == "writer" for i in ids]
    assert len(written) == total
    assert_log_is_whole(store, base, written)
