"""The channel gateway contract: every gateway, against its local server speaking the real protocol.

Each rig starts the provider's server, builds the gateway against it and says which address makes
the server answer how ("ok", "gone", "invalid", "throttle", "down"). Exactly-once across a worker
restart is the worker's (the commit mark); here the contract is that `before_commit` runs before
anything leaves, and that a resend carries the same idempotency key where the protocol has one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herald.senders.apns import ApnsGateway
from herald.senders.bulksms import BulkSmsGateway, BulkSmsSettings, parse_reports
from herald.senders.fcm import FcmGateway, FcmSettings, ServiceAccount
from herald.senders.gateway import (
    Accepted,
    ChannelGateway,
    DeliveryReport,
    Outbound,
    PermanentFailure,
    TemporaryFailure,
)
from herald.senders.rate import SendRate
from herald.senders.smpp import SmppGateway, SmppSettings
from herald.senders.telegram import TelegramGateway, TelegramSettings
from herald.senders.webpush import WebPushGateway, WebPushSettings
from tests import channel_servers as cs
from tests.smsc import Smsc, smsc_server


@dataclass
class Rig:
    gateway: ChannelGateway
    addresses: Callable[[str], str]  # behaviour → an address the server answers that way
    received: Callable[[], list[Any]]  # what the server got, oldest first
    content: Callable[[Any], str]  # the text the server decoded from one received message
    has_key: bool  # the protocol carries an idempotency key
    knows_gone: bool  # the provider says when an address no longer exists
    reports: list[DeliveryReport] = field(default_factory=list)
    report_for: Callable[[str], Any] | None = None  # make the provider report on an accepted id


def outbound(message_id: str, address: str, text: str = "Hello from Herald") -> Outbound:
    return Outbound(
        message_id=message_id,
        address=address,
        text=text,
        sender="HERALD",
        title="Herald",
        click_url="https://example.com/landing",
        data={"ack": "https://trk.example.com/t/ack/x", "open": "https://trk.example.com/t/open/x"},
    )


@asynccontextmanager
async def smpp_rig(_: Path) -> AsyncIterator[Rig]:
    statuses = {"gone": 0x0B, "invalid": 0x43, "throttle": 0x58, "down": 0x08}
    smsc = Smsc(refuse={f"7999000000{i}": s for i, s in enumerate(statuses.values())})
    async with smsc_server(smsc):
        reports: list[DeliveryReport] = []
        settings = SmppSettings(host="127.0.0.1", port=smsc.port, system_id="herald", password="secret")
        gateway = SmppGateway(settings, reports.append)
        numbers = {b: f"+7999000000{i}" for i, b in enumerate(statuses)}

        def decoded(submit: Any) -> str:
            return submit.payload.decode("utf-16-be" if submit.data_coding == 8 else "latin-1")

        yield Rig(
            gateway,
            lambda b: numbers.get(b, "+79161234567"),
            lambda: smsc.submits,
            decoded,
            has_key=True,
            knows_gone=True,
            reports=reports,
        )


@asynccontextmanager
async def bulksms_rig(_: Path) -> AsyncIterator[Rig]:
    async with cs.bulksms_server() as server:
        server.behaviour = {f"+1555000000{i}": b for i, b in enumerate(("invalid", "throttle", "down"))}
        numbers = {b: a for a, b in server.behaviour.items()}
        settings = BulkSmsSettings(
            base_url=server.base_url, username=server.username, password=server.password
        )
        gateway = BulkSmsGateway(settings)
        yield Rig(
            gateway,
            lambda b: numbers.get(b, "+15551234567"),
            lambda: server.received,
            lambda r: r.body["body"],
            has_key=True,
            knows_gone=False,
            report_for=server.report,
        )


@asynccontextmanager
async def telegram_rig(_: Path) -> AsyncIterator[Rig]:
    async with cs.telegram_server() as server:
        server.behaviour = {f"10{i}": b for i, b in enumerate(("gone", "invalid", "throttle", "down"))}
        chats = {b: a for a, b in server.behaviour.items()}
        gateway = TelegramGateway(TelegramSettings(bot_token=server.token, base_url=server.base_url))
        yield Rig(
            gateway,
            lambda b: chats.get(b, "555"),
            lambda: server.received,
            lambda r: r.body["text"],
            has_key=False,
            knows_gone=True,
        )


@asynccontextmanager
async def fcm_rig(_: Path) -> AsyncIterator[Rig]:
    async with cs.fcm_server() as server:
        server.behaviour = {f"token-{b}": b for b in ("gone", "invalid", "throttle", "down")}
        settings = FcmSettings(service_account=ServiceAccount(**server.account), base_url=server.base_url)
        gateway = FcmGateway(settings)
        yield Rig(
            gateway,
            lambda b: f"token-{b}",
            lambda: server.received,
            lambda r: r.body["notification"]["body"],
            has_key=True,
            knows_gone=True,
        )


@asynccontextmanager
async def apns_rig(directory: Path) -> AsyncIterator[Rig]:
    async with cs.apns_server(directory) as (server, ca):
        server.behaviour = {f"{b:0<64}"[:64]: b for b in ("gone", "invalid", "throttle", "down")}
        tokens = {b: a for a, b in server.behaviour.items()}
        gateway = ApnsGateway(cs.apns_settings(server, ca))
        yield Rig(
            gateway,
            lambda b: tokens.get(b, "a1" * 32),
            lambda: server.received,
            lambda r: r.body["aps"]["alert"]["body"],
            has_key=True,
            knows_gone=True,
        )


@asynccontextmanager
async def webpush_rig(_: Path) -> AsyncIterator[Rig]:
    async with cs.push_service() as service:
        browsers = {b: service.browser() for b in ("ok", "gone", "invalid", "throttle", "down")}
        service.behaviour = {browsers[b].address(): b for b in browsers if b != "ok"}
        gateway = WebPushGateway(
            WebPushSettings(vapid_private_key=cs.vapid_key_pem(), subject="mailto:ops@example.com")
        )
        yield Rig(
            gateway,
            lambda b: browsers[b].address(),
            lambda: service.received,
            lambda r: r.body.get("body", ""),
            has_key=True,
            knows_gone=True,
        )


RIGS = {
    "smpp": smpp_rig,
    "bulksms": bulksms_rig,
    "telegram": telegram_rig,
    "fcm": fcm_rig,
    "apns": apns_rig,
    "webpush": webpush_rig,
}


@pytest.fixture(params=list(RIGS))
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with RIGS[request.param](tmp_path) as made:
        try:
            yield made
        finally:
            await made.gateway.close()


async def test_a_message_is_accepted_and_arrives_as_sent(rig: Rig) -> None:
    outcome = await rig.gateway.send(outbound("m-1", rig.addresses("ok"), "Привет, Анна! Новая коллекция"))
    assert isinstance(outcome, Accepted) and outcome.provider_ids and all(outcome.provider_ids)
    assert [rig.content(r) for r in rig.received()] == ["Привет, Анна! Новая коллекция"]


@pytest.mark.parametrize("behaviour", ["throttle", "down"])
async def test_throttling_and_provider_errors_are_temporary(rig: Rig, behaviour: str) -> None:
    outcome = await rig.gateway.send(outbound("m-2", rig.addresses(behaviour)))
    assert isinstance(outcome, TemporaryFailure), outcome
    assert not outcome.maybe_sent  # the provider answered: it did not take the message


async def test_a_refused_message_is_a_permanent_failure(rig: Rig) -> None:
    outcome = await rig.gateway.send(outbound("m-3", rig.addresses("invalid")))
    assert isinstance(outcome, PermanentFailure) and not outcome.address_gone, outcome


async def test_an_address_that_no_longer_exists_says_so(rig: Rig) -> None:
    if not rig.knows_gone:
        assert isinstance(await rig.gateway.send(outbound("m-4", rig.addresses("ok"))), Accepted)
        return  # BulkSMS says so only in a later delivery report, never at submission
    outcome = await rig.gateway.send(outbound("m-4", rig.addresses("gone")))
    assert isinstance(outcome, PermanentFailure) and outcome.address_gone, outcome


async def test_the_commit_mark_comes_before_anything_leaves(rig: Rig) -> None:
    seen_at_commit: list[int] = []
    outcome = await rig.gateway.send(
        outbound("m-5", rig.addresses("ok")), before_commit=lambda: seen_at_commit.append(len(rig.received()))
    )
    assert isinstance(outcome, Accepted)
    assert seen_at_commit == [0] and len(rig.received()) == 1


async def test_the_gateway_keeps_to_its_rate(rig: Rig) -> None:
    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    rig.gateway.rate = SendRate(3, lambda: now[0], sleep)
    original = rig.gateway.rate.acquire

    async def counted() -> None:
        await original()
        starts.append(now[0])

    rig.gateway.rate.acquire = counted  # type: ignore[method-assign]
    outcomes = [await rig.gateway.send(outbound(f"r-{i}", rig.addresses("ok"))) for i in range(7)]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert starts == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0]
    assert len(rig.received()) == 7


async def test_a_resend_carries_the_same_idempotency_key(rig: Rig) -> None:
    first = outbound("resent-1", rig.addresses("ok"))
    await rig.gateway.send(first)
    await rig.gateway.send(first)
    await rig.gateway.send(outbound("other-1", rig.addresses("ok")))
    keys = [_key(r) for r in rig.received()]
    if not rig.has_key:  # Telegram: nothing on the wire can say "the same message"
        assert keys == [None, None, None]
        return
    assert len(keys) == 3 and keys[0] is not None and keys[0] == keys[1] != keys[2]


async def test_delivery_reports_come_back(rig: Rig) -> None:
    outcome = await rig.gateway.send(outbound("dlr-1", rig.addresses("ok")))
    assert isinstance(outcome, Accepted)
    if not rig.gateway.reports_delivery:
        return  # push and Telegram have no delivery reports: push is acknowledged by the ack link
    if rig.report_for is not None:  # a webhook: the provider calls us with the report's body
        reports = parse_reports(rig.report_for(outcome.provider_ids[0]))
        assert [(r.provider_id, r.state, r.message_id) for r in reports] == [
            (outcome.provider_ids[0], "delivered", "dlr-1")
        ]
        return
    await _until(lambda: len(rig.reports) == len(outcome.provider_ids))
    assert [(r.provider_id, r.state) for r in rig.reports] == [(p, "delivered") for p in outcome.provider_ids]


def _key(received: Any) -> Any:
    if hasattr(received, "user_message_reference"):  # an SMPP submit
        return (received.udh[3:4] or None, received.user_message_reference)
    return received.key


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for I/O from a server (not a processor): poll the loop until `condition` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
