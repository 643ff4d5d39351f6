"""Reports through the API over the embedded report store (chDB), fed by the sink from the log."""

from __future__ import annotations

import httpx
import pytest

from herald.api.replay import replay_reports
from herald.api.wiring import Herald, build_clickhouse
from herald.projections.clickhouse_sink import TABLE_COLUMNS, table_contents
from tests.builders import RESOURCE, create_resource, customers, email_subscription, import_rows
from tests.scenario_builders import campaign_node, graph, scenario, trigger


@pytest.fixture
def client(reporting_api: httpx.AsyncClient) -> httpx.AsyncClient:
    return reporting_api


async def test_a_broadcasts_messages_show_in_the_summary_report(
    client: httpx.AsyncClient, reporting: Herald
) -> None:
    customers(reporting)
    create_resource(reporting)
    rows = [
        {"email": f"u{i}@gmail.com", "subscriptions": [email_subscription(f"u{i}@gmail.com")]}
        for i in range(5)
    ]
    await import_rows(client, rows)
    template = {"name": "Hi", "content": {"email": {"subject": "Hi", "html": "<p>Hi</p>"}}}
    template_id = (await client.post("/api/v1/templates", json=template)).json()["template_id"]
    campaign = {
        "name": "Spring",
        "type": "broadcast",
        "channel": "email",
        "resource_id": RESOURCE,
        "template_ids": [template_id],
        "audience": {"kind": "database", "id": "1"},
    }
    campaign_id = (await client.post("/api/v1/campaigns", json=campaign)).json()["campaign_id"]
    reporting.runtime.drain()
    assert (await client.post(f"/api/v1/campaigns/{campaign_id}/launch")).status_code == 200
    reporting.runtime.drain()
    assert reporting.reports_runtime is not None
    reporting.reports_runtime.drain()

    params = {"start": "2026-03-01", "end": "2026-03-31", "group_by": "campaign", "metrics": "email_queued"}
    response = await client.get("/api/v1/reports/summary", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == [[campaign_id, 5]], body
    csv = await client.get("/api/v1/reports/summary", params={**params, "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    bad = await client.get("/api/v1/reports/summary", params={**params, "group_by": "planet"})
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "group_by"
    unknown = await client.get("/api/v1/reports/nope", params=params)
    assert unknown.status_code == 422 and unknown.json()["error"]["path"] == "name"


async def test_the_report_tables_rebuilt_from_the_log_are_the_same(
    client: httpx.AsyncClient, reporting: Herald
) -> None:
    customers(reporting)
    create_resource(reporting)
    emails = [f"u{i}@mail.ru" for i in range(8)]
    rows = [{"email": e, "subscriptions": [email_subscription(e)]} for e in emails]
    await import_rows(client, rows)
    reporting.runtime.drain()
    assert reporting.reports_runtime is not None and reporting.clickhouse is not None
    reporting.reports_runtime.drain()
    before = {table: table_contents(reporting.clickhouse, table) for table in TABLE_COLUMNS}
    assert before["profile_creations"] and before["subscription_changes"]
    settings = reporting.settings
    reporting.clickhouse.close()  # chDB allows one session per process
    reporting.clickhouse = None

    assert replay_reports(settings) == 0
    again = build_clickhouse(settings)
    assert again is not None
    try:
        assert {table: table_contents(again, table) for table in TABLE_COLUMNS} == before
    finally:
        again.close()


async def test_a_funnel_step_takes_a_segments_members_now(
    client: httpx.AsyncClient, reporting: Herald
) -> None:
    customers(reporting)
    emails = [f"f{i}@example.org" for i in range(4)]
    ids = [r["profile_id"] for r in (await import_rows(client, [{"email": e} for e in emails]))["results"]]
    reporting.runtime.drain()
    # no drain of the report sink: evaluating a segment over the report store catches it up first
    static = {"name": "VIP", "kind": "static", "query": {"sources": [{"database_id": "1"}]}}
    segment_id = (await client.post("/api/v1/segments", json=static)).json()["segment_id"]
    removed = await client.post(
        f"/api/v1/segments/{segment_id}/members/remove", json={"profile_ids": ids[:1]}
    )
    assert removed.status_code == 200, removed.text
    reporting.runtime.drain()

    period = {"start": "2026-03-01", "end": "2026-03-31"}
    steps = '[{"kind": "segment", "id": "%s"}]'
    response = await client.get("/api/v1/reports/funnel", params={**period, "steps": steps % segment_id})
    assert response.status_code == 200, response.text
    assert response.json()["rows"][0][:3] == [1, "segment", 3]
    unknown = await client.get("/api/v1/reports/funnel", params={**period, "steps": steps % "404"})
    assert unknown.status_code == 422 and unknown.json()["error"]["path"] == "params.steps.0.id"
    garbled = await client.get("/api/v1/reports/funnel", params={**period, "steps": "[{"})
    assert garbled.status_code == 422 and garbled.json()["error"]["path"] == "params.steps"


async def test_scenario_sends_are_grouped_by_scenario_in_the_summary_report(
    client: httpx.AsyncClient, reporting: Herald
) -> None:
    customers(reporting)
    create_resource(reporting)
    welcome = trigger(reporting, "Welcome")
    first = scenario(reporting, graph(campaign_node("1", welcome)))
    second = scenario(reporting, graph(campaign_node("1", welcome)))
    reporting.runtime.drain()
    rows = [
        {"email": f"s{i}@gmail.com", "subscriptions": [email_subscription(f"s{i}@gmail.com")]}
        for i in range(3)
    ]
    await import_rows(client, rows)  # each import captures the profiles into both scenarios
    reporting.runtime.drain()
    fired = await client.post(
        f"/api/v1/campaigns/{welcome}/fire", json={"profiles": [{"email": "s0@gmail.com"}]}
    )
    assert fired.status_code == 200, fired.text
    reporting.runtime.drain()
    assert reporting.reports_runtime is not None
    reporting.reports_runtime.drain()

    params = {"start": "2026-03-01", "end": "2026-03-31", "group_by": "scenario", "metrics": "email_queued"}
    body = (await client.get("/api/v1/reports/summary", params=params)).json()
    assert body["rows"] == [["", 1], [first, 3], [second, 3]]  # the API fire belongs to no scenario
    only = (await client.get("/api/v1/reports/summary", params={**params, "filter.scenario": second})).json()
    assert only["rows"] == [[second, 3]]
