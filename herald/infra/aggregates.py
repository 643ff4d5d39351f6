"""Load an aggregate from its stream, decide a command, append the events: the command path (infrastructure
every layer uses: the use cases in `services/` and `messages/`, the processors through their ports)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from herald.domain.decider import Decider
from herald.domain.events import Event, EventRegistry
from herald.infra.clock import Clock
from herald.infra.event_store import (
    ANY,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from herald.infra.ids import IdSource, deterministic_id

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Loaded(Generic[S]):
    """An aggregate's state and the stream version it was folded from."""

    stream: str
    state: S
    version: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: its events' ids and the stream's new version."""

    stream: str
    event_ids: tuple[UUID, ...]
    stream_version: int
    events: tuple[Event, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "event_ids": [str(i) for i in self.event_ids],
            "stream_version": self.stream_version,
        }


@dataclass
class CommandContext:
    """Who asked and why: carried into every event's metadata. `request_id` makes retries no-ops."""

    actor: str = "system"
    source: str = "api"
    correlation_id: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"actor": self.actor, "source": self.source, **self.extra}
        if self.correlation_id:
            meta["correlation_id"] = self.correlation_id
        return meta


class Aggregates:
    """The command path over one event store, with injected clock and id source."""

    def __init__(
        self,
        store: EventStore,
        registry: EventRegistry,
        clock: Clock,
        ids: IdSource,
        cache_size: int = 100_000,
    ) -> None:
        # States are immutable values, so a cached fold is safe to share; loads
        # read only the events after it, which keeps long streams (a stop list
        # with millions of entries) cheap to decide on.
        self._cache: OrderedDict[tuple[int, str], Loaded[Any]] = OrderedDict()
        self._cache_size = cache_size
        self.store = store
        self.registry = registry
        self.clock = clock
        self.ids = ids

    def decode(self, recorded: RecordedEvent) -> Event:
        return self.registry.decode(recorded.type, recorded.schema_version, recorded.payload)

    def load(self, decider: Decider[Any, S], stream: str) -> Loaded[S]:
        """The stream's current state: the cached fold plus whatever was appended since (by anyone)."""
        key = (id(decider), stream)
        cached = self._cache.get(key)
        version = cached.version if cached else 0
        events = self.store.read_stream(stream, version + 1)
        if cached is not None and not events:
            self._cache.move_to_end(key)
            return cached
        state = decider.fold((self.decode(e) for e in events), cached.state if cached else None)
        return self._remember(key, Loaded(stream, state, events[-1].version if events else 0))

    def _remember(self, key: tuple[int, str], loaded: Loaded[S]) -> Loaded[S]:
        self._cache[key] = loaded
        self._cache.move_to_end(key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return loaded

    def load_at(self, decider: Decider[Any, S], stream: str, version: int) -> Loaded[S]:
        """The stream's state as it was at `version` (folded from its first event; not cached)."""
        events = [e for e in self.store.read_stream(stream) if e.version <= version]
        state = decider.fold(self.decode(e) for e in events)
        return Loaded(stream, state, events[-1].version if events else 0)

    def new_events(self, stream: str, events: Sequence[Event], context: CommandContext) -> list[NewEvent]:
        """Envelopes for `events`; with a request id the ids are deterministic, so a retry is a no-op."""
        now = self.clock.now()
        meta = context.metadata()
        return [
            NewEvent(
                event_id=(
                    deterministic_id("request", context.request_id, stream, i)
                    if context.request_id
                    else self.ids.uuid()
                ),
                type=e.type_name,
                data=e.to_data(),
                occurred_at=getattr(e, "at", None) or now,
                schema_version=e.schema_version,
                metadata=meta,
            )
            for i, e in enumerate(events)
        ]

    def execute(
        self,
        decider: Decider[Any, S],
        stream: str,
        command: Any,
        context: CommandContext,
        expected_version: int | None = None,
    ) -> Outcome:
        """Decide `command` on the stream's current state and append the result.

        With `expected_version` the caller's view must still be current (else
        WrongExpectedVersion, HTTP 409); without it the decision is re-made on
        a conflict, which is safe because `decide` re-checks every rule.
        """
        for _ in range(5):
            loaded = self.load(decider, stream)
            if expected_version is not None and loaded.version != expected_version:
                raise WrongExpectedVersion(stream, expected_version, loaded.version)
            events = list(decider.decide(command, loaded.state))
            if not events:
                return Outcome(stream, (), loaded.version)
            envelopes = self.new_events(stream, events, context)
            try:
                result = self.store.append(stream, envelopes, loaded.version)
            except WrongExpectedVersion:
                if expected_version is not None:
                    raise
                continue
            return Outcome(stream, tuple(e.event_id for e in envelopes), result.stream_version, tuple(events))
        raise WrongExpectedVersion(stream, ANY, self.store.stream_version(stream))

    def execute_on(
        self, decider: Decider[Any, S], loaded: Loaded[S], command: Any, context: CommandContext
    ) -> Loaded[S]:
        """Decide `command` on `loaded` (the caller's current view, read or made by its last
        command) and append expecting its version: the stream's new state, with no read of it.
        WrongExpectedVersion when the stream moved on since."""
        return self.execute_all_on(decider, loaded, (command,), context)

    def execute_all_on(
        self, decider: Decider[Any, S], loaded: Loaded[S], commands: Sequence[Any], context: CommandContext
    ) -> Loaded[S]:
        """`execute_on` for several commands, each decided on the state the ones before made, their
        events appended together (one write instead of one per command)."""
        return self.execute_on_many(decider, [(loaded, commands)], context)[0]

    def execute_on_many(
        self,
        decider: Decider[Any, S],
        work: Sequence[tuple[Loaded[S], Sequence[Any]]],
        context: CommandContext,
    ) -> list[Loaded[S]]:
        """`execute_all_on` over several streams in one atomic append (all or nothing:
        WrongExpectedVersion when any of them moved on); each stream's new state, in order."""
        decided = []
        for loaded, commands in work:
            state, events = loaded.state, []
            for command in commands:
                made = list(decider.decide(command, state))
                state = decider.fold(made, state)
                events += made
            decided.append((loaded, state, events))
        appends = [
            StreamAppend(loaded.stream, self.new_events(loaded.stream, events, context), loaded.version)
            for loaded, _, events in decided
            if events
        ]
        results = iter(self.store.append_many(appends) if appends else [])
        return [
            self._remember(
                (id(decider), loaded.stream), Loaded(loaded.stream, state, next(results).stream_version)
            )
            if events
            else loaded
            for loaded, state, events in decided
        ]

    def execute_request(
        self, decider: Decider[Any, S], stream: str, command: Any, request_id: str, actor: str
    ) -> Outcome:
        """Execute a processor's command; `request_id` makes a redelivered command append nothing new."""
        return self.execute(
            decider, stream, command, CommandContext(actor=actor, source="processor", request_id=request_id)
        )
