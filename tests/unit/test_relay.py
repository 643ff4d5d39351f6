"""The relay: each event published keyed by its aggregate, the checkpoint saved only after a flush.

The producer here records what it is given; the scale-out integration test
runs the relay against a real broker.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herald.infra.clock import ManualClock
from herald.infra.event_store import NewEvent
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.relay import Relay, decode, partition_for

AT = datetime(2026, 3, 1, tzinfo=UTC)
STREAMS = ("profile-a", "activity-a", "database-1", "profile-b", "stoplist-x")


@dataclass
class Sent:
    refused: bool = False
    exception: BaseException | None = None

    def failed(self) -> bool:
        return self.refused


@dataclass
class RecordingProducer:
    """Keeps what was sent; what was sent since the last flush counts as published only after it."""

    refuse: bool = False
    pending: list[tuple[str, bytes, bytes, int]] = field(default_factory=list)
    published: list[tuple[str, bytes, bytes, int]] = field(default_factory=list)

    def send(self, topic: str, value: bytes, key: bytes, partition: int) -> Sent:
        self.pending.append((topic, value, key, partition))
        return Sent(self.refuse, RuntimeError("broker down") if self.refuse else None)

    def flush(self, timeout: float | None = None) -> None:
        if not self.refuse:
            self.published += self.pending
        self.pending.clear()

    def close(self, timeout: float | None = None) -> None: ...


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    store = SqliteEventStore(tmp_path / "events.sqlite", ManualClock(AT))
    for stream in STREAMS:
        store.append(stream, [NewEvent(uuid.uuid4(), "Happened", {"stream": stream}, AT)])
    return store


def _relay(store: SqliteEventStore, producer: RecordingProducer, tmp_path: Path) -> Relay:
    checkpoints = SqliteCheckpoints(open_readmodel_db(tmp_path / "relay.sqlite"))
    return Relay(store, lambda: producer, "events", 4, checkpoints, batch_size=2)


def test_every_event_is_published_in_log_order_keyed_by_its_aggregate(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    producer = RecordingProducer()
    relay = _relay(store, producer, tmp_path)
    assert relay.drain() == 5
    assert relay.checkpoint() == 5
    keys = [key.decode() for _, _, key, _ in producer.published]
    assert keys == ["a", "a", "database-1", "b", "stoplist-x"]
    assert all(p == partition_for(key, 4) for _, _, key, p in producer.published)
    envelopes = [decode(value) for _, value, _, _ in producer.published]
    assert [(e.position, previous) for e, previous in envelopes] == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    assert [e.stream for e, _ in envelopes] == list(STREAMS)


def test_a_batch_the_broker_refused_is_published_again_and_the_checkpoint_waits(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    producer = RecordingProducer()
    relay = _relay(store, producer, tmp_path)
    assert relay.run_once() == 2
    producer.refuse = True
    with pytest.raises(RuntimeError, match="refused"):
        relay.run_once()
    assert relay.checkpoint() == 2
    producer.refuse = False
    assert relay.drain() == 3
    assert [decode(v)[0].position for _, v, _, _ in producer.published] == [1, 2, 3, 4, 5]


def test_a_restarted_relay_goes_on_from_its_checkpoint(store: SqliteEventStore, tmp_path: Path) -> None:
    first = RecordingProducer()
    _relay(store, first, tmp_path).run_once(limit=1)
    second = RecordingProducer()
    assert _relay(store, second, tmp_path).drain() == 4
    assert [decode(v)[1] for _, v, _, _ in second.published] == [1, 2, 3, 4]
