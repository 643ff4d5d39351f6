"""Users through HTTP: roles and groups, login with argon2 passwords, tokens that carry a user's rights."""

from __future__ import annotations

from datetime import timedelta

import httpx

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import DB, customers, error_of

SALES_EDITOR = {"name": "Sales editor", "groups": ["sales"], "rules": {"database": ["view", "read", "edit"]}}


async def setup_sales(api: httpx.AsyncClient, herald: Herald) -> tuple[str, str]:
    """A group `sales` holding database 1, a role editing databases there; (role id, user id)."""
    customers(herald)
    customers(herald, "2")
    assert (await api.put("/api/v1/groups/sales", json={"name": "Sales"})).status_code == 200
    herald.runtime.drain()
    role = await api.post("/api/v1/roles", json=SALES_EDITOR)
    assert role.status_code == 201, role.text
    await api.put(f"/api/v1/access/database/{DB}/groups", json={"groups": ["sales"]})
    herald.runtime.drain()
    user = await api.post(
        "/api/v1/users",
        json={
            "login": "ann@acme",
            "first_name": "Ann",
            "password": "correct horse",
            "roles": [role.json()["role_id"]],
            "groups": ["sales"],
        },
    )
    assert user.status_code == 201, user.text
    herald.runtime.drain()
    return role.json()["role_id"], user.json()["user_id"]


async def login(api: httpx.AsyncClient, herald: Herald, password: str = "correct horse") -> httpx.Response:
    response = await api.post(
        "/api/v1/login", json={"login": "ANN@acme", "password": password}, headers={"Authorization": ""}
    )
    herald.runtime.drain()
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_user_logs_in_and_acts_within_their_role_and_groups(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    _, user_id = await setup_sales(api, herald)
    logged = await login(api, herald)
    assert logged.status_code == 200, logged.text
    me = bearer(logged.json()["token"])
    assert (await api.get(f"/api/v1/databases/{DB}/profiles", headers=me)).status_code == 200
    created = await api.post(f"/api/v1/databases/{DB}/profiles", json={"email": "a@example.org"}, headers=me)
    assert created.status_code == 201
    # database 2 is only in main, which the user is not in
    denied = await api.get("/api/v1/databases/2/profiles", headers=me)
    assert denied.status_code == 403 and error_of(denied)["path"] == "authorization"
    assert (await api.get("/api/v1/segments", headers=me)).status_code == 403  # no right on segments
    assert (await api.get("/api/v1/users", headers=me)).status_code == 403  # settings are the master's
    # the events the user's requests wrote name the user, the address and the token
    event = next(e for e in herald.store.read_all() if e.type == "ProfileCreated")
    assert event.metadata["actor"] == f"user:{user_id}"
    assert event.metadata["token_id"] == logged.json()["token_id"] and "ip" in event.metadata
    card = (await api.get(f"/api/v1/users/{user_id}")).json()
    assert card["last_login"] is not None and "password" not in card and "password_hash" not in card


async def test_a_wrong_password_an_inactive_user_and_an_expired_token_are_refused(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    role_id, user_id = await setup_sales(api, herald)
    wrong = await login(api, herald, "wrong horse")
    assert wrong.status_code == 401
    assert (await api.post("/api/v1/login", json={"login": "nobody", "password": "x"})).status_code == 401
    token = (await login(api, herald)).json()["token"]
    clock.advance(timedelta(hours=13))
    expired = await api.get(f"/api/v1/databases/{DB}", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in error_of(expired)["reason"]
    fresh = (await login(api, herald)).json()["token"]
    profile = {"login": "ann@acme", "roles": [role_id], "groups": ["sales"], "active": False}
    assert (await api.put(f"/api/v1/users/{user_id}", json=profile)).status_code == 200
    herald.runtime.drain()
    assert (await api.get(f"/api/v1/databases/{DB}", headers=bearer(fresh))).status_code == 401
    assert (await login(api, herald)).status_code == 401


async def test_an_issued_token_belongs_to_its_user_and_may_narrow_their_rights(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    role_id, user_id = await setup_sales(api, herald)
    viewer = await api.post(
        "/api/v1/roles", json={"name": "Viewer", "groups": ["sales"], "rules": {"database": ["view"]}}
    )
    viewer_id = viewer.json()["role_id"]
    herald.runtime.drain()
    both = {"login": "ann@acme", "roles": [role_id, viewer_id], "groups": ["sales"]}
    await api.put(f"/api/v1/users/{user_id}", json=both)
    narrow = await api.post(
        "/api/v1/tokens", json={"name": "dashboard", "user_id": user_id, "roles": [viewer_id]}
    )
    assert narrow.status_code == 201, narrow.text
    herald.runtime.drain()
    token = bearer(narrow.json()["token"])
    assert (await api.get(f"/api/v1/databases/{DB}", headers=token)).status_code == 200
    assert (await api.get(f"/api/v1/databases/{DB}/profiles", headers=token)).status_code == 403
    # deleting the group moves the database back to main only: the user reaches it no more
    assert (await api.delete("/api/v1/groups/sales")).status_code == 200
    herald.runtime.drain()
    assert (await api.get(f"/api/v1/databases/{DB}", headers=token)).status_code == 403


async def test_bad_users_and_roles_are_refused_at_their_field(api: httpx.AsyncClient, herald: Herald) -> None:
    await setup_sales(api, herald)
    cases = [
        ("/api/v1/users", {"login": "ann@acme", "password": "longenough"}, 409, "login"),
        ("/api/v1/users", {"login": "bob", "roles": ["nope"]}, 404, "roles.0"),
        ("/api/v1/users", {"login": "bob", "password": "short"}, 422, "password"),
        (
            "/api/v1/roles",
            {"name": "x", "groups": ["sales"], "rules": {"campaign": ["read"]}},
            422,
            "rules.campaign",
        ),
        ("/api/v1/roles", {"name": "x", "groups": ["ghosts"], "rules": {}}, 404, "groups.0"),
    ]
    for path, body, status, where in cases:
        response = await api.post(path, json=body)
        assert response.status_code == status, (body, response.text)
        assert error_of(response)["path"] == where


async def test_an_object_a_user_creates_goes_into_their_current_group(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    await setup_sales(api, herald)
    me = bearer((await login(api, herald)).json()["token"])
    created = await api.post("/api/v1/databases", json={"name": "Leads"}, headers=me)
    assert created.status_code == 201, created.text
    herald.runtime.drain()
    database_id = created.json()["database_id"]
    groups = await api.get(f"/api/v1/access/database/{database_id}/groups")
    assert groups.json()["groups"] == ["main", "sales"]
    assert (await api.get(f"/api/v1/databases/{database_id}", headers=me)).status_code == 200


async def test_lists_show_a_user_only_the_objects_their_groups_see(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    await setup_sales(api, herald)  # database 1 is in sales; database 2 only in main
    for database_id in (DB, "2"):
        exported = await api.post(
            f"/api/v1/databases/{database_id}/exports",
            json={"source": {"kind": "database", "id": database_id}},
        )
        assert exported.status_code == 202, exported.text
    herald.runtime.drain()
    me = bearer((await login(api, herald)).json()["token"])

    databases = (await api.get("/api/v1/databases", headers=me)).json()["databases"]
    assert [d["database_id"] for d in databases] == [DB]
    jobs = (await api.get("/api/v1/jobs", headers=me)).json()["jobs"]
    assert {j["database_id"] for j in jobs} == {DB}
    assert (await api.get("/api/v1/databases/2", headers=me)).status_code == 403  # as the object itself
    everything = (await api.get("/api/v1/databases")).json()["databases"]  # the master sees all
    assert sorted(d["database_id"] for d in everything) == [DB, "2"]
