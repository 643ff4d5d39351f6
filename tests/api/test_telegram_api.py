"""Telegram bot subscriptions end to end: a start link for a profile, /start on the webhook, a message out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from herald.senders.gateway import Accepted, Outbound
from herald.senders.telegram import TelegramGateway, TelegramSettings
from tests import channel_servers as cs
from tests.builders import RESOURCE, import_rows, telegram_bot_resource

SECRET = "x-telegram-bot-api-secret-token"


@pytest.fixture
def bot(herald: Herald) -> str:
    telegram_bot_resource(herald)
    return herald.catalog.resource(RESOURCE).token


def start(chat_id: int, text: str) -> dict[str, Any]:
    sender = {"id": chat_id, "is_bot": False, "first_name": "Ann", "last_name": "Lee"}
    chat = {"id": chat_id, "type": "private", "first_name": "Ann"}
    return {
        "update_id": 1,
        "message": {"message_id": 7, "from": sender, "chat": chat, "date": 0, "text": text},
    }


def chats(herald: Herald) -> list[tuple[str, str]]:
    herald.runtime.drain()
    return [
        (e.stream.removeprefix("profile-"), e.data["contact"])
        for e in herald.store.read_all()
        if e.type == "SubscriptionAdded" and e.data["channel"] == "telegram_bot"
    ]


async def test_the_start_link_subscribes_its_profile_with_the_chat_id_and_the_bot_can_write_to_it(
    api: httpx.AsyncClient, herald: Herald, bot: str
) -> None:
    profile_id = (await import_rows(api, [{"email": "ann@example.org"}]))["results"][0]["profile_id"]
    link = await api.get(
        f"/api/v1/resources/{RESOURCE}/telegram/start-link", params={"profile_id": profile_id}
    )
    assert link.status_code == 200, link.text
    body = link.json()
    assert body["url"].startswith("https://t.me/shop_bot?start=") and len(body["url"].split("=")[1]) <= 64
    assert body["webhook_url"] == f"https://trk.example.com/telegram/{bot}/updates"
    code = body["url"].split("=", 1)[1]
    answered = await api.post(
        f"/telegram/{bot}/updates",
        json=start(555001, f"/start {code}"),
        headers={SECRET: body["secret_token"]},
    )
    assert answered.status_code == 200
    assert chats(herald) == [(profile_id, "555001")]
    async with cs.telegram_server() as server:
        gateway = TelegramGateway(TelegramSettings(bot_token=server.token, base_url=server.base_url))
        outcome = await gateway.send(Outbound("m-1", chats(herald)[0][1], "Новая коллекция!"))
        await gateway.close()
    assert isinstance(outcome, Accepted) and server.received[0].body == {
        "chat_id": "555001",
        "text": "Новая коллекция!",
    }


async def test_a_plain_or_forged_start_makes_a_new_profile_named_from_telegram(
    api: httpx.AsyncClient, herald: Herald, bot: str
) -> None:
    secret = (await api.get(f"/api/v1/resources/{RESOURCE}/telegram/start-link")).json()["secret_token"]
    forged = "0" * 24 + "-" + "A" * 22
    response = await api.post(
        f"/telegram/{bot}/updates", json=start(777, f"/start {forged}"), headers={SECRET: secret}
    )
    assert response.status_code == 200
    [(profile_id, chat)] = chats(herald)
    assert chat == "777"
    assert (await api.get(f"/api/v1/profiles/{profile_id}")).json()["fields"]["_fname"] == "Ann"


async def test_an_update_without_the_secret_is_refused_and_others_are_ignored(
    api: httpx.AsyncClient, herald: Herald, bot: str
) -> None:
    secret = (await api.get(f"/api/v1/resources/{RESOURCE}/telegram/start-link")).json()["secret_token"]
    head = herald.store.head_position()
    assert (await api.post(f"/telegram/{bot}/updates", json=start(1, "/start"))).status_code == 403
    assert (
        await api.post(f"/telegram/{bot}/updates", json=start(1, "/start"), headers={SECRET: "x"})
    ).status_code == 403
    for update in (start(1, "hello"), {"update_id": 2, "edited_message": {}}):
        assert (
            await api.post(f"/telegram/{bot}/updates", json=update, headers={SECRET: secret})
        ).status_code == 200
    assert herald.store.head_position() == head


async def test_a_chat_id_is_a_number(api: httpx.AsyncClient, herald: Herald, bot: str) -> None:
    row = {"subscriptions": [{"resource_id": RESOURCE, "channel": "telegram_bot", "chat_id": "@someone"}]}
    response = await api.post("/api/v1/databases/1/profiles/import", json={"rows": [row]})
    assert response.json()["results"][0]["error"]["path"] == "rows.0.subscriptions.0.chat_id"
