"""API tokens and roles through HTTP, and reading the event log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from herald.api.app import create_app
from herald.api.wiring import Herald
from tests.builders import DB, create_profile, customers, error_of
from tests.conftest import ADMIN_TOKEN

TOKENS = "/api/v1/tokens"
PROFILES = f"/api/v1/databases/{DB}/profiles"
TRACK = "/api/v1/track/batch"


@pytest.fixture
async def bare(herald: Herald) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no token unless a request gives one."""
    transport = httpx.ASGITransport(app=create_app(herald, run_processors=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _issue(
    api: httpx.AsyncClient, herald: Herald, role: str, name: str | None = None
) -> dict[str, str]:
    response = await api.post(TOKENS, json={"name": name or f"{role} token", "role": role})
    assert response.status_code == 201, response.text
    herald.runtime.drain()  # authentication reads the tokens projection
    body: dict[str, str] = response.json()
    return body


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    ],
    ids=["none", "empty", "basic", "unknown", "admin-prefix"],
)
async def test_requests_without_a_valid_token_are_401(
    bare: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await bare.get("/api/v1/events", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["path"] == "authorization"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_health_needs_no_token_and_the_admin_token_works(bare: httpx.AsyncClient) -> None:
    assert (await bare.get("/api/v1/health")).status_code == 200
    assert (await bare.get("/api/v1/events", headers=_bearer(ADMIN_TOKEN))).status_code == 200
    assert (
        await bare.get("/api/v1/events", headers={"authorization": f"bearer {ADMIN_TOKEN}"})
    ).status_code == 200


async def test_a_read_token_reads_but_cannot_write(
    api: httpx.AsyncClient, bare: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    profile_id = await create_profile(api, {"email": "ann@example.org"})
    herald.runtime.drain()
    read = _bearer((await _issue(api, herald, "read"))["token"])
    assert (await bare.get(f"/api/v1/profiles/{profile_id}", headers=read)).status_code == 200
    assert (await bare.get(PROFILES, headers=read)).status_code == 200
    assert (await bare.get("/api/v1/processors", headers=read)).status_code == 200
    for method, url, body in [
        ("POST", PROFILES, {"email": "bob@example.org"}),
        ("PATCH", f"/api/v1/profiles/{profile_id}", {"fields": {"age": 1}}),
        ("DELETE", f"/api/v1/profiles/{profile_id}", None),
        ("POST", TRACK, {"database_id": DB, "events": []}),
        ("POST", TOKENS, {"name": "x", "role": "admin"}),
        ("GET", TOKENS, None),
    ]:
        response = await bare.request(method, url, json=body, headers=read)
        assert response.status_code == 403, (method, url)
        assert "read" in error_of(response)["reason"]


async def test_a_track_token_can_only_post_tracking(
    api: httpx.AsyncClient, bare: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    track = _bearer((await _issue(api, herald, "track"))["token"])
    posted = await bare.post(
        TRACK, json={"database_id": DB, "events": [{"event": "x", "anonymous_id": "a"}]}, headers=track
    )
    assert posted.status_code == 200
    segment = await bare.post(
        "/api/v1/track/segment/track",
        params={"database_id": DB},
        json={"event": "x", "anonymousId": "a"},
        headers=track,
    )
    assert segment.status_code == 200
    assert (await bare.get("/api/v1/processors", headers=track)).status_code == 403
    assert (await bare.get(PROFILES, headers=track)).status_code == 403
    assert (await bare.post(PROFILES, json={"email": "a@example.org"}, headers=track)).status_code == 403


async def test_a_write_token_writes_and_tracks_but_cannot_manage_tokens(
    api: httpx.AsyncClient, bare: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    write = _bearer((await _issue(api, herald, "write"))["token"])
    created = await bare.post(PROFILES, json={"email": "ann@example.org"}, headers=write)
    assert created.status_code == 201
    herald.runtime.drain()
    history = await bare.get(f"/api/v1/profiles/{created.json()['profile_id']}/history", headers=write)
    assert history.json()["events"][0]["metadata"]["actor"].startswith("token:")
    assert (await bare.post(TRACK, json={"database_id": DB, "events": []}, headers=write)).status_code == 200
    assert (await bare.get(TOKENS, headers=write)).status_code == 403


async def test_an_issued_admin_token_manages_tokens(
    api: httpx.AsyncClient, bare: httpx.AsyncClient, herald: Herald
) -> None:
    admin = _bearer((await _issue(api, herald, "admin"))["token"])
    assert (await bare.post(TOKENS, json={"name": "n", "role": "read"}, headers=admin)).status_code == 201


async def test_a_revoked_token_is_401(
    api: httpx.AsyncClient, bare: httpx.AsyncClient, herald: Herald
) -> None:
    issued = await _issue(api, herald, "write")
    headers = _bearer(issued["token"])
    assert (await bare.get("/api/v1/processors", headers=headers)).status_code == 200
    revoked = await api.delete(f"{TOKENS}/{issued['token_id']}")
    assert revoked.status_code == 200 and len(revoked.json()["event_ids"]) == 1
    # Refused at once, before the tokens projection has caught up with the revocation.
    assert (await bare.get("/api/v1/processors", headers=headers)).status_code == 401
    herald.runtime.drain()
    response = await bare.get("/api/v1/processors", headers=headers)
    assert response.status_code == 401
    again = await api.delete(f"{TOKENS}/{issued['token_id']}")
    assert again.status_code == 200 and again.json()["event_ids"] == []
    assert (await api.delete(f"{TOKENS}/nope")).status_code == 404


async def test_tokens_are_listed_without_secrets_and_stored_only_hashed(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    read = await _issue(api, herald, "read", "dashboard")
    track = await _issue(api, herald, "track", "site")
    await api.delete(f"{TOKENS}/{track['token_id']}")
    herald.runtime.drain()
    listed = (await api.get(TOKENS)).json()["tokens"]
    assert {(t["token_id"], t["name"], t["role"], t["revoked"]) for t in listed} == {
        (read["token_id"], "dashboard", "read", False),
        (track["token_id"], "site", "track", True),
    }
    for token in listed:
        assert set(token) == {"token_id", "name", "role", "revoked", "issued_at"}
    everything = (await api.get("/api/v1/events", params={"limit": 10_000})).text + str(listed)
    assert read["token"] not in everything and track["token"] not in everything
    assert read["token"].startswith("hrld_") and read["token"] != track["token"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "role": "root"},
        {"name": "", "role": "read"},
        {"role": "read"},
        {"name": "   ", "role": "read"},
    ],
    ids=["unknown-role", "empty-name", "no-name", "blank-name"],
)
async def test_issuing_refuses_bad_input(api: httpx.AsyncClient, body: dict[str, str]) -> None:
    response = await api.post(TOKENS, json=body)
    assert response.status_code == 422


# --- the log -----------------------------------------------------------------------------------


async def test_the_log_pages_in_global_order(api: httpx.AsyncClient, herald: Herald) -> None:
    customers(herald)
    for n in range(4):
        await create_profile(api, {"email": f"p{n}@example.org"})
    head = herald.store.head_position()
    everything = (await api.get("/api/v1/events", params={"limit": 1000})).json()
    assert everything["log_head"] == head
    assert [e["position"] for e in everything["events"]] == list(range(1, head + 1))
    seen: list[int] = []
    after = 0
    while True:
        page = (await api.get("/api/v1/events", params={"after": after, "limit": 3})).json()
        if not page["events"]:
            assert page["next_after"] == after
            break
        seen += [e["position"] for e in page["events"]]
        after = page["next_after"]
    assert seen == list(range(1, head + 1))
    first = everything["events"][0]
    assert set(first) == {
        "event_id",
        "stream",
        "version",
        "position",
        "type",
        "schema_version",
        "occurred_at",
        "recorded_at",
        "data",
        "metadata",
    }
    assert (await api.get("/api/v1/events", params={"limit": 0})).status_code == 422
    assert (await api.get("/api/v1/events", params={"after": -1})).status_code == 422


async def test_one_stream_reads_in_version_order(api: httpx.AsyncClient, herald: Herald) -> None:
    customers(herald)
    profile_id = await create_profile(api, {"email": "ann@example.org"})
    for age in (1, 2, 3):
        await api.patch(f"/api/v1/profiles/{profile_id}", json={"fields": {"age": age}})
    stream = f"profile-{profile_id}"
    whole = (await api.get(f"/api/v1/streams/{stream}")).json()
    assert whole["stream"] == stream and whole["version"] == 4
    assert [e["version"] for e in whole["events"]] == [1, 2, 3, 4]
    assert [e["type"] for e in whole["events"]] == ["ProfileCreated"] + ["ProfileFieldsUpdated"] * 3
    part = (await api.get(f"/api/v1/streams/{stream}", params={"from_version": 2, "limit": 2})).json()
    assert [e["version"] for e in part["events"]] == [2, 3]
    empty = (await api.get("/api/v1/streams/profile-nobody")).json()
    assert empty == {"stream": "profile-nobody", "version": 0, "events": []}
    assert (await api.get(f"/api/v1/streams/{stream}", params={"from_version": 0})).status_code == 422
