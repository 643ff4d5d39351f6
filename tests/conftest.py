"""Fixtures: a Herald wired over a temp directory with a manual clock and seeded ids, and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.app import create_app
from herald.api.wiring import Herald, build
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource

ADMIN_TOKEN = "test-admin-token"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@contextmanager
def herald_with(data_dir: Path, clock: ManualClock, seed: int = 42, **settings: Any) -> Iterator[Herald]:
    """A Herald over `data_dir` (reports off unless `settings` say otherwise), closed afterwards."""
    values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "reports_engine": "off", **settings}
    app = build(Settings(data_dir=data_dir, **values), clock=clock, ids=IdSource(seed))
    try:
        yield app
        assert_every_event_names_its_actor(app)
    finally:
        app.close()


def assert_every_event_names_its_actor(app: Herald) -> None:
    """The audit log reads who did what from the log's metadata: every path that appends must say."""
    unattributed = [(e.stream, e.type) for e in app.store.read_all() if not e.metadata.get("actor")]
    assert unattributed == [], f"events without an actor in their metadata: {unattributed[:5]}"


@asynccontextmanager
async def admin_client(herald: Herald, **transport: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app with the admin token; processors run only when drained."""
    asgi = httpx.ASGITransport(app=create_app(herald, run_processors=False), **transport)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(transport=asgi, base_url="http://herald.test", headers=headers) as client:
        yield client


@pytest.fixture
def herald(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    with herald_with(tmp_path / "data", clock) as app:
        yield app


@pytest.fixture
def reporting(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    """A Herald like `herald`'s with the embedded report store (chDB) on: drain `reports_runtime` too."""
    with herald_with(tmp_path / "data", clock, reports_engine="chdb") as app:
        yield app


@pytest.fixture
async def api(herald: Herald) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app; processors do not run by themselves: call `herald.runtime.drain()`."""
    async with admin_client(herald) as client:
        yield client


@pytest.fixture
async def reporting_api(reporting: Herald) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app over `reporting`."""
    async with admin_client(reporting) as client:
        yield client
