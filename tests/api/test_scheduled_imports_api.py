"""Scheduled imports through HTTP: a loopback URL on a campaign schedule, fired by Herald.tick."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald, build
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from tests.builders import DB, create_resource, customers, error_of, log_size
from tests.conftest import ADMIN_TOKEN

SI = "/api/v1/scheduled-imports"
CSV = b"Email,FirstName,age\nann@example.org,Ann,30\nbob@example.org,Bob,x\n"
JSON = b'[{"email": "cid@example.org", "name": "Cid", "age": 7}, {"email": "dee@example.org", "name": "Dee"}]'


class _Files(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, tuple[int, bytes]]
    hits: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Files

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        status, body = self.server.files.get(self.path, (404, b"no such file"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(files: dict[str, tuple[int, bytes]]) -> Iterator[_Files]:
    server = _Files(("127.0.0.1", 0), _Handler)
    server.files, server.hits = files, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def herald(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    """A Herald that may fetch from loopback, where the test's file server listens."""
    settings = Settings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        reports_engine="off",
        remote_allowed_networks=("127.0.0.0/8",),
    )
    app = build(settings, clock=clock, ids=IdSource(42))
    customers(app)
    create_resource(app)
    yield app
    app.close()


@pytest.fixture
def files() -> Iterator[_Files]:
    with serve({"/people.csv": (200, CSV), "/people.json": (200, JSON)}) as server:
        yield server


def url(files: _Files, path: str) -> str:
    return f"http://127.0.0.1:{files.server_address[1]}{path}"


def body(source: str, schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "CRM export",
        "database_id": DB,
        "url": source,
        "columns": [
            {"column": "Email", "field": "email"},
            {"column": "FirstName", "field": "_fname"},
            {"column": "age", "field": "age"},
        ],
        "schedule": schedule,
        **extra,
    }


async def emails(api: httpx.AsyncClient, herald: Herald) -> set[str]:
    herald.runtime.drain()
    listed = (await api.get(f"/api/v1/databases/{DB}/profiles")).json()["profiles"]
    return {p["fields"]["email"] for p in listed}


async def test_a_daily_import_runs_at_its_time_imports_the_file_and_schedules_the_next_run(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, files: _Files
) -> None:
    created = await api.post(SI, json=body(url(files, "/people.csv"), {"kind": "daily", "time": "10:00:00"}))
    assert created.status_code == 201, created.text
    import_id = created.json()["import_id"]
    herald.runtime.drain()
    card = (await api.get(f"{SI}/{import_id}")).json()
    assert card["upcoming"][:2] == ["2026-03-02T10:00:00+00:00", "2026-03-03T10:00:00+00:00"]
    assert len(card["upcoming"]) == 12

    herald.tick()  # 09:00: nothing is due
    assert files.hits == []
    clock.advance(timedelta(hours=1))
    herald.tick()
    assert await emails(api, herald) == {"ann@example.org"}
    card = (await api.get(f"{SI}/{import_id}")).json()
    [run] = card["runs"]
    assert (run["run_number"], run["failed"], run["job"]["status"]) == (1, None, "completed")
    assert run["job"]["counts"]["created"] == 1 and run["job"]["counts"]["error"] == 1
    report = await api.get(f"/api/v1/jobs/{run['job_id']}/errors.csv")
    assert "bob@example.org" in report.text
    assert card["upcoming"][0] == "2026-03-03T10:00:00+00:00"
    # the same tick again (a restart before the timer moved on) fetches and runs nothing more
    before = log_size(herald)
    herald.tick()
    assert (log_size(herald), len(files.hits)) == (before, 1)


async def test_a_json_source_on_weekdays_runs_at_once_when_asked(
    api: httpx.AsyncClient, herald: Herald, files: _Files
) -> None:
    schedule = {"kind": "weekdays", "weekdays": ["friday"], "time": "08:30:00", "timezone": "Europe/Berlin"}
    columns = [{"column": "email", "field": "email"}, {"column": "name", "field": "_fname"}]
    created = await api.post(
        SI, json=body(url(files, "/people.json"), schedule, columns=columns, run_now=True, format="auto")
    )
    assert created.status_code == 201, created.text
    herald.runtime.drain()
    herald.tick()
    assert await emails(api, herald) == {"cid@example.org", "dee@example.org"}
    card = (await api.get(f"{SI}/{created.json()['import_id']}")).json()
    assert card["upcoming"][0] == "2026-03-06T07:30:00+00:00"  # the plan goes on after the immediate run


async def test_a_refused_address_or_a_failed_fetch_is_a_failed_run_and_the_schedule_goes_on(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, files: _Files
) -> None:
    metadata = await api.post(
        SI,
        json=body(
            "http://169.254.169.254/latest/meta-data", {"kind": "daily", "time": "10:00:00"}, run_now=True
        ),
    )
    missing = await api.post(
        SI, json=body(url(files, "/gone.csv"), {"kind": "daily", "time": "10:00:00"}, run_now=True)
    )
    herald.runtime.drain()
    herald.tick()
    herald.runtime.drain()
    for created, reason in ((metadata, "refused"), (missing, "HTTP 404")):
        card = (await api.get(f"{SI}/{created.json()['import_id']}")).json()
        [run] = card["runs"]
        assert reason in run["failed"], run
        assert run["job"] is None
        assert card["upcoming"][0] == "2026-03-02T10:00:00+00:00"
    assert files.hits == ["/gone.csv"]
    assert await emails(api, herald) == set()


async def test_a_deactivated_import_does_not_run_and_bad_settings_are_refused_at_their_field(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, files: _Files
) -> None:
    created = await api.post(SI, json=body(url(files, "/people.csv"), {"kind": "daily", "time": "10:00:00"}))
    import_id = created.json()["import_id"]
    assert (await api.post(f"{SI}/{import_id}/deactivate")).status_code == 200
    herald.runtime.drain()
    clock.advance(timedelta(hours=2))
    herald.tick()
    assert files.hits == []
    assert (await api.get(SI)).json()["scheduled_imports"][0]["active"] is False
    cases = [
        (
            body(url(files, "/x"), {"kind": "daily", "time": "10:00:00", "profile_timezone": True}),
            "schedule.profile_timezone",
        ),
        (
            body(
                url(files, "/x"),
                {"kind": "daily", "time": "10:00:00"},
                columns=[{"column": "a", "field": "nope"}],
            ),
            "columns.0.field",
        ),
        (body("ftp://example.org/x", {"kind": "daily", "time": "10:00:00"}), "url"),
        (body(url(files, "/x"), {"kind": "once", "date": "2020-01-01", "time": "10:00:00"}), "schedule"),
        (
            {**body(url(files, "/x"), {"kind": "daily", "time": "10:00:00"}), "database_id": "404"},
            "database_id",
        ),
    ]
    for bad, path in cases:
        response = await api.post(SI, json=bad)
        assert response.status_code in (404, 422), response.text
        assert error_of(response)["path"].startswith(path), response.text
