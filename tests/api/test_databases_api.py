"""Profile databases through HTTP: create, list, read, change, fields, stop list, clone, delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald

DB = "/api/v1/databases"


async def create_database(api: httpx.AsyncClient, **body: Any) -> str:
    response = await api.post(DB, json={"name": "Customers", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["database_id"])


async def log_head(api: httpx.AsyncClient) -> int:
    return int((await api.get("/api/v1/events", params={"limit": 1})).json()["log_head"])


async def create_stop_list(api: httpx.AsyncClient, name: str = "Partners") -> str:
    response = await api.post("/api/v1/stop-lists", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["list_id"])


def error(response: httpx.Response, status: int) -> tuple[str, str]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    return body.get("path", ""), body["reason"]


async def test_create_with_every_setting_then_read_it_back(api: httpx.AsyncClient) -> None:
    response = await api.post(
        DB,
        json={
            "name": " Customers B2C ",
            "description": "Shop customers",
            "tags": ["shop", "b2c", "shop"],
            "subscription_manager_title": "",
            "subscription_manager_language": "ru",
            "is_watchers": True,
            "email": {"sender_name": "Shop", "sender_email": "News@Example.com"},
            "standard_fields": {"FirstName": {"default": "friend", "in_subscription_manager": True}},
            "custom_fields": [
                {"name": "crm_id", "type": "string", "unique": True},
                {"name": "loyalty", "title": "Loyalty level", "type": "list", "options": ["gold", "silver"]},
            ],
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["database_id"] == "1" and created["stream"] == "database-1"
    assert created["stream_version"] == 1 and len(created["event_ids"]) == 1

    card = (await api.get(f"{DB}/1")).json()
    assert card["name"] == "Customers B2C" and card["subscription_manager_title"] == "Customers B2C"
    assert card["tags"] == ["shop", "b2c"] and card["is_watchers"] is True
    assert card["email"]["sender_email"] == "News@example.com"
    assert card["version"] == 1 and card["stop_list_id"] is None
    fields = {f["name"]: f for f in card["fields"]}
    assert fields["_fname"]["default"] == "friend" and fields["_fname"]["standard"] is True
    assert fields["crm_id"]["unique"] is True and fields["crm_id"]["standard"] is False
    assert fields["loyalty"]["options"] == ["gold", "silver"]
    assert [f["name"] for f in card["fields"]][-2:] == ["crm_id", "loyalty"]
    assert card["profiles"]["total"] == 0


async def test_ids_are_sequential_and_never_reused(api: httpx.AsyncClient) -> None:
    assert [await create_database(api), await create_database(api)] == ["1", "2"]
    assert (await api.delete(f"{DB}/2")).status_code == 200
    assert await create_database(api) == "3"


async def test_list_has_profile_counters(api: httpx.AsyncClient, herald: Herald) -> None:
    await create_database(api, name="Customers")
    await create_database(api, name="Partners")
    for email in ("ann@example.org", "bob@example.org"):
        response = await api.post(f"{DB}/1/profiles", json={"email": email})
        assert response.status_code == 201, response.text
    profile_id = response.json()["profile_id"]
    assert (
        await api.put(f"/api/v1/profiles/{profile_id}/status", json={"status": "suspended"})
    ).status_code == 200
    herald.runtime.drain()

    listed = (await api.get(DB)).json()["databases"]
    assert [d["name"] for d in listed] == ["Customers", "Partners"]
    counters = listed[0]["profiles"]
    assert counters["subscribed"] == 1 and counters["suspended"] == 1 and counters["total"] == 2
    assert listed[1]["profiles"]["total"] == 0
    assert "fields" not in listed[0]


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"colour": "red"}, 422, "colour"),
        ({"name": 5}, 422, "name"),
        ({"name": "  "}, 422, "name"),
        ({"tags": "shop"}, 422, "tags"),
        ({"email": {"sender_email": "not-an-email"}}, 422, "email.sender_email"),
        ({"email": {"sender": "x"}}, 422, "email.sender"),
        ({"subscription_manager_language": "English"}, 422, "subscription_manager_language"),
        (
            {"custom_fields": [{"name": "ok", "type": "int"}, {"name": "2bad", "type": "int"}]},
            422,
            "custom_fields.1.name",
        ),
        ({"custom_fields": [{"name": "vip", "type": "bool", "unique": True}]}, 422, "custom_fields.0.unique"),
        ({"custom_fields": [{"name": "vip", "type": "bool", "colour": 1}]}, 422, "custom_fields.0.colour"),
        ({"custom_fields": [{"name": "email", "type": "string"}]}, 409, "custom_fields.0.name"),
        ({"standard_fields": {"_bdate": {"default": "someday"}}}, 422, "standard_fields._bdate.default"),
        ({"stop_list_id": "99"}, 404, "stop_list_id"),
        ({"stop_list_id": "global"}, 422, "stop_list_id"),
    ],
    ids=[
        "unknown-key",
        "name-not-text",
        "blank-name",
        "tags-not-a-list",
        "malformed-sender-email",
        "unknown-email-key",
        "bad-language",
        "bad-field-name",
        "bool-cannot-be-unique",
        "unknown-field-key",
        "custom-field-named-like-standard",
        "bad-standard-default",
        "unknown-stop-list",
        "built-in-stop-list",
    ],
)
async def test_a_refused_create_names_the_field_and_writes_nothing(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, path: str
) -> None:
    await api.post("/api/v1/stop-lists/global/entries", json={"items": ["spam.example"]})
    head = await log_head(api)
    response = await api.post(DB, json={"name": "Customers", **body})
    assert error(response, status)[0] == path
    assert await log_head(api) == head
    assert (await api.get(f"{DB}/1")).status_code == 404


async def test_a_create_without_a_body_is_refused(api: httpx.AsyncClient) -> None:
    assert error(await api.post(DB), 422)[0] == "body"
    assert error(await api.post(DB, content=b"{not json"), 422)[1]


async def test_patch_changes_only_what_it_names(api: httpx.AsyncClient) -> None:
    await create_database(
        api, description="old", email={"sender_name": "Shop", "sender_email": "a@example.com"}
    )
    response = await api.patch(
        f"{DB}/1",
        json={"name": "Clients", "email": {"reply_to_email": "Help@Example.com"}, "expected_version": 1},
    )
    assert response.status_code == 200, response.text
    assert response.json()["stream_version"] == 2
    card = (await api.get(f"{DB}/1")).json()
    assert card["name"] == "Clients" and card["description"] == "old"
    assert card["email"] == {
        "sender_name": "Shop",
        "sender_email": "a@example.com",
        "reply_to_name": "",
        "reply_to_email": "Help@example.com",
    }
    unchanged = await api.patch(f"{DB}/1", json={"name": "Clients"})
    assert unchanged.json()["event_ids"] == [] and unchanged.json()["stream_version"] == 2


async def test_patch_refusals(api: httpx.AsyncClient) -> None:
    await create_database(api)
    head = await log_head(api)
    stale = await api.patch(f"{DB}/1", json={"name": "Clients", "expected_version": 0})
    assert error(stale, 409)[0] == "expected_version" and stale.json()["error"]["actual_version"] == 1
    assert error(await api.patch(f"{DB}/1", json={"is_watchers": "maybe"}), 422)[0] == "is_watchers"
    assert (
        error(await api.patch(f"{DB}/1", json={"email": {"sender_email": "x@"}}), 422)[0]
        == "email.sender_email"
    )
    assert error(await api.patch(f"{DB}/1", json={"owner": "me"}), 422)[0] == "owner"
    assert error(await api.patch(f"{DB}/9", json={"name": "X"}), 404)[0] == "database_id"
    assert error(await api.get(f"{DB}/9"), 404)[0] == "database_id"
    assert await log_head(api) == head


async def test_custom_fields_add_change_remove(api: httpx.AsyncClient) -> None:
    await create_database(api)
    added = await api.post(f"{DB}/1/fields", json={"name": "loyalty", "type": "int", "default": "5"})
    assert added.status_code == 201, added.text
    changed = await api.put(f"{DB}/1/fields/Loyalty", json={"title": "Loyalty points", "type": "int"})
    assert changed.status_code == 200, changed.text
    fields = {f["name"]: f for f in (await api.get(f"{DB}/1")).json()["fields"]}
    assert fields["loyalty"]["title"] == "Loyalty points" and fields["loyalty"]["default"] == 5

    cleared = await api.put(f"{DB}/1/fields/loyalty", json={"default": None, "expected_version": 3})
    assert cleared.status_code == 200, cleared.text
    assert {f["name"]: f for f in (await api.get(f"{DB}/1")).json()["fields"]}["loyalty"]["default"] is None

    assert (await api.delete(f"{DB}/1/fields/loyalty")).status_code == 200
    assert "loyalty" not in {f["name"] for f in (await api.get(f"{DB}/1")).json()["fields"]}
    assert error(await api.delete(f"{DB}/1/fields/loyalty"), 404)[0] == "name"


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "path"),
    [
        ("POST", "/fields", {"name": "tier", "type": "int"}, 409, "name"),
        ("POST", "/fields", {"name": "Email", "type": "string"}, 409, "name"),
        ("POST", "/fields", {"name": "x", "type": "phones"}, 422, "type"),
        ("POST", "/fields", {"name": "x", "type": "int", "default": "many"}, 422, "default"),
        ("POST", "/fields", {"name": "x"}, 422, "type"),
        ("PUT", "/fields/tier", {"type": "string"}, 422, "type"),
        ("PUT", "/fields/tier", {"unique": True}, 422, "unique"),
        ("PUT", "/fields/tier", {"default": 1.5}, 422, "default"),
        ("PUT", "/fields/tier", {"name": "other"}, 422, "name"),
        ("PUT", "/fields/nope", {"title": "Nope"}, 404, "name"),
        ("PUT", "/fields/tier", {"title": "T", "expected_version": 0}, 409, "expected_version"),
        ("DELETE", "/fields/_fname", None, 404, "name"),
        ("PUT", "/standard-fields/shoe_size", {"required": True}, 404, "name"),
        ("PUT", "/standard-fields/Birthday", {"default": "someday"}, 422, "default"),
        ("PUT", "/standard-fields/email", {"default": "a@b.io"}, 422, "default"),
        ("PUT", "/standard-fields/_fname", {"required": "sometimes"}, 422, "required"),
    ],
    ids=[
        "duplicate",
        "standard-name",
        "standard-only-type",
        "bad-default",
        "missing-type",
        "type-change",
        "uniqueness-change",
        "fraction-in-int",
        "rename",
        "unknown-field",
        "stale-version",
        "standard-not-removable",
        "unknown-standard-field",
        "bad-standard-default",
        "identifying-field-default",
        "wrong-type",
    ],
)
async def test_field_refusals(
    api: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None, status: int, path: str
) -> None:
    await create_database(api, custom_fields=[{"name": "tier", "type": "int"}])
    head = await log_head(api)
    response = await api.request(method, f"{DB}/1{url}", json=body)
    assert error(response, status)[0] == path
    assert await log_head(api) == head


async def test_standard_field_configuration(api: httpx.AsyncClient) -> None:
    await create_database(api)
    response = await api.put(
        f"{DB}/1/standard-fields/Birthday", json={"default": "11.07.2019", "required": True}
    )
    assert response.status_code == 200, response.text
    field = {f["name"]: f for f in (await api.get(f"{DB}/1")).json()["fields"]}["_bdate"]
    assert field["default"] == "2019-07-11" and field["required"] is True
    again = await api.put(f"{DB}/1/standard-fields/_bdate", json={"default": "2019-07-11", "required": True})
    assert again.json()["event_ids"] == []


async def test_attach_and_detach_a_stop_list(api: httpx.AsyncClient, herald: Herald) -> None:
    await create_database(api)
    list_id = await create_stop_list(api)
    attached = await api.put(f"{DB}/1/stop-list", json={"stop_list_id": list_id, "expected_version": 1})
    assert attached.status_code == 200, attached.text
    assert (await api.get(f"{DB}/1")).json()["stop_list_id"] == list_id
    herald.runtime.drain()
    assert herald.catalog.stop_list_lookup.database_list("1") == list_id

    assert (await api.delete(f"{DB}/1/stop-list")).status_code == 200
    assert (await api.get(f"{DB}/1")).json()["stop_list_id"] is None
    assert (await api.delete(f"{DB}/1/stop-list")).json()["event_ids"] == []


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"stop_list_id": "99"}, 404, "stop_list_id"),
        ({"stop_list_id": "platform-blacklist"}, 422, "stop_list_id"),
        ({"stop_list_id": 1}, 422, "stop_list_id"),
        ({}, 422, "stop_list_id"),
    ],
    ids=["unknown", "built-in", "not-text", "missing"],
)
async def test_attach_refusals(api: httpx.AsyncClient, body: dict[str, Any], status: int, path: str) -> None:
    await create_database(api)
    await api.post("/api/v1/stop-lists/platform-blacklist/entries", json={"items": ["spam.example"]})
    head = await log_head(api)
    assert error(await api.put(f"{DB}/1/stop-list", json=body), status)[0] == path
    assert await log_head(api) == head


async def test_attach_to_an_unknown_database(api: httpx.AsyncClient) -> None:
    list_id = await create_stop_list(api)
    assert error(await api.put(f"{DB}/7/stop-list", json={"stop_list_id": list_id}), 404)[0] == "database_id"


async def test_a_deleted_stop_list_cannot_be_attached(api: httpx.AsyncClient) -> None:
    await create_database(api)
    list_id = await create_stop_list(api)
    assert (await api.delete(f"/api/v1/stop-lists/{list_id}")).status_code == 200
    assert error(await api.put(f"{DB}/1/stop-list", json={"stop_list_id": list_id}), 404)[0] == "stop_list_id"


async def test_clone_copies_the_structure_under_a_new_id(api: httpx.AsyncClient) -> None:
    list_id = await create_stop_list(api)
    await create_database(
        api,
        tags=["shop"],
        stop_list_id=list_id,
        custom_fields=[{"name": "tier", "type": "int", "default": 1}],
    )
    await api.post(f"{DB}/1/profiles", json={"email": "ann@example.org"})
    response = await api.post(f"{DB}/1/clone", json={})
    assert response.status_code == 201, response.text
    assert response.json()["database_id"] == "2" and response.json()["cloned_from"] == "1"
    clone = (await api.get(f"{DB}/2")).json()
    assert clone["name"] == "Customers (copy)" and clone["cloned_from"] == "1"
    assert clone["tags"] == ["shop"] and clone["stop_list_id"] == list_id
    assert {f["name"]: f["default"] for f in clone["fields"]}["tier"] == 1
    assert (await api.get(f"{DB}/2/profiles")).json()["profiles"] == []

    named = await api.post(f"{DB}/1/clone", json={"name": "Partners"})
    assert (await api.get(f"{DB}/{named.json()['database_id']}")).json()["name"] == "Partners"
    assert error(await api.post(f"{DB}/9/clone", json={}), 404)[0] == "database_id"
    assert error(await api.post(f"{DB}/1/clone", json={"name": " "}), 422)[0] == "name"


async def test_delete(api: httpx.AsyncClient, herald: Herald) -> None:
    await create_database(api)
    assert error(await api.delete(f"{DB}/1", params={"expected_version": 5}), 409)[0] == "expected_version"
    deleted = await api.delete(f"{DB}/1", params={"expected_version": 1})
    assert deleted.status_code == 200 and deleted.json()["stream_version"] == 2
    assert error(await api.get(f"{DB}/1"), 404)[0] == "database_id"
    assert (await api.delete(f"{DB}/1")).json()["event_ids"] == []
    assert error(await api.patch(f"{DB}/1", json={"name": "Back"}), 404)[0] == "database_id"
    assert error(await api.post(f"{DB}/1/profiles", json={"email": "a@example.org"}), 404)[0] == "database_id"
    herald.runtime.drain()
    assert (await api.get(DB)).json()["databases"] == []
    assert error(await api.delete(f"{DB}/5"), 404)[0] == "database_id"


async def test_reads_need_a_token_and_writes_a_write_token(api: httpx.AsyncClient, herald: Herald) -> None:
    issued = (await api.post("/api/v1/tokens", json={"name": "viewer", "role": "read"})).json()
    herald.runtime.drain()
    viewer = {"Authorization": f"Bearer {issued['token']}"}
    assert (await api.get(DB, headers=viewer)).status_code == 200
    assert error(await api.post(DB, json={"name": "X"}, headers=viewer), 403)[0] == "authorization"
    assert error(await api.get(DB, headers={"Authorization": "Bearer nope"}), 401)[0] == "authorization"


async def test_the_openapi_document_lists_the_catalog(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/api/v1/openapi.json")).json()["paths"]
    assert set(paths["/api/v1/databases/{database_id}"]) == {"get", "patch", "delete"}
    assert "/api/v1/resources/{resource_id}/channels/{channel}/fields/{name}" in paths
    assert "/api/v1/stop-lists/{list_id}/check" in paths
