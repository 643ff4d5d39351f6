"""Segments whose external rules POST to a URL, through HTTP: a bad answer refuses the whole change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald, build
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from tests.builders import DB, create_profile, customers, error_of, log_size
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_external_sets import ANSWERS, serve

SEG = "/api/v1/segments"


@pytest.fixture
def herald(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    """A server that may fetch from loopback, where the test's list server listens."""
    settings = Settings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        reports_engine="off",
        remote_allowed_networks=["127.0.0.0/8"],
    )
    app = build(settings, clock=clock, ids=IdSource(42))
    customers(app)
    yield app
    app.close()


@pytest.fixture
def lists() -> Iterator[str]:
    with serve() as base:
        yield base


def static_from(url: str, path: str = "") -> dict[str, Any]:
    source = {"kind": "post_url", "url": url, "path": path}
    rule = {"kind": "external", "field": "email", "operator": "in", "source": source}
    query = {"sources": [{"database_id": DB, "rules": [rule]}]}
    return {"name": "From CRM", "kind": "static", "query": query}


async def test_a_static_segment_takes_its_members_from_a_post_url(
    api: httpx.AsyncClient, herald: Herald, lists: str
) -> None:
    ann = await create_profile(api, {"email": "ann@example.com"})
    await create_profile(api, {"email": "carl@example.com"})
    herald.runtime.drain()
    created = await api.post(SEG, json=static_from(f"{lists}/json", "segment.emails"))
    assert created.status_code == 201, created.text
    assert (created.json()["entered"], created.json()["size"]) == (1, 1)
    herald.runtime.drain()
    members = (await api.get(f"{SEG}/{created.json()['segment_id']}/members")).json()["members"]
    assert [m["profile_id"] for m in members] == [ann]


@pytest.mark.parametrize("answer", ["garbage", "missing", "broken-xml", "bomb"])
async def test_a_bad_answer_refuses_the_segment_and_writes_nothing(
    api: httpx.AsyncClient, herald: Herald, lists: str, answer: str
) -> None:
    await create_profile(api, {"email": "ann@example.com"})
    herald.runtime.drain()
    before = log_size(herald)
    refused = await api.post(SEG, json=static_from(f"{lists}/{answer}", "names/name"))
    assert refused.status_code == 422, refused.text
    assert error_of(refused)["path"] == "query.sources.0.rules.0.source"
    assert log_size(herald) == before
    assert (await api.get(SEG)).json()["segments"] == []


API_KEY = "crm-key-4b9d0e"


async def test_a_urls_credentials_are_sealed_masked_when_shown_and_kept_when_sent_back(
    api: httpx.AsyncClient, herald: Herald, lists: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the list server answers only when the whole URL, key and all, is called
    monkeypatch.setitem(ANSWERS, f"/json?api_key={API_KEY}&v=2", ANSWERS["/json"])
    ann = await create_profile(api, {"email": "ann@example.com"})
    herald.runtime.drain()
    created = await api.post(SEG, json=static_from(f"{lists}/json?api_key={API_KEY}&v=2", "segment.emails"))
    assert created.status_code == 201, created.text
    assert created.json()["entered"] == 1
    segment = f"{SEG}/{created.json()['segment_id']}"
    shown = (await api.get(segment)).json()
    source = shown["query"]["sources"][0]["rules"][0]["source"]
    assert source["url"] == f"{lists}/json?api_key=***&v=2"
    herald.runtime.drain()
    log = (await api.get("/api/v1/events", params={"limit": 1000})).text
    for text in (str(shown), log, (await api.get(f"{SEG}/{created.json()['segment_id']}/history")).text):
        assert API_KEY not in text
    # sent back as shown (masked), the sealed URL stays: a recalculation still calls the whole URL
    query = shown["query"]
    put = await api.put(segment, json={"name": "Renamed", "query": query})
    assert put.status_code == 200, put.text
    await create_profile(api, {"email": "bob@example.com"})
    herald.runtime.drain()
    recalculated = await api.post(f"{segment}/recalculate")
    assert recalculated.status_code == 200, recalculated.text
    members = (await api.get(f"{segment}/members")).json()["members"]
    assert [m["profile_id"] for m in members] == [ann]


async def test_a_failed_fetch_names_the_url_with_its_credentials_masked(
    api: httpx.AsyncClient, herald: Herald, lists: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ANSWERS, f"/missing?token={API_KEY}", ANSWERS["/missing"])
    refused = await api.post(SEG, json=static_from(f"{lists}/missing?token={API_KEY}", "names/name"))
    assert refused.status_code == 422
    assert API_KEY not in refused.text and "token=***" in error_of(refused)["reason"]
