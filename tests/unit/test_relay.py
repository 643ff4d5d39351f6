"""The relay: key-local events to their profile's partition, global events to every partition, the
checkpoint saved only after the broker acknowledged; and the topic's message format.

The publisher here records what it is given; the scale-out integration tests
run the relay against a real broker.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herald.infra.clock import ManualClock
from herald.infra.event_store import NewEvent
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.relay import Messages, Relay
from herald.processors.topic_format import decode, encode, partition_key, partition_of

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
PARTITIONS = 4
EVENTS = (  # (stream, type, data)
    ("profile-a", "ProfileCreated", {"database_id": "1"}),
    ("activity-a", "ActivityTracked", {"name": "visit"}),
    ("database-1", "DatabaseUpdated", {"database_id": "1"}),
    ("message-m1", "MessageQueued", {"message_id": "m1", "profile_id": "b", "fields": {"profile_id": "x"}}),
    ("stoplist-x", "StopListEntriesAdded", {"list_id": "x"}),
    ("segmentmembers-s", "ProfileEnteredSegment", {"segment_id": "s", "profile_id": "a"}),
    ("segmentmembers-s", "SegmentPopulationContinued", {"segment_id": "s", "after_profile_id": "c"}),
    ("unique-1-email-a@x.org", "ValueClaimed", {"profile_id": "a"}),
    ("journey-12-b", "ScenarioEntered", {"entry": 1}),  # a profile's run through a scenario stays with it
)


@dataclass
class RecordingPublisher:
    """Keeps what was published; refuses (raises) while `refuse` is set, publishing nothing."""

    refuse: bool = False
    published: list[tuple[int, bytes, bytes]] = field(default_factory=list)

    async def publish(self, topic: str, messages: Messages) -> None:
        if self.refuse:
            raise RuntimeError("the broker refused a batch")
        for partition, items in messages.items():
            self.published += [(partition, key, value) for key, value in items]

    async def close(self) -> None: ...

    def positions(self, partition: int) -> list[int]:
        return [decode(value).position for p, _, value in self.published if p == partition]


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    store = SqliteEventStore(tmp_path / "events.sqlite", ManualClock(AT))
    for stream, type_, data in EVENTS:
        store.append(stream, [NewEvent(uuid.uuid4(), type_, data, AT, metadata={"actor": "test"})])
    return store


def _relay(store: SqliteEventStore, publisher: RecordingPublisher, tmp_path: Path) -> Relay:
    checkpoints = SqliteCheckpoints(open_readmodel_db(tmp_path / "relay.sqlite"))
    return Relay(store, publisher, "events", PARTITIONS, checkpoints, batch_size=3)


def test_events_are_keyed_by_profile_and_global_ones_reach_every_partition(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    keys = [partition_key(e) for e in store.read_all(1)]
    assert keys == ["a", "a", None, "b", None, "a", "c", "unique-1-email-a@x.org", "b"]

    publisher = RecordingPublisher()
    assert asyncio.run(_relay(store, publisher, tmp_path).drain()) == len(EVENTS)
    home = {key: partition_of(key, PARTITIONS) for key in ("a", "b", "c", "unique-1-email-a@x.org")}
    for partition in range(PARTITIONS):
        mine = [n + 1 for n, key in enumerate(keys) if key is None or home[key] == partition]
        assert publisher.positions(partition) == mine  # the log's order, restricted to the partition
    for _, key, value in publisher.published:
        event = decode(value)
        expected = partition_key(event)
        assert key == (event.stream if expected is None else expected).encode()


def test_a_batch_the_broker_refused_is_published_again_and_the_checkpoint_waits(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    publisher = RecordingPublisher()
    relay = _relay(store, publisher, tmp_path)
    assert asyncio.run(relay.run_once()) == 3
    publisher.refuse = True
    with pytest.raises(RuntimeError, match="refused"):
        asyncio.run(relay.run_once())
    assert relay.checkpoint() == 3
    publisher.refuse = False
    assert asyncio.run(relay.drain()) == len(EVENTS) - 3
    assert publisher.positions(partition_of("a", PARTITIONS))[:3] == [1, 2, 3]
    assert sorted({decode(v).position for _, _, v in publisher.published}) == list(range(1, len(EVENTS) + 1))


def test_a_restarted_relay_goes_on_from_its_checkpoint(store: SqliteEventStore, tmp_path: Path) -> None:
    asyncio.run(_relay(store, RecordingPublisher(), tmp_path).run_once(limit=1))
    second = RecordingPublisher()
    assert asyncio.run(_relay(store, second, tmp_path).drain()) == len(EVENTS) - 1
    assert min(decode(v).position for _, _, v in second.published) == 2


def test_a_message_carries_the_envelope_and_the_stored_payloads(store: SqliteEventStore) -> None:
    for event in store.read_all(1):
        copy = decode(encode(event))
        assert copy == event
        assert copy.occurred_at == AT and copy.metadata == {"actor": "test"}
    decoded_first = next(iter(store.read_all(4)))
    assert decoded_first.data["fields"] == {"profile_id": "x"}  # a payload already decoded encodes alike
    assert decode(encode(decoded_first)) == decoded_first
