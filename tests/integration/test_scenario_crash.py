"""Crash injection: the scenario processor killed (SIGKILL) at 20 random points while 10,000 profiles run
a scenario with a pause, a condition and two campaign nodes; and a live edit made half way through.

The parent imports 10,000 profiles into a database whose import captures them into the scenario
(A: a trigger campaign → a pause until a date → "tier is gold?" → B: another trigger), then runs
`tests.integration.scenario_worker` as a child process on the real clock, kills it with SIGKILL
at random moments (seeded), and starts it again, until every instance has completed. After the
tenth kill it publishes version 2, which removes node B and sends the profiles that reach (or
were about to be at) it to a new node C. At the end, from the log: every profile got exactly
one A; every gold profile exactly one of B and C, never both; nobody else got either.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herald.api.wiring import build
from herald.domain import scenarios as sc
from herald.domain.scenario_capture import ImportCapture
from herald.infra.config import Settings
from herald.services.profiles import ImportOptions
from tests.builders import create_resource, customers, email_subscription
from tests.scenario_builders import CTX, campaign_node, graph, trigger

PROFILES = 10_000
KILLS = 20
EDIT_AFTER = 10
REPO = Path(__file__).resolve().parents[2]


def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, admin_token="t", reports_engine="off")


def prepared(data_dir: Path) -> tuple[str, dict[str, str], set[str]]:
    """The database, the triggers and the scenario; 10,000 imported profiles: (scenario, campaigns, gold)."""
    herald = build(settings(data_dir))
    try:
        customers(herald)
        create_resource(herald)
        campaigns = {name: trigger(herald, name) for name in ("A", "B", "C")}
        pause_until = (datetime.now(UTC) + timedelta(seconds=25)).isoformat()
        rule = {"kind": "field", "field": "tier", "operator": "equal", "value": "gold"}
        v1 = graph(
            campaign_node("a", campaigns["A"], "p"),
            {"id": "p", "type": "pause", "wait": {"kind": "date", "at": pause_until}, "next": "c"},
            {"id": "c", "type": "condition", "rules": [rule], "true": "b", "false": None},
            campaign_node("b", campaigns["B"]),
        )
        settings_ = sc.ScenarioSettings(
            name="Crash", database_id="1", reentry=sc.ReentryMode.ONCE_EVER, capture=ImportCapture()
        )
        scenario_id, _ = herald.scenarios.create(settings_, v1, CTX)
        herald.scenarios.activate(scenario_id, CTX)
        herald.runtime.drain()
        gold: set[str] = set()
        for start in range(0, PROFILES, 5_000):
            rows = [
                {
                    "email": f"u{i}@mail.example",
                    "tier": "gold" if i % 2 else "basic",
                    "subscriptions": [email_subscription(f"u{i}@mail.example")],
                }
                for i in range(start, start + 5_000)
            ]
            results = herald.profiles.import_rows("1", rows, ImportOptions(), CTX)
            gold |= {
                r.profile_id or "" for r, row in zip(results, rows, strict=True) if row["tier"] == "gold"
            }
        return scenario_id, campaigns, gold
    finally:
        herald.close()


def edit(data_dir: Path, scenario_id: str, campaigns: dict[str, str]) -> None:
    """Version 2: node B goes; whoever is at it, or reaches the condition's true branch, goes to C."""
    herald = build(settings(data_dir))
    try:
        state = herald.scenarios.scenario(scenario_id)
        assert state.settings is not None and state.current is not None
        nodes = [n.model_dump(mode="json") for n in state.current.graph.nodes if n.id != "b"]
        nodes = [{**n, "true": "x"} if n["id"] == "c" else n for n in nodes]
        v2 = graph(*nodes, campaign_node("x", campaigns["C"]))
        herald.scenarios.change(
            scenario_id, state.settings, v2, [sc.RemovedNode(node_id="b", move_to="x")], CTX
        )
    finally:
        herald.close()


def start_worker(data_dir: Path, scenario_id: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HERALD_REPORTS_ENGINE": "off"}
    command = [
        sys.executable,
        "-m",
        "tests.integration.scenario_worker",
        str(data_dir),
        scenario_id,
        str(PROFILES),
    ]
    worker = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], 60)
    assert ready and worker.stdout.readline().strip() == b"ready", (
        worker.stderr.read() if worker.stderr else ""
    )
    return worker


def decided_messages(data_dir: Path) -> list[tuple[str, str, str]]:
    """(campaign, profile, outcome) of every message decision in the log."""
    herald = build(settings(data_dir))
    try:
        return [
            (e.data["campaign_id"], e.data["profile_id"], e.type)
            for e in herald.store.read_all(1)
            if e.type in ("MessageQueued", "MessageSuppressed", "MessageFailed")
        ]
    finally:
        herald.close()


@pytest.mark.slow
def test_killing_the_scenario_processor_loses_and_doubles_nothing_across_a_live_edit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    scenario_id, campaigns, gold = prepared(data_dir)
    chance = random.Random(20)
    for kill in range(1, KILLS + 1):
        worker = start_worker(data_dir, scenario_id)
        time.sleep(chance.uniform(0.2, 2.0))
        worker.send_signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL, f"kill {kill} came after the work was done"
        if kill == EDIT_AFTER:
            edit(data_dir, scenario_id, campaigns)
    worker = start_worker(data_dir, scenario_id)
    _, errors = worker.communicate(timeout=300)
    assert worker.returncode == 0, errors.decode()

    decisions = decided_messages(data_dir)
    assert {outcome for _, _, outcome in decisions} == {"MessageQueued"}
    sent = Counter((campaign, profile) for campaign, profile, _ in decisions)
    assert [pair for pair, times in sent.items() if times > 1] == []  # nothing twice
    by_campaign = {name: {p for c, p in sent if c == campaign_id} for name, campaign_id in campaigns.items()}
    assert len(by_campaign["A"]) == PROFILES  # nothing lost
    assert by_campaign["B"] | by_campaign["C"] == gold
    assert by_campaign["B"] & by_campaign["C"] == set()
    assert by_campaign["C"], "the edit came before some profiles reached the condition"
