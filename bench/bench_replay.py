"""Replay of every projection, events/s, against reading the same log with raw sqlite3 + orjson.

The log (N events, P = N/20 profiles unless `--profiles`) is written the way
production writes it, in three rounds so profile changes and activity
interleave as they do in a live log:
- through the real command path (`ProfileService.import_rows`, 5,000 rows a
  batch; `ProfileService.execute`; `TrackingService.link_anonymous`): every
  profile imported with an email subscription (ProfileCreated,
  SubscriptionAdded, and the email's ValueClaimed on its claim stream), then
  re-imported twice with three fields changed (ProfileFieldsUpdated); every
  10th profile unsubscribes (SubscriptionStatusChanged), every 10th records
  its tracked data (ProfileTrackedDataRecorded), every 50th changes its
  global status (ProfileGlobalStatusChanged), every 100th links an
  anonymous id (AnonymousIdLinked);
- the rest are ActivityTracked events, 10% of them anonymous and one in 200
  recording a goal, built from the
  domain's event type as the tracking service builds them and appended with
  `store.append_many` in 10,000-event transactions (the service would need
  the lookup projection built first, which is the replay under test).

The replay is what `herald replay` runs: `build_projections` on a fresh file
and `InProcessRuntime(...).drain(until=head)` with 20,000-event batches. The
baseline iterates `SELECT * FROM events ORDER BY position` with `sqlite3`
and `orjson.loads` each row's data: the floor of reading the log at all.

    python bench/bench_replay.py [--events N] [--profiles P] [--profile-top 10]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sqlite3
from pathlib import Path

import orjson
from common import (
    DATABASE_ID,
    RESOURCE_ID,
    create_catalog,
    email,
    herald_in_process,
    machine,
    profile_row,
    report,
    run,
    temp_dir,
    timed,
)

from herald.api.wiring import Herald, build_projections, open_event_store
from herald.domain.profiles import ChangeGlobalStatus, RecordTrackedData
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause, ChangeSubscriptionStatus
from herald.domain.tracking import ActivityTracked, activity_stream, anonymous_stream
from herald.infra.clock import SystemClock
from herald.infra.config import Settings
from herald.infra.event_store import EventStore, NewEvent, StreamAppend
from herald.infra.ids import deterministic_id
from herald.infra.readmodel_db import SqliteCheckpoints
from herald.processors.runtime import InProcessRuntime
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions

CONTEXT = CommandContext(actor="bench", source="bench")
_IMPORT_BATCH = 5000
_TRACK_BATCH = 10_000
_ROUNDS = 3


def _import(herald: Herald, profiles: int, generation: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, profiles, _IMPORT_BATCH):
        end = min(start + _IMPORT_BATCH, profiles)
        rows = [profile_row(n, generation, subscribe=True) for n in range(start, end)]
        results = herald.profiles.import_rows(DATABASE_ID, rows, ImportOptions(), CONTEXT)
        ids += [str(r.profile_id) for r in results]
    return ids


def _profile_commands(herald: Herald, ids: list[str]) -> None:
    """Status changes, tracked data and anonymous links, one command each, as the API would send them."""
    now = herald.clock.now()
    execute = herald.profiles.execute
    for n, profile_id in enumerate(ids):
        if n % 10 == 0:
            execute(
                profile_id,
                ChangeSubscriptionStatus(
                    resource_id=RESOURCE_ID,
                    channel="email",
                    contact=email(n),
                    at=now,
                    status=Status.UNSUBSCRIBED,
                    cause=Cause.API,
                ),
                CONTEXT,
            )
        if n % 10 == 5:
            execute(
                profile_id,
                RecordTrackedData(
                    profile_id, now, ip="203.0.113.7", city="Kazan", country="RU", user_agent="Mozilla/5.0"
                ),
                CONTEXT,
            )
        if n % 50 == 1:
            execute(profile_id, ChangeGlobalStatus(profile_id, Status.UNSUBSCRIBED, now), CONTEXT)
        if n % 100 == 2:
            herald.tracking.link_anonymous(DATABASE_ID, profile_id, f"anon-{n}", CONTEXT)


def _properties(n: int) -> dict[str, object]:
    """A viewed product; one event in 200 also records a goal (a purchase and its value)."""
    properties: dict[str, object] = {"product_id": f"sku-{n % 5000}", "price": 100 + n % 900}
    if n % 200 == 7:
        properties.update(goal="purchase", value=n % 90)
    return properties


def _track(herald: Herald, ids: list[str], first: int, count: int) -> None:
    """`count` ActivityTracked events, as `TrackingService` builds them, appended in big transactions."""
    now = herald.clock.now()
    meta = CONTEXT.metadata()
    for start in range(first, first + count, _TRACK_BATCH):
        streams: dict[str, list[NewEvent]] = {}
        for n in range(start, min(start + _TRACK_BATCH, first + count)):
            client_id = f"e{n}"
            anonymous = n % 10 == 9
            profile_id = None if anonymous else ids[(n * 7919) % len(ids)]
            anonymous_id = f"anon-{n % 5000}" if anonymous else None
            tracked = ActivityTracked(
                database_id=DATABASE_ID,
                profile_id=profile_id,
                anonymous_id=anonymous_id,
                name="Viewed product",
                properties=_properties(n),
                context={"ip": "203.0.113.7", "page": "/catalog"},
                client_event_id=client_id,
                at=now,
            )
            stream = anonymous_stream(anonymous_id) if anonymous_id else activity_stream(profile_id or "")
            event_id = deterministic_id("tracked", DATABASE_ID, client_id)
            streams.setdefault(stream, []).append(
                NewEvent(
                    event_id,
                    ActivityTracked.type_name,
                    tracked.to_data(),
                    tracked.at,
                    ActivityTracked.schema_version,
                    meta,
                )
            )
        herald.store.append_many([StreamAppend(s, events) for s, events in streams.items()])


def _generate(data: Path, events: int, profiles: int) -> None:
    with herald_in_process(data) as herald:
        create_catalog(herald)
        ids: list[str] = []
        tracked = 0
        for round_ in range(_ROUNDS):
            if round_ == 0:
                ids = _import(herald, profiles, 0)
            else:
                _import(herald, profiles, round_)
            if round_ == 1:
                _profile_commands(herald, ids)
            # Each round's activity fills a third of what the profile events leave.
            share = (events - herald.store.head_position()) // (_ROUNDS - round_)
            _track(herald, ids, tracked, share)
            tracked += share


def _mix(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT type, count(*) FROM events GROUP BY type ORDER BY count(*) DESC"))


def _raw_read(path: Path) -> int:
    conn = sqlite3.connect(path)
    loads = orjson.loads
    count = 0
    for row in conn.execute("SELECT * FROM events ORDER BY position"):
        loads(row[8])
        count += 1
    conn.close()
    return count


def _replay(store: EventStore, readmodels: Path, head: int) -> int:
    """What `herald replay` does to rebuild: every projection, fresh, to the head."""
    projections = build_projections(readmodels, store)
    runtime = InProcessRuntime(
        store, SqliteCheckpoints(projections.profiles.conn), projections=projections.all(), batch_size=20_000
    )
    processed = runtime.drain(until=head)
    projections.profiles.conn.close()
    return processed


def main() -> None:
    """Generate the log, then time the raw read and the replay; print events/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--profiles", type=int, help="profiles in the log (default: events / 20)")
    parser.add_argument(
        "--profile-top",
        type=int,
        default=0,
        metavar="K",
        help="then replay again under cProfile; print the top K functions by cumulative time",
    )
    args = parser.parse_args()
    profiles = args.profiles or max(args.events // 20, 1)
    print(f"{machine()}; {args.events:,} events, {profiles:,} profiles", flush=True)
    with temp_dir("replay") as work:
        data = work / "herald"
        generated = timed(lambda: _generate(data, args.events, profiles))
        log = data / "events.sqlite"
        mix = _mix(log)
        total = sum(n for _, n in mix)
        print(
            f"log: {total:,} events written in {generated:.1f} s ({total / generated:,.0f} events/s); mix: "
            + ", ".join(f"{name} {n:,}" for name, n in mix),
            flush=True,
        )
        raw = timed(lambda: _raw_read(log))
        # the log as Herald opens it: profiles' personal data sealed, opened with their keys
        store = open_event_store(Settings(data_dir=data), SystemClock())
        try:
            head = store.head_position()
            replayed = timed(lambda: _replay(store, work / "rebuilt.sqlite", head))
            report("replay of every projection", head / replayed, "events", head / raw)
            if args.profile_top:
                profiler = cProfile.Profile()
                profiler.runcall(_replay, store, work / "profiled.sqlite", head)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile_top)
        finally:
            store.close()


if __name__ == "__main__":
    run(main)
