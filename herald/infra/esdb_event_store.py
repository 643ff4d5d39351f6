"""The event store port on EventStoreDB/KurrentDB (`kurrentdbclient`): the scale-out adapter.

Requires KurrentDB 25.1 or later: every append is one `multi_append_to_stream`
transaction, which is what makes the guarantees below hold.

Layout on the server (namespace `herald` by default; several Herald
installations may share a server under different namespaces):
- the Herald stream `profile-7` is the ESDB stream `herald:profile-7`; reads of
  the log are `$all` filtered on the stream-name prefix `herald:`, so other
  applications' events and system events never reach Herald;
- `herald.log` holds one `HeraldLogAdvanced {"head": n}` per committed append:
  the global head after it;
- `herald.event-<event_id>` holds one `HeraldEventStored {"stream", "version",
  "position"}` per stored event: the event id's claim.

Versions: Herald counts from 1 and an empty stream is at 0; ESDB stream
positions count from 0. So version = stream position + 1, and a stream at
Herald version n is at ESDB current version n - 1 (0 is `StreamState.NO_STREAM`).

Global positions. The port promises positions from 1 with no gaps, in the
order readers see them. ESDB's commit positions are ordered but sparse, so
positions are Herald's own, assigned by the appender and written into each
event's metadata, and `herald.log` serializes the appends: a transaction
carries the next log entry with the log's expected version, so of two racing
appends one commits and the other re-reads the head and tries again. Hence
- positions are gap-free and unique, and an append's positions all exceed
  every position committed before it, so `$all` order agrees with position
  order between appends. Within one append `$all` holds the events stream by
  stream while positions follow the caller's order (`append_many` may name a
  stream twice); readers put them back in order with a buffer no larger than
  one append (`InOrder`);
- `head_position` reads the last log entry; `read_stream` carries positions
  without any lookup; `read_all(p)` starts `$all` at the last log entry whose
  head is below p (a binary search over `herald.log`, or where the previous
  read stopped) and skips what precedes p;
- the cost: appends from all processes take turns on one stream, so write
  throughput is one transaction per round trip to the leader (a few hundred
  to a thousand a second), however many writers there are. Batches amortize
  it; the commit-position alternative (an opaque, sparse position) would lift
  the limit but break the port's gap-free numbering, on which checkpoints,
  `drain(until)` and the API's `after + 1` paging rely.

Idempotency. The port drops any event whose id is stored anywhere. ESDB only
recognizes a retry of the same events with the same expected version, or
with ANY within a bounded, non-persistent cache; an event re-appended where
the stream is exactly at the expected version is written twice. So each event
takes its id's claim stream with NO_STREAM in the same transaction: a stored id
makes the whole transaction fail, and the read-back path looks up every claim
of the call, drops the stored events (answering with their claimed version and
position), re-reads the versions of the streams that still get events, checks
the caller's expected versions against them and tries again. The claim's
version is exact because this adapter never sends ANY: a stream appended with
ANY is written at the version last seen (or 0), and a conflict there reports
the actual version to retry with. Claims double the events stored.

Atomicity: events, claims and the log entry of one `append_many` commit
together or not at all. Limits: a transaction larger than the server's maximum
append size is refused with kurrentdbclient's size error (raise the server's
limit for Herald's 10,000-event import batches); an append of no events to a
stream checks its expected version against a read, not inside a transaction.

Envelope: the type is the ESDB event type, `data` is the JSON content
(`application/json`) and the event id is Herald's. ESDB metadata is a JSON
object of strings (what multi-stream append accepts): position,
schema_version, occurred_at and recorded_at (ISO 8601 UTC, microseconds) and
Herald's metadata as a JSON document. `recorded_at` comes from the injected
clock, not the server. Other keys the server adds are ignored.

Subscriptions are server-pushed catch-up subscriptions to the filtered `$all`
(an `AsyncKurrentDBClient` per subscription), so appends from any process wake
subscribers at once; nothing polls. Streams must not be deleted or truncated.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from uuid import UUID, uuid4

import orjson
from kurrentdbclient import AsyncKurrentDBClient, KurrentDBClient, StreamState
from kurrentdbclient import NewEvent as EsdbNewEvent
from kurrentdbclient import NewEvents as EsdbNewEvents
from kurrentdbclient import RecordedEvent as EsdbRecordedEvent
from kurrentdbclient.exceptions import NotFoundError, WrongCurrentVersionError

from herald.infra.clock import Clock
from herald.infra.event_store import (
    ANY,
    NO_STREAM,
    AppendResult,
    EventFilter,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from herald.infra.serialization import dumps

DEFAULT_NAMESPACE: Final = "herald"
CLAIM_TYPE: Final = "HeraldEventStored"
LOG_TYPE: Final = "HeraldLogAdvanced"

_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+")
_PAGE = 1000  # events per `$all` read request
_LOOKUP_THREADS = 16  # claim and version reads of a retry run in parallel
_VERSIONS_KEPT = 100_000
_CURSORS_KEPT = 1024
_LOG_ENTRIES_KEPT = 4096
_JSON: Final = "application/json"

K = TypeVar("K")
V = TypeVar("V")


# -- names and versions -------------------------------------------------------------


def check_namespace(namespace: str) -> str:
    """`namespace`, if it keeps Herald's streams apart from the log and claim streams."""
    # No ':' or '.': they separate the namespace from the rest, so one
    # namespace's prefix can never match another's streams.
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r}: letters, digits, '_' and '-' only")
    return namespace


def esdb_stream(namespace: str, stream: str) -> str:
    """The ESDB stream holding Herald's `stream`."""
    return f"{namespace}:{stream}"


def herald_stream(namespace: str, esdb_name: str) -> str:
    """The Herald stream an ESDB stream holds."""
    prefix = f"{namespace}:"
    if not esdb_name.startswith(prefix):
        raise ValueError(f"{esdb_name!r} is not a Herald stream of namespace {namespace!r}")
    return esdb_name[len(prefix) :]


def claim_stream(namespace: str, event_id: UUID) -> str:
    """The stream whose existence says that `event_id` is stored."""
    return f"{namespace}.event-{event_id}"


def log_stream(namespace: str) -> str:
    """The stream of log entries: one per committed append, with the head after it."""
    return f"{namespace}.log"


def to_current_version(version: int) -> int | StreamState:
    """ESDB's `current_version` for a stream at Herald `version` (0: the stream is empty)."""
    if version < 0:
        raise ValueError(f"no stream is at version {version}")
    return StreamState.NO_STREAM if version == 0 else version - 1


def from_current_version(current: int | StreamState | None) -> int:
    """Herald's version for ESDB's `current_version` (as `get_current_version` and conflicts report it)."""
    if current is StreamState.NO_STREAM:
        return 0
    if isinstance(current, int) and current >= 0:
        return current + 1
    raise ValueError(f"not a stream's current version: {current!r}")


def expected_as_version(expected: ExpectedVersion) -> int | None:
    """The version `expected` pins the stream at; None for ANY."""
    if expected is ANY:
        return None
    return 0 if expected is NO_STREAM else expected  # type: ignore[return-value]


# -- the envelope ------------------------------------------------------------------------


def to_esdb_event(event: NewEvent, position: int, recorded_at: datetime) -> EsdbNewEvent:
    """The ESDB event that records `event` at global `position`."""
    envelope = {
        "position": str(position),
        "schema_version": str(event.schema_version),
        "occurred_at": _iso(event.occurred_at),
        "recorded_at": _iso(recorded_at),
        "metadata": dumps(event.metadata).decode(),
    }
    return EsdbNewEvent(
        type=event.type,
        data=dumps(event.data),
        metadata=orjson.dumps(envelope),
        content_type=_JSON,
        id=event.event_id,
    )


def from_recorded(recorded: EsdbRecordedEvent, namespace: str) -> RecordedEvent:
    """Herald's envelope of an event read from a Herald stream."""
    envelope = orjson.loads(recorded.metadata)
    return RecordedEvent(
        event_id=recorded.id,
        stream=herald_stream(namespace, recorded.stream_name),
        version=recorded.stream_position + 1,
        position=int(envelope["position"]),
        type=recorded.type,
        schema_version=int(envelope["schema_version"]),
        occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
        recorded_at=datetime.fromisoformat(envelope["recorded_at"]),
        data=recorded.data,
        metadata=envelope["metadata"].encode(),
    )


def _iso(moment: datetime) -> str:
    # A naive time would be taken as local time; the SQLite adapter refuses it too.
    if moment.utcoffset() is None:
        raise TypeError(f"{moment!r} has no time zone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a stored event sits: what its id's claim records."""

    stream: str
    version: int
    position: int


def to_claim(placement: Placement) -> EsdbNewEvent:
    """The claim event for an event stored at `placement`."""
    # A fresh id, never the event's: ESDB would take an identical claim for an
    # idempotent retry and commit nothing, where a conflict is what must happen.
    data = {"stream": placement.stream, "version": placement.version, "position": placement.position}
    return EsdbNewEvent(type=CLAIM_TYPE, data=orjson.dumps(data), content_type=_JSON, id=uuid4())


def from_claim(recorded: EsdbRecordedEvent) -> Placement:
    """Where the claimed event sits."""
    data = orjson.loads(recorded.data)
    return Placement(data["stream"], data["version"], data["position"])


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One committed append: its index in the log stream, the head after it, its commit position."""

    index: int
    head: int
    commit_position: int


def to_log_entry(head: int) -> EsdbNewEvent:
    """The log entry of an append that leaves the head at `head`."""
    return EsdbNewEvent(type=LOG_TYPE, data=orjson.dumps({"head": head}), content_type=_JSON, id=uuid4())


def from_log_entry(recorded: EsdbRecordedEvent) -> LogEntry:
    return LogEntry(recorded.stream_position, orjson.loads(recorded.data)["head"], recorded.commit_position)


# -- planning an append (pure) --------------------------------------------------------------


@dataclass(slots=True)
class StreamWrite:
    """One ESDB stream's part of a transaction: the events with where each goes."""

    stream: str
    expected: int  # the Herald version the stream must be at
    events: list[tuple[NewEvent, Placement]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Plan:
    writes: list[StreamWrite]
    results: list[AppendResult]
    head: int  # the log's head once the writes commit


def plan_append(
    appends: Sequence[StreamAppend], placed: dict[UUID, Placement], versions: dict[str, int], head: int
) -> Plan:
    """What to write and what to answer, given the stored ids, the streams' versions and the head.

    `versions` must name every stream that gets an event that is not in
    `placed`, and every stream of an append of no events. Raises
    WrongExpectedVersion as the port says: a part whose events are all
    stored skips its check.
    """
    versions = dict(versions)
    writes: dict[str, StreamWrite] = {}
    results: list[AppendResult] = []
    for append in appends:
        kept = [e for e in append.events if e.event_id not in placed]
        if append.events and not kept:
            # A retry of a committed append: answer as the original did.
            where = [placed[e.event_id] for e in append.events]
            results.append(AppendResult(max(w.version for w in where), tuple(w.position for w in where)))
            continue
        stream = append.stream
        version = versions[stream]
        pinned = expected_as_version(append.expected_version)
        if pinned is not None and pinned != version:
            raise WrongExpectedVersion(stream, append.expected_version, version)
        write = writes.setdefault(stream, StreamWrite(stream, version))
        positions = []
        for event in append.events:
            if event.event_id in placed:
                positions.append(placed[event.event_id].position)
                continue
            head += 1
            version += 1
            write.events.append((event, Placement(stream, version, head)))
            positions.append(head)
        versions[stream] = version
        results.append(AppendResult(version, tuple(positions)))
    return Plan([w for w in writes.values() if w.events], results, head)


# -- reading in position order (pure) -----------------------------------------------------------


class InOrder:
    """Envelopes in position order, from `$all`, which may permute positions within one append."""

    def __init__(self, next_position: int) -> None:
        self.next_position = next_position
        self._waiting: dict[int, RecordedEvent] = {}

    def push(self, event: RecordedEvent) -> list[RecordedEvent]:
        """The envelopes that are next in order once `event` has arrived (those before are dropped)."""
        if event.position < self.next_position:
            return []
        self._waiting[event.position] = event
        ready = []
        while (found := self._waiting.pop(self.next_position, None)) is not None:
            ready.append(found)
            self.next_position += 1
        return ready

    @property
    def settled(self) -> bool:
        """Nothing is held back: every position below `next_position` was seen, none above."""
        return not self._waiting


def last_entry_before(position: int, count: int, head_at: Callable[[int], int]) -> int:
    """The index of the last of `count` log entries whose head is below `position`; -1 if none is."""
    low, high = -1, count  # head_at(low) < position <= head_at(high), with virtual ends
    while high - low > 1:
        middle = (low + high) // 2
        if head_at(middle) < position:
            low = middle
        else:
            high = middle
    return low


# -- the store ---------------------------------------------------------------------------------------


class EsdbEventStore:
    """The event store port on a KurrentDB server (see the module docstring for the design)."""

    def __init__(self, url: str, clock: Clock, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._url = url
        self._clock = clock
        self._namespace = check_namespace(namespace)
        self._log_stream = log_stream(namespace)
        self._prefix = esdb_stream(namespace, "")
        self._filter: dict[str, Any] = {
            "filter_include": (self._prefix,),
            "filter_exclude": (),
            "filter_by_stream_name": True,
            "filter_by_prefix": True,
        }
        self._client = KurrentDBClient(url)
        self._pool: ThreadPoolExecutor | None = None
        # Appends of this process take turns here rather than conflicting on the log stream.
        self._write_lock = threading.Lock()
        self._log: tuple[int, int] | None = None  # (entries in the log stream, head): a guess
        self._versions: dict[str, int] = {}  # stream → version last seen: ANY appends' guesses
        self._cache_lock = threading.Lock()
        self._cursors: dict[int, int] = {}  # position → a commit position `$all` may be read from for it
        self._entries: dict[int, LogEntry] = {}

    def close(self) -> None:
        """Close the connection and the lookup threads."""
        self._client.close()
        if self._pool is not None:
            self._pool.shutdown()

    # -- appends -----------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Append to one stream atomically."""
        return self.append_many([StreamAppend(stream, events, expected_version)])[0]

    def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one atomic transaction (all or nothing)."""
        event_ids = [e.event_id for append in appends for e in append.events]
        if len(set(event_ids)) != len(event_ids):
            raise ValueError("an event id appears twice in one append")
        if not appends:
            return []
        with self._write_lock:
            return self._append_locked(appends)

    def _append_locked(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        streams = list(dict.fromkeys(a.stream for a in appends))
        # Streams every part of which says ANY: the adapter picks the version to write at.
        free = {s for s in streams if all(a.expected_version is ANY for a in appends if a.stream == s)}
        empty = {a.stream for a in appends if not a.events}
        versions = {s: self._first_guess(s, appends) for s in streams if s not in empty}
        versions.update(self._read_versions(empty))
        placed: dict[UUID, Placement] = {}
        looked_up = False
        while True:
            entries, head = self._log or self._read_log()
            try:
                plan = plan_append(appends, placed, versions, head)
            except WrongExpectedVersion:
                if looked_up:
                    raise
                placed, versions, looked_up = *self._look_up(appends), True
                continue
            if not plan.writes:
                return plan.results
            try:
                self._client.multi_append_to_stream(self._transaction(plan, entries))
            except WrongCurrentVersionError as conflict:
                if not self._settle(conflict, free, versions):
                    # A stored id, or the caller's expected version: look everything up.
                    self._log = None
                    placed, versions, looked_up = *self._look_up(appends), True
                continue
            self._committed(plan, entries)
            return plan.results

    def _settle(self, conflict: WrongCurrentVersionError, free: set[str], versions: dict[str, int]) -> bool:
        """Take in a conflict that needs no look-up (the log moved, or a stream written with ANY)."""
        name = conflict.stream_name or ""
        if name == self._log_stream:
            self._log = None  # another process appended: take the new head
            return True
        stream = name.removeprefix(self._prefix) if name.startswith(self._prefix) else None
        if stream not in free:
            return False
        try:
            versions[stream] = from_current_version(conflict.actual_version)
        except ValueError:
            return False
        return True

    def _first_guess(self, stream: str, appends: Sequence[StreamAppend]) -> int:
        """The version to write `stream` at before anything was read: the caller's, or the last seen."""
        first = next(a for a in appends if a.stream == stream)
        pinned = expected_as_version(first.expected_version)
        return pinned if pinned is not None else self._versions.get(stream, 0)

    def _transaction(self, plan: Plan, entries: int) -> list[EsdbNewEvents]:
        recorded_at = self._clock.now()
        namespace = self._namespace
        events = [
            EsdbNewEvents(
                esdb_stream(namespace, write.stream),
                [to_esdb_event(event, where.position, recorded_at) for event, where in write.events],
                to_current_version(write.expected),
            )
            for write in plan.writes
        ]
        claims = [
            EsdbNewEvents(claim_stream(namespace, event.event_id), [to_claim(where)], StreamState.NO_STREAM)
            for write in plan.writes
            for event, where in write.events
        ]
        entry = EsdbNewEvents(self._log_stream, [to_log_entry(plan.head)], to_current_version(entries))
        return [*events, *claims, entry]

    def _committed(self, plan: Plan, entries: int) -> None:
        self._log = (entries + 1, plan.head)
        for write in plan.writes:
            self._versions[write.stream] = write.events[-1][1].version
        _trim(self._versions, _VERSIONS_KEPT)

    def _look_up(self, appends: Sequence[StreamAppend]) -> tuple[dict[UUID, Placement], dict[str, int]]:
        """The claims of the call's ids, and the versions of the streams that still get events."""
        ids = [e.event_id for append in appends for e in append.events]
        placed = {i: p for i, p in zip(ids, self._lookups(self._claim_of, ids), strict=True) if p}
        needed = list(
            dict.fromkeys(
                a.stream for a in appends if not a.events or any(e.event_id not in placed for e in a.events)
            )
        )
        return placed, self._read_versions(needed)

    def _claim_of(self, event_id: UUID) -> Placement | None:
        try:
            (recorded,) = self._client.get_stream(claim_stream(self._namespace, event_id), limit=1)
        except NotFoundError:
            return None
        return from_claim(recorded)

    def _read_versions(self, streams: Iterable[str]) -> dict[str, int]:
        streams = list(streams)
        return dict(zip(streams, self._lookups(self.stream_version, streams), strict=True))

    def _lookups(self, lookup: Callable[[K], V], keys: list[K]) -> list[V]:
        if len(keys) <= 1:
            return [lookup(k) for k in keys]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_LOOKUP_THREADS, thread_name_prefix="esdb-lookup")
        return list(self._pool.map(lookup, keys))

    # -- the log -------------------------------------------------------------

    def _read_log(self) -> tuple[int, int]:
        """(entries in the log stream, head), as the server has them now."""
        last = self._last_entry()
        self._log = (0, 0) if last is None else (last.index + 1, last.head)
        return self._log

    def _last_entry(self) -> LogEntry | None:
        try:
            recorded = self._client.get_stream(self._log_stream, backwards=True, limit=1)
        except NotFoundError:
            return None
        return from_log_entry(recorded[0]) if recorded else None

    def _entry(self, index: int) -> LogEntry:
        entry = self._entries.get(index)
        if entry is None:
            (recorded,) = self._client.get_stream(self._log_stream, stream_position=index, limit=1)
            entry = from_log_entry(recorded)
            with self._cache_lock:
                self._entries[index] = entry
                _trim(self._entries, _LOG_ENTRIES_KEPT)
        return entry

    def _after_entry_below(self, position: int) -> int | None:
        """The commit position of the last log entry whose head is below `position` (None: none is).

        Appends commit one after another, so every event at `position` and
        after lies after that entry in `$all`.
        """
        if position <= 1:
            return None
        last = self._last_entry()
        if last is None:
            return None
        if last.head < position:
            return last.commit_position
        index = last_entry_before(position, last.index, lambda i: self._entry(i).head)
        return None if index < 0 else self._entry(index).commit_position

    def _remember_cursor(self, position: int, commit_position: int) -> None:
        with self._cache_lock:
            self._cursors[position] = commit_position
            _trim(self._cursors, _CURSORS_KEPT)

    # -- reads -------------------------------------------------------------

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        """The stream's events from `from_version` on, in version order."""
        start = max(from_version, 1) - 1
        try:
            recorded = self._client.get_stream(
                esdb_stream(self._namespace, stream), stream_position=start or None
            )
        except NotFoundError:
            return []
        return [from_recorded(r, self._namespace) for r in recorded]

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 when empty)."""
        return from_current_version(self._client.get_current_version(esdb_stream(self._namespace, stream)))

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[RecordedEvent]:
        """The global log from `from_position` on, in position order."""
        if limit is not None and limit <= 0:
            return
        order = InOrder(max(from_position, 1))
        remaining = limit
        start = self._cursors.get(order.next_position)
        if start is None:
            start = self._after_entry_below(order.next_position)
        # Page by page rather than one open read: no server read outlives a page.
        # A page starts at the previous page's last event, which the server
        # includes again; a page with nothing else is the end (a short page is
        # not: a filtered read may stop short).
        while True:
            page = [
                recorded
                for recorded in self._client.read_all(commit_position=start, limit=_PAGE, **self._filter)
                if recorded.commit_position != start
            ]
            if not page:
                return
            for recorded in page:
                ready = order.push(from_recorded(recorded, self._namespace))
                for event in ready:
                    yield event
                    if remaining is not None:
                        remaining -= 1
                        if remaining == 0:
                            if event is ready[-1] and order.settled:
                                self._remember_cursor(order.next_position, recorded.commit_position)
                            return
            start = page[-1].commit_position
            if order.settled:
                self._remember_cursor(order.next_position, start)

    def read_range(self, first: int, last: int, only: EventFilter | None = None) -> list[RecordedEvent]:
        """The events at positions `first`..`last` that `only` matches (every event when None).

        Filtered here, not by the server: Herald's positions are the adapter's own
        numbering (restored in order from the server's), so the range is read whole.
        """
        if last < first:
            return []
        return [
            event
            for event in self.read_all(first, limit=last - first + 1)
            if only is None or only.matches(event)
        ]

    def head_position(self) -> int:
        """The position of the last committed event (0 when empty)."""
        last = self._last_entry()
        return 0 if last is None else last.head

    # -- live --------------------------------------------------------------

    async def subscribe(self, from_position: int = 1) -> AsyncGenerator[RecordedEvent, None]:
        """Catch up from `from_position`, then yield new events as they are committed."""
        order = InOrder(max(from_position, 1))
        # From a log entry, not from where a read stopped: the subscription
        # leaves its start out, which loses nothing when the whole append of
        # that position lies below `from_position`.
        commit = await asyncio.to_thread(self._after_entry_below, order.next_position)
        client = AsyncKurrentDBClient(self._url)
        await client.connect()
        try:
            subscription = await client.subscribe_to_all(commit_position=commit, **self._filter)
            try:
                async for recorded in subscription:
                    for event in order.push(from_recorded(recorded, self._namespace)):
                        yield event
            finally:
                await subscription.stop()
        finally:
            await client.close()

    async def wait_for_new(self, after_position: int) -> None:
        """Return once the log's head is past `after_position` (at once if it already is)."""
        if await asyncio.to_thread(self.head_position) > after_position:
            return
        async with contextlib.aclosing(self.subscribe(after_position + 1)) as following:
            await anext(following)


def _trim(kept: dict[K, V], limit: int) -> None:
    """Drop the oldest half of `kept` once it holds more than `limit` entries."""
    if len(kept) > limit:
        for key in list(kept)[: len(kept) // 2]:
            kept.pop(key, None)
