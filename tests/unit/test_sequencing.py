"""Putting the log's order back together from keyed partitions, and the relay's message format.

No broker here: deliveries are built from a real SQLite log and offered in
the order a consumer of several partitions could see them. The scale-out
integration test runs the same code against Tansu.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herald.infra.clock import ManualClock
from herald.infra.event_store import NewEvent, RecordedEvent
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.relay import decode, encode, partition_for, partition_key
from herald.processors.sequencing import Delivery, OrderedConsumer

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


class Recorder:
    """A projection that records what it applied and committed; can be told to fail once."""

    name = "recorder"

    def __init__(self) -> None:
        self.position = 0
        self.pending: list[int] = []
        self.committed: list[int] = []
        self.fail_at: int | None = None
        self.discarded = 0

    def checkpoint(self) -> int:
        return self.position

    def apply(self, event: RecordedEvent) -> None:
        if event.position == self.fail_at:
            self.fail_at = None
            raise RuntimeError("poisoned")
        self.pending.append(event.position)

    def commit(self, position: int) -> None:
        self.committed += self.pending
        self.pending.clear()
        self.position = position

    def discard(self) -> None:
        self.pending.clear()
        self.discarded += 1


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    store = SqliteEventStore(tmp_path / "events.sqlite", ManualClock(AT))
    for n in range(9):
        stream = f"profile-p{n % 3}" if n % 4 else f"database-d{n}"
        event = NewEvent(uuid.uuid4(), "Happened", {"n": n}, AT, metadata={"actor": "test"})
        store.append(stream, [event])
    return store


def _deliveries(store: SqliteEventStore) -> list[Delivery]:
    events = list(store.read_all())
    previous = [0, *(e.position for e in events[:-1])]
    return [Delivery(e, p, [f"msg{e.position}"]) for e, p in zip(events, previous, strict=True)]


def test_events_arriving_out_of_log_order_are_applied_in_log_order(store: SqliteEventStore) -> None:
    recorder = Recorder()
    consumer = OrderedConsumer(recorder, store)
    acks: list[str] = []
    for delivery in reversed(_deliveries(store)):  # the worst interleaving of partitions
        acks += consumer.offer(delivery)
        acks += consumer.pump()
    assert recorder.committed == list(range(1, 10))
    assert sorted(acks) == sorted(f"msg{n}" for n in range(1, 10))
    assert consumer.held == 0


def test_a_held_event_is_not_acknowledged_until_it_is_committed(store: SqliteEventStore) -> None:
    consumer = OrderedConsumer(Recorder(), store)
    deliveries = _deliveries(store)
    assert consumer.offer(deliveries[2]) == [] and consumer.pump() == []
    consumer.offer(deliveries[0])
    assert consumer.pump() == ["msg1"]
    consumer.offer(deliveries[1])
    assert consumer.pump() == ["msg2", "msg3"]


def test_redeliveries_are_dropped_and_every_copy_is_acknowledged(store: SqliteEventStore) -> None:
    recorder = Recorder()
    consumer = OrderedConsumer(recorder, store)
    deliveries = _deliveries(store)
    consumer.offer(deliveries[0])
    consumer.pump()
    copy = Delivery(deliveries[0].event, 0, ["msg1-again"])
    assert consumer.offer(copy) == ["msg1-again"]  # at or below the checkpoint: acknowledged, not applied
    consumer.offer(deliveries[2])
    consumer.offer(Delivery(deliveries[2].event, 2, ["msg3-again"]))  # the relay published it twice
    consumer.offer(deliveries[1])
    assert consumer.pump() == ["msg2", "msg3", "msg3-again"]
    assert recorder.committed == [1, 2, 3]


def test_a_reactor_waits_for_the_read_models_it_reads(store: SqliteEventStore) -> None:
    projection, reactor = Recorder(), Recorder()
    behind = OrderedConsumer(reactor, store, barrier=projection.checkpoint)
    for delivery in _deliveries(store):
        behind.offer(delivery)
    assert behind.pump() == [] and reactor.committed == []
    projection.position = 4
    assert behind.pump() == ["msg1", "msg2", "msg3", "msg4"]
    assert reactor.position == 4


def test_a_gap_the_topic_does_not_fill_is_read_from_the_store(store: SqliteEventStore) -> None:
    now = [100.0]
    recorder = Recorder()
    consumer = OrderedConsumer(recorder, store, gap_timeout=5.0, monotonic=lambda: now[0])
    deliveries = _deliveries(store)
    consumer.offer(deliveries[0])
    for delivery in deliveries[3:]:  # positions 2 and 3 never arrive
        consumer.offer(delivery)
    assert consumer.pump() == ["msg1"]
    now[0] += 4.9
    assert consumer.repair() == []
    now[0] += 0.2
    assert consumer.repair() == [f"msg{n}" for n in range(4, 10)]
    assert recorder.committed == list(range(1, 10))


def test_a_failed_batch_is_discarded_unacknowledged_and_retried(store: SqliteEventStore) -> None:
    recorder = Recorder()
    recorder.fail_at = 3
    consumer = OrderedConsumer(recorder, store)
    for delivery in _deliveries(store)[:4]:
        consumer.offer(delivery)
    assert consumer.pump() == []
    assert recorder.discarded == 1 and recorder.position == 0
    assert consumer.pump() == ["msg1", "msg2", "msg3", "msg4"]
    assert recorder.committed == [1, 2, 3, 4]


def test_a_message_carries_the_whole_envelope_and_the_previous_position(store: SqliteEventStore) -> None:
    for event in store.read_all():
        again, previous = decode(encode(event, event.position - 1))
        assert again == event
        assert previous == event.position - 1


def test_a_profiles_streams_share_its_key_and_so_its_partition() -> None:
    assert partition_key("profile-5e8a") == partition_key("activity-5e8a") == "5e8a"
    assert partition_key("journey-12-5e8a") == "5e8a"  # a profile's runs through scenarios stay with it
    assert partition_key("database-1") == "database-1"
    assert partition_for(b"5e8a", 6) == partition_for(b"5e8a", 6)
    assert {partition_for(f"p{n}".encode(), 6) for n in range(100)} == set(range(6))
