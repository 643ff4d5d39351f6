"""One partition of the event topic folded into its own store, by the runtime's own consumers.

The consumers are the key-local ones (`api/scale_worker.py` builds them over
the partition's file, in runtimes fed one after the other: the report sink in
its own, as in the embedded engine): each applies the events past its checkpoint and commits
rows and checkpoint together, as in the in-process runtime, so a message
received again (a redelivery after a crash, a batch the relay published
twice) is skipped by position. A message no consumer of the partition folds
(by their `consumes`: a uniqueness claim, or a global event for the state only
partition 0 folds) is not built into an event, only its position read: the
checkpoints move over it as over the events a consumer does not declare.
After every batch the runner stores the next topic offset and the position
every consumer has folded through.

A consumer that fails is handled as in the in-process runtime (the events
before the failing one committed, retries with backoff, the event parked
after its attempts, in the partition's store); while it waits the runner
answers the offset of the first message that consumer still lacks, so the
worker fetches from there again a moment later (the others skip what they
have). Offsets the topic no
longer holds (a message lost to retention) are read from the event store,
which stays the truth: the partition's events between what was folded and
what arrived.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime

from herald.domain.errors import DomainError
from herald.infra.event_store import EventFilter, EventStore, RecordedEvent
from herald.infra.sealed_store import SealedEventStore
from herald.processors.partition_store import PartitionOffsets
from herald.processors.runtime import InProcessRuntime, wanted_by
from herald.processors.topic_format import decode_wanted, partition_key, partition_of
from herald.projections.audit import AuditProjection

log = logging.getLogger(__name__)

Message = tuple[int, bytes]
"""A message of the partition: its offset and its value."""
Received = tuple[int, int, RecordedEvent | None]
"""A message decoded: its offset (-1: read from the store), its log position, its event (None: no
consumer of the partition folds it, so it was not built)."""


class PartitionRunner:
    """Folds one partition's messages into its store."""

    def __init__(
        self,
        partition: int,
        partitions: int,
        conn: sqlite3.Connection,
        runtimes: Sequence[InProcessRuntime],
        store: EventStore,
        topic: str,
    ) -> None:
        self.partition = partition
        self.partitions = partitions
        self.runtimes = runtimes
        self._conn = conn
        self._offsets = PartitionOffsets(conn, topic, partition)
        self._store = store
        self._next, self._folded = self._offsets.load()
        self._build = store.recorded if isinstance(store, SealedEventStore) else RecordedEvent

    @property
    def next_offset(self) -> int:
        """The offset of the next message to fold."""
        return self._next

    @property
    def folded_through(self) -> int:
        return self._folded

    def close(self) -> None:
        self._conn.close()

    def feed(self, messages: Sequence[Message]) -> int | None:
        """Fold `messages` (in offset order); the offset to fetch next when it is not the one after
        the last of them (a consumer failed on one: it is fetched again)."""
        if not messages:
            return None
        wanted = wanted_by([c for runtime in self.runtimes for c in runtime.consumers()])
        received = [(offset, *self._decoded(value, wanted)) for offset, value in messages]
        if messages[0][0] > self._next:
            received = self._missing(received[0][1]) + received
        fresh = self._fresh(received)
        events = [event for _, _, event in fresh if event is not None]
        through = fresh[-1][1] if fresh else None
        for runtime in self.runtimes:  # apart: a report store that is down holds up nothing else
            try:
                runtime.feed(events, through)
            except Exception:  # logged; the failed consumer gets its events again from the next fetch
                log.exception("partition %d: a batch failed", self.partition)
        consumers = [c for runtime in self.runtimes for c in runtime.consumers()]
        low = min((c.checkpoint() for c in consumers), default=self._folded)
        lacking = next((offset for offset, position, _ in fresh if position > low), None)
        if lacking == -1:  # still among the events read from the store: fetch from where it was
            lacking = self._next
        self._next = messages[-1][0] + 1 if lacking is None else lacking
        self._folded = max(self._folded, low)
        self._offsets.save(self._next, self._folded)
        return lacking

    def redrive_requested(self) -> int:
        """Re-drive the parked events `herald redrive` asked for in this partition's store; how many
        were taken (one that fails again stays parked with one attempt more, and is logged)."""
        return redrive_requested(self.runtimes)

    def expire_audit(self, now: datetime, retention_days: int) -> int:
        """Drop this store's audit entries past the retention (each partition keeps the entries of
        its own events and of every global one); how many went."""
        return sum(
            consumer.expire(now, retention_days)
            for runtime in self.runtimes
            for consumer in runtime.consumers()
            if isinstance(consumer, AuditProjection)
        )

    def _decoded(self, value: bytes, wanted: EventFilter | None) -> tuple[int, RecordedEvent | None]:
        """The message's position, and its event if a consumer here may fold it. The topic holds the
        log as stored (profiles' data sealed): a sealed store opens it."""
        return decode_wanted(value, wanted, self._build)

    def _fresh(self, received: list[Received]) -> list[Received]:
        """The messages past every one before them: a batch the relay published twice comes again."""
        fresh, highest = [], self._folded
        for message in received:
            if message[1] > highest:
                fresh.append(message)
                highest = message[1]
        return fresh

    def _missing(self, before: int) -> list[Received]:
        """The partition's events the topic skipped, read from the store: from what was folded to `before`."""
        log.warning(
            "partition %d: offsets %d.. are gone from the topic; reading positions %d..%d from the store",
            self.partition,
            self._next,
            self._folded + 1,
            before - 1,
        )
        # offset -1: a consumer that fails on one of these is sent back to the first message received
        return [(-1, event.position, event) for event in self._belonging(self._folded + 1, before)]

    def _belonging(self, first: int, before: int) -> Iterator[RecordedEvent]:
        for event in self._store.read_all(first):
            if event.position >= before:
                return
            key = partition_key(event)
            if key is None or partition_of(key, self.partitions) == self.partition:
                yield event


def redrive_requested(runtimes: Sequence[InProcessRuntime]) -> int:
    """Take the re-drive requests of the store the runtimes share, each by the runtime of its consumer."""
    taken = 0
    for runtime in runtimes:
        names = {consumer.name for consumer in runtime.consumers()}
        for consumer, position in runtime.parked.requested():
            if consumer not in names:
                continue
            try:
                runtime.redrive(consumer, position)
            except DomainError as error:  # failed again (recorded on the event) or nothing to re-drive
                log.warning("partition store: re-driving %s %d: %s", consumer, position, error.reason)
            runtime.parked.taken(consumer, position)
            taken += 1
    return taken
