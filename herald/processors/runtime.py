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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from herald.domain.decider import Decider
from herald.infra.event_store import (
    ANY,
    EventFilter,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from herald.infra.ids import deterministic_id

log = logging.getLogger(__name__)


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
        """Persist pending changes and the checkpoint `position` atomically."""
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


def _union(consumers: Sequence[object]) -> EventFilter | None:
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
    ) -> None:
        self._store = store
        self._consumers: list[Projection] = [
            *projections,
            *(_ReactorConsumer(r, store, checkpoints, execute) for r in reactors),
        ]
        self._batch_size = batch_size
        self._stopping = asyncio.Event()
        self._condition: asyncio.Condition | None = None

    def consumers(self) -> list[Projection]:
        """Every consumer, projections first, in the order a pass feeds them."""
        return list(self._consumers)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._consumers]

    def positions(self) -> dict[str, int]:
        """Each consumer's checkpoint: how far it has processed the log."""
        return {c.name: c.checkpoint() for c in self._consumers}

    def drain(self, until: int | None = None, progress: Callable[[int], object] | None = None) -> int:
        """Process the log up to `until` (default: the head, including what reactors append)."""
        processed = 0
        while True:
            target = self._store.head_position() if until is None else until
            start = min((c.checkpoint() for c in self._consumers), default=target) + 1
            if start > target:
                return processed
            done = self._pass(start, target)
            if done == 0:
                return processed
            processed += done
            if progress is not None:
                progress(done)

    def _pass(self, start: int, target: int) -> int:
        last = min(start + self._batch_size - 1, target)
        behind = [c for c in self._consumers if c.checkpoint() < last]
        batch = self._store.read_range(start, last, _union(behind))
        for consumer in behind:
            events = _for(consumer, batch)
            try:
                for event in events:
                    consumer.apply(event)
            except BaseException:
                consumer.discard()  # the batch is applied again from the checkpoint next time
                raise
            consumer.commit(last)
        return last - start + 1

    async def run(self) -> None:
        """Drain, then sleep until the log grows past what was processed, until `stop()`."""
        self._stopping.clear()
        progress = self._progress()
        while not self._stopping.is_set():
            try:
                self.drain()
            except Exception:  # a poisoned batch must not kill the server; the next wake retries it
                log.exception("processor batch failed")
            async with progress:
                progress.notify_all()
            done = min(self.positions().values(), default=0)
            grew = asyncio.ensure_future(self._store.wait_for_new(done))
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({grew, stop}, return_when=asyncio.FIRST_COMPLETED)
            grew.cancel()
            stop.cancel()

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
