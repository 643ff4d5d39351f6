"""The README's Welcome scenario: its request bodies, as written there, do what the README says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import orjson

from herald.api.wiring import Herald
from tests.builders import create_resource, customers, error_of
from tests.scenario_builders import trigger

README = Path(__file__).resolve().parents[2] / "README.md"


def scenario_bodies() -> list[dict[str, Any]]:
    """Every `POST $H/scenarios` body in the README, in order."""
    text = README.read_text()
    found = re.findall(r"\$H/scenarios -d '(\{.*?\})'", text, flags=re.DOTALL)
    return [orjson.loads(body) for body in found]


async def test_the_readmes_welcome_scenario_is_created_and_its_bad_graph_refused(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    create_resource(herald, resource_id="1")
    await api.post(
        "/api/v1/databases/1/fields", json={"name": "LOYALTY_SCORE", "title": "Loyalty score", "type": "int"}
    )
    for name in ("Spring", "Fired", "Welcome", "Promo"):  # the README's campaigns 1 and 2 come first
        trigger(herald, name, resource_id="1")
    trigger(herald, "Reminder", channel="sms", resource_id="1")
    welcome, bad = scenario_bodies()
    created = await api.post("/api/v1/scenarios", json=welcome)
    assert created.status_code == 201, created.text
    refused = await api.post("/api/v1/scenarios", json=bad)
    assert refused.status_code == 422
    assert error_of(refused)["path"] == "graph.nodes.1.next"
    scenario = (await api.get(f"/api/v1/scenarios/{created.json()['scenario_id']}")).json()
    assert [node["id"] for node in scenario["graph"]["nodes"]] == [
        "2",
        "3",
        "4",
        "5",
        "7",
        "8",
        "9",
        "10",
        "11",
    ]
