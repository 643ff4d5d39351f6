"""Overwriting stored events in the SQLite log: the one exception to "never rewritten".

Upcasting changes what is read, not what the file holds: an event written
before secrets were sealed keeps their clear text on disk. Scrubbing rewrites
such rows as their upcast form (the current schema version, the secrets
withheld), with `secure_delete` on so SQLite zeroes the freed bytes, then
truncates the WAL and vacuums, so no copy of the old bytes stays in the file,
its free pages or the WAL. It is run by `herald secrets reseal --scrub`, after
every withheld secret was sealed again from those very bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from herald.infra.serialization import dumps

# A row to rewrite: (position, new schema version, new data).
Rewrite = tuple[int, int, dict[str, object]]


def scrub_sqlite_log(path: Path, rewrites: Iterable[Rewrite]) -> int:
    """Rewrite the given rows of the log at `path` in place; returns how many changed."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")
        changed = 0
        for position, schema_version, data in rewrites:
            cursor = conn.execute(
                "UPDATE events SET schema_version = ?, data = ? WHERE position = ?",
                (schema_version, dumps(data), position),
            )
            changed += cursor.rowcount
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return changed
    finally:
        conn.close()
