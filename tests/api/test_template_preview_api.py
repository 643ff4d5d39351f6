"""Previewing a template over HTTP for each channel: a real profile and its subscription, or sample data."""

from __future__ import annotations

import httpx
import pytest

from herald.api.wiring import Herald
from tests.builders import RESOURCE, create_profile, create_resource, customers, email_subscription

TS = "/api/v1/templates"
CONTENT = {
    "email": {
        "subject": "Hi {lead._fname} ({subscription.email_domain})",
        "html": '<p>{lead._fname} from {listname}</p><a href="https://shop.example.com/{lead.crm_id}">Shop</a>'
        '<a href="{unsubscribe}">Unsubscribe</a>',
    },
    "sms": {"body": "{lead._fname}, sale at https://shop.example.com/s/{lead.crm_id}"},
    "push": {
        "title": "Hi {lead._fname}",
        "body": "Sale",
        "click_url": "https://shop.example.com/{lead.crm_id}",
    },
    "defaults": {"lead._fname": "friend"},
}


@pytest.fixture
async def ann(api: httpx.AsyncClient, herald: Herald) -> str:
    customers(herald)
    create_resource(herald)
    return await create_profile(
        api,
        {
            "email": "ann@example.org",
            "_fname": "Ann",
            "crm_id": "c-1",
            "subscriptions": [email_subscription("ann@example.org")],
        },
    )


@pytest.fixture
async def template(api: httpx.AsyncClient) -> str:
    response = await api.post(TS, json={"name": "Sale", "content": CONTENT, "draft": True})
    assert response.status_code == 201, response.text
    return str(response.json()["template_id"])


async def test_email_preview_for_a_profile_and_its_subscription(
    api: httpx.AsyncClient, herald: Herald, ann: str, template: str
) -> None:
    head = herald.store.head_position()
    response = await api.post(
        f"{TS}/{template}/preview", json={"channel": "email", "profile_id": ann, "resource_id": RESOURCE}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    email = body["email"]
    assert email["subject"] == "Hi Ann (example.org)"
    assert email["html"].startswith("<p>Ann from Customers 1</p>")
    assert '<a href="https://shop.example.com/c-1">Shop</a>' in email["html"]  # not a tracking redirect
    assert '<a href="#unsubscribe">Unsubscribe</a>' in email["html"]
    assert "<img" not in email["html"]  # no pixel in a preview
    assert email["text"].startswith("Ann from Customers 1")
    # the template sets no From: the resource's email channel's, as the message would be sent
    assert (email["from_name"], email["from_email"]) == ("Shop", "news@example.com")
    assert [(link["id"], link["url"], link["kind"]) for link in body["links"]] == [
        ("html.1", "https://shop.example.com/c-1", "custom"),
        ("html.2", "#unsubscribe", "unsubscribe"),
        ("text.1", "https://shop.example.com/c-1", "custom"),  # the text version made from the HTML
    ]
    assert (body["content_version"], body["channel"]) == (1, "email")
    assert herald.store.head_position() == head  # a preview records nothing


async def test_sms_and_push_previews_with_sample_data(api: httpx.AsyncClient, template: str) -> None:
    sample = {"lead": {"crm_id": "x-9"}}
    sms = (await api.post(f"{TS}/{template}/preview", json={"channel": "sms", **sample})).json()["sms"]
    assert sms == {
        "body": "friend, sale at https://shop.example.com/s/x-9",
        "encoding": "gsm7",
        "characters": 46,
        "parts": 1,
    }
    push = (await api.post(f"{TS}/{template}/preview", json={"channel": "push", **sample})).json()["push"]
    assert (push["title"], push["body"], push["click_url"]) == (
        "Hi friend",
        "Sale",
        "https://shop.example.com/x-9",
    )


async def test_preview_of_an_earlier_version_and_bad_requests(api: httpx.AsyncClient, template: str) -> None:
    changed = {**CONTENT, "sms": {"body": "v2 {lead._fname}"}}
    assert (await api.patch(f"{TS}/{template}", json={"content": changed})).status_code == 200
    current = await api.post(f"{TS}/{template}/preview", json={"channel": "sms"})
    assert current.json()["sms"]["body"] == "v2 friend"
    first = await api.post(f"{TS}/{template}/preview", json={"channel": "sms", "content_version": 1})
    assert first.json()["sms"]["body"].startswith("friend, sale at")
    missing = await api.post(f"{TS}/{template}/preview", json={"channel": "sms", "content_version": 9})
    assert missing.status_code == 404
    unknown = await api.post(f"{TS}/{template}/preview", json={"channel": "sms", "profile_id": "nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"]["path"] == "profile_id"
    bad = await api.post(f"{TS}/{template}/preview", json={"channel": "fax"})
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "channel"


async def test_preview_of_a_channel_the_template_lacks_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(TS, json={"name": "Only SMS", "content": {"sms": {"body": "hi"}}})
    template_id = response.json()["template_id"]
    response = await api.post(f"{TS}/{template_id}/preview", json={"channel": "email"})
    assert response.status_code == 422 and response.json()["error"]["path"] == "channel"


async def test_a_template_s_own_from_wins_over_the_resource_s(api: httpx.AsyncClient, ann: str) -> None:
    own = {"subject": "Hi", "html": "<p>Hi</p>", "from_name": "{lead._fname}'s shop"}
    created = await api.post(
        TS, json={"name": "Own", "content": {"email": {**own, "reply_to_email": "help@example.com"}}}
    )
    assert created.status_code == 201, created.text
    template = created.json()["template_id"]
    body = {"channel": "email", "profile_id": ann, "resource_id": RESOURCE}
    email = (await api.post(f"{TS}/{template}/preview", json=body)).json()["email"]
    assert (email["from_name"], email["from_email"]) == ("Ann's shop", "news@example.com")
    assert email["reply_to_email"] == "help@example.com"
    unnamed = (await api.post(f"{TS}/{template}/preview", json={"channel": "email"})).json()["email"]
    assert unnamed["from_email"] == ""  # no resource named: nothing to take it from


async def test_a_telegram_preview_shows_the_text_its_parse_mode_and_buttons(api: httpx.AsyncClient) -> None:
    telegram = {
        "text": "<b>Hi {lead._fname}</b>: https://shop.example.com/{lead.crm_id}",
        "parse_mode": "HTML",
        "buttons": [{"text": "Open {lead.crm_id}", "url": "https://shop.example.com/b/{lead.crm_id}"}],
    }
    made = await api.post(TS, json={"name": "Bot", "content": {"telegram_bot": telegram}})
    assert made.status_code == 201, made.text
    sample = {"channel": "telegram_bot", "lead": {"_fname": "Ann", "crm_id": "x-9"}}
    shown = await api.post(f"{TS}/{made.json()['template_id']}/preview", json=sample)
    assert shown.status_code == 200, shown.text
    assert shown.json()["telegram_bot"] == {
        "text": "<b>Hi Ann</b>: https://shop.example.com/x-9",  # a preview's links are their own URLs
        "parse_mode": "HTML",
        "disable_link_preview": False,
        "buttons": [["Open x-9", "https://shop.example.com/b/x-9"]],
    }
    bad = {"telegram_bot": {**telegram, "buttons": [{"text": "Go", "url": "shop.example.com"}]}}
    refused = await api.post(TS, json={"name": "Bad", "content": bad})
    assert (
        refused.status_code == 422 and refused.json()["error"]["path"] == "content.telegram_bot.buttons.0.url"
    )
