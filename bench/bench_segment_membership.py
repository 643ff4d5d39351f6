"""Per-event latency of realtime segment membership, against a bare `segment_eval.matches` call.

Herald: one dynamic segment with three conditions (`plan` equal "pro", an
active email subscription on the resource, clicked at least once in the last
30 days) over N profiles (imported through the batch import, subscribed),
each with a message and a third of them with a click. The membership
processor folds all of it; then, one event at a time, a click or a profile
change is appended to the log (not timed) and `processor.apply(event)` is
timed: decoding, the facts and profile caches, evaluation, the timer row and
the append of the membership event when the result changed. The processor
commits every 100 events (outside the clock), as the runtime's batches do.

Baseline, same run, same data: `segment_eval.matches(query, profile, facts,
at, "UTC")` alone for the same profiles, with their state and facts in
memory: the evaluation with no storage at all. The ratio is Herald's
latency over the baseline's, at p50 and at p99.

    python bench/bench_segment_membership.py [--profiles 20000] [--events 5000]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta

from common import (
    DATABASE_ID,
    RESOURCE_ID,
    Herald,
    create_catalog,
    herald_in_process,
    machine,
    run,
    subscribed_profiles,
    temp_dir,
)

from herald.domain import deliveries as dl
from herald.domain.messages import MessageQueued, message_stream
from herald.domain.profiles import FieldChange, ProfileFieldsUpdated, profile_stream
from herald.domain.segment_definitions import CreateSegment, SegmentSettings, segment_decider, segment_stream
from herald.domain.segment_eval import matches
from herald.domain.segments import check_query
from herald.infra.event_store import NewEvent, RecordedEvent, StreamAppend
from herald.infra.ids import deterministic_id
from herald.infra.readmodel_db import SqliteCheckpoints
from herald.processors.runtime import InProcessRuntime
from herald.processors.segment_membership import SegmentMembershipProcessor
from herald.services.aggregates import CommandContext

SEGMENT = "active_pro_clickers"
QUERY = {
    "sources": [
        {
            "database_id": DATABASE_ID,
            "rules": [
                {"kind": "field", "field": "plan", "operator": "equal", "value": "pro"},
                {
                    "kind": "subscription",
                    "resource_id": RESOURCE_ID,
                    "channel": "email",
                    "status_in": ["subscribed"],
                },
                {
                    "kind": "message_history",
                    "action": "clicked",
                    "at_least": 1,
                    "period": {"kind": "last_days", "days": 30},
                },
            ],
        }
    ]
}
CONTEXT = CommandContext(actor="bench", source="bench")


def _new(kind: str, data: dict[str, object], herald: Herald, *key: object) -> NewEvent:
    return NewEvent(deterministic_id("bench", kind, *key), kind, data, herald.clock.now())


def _message(herald: Herald, profile_id: str, n: int) -> tuple[str, dict[str, object]]:
    """Queue a message to the profile; returns its id and the fields its delivery events repeat."""
    now = herald.clock.now()
    message_id = f"m{n}"
    common = {
        "message_id": message_id,
        "campaign_id": "c1",
        "template_id": "t1",
        "template_version": 1,
        "profile_id": profile_id,
        "database_id": DATABASE_ID,
        "resource_id": RESOURCE_ID,
        "channel": "email",
        "contact": f"user{n}@example.org",
        "at": now,
    }
    queued = MessageQueued(**common, run_id="r1", due_at=now, local_day=now.date())  # type: ignore[arg-type]
    herald.store.append(message_stream(message_id), [_new("MessageQueued", queued.to_data(), herald, n)])
    return message_id, common


def _click(herald: Herald, common: dict[str, object], n: int) -> StreamAppend:
    clicked = dl.LinkClicked(
        **{**common, "at": herald.clock.now()},  # type: ignore[arg-type]
        unique=True,
        link_id="l1",
        url="https://shop.example.com/",
    )
    return StreamAppend(
        message_stream(str(common["message_id"])), [_new("LinkClicked", clicked.to_data(), herald, n)]
    )


def _plan_change(herald: Herald, profile_id: str, old: str, new: str, n: int) -> StreamAppend:
    changed = ProfileFieldsUpdated(
        profile_id=profile_id,
        database_id=DATABASE_ID,
        at=herald.clock.now(),
        changes={"plan": FieldChange(old=old, new=new)},
        source="bench",
    )
    return StreamAppend(
        profile_stream(profile_id), [_new("ProfileFieldsUpdated", changed.to_data(), herald, n)]
    )


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000)
    args = parser.parse_args()
    print(machine())
    with temp_dir("segmem") as data_dir, herald_in_process(data_dir / "data") as herald:
        create_catalog(herald)
        subscribed_profiles(herald, args.profiles)
        conn = herald.projections.profiles.conn
        profile_ids = [
            row[0] for row in conn.execute("SELECT profile_id FROM profile_cards ORDER BY profile_id")
        ]
        plans = {
            pid: herald.projections.profiles.card(pid)["fields"]["plan"]  # type: ignore[index]
            for pid in profile_ids
        }
        messages = {pid: _message(herald, pid, n) for n, pid in enumerate(profile_ids)}
        clicks = [_click(herald, messages[pid][1], n) for n, pid in enumerate(profile_ids) if n % 3 == 0]
        herald.store.append_many(clicks)

        query = check_query(
            QUERY,
            {DATABASE_ID: herald.catalog.database(DATABASE_ID)},
            lambda _: None,
            resources={RESOURCE_ID: herald.catalog.resource(RESOURCE_ID)},
        )
        settings = SegmentSettings(name="Active pro clickers", query=query)
        create = CreateSegment(SEGMENT, "dynamic", settings, "UTC", herald.clock.now())
        herald.aggregates.execute(segment_decider, segment_stream(SEGMENT), create, CONTEXT)
        processor = SegmentMembershipProcessor(conn, herald.store)
        runtime = InProcessRuntime(herald.store, SqliteCheckpoints(conn), projections=[processor])
        started = time.perf_counter()
        runtime.drain()
        print(
            f"setup: {args.profiles:,} profiles, {len(clicks):,} clicks; segment saved, evaluated over all"
            f" in {time.perf_counter() - started:.1f} s; {len(processor.members(SEGMENT)):,} members"
        )

        rng = random.Random(7)
        latencies: list[float] = []
        measured: list[str] = []
        for n in range(args.events):
            pid = rng.choice(profile_ids)
            if n % 2 == 0:
                append = _click(herald, messages[pid][1], 10_000_000 + n)
            else:
                new = "pro" if plans[pid] != "pro" else "basic"
                append = _plan_change(herald, pid, plans[pid], new, n)
                plans[pid] = new
            herald.store.append_many([append])
            event: RecordedEvent = herald.store.read_stream(append.stream)[-1]
            begin = time.perf_counter()
            processor.apply(event)
            latencies.append(time.perf_counter() - begin)
            measured.append(pid)
            if n % 100 == 99:
                processor.commit(event.position)
                runtime.drain()  # its own membership events come back (and are skipped)
        processor.commit(herald.store.head_position())

        # The baseline: the bare evaluation of the same profiles, state and facts in memory.
        states = {pid: herald.profiles.state(pid) for pid in set(measured)}
        facts = {pid: processor.facts(pid) for pid in set(measured)}
        at = herald.clock.now() + timedelta(seconds=1)
        baseline: list[float] = []
        for pid in measured:
            state, known = states[pid], facts[pid]
            begin = time.perf_counter()
            matches(query, state, known, at, "UTC")
            baseline.append(time.perf_counter() - begin)

        entered = len(processor.members(SEGMENT))
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        b50, b99 = _percentile(baseline, 0.5), _percentile(baseline, 0.99)
        print(f"events applied: {len(latencies):,} (half clicks, half plan changes); members now {entered:,}")
        print(
            f"membership update per event: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms, "
            f"max {max(latencies) * 1e3:.3f} ms"
        )
        print(f"baseline bare matches(): p50 {b50 * 1e3:.3f} ms, p99 {b99 * 1e3:.3f} ms")
        verdict = "met" if p99 <= 1e-3 else "MISSED"
        print(f"ratio: p50 {p50 / b50:.1f}x, p99 {p99 / b99:.1f}x; goal p99 <= 1 ms: {verdict}")


if __name__ == "__main__":
    run(main)
