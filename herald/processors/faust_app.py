"""The scale-out runtime: a Faust app that runs the processors over the relayed log.

The worker drives the same consumer objects the in-process runtime drives
(`api/wiring.py` builds them; `herald worker` hands them over). One Faust
agent reads the topic the relay fills, decodes each message once and offers
it to every processor's `OrderedConsumer` (see `sequencing.py`), each with
its own checkpoint: events are applied in the log's order, redeliveries at or
below a processor's checkpoint are dropped, and a message is acknowledged to
Kafka only once every processor has committed its event. Projections commit
rows and checkpoint in one SQLite transaction, so a worker killed mid-batch
re-applies nothing; reactors append with deterministic ids, so a redelivered
cause appends nothing twice.

One agent rather than one per processor: Faust hands each message to each
agent through a queue of its own, and with one agent per processor (eight
here) the hand-off cost about 300 µs a message under the profiler; relay →
Kafka → worker ran at 1,600 events/s that way and 2,800 with one agent
(`bench/bench_scale.py`, 15,000 events). The processors stay independent:
each has its own sequencer, checkpoint and failure handling.

Reactors read read models (a campaign run reads the profiles read model), so a
reactor applies an event only once every projection has committed it: the
same guarantee the in-process runtime gives by running projections first in
each batch.

Because the read models need the log's order and live in one SQLite file,
one worker process runs them all; Kafka's consumer group moves the partitions
to a standby worker when that one dies.

The ClickHouse sink plugs in as one more consumer in the projection shape,
passed with the projections and fed like them.

Durable timers (campaign runs, delayed unsubscribes, static segment
recalculations, realtime-membership windows) are read from the read models
this worker holds, so the worker fires them too: `ticks` runs every
`timer_seconds`, as `herald serve` does in the embedded engine. Only the worker
holding the data directory's lock runs at all, so timers fire in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from herald.infra.event_store import EventStore, RecordedEvent
from herald.processors.relay import decode
from herald.processors.runtime import Projection
from herald.processors.sequencing import Delivery, OrderedConsumer

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Where the worker reads from and how it batches."""

    bootstrap: str
    topic: str
    partitions: int
    batch_size: int = 2000  # messages per batch off the topic, and events per commit at most
    batch_wait: float = 0.05  # seconds the agent waits to fill a batch
    session_timeout: float = 10.0  # seconds before the group gives a dead worker's partitions away
    gap_timeout: float = 5.0  # seconds a missing event may lag before it is read from the store
    timer_seconds: float = 5.0  # how often due durable timers are fired

    @property
    def app_id(self) -> str:
        """The Faust app and Kafka consumer group of the workers reading this topic."""
        return f"herald-processors-{self.topic}"


class Receipt:
    """One Kafka message offered to every consumer: acknowledged once the last of them is done with it."""

    __slots__ = ("message", "waiting")

    def __init__(self, message: Any, waiting: int) -> None:
        self.message = message
        self.waiting = waiting

    def done(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.message.ack()


class Processors:
    """The ordered consumers of one worker: projections first, then reactors behind them."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        reactors: Sequence[Projection],
        batch_size: int = 5000,
        gap_timeout: float = 5.0,
    ) -> None:
        self.projections = [
            OrderedConsumer(p, store, batch_size=batch_size, gap_timeout=gap_timeout) for p in projections
        ]
        self.reactors = [
            OrderedConsumer(r, store, self._read_models_position, batch_size, gap_timeout) for r in reactors
        ]
        self.all = [*self.projections, *self.reactors]
        # the relay publishes the log as stored (profiles' data sealed); the store opens it here
        self._open: Callable[[RecordedEvent], RecordedEvent] = getattr(store, "opened", lambda event: event)

    def _read_models_position(self) -> int:
        return min((p.checkpoint() for p in self.projections), default=2**63)

    def receive(self, messages: Sequence[Any]) -> None:
        """Offer a batch of Faust events to every consumer, then apply what follows their checkpoints."""
        settled: list[Receipt] = []
        for message in messages:
            event, previous = decode(message.value)
            event = self._open(event)
            receipt = Receipt(message, len(self.all))
            for consumer in self.all:
                settled += consumer.offer(Delivery(event, previous, [receipt]))
        _done(settled)
        self.pump()

    def pump(self) -> None:
        """Apply what every consumer can, in order: a projection's commit may let a reactor go on."""
        for consumer in self.all:
            _done(consumer.pump())

    def repair(self) -> None:
        """Fill from the store the gaps the topic has left open too long."""
        for consumer in self.all:
            _done(consumer.repair())
        self.pump()


def _done(receipts: Sequence[Receipt]) -> None:
    for receipt in receipts:
        receipt.done()


def build_app(
    options: WorkerOptions,
    store: EventStore,
    projections: Sequence[Projection],
    reactors: Sequence[Projection],
    ticks: Callable[[], None] | None = None,
) -> faust.App:
    """A Faust app whose agent feeds every processor from `options.topic`.

    `projections` and `reactors` are the consumer objects the in-process
    runtime holds (reactors already adapted to the projection shape, so their
    emissions and dispatches take the in-process runtime's code path);
    `ticks` fires the due durable timers.
    """
    import faust

    app = faust.App(
        options.app_id,
        broker=f"kafka://{options.bootstrap}",
        web_enabled=False,
        autodiscover=False,
        store="memory://",
        topic_partitions=options.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # Held events are not acknowledged; a rebalance must not wait for them (they are redelivered).
        stream_wait_empty=False,
        broker_session_timeout=options.session_timeout,
        broker_heartbeat_interval=max(options.session_timeout / 6, 0.2),
        broker_commit_interval=1.0,
        worker_redirect_stdouts=False,
    )
    topic = app.topic(
        options.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=options.partitions,
    )
    processors = Processors(store, projections, reactors, options.batch_size, options.gap_timeout)

    async def feed(stream: Any) -> None:
        async for batch in stream.noack_take(options.batch_size, within=options.batch_wait):
            processors.receive(batch)

    async def repair_gaps() -> None:
        processors.repair()

    app.agent(topic, name="herald.processors")(feed)
    app.timer(interval=1.0)(repair_gaps)
    if ticks is not None:
        fire = ticks

        async def fire_timers() -> None:
            try:
                fire()
            except Exception:  # a failing timer must not stop the others; the next tick retries it
                log.exception("timers failed")

        app.timer(interval=options.timer_seconds)(fire_timers)
    return app


def run_worker(app: faust.App, loglevel: str = "WARNING") -> None:
    """Run the Faust worker in this process until it is told to stop (SIGINT/SIGTERM)."""
    import faust

    faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
