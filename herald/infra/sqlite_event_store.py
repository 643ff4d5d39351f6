"""The embedded event store: one SQLite file in WAL mode.

Durability: WAL with `synchronous=NORMAL` does not fsync on every commit, only
at checkpoints. A committed append survives a crash of the process (the WAL is
in the OS page cache), but power loss or an OS crash may lose the last
transactions; the file itself is never corrupted. That is the trade for not
paying an fsync on every commit.

Concurrency: several processes may share one file. Every append takes the
write lock with `BEGIN IMMEDIATE` before it reads stream versions, so version
checks cannot race, and waits for the lock up to `busy_timeout`. Positions are
the `INTEGER PRIMARY KEY`, assigned inside that write transaction, so commit
order is position order and a reader (who sees only committed data) never sees
a gap.

Writers queue before that, on a thread lock within the process and on an
`flock` of `<file>-writer.lock` across processes: SQLite's busy handler
sleeps 1, 2, 5 … 100 ms between tries, so a busy writer re-takes the lock
while the others sleep (measured: 4 processes appending flat out, worst wait
840 ms); the kernel wakes a queued writer as soon as the lock is free (worst
wait 36 ms). The `flock` only orders Herald's writers; `BEGIN IMMEDIATE` is
what makes appends safe, also against other programs on the file.

Threads: one connection per thread (`threading.local`), so reads from a
threadpool run in parallel with the event loop's. `close()` closes all of them.

Exactly-once by event id: the log's only unique key is its position (appends
go to the end of the table's B-tree), and the ids stored are known through an
`EventIdIndex` (64-bit hashes → positions, the newest in memory and the rest
spilled to unlinked files beside the log behind a Bloom filter, built from the
log on a writer's first append and caught up inside every write transaction,
so other processes' appends count too). A hash the index holds is confirmed by reading
the candidate rows and comparing the full ids. Measured on this machine: a
unique index on the 16-byte ids cost a third of the raw insert rate
(BENCHMARKS.md, "Appends").

Schema versions (`PRAGMA user_version`): 1 had `UNIQUE` on `event_id` and on
`(stream, version)`; 2 has neither, and finds streams by `stream_key` (a 64-bit
hash of the name, checked against the name). Opening a version-1 file migrates
it in one write transaction; code older than version 2 cannot append to a
migrated file. Versions stay unique per stream because they are assigned under
the write lock (`BEGIN IMMEDIATE`), after reading the stream's current version.

Decisions where the port is silent:
- an append whose events are all stored already returns the version the
  highest of those events sits at, i.e. what the original append returned;
- the same `event_id` twice in one call is a caller's bug: ValueError;
- an append of no events still checks `expected_version` (a cheap assertion
  of where a stream is) and returns the current version with no positions;
- `occurred_at` must be timezone-aware; times are stored as integer
  microseconds since the epoch and read back in UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from xxhash import xxh3_64_intdigest

from herald.infra.clock import Clock
from herald.infra.event_id_index import EventIdIndex, IdHash, uuid_hash
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
from herald.infra.stream_locks import flocked

_SCHEMA_VERSION = 2
_TABLE = """
CREATE TABLE {name} (
    position INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    metadata BLOB NOT NULL,
    stream_key INTEGER NOT NULL
)
"""
# Streams are found by a 64-bit hash of their name (`stream_key`, checked against
# `stream` on every read): an integer index costs an append less than one on the
# names (measured with 1,000-event batches over random streams: 172k against 105k
# raw inserts/s). No separate table of stream versions: the index answers
# "current version" with one seek, and every extra B-tree an append dirties costs.
_INDEX = "CREATE INDEX events_by_stream ON events (stream_key, version)"
SCHEMA = (_TABLE.format(name="events"), _INDEX)

# Column order shared by every read, matched by `_decode`.
_COLUMNS = (
    "position, event_id, stream, version, type, schema_version, occurred_at, recorded_at, data, metadata"
)
INSERT = (
    "INSERT INTO events (position, stream, version, recorded_at, stream_key,"
    " event_id, type, schema_version, occurred_at, data, metadata)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_IN_CHUNK = 500  # well under SQLite's bound-parameter limit
_PAGE = 5000
_INDEX_PAGE = 100_000  # rows read per query while the id index catches up
_KNOWN_STREAMS = 100_000  # streams whose version a writer keeps (the most recently appended to)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_TWO_63 = 2**63
_TWO_64 = 2**64
StreamHash = Callable[[str], int]
"""A stream name → its signed 64-bit key."""

# (event_id, type, schema_version, occurred_at µs, data, metadata).
_Prepared = tuple[bytes, str, int, int, bytes, bytes]
# Where an event sits: (position, version).
_Placement = tuple[int, int]


class _KnownVersions:
    """The versions of the streams appended to most recently: exact, since a writer learns every
    append (its own once committed, other processes' in the catch-up inside its write transaction)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._versions: dict[str, int] = {}  # least recently appended first

    def split(self, streams: Iterable[str]) -> tuple[dict[str, int], list[str]]:
        """The versions known, and the streams not known."""
        known: dict[str, int] = {}
        unknown: list[str] = []
        versions = self._versions
        for stream in streams:
            version = versions.get(stream)
            if version is None:
                unknown.append(stream)
            else:
                known[stream] = version
        return known, unknown

    def update(self, pairs: Iterable[tuple[str, int]]) -> None:
        versions = self._versions
        for stream, version in pairs:
            versions.pop(stream, None)
            versions[stream] = version
        excess = len(versions) - self._size
        if excess > 0:
            for stream in list(islice(versions, excess + self._size // 10)):
                del versions[stream]


class SqliteEventStore:
    """The event store port on one SQLite file (see the module docstring for guarantees)."""

    def __init__(
        self,
        path: str | Path,
        clock: Clock,
        *,
        poll_interval: float = 0.05,
        busy_timeout: float = 30.0,
        id_hash: IdHash = uuid_hash,
        stream_hash: StreamHash | None = None,
    ) -> None:
        self._path = str(path)
        self._clock = clock
        self._poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer_lock_fd = os.open(self._path + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._subscribers_lock = threading.Lock()
        # Both hashes are test hooks: a weak hash forces the collisions the checks must catch.
        self._ids = EventIdIndex(id_hash, spill_dir=Path(self._path).parent)
        self._known = _KnownVersions(_KNOWN_STREAMS)
        self._stream_key = stream_hash or stream_key
        with self._write_lock, flocked(self._writer_lock_fd):
            _open_schema(self._conn(), self._stream_key)

    # -- connections -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() may close every
            # thread's connection; each connection is used by its own thread.
            conn = sqlite3.connect(
                self._path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,  # sets SQLite's busy_timeout
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32768")  # 32 MiB: index pages of big batches
            # Checkpoint every ~40 MB of WAL rather than 4 MB: a checkpoint
            # syncs twice, and a 10,000-event batch alone writes ~3 MB.
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        os.close(self._writer_lock_fd)
        self._ids.close()

    # -- appends -----------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Append to one stream atomically."""
        return self.append_many([StreamAppend(stream, events, expected_version)])[0]

    def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one atomic transaction (all or nothing)."""
        # Serialized before the write lock, so the lock is held only for SQL.
        prepared = prepare(appends)
        event_ids = [p[0] for batch in prepared for p in batch]
        if len(set(event_ids)) != len(event_ids):
            raise ValueError("an event id appears twice in one append")
        hashes = self._ids.id_hash(event_ids)
        with self._write_lock, flocked(self._writer_lock_fd):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                answer = self._append_locked(conn, appends, prepared, event_ids, hashes)
                results, rows, head, versions = answer
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Indexed only once committed; a failure before this line leaves the rows to the next catch-up.
            if len(rows) == len(event_ids):  # nothing was stored already: the rows are in id order
                stored = hashes
            else:
                hash_of = dict(zip(event_ids, hashes, strict=True))
                stored = [hash_of[row[5]] for row in rows]
            self._ids.add(stored, [row[0] for row in rows], head)
            self._known.update(versions.items())
        self._notify()
        return results

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        appends: Sequence[StreamAppend],
        prepared: list[list[_Prepared]],
        event_ids: list[bytes],
        hashes: list[int],
    ) -> tuple[list[AppendResult], list[tuple[Any, ...]], int, dict[str, int]]:
        """The answers, the rows inserted, the new head and each stream's version after."""
        head: int = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        self._catch_up(conn, head)
        placed = _stored_placements(conn, event_ids, self._ids.candidates(hashes))
        keys = {append.stream: self._stream_key(append.stream) for append in appends}
        versions, unknown = self._known.split(keys)
        if unknown:
            versions.update(_stream_versions(conn, {stream: keys[stream] for stream in unknown}))
        recorded_at = _to_micros(self._clock.now())
        rows, results = _plan(appends, prepared, placed, versions, keys, head, recorded_at)
        conn.executemany(INSERT, rows)
        return results, rows, head + len(rows), versions

    def _catch_up(self, conn: sqlite3.Connection, head: int) -> None:
        """Learn the events appended since the last look (by other processes, or all on first use)."""
        while self._ids.covered < head:
            rows = conn.execute(
                "SELECT position, event_id, stream, version FROM events WHERE position > ?"
                " ORDER BY position LIMIT ?",
                (self._ids.covered, _INDEX_PAGE),
            ).fetchall()
            if not rows:
                return
            positions = [row[0] for row in rows]
            self._ids.add(self._ids.id_hash([row[1] for row in rows]), positions, positions[-1])
            self._known.update((row[2], row[3]) for row in rows)

    # -- reads -------------------------------------------------------------

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        """The stream's events from `from_version` on, in version order."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream_key = ? AND stream = ? AND version >= ?"
            " ORDER BY version",
            (self._stream_key(stream), stream, from_version),
        )
        return _decode(rows)

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 when empty)."""
        return _version_of(self._conn(), self._stream_key(stream), stream)

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[RecordedEvent]:
        """The global log from `from_position` on, in position order."""
        # Page by position rather than hold one cursor open: no read
        # transaction outlives a page (which would pin the WAL), and a page
        # may be read on whichever thread resumes the iterator.
        remaining = limit
        while remaining is None or remaining > 0:
            size = _PAGE if remaining is None else min(_PAGE, remaining)
            page = self._page(from_position, size)
            yield from page
            if len(page) < size:
                return
            from_position = page[-1].position + 1
            if remaining is not None:
                remaining -= len(page)

    def read_range(self, first: int, last: int, only: EventFilter | None = None) -> list[RecordedEvent]:
        """The events at positions `first`..`last` that `only` matches (every event when None)."""
        # Filtered by SQLite while it walks the position range: an event no consumer
        # reads costs no Python object (three in four events of a replay).
        sql = f"SELECT {_COLUMNS} FROM events WHERE position BETWEEN ? AND ?"
        params: list[Any] = [first, last]
        if only is not None:
            whole = sorted(only.types - only.mentions.keys())
            terms = [f"type IN ({','.join('?' * len(whole))})"]
            params += whole
            for type_, marks in sorted(only.mentions.items()):
                # instr() on two BLOBs searches bytes: the payload is never decoded for this.
                terms.append(f"(type = ? AND ({' OR '.join(['instr(data, ?) > 0'] * len(marks))}))")
                params += [type_, *marks]
            for prefix in only.stream_prefixes:
                # A prefix range on the (stream, version) index's collation, no LIKE wildcards.
                terms.append("(stream >= ? AND stream < ?)")
                params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
            sql += f" AND ({' OR '.join(terms)})"
        return _decode(self._conn().execute(sql + " ORDER BY position", params))

    def head_position(self) -> int:
        """The position of the last committed event (0 when empty)."""
        return int(self._conn().execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])

    def _page(self, from_position: int, size: int) -> list[RecordedEvent]:
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?",
            (from_position, size),
        )
        return _decode(rows)

    # -- live --------------------------------------------------------------

    async def subscribe(self, from_position: int = 1) -> AsyncIterator[RecordedEvent]:
        """Catch up from `from_position`, then yield new events as they are committed."""
        with self._listening() as wake:
            while True:
                # Cleared before reading, so an append committed after the
                # read sets it again and is not missed.
                wake.clear()
                page = self._page(from_position, _PAGE)
                for event in page:
                    yield event
                    from_position = event.position + 1
                if len(page) < _PAGE:
                    await self._until_new(wake, from_position)

    async def wait_for_new(self, after_position: int) -> None:
        """Return once the log's head is past `after_position` (at once if it already is)."""
        with self._listening() as wake:
            while self.head_position() <= after_position:
                await self._until_new(wake, after_position + 1)
                wake.clear()

    @contextlib.contextmanager
    def _listening(self) -> Iterator[asyncio.Event]:
        """An event set by every append this store object commits, while the block lasts."""
        wake = asyncio.Event()
        subscriber = (asyncio.get_running_loop(), wake)
        with self._subscribers_lock:
            self._subscribers.add(subscriber)
        try:
            yield wake
        finally:
            with self._subscribers_lock:
                self._subscribers.discard(subscriber)

    async def _until_new(self, wake: asyncio.Event, from_position: int) -> None:
        """Return on a local append, or when polling finds `from_position` committed elsewhere."""
        while True:
            try:
                async with asyncio.timeout(self._poll_interval):
                    await wake.wait()
                return
            except TimeoutError:
                if self.head_position() >= from_position:
                    return

    def _notify(self) -> None:
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        if not subscribers:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, wake in subscribers:
            if loop is running:
                wake.set()
                continue
            # A loop may close under a subscriber nobody closed: nobody waits there.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)


# -- helpers ---------------------------------------------------------------


def _to_micros(moment: datetime) -> int:
    # Subtracting from an aware epoch raises TypeError for naive datetimes,
    # which would otherwise be read as local time.
    return (moment - _EPOCH) // _MICROSECOND


def stream_key(stream: str) -> int:
    """The stream's 64-bit key, signed as SQLite stores integers."""
    key = xxh3_64_intdigest(stream.encode())
    return key - _TWO_64 if key >= _TWO_63 else key


def prepare(appends: Sequence[StreamAppend]) -> list[list[_Prepared]]:
    """Each append's events as row parts, serialized (a batch's events mostly share a time and metadata)."""
    micros: dict[datetime, int] = {}
    metadata: dict[int, bytes] = {}  # by id(): the dicts stay alive while the events hold them
    prepared = []
    for append in appends:
        rows = []
        for event in append.events:
            occurred = micros.get(event.occurred_at)
            if occurred is None:
                occurred = micros[event.occurred_at] = _to_micros(event.occurred_at)
            meta = metadata.get(id(event.metadata))
            if meta is None:
                meta = metadata[id(event.metadata)] = _trim(dumps(event.metadata))
            data = _trim(dumps(event.data))
            rows.append((event.event_id.bytes, event.type, event.schema_version, occurred, data, meta))
        prepared.append(rows)
    return prepared


def _trim(serialized: bytes) -> bytes:
    # orjson >= 3.12 hands back its whole ~4 KiB buffer for even a tiny
    # document; a batch holds its rows until executemany, so untrimmed a
    # 10,000-event append would fault in ~80 MB. A two-part join copies.
    return b"".join((serialized, b""))


def _plan(
    appends: Sequence[StreamAppend],
    prepared: list[list[_Prepared]],
    placed: dict[bytes, _Placement],
    versions: dict[str, int],
    keys: dict[str, int],
    head: int,
    recorded_at: int,
) -> tuple[list[tuple[Any, ...]], list[AppendResult]]:
    """The rows to insert and the answers, given `placed` ids (`versions` moves on to those after)."""
    rows: list[tuple[Any, ...]] = []
    results: list[AppendResult] = []
    for append, batch in zip(appends, prepared, strict=True):
        stream = append.stream
        kept = [p for p in batch if p[0] not in placed] if placed else batch
        if batch and not kept:
            # A retry of a committed append: answer as the original did.
            where = [placed[p[0]] for p in batch]
            results.append(AppendResult(max(w[1] for w in where), tuple(w[0] for w in where)))
            continue
        version = versions.get(stream, 0)
        if append.expected_version is not ANY:
            _check(stream, append.expected_version, version)
        first = head + 1
        key = keys[stream]
        for p in kept:
            head += 1
            version += 1
            rows.append((head, stream, version, recorded_at, key, *p))
        if kept:
            versions[stream] = version
        if kept is batch:
            positions = tuple(range(first, head + 1))
        else:
            fresh = iter(range(first, head + 1))
            positions = tuple(placed[p[0]][0] if p[0] in placed else next(fresh) for p in batch)
        results.append(AppendResult(version, positions))
    return rows, results


def _check(stream: str, expected: ExpectedVersion, actual: int) -> None:
    if (expected is NO_STREAM and actual != 0) or (isinstance(expected, int) and expected != actual):
        raise WrongExpectedVersion(stream, expected, actual)


def _chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, _IN_CHUNK)):
        yield chunk


def _stored_placements(
    conn: sqlite3.Connection, event_ids: list[bytes], candidates: dict[int, list[int]]
) -> dict[bytes, _Placement]:
    """Where each of `event_ids` that is stored sits, read from the rows the hash index points at.

    The full ids are compared, so an id whose hash merely equals a stored one's is not placed.
    """
    if not candidates:
        return {}
    wanted = set(event_ids)
    placed: dict[bytes, _Placement] = {}
    for chunk in _chunks(sorted({p for positions in candidates.values() for p in positions})):
        marks = ",".join("?" * len(chunk))
        for event_id, position, version in conn.execute(
            f"SELECT event_id, position, version FROM events WHERE position IN ({marks})", chunk
        ):
            if event_id in wanted:
                placed[event_id] = (position, version)
    return placed


def _open_schema(conn: sqlite3.Connection, key_of: StreamHash) -> None:
    """Create the log, or bring an older file's schema up to date, in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")
        if not tables.fetchone():
            for statement in SCHEMA:
                conn.execute(statement)
        elif version < 2:
            _migrate_to_2(conn, key_of)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate_to_2(conn: sqlite3.Connection, key_of: StreamHash) -> None:
    """Version 1 → 2: the same rows, keyed by `stream_key`, without the unique indexes on
    `event_id` and `(stream, version)`.

    SQLite cannot drop a column's UNIQUE constraint, so the table is copied (in position order).
    """
    conn.create_function("herald_stream_key", 1, key_of, deterministic=True)
    conn.execute(_TABLE.format(name="events_v2"))
    conn.execute(
        f"INSERT INTO events_v2 ({_COLUMNS}, stream_key)"
        f" SELECT {_COLUMNS}, herald_stream_key(stream) FROM events ORDER BY position"
    )
    conn.execute("DROP TABLE events")
    conn.execute("ALTER TABLE events_v2 RENAME TO events")
    conn.execute(_INDEX)


def _stream_versions(conn: sqlite3.Connection, keys: dict[str, int]) -> dict[str, int]:
    """The current version of each stream (missing: empty), given the streams' keys."""
    by_key: dict[int, list[str]] = {}
    for stream, key in keys.items():
        by_key.setdefault(key, []).append(stream)
    tops: dict[int, list[tuple[str, int]]] = {}
    for chunk in _chunks(by_key):
        # One seek per key (max() of the last indexed column), then the row holding it.
        values = ",".join(["(?)"] * len(chunk))
        for key, stream, version in conn.execute(
            f"WITH wanted (key) AS (VALUES {values}) SELECT e.stream_key, e.stream, e.version"
            " FROM wanted JOIN events e ON e.stream_key = wanted.key"
            " AND e.version = (SELECT max(version) FROM events WHERE stream_key = wanted.key)",
            chunk,
        ):
            tops.setdefault(key, []).append((stream, version))
    versions: dict[str, int] = {}
    for key, top in tops.items():
        streams = by_key[key]
        if len(top) == 1 and streams == [top[0][0]]:
            versions[top[0][0]] = top[0][1]
            continue
        for stream in streams:  # another stream shares the key: ask for each by name
            version = _version_of(conn, key, stream)
            if version:
                versions[stream] = version
    return versions


def _version_of(conn: sqlite3.Connection, key: int, stream: str) -> int:
    """One stream's version, walking its key's index entries from the top until its name matches."""
    row = conn.execute(
        "SELECT version FROM events WHERE stream_key = ? AND stream = ? ORDER BY version DESC LIMIT 1",
        (key, stream),
    ).fetchone()
    return int(row[0]) if row else 0


def _decode(rows: Iterable[tuple[Any, ...]]) -> list[RecordedEvent]:
    # The replay path: a million rows go through here. The envelope decodes its
    # id, times and payloads only when they are read, so this is one object per row.
    record = RecordedEvent
    return [
        record(event_id, stream, version, position, type_, schema, occurred, recorded, data, meta)
        for position, event_id, stream, version, type_, schema, occurred, recorded, data, meta in rows
    ]
