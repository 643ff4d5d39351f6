"""The global log order, put back together from a topic keyed by aggregate.

The relay spreads the log over partitions by aggregate, so a consumer that
reads several partitions sees events of different aggregates interleaved in
another order than the log's. Read models fold across aggregates (a profile's
lookup keys depend on its database's unique fields; a campaign run reads the
profiles read model), so they must see the log's order, and their checkpoint,
a global position committed with their rows, is only a correct "processed"
mark if they apply events in that order.

Each message carries `previous`, the position of the event before it in the
log. An `OrderedConsumer` applies the event whose `previous` is its own
checkpoint, holds events that arrive early, and drops events at or below its
checkpoint (redeliveries after a crash or a rebalance, re-publishes by the
relay). The Kafka message of a held event is not acknowledged, so the
broker's committed offset never passes an event the consumer has not
committed. If the next event does not arrive while later ones wait (a message
lost to retention, a skipped offset), the consumer reads the gap from the
event store, which stays the truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from herald.infra.event_store import EventStore, RecordedEvent
from herald.processors.runtime import Projection

log = logging.getLogger(__name__)

Barrier = Callable[[], int]
"""The highest position this consumer may apply (a reactor waits for the read models it reads)."""


@dataclass(slots=True)
class Delivery:
    """An event off the topic (or read from the store to fill a gap) and the messages to acknowledge."""

    event: RecordedEvent
    previous: int
    acks: list[Any] = field(default_factory=list)


class Sequencer:
    """Events held until their predecessor has been applied, by the position they follow."""

    def __init__(self) -> None:
        self._held: dict[int, Delivery] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, delivery: Delivery) -> None:
        """Keep an early event; a second copy of it only adds its message to acknowledge."""
        held = self._held.get(delivery.previous)
        if held is None:
            self._held[delivery.previous] = delivery
        else:
            held.acks.extend(delivery.acks)

    def chain(self, after: int, through: int, limit: int) -> list[Delivery]:
        """The held events that follow `after` without a gap, up to position `through` (not removed)."""
        found: list[Delivery] = []
        link = after
        while len(found) < limit and (delivery := self._held.get(link)) is not None:
            if delivery.event.position > through:
                break
            found.append(delivery)
            link = delivery.event.position
        return found

    def has_next(self, after: int) -> bool:
        return after in self._held

    def release(self, applied: Iterable[Delivery]) -> None:
        for delivery in applied:
            self._held.pop(delivery.previous, None)


class OrderedConsumer:
    """Feeds one processor (a projection, or a reactor adapted to that shape) in global log order."""

    def __init__(
        self,
        consumer: Projection,
        store: EventStore,
        barrier: Barrier | None = None,
        batch_size: int = 5000,
        gap_timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.name = consumer.name
        self._store = store
        self._barrier = barrier
        self._batch_size = batch_size
        self._gap_timeout = gap_timeout
        self._monotonic = monotonic
        self._sequencer = Sequencer()
        self._waiting_since: float | None = None

    def checkpoint(self) -> int:
        return self.consumer.checkpoint()

    @property
    def held(self) -> int:
        return len(self._sequencer)

    def offer(self, delivery: Delivery) -> list[Any]:
        """Take one delivery; returns the messages already safe to acknowledge (a redelivery's)."""
        if delivery.event.position <= self.consumer.checkpoint():
            return delivery.acks
        self._sequencer.hold(delivery)
        return []

    def pump(self) -> list[Any]:
        """Apply and commit every event that now follows the checkpoint; the messages to acknowledge."""
        acks: list[Any] = []
        through = self._barrier() if self._barrier is not None else _NO_LIMIT
        while chain := self._sequencer.chain(self.consumer.checkpoint(), through, self._batch_size):
            if not self._apply(chain):
                break
            self._sequencer.release(chain)
            for delivery in chain:
                acks.extend(delivery.acks)
        self._note_gap()
        return acks

    def repair(self) -> list[Any]:
        """Read from the store an event the topic has not delivered while later ones wait; then pump."""
        if self._waiting_since is None or self._monotonic() - self._waiting_since < self._gap_timeout:
            return []
        previous = self.consumer.checkpoint()
        log.warning("%s: the event after %d has not arrived; reading it from the store", self.name, previous)
        for event in self._store.read_all(previous + 1, limit=self._batch_size):
            self._sequencer.hold(Delivery(event, previous))
            previous = event.position
        self._waiting_since = None
        return self.pump()

    def _apply(self, chain: list[Delivery]) -> bool:
        try:
            for delivery in chain:
                self.consumer.apply(delivery.event)
            self.consumer.commit(chain[-1].event.position)
        except Exception:  # like the in-process runtime: log, forget the partial batch, retry it later
            log.exception("%s: batch ending at %d failed", self.name, chain[-1].event.position)
            _discard(self.consumer)
            return False
        return True

    def _note_gap(self) -> None:
        """Start the gap clock when events wait for one that has not come; stop it when none do."""
        if len(self._sequencer) == 0 or self._sequencer.has_next(self.consumer.checkpoint()):
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self._monotonic()


_NO_LIMIT = 2**63


def _discard(consumer: Projection) -> None:
    # SQLite projections keep pending rows and folded state between apply and commit;
    # a failed batch must not leave them to be committed with the next one.
    discard = getattr(consumer, "discard", None)
    if callable(discard):
        discard()
