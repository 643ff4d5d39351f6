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
`EventIdIndex` (64-bit hashes → positions, in memory, built from the log on a
writer's first append and caught up inside every write transaction, so other
processes' appends count too). A hash the index holds is confirmed by reading
the candidate rows and comparing the full ids. Measured on this machine: a
unique index on the 16-byte ids cost a third of the raw insert rate
(BENCHMARKS.md, "Appends").

Schema versions (`PRAGMA user_version`): 1 had `UNIQUE` on `event_id`; 2 drops
it. Opening a version-1 file migrates it in one write transaction.

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
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

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
    UNIQUE (stream, version)
);
"""
_SCHEMA = _TABLE.format(name="events")
# No separate table of stream versions: the (stream, version) index answers
# "current version" with one seek, and every extra B-tree an append dirties
# costs (measured: +45% appends/s over random streams without it).

# Column order shared by every read, matched by `_decode`.
_COLUMNS = (
    "position, event_id, stream, version, type, schema_version, occurred_at, recorded_at, data, metadata"
)
_INSERT = (
    "INSERT INTO events (position, stream, version, recorded_at,"
    " event_id, type, schema_version, occurred_at, data, metadata)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_IN_CHUNK = 500  # well under SQLite's bound-parameter limit
_PAGE = 5000
_INDEX_PAGE = 100_000  # ids read per query while the id index catches up
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# (event_id, type, schema_version, occurred_at µs, data, metadata).
_Prepared = tuple[bytes, str, int, int, bytes, bytes]
# Where an event sits: (position, version).
_Placement = tuple[int, int]


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
        self._ids = EventIdIndex(id_hash)  # `id_hash` is a test hook: a weak hash forces collisions
        with self._write_lock, _flocked(self._writer_lock_fd):
            _open_schema(self._conn())

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

    # -- appends -----------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Append to one stream atomically."""
        return self.append_many([StreamAppend(stream, events, expected_version)])[0]

    def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one atomic transaction (all or nothing)."""
        # Serialized before the write lock, so the lock is held only for SQL.
        prepared = [[_prepare(event) for event in append.events] for append in appends]
        event_ids = [p[0] for batch in prepared for p in batch]
        if len(set(event_ids)) != len(event_ids):
            raise ValueError("an event id appears twice in one append")
        with self._write_lock, _flocked(self._writer_lock_fd):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                results, rows, head = self._append_locked(conn, appends, prepared, event_ids)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Indexed only once committed; a failure before this line leaves the rows to the next catch-up.
            hash_of = dict(zip(event_ids, self._ids.id_hash(event_ids), strict=True))
            self._ids.add([hash_of[row[4]] for row in rows], [row[0] for row in rows], head)
        self._notify()
        return results

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        appends: Sequence[StreamAppend],
        prepared: list[list[_Prepared]],
        event_ids: list[bytes],
    ) -> tuple[list[AppendResult], list[tuple[Any, ...]], int]:
        """The answers, the rows inserted and the new head."""
        head: int = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        self._catch_up(conn, head)
        placed = _stored_placements(conn, event_ids, self._ids.candidates(self._ids.id_hash(event_ids)))
        versions = _stream_versions(conn, {append.stream for append in appends})
        recorded_at = _to_micros(self._clock.now())
        rows, results = _plan(appends, prepared, placed, versions, head, recorded_at)
        conn.executemany(_INSERT, rows)
        return results, rows, head + len(rows)

    def _catch_up(self, conn: sqlite3.Connection, head: int) -> None:
        """Index the events appended since the index last looked (by other processes, or all on first use)."""
        while self._ids.covered < head:
            rows = conn.execute(
                "SELECT position, event_id FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (self._ids.covered, _INDEX_PAGE),
            ).fetchall()
            if not rows:
                return
            positions = [row[0] for row in rows]
            self._ids.add(self._ids.id_hash([row[1] for row in rows]), positions, positions[-1])

    # -- reads -------------------------------------------------------------

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        """The stream's events from `from_version` on, in version order."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND version >= ? ORDER BY version",
            (stream, from_version),
        )
        return _decode(rows)

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 when empty)."""
        row = self._conn().execute("SELECT max(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        return int(row[0] or 0)

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
            terms = [f"type IN ({','.join('?' * len(only.types))})"]
            params += sorted(only.types)
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


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _to_micros(moment: datetime) -> int:
    # Subtracting from an aware epoch raises TypeError for naive datetimes,
    # which would otherwise be read as local time.
    return (moment - _EPOCH) // _MICROSECOND


def _prepare(event: NewEvent) -> _Prepared:
    return (
        event.event_id.bytes,
        event.type,
        event.schema_version,
        _to_micros(event.occurred_at),
        _trim(dumps(event.data)),
        _trim(dumps(event.metadata)),
    )


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
    head: int,
    recorded_at: int,
) -> tuple[list[tuple[Any, ...]], list[AppendResult]]:
    """The rows to insert and the answers, given `placed` ids."""
    versions = dict(versions)
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
        for p in kept:
            head += 1
            version += 1
            rows.append((head, stream, version, recorded_at, *p))
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


def _open_schema(conn: sqlite3.Connection) -> None:
    """Create the log, or bring an older file's schema up to date, in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")
        if not tables.fetchone():
            conn.execute(_SCHEMA)
        elif version < 2:
            _drop_event_id_index(conn)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _drop_event_id_index(conn: sqlite3.Connection) -> None:
    """Version 1 → 2: the same rows in a table without the unique index on `event_id`.

    SQLite cannot drop a column's UNIQUE constraint, so the table is copied (in position order).
    """
    conn.execute(_TABLE.format(name="events_v2"))
    conn.execute(f"INSERT INTO events_v2 ({_COLUMNS}) SELECT {_COLUMNS} FROM events ORDER BY position")
    conn.execute("DROP TABLE events")
    conn.execute("ALTER TABLE events_v2 RENAME TO events")


def _stream_versions(conn: sqlite3.Connection, streams: set[str]) -> dict[str, int]:
    versions: dict[str, int] = {}
    for chunk in _chunks(streams):
        marks = ",".join("?" * len(chunk))
        versions.update(
            conn.execute(
                f"SELECT stream, max(version) FROM events WHERE stream IN ({marks}) GROUP BY stream", chunk
            )
        )
    return versions


def _decode(rows: Iterable[tuple[Any, ...]]) -> list[RecordedEvent]:
    # The replay path: a million rows go through here. The envelope decodes its
    # id, times and payloads only when they are read, so this is one object per row.
    record = RecordedEvent
    return [
        record(event_id, stream, version, position, type_, schema, occurred, recorded, data, meta)
        for position, event_id, stream, version, type_, schema, occurred, recorded, data, meta in rows
    ]
