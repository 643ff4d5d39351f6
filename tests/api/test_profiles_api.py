"""Profiles through HTTP: create, upsert, the card, lookups, list, edits, statuses, delete, merge, history."""

from __future__ import annotations

import httpx
import pytest

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from herald.infra.ids import profile_md5_id, profile_xxh_id
from tests.builders import (
    DB,
    card,
    create_profile,
    create_resource,
    customers,
    email_subscription,
    error_of,
    log_size,
)

P = "/api/v1/profiles"
PROFILES = f"/api/v1/databases/{DB}/profiles"


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)
    create_resource(herald)


async def _lookup(api: httpx.AsyncClient, herald: Herald, by: str, value: str) -> list[str]:
    herald.runtime.drain()
    response = await api.get(f"{P}/lookup", params={"database_id": DB, "by": by, "value": value})
    assert response.status_code == 200, response.text
    return [c["profile_id"] for c in response.json()["profiles"]]


# --- create and the card -----------------------------------------------------------------------


async def test_a_created_profile_has_its_card_with_ids_fields_defaults_and_statuses(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    response = await api.post(
        PROFILES,
        json={
            "email": " Ann@Example.ORG ",
            "FirstName": "Ann",
            "phones": "+7 912 345-67-89",
            "age": "41",
            "crm_id": "c-1",
            "subscriptions": [email_subscription("ann@example.org")],
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"
    profile_id = response.json()["profile_id"]

    shown = await card(api, herald, profile_id)
    assert shown["profile_id"] == profile_id
    assert shown["database_id"] == DB
    assert shown["md5_id"] == profile_md5_id(profile_id) and len(shown["md5_id"]) == 32
    assert shown["xxh_id"] == profile_xxh_id(profile_id) and len(shown["xxh_id"]) == 16
    assert shown["email"] == "Ann@example.org"
    assert shown["fields"] == {
        "email": "Ann@example.org",
        "_fname": "Ann",
        "phones": ["+79123456789"],
        "age": 41,
        "crm_id": "c-1",
        "tier": "basic",  # the field's default
    }
    assert shown["global_status"] == "subscribed"
    assert shown["is_test"] is False
    assert shown["source"] == "api"
    assert shown["version"] == 2  # created, subscribed
    [subscription] = shown["subscriptions"]
    assert subscription["contact"] == "ann@example.org"
    assert subscription["status"] == "subscribed"
    assert subscription["priority"] == 0


async def test_a_profile_without_email_gets_the_placeholder(api: httpx.AsyncClient, herald: Herald) -> None:
    profile_id = await create_profile(api, {"_fname": "Bob"})
    assert (await card(api, herald, profile_id))["email"] == f"{profile_id}@localhost"


async def test_creating_a_second_profile_with_a_taken_email_is_409(api: httpx.AsyncClient) -> None:
    await create_profile(api, {"email": "ann@example.org"})
    response = await api.post(PROFILES, json={"email": "ANN@example.org"})
    assert response.status_code == 409
    assert error_of(response)["path"] == "email"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@example.org", "phones": "12"}, "phones"),
        ({"email": "a@example.org", "age": "forty"}, "age"),
        ({"email": "a@example.org", "age": True}, "age"),
        ({"email": "a@example.org", "tier": "platinum"}, "tier"),
        ({"email": "a@example.org", "shoe_size": 42}, "shoe_size"),
        (
            {"email": "a@example.org", "subscriptions": [email_subscription("a@example.org", "404")]},
            "subscriptions.0.resource_id",
        ),
        (
            {
                "email": "a@example.org",
                "subscriptions": [{"resource_id": "7", "channel": "viber", "phone": "+79123456789"}],
            },
            "subscriptions.0.channel",
        ),
        (
            {"email": "a@example.org", "subscriptions": [email_subscription("broken@")]},
            "subscriptions.0.email",
        ),
    ],
    ids=[
        "bad-email",
        "bad-phone",
        "int-text",
        "int-bool",
        "list-option",
        "unknown-field",
        "unknown-resource",
        "disabled-channel",
        "bad-subscription-email",
    ],
)
async def test_bad_input_on_create_is_refused_naming_the_field_and_writes_nothing(
    api: httpx.AsyncClient, herald: Herald, data: dict[str, object], path: str
) -> None:
    before = log_size(herald)
    response = await api.post(PROFILES, json=data)
    assert response.status_code in (404, 422), response.text
    error = error_of(response)
    assert path in error["path"], error
    assert error["reason"]
    assert log_size(herald) == before


async def test_create_needs_a_json_object_and_a_known_database(api: httpx.AsyncClient) -> None:
    assert (await api.post(PROFILES)).status_code == 422
    assert (await api.post(PROFILES, content=b"{nope")).status_code == 422
    assert (await api.post(PROFILES, json=[1, 2])).status_code == 422
    missing = await api.post("/api/v1/databases/404/profiles", json={"email": "a@example.org"})
    assert missing.status_code == 404
    assert error_of(missing)["path"] == "database_id"


async def test_an_unknown_profile_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{P}/nobody")
    assert response.status_code == 404
    assert error_of(response)["path"] == "profile_id"


# --- upsert ------------------------------------------------------------------------------------


async def test_upsert_creates_then_updates_then_reports_unchanged(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    url = f"{PROFILES}/upsert"
    first = await api.post(url, json={"data": {"email": "ann@example.org", "age": 30}})
    again = await api.post(url, json={"data": {"email": "ann@example.org", "age": 31}})
    same = await api.post(url, json={"data": {"email": "ann@example.org", "age": 31}})
    assert [r.json()["status"] for r in (first, again, same)] == ["created", "updated", "unchanged"]
    assert len({r.json()["profile_id"] for r in (first, again, same)}) == 1
    assert (await card(api, herald, first.json()["profile_id"]))["fields"]["age"] == 31


async def test_upsert_by_custom_field_and_update_only(api: httpx.AsyncClient) -> None:
    url = f"{PROFILES}/upsert"
    profile_id = await create_profile(api, {"email": "ann@example.org", "crm_id": "c-1"})
    by_crm = await api.post(
        url, json={"match": "custom", "field_name": "crm_id", "data": {"crm_id": "c-1", "age": 5}}
    )
    assert by_crm.json() == {"profile_id": profile_id, "status": "updated"}
    missing = await api.post(url, json={"mode": "update_only", "data": {"email": "nobody@example.org"}})
    assert missing.status_code == 404
    unknown_option = await api.post(url, json={"data": {}, "bogus": 1})
    assert unknown_option.status_code == 422
    assert error_of(unknown_option)["path"] == "bogus"


# --- lookups and the list ----------------------------------------------------------------------


async def test_lookup_by_email_phone_unique_field_and_id(api: httpx.AsyncClient, herald: Herald) -> None:
    ann = await create_profile(
        api,
        {
            "email": "Ann@Example.org",
            "phones": "+79123456789",
            "crm_id": "c-1",
            "subscriptions": [email_subscription("ann.work@example.com")],
        },
    )
    await create_profile(api, {"email": "bob@example.org"})
    assert await _lookup(api, herald, "email", "ANN@example.ORG") == [ann]
    assert await _lookup(api, herald, "email", "ann.work@example.com") == [ann]  # a subscription's email
    assert await _lookup(api, herald, "email_profile", "ann.work@example.com") == []
    assert await _lookup(api, herald, "phone", "+79123456789") == [ann]
    assert await _lookup(api, herald, "phone", "+7 (912) 345-67-89") == [ann]
    assert await _lookup(api, herald, "field:crm_id", "c-1") == [ann]
    assert await _lookup(api, herald, "profile_id", ann) == [ann]
    assert await _lookup(api, herald, "email", "carol@example.org") == []


@pytest.mark.parametrize(
    ("params", "status", "path"),
    [
        ({"database_id": DB, "by": "phone", "value": "12"}, 422, "value"),
        ({"database_id": DB, "by": "field:age", "value": "3"}, 422, "by"),
        ({"database_id": DB, "by": "field:nope", "value": "3"}, 422, "by"),
        ({"database_id": "404", "by": "email", "value": "a@example.org"}, 404, "database_id"),
        ({"database_id": DB, "by": "email"}, 422, "value"),
    ],
    ids=["bad-phone", "non-unique-field", "unknown-field", "unknown-database", "no-value"],
)
async def test_a_lookup_that_cannot_find_anything_says_why(
    api: httpx.AsyncClient, params: dict[str, str], status: int, path: str
) -> None:
    response = await api.get(f"{P}/lookup", params=params)
    assert response.status_code == status
    assert error_of(response)["path"] == path


async def test_the_list_pages_by_profile_id_and_filters_by_global_status(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ids = sorted([await create_profile(api, {"email": f"p{i}@example.org"}) for i in range(5)])
    await api.put(f"{P}/{ids[3]}/status", json={"status": "unsubscribed"})
    herald.runtime.drain()
    seen: list[str] = []
    after = ""
    while True:
        page = (await api.get(PROFILES, params={"limit": 2, "after": after})).json()
        seen += [p["profile_id"] for p in page["profiles"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ids
    unsubscribed = (await api.get(PROFILES, params={"status": "unsubscribed"})).json()["profiles"]
    assert [p["profile_id"] for p in unsubscribed] == [ids[3]]
    assert (await api.get(PROFILES, params={"limit": 0})).status_code == 422
    assert (await api.get(PROFILES, params={"status": "bogus"})).status_code == 422
    assert (await api.get("/api/v1/databases/404/profiles")).status_code == 404


# --- edits -------------------------------------------------------------------------------------


async def test_patch_changes_fields_and_a_stale_expected_version_is_409(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    profile_id = await create_profile(api, {"email": "ann@example.org", "age": 30})
    version = (await card(api, herald, profile_id))["version"]
    ok = await api.patch(
        f"{P}/{profile_id}", json={"fields": {"age": 31, "_lname": "Lee"}, "expected_version": version}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["stream_version"] == version + 1
    before = log_size(herald)
    stale = await api.patch(f"{P}/{profile_id}", json={"fields": {"age": 99}, "expected_version": version})
    assert stale.status_code == 409
    assert error_of(stale)["path"] == "expected_version"
    assert log_size(herald) == before
    shown = await card(api, herald, profile_id)
    assert shown["fields"]["age"] == 31 and shown["fields"]["_lname"] == "Lee"


async def test_the_cards_version_is_the_one_its_content_shows(api: httpx.AsyncClient, herald: Herald) -> None:
    profile_id = await create_profile(api, {"email": "ann@example.org", "age": 30})
    read = await card(api, herald, profile_id)
    await api.patch(f"{P}/{profile_id}", json={"fields": {"age": 31}})
    lagging = (await api.get(f"{P}/{profile_id}")).json()  # the projection has not caught up yet
    assert lagging["fields"]["age"] == 30 and lagging["version"] == read["version"]
    stale = await api.patch(
        f"{P}/{profile_id}", json={"fields": {"age": 40}, "expected_version": lagging["version"]}
    )
    assert stale.status_code == 409
    assert (await card(api, herald, profile_id))["version"] == read["version"] + 1


async def test_patch_refuses_bad_values_and_unknown_profiles(api: httpx.AsyncClient) -> None:
    profile_id = await create_profile(api, {"email": "ann@example.org"})
    bad = await api.patch(f"{P}/{profile_id}", json={"fields": {"age": "x"}})
    assert bad.status_code == 422 and error_of(bad)["path"] == "fields.age"
    unknown = await api.patch(f"{P}/{profile_id}", json={"fields": {"nope": 1}})
    assert unknown.status_code == 422 and error_of(unknown)["path"] == "fields.nope"
    assert (await api.patch(f"{P}/nobody", json={"fields": {"age": 1}})).status_code == 404
    unknown_versioned = await api.patch(f"{P}/nobody", json={"fields": {"age": 1}, "expected_version": 3})
    assert unknown_versioned.status_code == 404


async def test_patch_cannot_take_another_profiles_unique_values(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    await create_profile(api, {"email": "ann@example.org", "crm_id": "c-1"})
    bob = await create_profile(api, {"email": "bob@example.org"})
    taken_email = await api.patch(f"{P}/{bob}", json={"fields": {"Email": "ANN@example.org"}})
    assert taken_email.status_code == 409
    assert error_of(taken_email)["path"] == "fields.Email"
    taken_crm = await api.patch(f"{P}/{bob}", json={"fields": {"crm_id": "c-1"}})
    assert taken_crm.status_code == 409
    assert error_of(taken_crm)["path"] == "fields.crm_id"
    assert (await card(api, herald, bob))["email"] == "bob@example.org"


async def test_a_changed_email_frees_the_old_one(api: httpx.AsyncClient, herald: Herald) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    moved = await api.patch(f"{P}/{ann}", json={"fields": {"email": "ann@new.example.org"}})
    assert moved.status_code == 200
    bob = await create_profile(api, {"email": "ann@example.org"})
    assert bob != ann
    assert await _lookup(api, herald, "email_profile", "ann@example.org") == [bob]
    cleared = await api.patch(f"{P}/{ann}", json={"fields": {"email": None}})
    assert cleared.status_code == 200
    assert (await card(api, herald, ann))["email"] == f"{ann}@localhost"
    assert await create_profile(api, {"email": "ann@new.example.org"})


async def test_global_status_test_flag_and_tracked_data(api: httpx.AsyncClient, herald: Herald) -> None:
    profile_id = await create_profile(api, {"email": "ann@example.org"})
    status = await api.put(f"{P}/{profile_id}/status", json={"status": "unsubscribed"})
    assert status.status_code == 200 and len(status.json()["event_ids"]) == 1
    test = await api.put(f"{P}/{profile_id}/test", json={"is_test": True})
    assert test.status_code == 200
    tracked = await api.post(
        f"{P}/{profile_id}/tracked-data",
        json={
            "ip": "203.0.113.9",
            "city": "Tver",
            "country": "Russia",
            "timezone": "Europe/Moscow",
            "user_agent": "Mozilla/5.0",
        },
    )
    assert tracked.status_code == 200, tracked.text
    shown = await card(api, herald, profile_id)
    assert shown["global_status"] == "unsubscribed"
    assert shown["is_test"] is True
    assert shown["tracked"]["ip"] == "203.0.113.9" and shown["tracked"]["user_agent"] == "Mozilla/5.0"
    assert shown["fields"]["_ip"] == "203.0.113.9" and shown["fields"]["_city"] == "Tver"
    assert shown["timezone"] == "Europe/Moscow"
    same = await api.put(f"{P}/{profile_id}/status", json={"status": "unsubscribed"})
    assert same.json()["event_ids"] == []


async def test_status_test_and_tracked_data_refuse_bad_input(api: httpx.AsyncClient, herald: Herald) -> None:
    profile_id = await create_profile(api, {"email": "ann@example.org"})
    version = (await card(api, herald, profile_id))["version"]
    assert (await api.put(f"{P}/{profile_id}/status", json={"status": "gone"})).status_code == 422
    subscriber_cannot = await api.put(
        f"{P}/{profile_id}/status", json={"status": "complainer", "cause": "unsubscribe_link"}
    )
    assert subscriber_cannot.status_code == 422 and error_of(subscriber_cannot)["path"] == "status"
    stale = await api.put(
        f"{P}/{profile_id}/status", json={"status": "unsubscribed", "expected_version": version - 1}
    )
    assert stale.status_code == 409
    assert (await api.put(f"{P}/{profile_id}/test", json={"is_test": "maybe"})).status_code == 422
    bad_ip = await api.post(f"{P}/{profile_id}/tracked-data", json={"ip": "999.1.1.1"})
    assert bad_ip.status_code == 422 and error_of(bad_ip)["path"] == "ip"
    bad_tz = await api.post(f"{P}/{profile_id}/tracked-data", json={"timezone": "Mars/Olympus"})
    assert bad_tz.status_code == 422
    assert (await api.put(f"{P}/nobody/status", json={"status": "unsubscribed"})).status_code == 404


# --- delete and merge --------------------------------------------------------------------------


async def test_delete_hides_the_profile_and_frees_its_email_and_unique_values(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ann = await create_profile(
        api,
        {
            "email": "ann@example.org",
            "crm_id": "c-1",
            "subscriptions": [email_subscription("ann@example.org")],
        },
    )
    deleted = await api.delete(f"{P}/{ann}")
    assert deleted.status_code == 200 and len(deleted.json()["event_ids"]) == 1
    herald.runtime.drain()
    assert (await api.get(f"{P}/{ann}")).status_code == 404
    assert await _lookup(api, herald, "email", "ann@example.org") == []
    assert (await api.get(PROFILES)).json()["profiles"] == []
    assert (await api.get("/api/v1/resources/7/subscribers")).json()["subscribers"] == []
    again = await api.delete(f"{P}/{ann}")
    assert again.status_code == 200 and again.json()["event_ids"] == []
    assert (await api.patch(f"{P}/{ann}", json={"fields": {"age": 1}})).status_code == 404
    assert (await api.put(f"{P}/{ann}/test", json={"is_test": True})).status_code == 404
    new = await create_profile(api, {"email": "ann@example.org", "crm_id": "c-1"})
    assert new != ann
    assert await _lookup(api, herald, "email", "ann@example.org") == [new]
    assert (await api.delete(f"{P}/nobody")).status_code == 404


async def test_merge_moves_values_and_subscriptions_and_the_source_disappears(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    target = await create_profile(
        api, {"_fname": "Ann", "age": 30, "subscriptions": [email_subscription("ann@work.example.com")]}
    )
    source = await create_profile(
        api,
        {
            "email": "ann@example.org",
            "age": 99,
            "crm_id": "c-1",
            "subscriptions": [email_subscription("ann@example.org")],
        },
    )
    merged = await api.post(f"{P}/{target}/merge", json={"source_profile_id": source})
    assert merged.status_code == 200, merged.text
    assert {s["stream"] for s in merged.json()["streams"]} == {f"profile-{target}", f"profile-{source}"}
    shown = await card(api, herald, target)
    assert shown["email"] == "ann@example.org"  # the target lacked one
    assert shown["fields"]["age"] == 30  # the target wins on conflicts
    assert shown["fields"]["crm_id"] == "c-1"
    assert [s["contact"] for s in shown["subscriptions"]] == ["ann@work.example.com", "ann@example.org"]
    assert (await api.get(f"{P}/{source}")).status_code == 404
    assert await _lookup(api, herald, "email", "ann@example.org") == [target]
    assert await _lookup(api, herald, "field:crm_id", "c-1") == [target]
    taken = await api.post(PROFILES, json={"email": "ann@example.org"})
    assert taken.status_code == 409  # the claim moved to the target with the email


async def test_merge_refuses_itself_unknown_and_deleted_profiles(api: httpx.AsyncClient) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    bob = await create_profile(api, {"email": "bob@example.org"})
    itself = await api.post(f"{P}/{ann}/merge", json={"source_profile_id": ann})
    assert itself.status_code == 422
    unknown = await api.post(f"{P}/{ann}/merge", json={"source_profile_id": "nobody"})
    assert unknown.status_code == 404
    assert (await api.post(f"{P}/nobody/merge", json={"source_profile_id": ann})).status_code == 404
    await api.delete(f"{P}/{bob}")
    assert (await api.post(f"{P}/{ann}/merge", json={"source_profile_id": bob})).status_code == 404


# --- history -----------------------------------------------------------------------------------


async def test_history_lists_the_profiles_events_in_order_with_paging(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    profile_id = await create_profile(api, {"email": "ann@example.org"})
    await create_profile(api, {"email": "bob@example.org"})
    for age in (1, 2, 3):
        await api.patch(f"{P}/{profile_id}", json={"fields": {"age": age}})
    herald.runtime.drain()
    full = (await api.get(f"{P}/{profile_id}/history")).json()
    types = [e["type"] for e in full["events"]]
    assert types == ["ProfileCreated", *["ProfileFieldsUpdated"] * 3]
    assert all(e["stream"] == f"profile-{profile_id}" for e in full["events"])
    assert full["next_after"] is None
    first = (await api.get(f"{P}/{profile_id}/history", params={"limit": 3})).json()
    assert [e["event_id"] for e in first["events"]] == [e["event_id"] for e in full["events"][:3]]
    rest = (await api.get(f"{P}/{profile_id}/history", params={"after": first["next_after"]})).json()
    assert [e["event_id"] for e in rest["events"]] == [full["events"][3]["event_id"]]
    assert (await api.get(f"{P}/nobody/history")).status_code == 404
