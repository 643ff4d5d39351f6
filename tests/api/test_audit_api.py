"""The audit log through HTTP: read from the log's metadata, filtered by user, object, action and time."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import DB, customers

START = "2026-03-02T09:00:00Z"


async def a_user(api: httpx.AsyncClient, herald: Herald) -> tuple[str, dict[str, str]]:
    """A user who may edit databases everywhere, logged in; (user id, their headers)."""
    role = await api.post(
        "/api/v1/roles", json={"name": "Editor", "groups": ["main"], "rules": {"database": ["edit"]}}
    )
    herald.runtime.drain()
    user = await api.post(
        "/api/v1/users",
        json={
            "login": "ann",
            "password": "correct horse",
            "roles": [role.json()["role_id"]],
            "groups": ["main"],
        },
    )
    herald.runtime.drain()
    token = (await api.post("/api/v1/login", json={"login": "ann", "password": "correct horse"})).json()[
        "token"
    ]
    herald.runtime.drain()
    return user.json()["user_id"], {"Authorization": f"Bearer {token}"}


async def test_the_audit_log_names_who_did_what_to_which_object_from_where(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    customers(herald)
    user_id, headers = await a_user(api, herald)
    clock.advance(timedelta(hours=1))
    field = {"name": "plan", "title": "Plan", "type": "string"}
    assert (await api.post(f"/api/v1/databases/{DB}/fields", json=field, headers=headers)).status_code == 201
    await api.post(f"/api/v1/databases/{DB}/profiles", json={"email": "a@example.org"}, headers=headers)
    herald.runtime.drain()

    mine = (await api.get("/api/v1/audit", params={"user_id": user_id})).json()["entries"]
    actions = [(e["action"], e["object"]["kind"], e["object"]["id"]) for e in mine]
    assert ("CustomFieldAdded", "database", DB) in actions
    assert all(e["object"]["kind"] != "profile" for e in mine)  # profiles are data, not audit objects
    added = next(e for e in mine if e["action"] == "CustomFieldAdded")
    assert added["user"] == {"user_id": user_id, "login": "ann"}
    assert added["ip"] and added["details"]["token_id"] and added["source"] == "api"
    assert added["at"] >= "2026-03-02T10:00"
    # the admin's own actions (the role, the user) are there too, and filters combine
    by_admin = (await api.get("/api/v1/audit", params={"actor": "admin", "object_kind": "user"})).json()[
        "entries"
    ]
    assert [(e["action"], e["object"]["id"]) for e in by_admin] == [
        ("UserSaved", user_id),
        ("UserPasswordSet", user_id),
    ]
    logins = (await api.get("/api/v1/audit", params={"action": "UserLoggedIn"})).json()["entries"]
    assert [e["actor"] for e in logins] == [f"user:{user_id}"]
    early = (await api.get("/api/v1/audit", params={"end": "2026-03-02T09:30:00Z"})).json()["entries"]
    assert early and all(e["at"] < "2026-03-02T09:30" for e in early)
    assert "CustomFieldAdded" not in [e["action"] for e in early]
    exported = await api.get("/api/v1/audit", params={"user_id": user_id, "format": "csv"})
    header, *rows = csv.reader(io.StringIO(exported.content.decode("utf-8-sig")))
    assert header[:5] == ["at", "actor", "login", "ip", "action"] and any(
        r[4] == "CustomFieldAdded" for r in rows
    )
    # entries past the retention (90 days) go at the next tick; the log keeps everything
    clock.advance(timedelta(days=91))
    herald.tick()
    assert (await api.get("/api/v1/audit")).json()["entries"] == []
    assert any(e.type == "CustomFieldAdded" for e in herald.store.read_all())


async def test_timers_jobs_and_processors_name_themselves(api: httpx.AsyncClient, herald: Herald) -> None:
    customers(herald)
    started = await api.post(
        f"/api/v1/databases/{DB}/exports", json={"source": {"kind": "database", "id": DB}}
    )
    herald.runtime.drain()
    job_id = started.json()["job_id"]
    entries = (await api.get("/api/v1/audit", params={"object_kind": "job", "object_id": job_id})).json()[
        "entries"
    ]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("JobStarted", "admin"),
        ("JobCompleted", "admin"),
    ]
    assert entries[1]["source"] == "job:export" and entries[1]["details"]["job_id"] == job_id


def test_the_audit_reads_every_object_event_and_none_of_the_profiles_data(herald: Herald) -> None:
    # the runtime reads a range only for the types its consumers name: the audit's leave out the bulk
    wanted = herald.projections.audit.consumes.types
    assert {"CustomFieldAdded", "JobStarted", "UserSaved", "CampaignCreated", "ScenarioPublished"} <= wanted
    data = {
        "ProfileFieldsUpdated",
        "ActivityTracked",
        "MessageDelivered",
        "UniqueValueClaimed",
        "ScenarioNodeEntered",
    }
    assert not data & wanted
