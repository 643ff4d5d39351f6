"""The event store port: what every adapter (SQLite, EventStoreDB) guarantees.

Versions in a stream count from 1; an empty stream is at version 0. Positions
in the global log count from 1 and have no gaps visible to readers.

Guarantees (proved by `tests/contract/test_event_store.py` for each adapter):
- optimistic concurrency: `expected_version` is an int (the stream's current
  version), `NO_STREAM` (the stream must be empty) or `ANY`;
- idempotent append: events whose `event_id` is already stored are dropped;
  when nothing new remains the call returns the stored positions and skips
  the version check (so a retry of a committed append succeeds);
- gap-free global order: a reader never sees position N+1 before N;
- `read_range` filters by event type and stream, so a consumer reads only what it folds
  while its position still advances over the rest;
- `subscribe` replays from a position, then follows new appends live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol
from uuid import UUID

import orjson


class _Any:
    def __repr__(self) -> str:
        return "ANY"


class _NoStream:
    def __repr__(self) -> str:
        return "NO_STREAM"


ANY: Final = _Any()
NO_STREAM: Final = _NoStream()
ExpectedVersion = int | _Any | _NoStream


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended. `event_id` decides idempotency."""

    event_id: UUID
    type: str
    data: dict[str, Any]
    occurred_at: datetime
    schema_version: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


class RecordedEvent:
    """An event as the store holds it: the envelope DESIGN.md describes.

    An adapter may hand over the id as its 16 bytes, the times as integer
    microseconds since the epoch and the payloads as stored JSON; each is
    decoded on first access. A replay passes a million envelopes to
    projections that look at the type and stream of all of them and at the
    rest of only the few they fold.
    """

    __slots__ = (
        "_data",
        "_event_id",
        "_metadata",
        "_occurred_at",
        "_recorded_at",
        "position",
        "schema_version",
        "stream",
        "type",
        "version",
    )

    def __init__(
        self,
        event_id: UUID | bytes,
        stream: str,
        version: int,
        position: int,
        type: str,
        schema_version: int,
        occurred_at: datetime | int,
        recorded_at: datetime | int,
        data: dict[str, Any] | bytes,
        metadata: dict[str, Any] | bytes,
    ) -> None:
        self._event_id = event_id
        self.stream = stream
        self.version = version
        self.position = position
        self.type = type
        self.schema_version = schema_version
        self._occurred_at = occurred_at
        self._recorded_at = recorded_at
        self._data = data
        self._metadata = metadata

    @property
    def event_id(self) -> UUID:
        if isinstance(self._event_id, bytes):
            self._event_id = UUID(bytes=self._event_id)
        return self._event_id

    @property
    def id_bytes(self) -> bytes:
        """The id's 16 bytes (a copier need not build the UUID)."""
        return self._event_id if isinstance(self._event_id, bytes) else self._event_id.bytes

    @property
    def occurred_at(self) -> datetime:
        if isinstance(self._occurred_at, int):
            self._occurred_at = _from_micros(self._occurred_at)
        return self._occurred_at

    @property
    def recorded_at(self) -> datetime:
        if isinstance(self._recorded_at, int):
            self._recorded_at = _from_micros(self._recorded_at)
        return self._recorded_at

    @property
    def data(self) -> dict[str, Any]:
        if isinstance(self._data, (bytes, str)):
            self._data = orjson.loads(self._data)
        return self._data  # type: ignore[return-value]

    @property
    def payload(self) -> dict[str, Any] | bytes:
        """The payload as `registry.decode` takes it: the stored JSON while undecoded, else the dict."""
        return self._data if isinstance(self._data, bytes) else self.data

    @property
    def stored_data(self) -> bytes | None:
        """The payload's JSON as stored (orjson's output), while it is undecoded; else None.

        Lets a reader that wants few events skip the rest by a byte search instead of a decode.
        """
        return self._data if isinstance(self._data, bytes) else None

    @property
    def metadata(self) -> dict[str, Any]:
        if isinstance(self._metadata, (bytes, str)):
            self._metadata = orjson.loads(self._metadata)
        return self._metadata  # type: ignore[return-value]

    @property
    def stored_metadata(self) -> bytes | None:
        """The metadata's JSON as stored, while it is undecoded; else None."""
        return self._metadata if isinstance(self._metadata, bytes) else None

    @property
    def occurred_micros(self) -> int:
        """`occurred_at` as integer microseconds since the epoch (how adapters store it)."""
        return self._occurred_at if isinstance(self._occurred_at, int) else _to_micros(self._occurred_at)

    @property
    def recorded_micros(self) -> int:
        return self._recorded_at if isinstance(self._recorded_at, int) else _to_micros(self._recorded_at)

    def _key(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.stream,
            self.version,
            self.position,
            self.type,
            self.schema_version,
            self.occurred_at,
            self.recorded_at,
            self.data,
            self.metadata,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecordedEvent) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.event_id, self.position))

    def __repr__(self) -> str:
        return (
            f"RecordedEvent({self.type} {self.stream}@{self.version} #{self.position} "
            f"id={self.event_id} data={self.data!r})"
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader folds: these types, plus every event of streams with these prefixes.

    `mentions` narrows a type to the events whose stored JSON contains one of the given byte
    strings (e.g. a key name): a reader that folds few events of a common type says which.
    """

    types: frozenset[str] = frozenset()
    stream_prefixes: tuple[str, ...] = ()
    mentions: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)

    def matches(self, event: RecordedEvent) -> bool:
        if event.stream.startswith(self.stream_prefixes):
            return True
        if event.type not in self.types:
            return False
        marks = self.mentions.get(event.type)
        return marks is None or mentions_any(event, marks)

    def union(self, other: EventFilter) -> EventFilter:
        prefixes = tuple(sorted({*self.stream_prefixes, *other.stream_prefixes}))
        types = self.types | other.types
        mentions = {}
        for type_ in types:
            mine, theirs = self._narrowing(type_), other._narrowing(type_)
            if mine is not None and theirs is not None:
                mentions[type_] = tuple(dict.fromkeys((*mine, *theirs)))
        return EventFilter(types, prefixes, mentions)

    def _narrowing(self, type_: str) -> tuple[bytes, ...] | None:
        """The marks a `type_` event must mention; None when every one is wanted; () for none."""
        if type_ not in self.types:
            return ()
        return self.mentions.get(type_)


def mentions_any(event: RecordedEvent, marks: tuple[bytes, ...]) -> bool:
    """Whether the event's payload, as stored JSON, contains one of `marks`."""
    stored = event.stored_data
    if stored is None:
        stored = orjson.dumps(event.data)
    return any(mark in stored for mark in marks)


# These two are named tuples rather than frozen dataclasses: ingestion makes one of each per
# stream of a batch (10,000 a request), and a frozen dataclass's __init__ sets each field through
# `object.__setattr__` in Python (measured: 2.4 µs against 0.9 µs for a named tuple).
class AppendResult(NamedTuple):
    """Where the appended (or already stored) events sit."""

    stream_version: int
    positions: tuple[int, ...]


class StreamAppend(NamedTuple):
    """One stream's part of a multi-stream atomic append."""

    stream: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY


class WrongExpectedVersion(Exception):
    """The stream moved on since the caller read it (HTTP 409)."""

    def __init__(self, stream: str, expected: ExpectedVersion, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected!r}")
        self.stream = stream
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[type[WrongExpectedVersion], tuple[str, ExpectedVersion, int]]:
        # raised in a worker process, it crosses to its parent (multiprocessing pickles it)
        return (WrongExpectedVersion, (self.stream, self.expected, self.actual))


class EventStore(Protocol):
    """The port. Reads and appends are synchronous; `subscribe` is an async generator."""

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Append to one stream atomically."""
        ...

    def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one atomic transaction (all or nothing)."""
        ...

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        """The stream's events from `from_version` on, in version order."""
        ...

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 when empty)."""
        ...

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[RecordedEvent]:
        """The global log from `from_position` on, in position order."""
        ...

    def read_range(self, first: int, last: int, only: EventFilter | None = None) -> list[RecordedEvent]:
        """The events at positions `first`..`last` that `only` matches (every event when None).

        `last` must not pass the head: the range is then complete (no gaps), so a reader
        that asked for it has seen every event of those types up to `last`, and may
        checkpoint `last` even when the range held none of them.
        """
        ...

    def head_position(self) -> int:
        """The position of the last committed event (0 when empty)."""
        ...

    def subscribe(self, from_position: int = 1) -> AsyncIterator[RecordedEvent]:
        """Catch up from `from_position`, then yield new events as they are committed."""
        ...

    async def wait_for_new(self, after_position: int) -> None:
        """Return once the log's head is past `after_position` (at once if it already is)."""
        ...

    def close(self) -> None: ...
