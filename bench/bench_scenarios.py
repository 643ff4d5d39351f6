"""Scenario engine benchmarks: throughput in simulated time, capture latency, timer lateness with 1M waiting.

`throughput` — N profiles (default 100,000) through a 6-node scenario in simulated time: (1) a
welcome email (trigger campaign) → (2) a pause of a day → (3) "plan is pro?" → true: (4) +10
points → (5) a static 50/50 split → (6) a follow-up email; false: (6). The profiles are imported
first (not timed), then sent into the scenario by manual entry in requests of 10,000; the clock
starts at the first request and stops when every instance has completed: the runtime drained,
the simulated clock moved a day, the timers fired, drained again. Baseline, same run, same
profiles: the same six steps by hand over bare `sqlite3` and the same template engine: render and
insert the welcome row, insert the timer row; read the due timers, compare the plan, update the
points, hash for the split, render and insert the follow-up, mark the instance done; a
transaction per 1,000 profiles.

`latency` — capture event → first node executed, on the real clock, with `herald serve`'s loops
running in this process (the runtime woken by appends, the timers): a profile is sent into a
scenario by the special API call every 20 ms; its first node is a campaign node. Latency is the
`recorded_at` of the node's exit minus that of the entry request. Baseline: the same requests and
a bare consumer on the same runtime that records when it sees each request (the runtime's own
delivery latency). Reported at p50 and p99.

`timers` — durable timers on the real clock with 1,000,000 waiting instances: the instances'
journeys (entered, pause entered, wait scheduled) are appended straight to the log in the form the
decider writes them and projected (not timed), their due times spread over the day after, and the
last `TIMED` of them written fall due within the measured minute, starting ten seconds later.
Herald's scenario timer loop fires them, with `herald serve`'s other loops running; lateness is the
`recorded_at` of each `ScenarioWaitElapsed` minus its due time. Baseline: asyncio's `loop.call_at`
for the same due times in the same process. Reported at p50 and p99.

    python bench/bench_scenarios.py throughput [--profiles 100000]
    python bench/bench_scenarios.py latency [--entries 1000]
    python bench/bench_scenarios.py timers [--waiting 1000000] [--timed 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from common import DATABASE_ID, RESOURCE_ID, Herald, create_catalog, machine, run, temp_dir

from herald.api.wiring import build
from herald.domain import campaigns as cp
from herald.domain import scenarios as sc
from herald.domain import templates as tp
from herald.domain.scenario_capture import ApiCapture
from herald.domain.scenario_graph import ScenarioGraph
from herald.domain.scenario_instances import (
    EntryCause,
    ProfileEnteredScenario,
    ScenarioNodeEntered,
    ScenarioWaitScheduled,
    journey_stream,
)
from herald.domain.templating import RenderContext, compile_template
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.event_store import NewEvent, StreamAppend
from herald.infra.ids import IdSource, deterministic_id
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions

CONTEXT = CommandContext(actor="bench", source="bench")
WELCOME = "<p>Hello {lead._fname}!</p><p>Welcome to the shop, your plan is {lead.plan}.</p>"
FOLLOW_UP = "<p>{lead._fname}, you have {lead.points} points.</p>"
CHUNK = 10_000


def trigger(herald: Herald, name: str, html: str) -> str:
    content = tp.TemplateContent(email=tp.EmailContent(subject=name, html=html))
    template_id, _ = herald.templates.create_template(tp.TemplateCard(name=name), content, False, CONTEXT)
    settings = cp.CampaignSettings(
        name=name,
        type=cp.CampaignType.TRIGGER,
        channel="email",
        resource_id=RESOURCE_ID,
        template_ids=(template_id,),
        database_id=DATABASE_ID,
        trigger=cp.TriggerOptions(),
    )
    campaign_id, _ = herald.campaigns.create(settings, CONTEXT)
    herald.campaigns.activate(campaign_id, CONTEXT)
    return campaign_id


def scenario(herald: Herald, nodes: list[dict[str, object]]) -> str:
    settings = sc.ScenarioSettings(
        name="Bench", database_id=DATABASE_ID, reentry=sc.ReentryMode.ALLOW_PARALLEL, capture=ApiCapture()
    )
    scenario_id, _ = herald.scenarios.create(
        settings, ScenarioGraph.model_validate({"nodes": nodes}), CONTEXT
    )
    herald.scenarios.activate(scenario_id, CONTEXT)
    return scenario_id


def profiles(herald: Herald, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, CHUNK):
        rows = [
            {
                "email": f"user{n}@example.org",
                "_fname": f"Anna{n}",
                "plan": ("basic", "pro")[n % 2],
                "points": n % 100,
                "subscriptions": [
                    {"resource_id": RESOURCE_ID, "channel": "email", "email": f"user{n}@example.org"}
                ],
            }
            for n in range(start, min(start + CHUNK, count))
        ]
        ids += [
            r.profile_id or ""
            for r in herald.profiles.import_rows(DATABASE_ID, rows, ImportOptions(), CONTEXT)
        ]
    herald.runtime.drain()
    return ids


# --- throughput --------------------------------------------------------------------------------


def six_nodes(welcome: str, follow_up: str) -> list[dict[str, object]]:
    plan_pro = {"kind": "field", "field": "plan", "operator": "equal", "value": "pro"}
    return [
        {"id": "1", "type": "campaign", "campaign_id": welcome, "next": "2"},
        {"id": "2", "type": "pause", "wait": {"kind": "relative", "days": 1}, "next": "3"},
        {"id": "3", "type": "condition", "rules": [plan_pro], "true": "4", "false": "6"},
        {
            "id": "4",
            "type": "update_data",
            "operations": [{"field": "points", "op": "increment", "value": 10}],
            "next": "5",
        },
        {
            "id": "5",
            "type": "split",
            "mode": "static",
            "branches": [{"percent": 50, "next": "6"}, {"percent": 50}],
        },
        {"id": "6", "type": "campaign", "campaign_id": follow_up, "next": None},
    ]


def herald_throughput(data_dir: Path, count: int) -> float:
    clock = ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    herald = build(
        Settings(data_dir=data_dir, admin_token="t", reports_engine="off"), clock=clock, ids=IdSource(1)
    )
    try:
        create_catalog(herald)
        welcome, follow_up = trigger(herald, "Welcome", WELCOME), trigger(herald, "Follow-up", FOLLOW_UP)
        scenario_id = scenario(herald, six_nodes(welcome, follow_up))
        ids = profiles(herald, count)
        started = time.perf_counter()
        for start in range(0, count, CHUNK):
            herald.scenarios.send_profiles(
                scenario_id, ids[start : start + CHUNK], None, f"bench-{start}", CONTEXT
            )
            herald.runtime.drain()
        clock.advance(timedelta(days=1))
        herald.tick()
        herald.runtime.drain()
        took = time.perf_counter() - started
        done = herald.scenarios.statistics(scenario_id, clock.now().date(), clock.now().date())
        assert done["completed"] == count, done
        return count / took
    finally:
        herald.close()


def baseline_throughput(path: Path, count: int) -> float:
    """The six steps by hand: sqlite3 rows and the template engine, no log, no processors."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE profiles (id INTEGER PRIMARY KEY, fields TEXT)")
    db.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, profile INTEGER, body TEXT)")
    db.execute("CREATE TABLE timers (profile INTEGER PRIMARY KEY, due REAL)")
    db.execute("CREATE TABLE done (profile INTEGER PRIMARY KEY)")
    rows = [
        (n, orjson.dumps({"_fname": f"Anna{n}", "plan": ("basic", "pro")[n % 2], "points": n % 100}).decode())
        for n in range(count)
    ]
    db.executemany("INSERT INTO profiles VALUES (?, ?)", rows)
    welcome, follow_up = compile_template(WELCOME), compile_template(FOLLOW_UP)
    started = time.perf_counter()
    for start in range(0, count, 1_000):
        db.execute("BEGIN")
        for n, text in db.execute(
            "SELECT id, fields FROM profiles WHERE id >= ? AND id < ?", (start, start + 1000)
        ).fetchall():
            lead = orjson.loads(text)
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?)",
                (f"w{n}", n, welcome.render(RenderContext(lead=lead))),
            )
            db.execute("INSERT INTO timers VALUES (?, ?)", (n, 86_400.0))
        db.execute("COMMIT")
    while True:
        due = db.execute("SELECT profile FROM timers WHERE due <= ? LIMIT 1000", (86_400.0,)).fetchall()
        if not due:
            break
        db.execute("BEGIN")
        for (n,) in due:
            lead = orjson.loads(db.execute("SELECT fields FROM profiles WHERE id = ?", (n,)).fetchone()[0])
            follow = True
            if lead["plan"] == "pro":
                lead["points"] += 10
                db.execute("UPDATE profiles SET fields = ? WHERE id = ?", (orjson.dumps(lead).decode(), n))
                follow = hashlib.sha256(f"segment/{n}".encode()).digest()[0] < 128
            if follow:
                body = follow_up.render(RenderContext(lead=lead))
                db.execute("INSERT INTO messages VALUES (?, ?, ?)", (f"f{n}", n, body))
            db.execute("DELETE FROM timers WHERE profile = ?", (n,))
            db.execute("INSERT INTO done VALUES (?)", (n,))
        db.execute("COMMIT")
    took = time.perf_counter() - started
    assert db.execute("SELECT count(*) FROM done").fetchone()[0] == count
    db.close()
    return count / took


def throughput(count: int) -> None:
    with temp_dir("bench-scenarios") as tmp:
        rate = herald_throughput(tmp / "herald", count)
        base = baseline_throughput(tmp / "baseline.sqlite", count)
    print(
        f"scenario throughput, {count:,} profiles through 6 nodes: {rate:,.0f} profiles/s "
        f"(baseline {base:,.0f} profiles/s, ratio {rate / base:.2f})"
    )


# --- latency -----------------------------------------------------------------------------------


def quantiles(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def entering(herald: Herald, scenario_id: str, ids: Sequence[str], every: float) -> None:
    """The special API call for each profile in turn, `every` seconds apart, with the loops running."""
    herald.start_processors()
    try:
        for profile_id in ids:
            herald.scenarios.enter(
                scenario_id, [{"profile_id": profile_id}], None, f"bench-{profile_id}", CONTEXT
            )
            await asyncio.sleep(every)
        await asyncio.sleep(1.0)
        herald.runtime.drain()
    finally:
        await herald.stop_processors()


def latency(count: int) -> None:
    with temp_dir("bench-scenarios") as tmp:
        herald = build(Settings(data_dir=tmp / "herald", admin_token="t", reports_engine="off"))
        try:
            create_catalog(herald)
            welcome = trigger(herald, "Welcome", WELCOME)
            scenario_id = scenario(herald, [{"id": "1", "type": "campaign", "campaign_id": welcome}])
            ids = profiles(herald, count)
            mark = herald.store.head_position()
            asyncio.run(entering(herald, scenario_id, ids, 0.02))
            requested: dict[str, datetime] = {}
            executed: dict[str, datetime] = {}
            for event in herald.store.read_all(mark + 1):
                if event.type == "ScenarioEntryRequested":
                    requested[event.stream] = event.recorded_at
                elif event.type == "ScenarioNodeExited":
                    executed.setdefault(event.stream, event.recorded_at)
            waits = [(executed[s] - at).total_seconds() * 1000 for s, at in requested.items()]
            assert len(waits) == count, (len(waits), count)
        finally:
            herald.close()
        base = baseline_latency(tmp / "baseline", count)
    p50, p99 = quantiles(waits)
    b50, b99 = quantiles(base)
    print(
        f"capture → first node executed, {count:,} entries at 50/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(baseline runtime delivery p50 {b50:.1f} ms, p99 {b99:.1f} ms; p99 ratio {p99 / b99:.1f}×)"
    )


class _Seen:
    """A bare reactor: notes when each entry request reaches it."""

    name = "bench-seen"

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def handle(self, event: object) -> list[object]:
        from herald.infra.event_store import RecordedEvent

        assert isinstance(event, RecordedEvent)
        if event.type == "ScenarioEntryRequested":
            self.seen[event.stream] = time.time()
        return []


def baseline_latency(data_dir: Path, count: int) -> list[float]:
    from herald.infra.clock import SystemClock
    from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
    from herald.infra.sqlite_event_store import SqliteEventStore
    from herald.processors.runtime import InProcessRuntime

    data_dir.mkdir()
    store = SqliteEventStore(data_dir / "events.sqlite", SystemClock())
    seen = _Seen()
    runtime = InProcessRuntime(
        store, SqliteCheckpoints(open_readmodel_db(data_dir / "rm.sqlite")), reactors=[seen]
    )  # type: ignore[list-item]
    sent: dict[str, float] = {}

    async def go() -> None:
        task = asyncio.get_running_loop().create_task(runtime.run())
        for n in range(count):
            stream = journey_stream("1", f"p{n}")
            new = NewEvent(
                deterministic_id("bench", n), "ScenarioEntryRequested", {"n": n}, datetime.now(UTC)
            )
            sent[stream] = time.time()
            store.append(stream, [new])
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        runtime.stop()
        await task

    asyncio.run(go())
    store.close()
    return [(seen.seen[s] - at) * 1000 for s, at in sent.items()]


# --- timers ------------------------------------------------------------------------------------


def waiting_journeys(
    herald: Herald, scenario_id: str, waiting: int, timed: int, window: float
) -> list[datetime]:
    """`waiting` instances paused on node 1, appended as the decider writes them and projected. The
    `timed` ones are written last and fall due within `window` seconds from ten seconds after they
    are written; the others over the day after. Returns the timed ones' due times."""
    chance = random.Random(3)
    later = datetime.now(UTC) + timedelta(days=1)
    far = [later + timedelta(seconds=chance.uniform(0, 86_400)) for _ in range(waiting - timed)]
    _paused(herald, scenario_id, 0, far)
    start = datetime.now(UTC) + timedelta(seconds=10)
    soon = sorted(start + timedelta(seconds=chance.uniform(0, window)) for _ in range(timed))
    _paused(herald, scenario_id, waiting - timed, soon)
    return soon


def _paused(herald: Herald, scenario_id: str, first: int, due_times: Sequence[datetime]) -> None:
    """Instances `first`, `first + 1`… entered and waiting on the pause until each due time."""
    now = datetime.now(UTC)
    cause = EntryCause(kind="request", event_id="bench", position=1)
    for start in range(0, len(due_times), 20_000):
        appends = []
        for offset, due in enumerate(due_times[start : start + 20_000], start=first + start):
            ids = {"scenario_id": scenario_id, "profile_id": f"p{offset:07d}", "at": now}
            events = [
                ProfileEnteredScenario(**ids, entry=1, source="manual", cause=cause),
                ScenarioNodeEntered(**ids, entry=1, visit=1, node_id="1", node_type="pause", version=1),
                ScenarioWaitScheduled(**ids, entry=1, visit=1, node_id="1", due_at=due, purpose="pause"),
            ]
            new = [
                NewEvent(deterministic_id("bench-journey", offset, i), e.type_name, e.to_data(), now)
                for i, e in enumerate(events)
            ]
            appends.append(StreamAppend(journey_stream(scenario_id, f"p{offset:07d}"), new, 0))
        herald.store.append_many(appends)
        herald.runtime.drain()


async def firing(herald: Herald, last_due: datetime) -> None:
    herald.start_processors()
    try:
        while datetime.now(UTC) < last_due + timedelta(seconds=3):
            await asyncio.sleep(0.5)
    finally:
        await herald.stop_processors()


def timers(waiting: int, timed: int) -> None:
    with temp_dir("bench-scenarios") as tmp:
        herald = build(Settings(data_dir=tmp / "herald", admin_token="t", reports_engine="off"))
        try:
            create_catalog(herald)
            scenario_id = scenario(
                herald, [{"id": "1", "type": "pause", "wait": {"kind": "relative", "days": 1}}]
            )
            herald.runtime.drain()
            setup = time.perf_counter()
            due = waiting_journeys(herald, scenario_id, waiting, timed, 60.0)
            took = time.perf_counter() - setup
            print(f"  ({waiting:,} waiting instances written and projected in {took:.0f} s)")
            mark = herald.store.head_position()
            asyncio.run(firing(herald, due[-1]))
            late = [
                (
                    event.recorded_at - datetime.fromisoformat(event.data["due_at"].replace("Z", "+00:00"))
                ).total_seconds()
                for event in herald.store.read_all(mark + 1)
                if event.type == "ScenarioWaitElapsed"
            ]
            assert len(late) == timed, (len(late), timed)
        finally:
            herald.close()
    base = asyncio.run(baseline_timers(timed, 60.0))
    p50, p99 = quantiles([s * 1000 for s in late])
    b50, b99 = quantiles([s * 1000 for s in base])
    print(
        f"timer lateness, {timed:,} due among {waiting:,} waiting: p50 {p50:.0f} ms, p99 {p99:.0f} ms "
        f"(baseline loop.call_at p50 {b50:.1f} ms, p99 {b99:.1f} ms)"
    )


async def baseline_timers(timed: int, window: float) -> list[float]:
    loop = asyncio.get_running_loop()
    chance = random.Random(3)
    offsets = sorted(chance.uniform(0, window) for _ in range(timed))
    start_wall, start_loop = time.time() + 2, loop.time() + 2
    late: list[float] = []
    done = loop.create_future()

    def fired(due_wall: float) -> None:
        late.append(time.time() - due_wall)
        if len(late) == timed:
            done.set_result(None)

    for offset in offsets:
        loop.call_at(start_loop + offset, fired, start_wall + offset)
    await done
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="bench", required=True)
    commands.add_parser("throughput").add_argument("--profiles", type=int, default=100_000)
    commands.add_parser("latency").add_argument("--entries", type=int, default=1_000)
    timers_ = commands.add_parser("timers")
    timers_.add_argument("--waiting", type=int, default=1_000_000)
    timers_.add_argument("--timed", type=int, default=3_000)
    args = parser.parse_args()
    print(machine())
    if args.bench == "throughput":
        throughput(args.profiles)
    elif args.bench == "latency":
        latency(args.entries)
    else:
        timers(args.waiting, args.timed)


if __name__ == "__main__":
    run(main)
