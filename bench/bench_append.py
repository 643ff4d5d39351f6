"""Appends per second: the SQLite event store against raw sqlite3 in the same run.

The baseline inserts the same rows (same columns, same serialized bytes, built
before the clock starts) into a same-shaped table, with `executemany`, in
transactions of the same size, on a file with the same pragmas, and does no
deduplication at all. The ratio is what the store's work costs: serializing,
the exactly-once check by event id, the version checks, the stream version
look-ups, the write locks. A second baseline adds what the store did before
schema version 2, a unique index on the event id, for comparison.

    python bench/bench_append.py [--events N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common  # noqa: F401  (this tree's herald first on sys.path)

from herald.infra.clock import ManualClock
from herald.infra.event_store import NewEvent, StreamAppend

# The store's schema and row serializer, so the baseline writes the same table and bytes.
from herald.infra.sqlite_event_store import INSERT, SCHEMA, SqliteEventStore, _to_micros, prepare, stream_key

_OCCURRED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _event(ordinal: int) -> NewEvent:
    return NewEvent(
        event_id=uuid.uuid4(),
        type="ProfileUpdated",
        data={
            "email": f"user{ordinal}@example.com",
            "fields": {"first_name": "Anna", "city": "Moscow", "orders": ordinal % 17},
        },
        occurred_at=_OCCURRED,
        metadata={"correlation_id": str(uuid.uuid4()), "actor": "api", "source": "bench"},
    )


def _transactions(
    events: list[NewEvent], size: int, stream_of: Callable[[int], str]
) -> list[list[StreamAppend]]:
    """`events` cut into transactions of `size`, each event in stream `stream_of(ordinal)`."""
    return [
        [StreamAppend(stream_of(i + j), [e]) for j, e in enumerate(events[i : i + size])]
        for i in range(0, len(events), size)
    ]


def _time_store(path: Path, transactions: list[list[StreamAppend]], one_stream: bool) -> float:
    store = SqliteEventStore(path, ManualClock())
    started = time.perf_counter()
    for appends in transactions:
        if one_stream:
            store.append(appends[0].stream, [a.events[0] for a in appends])
        else:
            store.append_many(appends)
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def _raw_rows(transactions: list[list[StreamAppend]]) -> list[list[tuple[Any, ...]]]:
    """The rows the store writes, made by the store's own serializer, before timing starts."""
    recorded = _to_micros(_OCCURRED)
    versions: dict[str, int] = {}
    position = 0
    batches = []
    for appends in transactions:
        rows = []
        for append, prepared in zip(appends, prepare(appends), strict=True):
            key = stream_key(append.stream)
            for part in prepared:
                position += 1
                version = versions[append.stream] = versions.get(append.stream, 0) + 1
                rows.append((position, append.stream, version, recorded, key, *part))
        batches.append(rows)
    return batches


def _time_raw(path: Path, batches: Sequence[list[tuple[Any, ...]]], unique_ids: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode = WAL",
        "synchronous = NORMAL",
        "cache_size = -32768",
        "wal_autocheckpoint = 10000",
    ):
        conn.execute(f"PRAGMA {pragma}")
    for statement in SCHEMA:
        conn.execute(statement)
    if unique_ids:
        conn.execute("CREATE UNIQUE INDEX events_by_id ON events (event_id)")
    started = time.perf_counter()
    for rows in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> None:
    """Run every scenario and print events/s for the store, the baseline, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per scenario")
    count = parser.parse_args().events
    scenarios = [
        # name, events per transaction, stream of the n-th event, all in one append()
        ("single-event appends", 1, lambda n: f"profile-{n % 1000}", False),
        ("append_many, 1,000 streams x 1", 1000, lambda n: f"profile-{n}", False),
        ("append, 1,000 to one stream", 1000, lambda n: f"campaign-{n // 1000}", True),
        ("append_many, 10,000 streams x 1", 10_000, lambda n: f"profile-{n}", False),
    ]
    print(f"{count:,} events per scenario, random (uuid4) event ids")
    print(
        f"{'scenario':34} {'store ev/s':>12} {'raw ev/s':>12} {'store/raw':>10}"
        f" {'raw+unique id ev/s':>19} {'store/that':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, size, stream_of, one_stream) in enumerate(scenarios):
            events = [_event(n) for n in range(count)]
            transactions = _transactions(events, size, stream_of)
            rows = _raw_rows(transactions)
            raw = _time_raw(Path(tmp, f"raw-{index}.db"), rows, unique_ids=False)
            unique = _time_raw(Path(tmp, f"unique-{index}.db"), rows, unique_ids=True)
            ours = _time_store(Path(tmp, f"store-{index}.db"), transactions, one_stream)
            print(
                f"{label:34} {count / ours:12,.0f} {count / raw:12,.0f} {raw / ours:10.2f}"
                f" {count / unique:19,.0f} {unique / ours:11.2f}"
            )


if __name__ == "__main__":
    main()
