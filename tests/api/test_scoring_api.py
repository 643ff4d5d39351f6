"""Scoring through HTTP: number fields changed on request (idempotent by request id) and by rules on goals
and tracked events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from herald.domain.fields import FieldDefinition, FieldType
from tests.builders import create_database, create_profile, error_of

R = "/api/v1/scoring-rules"


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    create_database(
        herald,
        custom_fields=(
            FieldDefinition(name="LOYALTY_SCORE", type=FieldType.INT),
            FieldDefinition(name="spent", type=FieldType.FLOAT),
        ),
    )


async def fields(api: httpx.AsyncClient, herald: Herald, profile_id: str) -> dict[str, Any]:
    herald.runtime.drain()
    found: dict[str, Any] = (await api.get(f"/api/v1/profiles/{profile_id}")).json()["fields"]
    return found


async def test_scores_change_once_per_request_id(api: httpx.AsyncClient, herald: Herald) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    body = {"changes": [{"field": "LOYALTY_SCORE", "amount": 200}], "request_id": "welcome-1"}
    first = await api.post(f"/api/v1/profiles/{ann}/scores", json=body)
    again = await api.post(f"/api/v1/profiles/{ann}/scores", json=body)
    assert first.status_code == again.status_code == 200, first.text
    assert (await fields(api, herald, ann))["LOYALTY_SCORE"] == 200
    minus = {"changes": [{"field": "LOYALTY_SCORE", "op": "subtract", "amount": 50}]}
    await api.post(f"/api/v1/profiles/{ann}/scores", json=minus)
    assert (await fields(api, herald, ann))["LOYALTY_SCORE"] == 150
    bad = await api.post(
        f"/api/v1/profiles/{ann}/scores", json={"changes": [{"field": "email", "amount": 1}]}
    )
    assert bad.status_code == 422 and error_of(bad)["path"] == "changes.0.field"
    missing = await api.post("/api/v1/profiles/nobody/scores", json=body)
    assert missing.status_code == 404


async def test_rules_score_goals_and_tracked_events(api: httpx.AsyncClient, herald: Herald) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    herald.runtime.drain()
    made = await api.post("/api/v1/pixels", json={"name": "Shop", "database_id": "1"})
    pixel_id = made.json()["pixel_id"]
    rules = [
        {
            "name": "Buyers",
            "database_id": "1",
            "trigger": {"kind": "goal", "goal": "purchase", "pixel_id": pixel_id},
            "field": "LOYALTY_SCORE",
            "points": 10,
            "per_value": 0.1,
        },
        {
            "name": "Spend",
            "database_id": "1",
            "trigger": {"kind": "goal", "goal": "purchase"},
            "field": "spent",
            "per_value": 1,
        },
        {
            "name": "Browsers",
            "database_id": "1",
            "trigger": {"kind": "event", "name": "Product Viewed"},
            "field": "LOYALTY_SCORE",
            "points": 1,
        },
    ]
    for rule in rules:
        response = await api.post(R, json=rule)
        assert response.status_code == 201, response.text
    herald.runtime.drain()
    goals = {
        "pixel_id": pixel_id,
        "profile": {"email": "ann@example.org"},
        "client_id": "order-1",
        "goals": [{"goal": "purchase", "value": 125}, {"goal": "view"}],
    }
    assert (await api.post("/api/v1/goals", json=goals)).status_code == 200
    events = {
        "database_id": "1",
        "events": [{"event": "Product Viewed", "profile": {"email": "ann@example.org"}}],
    }
    assert (await api.post("/api/v1/track/batch", json=events)).status_code == 200
    herald.runtime.drain()
    scored = await fields(api, herald, ann)
    assert (scored["LOYALTY_SCORE"], scored["spent"]) == (10 + 12 + 1, 125.0)  # 12.5 rounds to 12 (to even)
    rerun = next(c for c in herald.runtime.consumers() if c.name == "scoring-rules")
    for event in herald.store.read_all():
        rerun.apply(event)  # redelivered: every change's request id is its event's, nothing twice
    assert (await fields(api, herald, ann))["LOYALTY_SCORE"] == 23
    listed = (await api.get(R)).json()["rules"]
    assert [r["settings"]["name"] for r in listed] == ["Buyers", "Spend", "Browsers"]


async def test_a_bad_rule_is_refused_at_its_path(api: httpx.AsyncClient) -> None:
    rule = {"name": "R", "database_id": "1", "trigger": {"kind": "goal"}, "field": "email", "points": 1}
    response = await api.post(R, json=rule)
    assert response.status_code == 422 and error_of(response)["path"] == "field"
    unknown = await api.post(R, json={**rule, "database_id": "9"})
    assert unknown.status_code == 404 and error_of(unknown)["path"] == "database_id"
