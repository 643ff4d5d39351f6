"""The channel gateway contract: every gateway (SMTP email, SMPP and BulkSMS, Telegram, FCM, APNs, web
push), against its local server speaking the real protocol.

Each rig starts the provider's server, builds the gateway against it and says which address makes
the server answer how ("ok", "gone", "invalid", "throttle", "down"). The contract: accepted and
arriving as sent, throttling and provider errors temporary, refusals permanent, a gone address said
so, `before_commit` before anything leaves, the rate kept, a resend with the same idempotency key
where the protocol has one, delivery reports; and, with the generic sender worker in front of the
gateway, exactly once across a restart (a worker killed between the commit mark and the outcome
never sends the message again; one killed before the mark sends it again, once).
"""

from __future__ import annotations

import asyncio
import email
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

import dkim as dkimpy
import pytest

from herald.api.wiring import Herald
from herald.domain import messages as ms
from herald.domain.messages import MessageQueued
from herald.domain.senders import OpenedSender, SenderState
from herald.infra.aggregates import CommandContext
from herald.messages.worker import Composed, Lookups, MessageWorker
from herald.senders.apns import ApnsGateway
from herald.senders.bulksms import BulkSmsGateway, BulkSmsSettings, parse_reports
from herald.senders.dkim import DkimKey, generate_key
from herald.senders.fcm import FcmGateway, FcmSettings, ServiceAccount
from herald.senders.gateway import (
    Accepted,
    BeforeCommit,
    ChannelGateway,
    DeliveryReport,
    EmailParts,
    Outbound,
    PermanentFailure,
    ReportHandler,
    TemporaryFailure,
)
from herald.senders.rate import SendRate
from herald.senders.smpp import SmppGateway, SmppSettings
from herald.senders.smtp import SmtpRelay
from herald.senders.smtp_gateway import SmtpGateway
from herald.senders.telegram import TelegramGateway, TelegramSettings
from herald.senders.webpush import WebPushGateway, WebPushSettings
from tests import channel_servers as cs
from tests.smsc import Smsc, smsc_server
from tests.smtp_sink import smtp_server


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
    form: Callable[[Outbound], Outbound] = lambda message: message  # the message in the channel's form

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> Any:
        return await self.gateway.send(self.form(message), before_commit)


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


@dataclass
class _Mailbox:
    """An aiosmtpd handler answering by the recipient's local part, keeping what it accepts."""

    received: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    at_rcpt: ClassVar[dict[str, str]] = {
        "gone": "550 5.1.1 No such user here",
        "throttle": "451 4.7.1 Too many messages, slow down",
        "down": "451 4.3.0 Temporary local problem",
    }

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        answer = self.at_rcpt.get(address.split("@")[0])
        if answer is None:
            envelope.rcpt_tos.append(address)
        return answer or "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(r.startswith("invalid@") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message refused"
        self.raw.append(envelope.content)
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        return "250 2.0.0 Ok: queued as Q1A2B3"


@asynccontextmanager
async def smtp_rig(_: Path) -> AsyncIterator[Rig]:
    mailbox = _Mailbox()
    private, record = generate_key(1024)
    key = DkimKey("s1", "herald.test", private)
    with smtp_server(mailbox) as port:
        relay = SmtpRelay(host="127.0.0.1", port=port, starttls=False, local_hostname="herald.test")
        sent = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

        def form(message: Outbound) -> Outbound:
            parts = EmailParts(
                subject=message.title, text=message.text, from_email="news@herald.test", date=sent
            )
            return replace(message, email=parts)

        def content(received: EmailMessage) -> str:
            signed = mailbox.raw[mailbox.received.index(received)]
            assert dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: record.encode())
            body = received.get_body(("plain",))
            assert body is not None
            return str(body.get_content()).rstrip("\r\n")

        yield Rig(
            SmtpGateway(relay, dkim=key),
            lambda b: f"{b}@example.org",
            lambda: mailbox.received,
            content,
            has_key=True,
            knows_gone=True,
            form=form,
        )


RIGS = {
    "smtp": smtp_rig,
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
    outcome = await rig.send(outbound("m-1", rig.addresses("ok"), "Привет, Анна! Новая коллекция"))
    assert isinstance(outcome, Accepted) and outcome.provider_ids and all(outcome.provider_ids)
    assert [rig.content(r) for r in rig.received()] == ["Привет, Анна! Новая коллекция"]


@pytest.mark.parametrize("behaviour", ["throttle", "down"])
async def test_throttling_and_provider_errors_are_temporary(rig: Rig, behaviour: str) -> None:
    outcome = await rig.send(outbound("m-2", rig.addresses(behaviour)))
    assert isinstance(outcome, TemporaryFailure), outcome
    assert not outcome.maybe_sent  # the provider answered: it did not take the message


async def test_a_refused_message_is_a_permanent_failure(rig: Rig) -> None:
    outcome = await rig.send(outbound("m-3", rig.addresses("invalid")))
    assert isinstance(outcome, PermanentFailure) and not outcome.address_gone, outcome


async def test_an_address_that_no_longer_exists_says_so(rig: Rig) -> None:
    if not rig.knows_gone:
        assert isinstance(await rig.send(outbound("m-4", rig.addresses("ok"))), Accepted)
        return  # BulkSMS says so only in a later delivery report, never at submission
    outcome = await rig.send(outbound("m-4", rig.addresses("gone")))
    assert isinstance(outcome, PermanentFailure) and outcome.address_gone, outcome


async def test_the_commit_mark_comes_before_anything_leaves(rig: Rig) -> None:
    seen_at_commit: list[int] = []

    async def committing() -> None:  # a mark that takes a while (recorded with others' in one write)
        seen_at_commit.append(len(rig.received()))
        await asyncio.sleep(0.01)
        seen_at_commit.append(len(rig.received()))

    outcome = await rig.send(outbound("m-5", rig.addresses("ok")), before_commit=committing)
    assert isinstance(outcome, Accepted)
    assert seen_at_commit == [0, 0] and len(rig.received()) == 1


async def test_a_commit_mark_that_fails_sends_nothing(rig: Rig) -> None:
    async def store_down() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await rig.send(outbound("m-6", rig.addresses("ok")), before_commit=store_down)
    await asyncio.sleep(0.05)  # anything sent would have reached the local server by now
    assert rig.received() == []


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
    outcomes = [await rig.send(outbound(f"r-{i}", rig.addresses("ok"))) for i in range(7)]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert starts == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0]
    assert len(rig.received()) == 7


async def test_a_resend_carries_the_same_idempotency_key(rig: Rig) -> None:
    first = outbound("resent-1", rig.addresses("ok"))
    await rig.send(first)
    await rig.send(first)
    await rig.send(outbound("other-1", rig.addresses("ok")))
    keys = [_key(r) for r in rig.received()]
    if not rig.has_key:  # Telegram: nothing on the wire can say "the same message"
        assert keys == [None, None, None]
        return
    assert len(keys) == 3 and keys[0] is not None and keys[0] == keys[1] != keys[2]


async def test_delivery_reports_come_back(rig: Rig) -> None:
    outcome = await rig.send(outbound("dlr-1", rig.addresses("ok")))
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
    if isinstance(received, EmailMessage):
        return received["Message-ID"]
    return received.key


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for I/O from a server (not a processor): poll the loop until `condition` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


# --- exactly once across a restart, at the worker ---------------------------------------------------


class _Killed(BaseException):
    """The sender process dies here: nothing after this point runs (not an error anyone handles)."""


class _Dying:
    """The rig's gateway in a process that dies before the commit mark is recorded, or right after it
    (before the bytes that commit the message leave)."""

    def __init__(self, gateway: ChannelGateway, after_mark: bool) -> None:
        self.inner = gateway
        self.after_mark = after_mark
        self.channel = gateway.channel
        self.reports_delivery = gateway.reports_delivery
        self.rate = gateway.rate

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> Any:
        if not self.after_mark:
            raise _Killed

        async def marked_then_killed() -> None:
            assert before_commit is not None
            await before_commit()
            raise _Killed

        return await self.inner.send(message, marked_then_killed)

    async def close(self) -> None:
        """The dead process's connections are the OS's to close; the rig closes the real gateway."""


@dataclass
class _RigChannel:
    """A worker `Channel` that sends every message as the rig's own message through `gateway`."""

    rig: Rig
    gateway_made: Callable[[], Any]
    name: str = ""

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        message = self.rig.form(outbound(queued.message_id, queued.contact))
        return Composed(message, OpenedSender(SenderState("rig"), "", ""))

    def gateway(self, sender: OpenedSender, on_report: ReportHandler) -> Any:
        return self.gateway_made()

    def built_for(self, sender: OpenedSender) -> str:
        return sender.state.sender_id

    def retry_deadline(self, sender: OpenedSender) -> timedelta:
        return timedelta(hours=48)

    def await_delivery(self, sender: OpenedSender) -> timedelta | None:
        return None


def _queued(herald: Herald, channel: str, address: str) -> str:
    """One test message queued on `channel` to `address`, projected into the send queue."""
    now = herald.clock.now()
    message_id = ms.message_id("contract", "restart", address)
    queued = MessageQueued(
        message_id=message_id,
        campaign_id="contract",
        run_id="restart",
        profile_id="p-1",
        database_id="1",
        resource_id="7",
        channel=channel,
        contact=address,
        template_id="t-1",
        template_version=1,
        due_at=now,
        local_day=now.date(),
        is_test=True,
        at=now,
    )
    context = CommandContext(actor="test", source="test")
    herald.aggregates.execute(
        ms.message_decider, ms.message_stream(message_id), ms.DecideMessage(queued), context
    )
    herald.runtime.drain()
    return message_id


def _worker(herald: Herald, channel: _RigChannel) -> MessageWorker:
    return MessageWorker(
        channel, herald.aggregates, herald.projections.send_queue, herald.deliveries, herald.clock
    )


@pytest.mark.parametrize("after_mark", [True, False], ids=["killed-after-the-mark", "killed-before-it"])
async def test_a_worker_restarted_sends_again_only_what_never_committed(
    rig: Rig, herald: Herald, after_mark: bool
) -> None:
    """Killed between the commit mark and the outcome, a message is never sent again (it may have left:
    it counts as delivered, assumed); killed before the mark, it is sent again, once."""
    message_id = _queued(herald, rig.gateway.channel, rig.addresses("ok"))
    dying = _RigChannel(rig, lambda: _Dying(rig.gateway, after_mark), rig.gateway.channel)
    with pytest.raises(_Killed):
        await _worker(herald, dying).run_once()
    herald.runtime.drain()
    restarted = _worker(herald, _RigChannel(rig, lambda: rig.gateway, rig.gateway.channel))
    assert await restarted.recover() == 1
    herald.runtime.drain()
    sent_again = await restarted.run_once()
    herald.runtime.drain()
    assert await restarted.run_once() == 0  # and never again after that
    events = [e for e in herald.store.read_stream(ms.message_stream(message_id))]
    types = [e.type for e in events]
    assert types.count("MessageCommitting") == 1
    if after_mark:
        assert (sent_again, len(rig.received())) == (0, 0)  # what committed it never left the dead process
        assert types[-1] == "MessageDelivered" and events[-1].data["assumed"] is True
    else:
        assert (sent_again, len(rig.received())) == (1, 1)
        assert types[-1] == "MessageDelivered" and not events[-1].data["assumed"]
        assert types.count("MessageSendAttempted") == 2
