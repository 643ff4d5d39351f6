"""The scenarios API: every bad graph a 422 with the node's path; versions, entries, statistics, traces."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import create_resource, customers, email_subscription, error_of, import_rows
from tests.scenario_builders import trigger

BASE = {"name": "Welcome", "database_id": "1", "reentry": "once_ever", "capture": {"kind": "api"}}


def body(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**BASE, "graph": {"nodes": list(nodes)}, **extra}


def campaign(node_id: str, campaign_id: str, next_: str | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": "campaign", "campaign_id": campaign_id, "next": next_}


@pytest.fixture
def triggers(herald: Herald) -> dict[str, str]:
    customers(herald)
    create_resource(herald)
    return {"welcome": trigger(herald, "Welcome"), "promo": trigger(herald, "Promo")}


async def created(api: httpx.AsyncClient, payload: dict[str, Any]) -> str:
    response = await api.post("/api/v1/scenarios", json=payload)
    assert response.status_code == 201, response.text
    return str(response.json()["scenario_id"])


@pytest.mark.parametrize(
    ("nodes", "status", "path"),
    [
        ([{"id": "1", "type": "campaign", "next": None}], 422, "graph.nodes.0.campaign_id"),
        ([{"id": "1", "type": "teleport"}], 422, "graph.nodes.0"),
        (
            [{"id": "1", "type": "pause", "wait": {"kind": "relative", "days": -1}}],
            422,
            "graph.nodes.0.wait.days",
        ),
        ([campaign("1", "W", "9")], 422, "graph.nodes.0.next"),
        ([campaign("1", "W"), campaign("2", "W")], 422, "graph.nodes.1"),
        ([campaign("1", "W", "2"), campaign("2", "W", "1")], 422, "graph.nodes.1.next"),
        ([campaign("1", "404")], 422, "graph.nodes.0.campaign_id"),
        (
            [
                {
                    "id": "1",
                    "type": "condition",
                    "rules": [{"kind": "field", "field": "nope", "operator": "exists"}],
                }
            ],
            422,
            "graph.nodes.0.rules.0.field",
        ),
        (
            [
                {
                    "id": "1",
                    "type": "update_data",
                    "operations": [{"field": "tier", "op": "increment", "value": 1}],
                }
            ],
            422,
            "graph.nodes.0.operations.0.op",
        ),
        ([{"id": "1", "type": "webhook", "url": "ftp://example.com"}], 422, "graph.nodes.0.url"),
        ([{"id": "1", "type": "static_segment", "segment_id": "77"}], 422, "graph.nodes.0.segment_id"),
        ([{"id": "1", "type": "promo_code", "program_id": "1"}], 422, "graph.nodes.0.program_id"),
    ],
)
async def test_a_bad_graph_is_refused_with_the_nodes_path_and_nothing_is_written(
    api: httpx.AsyncClient,
    herald: Herald,
    triggers: dict[str, str],
    nodes: list[dict[str, Any]],
    status: int,
    path: str,
) -> None:
    for node in nodes:
        if node.get("campaign_id") == "W":
            node["campaign_id"] = triggers["welcome"]
    head = herald.store.head_position()
    response = await api.post("/api/v1/scenarios", json=body(*nodes))
    assert response.status_code == status, response.text
    assert error_of(response)["path"] == path
    assert herald.store.head_position() == head


async def test_a_campaign_node_must_name_a_trigger_of_the_scenarios_database(
    api: httpx.AsyncClient, herald: Herald, triggers: dict[str, str]
) -> None:
    broadcast = {
        "name": "B",
        "type": "broadcast",
        "channel": "email",
        "resource_id": "7",
        "template_ids": ["1"],
        "audience": {"kind": "database", "id": "1"},
    }
    campaign_id = (await api.post("/api/v1/campaigns", json=broadcast)).json()["campaign_id"]
    response = await api.post("/api/v1/scenarios", json=body(campaign("1", campaign_id)))
    assert response.status_code == 422
    assert error_of(response)["path"] == "graph.nodes.0.campaign_id"
    assert "name a trigger" in error_of(response)["reason"]


async def test_a_scenarios_life_through_the_api(
    api: httpx.AsyncClient, herald: Herald, triggers: dict[str, str]
) -> None:
    welcome, promo = triggers["welcome"], triggers["promo"]
    sid = await created(
        api,
        body(
            campaign("2", welcome, "3"),
            {"id": "3", "type": "pause", "wait": {"kind": "relative", "days": 1}, "next": None},
        ),
    )
    card = (await api.get(f"/api/v1/scenarios/{sid}")).json()
    assert (card["graph_version"], card["active"], card["capture"]) == (1, False, {"kind": "api"})

    changed = body(
        campaign("2", welcome, "7"), campaign("7", promo), removed=[{"node_id": "3", "move_to": "7"}]
    )
    response = await api.put(
        f"/api/v1/scenarios/{sid}", json={**changed, "expected_version": card["version"]}
    )
    assert response.status_code == 200, response.text
    stale = await api.put(f"/api/v1/scenarios/{sid}", json={**changed, "expected_version": card["version"]})
    assert stale.status_code == 409
    card = (await api.get(f"/api/v1/scenarios/{sid}")).json()
    assert card["graph_version"] == 2 and [v["version"] for v in card["versions"]] == [1, 2]

    refused = await api.post(f"/api/v1/scenarios/{sid}/enter", json={"profiles": [{"profile_id": "x"}]})
    assert refused.status_code == 422 and "not active" in error_of(refused)["reason"]
    assert (await api.post(f"/api/v1/scenarios/{sid}/activate")).status_code == 200
    rows = [{"email": "ann@mail.example", "subscriptions": [email_subscription("ann@mail.example")]}]
    pid = (await import_rows(api, rows))["results"][0]["profile_id"]
    herald.runtime.drain()
    entered = await api.post(
        f"/api/v1/scenarios/{sid}/enter",
        json={"profiles": [{"email": "ann@mail.example"}], "content": {"x": 1}},
    )
    assert entered.json() == {"profiles": [{"profile_id": pid, "status": "requested"}]}
    missing = await api.post(
        f"/api/v1/scenarios/{sid}/enter", json={"profiles": [{"email": "no@mail.example"}]}
    )
    assert missing.status_code == 404 and error_of(missing)["path"] == "profiles.0"
    herald.runtime.drain()
    herald.runtime.drain()

    path = (await api.get(f"/api/v1/scenarios/{sid}/profiles/{pid}")).json()
    [instance] = path["instances"]
    assert instance["status"] == "completed" and instance["content"] == {"x": 1}
    assert [(s["node_id"], s["branch"], s["outcome"]["status"]) for s in instance["steps"]] == [
        ("2", "next", "queued"),
        ("7", "next", "queued"),
    ]
    again = await api.post(f"/api/v1/scenarios/{sid}/profiles", json={"profile_ids": [pid]})
    assert again.json() == {"requested": 1}
    herald.runtime.drain()
    path = (await api.get(f"/api/v1/scenarios/{sid}/profiles/{pid}")).json()
    assert path["refused"][0]["rule"] == "once_ever"

    stats = (
        await api.get(
            f"/api/v1/scenarios/{sid}/statistics", params={"start": "2026-03-01", "end": "2026-03-31"}
        )
    ).json()
    assert (stats["entered"], stats["completed"], stats["in_process"], stats["errors"]) == (1, 1, 0, 0)
    listed = (await api.get("/api/v1/scenarios")).json()["scenarios"]
    assert [(s["scenario_id"], s["active"], s["in_process"]) for s in listed] == [(sid, True, 0)]
    assert (await api.delete(f"/api/v1/scenarios/{sid}")).status_code == 200
    assert (await api.get(f"/api/v1/scenarios/{sid}")).status_code == 404


async def test_an_audience_scenario_shows_its_next_12_runs(
    api: httpx.AsyncClient, herald: Herald, triggers: dict[str, str]
) -> None:
    capture = {"kind": "schedule", "schedule": {"kind": "daily", "time": "19:30", "timezone": "UTC"}}
    sid = await created(api, {**body(campaign("1", triggers["welcome"])), "capture": capture})
    runs = (await api.get(f"/api/v1/scenarios/{sid}/upcoming")).json()["runs"]
    assert (
        len(runs) == 12 and runs[0] == "2026-03-02T19:30:00+00:00" and runs[11] == "2026-03-13T19:30:00+00:00"
    )


async def test_a_profiles_path_shows_each_node_branch_due_time_and_error_and_the_statistics_count_by_day(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, triggers: dict[str, str]
) -> None:
    off = trigger(herald, "Off", active=False)
    nodes = [
        campaign("1", off, "2"),
        {"id": "2", "type": "pause", "wait": {"kind": "relative", "days": 1}, "next": "3"},
        campaign("3", triggers["welcome"]),
    ]
    sid = await created(api, {**body(*nodes), "capture": {"kind": "import", "via": "any"}})
    assert (await api.post(f"/api/v1/scenarios/{sid}/activate")).status_code == 200
    herald.runtime.drain()
    rows = [{"email": "ann@mail.example", "subscriptions": [email_subscription("ann@mail.example")]}]
    pid = (await import_rows(api, rows))["results"][0]["profile_id"]
    herald.runtime.drain()
    herald.runtime.drain()

    async def path() -> dict[str, Any]:
        [instance] = (await api.get(f"/api/v1/scenarios/{sid}/profiles/{pid}")).json()["instances"]
        return dict(instance)

    async def stats(start: str, end: str) -> tuple[Any, ...]:
        found = (
            await api.get(f"/api/v1/scenarios/{sid}/statistics", params={"start": start, "end": end})
        ).json()
        failed = {n["node_id"]: n["failed"] for n in found["nodes"]}
        return found["entered"], found["completed"], found["in_process"], found["errors"], failed

    waiting = await path()
    failed, paused = waiting["steps"]
    assert (failed["node_id"], failed["branch"]) == ("1", "next") and "not active" in failed["error"]
    assert (paused["node_id"], paused["waits_for"], paused["due_at"]) == (
        "2",
        "pause",
        "2026-03-03T09:00:00Z",
    )
    assert "branch" not in paused and waiting["status"] == "running"
    assert await stats("2026-03-02", "2026-03-02") == (1, 0, 1, 1, {"1": 1, "2": 0})

    clock.advance(timedelta(days=1))
    herald.tick()
    herald.runtime.drain()
    herald.runtime.drain()
    done = await path()
    assert [(s["node_id"], s["branch"]) for s in done["steps"]] == [
        ("1", "next"),
        ("2", "next"),
        ("3", "next"),
    ]
    assert (
        done["steps"][1]["woke_at"] == "2026-03-03T09:00:00Z"
        and done["steps"][2]["outcome"]["status"] == "queued"
    )
    assert done["status"] == "completed" and "error" not in done["steps"][2]
    assert await stats("2026-03-03", "2026-03-03") == (0, 1, 0, 0, {"2": 0, "3": 0})
    assert await stats("2026-03-01", "2026-03-31") == (1, 1, 0, 1, {"1": 1, "2": 0, "3": 0})
    assert await stats("2026-02-01", "2026-02-28") == (0, 0, 0, 0, {})


@pytest.mark.parametrize(
    ("schedule", "runs"),
    [
        ({"kind": "once", "date": "2026-03-05", "time": "10:00"}, ["2026-03-05T10:00:00+00:00"]),
        (
            {"kind": "weekdays", "weekdays": ["sunday"], "time": "11:30"},
            ["2026-03-08T11:30:00+00:00", "2026-03-15T11:30:00+00:00"],
        ),
        (
            {"kind": "month_days_times", "days": [1, 15], "hours": [8, 20]},
            ["2026-03-15T08:00:00+00:00", "2026-03-15T20:00:00+00:00", "2026-04-01T08:00:00+00:00"],
        ),
        (
            {"kind": "daily", "time": "19:30", "deactivate_after": "2026-03-04T00:00:00Z"},
            ["2026-03-02T19:30:00+00:00", "2026-03-03T19:30:00+00:00"],
        ),
    ],
)
async def test_an_audience_scenario_takes_any_campaign_schedule(
    api: httpx.AsyncClient, triggers: dict[str, str], schedule: dict[str, Any], runs: list[str]
) -> None:
    capture = {"kind": "schedule", "schedule": schedule}
    sid = await created(api, {**body(campaign("1", triggers["welcome"])), "capture": capture})
    shown = (await api.get(f"/api/v1/scenarios/{sid}/upcoming")).json()["runs"]
    assert shown[: len(runs)] == runs
    assert len(shown) == (len(runs) if schedule["kind"] == "once" or "deactivate_after" in schedule else 12)
