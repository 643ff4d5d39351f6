"""The in-process processor runtime: named consumers with checkpoints, catch-up then live.

Two kinds of consumer tail the log:
- a *projection* applies events to a read model and commits its rows together
  with its checkpoint (one transaction), so it never double-applies;
- a *reactor* turns events into new events, or into commands decided on an
  aggregate. Delivery is at-least-once (the checkpoint is written after the
  append); effects are exactly-once because each emitted event's id is
  `uuid5(reactor, causing event id, ordinal)` (for a command, the ids derive
  from that request id), so a redelivery re-appends the same ids and the
  store drops them.

One pass over the log serves every consumer: the runtime reads a range of
positions from the lowest checkpoint and hands each consumer only the events
past its own. A consumer may declare `consumes` (an `EventFilter`): the store
then reads only the events some consumer folds, each consumer is handed only
the ones it declared, and every checkpoint still advances over the whole range.
Tests call `drain()` to drive every consumer to the head of the log; the
server runs `run()` which drains, then waits for appends.

A consumer that fails is never retried hot and never holds the others up:
- the failing event is found (the events before it in the batch are
  committed), the failure is logged in one line, and the consumer waits
  (`RetryPolicy`: 1 s, doubling) while the others go on;
- after `attempts` failures on one event the event is parked: recorded with
  the error in `parked_events`, in one transaction with the consumer's
  checkpoint moving past it, and the consumer goes on with the next event. A
  projection thus skips that one event (its read model lacks the event's
  effect) until it is re-driven (`redrive`, applied then in one transaction
  with the record's settling) or the read models are rebuilt;
- a transient failure (the report store unreachable, a locked file:
  `infra.failures.is_transient`) is about the surroundings, not the event: it
  is retried with the same backoff until it passes, never parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated
from herald.infra.clock import Clock, SystemClock
from herald.infra.event_store import (
    ANY,
    EventFilter,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from herald.infra.failures import describe, formatted, is_transient
from herald.infra.ids import deterministic_id
from herald.infra.parked_events import ParkedEvent, SqliteParkedEvents
from herald.processors.backoff import Backoff, RetryPolicy

log = logging.getLogger(__name__)
DEFAULT_RETRY = RetryPolicy()


class Projection(Protocol):
    @property
    def name(self) -> str: ...

    def checkpoint(self) -> int:
        """The position of the last event this projection committed (0 = none)."""
        ...

    def apply(self, event: RecordedEvent) -> None:
        """Fold one event into the pending changes."""
        ...

    def commit(self, position: int) -> None:
        """Persist pending changes and the checkpoint `position` atomically; inside the transaction
        open on the read-model connection when there is one (parking or re-driving an event)."""
        ...

    def discard(self) -> None:
        """Forget changes applied since the last commit."""
        ...


@dataclass(frozen=True, slots=True)
class Emission:
    """An event a reactor wants appended.

    Its id is derived from the reactor, the causing event and the emission's
    place in the reaction, unless the reactor names one (`event_id`): a
    reactor whose output for one cause depends on state (the next chunk of a
    campaign run) names ids by what the event is about instead.
    """

    stream: str
    type: str
    data: dict[str, Any]
    occurred_at: datetime
    expected_version: ExpectedVersion = ANY
    schema_version: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A command a reactor wants decided on an aggregate (its rules re-checked on the current state)."""

    decider: Decider[Any, Any]
    stream: str
    command: Any


Reaction = Emission | Dispatch


class Reactor(Protocol):
    name: str

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        """The events or commands `event` causes (often none)."""
        ...


class CommandExecutor(Protocol):
    def __call__(
        self, decider: Decider[Any, Any], stream: str, command: Any, request_id: str, actor: str
    ) -> object:
        """Decide and append; `request_id` makes the appended event ids deterministic."""
        ...


class CheckpointStore(Protocol):
    def load(self, name: str) -> int: ...

    def save(self, name: str, position: int) -> None: ...


class _ReactorConsumer:
    """Adapts a reactor to the projection shape: emits on apply, checkpoints on commit."""

    def __init__(
        self,
        reactor: Reactor,
        store: EventStore,
        checkpoints: CheckpointStore,
        execute: CommandExecutor | None,
    ) -> None:
        self.reactor = reactor
        self.name = reactor.name
        self.consumes: EventFilter | None = getattr(reactor, "consumes", None)
        self._store = store
        self._execute = execute
        self._checkpoints = checkpoints
        self._position = checkpoints.load(reactor.name)

    def checkpoint(self) -> int:
        return self._position

    def apply(self, event: RecordedEvent) -> None:
        reactions = self.reactor.handle(event)
        emissions = [(i, r) for i, r in enumerate(reactions) if isinstance(r, Emission)]
        if emissions:
            self._store.append_many([self._to_append(event, i, e) for i, e in emissions])
        for i, reaction in enumerate(reactions):
            if isinstance(reaction, Dispatch):
                if self._execute is None:
                    raise RuntimeError(
                        f"reactor {self.name} dispatches commands but the runtime has no executor"
                    )
                request_id = str(deterministic_id(self.name, event.event_id, i))
                self._execute(
                    reaction.decider, reaction.stream, reaction.command, request_id, f"processor:{self.name}"
                )

    def _to_append(self, cause: RecordedEvent, ordinal: int, emission: Emission) -> StreamAppend:
        metadata = {
            "correlation_id": cause.metadata.get("correlation_id", str(cause.event_id)),
            "causation_id": str(cause.event_id),
            "actor": f"processor:{self.name}",
            **emission.metadata,
        }
        new = NewEvent(
            event_id=emission.event_id or deterministic_id(self.name, cause.event_id, ordinal),
            type=emission.type,
            data=emission.data,
            occurred_at=emission.occurred_at,
            schema_version=emission.schema_version,
            metadata=metadata,
        )
        return StreamAppend(emission.stream, [new], emission.expected_version)

    def commit(self, position: int) -> None:
        self._checkpoints.save(self.name, position)
        self._position = position

    def discard(self) -> None:
        """Nothing pending: emissions were appended as they were made (with their fixed ids)."""


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    """How one consumer is doing: where it is, how often it failed, what it parked, when it tries again."""

    name: str
    position: int
    failures_total: int
    parked: int
    failing_at: int | None  # the event it is failing on now, None when it is not
    attempts: int
    last_error: str
    retry_at: datetime | None


@dataclass
class _Health:
    """A consumer's failures on the event it is stuck at (`position`, 0: none)."""

    backoff: Backoff
    position: int = 0
    first_failed_at: datetime | None = None


def consumes(consumer: object) -> EventFilter | None:
    """What a consumer declared it folds (None: every event)."""
    return getattr(consumer, "consumes", None)


def _for(consumer: Projection, batch: list[RecordedEvent]) -> list[RecordedEvent]:
    """The events of `batch` past the consumer's checkpoint that it declared it folds."""
    begin = consumer.checkpoint()
    only = consumes(consumer)
    if only is None:
        return [e for e in batch if e.position > begin]
    if not only.stream_prefixes and not only.mentions:
        types = only.types
        return [e for e in batch if e.type in types and e.position > begin]
    return [e for e in batch if e.position > begin and only.matches(e)]


def wanted_by(consumers: Sequence[object]) -> EventFilter | None:
    """What any of `consumers` folds (None: every event): a reader need fetch or decode nothing else."""
    wanted = EventFilter()
    for consumer in consumers:
        only = consumes(consumer)
        if only is None:
            return None
        wanted = wanted.union(only)
    return wanted


class InProcessRuntime:
    """Runs projections and reactors over one event store, in this process."""

    def __init__(
        self,
        store: EventStore,
        checkpoints: CheckpointStore,
        projections: Sequence[Projection] = (),
        reactors: Sequence[Reactor] = (),
        batch_size: int = 5000,
        execute: CommandExecutor | None = None,
        *,
        clock: Clock | None = None,
        parked: SqliteParkedEvents | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._store = store
        self._consumers: list[Projection] = [
            *projections,
            *(_ReactorConsumer(r, store, checkpoints, execute) for r in reactors),
        ]
        self._batch_size = batch_size
        self._clock = clock or SystemClock()
        # a runtime whose work is thrown away (a scratch rebuild, a test) may keep its parked events in memory
        self._parked = parked or SqliteParkedEvents(sqlite3.connect(":memory:", isolation_level=None))
        self._retry = retry
        self._health = {c.name: _Health(Backoff(f"processor {c.name}", retry, log)) for c in self._consumers}
        self._reading = Backoff("processor runtime (reading the log)", retry, log)
        self._stopping = asyncio.Event()
        self._condition: asyncio.Condition | None = None

    def consumers(self) -> list[Projection]:
        """Every consumer, projections first, in the order a pass feeds them."""
        return list(self._consumers)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._consumers]

    @property
    def parked(self) -> SqliteParkedEvents:
        return self._parked

    def parked_events(self, consumer: str | None = None) -> list[ParkedEvent]:
        """The events this runtime's consumers (or `consumer`) parked and nobody re-drove yet."""
        return [p for p in self._parked.waiting(consumer) if p.consumer in self._health]

    def positions(self) -> dict[str, int]:
        """Each consumer's checkpoint: how far it has processed the log."""
        return {c.name: c.checkpoint() for c in self._consumers}

    def status(self) -> list[ConsumerStatus]:
        """Every consumer's position, failures, parked events and retry time."""
        parked = self._parked.counts()
        found = []
        for consumer in self._consumers:
            health = self._health[consumer.name]
            backoff = health.backoff
            found.append(
                ConsumerStatus(
                    name=consumer.name,
                    position=consumer.checkpoint(),
                    failures_total=backoff.failures_total,
                    parked=parked.get(consumer.name, 0),
                    failing_at=health.position or None,
                    attempts=backoff.failures,
                    last_error=backoff.last_error,
                    retry_at=backoff.retry_at,
                )
            )
        return found

    def drain(self, until: int | None = None, progress: Callable[[int], object] | None = None) -> int:
        """Process the log up to `until` (default: the head, including what reactors append).

        Consumers waiting after a failure are left out until their retry time (by the runtime's clock),
        so this returns with them behind; a test moves the clock and drains again."""
        processed = 0
        while True:
            target = self._store.head_position() if until is None else until
            ready = self._ready()
            start = min((c.checkpoint() for c in ready), default=target) + 1
            if start > target:
                return processed
            done = self._pass(start, target, ready)
            if done == 0:
                return processed
            processed += done
            if progress is not None:
                progress(done)

    def _ready(self) -> list[Projection]:
        now = self._clock.now()
        return [c for c in self._consumers if not self._health[c.name].backoff.waiting(now)]

    def _pass(self, start: int, target: int, ready: Sequence[Projection]) -> int:
        last = min(start + self._batch_size - 1, target)
        behind = [c for c in ready if c.checkpoint() < last]
        batch = self._store.read_range(start, last, wanted_by(behind))
        for consumer in behind:
            self._feed(consumer, _for(consumer, batch), last)
        return last - start + 1

    def feed(self, batch: Sequence[RecordedEvent], through: int | None = None) -> None:
        """Apply `batch` (events in log order: the scale engine's partition hands over its share of the
        log) to every ready consumer past its checkpoint, projections first, with a pass's retry, backoff
        and parking; a consumer waiting after a failure is left where its checkpoint says. `through` (at
        or past the last event) is where the range ends when the events after the batch's last were left
        out because no consumer folds them: the checkpoints move over those too."""
        last = through if through is not None else batch[-1].position if batch else None
        if last is None:
            return
        events = list(batch)
        for consumer in self._ready():
            if consumer.checkpoint() < last:
                self._feed(consumer, _for(consumer, events), last)

    def _feed(self, consumer: Projection, events: list[RecordedEvent], last: int) -> None:
        """Give `events` (of the range up to `last`) to `consumer` until all are committed or parked, or it
        must wait after a failure; its checkpoint then moves over the events of the range it does not fold."""
        while events:
            done = self._try(consumer, events, last)
            if done < len(events) and self._health[consumer.name].backoff.retry_at is not None:
                return
            events = events[done:]
        if consumer.checkpoint() < last:
            consumer.commit(last)

    def _try(self, consumer: Projection, events: list[RecordedEvent], upto: int) -> int:
        """Apply `events` and commit the checkpoint `upto` (at or past the last of them); how many of them
        (from the first) are now committed or parked.

        When one event fails to apply, the events before it are committed by themselves and the
        failure is that event's; a failed commit is split in halves until its event is found."""
        index = 0
        try:
            for index, event in enumerate(events):  # noqa: B007  (the index says which event failed)
                consumer.apply(event)
            index = len(events)
            consumer.commit(upto)
        except Exception as error:
            consumer.discard()  # the events are applied again from the checkpoint
            if len(events) > 1 and index == len(events) and not is_transient(error):
                half = len(events) // 2
                done = self._try(consumer, events[:half], events[half - 1].position)
                return done if done < half else done + self._try(consumer, events[half:], upto)
            stuck = min(index, len(events) - 1)
            done = self._try(consumer, events[:stuck], events[stuck - 1].position) if stuck else 0
            if done < stuck:
                return done
            return done + (1 if self._failed(consumer, events[stuck], error) else 0)
        self._passed(consumer, upto)
        return len(events)

    def _failed(self, consumer: Projection, event: RecordedEvent, error: Exception) -> bool:
        """Count a failure on `event`; True when the event was parked (the consumer goes on)."""
        health = self._health[consumer.name]
        now = self._clock.now()
        if health.position != event.position:
            health.backoff.reset()
            health.position, health.first_failed_at = event.position, now
        what = f"on event {event.position} ({event.type} {event.event_id})"
        if is_transient(error):
            health.backoff.failed(error, now, what + ", a transient failure: retried until it passes")
            return False
        if health.backoff.failures + 1 < self._retry.attempts:
            health.backoff.failed(
                error, now, f"{what}, attempt {health.backoff.failures + 1} of {self._retry.attempts}"
            )
            return False
        return self._park(consumer, event, error, health, now)

    def _park(
        self, consumer: Projection, event: RecordedEvent, error: Exception, health: _Health, now: datetime
    ) -> bool:
        """Record the event as parked and move the consumer's checkpoint past it, in one transaction."""
        parked = ParkedEvent(
            consumer=consumer.name,
            position=event.position,
            event_id=str(event.event_id),
            event_type=event.type,
            stream=event.stream,
            error=describe(error, where=True),
            traceback=formatted(error),
            attempts=health.backoff.failures + 1,
            first_failed_at=health.first_failed_at or now,
            last_failed_at=now,
        )
        try:
            with self._parked.parking(parked):
                consumer.commit(event.position)  # nothing is pending: the checkpoint alone moves
        except Exception as failure:
            consumer.discard()
            health.backoff.failed(failure, now, f"parking event {event.position}")
            return False
        health.backoff.failures_total += 1
        health.backoff.reset()
        health.position, health.first_failed_at = 0, None
        log.error(
            "processor %s parked event %d (%s %s) after %d attempts: %s; it goes on with the next event "
            "(GET /api/v1/processors lists it, POST .../redrive applies it again)",
            consumer.name,
            event.position,
            event.type,
            event.event_id,
            parked.attempts,
            parked.error,
        )
        return True

    def _passed(self, consumer: Projection, position: int) -> None:
        health = self._health[consumer.name]
        if health.position and position >= health.position:
            health.backoff.succeeded()
            health.position, health.first_failed_at = 0, None

    def redrive(self, consumer_name: str, position: int) -> ParkedEvent:
        """Apply a parked event to its consumer again (after a fix), marking it re-driven in the same
        transaction; a re-driven event is not applied twice. Raises NotFound, or RuleViolated with the
        error when it fails again (it stays parked, one attempt more)."""
        consumer = next((c for c in self._consumers if c.name == consumer_name), None)
        parked = self._parked.get(consumer_name, position) if consumer is not None else None
        if consumer is None or parked is None:
            raise NotFound(f"processor {consumer_name!r} has parked no event at {position}", "position")
        if parked.redriven_at is not None:
            return parked
        event = next(iter(self._store.read_all(position, limit=1)))
        now = self._clock.now()
        try:
            with self._parked.settling(consumer_name, position, now):
                consumer.apply(event)
                consumer.commit(consumer.checkpoint())
        except Exception as error:
            consumer.discard()
            self._parked.failed_again(
                consumer_name, position, describe(error, where=True), formatted(error), now
            )
            log.warning(
                "processor %s: re-driving event %d failed: %s", consumer_name, position, describe(error)
            )
            raise RuleViolated(f"the event still fails: {describe(error)}", "position") from None
        log.info("processor %s: event %d re-driven", consumer_name, position)
        redriven = self._parked.get(consumer_name, position)
        assert redriven is not None  # settled just now, in this transaction
        return redriven

    async def run(self) -> None:
        """Drain, then sleep until the log grows past what was processed or a waiting consumer's retry
        time comes, until `stop()`."""
        self._stopping.clear()
        progress = self._progress()
        while not self._stopping.is_set():
            try:
                self.drain()
            except Exception as error:  # the log could not be read: the whole runtime waits, then retries
                pause = self._reading.failed(error, self._clock.now()).total_seconds()
                await self._sleep(pause)
                continue
            self._reading.succeeded()
            async with progress:
                progress.notify_all()
            await self._idle()

    async def _idle(self) -> None:
        """Wait for new events past the ready consumers, a retry time, or `stop()`."""
        ready = self._ready()
        head = self._store.head_position()
        done = min((c.checkpoint() for c in ready), default=head)
        tasks: set[asyncio.Future[object]] = {asyncio.ensure_future(self._stopping.wait())}
        if ready:
            tasks.add(asyncio.ensure_future(self._store.wait_for_new(done)))
        await asyncio.wait(tasks, timeout=self._next_retry(), return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()

    def _next_retry(self) -> float | None:
        """Seconds until the first waiting consumer may try again (None: nobody waits)."""
        now = self._clock.now()
        times = [h.backoff.retry_at for h in self._health.values() if h.backoff.retry_at is not None]
        return max(min(times) - now, timedelta(0)).total_seconds() if times else None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def reached(self, position: int) -> None:
        """Return once every consumer has processed `position` (while `run` is going)."""
        progress = self._progress()
        async with progress:
            await progress.wait_for(lambda: min(self.positions().values(), default=position) >= position)

    def _progress(self) -> asyncio.Condition:
        if self._condition is None:
            self._condition = asyncio.Condition()
        return self._condition

    def stop(self) -> None:
        self._stopping.set()
