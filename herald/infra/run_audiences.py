"""Frozen audiences of campaign runs: the recipients a run took at its start, in order.

A run's audience is fixed when it starts (later sign-ups wait for the next
run) and read in chunks as the run proceeds, so a run that stops half-way
resumes over exactly the same list. The list lives in its own SQLite file
beside the log: it is working data of runs in progress, not a read model
(a replay has no need of it: the messages already say who was reached).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


class RunAudiences:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS run_audience (run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
            "profile_id TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS run_sizes (run_id TEXT PRIMARY KEY, size INTEGER NOT NULL)"
        )

    def freeze(self, run_id: str, profile_ids: Iterable[str]) -> int:
        """Store the run's recipients once (a second call keeps the first list); returns its size."""
        size = self.size(run_id)
        if size is not None:
            return size
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            count = 0
            rows = ((run_id, seq, pid) for seq, pid in enumerate(profile_ids))
            for batch in _batches(rows, 10_000):
                self.conn.executemany(
                    "INSERT INTO run_audience (run_id, seq, profile_id) VALUES (?, ?, ?)", batch
                )
                count += len(batch)
            self.conn.execute("INSERT INTO run_sizes (run_id, size) VALUES (?, ?)", (run_id, count))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return count

    def size(self, run_id: str) -> int | None:
        """How many recipients the run froze; None before it froze any."""
        row = self.conn.execute("SELECT size FROM run_sizes WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else int(row[0])

    def page(self, run_id: str, offset: int, limit: int) -> list[str]:
        """Recipients `offset` .. `offset + limit - 1` of the run, in order."""
        rows = self.conn.execute(
            "SELECT profile_id FROM run_audience WHERE run_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (run_id, offset, limit),
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        self.conn.close()


def _batches(rows: Iterable[tuple[str, int, str]], size: int) -> Iterable[list[tuple[str, int, str]]]:
    batch: list[tuple[str, int, str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
