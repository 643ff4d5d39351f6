"""The SQLite file that holds the read models (projections) and processor checkpoints.

Read models are derived data: `herald replay` rebuilds them from the log into
a fresh file. Each projection commits its rows and its checkpoint in one
transaction, so a crash never leaves a read model ahead of or behind its
checkpoint.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_CHECKPOINTS = "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"


def open_readmodel_db(path: str | Path) -> sqlite3.Connection:
    """A connection to the read-model file, WAL mode, autocommit off for explicit transactions."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    # freed bytes are zeroed, so an erased profile's rows leave no copy in free pages
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute(_CHECKPOINTS)
    return conn


class SqliteCheckpoints:
    """Checkpoints of reactors (projections keep theirs through `save` inside their own commit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def load(self, name: str) -> int:
        row = self._conn.execute("SELECT position FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def save(self, name: str, position: int) -> None:
        """Upsert the checkpoint; inside a caller's transaction when one is open."""
        self._conn.execute(
            "INSERT INTO checkpoints (name, position) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
            (name, position),
        )
