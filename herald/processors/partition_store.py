"""One partition's store: its SQLite file, the lock its owner holds, and how far it has folded.

The file holds the read models folded from the partition (the projections'
own tables and checkpoints) and one row: the next topic offset to fold and
`folded_through`, the log position every consumer of the partition has
applied (after each batch, once all have committed). A worker that takes the
partition over (a rebalance, a dead owner) opens the same file and resumes at
that offset; events it receives again at or below a consumer's checkpoint are
skipped, so nothing is applied twice.

The lock is an `flock` on a file beside the store: a worker holds it while it
owns the partition, so a member the group has already replaced but which is
still finishing a batch cannot write beside its successor (the kernel drops a
dead process's lock at once).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from herald.infra.data_dir_lock import FileLock
from herald.infra.readmodel_db import open_readmodel_db

_DDL = (
    "CREATE TABLE IF NOT EXISTS partition_offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "next_offset INTEGER NOT NULL, folded_through INTEGER NOT NULL, PRIMARY KEY (topic, partition))"
)


def partition_path(directory: Path, partition: int) -> Path:
    """The store of partition `partition` in the partition stores' directory."""
    return directory / f"p{partition}.sqlite"


def open_partition_store(directory: Path, partition: int) -> sqlite3.Connection:
    """The partition's store, created (with its offsets table) if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    conn = open_readmodel_db(partition_path(directory, partition))
    conn.execute(_DDL)
    return conn


class PartitionOffsets:
    """Where the partition's folding stands in the topic and in the log."""

    def __init__(self, conn: sqlite3.Connection, topic: str, partition: int) -> None:
        self._conn = conn
        self._key = (topic, partition)

    def load(self) -> tuple[int, int]:
        """(next offset to fold, position folded through); (0, 0) for a partition never folded."""
        row = self._conn.execute(
            "SELECT next_offset, folded_through FROM partition_offsets WHERE topic = ? AND partition = ?",
            self._key,
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def save(self, next_offset: int, folded_through: int) -> None:
        self._conn.execute(
            "INSERT INTO partition_offsets VALUES (?, ?, ?, ?) ON CONFLICT (topic, partition) "
            "DO UPDATE SET next_offset = excluded.next_offset, folded_through = excluded.folded_through",
            (*self._key, next_offset, folded_through),
        )


def folded_through(conn: sqlite3.Connection, partitions: int) -> int:
    """The position every partition has folded through, over a merged connection (0 if one never did)."""
    lowest: int | None = None
    for k in range(partitions):
        row = conn.execute(f"SELECT min(folded_through) FROM p{k}.partition_offsets").fetchone()
        position = int(row[0]) if row and row[0] is not None else 0
        lowest = position if lowest is None else min(lowest, position)
    return lowest or 0


def partition_lock(directory: Path, partition: int) -> FileLock:
    """The exclusive right to write a partition's store, held while its owner runs."""
    return FileLock(directory / f"p{partition}.lock")
