"""An SMS campaign sent by the SMS worker through an SMPP sender, settled by the SMSC's receipts.

The sender (an SMPP account with its "await delivery") and the virtual sender are set by the API,
the campaign is launched, and the generic worker sends it to the loopback SMSC: the submits carry
the resource's Caller ID (or a rule's override), the receipts come back on the same bind and
deliver the message, or the wait runs out first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import RESOURCE, create_resource, customers, import_rows, launched_message, march_summary
from tests.smsc import Smsc, smsc_server

SENDER = "smsc-1"
AWAIT = timedelta(seconds=300)
PHONE = "+79161234567"


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def settled(herald: Herald, reports: int) -> None:
    """Wait until the SMS worker has recorded `reports` delivery reports (they arrive on the bind)."""
    done = 0
    async with asyncio.timeout(5):
        while done < reports:
            done += herald.sms.settle_reports()
            await asyncio.sleep(0.005)


async def sms_sender(api: httpx.AsyncClient, smsc: Smsc, from_name: str = "") -> None:
    sender = {
        "name": "SMSC",
        "channel": "sms",
        "smpp": {"host": "127.0.0.1", "port": smsc.port, "system_id": "herald"},
        "password": "secret",
        "await_delivery_seconds": int(AWAIT.total_seconds()),
    }
    assert (await api.put(f"/api/v1/senders/{SENDER}", json=sender)).status_code == 200
    target: dict[str, Any] = {"sender_id": SENDER, "percent": 100, "from_name": from_name}
    rules = {"name": "SMS", "rules": [{"targets": [target]}]}
    assert (await api.put("/api/v1/virtual-senders/default_sms", json=rules)).status_code == 200


async def sent_sms(api: httpx.AsyncClient, herald: Herald, smsc: Smsc, from_name: str = "") -> str:
    customers(herald)
    create_resource(herald)
    await sms_sender(api, smsc, from_name)
    rows = [{"subscriptions": [{"resource_id": RESOURCE, "channel": "sms", "phone": PHONE}]}]
    await import_rows(api, rows)
    message_id = await launched_message(api, herald, "sms", {"sms": {"body": "Привет! " * 16}})
    assert await herald.sms.run_once() == 1
    herald.runtime.drain()
    return message_id


async def progress(api: httpx.AsyncClient, herald: Herald, message_id: str) -> dict[str, int]:
    herald.runtime.drain()
    campaign_id = herald.deliveries.queued(message_id).campaign_id
    response = await api.get(f"/api/v1/campaigns/{campaign_id}/progress")
    assert response.status_code == 200, response.text
    counters: dict[str, int] = response.json()["campaign"]
    return {k: v for k, v in counters.items() if k in ("queued", "delivered", "undelivered", "delivering")}


def outcome_types(herald: Herald, message_id: str) -> list[str]:
    wanted = ("MessageAccepted", "MessageDeliveryReported", "MessageDelivered", "MessageNotDelivered")
    return [e.type for e in herald.store.read_stream(f"message-{message_id}") if e.type in wanted]


async def test_a_campaign_sms_goes_out_in_parts_and_both_receipts_deliver_it(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    async with smsc_server() as smsc:
        message_id = await sent_sms(api, herald, smsc)
        assert [(s.source_addr, s.destination_addr) for s in smsc.submits] == [("Shop", PHONE[1:])] * 2
        assert b"".join(s.payload for s in smsc.submits).decode("utf-16-be") == "Привет! " * 16
        await until(lambda: smsc.receipts_acknowledged == 2)
        assert herald.deliveries.message(message_id).state.status == "accepted"
        assert await progress(api, herald, message_id) == {"queued": 1}  # nothing settled yet
        await settled(herald, 2)
        await herald.sms.close()
    assert await progress(api, herald, message_id) == {"queued": 1, "delivered": 1, "delivering": 0}
    assert outcome_types(herald, message_id) == [
        "MessageAccepted",
        "MessageDeliveryReported",
        "MessageDeliveryReported",
        "MessageDelivered",
    ]


async def test_a_routing_rule_overrides_the_alpha_sender(api: httpx.AsyncClient, herald: Herald) -> None:
    async with smsc_server() as smsc:
        await sent_sms(api, herald, smsc, from_name="ShopSale")
        await herald.sms.close()
    assert {s.source_addr for s in smsc.submits} == {"ShopSale"}


async def test_a_receipt_saying_undelivered_ends_the_message(api: httpx.AsyncClient, herald: Herald) -> None:
    async with smsc_server(Smsc(receipt_state={PHONE[1:]: "UNDELIV"})) as smsc:
        message_id = await sent_sms(api, herald, smsc)
        await settled(herald, 1)
        await herald.sms.close()
    state = herald.deliveries.message(message_id).state
    assert state.status == "not_delivered" and state.not_delivered_reason == "report_undelivered"


async def test_no_report_within_the_wait_is_not_delivered_until_a_late_report_says_otherwise(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    async with smsc_server(Smsc(hold_receipts=True)) as smsc:
        message_id = await sent_sms(api, herald, smsc)
        clock.advance(AWAIT - timedelta(seconds=1))
        herald.tick()
        assert herald.deliveries.message(message_id).state.status == "accepted"
        clock.advance(timedelta(seconds=1))
        herald.tick()
        herald.runtime.drain()
        assert herald.deliveries.message(message_id).state.status == "not_delivered"
        assert herald.projections.send_queue.due_delivery_waits(clock.now()) == []
        assert await progress(api, herald, message_id) == {"queued": 1, "undelivered": 1, "delivering": 0}
        await smsc.release_receipts()
        await settled(herald, 2)
        await herald.sms.close()
    assert outcome_types(herald, message_id)[-1] == "MessageDelivered"
    # the late report moves the message from undelivered to delivered on the card
    assert await progress(api, herald, message_id) == {"queued": 1, "delivered": 1, "delivering": 0}


async def test_the_summary_counts_the_sms_channel_from_what_the_worker_recorded(
    reporting_api: httpx.AsyncClient, reporting: Herald, clock: ManualClock
) -> None:
    """Two SMS: one delivered (and its short link clicked by a phone), one reported undelivered."""
    other = "+79160000002"
    customers(reporting)
    create_resource(reporting)
    async with smsc_server(Smsc(receipt_state={other[1:]: "UNDELIV"})) as smsc:
        await sms_sender(reporting_api, smsc)
        rows = [
            {"subscriptions": [{"resource_id": RESOURCE, "channel": "sms", "phone": phone}]}
            for phone in (PHONE, other)
        ]
        await import_rows(reporting_api, rows)
        body = {"sms": {"body": "Sale: https://shop.example.com/sale"}}
        await launched_message(reporting_api, reporting, "sms", body)
        assert await reporting.sms.run_once() == 2
        reporting.runtime.drain()
        await settled(reporting, 2)
        await reporting.sms.close()
    delivered = next(s for s in smsc.submits if s.destination_addr == PHONE[1:])
    link = delivered.payload.decode().split("https://trk.example.com")[1]
    clock.advance(timedelta(minutes=5))  # a person, not a preview fetched at the delivery
    phone = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36"
    clicked = await reporting_api.get(link, headers={"User-Agent": phone})
    assert clicked.status_code == 302, clicked.text
    expected = {
        "sms_sent": 2,
        "sms_delivered": 1,
        "sms_not_delivered": 1,
        "sms_clicks": 1,
        "sms_delivery_rate": 1 / 2,
        "email_sent": 0,
    }
    assert await march_summary(reporting_api, reporting, tuple(expected)) == expected


async def test_a_per_profile_policy_counts_an_email_against_the_same_days_sms(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    """Once a day per profile, whatever the channel: Ann's email today leaves her no SMS, and nothing
    goes to the SMSC."""
    policy = {"name": "Once a day", "policy": {"per_profile": {"max_messages": 1, "period_days": 1}}}
    created = await api.post("/api/v1/sending-policies", json=policy)
    assert created.status_code == 201, created.text
    chosen = await api.put("/api/v1/account/sending-policy", json={"policy_id": created.json()["policy_id"]})
    assert chosen.status_code == 200, chosen.text
    customers(herald)
    create_resource(herald)
    ann = {"resource_id": RESOURCE, "channel": "email", "email": "ann@example.org"}
    rows = [
        {
            "email": "ann@example.org",
            "subscriptions": [ann, {"resource_id": RESOURCE, "channel": "sms", "phone": PHONE}],
        }
    ]
    await import_rows(api, rows)
    await launched_message(api, herald, "email", {"email": {"subject": "Hi", "html": "<p>Hi</p>"}})
    async with smsc_server() as smsc:
        await sms_sender(api, smsc)
        await launched_message(api, herald, "sms", {"sms": {"body": "Hi"}})
        assert await herald.sms.run_once() == 0
        await herald.sms.close()
    [decided] = [
        e for e in herald.store.read_all() if e.type.startswith("Message") and e.data["channel"] == "sms"
    ]
    assert (decided.type, decided.data["reason"]) == ("MessageSuppressed", "policy")
    assert smsc.submits == []
