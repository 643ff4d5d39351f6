"""Stop lists through HTTP: custom lists, entries, export, the manual check, the send-time check, roles."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald

SL = "/api/v1/stop-lists"


async def create_list(api: httpx.AsyncClient, **body: Any) -> str:
    response = await api.post(SL, json={"name": "Partners", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["list_id"])


async def add(api: httpx.AsyncClient, list_id: str, *items: str, **headers: str) -> httpx.Response:
    return await api.post(f"{SL}/{list_id}/entries", json={"items": list(items)}, headers=headers)


async def remove(api: httpx.AsyncClient, list_id: str, *items: str) -> None:
    response = await api.post(f"{SL}/{list_id}/entries/remove", json={"items": list(items)})
    assert response.status_code == 200, response.text


async def log_head(api: httpx.AsyncClient) -> int:
    return int((await api.get("/api/v1/events", params={"limit": 1})).json()["log_head"])


def error(response: httpx.Response, status: int) -> str:
    """The error's path, after checking the status."""
    assert response.status_code == status, response.text
    return str(response.json()["error"].get("path", ""))


async def test_create_read_list(api: httpx.AsyncClient, herald: Herald) -> None:
    response = await api.post(SL, json={"name": " Partners ", "description": "B2B", "tags": ["b2b"]})
    assert response.status_code == 201, response.text
    assert response.json()["list_id"] == "1" and response.json()["stream"] == "stoplist-1"
    assert await create_list(api, name="Competitors") == "2"

    one = (await api.get(f"{SL}/1")).json()
    assert one == {
        "list_id": "1",
        "kind": "custom",
        "name": "Partners",
        "description": "B2B",
        "tags": ["b2b"],
        "entry_count": 0,
        "version": 1,
    }
    assert (await add(api, "1", "ann@example.org", "spam.example")).status_code == 200
    herald.runtime.drain()
    listed = (await api.get(SL)).json()["stop_lists"]
    assert [(s["list_id"], s["name"], s["entry_count"]) for s in listed] == [
        ("1", "Partners", 2),
        ("2", "Competitors", 0),
    ]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": " "}, "name"),
        ({"name": "X", "tags": [""]}, "tags.0"),
        ({"name": "X", "kind": "custom"}, "kind"),
        ({}, "name"),
        ({"name": 3}, "name"),
    ],
    ids=["blank-name", "blank-tag", "unknown-key", "missing-name", "name-not-text"],
)
async def test_a_refused_create_writes_nothing(
    api: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    assert error(await api.post(SL, json=body), 422) == path
    assert await log_head(api) == 0


async def test_entries_add_export_remove_clear(api: httpx.AsyncClient, herald: Herald) -> None:
    list_id = await create_list(api)
    added = await add(
        api, list_id, "Ann@Example.org", "spam.example", "+7 (999) 123-45-67", "ann@example.org"
    )
    assert added.status_code == 200 and added.json()["stream_version"] == 2
    assert (await add(api, list_id, "ANN@example.org")).json()["event_ids"] == []
    assert (await api.get(f"{SL}/{list_id}")).json()["entry_count"] == 3
    herald.runtime.drain()

    first = (await api.get(f"{SL}/{list_id}/entries", params={"limit": 2})).json()
    assert [(e["kind"], e["value"], e["reason"]) for e in first["entries"]] == [
        ("domain", "spam.example", "api"),
        ("email", "Ann@example.org", "api"),
    ]
    rest = (
        await api.get(f"{SL}/{list_id}/entries", params={"limit": 2, "after": first["next_after"]})
    ).json()
    assert [e["value"] for e in rest["entries"]] == ["+79991234567"] and rest["next_after"] is None

    await remove(api, list_id, "ann@EXAMPLE.org", "nobody@example.org")
    assert (await api.get(f"{SL}/{list_id}")).json()["entry_count"] == 2
    cleared = await api.post(f"{SL}/{list_id}/clear")
    assert cleared.status_code == 200 and len(cleared.json()["event_ids"]) == 1
    assert (await api.post(f"{SL}/{list_id}/clear")).json()["event_ids"] == []
    herald.runtime.drain()
    assert (await api.get(f"{SL}/{list_id}/entries")).json()["entries"] == []


@pytest.mark.parametrize(
    ("url", "body", "status", "path"),
    [
        ("/entries", {"items": ["ann@example.org", "bob@"]}, 422, "items.1"),
        ("/entries", {"items": []}, 422, "items"),
        ("/entries", {"items": "ann@example.org"}, 422, "items"),
        ("/entries", {"items": ["a@example.org"] * 501}, 422, "items"),
        ("/entries", {"items": ["a@example.org"], "reason": "because"}, 422, "reason"),
        ("/entries", {"items": ["a@example.org"], "expected_version": 0}, 409, "expected_version"),
        ("/entries/remove", {"items": ["not an item"]}, 422, "items.0"),
        ("", {"name": ""}, 422, "name"),
        ("", {"name": "X", "expected_version": 7}, 409, "expected_version"),
    ],
    ids=[
        "malformed-item",
        "no-items",
        "not-a-list",
        "too-many",
        "unknown-reason",
        "stale-add",
        "malformed-removal",
        "blank-name",
        "stale-rename",
    ],
)
async def test_refused_changes_write_nothing(
    api: httpx.AsyncClient, url: str, body: dict[str, Any], status: int, path: str
) -> None:
    list_id = await create_list(api)
    head = await log_head(api)
    method = "PATCH" if url == "" else "POST"
    assert error(await api.request(method, f"{SL}/{list_id}{url}", json=body), status) == path
    assert await log_head(api) == head


async def test_rename_and_delete(api: httpx.AsyncClient, herald: Herald) -> None:
    list_id = await create_list(api)
    renamed = await api.patch(f"{SL}/{list_id}", json={"name": "Resellers", "expected_version": 1})
    assert renamed.status_code == 200, renamed.text
    assert (await api.get(f"{SL}/{list_id}")).json()["name"] == "Resellers"
    assert (
        error(await api.delete(f"{SL}/{list_id}", params={"expected_version": 1}), 409) == "expected_version"
    )
    assert (await api.delete(f"{SL}/{list_id}")).status_code == 200
    assert error(await api.get(f"{SL}/{list_id}"), 404) == "list_id"
    assert error(await add(api, list_id, "a@example.org"), 404) == "list_id"
    herald.runtime.drain()
    assert (await api.get(SL)).json()["stop_lists"] == []
    assert error(await api.get(f"{SL}/{list_id}/entries"), 404) == "list_id"
    assert await create_list(api) == "2"


async def test_built_in_lists_appear_with_their_first_entry(api: httpx.AsyncClient, herald: Herald) -> None:
    assert error(await api.get(f"{SL}/global"), 404) == "list_id"
    assert (await add(api, "global", "ann@example.org")).status_code == 200
    assert error(await api.delete(f"{SL}/global"), 422) == "list_id"
    herald.runtime.drain()
    [listed] = (await api.get(SL)).json()["stop_lists"]
    assert listed["list_id"] == "global" and listed["kind"] == "account_global" and listed["entry_count"] == 1
    assert (await api.get(f"{SL}/global")).json()["version"] == 2
    assert (
        await create_list(api, name="Mine") == "1"
    )  # custom lists are numbered apart from the built-in ones
    assert error(await add(api, "platform-invalid", "spam.example"), 422) == "items.0"


async def test_platform_lists_need_an_admin(api: httpx.AsyncClient, herald: Herald) -> None:
    issued = (await api.post("/api/v1/tokens", json={"name": "editor", "role": "write"})).json()
    herald.runtime.drain()
    editor = f"Bearer {issued['token']}"
    assert (
        error(await add(api, "platform-blacklist", "spam.example", Authorization=editor), 403)
        == "authorization"
    )
    forbidden = await api.post(f"{SL}/platform-invalid/clear", headers={"Authorization": editor})
    assert error(forbidden, 403) == "authorization"
    assert (await add(api, "global", "spam.example", Authorization=editor)).status_code == 200
    assert (await add(api, "platform-blacklist", "spam.example")).status_code == 200
    assert (
        error(await api.post(SL, json={"name": "X"}, headers={"Authorization": "Bearer nope"}), 401)
        == "authorization"
    )


async def test_manual_check(api: httpx.AsyncClient, herald: Herald) -> None:
    list_id = await create_list(api)
    await add(api, list_id, "ann@example.org", "spam.example")
    herald.runtime.drain()
    url = f"{SL}/{list_id}/check"
    result = (
        await api.post(url, json={"items": ["ANN@example.org", "bob@example.org", "x@", "spam.example"]})
    ).json()
    assert result == {
        "existing": [
            {"kind": "email", "value": "ANN@example.org"},
            {"kind": "domain", "value": "spam.example"},
        ],
        "new": [{"kind": "email", "value": "bob@example.org"}],
        "invalid": [{"position": 2, "text": "x@", "reason": result["invalid"][0]["reason"]}],
    }
    from_text = (await api.post(url, json={"text": "ann@example.org, cat@spam.example\nspam.example"})).json()
    assert [i["value"] for i in from_text["existing"]] == ["ann@example.org", "spam.example"]
    assert [i["value"] for i in from_text["new"]] == ["cat@spam.example"]

    assert error(await api.post(url, json={"items": ["a@example.org"] * 501}), 422) == "items"
    assert error(await api.post(url, json={"text": " ".join(["a@example.org"] * 501)}), 422) == "text"
    assert error(await api.post(url, json={}), 422) == "items"
    assert (
        error(await api.post(url, json={"items": ["a@example.org"], "text": "b@example.org"}), 422) == "items"
    )
    assert error(await api.post(f"{SL}/99/check", json={"items": ["a@example.org"]}), 404) == "list_id"


async def test_the_send_time_check_follows_the_guides_order(api: httpx.AsyncClient, herald: Herald) -> None:
    database = (await api.post("/api/v1/databases", json={"name": "Customers"})).json()["database_id"]
    other = (await api.post("/api/v1/databases", json={"name": "Partners"})).json()["database_id"]
    custom = await create_list(api)
    assert (
        await api.put(f"/api/v1/databases/{database}/stop-list", json={"stop_list_id": custom})
    ).status_code == 200
    for list_id in ("platform-invalid", "platform-blacklist", "global", custom):
        assert (await add(api, list_id, "ann@example.org")).status_code == 200

    async def check(contact: str = "Ann@Example.org", **body: Any) -> dict[str, Any]:
        herald.runtime.drain()
        payload = {"channel": "email", "contact": contact, "database_id": database, **body}
        response = await api.post(f"{SL}/check-contact", json=payload)
        assert response.status_code == 200, response.text
        return dict(response.json())

    expected = [
        ("platform", "platform-invalid"),
        ("platform", "platform-blacklist"),
        ("account", "global"),
        ("database", custom),
    ]
    for level, list_id in expected:
        hit = await check()
        assert (hit["blocked"], hit["level"], hit["list_id"]) == (True, level, list_id)
        assert hit["entry"] == {"kind": "email", "value": "Ann@Example.org"}  # the contact, as it matched
        assert (await check(database_id=other))["blocked"] is (level != "database")
        await remove(api, list_id, "ann@example.org")
    assert await check() == {"blocked": False}

    await add(api, "platform-blacklist", "example.org")
    hit = await check(template_id="t1")
    assert (hit["level"], hit["entry"]) == ("platform", {"kind": "domain", "value": "example.org"})

    await add(api, custom, "+79991234567")
    assert (await check("+7 999 123 45 67", channel="sms")) == {
        "blocked": False
    }  # database lists are email-only
    await add(api, "global", "+79991234567")
    assert (await check("+7 999 123 45 67", channel="sms"))["level"] == "account"
    assert (await check("push-token", channel="push")) == {"blocked": False}

    unknown = await api.post(
        f"{SL}/check-contact", json={"channel": "email", "contact": "a@b.io", "database_id": "9"}
    )
    assert error(unknown, 404) == "database_id"
    missing = await api.post(f"{SL}/check-contact", json={"channel": "email", "database_id": database})
    assert error(missing, 422) == "contact"
