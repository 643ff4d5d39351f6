"""Tracked events through HTTP: the native batch, Segment's identify/track, and the profile history."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from tests.builders import (
    DB,
    card,
    create_database,
    create_profile,
    create_resource,
    customers,
    email_subscription,
    error_of,
    log_size,
)

BATCH = "/api/v1/track/batch"
SEGMENT = "/api/v1/track/segment"
P = "/api/v1/profiles"


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)


@pytest.fixture
async def ann(api: httpx.AsyncClient, herald: Herald) -> str:
    profile_id = await create_profile(
        api, {"email": "ann@example.org", "crm_id": "c-1", "phones": "+79123456789"}
    )
    herald.runtime.drain()  # tracking finds profiles through the lookup projection
    return profile_id


async def _track(api: httpx.AsyncClient, events: list[Any], database_id: str = DB) -> dict[str, Any]:
    response = await api.post(BATCH, json={"database_id": database_id, "events": events})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _history(
    api: httpx.AsyncClient, herald: Herald, profile_id: str, **params: Any
) -> list[dict[str, Any]]:
    herald.runtime.drain()
    response = await api.get(f"{P}/{profile_id}/history", params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _statuses(body: dict[str, Any]) -> list[str]:
    return [r["status"] for r in body["results"]]


# --- the native batch --------------------------------------------------------------------------


async def test_events_find_their_profile_by_any_match_field_and_join_its_history(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    body = await _track(
        api,
        [
            {"event": "viewed", "profile": {"email": "ANN@example.org"}, "properties": {"sku": "A1"}},
            {"event": "carted", "profile": {"profile_id": ann}},
            {"event": "paid", "profile": {"crm_id": "c-1"}, "at": "2026-03-01T10:00:00"},  # no offset: UTC
            {"event": "called", "profile": {"phone": "+7 912 345 67 89"}},
            {"event": "texted", "profile": {"Phones": "+79123456789"}},
            {"event": "opened", "profile": {"Profile_ID": ann}},
        ],
    )
    assert body["counts"] == {"accepted": 6, "duplicate": 0, "error": 0}
    assert {r["profile_id"] for r in body["results"]} == {ann}
    tracked = [e for e in await _history(api, herald, ann) if e["type"] == "ActivityTracked"]
    assert [e["data"]["name"] for e in tracked] == ["viewed", "carted", "paid", "called", "texted", "opened"]
    assert tracked[0]["data"]["properties"] == {"sku": "A1"}
    assert tracked[0]["stream"] == f"activity-{ann}"
    assert tracked[2]["occurred_at"].startswith("2026-03-01T10:00:00")
    assert tracked[0]["occurred_at"].startswith("2026-03-02T09:00:00")  # the clock's now
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in tracked]


async def test_an_email_finds_the_profile_that_owns_it_before_one_that_only_subscribes_it(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    create_resource(herald)
    subscriber = await create_profile(
        api, {"email": "bob@example.org", "subscriptions": [email_subscription("ann@example.org")]}
    )
    owner = await create_profile(api, {"email": "ann@example.org"})
    assert subscriber < owner  # so "the first profile the key finds" would be the wrong one
    herald.runtime.drain()
    body = await _track(api, [{"event": "x", "profile": {"email": "ann@example.org"}}])
    assert body["results"][0]["profile_id"] == owner


async def test_a_profile_id_of_another_database_is_not_found(api: httpx.AsyncClient, herald: Herald) -> None:
    create_database(herald, "2")
    other = await create_profile(api, {"email": "ann@example.org"}, database_id="2")
    body = await _track(api, [{"event": "x", "profile": {"profile_id": other}}])
    assert body["results"][0]["error"]["status"] == 404
    fresh = await create_profile(api, {"email": "bob@example.org"})
    body = await _track(api, [{"event": "x", "profile": {"profile_id": fresh}}])  # no drain needed
    assert body["results"][0]["profile_id"] == fresh


async def test_a_resend_with_the_client_event_id_is_a_duplicate_and_stores_nothing(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    events = [
        {"event": "viewed", "profile": {"email": "ann@example.org"}, "event_id": "e-1"},
        {"event": "viewed", "anonymous_id": "anon-1", "event_id": "e-2"},
    ]
    first = await _track(api, events)
    assert _statuses(first) == ["accepted", "accepted"]
    log = (await api.get("/api/v1/events")).json()
    again = await _track(api, [*events, {"event": "viewed", "anonymous_id": "anon-1", "event_id": "e-3"}])
    assert _statuses(again) == ["duplicate", "duplicate", "accepted"]
    assert again["counts"] == {"accepted": 1, "duplicate": 2, "error": 0}
    assert [r["event_id"] for r in again["results"][:2]] == [r["event_id"] for r in first["results"]]
    after = (await api.get("/api/v1/events", params={"after": log["log_head"]})).json()
    assert [e["data"]["client_event_id"] for e in after["events"]] == ["e-3"]


async def test_one_client_event_id_twice_in_one_batch_is_stored_once(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    before = log_size(herald)
    body = await _track(
        api,
        [
            {"event": "viewed", "profile": {"email": "ann@example.org"}, "event_id": "same"},
            {"event": "viewed", "profile": {"email": "ann@example.org"}, "event_id": "same"},
            {"event": "viewed", "anonymous_id": "anon-1", "event_id": "same"},
        ],
    )
    assert _statuses(body) == ["accepted", "duplicate", "duplicate"]
    assert len({r["event_id"] for r in body["results"]}) == 1
    assert log_size(herald) == before + 1


async def test_each_event_keeps_its_own_time_and_offset_and_the_rest_share_the_time_received(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    log = (await api.get("/api/v1/events")).json()
    given = ["2026-01-01T10:00:00+01:00", "2026-01-01T09:00:00Z", "2026-01-01T09:00:00", None, None]
    events = [
        {"event": "viewed", "profile": {"email": "ann@example.org"}, **({"at": at} if at else {})}
        for at in given
    ]
    assert _statuses(await _track(api, events)) == ["accepted"] * 5
    after = (await api.get("/api/v1/events", params={"after": log["log_head"]})).json()["events"]
    stored = [e["data"]["at"] for e in after]
    # the same instant in two offsets is written as each was given; a time without one is UTC
    assert stored[:3] == [
        "2026-01-01T10:00:00+01:00",
        "2026-01-01T09:00:00+00:00",
        "2026-01-01T09:00:00+00:00",
    ]
    assert stored[3] == stored[4] == after[3]["recorded_at"]


async def test_anonymous_events_wait_in_their_own_stream(api: httpx.AsyncClient, herald: Herald) -> None:
    body = await _track(api, [{"event": "landed", "anonymous_id": "anon-9", "context": {"page": "/"}}])
    [result] = body["results"]
    assert result == {
        "index": 0,
        "status": "accepted",
        "event_id": result["event_id"],
        "anonymous_id": "anon-9",
    }
    stream = (await api.get("/api/v1/streams/anonymous-anon-9")).json()
    assert [e["data"]["name"] for e in stream["events"]] == ["landed"]
    assert stream["events"][0]["data"]["context"] == {"page": "/"}


async def test_an_unknown_profile_with_an_anonymous_id_stays_with_the_visitor(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    body = await _track(
        api, [{"event": "x", "profile": {"email": "new@example.org"}, "anonymous_id": "anon-3"}]
    )
    assert body["results"][0]["status"] == "accepted"
    assert body["results"][0]["anonymous_id"] == "anon-3"
    unknown_id = await _track(
        api, [{"event": "x", "profile": {"profile_id": "nobody"}, "anonymous_id": "anon-3"}]
    )
    assert unknown_id["results"][0]["error"]["path"] == "events.0.profile.profile_id"


async def test_each_bad_event_is_reported_at_its_path_and_the_rest_are_stored(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    before = log_size(herald)
    body = await _track(
        api,
        [
            {"event": "ok", "profile": {"email": "ann@example.org"}},
            {"profile": {"email": "ann@example.org"}},
            {"event": "x", "profile": {"email": "nobody@example.org"}},
            {"event": "x"},
            {"event": "x", "profile": {"email": "ann@example.org", "crm_id": "c-1"}},
            {"event": "x", "profile": {"email": "broken@"}},
            {"event": "x", "profile": {"profile_id": "nobody"}},
            {"event": "x", "anonymous_id": "a", "colour": "red"},
            {"event": "x", "anonymous_id": "a", "at": "yesterday"},
            "not an object",
            {"event": "x" * 201, "anonymous_id": "a"},
            {"event": "x", "profile": {"age": 3}},
            {"event": "ok", "anonymous_id": "a"},
        ],
    )
    assert _statuses(body) == ["accepted", *["error"] * 11, "accepted"]
    errors = {r["index"]: r["error"] for r in body["results"] if r["status"] == "error"}
    assert {i: e["path"] for i, e in errors.items()} == {
        1: "events.1.event",
        2: "events.2.profile",
        3: "events.3.profile",
        4: "events.4.profile",
        5: "events.5.profile.email",
        6: "events.6.profile.profile_id",
        7: "events.7.colour",
        8: "events.8.at",
        9: "events.9",
        10: "events.10.event",
        11: "events.11.profile.age",
    }
    assert errors[2]["status"] == 404 and errors[6]["status"] == 404
    assert errors[1]["status"] == 422 and errors[5]["status"] == 422
    assert all(e["reason"] for e in errors.values())
    assert log_size(herald) == before + 2


@pytest.mark.parametrize(
    ("content", "path"),
    [
        (b"{not json", "body"),
        (b"[]", "database_id"),
        (b'{"events": []}', "database_id"),
        (b'{"database_id": "1", "events": {}}', "events"),
        (b'{"database_id": "1"}', "events"),
    ],
    ids=["not-json", "not-an-object", "no-database", "events-not-a-list", "no-events"],
)
async def test_a_malformed_body_is_422(
    api: httpx.AsyncClient, herald: Herald, content: bytes, path: str
) -> None:
    response = await api.post(BATCH, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert error_of(response)["path"] == path


async def test_an_oversized_batch_is_422_and_stores_nothing(api: httpx.AsyncClient, herald: Herald) -> None:
    at_the_limit = await _track(api, [{"anonymous_id": "a"}] * 10_000)
    assert at_the_limit["counts"]["error"] == 10_000
    before = log_size(herald)
    events = [{"event": "x", "anonymous_id": "a"}] * 10_001
    response = await api.post(BATCH, json={"database_id": DB, "events": events})
    assert response.status_code == 422
    assert error_of(response)["path"] == "events"
    assert log_size(herald) == before


async def test_an_unknown_database_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post(
        BATCH, json={"database_id": "404", "events": [{"event": "x", "anonymous_id": "a"}]}
    )
    assert response.status_code == 404


# --- Segment -----------------------------------------------------------------------------------


async def test_identify_creates_the_profile_from_traits_and_links_the_anonymous_id(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    early = await _track(api, [{"event": "landed", "anonymous_id": "anon-1"}])
    identify = await api.post(
        f"{SEGMENT}/identify",
        params={"database_id": DB},
        json={
            "userId": "ann@example.org",
            "anonymousId": "anon-1",
            "traits": {"first_name": "Ann", "age": 30, "createdAt": "2026-01-05", "plan": "pro"},
            "messageId": "m-1",
        },
    )
    assert identify.status_code == 200, identify.text
    [result] = identify.json()["results"]
    assert result["status"] == "created"
    assert result["ignored_traits"] == ["createdAt", "plan"]  # not fields of this database
    profile_id = result["profile_id"]
    shown = await card(api, herald, profile_id)
    assert shown["email"] == "ann@example.org"
    assert shown["fields"]["_fname"] == "Ann" and shown["fields"]["age"] == 30
    assert shown["source"] == "segment"

    update = await api.post(
        f"{SEGMENT}/identify",
        params={"database_id": DB},
        json={"userId": "ann@example.org", "traits": {"age": 31}},
    )
    assert update.json()["results"][0] == {"index": 0, "status": "updated", "profile_id": profile_id}

    by_user = await api.post(
        f"{SEGMENT}/track",
        params={"database_id": DB},
        json={
            "userId": "ann@example.org",
            "event": "Order Completed",
            "properties": {"total": 10},
            "messageId": "m-2",
        },
    )
    assert by_user.json()["results"][0]["profile_id"] == profile_id
    by_anonymous = await api.post(
        f"{SEGMENT}/track",
        params={"database_id": DB},
        json={"anonymousId": "anon-1", "event": "Product Viewed"},
    )
    assert by_anonymous.json()["results"][0]["profile_id"] == profile_id

    history = await _history(api, herald, profile_id)
    names = [e["data"].get("name") for e in history if e["type"] == "ActivityTracked"]
    assert names == ["landed", "Order Completed", "Product Viewed"]  # the anonymous visit joined it
    assert early["results"][0]["event_id"] in {e["event_id"] for e in history}
    assert any(e["type"] == "AnonymousIdLinked" for e in history)


async def test_a_segment_batch_reports_each_message_at_its_own_index(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    response = await api.post(
        f"{SEGMENT}/batch",
        params={"database_id": DB},
        json={
            "batch": [
                {"type": "identify", "userId": "bob@example.org", "traits": {"age": 5}},
                {"type": "track", "userId": "ann@example.org", "event": "viewed", "messageId": "m-1"},
                {"type": "identify", "userId": "carol@example.org", "traits": {"age": "old"}},
                {"type": "track", "userId": "ann@example.org"},
                {"type": "page", "userId": "ann@example.org"},
                {"type": "track", "userId": "nobody@example.org", "event": "x"},
                {"type": "track", "userId": "ann@example.org", "event": "viewed", "messageId": "m-1"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == list(range(7))
    assert _statuses(body) == ["created", "accepted", "error", "error", "error", "error", "duplicate"]
    paths = {r["index"]: r["error"]["path"] for r in body["results"] if r["status"] == "error"}
    assert paths == {2: "batch.2.traits.age", 3: "batch.3.event", 4: "batch.4.type", 5: "batch.5.profile"}
    assert body["counts"] == {
        "accepted": 1,
        "duplicate": 1,
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "error": 4,
    }


async def test_tracks_in_the_batch_of_their_identify_find_the_new_profile(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    response = await api.post(
        f"{SEGMENT}/batch",
        params={"database_id": DB},
        json={
            "batch": [
                {"type": "track", "anonymousId": "anon-5", "event": "landed"},
                {"type": "identify", "userId": "dan@example.org", "anonymousId": "anon-5"},
                {"type": "track", "userId": "dan@example.org", "event": "signed up"},
                {"type": "track", "anonymousId": "anon-5", "event": "browsed"},
                {"type": "track", "event": "lost"},
            ]
        },
    )
    results = response.json()["results"]
    profile_id = results[1]["profile_id"]
    assert [r.get("profile_id") for r in results[:4]] == [profile_id] * 4
    assert results[4]["status"] == "error" and results[4]["error"]["path"] == "batch.4.profile"
    names = [
        e["data"]["name"] for e in await _history(api, herald, profile_id) if e["type"] == "ActivityTracked"
    ]
    assert names == ["landed", "signed up", "browsed"]


async def test_identify_by_a_unique_custom_field(api: httpx.AsyncClient, herald: Herald, ann: str) -> None:
    response = await api.post(
        f"{SEGMENT}/identify",
        params={"database_id": DB, "user_id_field": "crm_id"},
        json={"userId": "c-1", "traits": {"age": 44}},
    )
    assert response.json()["results"][0] == {"index": 0, "status": "updated", "profile_id": ann}
    track = await api.post(
        f"{SEGMENT}/track",
        params={"database_id": DB, "user_id_field": "crm_id"},
        json={"userId": "c-1", "event": "paid"},
    )
    assert track.json()["results"][0]["profile_id"] == ann


async def test_segment_needs_the_database_and_a_json_body(api: httpx.AsyncClient) -> None:
    assert (await api.post(f"{SEGMENT}/track", json={"event": "x", "anonymousId": "a"})).status_code == 422
    not_json = await api.post(f"{SEGMENT}/batch", params={"database_id": DB}, content=b"nope")
    assert not_json.status_code == 422
    too_many = await api.post(
        f"{SEGMENT}/batch",
        params={"database_id": DB},
        json={"batch": [{"type": "track", "event": "x", "anonymousId": "a"}] * 10_001},
    )
    assert too_many.status_code == 422 and error_of(too_many)["path"] == "batch"


# --- history paging across the profile's own and tracked events --------------------------------


async def test_history_pages_through_profile_and_tracked_events_in_log_order(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    await _track(api, [{"event": "one", "profile": {"email": "ann@example.org"}}])
    await api.patch(f"{P}/{ann}", json={"fields": {"age": 3}})
    await _track(
        api,
        [
            {"event": "two", "profile": {"email": "ann@example.org"}},
            {"event": "three", "profile": {"email": "ann@example.org"}},
        ],
    )
    full = await _history(api, herald, ann)
    assert [e["type"] for e in full] == [
        "ProfileCreated",
        "ActivityTracked",
        "ProfileFieldsUpdated",
        "ActivityTracked",
        "ActivityTracked",
    ]
    positions = [e["position"] for e in full]
    assert positions == sorted(positions)
    seen: list[str] = []
    after = 0
    while True:
        page = (await api.get(f"{P}/{ann}/history", params={"after": after, "limit": 2})).json()
        seen += [e["event_id"] for e in page["events"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [e["event_id"] for e in full]


# --- the batch's two decoders agree --------------------------------------------------------

# Each a tracked event some client could send: valid ones, and ones that break a rule of
# `TrackedEventIn`, the time in the spellings clients use.
DECODER_CASES: list[Any] = [
    {"event": "Viewed", "profile": {"email": "a@x.io"}},
    {"event": "Viewed", "anonymous_id": "v-1", "properties": {"n": 1, "deep": {"x": [1, 2]}}},
    {"event": "Viewed", "anonymous_id": "v-1", "context": {"ip": "203.0.113.7"}, "event_id": "m-1"},
    *(
        {"event": "Viewed", "anonymous_id": "v", "at": at}
        for at in (
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00+03:00",
            "2026-03-01T10:00:00",
            "2026-03-01T10:00:00.123456Z",
            "2026-03-01T10:00:00.123456789Z",
            "2026-03-01t10:00:00z",
            "2026-03-01 10:00:00Z",
            "2026-03-01",
            "2026-02-30T10:00:00Z",
            1772359200,
            "",
            None,
        )
    ),
    {"event": "", "anonymous_id": "v"},
    {"event": "x" * 201, "anonymous_id": "v"},
    {"event": "x" * 200, "anonymous_id": "v"},
    {"event": "Viewed", "anonymous_id": ""},
    {"event": "Viewed", "anonymous_id": "v", "event_id": ""},
    {"event": "Viewed", "anonymous_id": "v", "event_id": "e" * 201},
    {"event": "Viewed", "anonymous_id": "v", "event_id": 7},
    {"event": "Viewed", "anonymous_id": "v", "properties": None},
    {"event": "Viewed", "anonymous_id": "v", "properties": []},
    {"event": "Viewed", "profile": None, "anonymous_id": "v"},
    {"event": "Viewed", "profile": "a@x.io"},
    {"event": "Viewed", "anonymous_id": "v", "extra": 1},
    {"event": 5, "anonymous_id": "v"},
    {"anonymous_id": "v"},
]


@pytest.mark.parametrize("event", DECODER_CASES)
def test_the_fast_decoder_accepts_an_event_only_as_the_row_validator_reads_it(event: Any) -> None:
    import msgspec

    from herald.api.routes.tracking import _ROW, WireBatch

    try:
        (fast,) = msgspec.convert({"database_id": DB, "events": [event]}, WireBatch).events
        at = fast.at
    except (msgspec.ValidationError, ValueError):
        return  # refused: the body is read row by row, as before
    row = _ROW.validate_python(event)  # raises if msgspec accepted what pydantic refuses
    assert (fast.name, fast.profile, fast.anonymous_id, fast.properties, fast.context, fast.event_id) == (
        row.event,
        row.profile,
        row.anonymous_id,
        row.properties,
        row.context,
        row.event_id,
    )
    assert at == row.at
    assert (at and at.isoformat()) == (row.at and row.at.isoformat())
