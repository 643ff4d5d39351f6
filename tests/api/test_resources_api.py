"""Resources through HTTP: create in one step, list, read, settings, channels, fields, categories, policy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald

RS = "/api/v1/resources"
EMAIL = {
    "kind": "email",
    "from_name": "Shop",
    "from_email": "news@example.com",
    "list_id": "news.example.com",
}
SMS = {"kind": "sms", "caller_id": "SHOP"}
POLICY = {"mode": "confirm", "page_url": "https://shop.example.com/bye?m={send_message_id}"}


def resource_body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "News",
        "database_ids": ["1"],
        "source_urls": ["https://shop.example.com"],
        "default_tracking_domain": "trk.example.com",
        "channels": [EMAIL],
        **overrides,
    }


@pytest.fixture
async def database(api: httpx.AsyncClient) -> str:
    response = await api.post("/api/v1/databases", json={"name": "Customers"})
    assert response.status_code == 201, response.text
    return str(response.json()["database_id"])


async def create_resource(api: httpx.AsyncClient, **overrides: Any) -> str:
    response = await api.post(RS, json=resource_body(**overrides))
    assert response.status_code == 201, response.text
    return str(response.json()["resource_id"])


async def log_head(api: httpx.AsyncClient) -> int:
    return int((await api.get("/api/v1/events", params={"limit": 1})).json()["log_head"])


def error(response: httpx.Response, status: int) -> str:
    """The error's path, after checking the status."""
    assert response.status_code == status, response.text
    return str(response.json()["error"].get("path", ""))


async def test_create_everything_in_one_append(api: httpx.AsyncClient, database: str) -> None:
    body = resource_body(
        channels=[EMAIL, SMS],
        categories=[{"api_name": "promo", "title": "Promotions"}, {"api_name": "news", "title": "News"}],
        subscription_fields={
            "email": [{"name": "source", "type": "string"}, {"name": "score", "type": "int"}]
        },
        unsubscribe_policy=POLICY,
    )
    response = await api.post(RS, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["resource_id"] == "1" and created["stream_version"] == 8 and len(created["event_ids"]) == 8
    stream = (await api.get("/api/v1/streams/resource-1")).json()["events"]
    assert len({e["recorded_at"] for e in stream}) == 1
    assert [e["type"] for e in stream][:3] == [
        "ResourceCreated",
        "ResourceChannelEnabled",
        "ResourceChannelEnabled",
    ]

    resource = (await api.get(f"{RS}/1")).json()
    assert resource["version"] == 8 and len(resource["token"]) == 24
    assert resource["name"] == "News" and resource["database_ids"] == ["1"]
    assert [c["kind"] for c in resource["channels"]] == ["email", "sms"]
    assert [c["api_name"] for c in resource["categories"]] == ["promo", "news"]
    assert [f["name"] for f in resource["subscription_fields"]["email"]] == ["source", "score"]
    assert resource["unsubscribe_policy"]["mode"] == "confirm"
    assert await create_resource(api) == "2"


async def test_a_resource_read_back_can_be_posted_again(api: httpx.AsyncClient, database: str) -> None:
    await create_resource(api, categories=[{"api_name": "promo", "title": "Promotions"}])
    resource = (await api.get(f"{RS}/1")).json()
    copy = {k: v for k, v in resource.items() if k not in ("resource_id", "token", "version")}
    assert (await api.post(RS, json=copy)).status_code == 201


@pytest.mark.parametrize(
    ("overrides", "status", "path"),
    [
        ({"colour": "red"}, 422, "colour"),
        ({"database_ids": ["1", "9"]}, 404, "database_ids.1"),
        ({"database_ids": []}, 422, "database_ids"),
        ({"name": " "}, 422, "name"),
        ({"raise_priority_for_new_subscriptions": "often"}, 422, "raise_priority_for_new_subscriptions"),
        ({"source_urls": ["not a url"]}, 422, "source_urls.0"),
        ({"default_tracking_domain": "not a domain!"}, 422, "default_tracking_domain"),
        ({"channels": [{**EMAIL, "from_email": "nope"}]}, 422, "channels.0.from_email"),
        ({"channels": [EMAIL, {**EMAIL, "from_name": "Again"}]}, 409, "channels.1.channel"),
        ({"channels": [{"kind": "fax"}]}, 422, "channels.0"),
        (
            {"categories": [{"api_name": "ok", "title": "Ok"}, {"api_name": "1x", "title": "X"}]},
            422,
            "categories.1.api_name",
        ),
        (
            {"categories": [{"api_name": "a", "title": "A"}, {"api_name": "a", "title": "B"}]},
            409,
            "categories.1.api_name",
        ),
        ({"subscription_fields": {"sms": [{"name": "x", "type": "int"}]}}, 404, "subscription_fields.sms"),
        (
            {"subscription_fields": {"email": [{"name": "a", "type": "int"}, {"name": "b", "type": "date"}]}},
            422,
            "subscription_fields.email.1.type",
        ),
        (
            {"unsubscribe_policy": {"mode": "delayed", "page_url": POLICY["page_url"]}},
            422,
            "unsubscribe_policy.timer_minutes",
        ),
        ({"unsubscribe_policy": {"mode": "sometimes"}}, 422, "unsubscribe_policy.mode"),
    ],
    ids=[
        "unknown-key",
        "unknown-database",
        "no-database",
        "blank-name",
        "wrong-type",
        "bad-url",
        "bad-domain",
        "malformed-email",
        "channel-twice",
        "unknown-channel-kind",
        "bad-category-name",
        "category-twice",
        "field-on-a-channel-not-enabled",
        "bad-field-type",
        "bad-policy",
        "unknown-policy-mode",
    ],
)
async def test_a_refused_create_names_the_field_and_writes_nothing(
    api: httpx.AsyncClient, database: str, overrides: dict[str, Any], status: int, path: str
) -> None:
    head = await log_head(api)
    assert error(await api.post(RS, json=resource_body(**overrides)), status) == path
    assert await log_head(api) == head


async def test_list(api: httpx.AsyncClient, herald: Herald, database: str) -> None:
    for name in ("News", "Promo"):
        await create_resource(api, name=name)
    herald.runtime.drain()
    listed = (await api.get(RS)).json()["resources"]
    assert [(r["resource_id"], r["name"]) for r in listed] == [("1", "News"), ("2", "Promo")]
    assert listed[0]["channels"][0]["from_email"] == "news@example.com"


async def test_patch_merges_into_the_current_settings(api: httpx.AsyncClient, database: str) -> None:
    await create_resource(api, sending_policy_id="p1", description="Weekly")
    second = (await api.post("/api/v1/databases", json={"name": "Partners"})).json()["database_id"]
    response = await api.patch(
        f"{RS}/1", json={"name": "Digest", "database_ids": ["1", second], "expected_version": 2}
    )
    assert response.status_code == 200, response.text
    resource = (await api.get(f"{RS}/1")).json()
    assert resource["name"] == "Digest" and resource["description"] == "Weekly"
    assert resource["database_ids"] == ["1", second] and resource["sending_policy_id"] == "p1"
    assert (await api.patch(f"{RS}/1", json={"sending_policy_id": None})).status_code == 200
    assert (await api.get(f"{RS}/1")).json()["sending_policy_id"] is None
    assert (await api.patch(f"{RS}/1", json={"name": "Digest"})).json()["event_ids"] == []


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"name": "X", "expected_version": 1}, 409, "expected_version"),
        ({"database_ids": ["7"]}, 404, "database_ids.0"),
        ({"database_ids": []}, 422, "database_ids"),
        ({"source_urls": "https://x.example"}, 422, "source_urls"),
        ({"token": "mine"}, 422, "token"),
    ],
    ids=["stale-version", "unknown-database", "no-database", "wrong-type", "unknown-key"],
)
async def test_patch_refusals(
    api: httpx.AsyncClient, database: str, body: dict[str, Any], status: int, path: str
) -> None:
    await create_resource(api)
    head = await log_head(api)
    assert error(await api.patch(f"{RS}/1", json=body), status) == path
    assert await log_head(api) == head


async def test_channels_enable_update_disable(api: httpx.AsyncClient, database: str) -> None:
    await create_resource(api)
    enabled = await api.put(f"{RS}/1/channels/sms", json={"caller_id": "SHOP"})
    assert enabled.status_code == 200, enabled.text
    updated = await api.put(
        f"{RS}/1/channels/email", json={**EMAIL, "from_name": "The Shop", "expected_version": 3}
    )
    assert updated.status_code == 200, updated.text
    custom = await api.put(f"{RS}/1/channels/telegram_bot", json={"options": {"bot": "@shop_bot"}})
    assert custom.status_code == 200, custom.text
    push = {"platforms": ["safari"], "providers": ["apns"]}
    assert (await api.put(f"{RS}/1/channels/push", json=push)).status_code == 200

    channels = {c.get("name", c["kind"]): c for c in (await api.get(f"{RS}/1")).json()["channels"]}
    assert set(channels) == {"email", "sms", "telegram_bot", "push"}
    assert channels["email"]["from_name"] == "The Shop"
    assert channels["telegram_bot"]["options"] == {"bot": "@shop_bot"}

    assert (await api.delete(f"{RS}/1/channels/sms")).status_code == 200
    assert error(await api.delete(f"{RS}/1/channels/sms"), 404) == "channel"


@pytest.mark.parametrize(
    ("channel", "body", "status", "path"),
    [
        ("email", {**EMAIL, "from_email": "nope"}, 422, "from_email"),
        ("email", {**EMAIL, "list_id": "news.other.org"}, 422, "list_id"),
        ("email", {**EMAIL, "kind": "sms"}, 422, "kind"),
        ("email", {"from_name": "Shop"}, 422, "from_email"),
        ("email", {**EMAIL, "bcc": "x@example.com"}, 422, "bcc"),
        ("sms", {"caller_id": "A VERY LONG SENDER NAME"}, 422, "caller_id"),
        (
            "push",
            {"platforms": ["safari"], "providers": ["fcm"], "firebase_api_key": "k"},
            422,
            "providers.0",
        ),
        ("viber", {"name": "whatsapp"}, 422, "name"),
        ("Viber", {}, 422, "name"),
        ("email", {**EMAIL, "expected_version": 0}, 409, "expected_version"),
    ],
    ids=[
        "malformed-email",
        "list-id-domain",
        "kind-of-another-channel",
        "missing-setting",
        "unknown-key",
        "bad-caller-id",
        "provider-platform-mismatch",
        "custom-name-mismatch",
        "bad-custom-name",
        "stale-version",
    ],
)
async def test_channel_refusals(
    api: httpx.AsyncClient, database: str, channel: str, body: dict[str, Any], status: int, path: str
) -> None:
    await create_resource(api)
    head = await log_head(api)
    assert error(await api.put(f"{RS}/1/channels/{channel}", json=body), status) == path
    assert await log_head(api) == head


async def test_unknown_resource(api: httpx.AsyncClient, database: str) -> None:
    assert error(await api.get(f"{RS}/5"), 404) == "resource_id"
    assert error(await api.put(f"{RS}/5/channels/sms", json={"caller_id": "SHOP"}), 404) == "resource_id"
    assert error(await api.patch(f"{RS}/5", json={"name": "X"}), 404) == "resource_id"
    assert (
        error(await api.post(f"{RS}/5/categories", json={"api_name": "a", "title": "A"}), 404)
        == "resource_id"
    )


async def test_subscription_fields(api: httpx.AsyncClient, database: str) -> None:
    await create_resource(api)
    url = f"{RS}/1/channels/email/fields"
    assert (await api.post(url, json={"name": "source", "type": "string"})).status_code == 200
    retitled = await api.post(
        url, json={"name": "source", "title": "Source", "type": "string", "expected_version": 3}
    )
    assert retitled.status_code == 200, retitled.text
    assert (await api.get(f"{RS}/1")).json()["subscription_fields"]["email"][0]["title"] == "Source"
    assert error(await api.post(url, json={"name": "source", "type": "int"}), 422) == "type"
    assert error(await api.post(url, json={"name": "when", "type": "date"}), 422) == "type"
    assert error(await api.post(url, json={"name": "x", "type": "int", "default": "x"}), 422) == "default"
    assert error(await api.post(url, json={"name": "x"}), 422) == "type"
    sms = f"{RS}/1/channels/sms/fields"
    assert error(await api.post(sms, json={"name": "x", "type": "int"}), 404) == "channel"
    assert (await api.delete(f"{url}/source")).status_code == 200
    assert error(await api.delete(f"{url}/source"), 404) == "name"
    assert (await api.get(f"{RS}/1")).json()["subscription_fields"]["email"] == []


async def test_categories(api: httpx.AsyncClient, database: str) -> None:
    await create_resource(api)
    url = f"{RS}/1/categories"
    added = await api.post(url, json={"api_name": "promo", "title": "Promotions"})
    assert added.status_code == 201, added.text
    assert error(await api.post(url, json={"api_name": "promo", "title": "Again"}), 409) == "api_name"
    assert error(await api.post(url, json={"api_name": "promo"}), 422) == "title"

    both = await api.patch(f"{url}/promo", json={"title": "Deals", "mandatory": True, "expected_version": 3})
    assert both.status_code == 200 and len(both.json()["event_ids"]) == 2
    [category] = (await api.get(f"{RS}/1")).json()["categories"]
    assert category == {
        "api_name": "promo",
        "title": "Deals",
        "in_subscription_manager": False,
        "mandatory": True,
    }
    assert (await api.patch(f"{url}/promo", json={"in_subscription_manager": True})).status_code == 200
    assert (await api.get(f"{RS}/1")).json()["categories"][0]["mandatory"] is True

    head = await log_head(api)
    assert error(await api.patch(f"{url}/promo", json={"title": " "}), 422) == "title"
    assert error(await api.patch(f"{url}/nope", json={"mandatory": True}), 404) == "api_name"
    assert (
        error(await api.patch(f"{url}/promo", json={"title": "X", "mandatory": "often"}), 422) == "mandatory"
    )
    assert await log_head(api) == head

    assert (await api.delete(f"{url}/promo")).status_code == 200
    assert error(await api.delete(f"{url}/promo"), 404) == "api_name"


async def test_unsubscribe_policy(api: httpx.AsyncClient, database: str) -> None:
    await create_resource(api)
    url = f"{RS}/1/unsubscribe-policy"
    delayed = {"mode": "delayed", "page_url": POLICY["page_url"], "timer_minutes": 10}
    assert (await api.put(url, json=delayed)).status_code == 200
    assert (await api.get(f"{RS}/1")).json()["unsubscribe_policy"]["timer_minutes"] == 10
    assert error(await api.put(url, json={**delayed, "timer_minutes": 31}), 422) == "timer_minutes"
    assert error(await api.put(url, json={"mode": "forbidden"}), 422) == "forbidden_explanation"
    assert (
        error(await api.put(url, json={"mode": "instant", "expected_version": 1}), 409) == "expected_version"
    )


async def test_delete(api: httpx.AsyncClient, herald: Herald, database: str) -> None:
    await create_resource(api)
    assert error(await api.delete(f"{RS}/1", params={"expected_version": 0}), 409) == "expected_version"
    assert (await api.delete(f"{RS}/1")).status_code == 200
    assert error(await api.get(f"{RS}/1"), 404) == "resource_id"
    assert error(await api.delete(f"{RS}/1"), 404) == "resource_id"
    assert error(await api.get(f"{RS}/1/subscribers"), 404) == "resource_id"
    herald.runtime.drain()
    assert (await api.get(RS)).json()["resources"] == []
    assert await create_resource(api) == "2"
