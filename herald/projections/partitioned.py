"""Read models spread over partition stores, read as one: how each table's rows merge.

With the scale engine every partition of the event topic has its own SQLite
file, folded from that partition alone (its profiles' events and every global
event). A reader opens `open_merged`: a connection with every partition file
attached read-only and, in its temp schema, one view per projection table
under the table's own name, so the projections' query methods run unchanged.
Each projection says in `merge` how its tables' rows combine (a table it does
not name is `UNION`):

- `UNION`: the rows of one key (a profile's card, its sends, a message in the
  send queue) live in that key's partition alone: the view is every
  partition's rows;
- `FIRST`: state folded from global events only (the catalog, a campaign's
  timers, a segment's card) is the same in every partition once each has
  caught up; the view is partition 0's copy. A projection whose every table
  is `FIRST` is folded by partition 0 alone;
- `DISTINCT`: a table of global and key-local rows alike (the audit log): a
  global event's row, the same in every partition, is read once;
- `summed(...)`: a counter over profiles (a campaign's queued messages, a
  contact's sends across databases) is counted in each partition and summed.

SQLite pushes a view's WHERE into every partition's index and merges the
partitions' ordered scans for ORDER BY ... LIMIT, so a page of profiles costs
one index range per partition. It attaches at most 10 files to a connection
(SQLITE_MAX_ATTACHED as compiled), which bounds the partition count
(`infra.config.MAX_PARTITIONS`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

UNION = "SELECT * FROM {all}"
FIRST = "SELECT * FROM {first}"
DISTINCT = "SELECT DISTINCT * FROM {all}"


def summed(keys: str, *counts: str) -> str:
    """Rows keyed by `keys` whose `counts` columns are added up over the partitions (columns in order)."""
    sums = ", ".join(f"sum({count}) AS {count}" for count in counts)
    return f"SELECT {keys}, {sums} FROM {{all}} GROUP BY {keys}"


class MergedTables(Protocol):
    """What `open_merged` reads off a projection class."""

    tables: Mapping[str, str]
    merge: Mapping[str, str]


class MergedConnection(sqlite3.Connection):
    """A read-only view over partition stores: projections bound to it create no tables."""


def folded_by_partition_zero_only(projection: MergedTables) -> bool:
    """Whether the projection keeps tables and every one is global state (`FIRST`). One with no tables
    of its own (the erasure projection, which scrubs the others') runs in every partition."""
    tables = projection.tables
    return bool(tables) and all(projection.merge.get(table) == FIRST for table in tables)


def open_merged(paths: Sequence[Path], projections: Iterable[MergedTables]) -> MergedConnection:
    """A connection reading the partition stores at `paths` (partition k at index k) as one database."""
    conn = sqlite3.connect(
        "file::memory:", uri=True, isolation_level=None, check_same_thread=False, factory=MergedConnection
    )
    conn.execute("PRAGMA busy_timeout=10000")
    for k, path in enumerate(paths):
        conn.execute("ATTACH DATABASE ? AS ?", (f"file:{path}?mode=ro", f"p{k}"))
    views = {"checkpoints": "SELECT name, min(position) AS position FROM {all} GROUP BY name"}
    for projection in projections:
        views |= {table: projection.merge.get(table, UNION) for table in projection.tables}
    for table, template in views.items():
        every = " UNION ALL ".join(f"SELECT * FROM p{k}.{table}" for k in range(len(paths)))
        select = template.format(all=f"({every})", first=f"p0.{table}", partitions=len(paths))
        conn.execute(f"CREATE TEMP VIEW {table} AS {select}")
    return conn
