"""The relay: publishes the event store's ordered log to a Kafka topic, keyed by aggregate.

Each event goes to the topic as one message whose key is the aggregate it
belongs to (the profile for `profile-*`, `activity-*` and `journey-*` streams,
else the stream name), so one profile's events keep their order in one partition. The
value is the whole envelope plus `previous`, the position of the event before
it in the log: a consumer that needs the global order (a read model folding
across aggregates) puts partitions back together by following that link,
which works even where positions are not contiguous (KurrentDB commit
positions).

Delivery is at-least-once: a batch is published, flushed, and only then is
the relay's checkpoint saved. A crash in between re-publishes the batch;
consumers drop what they have already processed by position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson

from herald.domain.scenario_instances import JOURNEY_PREFIX, journey_key
from herald.infra.event_store import EventStore, RecordedEvent
from herald.processors.runtime import CheckpointStore

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PROFILE_PREFIXES = ("profile-", "activity-")


class SendResult(Protocol):
    def failed(self) -> bool: ...

    @property
    def exception(self) -> BaseException | None: ...


class Producer(Protocol):
    """The part of kafka-python's `KafkaProducer` the relay uses."""

    def send(self, topic: str, value: bytes, key: bytes, partition: int) -> SendResult: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


def partition_key(stream: str) -> str:
    """The aggregate a stream belongs to: the profile id for a profile's streams (its profile, its
    activity, its journeys through scenarios), else the stream."""
    for prefix in _PROFILE_PREFIXES:
        if stream.startswith(prefix):
            return stream[len(prefix) :]
    if stream.startswith(JOURNEY_PREFIX):
        return journey_key(stream)[1]
    return stream


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and kafka-python compute it)."""
    # Imported here: kafka-python loads its protocol schemas on import, which the decoding side
    # (the Faust worker) has no use for.
    from kafka.partitioner.default import murmur2  # type: ignore[import-untyped]

    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def encode(event: RecordedEvent, previous: int) -> bytes:
    """The message value: the envelope, times as integer microseconds, and the previous position."""
    return orjson.dumps(
        {
            "event_id": str(event.event_id),
            "stream": event.stream,
            "version": event.version,
            "position": event.position,
            "previous": previous,
            "type": event.type,
            "schema_version": event.schema_version,
            "occurred_at": _micros(event.occurred_at),
            "recorded_at": _micros(event.recorded_at),
            "data": event.data,
            "metadata": event.metadata,
        }
    )


def decode(value: bytes) -> tuple[RecordedEvent, int]:
    """The envelope a message carries and the position of the event before it in the log."""
    doc: dict[str, Any] = orjson.loads(value)
    event = RecordedEvent(
        event_id=UUID(doc["event_id"]),
        stream=doc["stream"],
        version=doc["version"],
        position=doc["position"],
        type=doc["type"],
        schema_version=doc["schema_version"],
        occurred_at=doc["occurred_at"],
        recorded_at=doc["recorded_at"],
        data=doc["data"],
        metadata=doc["metadata"],
    )
    return event, int(doc["previous"])


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


class Relay:
    """Tails the log from its checkpoint and publishes every event to `topic`."""

    def __init__(
        self,
        store: EventStore,
        producer_factory: Callable[[], Producer],
        topic: str,
        partitions: int,
        checkpoints: CheckpointStore,
        batch_size: int = 5000,
    ) -> None:
        self.name = f"relay:{topic}"
        self.topic = topic
        self.partitions = partitions
        self._store = store
        self._producer_factory = producer_factory
        self._producer: Producer | None = None
        self._checkpoints = checkpoints
        self._batch_size = batch_size
        self._stopping = asyncio.Event()

    def checkpoint(self) -> int:
        """The position of the last event published and flushed (0 = none)."""
        return self._checkpoints.load(self.name)

    def run_once(self, limit: int | None = None) -> int:
        """Publish up to `limit` events after the checkpoint, flush, then save the checkpoint; the count."""
        previous = self.checkpoint()
        size = self._batch_size if limit is None else min(limit, self._batch_size)
        batch = list(self._store.read_all(previous + 1, limit=size))
        if not batch:
            return 0
        producer = self._producer or self._producer_factory()
        self._producer = producer
        sent: list[SendResult] = []
        for event in batch:
            key = partition_key(event.stream).encode()
            value = encode(event, previous)
            sent.append(producer.send(self.topic, value=value, key=key, partition=self._partition(key)))
            previous = event.position
        producer.flush()
        _raise_on_failure(sent)
        self._checkpoints.save(self.name, previous)
        return len(batch)

    def drain(self) -> int:
        """Publish until the checkpoint reaches the head of the log; the count sent."""
        total = 0
        while sent := self.run_once():
            total += sent
        return total

    async def run(self) -> None:
        """Drain, then wait for appends, until `stop()`; a failed batch is logged and retried."""
        self._stopping.clear()
        while not self._stopping.is_set():
            try:
                self.drain()
            except Exception:  # a broker outage must not end the relay; the next wake retries the batch
                log.exception("relay batch failed")
                await asyncio.sleep(1.0)
                continue
            grew = asyncio.ensure_future(self._store.wait_for_new(self.checkpoint()))
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({grew, stop}, return_when=asyncio.FIRST_COMPLETED)
            grew.cancel()
            stop.cancel()

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def _partition(self, key: bytes) -> int:
        # Chosen here rather than by the client, so the mapping is the one documented above
        # whatever the client's partitioner, and a topic with too few partitions fails loudly.
        return partition_for(key, self.partitions)


def _raise_on_failure(sent: Sequence[SendResult]) -> None:
    for result in sent:
        if result.failed():
            raise RuntimeError("the broker refused a relayed event") from result.exception


def kafka_producer(bootstrap: str) -> Callable[[], Producer]:
    """A factory of kafka-python producers that keep each partition's order across retries."""

    def make() -> Producer:
        from kafka import KafkaProducer  # type: ignore[import-untyped]

        producer: Producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,  # retries neither duplicate nor reorder within a partition
            linger_ms=5,
            batch_size=256 * 1024,
        )
        return producer

    return make


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1) -> None:
    """Create the topic with `partitions` partitions, or check that the existing one has exactly that many.

    A different count would send some profiles' events to other partitions than
    before, interleaving old and new events of one profile out of order.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                {topic: {"num_partitions": partitions, "replication_factor": replication}},
                wait_for_metadata=True,
            )
        described = admin.describe_topics([topic])
        found = len(described[0]["partitions"])
        if found != partitions:
            raise RuntimeError(
                f"topic {topic!r} has {found} partitions, the configuration says {partitions}: "
                "the partition count of the event topic cannot change under running consumers"
            )
    finally:
        admin.close()
