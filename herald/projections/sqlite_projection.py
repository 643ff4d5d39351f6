"""A projection into SQLite tables: pending writes committed with the checkpoint, a checksum.

Subclasses map event types to handlers that queue SQL writes (or keep a
write-behind cache they flush in `flush`). `commit` runs the queue and the
checkpoint in one transaction. `checksum` hashes every row of the
projection's tables in primary-key order, so a rebuilt read model can be
compared with the live one. `merge` says how each table reads when the scale
engine spreads it over partition stores (`partitioned.py`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from herald.infra.event_store import EventFilter, RecordedEvent
from herald.projections.partitioned import MergedConnection

Handler = Callable[[RecordedEvent], None]


class SqliteProjection:
    name: ClassVar[str]
    ddl: ClassVar[Sequence[str]]
    # table → ORDER BY clause giving a total order (for checksums)
    tables: ClassVar[dict[str, str]]
    # table → how its partitions' rows merge (`partitioned.UNION` when not named)
    merge: ClassVar[Mapping[str, str]] = {}

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        if not isinstance(conn, MergedConnection):  # a merged reader's tables are views of the partitions'
            for statement in self.ddl:
                conn.execute(statement)
        self._pending: list[tuple[str, Sequence[Any]]] = []
        self._handlers = self.handlers()
        row = conn.execute("SELECT position FROM checkpoints WHERE name = ?", (self.name,)).fetchone()
        self._position = int(row[0]) if row else 0

    def handlers(self) -> dict[str, Handler]:
        """Event type → handler; events of other types are skipped."""
        raise NotImplementedError

    @property
    def consumes(self) -> EventFilter:
        """The events `apply` folds, so the runtime reads no others (a subclass that folds more says so)."""
        return EventFilter(frozenset(self._handlers))

    def checkpoint(self) -> int:
        return self._position

    def apply(self, event: RecordedEvent) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(event)

    def write(self, sql: str, params: Sequence[Any]) -> None:
        """Queue a write for the next commit."""
        self._pending.append((sql, params))

    def flush(self) -> None:
        """Write what is pending; subclasses with caches extend this."""
        for sql, params in self._pending:
            self.conn.execute(sql, params)
        self._pending.clear()

    def commit(self, position: int) -> None:
        """Write the pending rows and the checkpoint in one transaction, or inside the caller's when one
        is open (parking an event, re-driving one: their record commits with these rows)."""
        joined = self.conn.in_transaction
        if not joined:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.flush()
            self.conn.execute(
                "INSERT INTO checkpoints (name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                (self.name, position),
            )
        except BaseException:
            if not joined:
                self.conn.execute("ROLLBACK")
            self.discard()
            raise
        if not joined:
            self.conn.execute("COMMIT")
        self._position = position

    def discard(self) -> None:
        """Forget uncommitted changes (after a failed commit they are re-derived from the log)."""
        self._pending.clear()

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for table, order in sorted(self.tables.items()):
            digest.update(table.encode())
            for row in self.conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                digest.update(repr(row).encode())
        return digest.hexdigest()
