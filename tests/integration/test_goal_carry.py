"""Anonymous goals carried to the profile once the visitor is known: the goals report counts them once, as
the profile's, and both segment evaluators (ClickHouse SQL and the realtime processor) see them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from herald.api.app import create_app
from herald.api.visitor_cookie import COOKIE
from herald.api.wiring import Herald, build
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.reports.base import Period, ReportRequest
from tests.builders import create_profile, customers
from tests.conftest import ADMIN_TOKEN

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
RULE = {
    "kind": "goal",
    "goal": "Purchase",
    "aggregate": "sum",
    "operator": "gte",
    "value": 300,
    "period": {"kind": "last_days", "days": 7},
}


@pytest.fixture
def reported(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    settings = Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, reports_engine="chdb")
    app = build(settings, clock=clock, ids=IdSource(5))
    yield app
    app.close()


@pytest.fixture
async def client(reported: Herald) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(reported, run_processors=False))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "user-agent": UA}
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test", headers=headers) as api:
        yield api


def drain(herald: Herald) -> None:
    herald.runtime.drain()
    assert herald.reports_runtime is not None
    herald.reports_runtime.drain()


def goals_report(herald: Herald) -> dict[str, Any]:
    assert herald.clickhouse is not None
    today = herald.clock.now().date()
    request = ReportRequest(Period(date(today.year, 1, 1), today), group_by="goal")
    result = herald.reports["goals"].run(herald.clickhouse, request)
    total = dict(zip(result.columns, result.rows[-1], strict=True))
    return total


async def hit(api: httpx.AsyncClient, url: str, jar: str | None, **params: str) -> str:
    parts = urlsplit(url)
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    api.cookies.clear()
    headers = {"cookie": f"{COOKIE}={jar}"} if jar else {}
    response = await api.get(f"{parts.path}?{parts.query}{extra}", headers=headers)
    assert response.status_code == 200, response.text
    return response.cookies.get(COOKIE) or jar or ""


async def test_goals_reached_before_the_visitor_was_known_count_once_as_the_profiles(
    client: httpx.AsyncClient, reported: Herald
) -> None:
    api, herald = client, reported
    customers(herald)
    segment = await api.post(
        "/api/v1/segments",
        json={
            "name": "Big spenders",
            "kind": "dynamic",
            "query": {"sources": [{"database_id": "1", "rules": [RULE]}]},
        },
    )
    assert segment.status_code == 201, segment.text
    segment_id = segment.json()["segment_id"]
    made = await api.post("/api/v1/pixels", json={"name": "Shop", "database_id": "1"})
    pixel_id = made.json()["pixel_id"]
    image = (
        await api.get(
            f"/api/v1/pixels/{pixel_id}/code", params={"kind": "image", "goals": "Purchase", "value": 200}
        )
    ).json()
    jar = await hit(api, image["url"], None)
    jar = await hit(api, image["url"], jar)  # two purchases by an unknown visitor
    drain(herald)
    before = goals_report(herald)
    assert (before["visits"], before["anonymous_visits"], before["profile_visits"]) == (2, 2, 0)

    ann = await create_profile(api, {"email": "ann@example.org"})
    drain(herald)
    js = (await api.get(f"/api/v1/pixels/{pixel_id}/code", params={"kind": "js"})).json()
    match = orjson.dumps({"email": "ann@example.org"}).decode()
    await hit(api, js["url"], jar, t="js", goals="Signed%20in", match=match)  # now we know: Ann
    drain(herald)

    after = goals_report(herald)
    assert (after["visits"], after["anonymous_visits"], after["profile_visits"]) == (3, 0, 3)
    assert after["profit"] == 400.0 and after["income_profiles"] == 400.0
    members = (await api.get(f"/api/v1/segments/{segment_id}/members")).json()  # the realtime evaluator
    assert [m["profile_id"] for m in members["members"]] == [ann]
    count = await api.get(f"/api/v1/segments/{segment_id}/count")  # the SQL evaluator over ClickHouse
    assert count.json()["count"] == 1
