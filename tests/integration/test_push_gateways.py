"""Push and messenger gateways beyond the shared contract: payloads as decrypted or decoded, auth reuse."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from herald.senders.apns import ApnsGateway
from herald.senders.fcm import FcmGateway, FcmSettings, ServiceAccount
from herald.senders.gateway import Accepted, Outbound, PermanentFailure, TemporaryFailure
from herald.senders.telegram import TelegramGateway, TelegramSettings
from herald.senders.webpush import WebPushGateway, WebPushSettings
from tests import channel_servers as cs

LINKS = {"ack": "https://trk.example.com/t/ack/abc", "open": "https://trk.example.com/t/open/abc"}


def push(message_id: str, address: str) -> Outbound:
    return Outbound(
        message_id,
        address,
        text="Наш ассортимент пополнился",
        title="Новое в ассортименте",
        icon="https://cdn.example.com/icon.png",
        click_url="https://shop.example.com/new",
        deep_link="myapp://new",
        data=LINKS,
    )


async def test_web_push_is_encrypted_for_the_browser_and_signed_with_vapid() -> None:
    async with cs.push_service() as service:
        browser = service.browser()
        gateway = WebPushGateway(
            WebPushSettings(vapid_private_key=cs.vapid_key_pem(), subject="mailto:ops@example.com")
        )
        first = await gateway.send(push("m-1", browser.address()))
        await gateway.send(push("m-2", browser.address()))
        await gateway.close()
    assert isinstance(first, Accepted) and first.provider_ids[0].startswith("/message/")
    payload = service.received[0].body  # what the browser's service worker gets, decrypted
    assert payload == {
        "title": "Новое в ассортименте",
        "body": "Наш ассортимент пополнился",
        "message_id": "m-1",
        "icon": "https://cdn.example.com/icon.png",
        "url": "https://shop.example.com/new",
        "hub_link": LINKS,
    }
    headers = [r.headers for r in service.received]
    assert headers[0]["vapid-sub"] == "mailto:ops@example.com" and headers[0]["ttl"] == "86400"
    assert len(headers[0]["topic"]) == 32 and headers[0]["topic"] != headers[1]["topic"]
    # one VAPID token per push service origin, reused
    assert headers[0]["authorization"] == headers[1]["authorization"]


async def test_a_malformed_web_push_subscription_is_refused_before_sending() -> None:
    gateway = WebPushGateway(WebPushSettings(vapid_private_key=cs.vapid_key_pem(), subject="mailto:o@e.com"))
    for address in ("not json", '{"endpoint": "https://push.example/x"}'):
        try:
            await gateway.send(push("m", address))
        except ValueError:
            continue
        raise AssertionError(f"{address!r} was sent")
    await gateway.close()


async def test_fcm_reuses_its_bearer_token_and_gets_a_new_one_when_it_is_refused() -> None:
    async with cs.fcm_server() as server:
        gateway = FcmGateway(
            FcmSettings(service_account=ServiceAccount(**server.account), base_url=server.base_url)
        )
        outcomes = [await gateway.send(push(f"m-{i}", "device-1")) for i in range(3)]
        server._tokens.clear()  # the token was revoked
        refused = await gateway.send(push("m-3", "device-1"))
        again = await gateway.send(push("m-4", "device-1"))
        await gateway.close()
    assert all(isinstance(o, Accepted) for o in outcomes) and isinstance(again, Accepted)
    assert isinstance(refused, TemporaryFailure) and refused.code == 401
    assert server.tokens_issued == 2
    message = server.received[0].body
    assert message["notification"] == {
        "title": "Новое в ассортименте",
        "body": "Наш ассортимент пополнился",
        "image": "https://cdn.example.com/icon.png",
    }
    assert message["data"] == {
        **LINKS,
        "message_id": "m-0",
        "url": "https://shop.example.com/new",
        "deep_link": "myapp://new",
    }
    assert message["android"]["notification"] == {"click_action": "myapp://new"}


async def test_fcm_with_a_key_the_token_endpoint_refuses_sends_nothing() -> None:
    async with cs.fcm_server() as server:
        other = cs.service_account(server.account["token_uri"]) | {
            "client_email": server.account["client_email"]
        }
        gateway = FcmGateway(FcmSettings(service_account=ServiceAccount(**other), base_url=server.base_url))
        outcome = await gateway.send(push("m", "device-1"))
        await gateway.close()
    assert isinstance(outcome, TemporaryFailure) and outcome.code == 400 and server.received == []


async def test_apns_sends_many_streams_over_one_connection_with_the_message_ids(tmp_path: Path) -> None:
    async with cs.apns_server(tmp_path) as (server, ca):
        gateway = ApnsGateway(cs.apns_settings(server, ca))
        ids = [str(uuid.UUID(int=i)) for i in range(1, 21)]
        outcomes = await asyncio.gather(*(gateway.send(push(i, "ab" * 32)) for i in ids))
        await gateway.close()
    assert [o.provider_ids for o in outcomes if isinstance(o, Accepted)] == [(i.upper(),) for i in ids]
    assert server.connections == 1
    received = server.received[0]
    assert received.headers["apns-push-type"] == "alert" and received.headers["apns-topic"] == server.topic
    assert received.body["aps"]["alert"] == {
        "title": "Новое в ассортименте",
        "body": "Наш ассортимент пополнился",
    }
    assert received.body["hub_link"] == LINKS and received.body["deep_link"] == "myapp://new"


async def test_apns_with_a_foreign_signing_key_is_refused_as_the_providers_problem(tmp_path: Path) -> None:
    async with cs.apns_server(tmp_path) as (server, ca):
        gateway = ApnsGateway(cs.apns_settings(server, ca, signing_key=cs.vapid_key_pem()))
        outcome = await gateway.send(push("m", "ab" * 32))
        await gateway.close()
    assert isinstance(outcome, TemporaryFailure) and outcome.response == "InvalidProviderToken"


async def test_telegram_waits_as_long_as_told_and_refuses_an_overlong_text_unsent() -> None:
    async with cs.telegram_server() as server:
        server.behaviour = {"7": "throttle"}
        gateway = TelegramGateway(TelegramSettings(bot_token=server.token, base_url=server.base_url))
        throttled = await gateway.send(Outbound("m", "7", "hi"))
        overlong = await gateway.send(Outbound("m", "8", "x" * 4097))
        await gateway.close()
    assert isinstance(throttled, TemporaryFailure) and throttled.retry_after_seconds == 3
    assert isinstance(overlong, PermanentFailure) and [r.address for r in server.received] == ["7"]
