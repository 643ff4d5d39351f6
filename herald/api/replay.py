"""`herald replay`: rebuild every projection from the log into a fresh file and compare checksums;
`herald replay --reports`: rebuild the report tables from the log.

The live read models are first driven to the log's head and their checksums
taken; the rebuild then runs into a new file with a progress bar; the two sets
of checksums are printed side by side. Unless `--check` is given, the rebuilt
file replaces the live one (atomically, by rename): the log is the truth.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]

from herald.api.wiring import build_clickhouse, build_projections, open_event_store
from herald.infra.clock import SystemClock
from herald.infra.config import Settings
from herald.infra.event_store import EventStore
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.processors.backoff import RetryPolicy
from herald.processors.runtime import InProcessRuntime
from herald.projections.clickhouse_sink import ClickHouseSink
from herald.projections.profile_states import profile_loader

# A rebuild tries each event once: one that fails again is parked in the rebuilt file at once.
REPLAY_RETRY = RetryPolicy(attempts=1)


def replay(settings: Settings, keep_live: bool = False) -> int:
    """Exit status 0 when the rebuilt read models match the live ones, 1 when they differ."""
    store = open_event_store(settings, SystemClock())
    head = store.head_position()
    zone = settings.account_timezone
    before = _checksums_at_head(store, settings.readmodel_path, head, "catching up live read models", zone)
    rebuild_path = settings.readmodel_path.with_name("readmodels.rebuild.sqlite")
    _remove(rebuild_path)
    after = _checksums_at_head(store, rebuild_path, head, "replaying the log", zone)
    store.close()
    same = before == after
    print(f"{'projection':<14} {'live (before)':<66} {'rebuilt (after)':<66}")
    for name in sorted(after):
        mark = "" if before.get(name) == after[name] else "  DIFFERS"
        print(f"{name:<14} {before.get(name, '-'):<66} {after[name]:<66}{mark}")
    print(f"{head} events replayed; checksums {'identical' if same else 'DIFFER'}")
    if keep_live:
        _remove(rebuild_path)
    else:
        _carry_reactor_checkpoints(settings.readmodel_path, rebuild_path, set(after))
        _remove(settings.readmodel_path)
        os.replace(rebuild_path, settings.readmodel_path)
    return 0 if same else 1


def _checksums_at_head(
    store: EventStore, path: Path, head: int, label: str, account_timezone: str
) -> dict[str, str]:
    projections = build_projections(path, store, account_timezone)
    conn = projections.profiles.conn
    runtime = InProcessRuntime(
        store,
        SqliteCheckpoints(conn),
        projections=projections.all(),
        batch_size=20_000,
        parked=SqliteParkedEvents(conn),
        retry=REPLAY_RETRY,
    )
    start = min(runtime.positions().values(), default=0)
    with tqdm(
        total=head - start,
        desc=label,
        unit="ev",
        unit_scale=True,
        file=sys.stderr,
        disable=head - start < 1000,
    ) as bar:
        runtime.drain(until=head, progress=bar.update)
    _reached(runtime, head)
    checksums = projections.checksums()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return checksums


def _reached(runtime: InProcessRuntime, head: int) -> None:
    """A rebuild is compared at the head only: a projection stopped short (a store it cannot reach)
    fails the replay with its reason, instead of showing checksums of half a read model."""
    short = [s for s in runtime.status() if s.position < head]
    if short:
        reasons = "; ".join(f"{s.name} at {s.position}: {s.last_error}" for s in short)
        raise SystemExit(f"the replay stopped before the log's head ({head}): {reasons}")


def _carry_reactor_checkpoints(live: Path, rebuilt: Path, projections: set[str]) -> None:
    """Keep how far the reactors got, and the events they (and the report sink) parked: their effects
    are in the log and the report store, not in the read models.

    (Re-running them would append nothing new, thanks to deterministic ids, but
    would re-decide every command they ever issued.) The rebuilt projections'
    parked events are their own: a rebuild tries every event afresh.
    """
    with closing(sqlite3.connect(live)) as old, closing(sqlite3.connect(rebuilt)) as new:
        rows = [r for r in old.execute("SELECT name, position FROM checkpoints") if r[0] not in projections]
        SqliteParkedEvents(old)  # a live file older than parking has no table yet
        parked = [r for r in old.execute("SELECT * FROM parked_events") if r[0] not in projections]
        with new:
            new.executemany("INSERT OR REPLACE INTO checkpoints (name, position) VALUES (?, ?)", rows)
            if parked:
                marks = ", ".join("?" * len(parked[0]))
                new.executemany(f"INSERT OR REPLACE INTO parked_events VALUES ({marks})", parked)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


REPORT_TABLES = (
    "message_events",
    "subscription_changes",
    "profile_creations",
    "goal_events",
    "message_rollup",  # its markers are the sink's checkpoint: emptied, the sink starts from the log's start
    "message_deliveries",
    "message_sender_changes",
    "profile_vendor_changes",
    "deleted_objects",
    "profile_snapshots",
)


def replay_reports(settings: Settings) -> int:
    """Empty the report tables and fill them again from the whole log through the sink."""
    store = open_event_store(settings, SystemClock())
    clickhouse = build_clickhouse(settings)
    if clickhouse is None:
        print("reports are off (HERALD_REPORTS_ENGINE=off): nothing to rebuild", file=sys.stderr)
        store.close()
        return 1
    try:
        for table in REPORT_TABLES:
            clickhouse.execute(f"TRUNCATE TABLE {table}")  # the names are this module's constants
        sink = ClickHouseSink(clickhouse, load_profile=profile_loader(store))
        # the sink keeps its checkpoint in ClickHouse; what it parks is kept with the server's, to re-drive
        with closing(open_readmodel_db(settings.readmodel_path)) as live:
            runtime = InProcessRuntime(
                store,
                SqliteCheckpoints(live),
                projections=[sink],
                batch_size=20_000,
                parked=SqliteParkedEvents(live),
                retry=REPLAY_RETRY,
            )
            head = store.head_position()
            with tqdm(total=head, desc="rebuilding the report tables", unit="ev") as bar:
                runtime.drain(until=head, progress=bar.update)
            _reached(runtime, head)
        for table in REPORT_TABLES[:4]:
            count = clickhouse.query(f"SELECT count() AS n FROM {table} FINAL")[0]["n"]
            print(f"{table:<22} {count:>12,} rows")
    finally:
        clickhouse.close()
        store.close()
    return 0
