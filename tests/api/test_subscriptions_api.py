"""Subscriptions through HTTP: add, status, priority, fields, categories, DOI, remove, subscribers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from tests.builders import (
    RESOURCE,
    card,
    create_database,
    create_profile,
    create_resource,
    customers,
    error_of,
)

P = "/api/v1/profiles"
SUBSCRIBERS = f"/api/v1/resources/{RESOURCE}/subscribers"
ANN = {"resource_id": RESOURCE, "channel": "email", "contact": "ann@example.org"}


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)
    create_resource(herald)


@pytest.fixture
async def ann(api: httpx.AsyncClient) -> str:
    return await create_profile(api, {"email": "ann@example.org"})


async def _subscriptions(
    api: httpx.AsyncClient, herald: Herald, profile_id: str
) -> dict[tuple[str, str], Any]:
    return {(s["channel"], s["contact"]): s for s in (await card(api, herald, profile_id))["subscriptions"]}


async def _post(api: httpx.AsyncClient, profile_id: str, action: str, body: dict[str, Any]) -> httpx.Response:
    return await api.post(f"{P}/{profile_id}/subscriptions{action}", json=body)


async def test_add_then_change_status_priority_fields_and_categories(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    added = await _post(
        api,
        ann,
        "",
        {
            **ANN,
            "contact": "Ann@Example.org",
            "fields": {"source": "shop"},
            "device": {"browser": "Chrome"},
            "ip": "203.0.113.5",
        },
    )
    assert added.status_code == 200, added.text
    assert added.json()["stream"] == f"profile-{ann}" and len(added.json()["event_ids"]) == 1
    second = await _post(api, ann, "", {**ANN, "contact": "ann@work.example.com"})
    assert second.status_code == 200
    subs = await _subscriptions(api, herald, ann)
    first = subs["email", "ann@example.org"]
    assert first["status"] == "subscribed" and first["priority"] == 0
    assert first["fields"] == {"source": "shop"} and first["device"] == {"browser": "chrome"}
    assert first["ip"] == "203.0.113.5"
    assert subs["email", "ann@work.example.com"]["priority"] == 1

    assert (await _post(api, ann, "/status", {**ANN, "status": "suspended"})).status_code == 200
    assert (await _post(api, ann, "/priority", {**ANN, "priority": 5})).status_code == 200
    assert (await _post(api, ann, "/fields", {**ANN, "fields": {"source": "app"}})).status_code == 200
    categories = await _post(api, ann, "/categories", {**ANN, "categories": {"news": "unsubscribed"}})
    assert categories.status_code == 200
    changed = (await _subscriptions(api, herald, ann))["email", "ann@example.org"]
    assert changed["status"] == "suspended"
    assert changed["priority"] == 5
    assert changed["fields"] == {"source": "app"}
    assert changed["categories"] == {"news": "unsubscribed"}


async def test_re_adding_an_existing_subscription_changes_only_what_is_given(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    await _post(api, ann, "", ANN)
    await _post(api, ann, "/status", {**ANN, "status": "unsubscribed"})
    again = await _post(api, ann, "", ANN)
    assert again.status_code == 200 and again.json()["event_ids"] == []
    subs = await _subscriptions(api, herald, ann)
    assert subs["email", "ann@example.org"]["status"] == "unsubscribed"


async def test_double_opt_in_unconfirmed_becomes_subscribed_on_confirmation(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    await _post(api, ann, "", {**ANN, "status": "unconfirmed"})
    herald.runtime.drain()
    unconfirmed = (await api.get(SUBSCRIBERS, params={"status": "unconfirmed"})).json()["subscribers"]
    assert [s["profile_id"] for s in unconfirmed] == [ann]
    confirmed = await _post(api, ann, "/confirm", ANN)
    assert confirmed.status_code == 200 and len(confirmed.json()["event_ids"]) == 1
    assert (await _subscriptions(api, herald, ann))["email", "ann@example.org"]["status"] == "subscribed"
    again = await _post(api, ann, "/confirm", ANN)
    assert again.status_code == 200 and again.json()["event_ids"] == []
    history = (await api.get(f"{P}/{ann}/history")).json()["events"]
    change = next(e for e in history if e["type"] == "SubscriptionStatusChanged")
    assert change["data"]["cause"] == "doi_confirmed"


async def test_confirming_an_unsubscribed_contact_is_refused(api: httpx.AsyncClient, ann: str) -> None:
    await _post(api, ann, "", {**ANN, "status": "unsubscribed"})
    refused = await _post(api, ann, "/confirm", ANN)
    assert refused.status_code == 422
    assert error_of(refused)["path"] == "status"


async def test_remove_deletes_the_subscription(api: httpx.AsyncClient, herald: Herald, ann: str) -> None:
    await _post(api, ann, "", ANN)
    removed = await _post(api, ann, "/remove", ANN)
    assert removed.status_code == 200
    assert await _subscriptions(api, herald, ann) == {}
    again = await _post(api, ann, "/remove", ANN)
    assert again.status_code == 404
    assert error_of(again)["path"] == "contact"


async def test_sms_and_push_contacts(api: httpx.AsyncClient, herald: Herald, ann: str) -> None:
    sms = await _post(
        api, ann, "", {"resource_id": RESOURCE, "channel": "sms", "contact": "+7 (912) 345-67-89"}
    )
    assert sms.status_code == 200
    push = await _post(
        api, ann, "", {"resource_id": RESOURCE, "channel": "push", "contact": "tok", "provider": "fcm"}
    )
    assert push.status_code == 200
    no_provider = await _post(api, ann, "", {"resource_id": RESOURCE, "channel": "push", "contact": "tok2"})
    assert no_provider.status_code == 422 and error_of(no_provider)["path"] == "provider"
    wrong_provider = await _post(
        api, ann, "", {"resource_id": RESOURCE, "channel": "push", "contact": "t", "provider": "apns"}
    )
    assert wrong_provider.status_code == 422 and error_of(wrong_provider)["path"] == "provider"
    subs = await _subscriptions(api, herald, ann)
    assert ("sms", "+79123456789") in subs
    assert subs["push", "tok"]["provider"] == "fcm"
    status = await _post(
        api,
        ann,
        "/status",
        {
            "resource_id": RESOURCE,
            "channel": "push",
            "contact": "tok",
            "provider": "fcm",
            "status": "unsubscribed",
        },
    )
    assert status.status_code == 200


@pytest.mark.parametrize(
    ("action", "body", "status", "path"),
    [
        ("", {**ANN, "resource_id": "404"}, 404, "resource_id"),
        ("", {**ANN, "channel": "viber", "contact": "+79123456789"}, 422, "channel"),
        ("", {**ANN, "contact": "not-an-email"}, 422, "contact"),
        ("", {**ANN, "channel": "sms", "contact": "12"}, 422, "contact"),
        ("", {**ANN, "status": "maybe"}, 422, "status"),
        ("", {**ANN, "priority": -1}, 422, "priority"),
        ("", {**ANN, "fields": {"nope": 1}}, 422, "fields.nope"),
        ("", {**ANN, "device": {"colour": "red"}}, 422, "device.colour"),
        ("", {**ANN, "categories": {"nope": "unsubscribed"}}, 404, "categories.nope"),
        ("", {**ANN, "categories": {"service": "unsubscribed"}}, 422, "categories.service"),
        ("", {**ANN, "contact": "new@example.org", "ip": "::1"}, 422, "ip"),
        ("", {**ANN, "bogus": 1}, 422, "bogus"),
        ("", {"channel": "email", "contact": "ann@example.org"}, 422, "resource_id"),
        ("/status", {**ANN, "contact": "other@example.org", "status": "unsubscribed"}, 404, "contact"),
        ("/status", {**ANN, "status": "complainer", "cause": "form"}, 422, "status"),
        ("/priority", {**ANN, "priority": -3}, 422, "priority"),
        ("/fields", {**ANN, "fields": {"source": {"a": 1}}}, 422, "fields.source"),
        ("/categories", {**ANN, "categories": {"news": "maybe"}}, 422, "categories.news"),
    ],
    ids=[
        "unknown-resource",
        "disabled-channel",
        "bad-email",
        "bad-phone",
        "bad-status",
        "negative-priority",
        "unknown-field",
        "unknown-device-field",
        "unknown-category",
        "mandatory-category",
        "ipv6",
        "unknown-key",
        "no-resource",
        "unknown-subscription",
        "cause-cannot",
        "priority",
        "field-type",
        "category-status",
    ],
)
async def test_bad_subscription_input_names_the_field_and_writes_nothing(
    api: httpx.AsyncClient,
    herald: Herald,
    ann: str,
    action: str,
    body: dict[str, Any],
    status: int,
    path: str,
) -> None:
    await _post(api, ann, "", ANN)
    before = herald.store.head_position()
    response = await _post(api, ann, action, body)
    assert response.status_code == status, response.text
    assert error_of(response)["path"] == path
    assert herald.store.head_position() == before


async def test_a_resource_of_another_database_refuses_the_profile(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    create_database(herald, "2")
    create_resource(herald, "8", database_ids=("2",))
    ann = await create_profile(api, {"email": "ann@example.org"})
    refused = await _post(api, ann, "", {**ANN, "resource_id": "8"})
    assert refused.status_code == 422
    assert error_of(refused)["path"] == "resource_id"


async def test_subscription_commands_on_unknown_or_deleted_profiles_are_404(
    api: httpx.AsyncClient, ann: str
) -> None:
    assert (await _post(api, "nobody", "", ANN)).status_code == 404
    await api.delete(f"{P}/{ann}")
    assert (await _post(api, ann, "", ANN)).status_code == 404
    assert (await _post(api, ann, "/status", {**ANN, "status": "unsubscribed"})).status_code == 404


async def test_a_stale_expected_version_is_409(api: httpx.AsyncClient, herald: Herald, ann: str) -> None:
    version = (await card(api, herald, ann))["version"]
    ok = await _post(api, ann, "", {**ANN, "expected_version": version})
    assert ok.status_code == 200 and ok.json()["stream_version"] == version + 1
    before = herald.store.head_position()
    stale = await _post(api, ann, "/status", {**ANN, "status": "unsubscribed", "expected_version": version})
    assert stale.status_code == 409
    assert error_of(stale)["path"] == "expected_version"
    assert herald.store.head_position() == before


# --- subscriber lists --------------------------------------------------------------------------


async def test_subscribers_by_channel_and_status(api: httpx.AsyncClient, herald: Herald) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    bob = await create_profile(api, {"email": "bob@example.org"})
    await _post(api, ann, "", ANN)
    await _post(api, ann, "", {"resource_id": RESOURCE, "channel": "sms", "contact": "+79123456789"})
    await _post(api, bob, "", {**ANN, "contact": "bob@example.org", "status": "unsubscribed"})
    herald.runtime.drain()

    async def listed(**params: str) -> list[tuple[str, str, str]]:
        response = await api.get(SUBSCRIBERS, params=params)
        assert response.status_code == 200, response.text
        return sorted((s["profile_id"], s["channel"], s["status"]) for s in response.json()["subscribers"])

    assert await listed() == sorted(
        [(ann, "email", "subscribed"), (ann, "sms", "subscribed"), (bob, "email", "unsubscribed")]
    )
    assert await listed(channel="email") == sorted(
        [(ann, "email", "subscribed"), (bob, "email", "unsubscribed")]
    )
    assert await listed(channel="email", status="subscribed") == [(ann, "email", "subscribed")]
    assert await listed(status="unsubscribed") == [(bob, "email", "unsubscribed")]
    assert (await api.get(SUBSCRIBERS, params={"status": "nope"})).status_code == 422
    assert (await api.get("/api/v1/resources/404/subscribers")).status_code == 404


async def test_subscriber_pages_lose_nothing_when_a_profile_has_several_subscriptions(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    expected = []
    for name in ("ann", "bob"):
        profile_id = await create_profile(api, {"email": f"{name}@example.org"})
        for n in range(3):
            contact = f"{name}{n}@example.org"
            await _post(api, profile_id, "", {**ANN, "contact": contact})
            expected.append((profile_id, contact))
    herald.runtime.drain()
    seen: list[tuple[str, str]] = []
    after = ""
    for _ in range(10):
        page = (await api.get(SUBSCRIBERS, params={"limit": 2, "after": after})).json()
        seen += [(s["profile_id"], s["contact"]) for s in page["subscribers"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(expected)
    bad_cursor = await api.get(SUBSCRIBERS, params={"after": "not-a-cursor"})
    assert bad_cursor.status_code == 422 and error_of(bad_cursor)["path"] == "after"
