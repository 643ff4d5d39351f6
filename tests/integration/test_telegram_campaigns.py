"""A Telegram bot campaign sent by the Telegram worker through a bot sender to the local Bot API server.

The sender (a bot, its token sealed) and the default virtual sender are set by the API, profiles are
imported with their chat ids, the campaign is launched and the generic worker sends it: the text is
personalised, in the template's parse mode, with its URL button click-tracked; the Bot API's answer
is the delivery, a chat that blocked the bot is a hard bounce that ends its subscription, and a
throttled one is retried after the wait Telegram asked for.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from herald.api.wiring import Herald
from herald.domain.deliveries import RETRY_BACKOFF
from herald.domain.scenario_capture import ImportCapture
from herald.infra.clock import ManualClock
from tests import channel_servers as cs
from tests import scenario_builders as sb
from tests.builders import (
    RESOURCE,
    import_rows,
    launched_message,
    march_summary,
    telegram_bot_resource,
)

SENDER = "bot-1"
CONTENT = {
    "telegram_bot": {
        "text": '<b>Hi {lead._fname}</b>, the sale: https://shop.example.com/sale <a href="https://shop.example.com/?a=1&amp;b=2">more</a>',
        "parse_mode": "HTML",
        "buttons": [{"text": "Shop now", "url": "https://shop.example.com/?u={lead._fname}"}],
    }
}


async def bot_sender(api: httpx.AsyncClient, server: cs.TelegramServer) -> None:
    sender = {
        "name": "Shop bot",
        "channel": "telegram_bot",
        "telegram": {"base_url": server.base_url},
        "bot_token": server.token,
    }
    assert (await api.put(f"/api/v1/senders/{SENDER}", json=sender)).status_code == 200
    rules = {"name": "Telegram", "rules": [{"targets": [{"sender_id": SENDER, "percent": 100}]}]}
    assert (await api.put("/api/v1/virtual-senders/default_telegram_bot", json=rules)).status_code == 200


async def chats(api: httpx.AsyncClient, *chat_ids: str) -> list[str]:
    rows = [
        {
            "_fname": f"Ann{i}",
            "subscriptions": [{"resource_id": RESOURCE, "channel": "telegram_bot", "chat_id": chat}],
        }
        for i, chat in enumerate(chat_ids)
    ]
    results = (await import_rows(api, rows))["results"]
    assert all("profile_id" in r for r in results), results
    return [r["profile_id"] for r in results]


def events(herald: Herald, kind: str) -> list[dict[str, Any]]:
    herald.runtime.drain()
    return [e.data for e in herald.store.read_all() if e.type == kind]


async def test_a_campaign_reaches_the_chats_and_a_blocked_bot_ends_its_subscription(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    telegram_bot_resource(herald)
    async with cs.telegram_server(cs.TelegramServer(behaviour={"555002": "gone"})) as server:
        await bot_sender(api, server)
        shown = (await api.get(f"/api/v1/senders/{SENDER}")).json()
        assert shown["has_bot_token"] and "bot_token" not in shown
        _, bob = await chats(api, "555001", "555002")
        await launched_message(api, herald, "telegram_bot", CONTENT)
        assert await herald.telegram.run_once() == 2
        await herald.telegram.close()
    to_ann = next(r for r in server.received if r.address == "555001")
    assert to_ann.body["parse_mode"] == "HTML"
    text = to_ann.body["text"]
    assert text.startswith("<b>Hi Ann0</b>, the sale: https://trk.example.com/t/click/")
    more = text.split('<a href="https://trk.example.com')[1].split('"')[0]
    clicked = await api.get(more)  # an href's entities decoded: the link goes where the author meant
    assert clicked.status_code == 302 and clicked.headers["location"] == "https://shop.example.com/?a=1&b=2"
    [[button]] = to_ann.body["reply_markup"]["inline_keyboard"]
    assert button["text"] == "Shop now" and button["url"].startswith("https://trk.example.com/t/click/")
    clicked = await api.get(button["url"].removeprefix("https://trk.example.com"))
    assert clicked.status_code == 302 and clicked.headers["location"] == "https://shop.example.com/?u=Ann0"
    delivered = events(herald, "MessageDelivered")
    assert [d["sender_id"] for d in delivered] == [SENDER]
    [bounced] = events(herald, "MessageHardBounced")
    assert "blocked" in bounced["response"]
    [gone] = [e for e in events(herald, "SubscriptionStatusChanged") if e["channel"] == "telegram_bot"]
    assert (gone["profile_id"], gone["contact"], gone["to_status"]) == (bob, "555002", "hard_bounced")
    campaign_id = herald.deliveries.queued(delivered[0]["message_id"]).campaign_id
    progress = (await api.get(f"/api/v1/campaigns/{campaign_id}/progress")).json()["campaign"]
    assert {k: progress.get(k) for k in ("queued", "delivered", "undelivered", "delivering")} == {
        "queued": 2,
        "delivered": 1,
        "undelivered": 1,
        "delivering": 0,
    }


async def test_a_throttled_chat_is_a_soft_bounce_sent_again_later(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    telegram_bot_resource(herald)
    server = cs.TelegramServer(behaviour={"555001": "throttle"})
    async with cs.telegram_server(server):
        await bot_sender(api, server)
        await chats(api, "555001")
        await launched_message(api, herald, "telegram_bot", CONTENT)
        assert await herald.telegram.run_once() == 1
        herald.runtime.drain()
        [soft] = events(herald, "MessageSoftBounced")
        assert soft["code"] == 429
        assert await herald.telegram.run_once() == 0  # not due again yet
        server.behaviour.clear()
        clock.advance(RETRY_BACKOFF[0] + timedelta(seconds=3))
        herald.runtime.drain()
        assert await herald.telegram.run_once() == 1
        await herald.telegram.close()
    assert len(server.received) == 2
    assert [e["message_id"] for e in events(herald, "MessageDelivered")]


async def test_the_summary_counts_the_telegram_channel(
    reporting_api: httpx.AsyncClient, reporting: Herald, clock: ManualClock
) -> None:
    telegram_bot_resource(reporting)
    async with cs.telegram_server(cs.TelegramServer(behaviour={"555002": "gone"})) as server:
        await bot_sender(reporting_api, server)
        await chats(reporting_api, "555001", "555002")
        await launched_message(reporting_api, reporting, "telegram_bot", CONTENT)
        assert await reporting.telegram.run_once() == 2
        await reporting.telegram.close()
    link = next(r for r in server.received if r.address == "555001").body["reply_markup"]
    clock.advance(timedelta(minutes=5))  # a person, not a link preview fetched at the delivery
    desktop = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"
    url = link["inline_keyboard"][0][0]["url"].removeprefix("https://trk.example.com")
    assert (await reporting_api.get(url, headers={"User-Agent": desktop})).status_code == 302
    expected = {
        "telegram_bot_sent": 2,
        "telegram_bot_delivered": 1,
        "telegram_bot_hard_bounces": 1,
        "telegram_bot_unique_clicks": 1,
        "telegram_bot_delivery_rate": 1 / 2,
        "sms_sent": 0,
    }
    assert await march_summary(reporting_api, reporting, tuple(expected)) == expected


async def test_a_scenarios_campaign_node_writes_to_the_profiles_chat(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    """A scenario started by an import sends its Telegram trigger campaign through the same worker."""
    telegram_bot_resource(herald)
    welcome = sb.trigger(herald, "Welcome", channel="telegram_bot")
    sb.scenario(herald, sb.graph(sb.campaign_node("1", welcome)), capture=ImportCapture())
    herald.runtime.drain()
    async with cs.telegram_server() as server:
        await bot_sender(api, server)
        [profile_id] = await chats(api, "555001")
        herald.runtime.drain()
        assert list(sb.messages_of(herald, welcome)) == [profile_id]
        assert await herald.telegram.run_once() == 1
        await herald.telegram.close()
    [sent] = server.received
    assert (sent.address, sent.body["text"]) == ("555001", "Welcome 1: hi Ann0")
    assert [d["campaign_id"] for d in events(herald, "MessageDelivered")] == [welcome]
