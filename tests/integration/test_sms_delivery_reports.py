"""An SMS through the SMPP gateway with its receipts: accepted, awaited, delivered or not by the reports.

The send path's generic worker does not exist yet; these steps are the ones it will take (attempt,
commit mark, the gateway, the acceptance, receipts resolved through `send_queue.message_of`), run
here by hand against the loopback SMSC so the domain's delivery-report rules meet a real receipt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx

from herald.api.wiring import Herald
from herald.domain import deliveries as dl
from herald.infra.clock import ManualClock
from herald.senders.gateway import Accepted, DeliveryReport, Outbound
from herald.senders.smpp import SmppGateway, SmppSettings
from tests.builders import RESOURCE, create_resource, customers, import_rows, launched_message
from tests.smsc import Smsc, smsc_server

SENDER = "smsc-1"
AWAIT = timedelta(seconds=300)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def sent_sms(api: httpx.AsyncClient, herald: Herald, gateway: SmppGateway) -> str:
    customers(herald)
    create_resource(herald)
    rows = [{"subscriptions": [{"resource_id": RESOURCE, "channel": "sms", "phone": "+79161234567"}]}]
    await import_rows(api, rows)
    message_id = await launched_message(api, herald, "sms", {"sms": {"body": "Привет! " * 16}})
    queued = herald.deliveries.queued(message_id)
    text = herald.campaigns.render_queued(queued).body.body  # type: ignore[union-attr]
    now = herald.clock.now
    herald.deliveries.execute(message_id, dl.StartAttempt(SENDER, now()))
    outcome = await gateway.send(
        Outbound(message_id, queued.contact, text, sender="Shop"),
        before_commit=lambda: herald.deliveries.execute(message_id, dl.MarkCommitting(now())),
    )
    assert isinstance(outcome, Accepted) and len(outcome.provider_ids) == 2
    acceptance = dl.RecordAcceptance(outcome.provider_ids, 0, "accepted", SENDER, AWAIT, now())
    herald.deliveries.execute(message_id, acceptance)
    herald.runtime.drain()
    return message_id


def smpp(smsc: Smsc, reports: list[DeliveryReport]) -> SmppGateway:
    settings = SmppSettings(host="127.0.0.1", port=smsc.port, system_id="herald", password="secret")
    return SmppGateway(settings, reports.append)


def deliver(herald: Herald, reports: list[DeliveryReport]) -> None:
    for report in reports:
        message_id = herald.projections.send_queue.message_of(SENDER, report.provider_id)
        assert message_id is not None
        herald.deliveries.delivery_report(
            message_id, report.provider_id, report.state, report.code, herald.clock.now()
        )


def outcome_types(herald: Herald, message_id: str) -> list[str]:
    wanted = ("MessageAccepted", "MessageDeliveryReported", "MessageDelivered", "MessageNotDelivered")
    return [e.type for e in herald.store.read_stream(f"message-{message_id}") if e.type in wanted]


async def test_both_parts_reported_delivered_deliver_the_message(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    reports: list[DeliveryReport] = []
    async with smsc_server() as smsc:
        gateway = smpp(smsc, reports)
        message_id = await sent_sms(api, herald, gateway)
        await until(lambda: len(reports) == 2)
        await gateway.close()
    assert herald.deliveries.message(message_id).state.status == "accepted"
    deliver(herald, reports)
    assert outcome_types(herald, message_id) == [
        "MessageAccepted",
        "MessageDeliveryReported",
        "MessageDeliveryReported",
        "MessageDelivered",
    ]


async def test_no_report_within_the_wait_is_not_delivered_until_a_late_report_says_otherwise(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    reports: list[DeliveryReport] = []
    async with smsc_server(Smsc(hold_receipts=True)) as smsc:
        gateway = smpp(smsc, reports)
        message_id = await sent_sms(api, herald, gateway)
        clock.advance(AWAIT - timedelta(seconds=1))
        herald.tick()
        assert herald.deliveries.message(message_id).state.status == "accepted"
        clock.advance(timedelta(seconds=1))
        herald.tick()
        herald.runtime.drain()
        assert herald.deliveries.message(message_id).state.status == "not_delivered"
        assert herald.projections.send_queue.due_delivery_waits(clock.now()) == []
        await smsc.release_receipts()
        await until(lambda: len(reports) == 2)
        await gateway.close()
    deliver(herald, reports)
    assert outcome_types(herald, message_id)[-1] == "MessageDelivered"
