"""An SMS campaign sent by the SMS worker through an HTTP gateway account (BulkSMS JSON v1) instead
of an SMPP one, its delivery reports posted to the sender's webhook.

The sender is chosen by its settings (`bulksms` instead of `smpp`), its token secret sealed as the
sender's password; the campaign goes to the local BulkSMS server, which asks Basic auth and keeps
the deduplication id; the reports it would post settle the messages.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests import channel_servers as cs
from tests.builders import RESOURCE, create_resource, customers, import_rows, launched_message

SENDER = "gateway-1"
PHONES = ("+79161234567", "+79160000002")


async def gateway_sender(api: httpx.AsyncClient, server: cs.BulkSmsServer, await_seconds: int = 300) -> str:
    """The sender set by the API; its report webhook's path."""
    sender = {
        "name": "BulkSMS",
        "channel": "sms",
        "bulksms": {"base_url": server.base_url, "username": server.username},
        "password": server.password,
        "await_delivery_seconds": await_seconds,
    }
    assert (await api.put(f"/api/v1/senders/{SENDER}", json=sender)).status_code == 200
    rules = {"name": "SMS", "rules": [{"targets": [{"sender_id": SENDER, "percent": 100}]}]}
    assert (await api.put("/api/v1/virtual-senders/default_sms", json=rules)).status_code == 200
    shown = (await api.get(f"/api/v1/senders/{SENDER}")).json()
    assert shown["has_password"] and "password" not in shown
    return str(shown["report_webhook"])


def statuses(herald: Herald) -> dict[str, str]:
    herald.runtime.drain()
    return {
        phone: herald.deliveries.message(m).state.status
        for m in {
            e.stream.removeprefix("message-") for e in herald.store.read_all() if e.type == "MessageQueued"
        }
        for phone in [herald.deliveries.queued(m).contact]
    }


async def test_an_sms_campaign_goes_out_through_the_http_gateway_and_its_webhook_settles_it(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    create_resource(herald)
    async with cs.bulksms_server() as server:
        webhook = await gateway_sender(api, server)
        rows = [{"subscriptions": [{"resource_id": RESOURCE, "channel": "sms", "phone": p}]} for p in PHONES]
        await import_rows(api, rows)
        await launched_message(api, herald, "sms", {"sms": {"body": "Sale: https://shop.example.com/sale"}})
        assert await herald.sms.run_once() == 2
        await herald.sms.close()
    by_phone = {r.address: r for r in server.received}
    assert set(by_phone) == set(PHONES)
    sent = by_phone[PHONES[0]]
    assert sent.body["from"] == "Shop" and sent.key is not None  # the resource's Caller ID; dedup id
    assert "https://trk.example.com/s/" in sent.body["body"]  # the link shortened
    assert statuses(herald) == dict.fromkeys(PHONES, "accepted")  # awaiting their reports
    first, second = (
        next(r.body["userSuppliedId"] for r in server.received if r.address == p) for p in PHONES
    )
    [id_1], [id_2] = (herald.deliveries.message(m).state.provider_ids for m in (first, second))
    delivered, failed = server.report(id_1), server.report(id_2, "FAILED", "EXPIRED")
    for report in (delivered, failed):
        posted = await api.post(webhook, content=report, headers={"Content-Type": "application/json"})
        assert posted.status_code == 200, posted.text
    assert statuses(herald) == {PHONES[0]: "delivered", PHONES[1]: "not_delivered"}
    forged = await api.post(webhook.rpartition("/")[0] + "/forged", content=delivered)
    assert forged.status_code == 404
    garbled = await api.post(webhook, content=b'{"id": 1}', headers={"Content-Type": "application/json"})
    assert garbled.status_code == 422


async def test_a_gateway_sender_without_a_wait_takes_accepted_as_delivered_and_retries_a_throttle(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    customers(herald)
    create_resource(herald)
    server = cs.BulkSmsServer(behaviour={PHONES[0]: "throttle"})
    async with cs.bulksms_server(server):
        await gateway_sender(api, server, await_seconds=0)
        rows = [{"subscriptions": [{"resource_id": RESOURCE, "channel": "sms", "phone": PHONES[0]}]}]
        await import_rows(api, rows)
        await launched_message(api, herald, "sms", {"sms": {"body": "Hi"}})
        assert await herald.sms.run_once() == 1
        assert statuses(herald) == {PHONES[0]: "soft_bounced"}
        server.behaviour.clear()
        clock.advance(timedelta(hours=1))
        herald.runtime.drain()
        assert await herald.sms.run_once() == 1
        await herald.sms.close()
    assert statuses(herald) == {PHONES[0]: "delivered"}
    assert len({r.key for r in server.received}) == 1  # the resend carried the same deduplication id


async def test_a_gateway_sender_needs_its_username_and_token_secret(api: httpx.AsyncClient) -> None:
    sender = {"name": "BulkSMS", "channel": "sms", "bulksms": {"username": "id"}}
    missing = await api.put(f"/api/v1/senders/{SENDER}", json=sender)
    assert missing.status_code == 422 and missing.json()["error"]["path"] == "password"
    blank = await api.put(
        f"/api/v1/senders/{SENDER}", json={**sender, "bulksms": {"username": ""}, "password": "s"}
    )
    assert blank.status_code == 422 and blank.json()["error"]["path"] == "bulksms.username"
