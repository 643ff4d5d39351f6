"""The inbound SMTP listener on loopback: a DSN sent with smtplib reaches the handler; 451 and 552."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from herald.senders.inbound import Bounce, BounceReason, parse_inbound
from herald.senders.inbound_smtp import InboundHandler, InboundServer
from tests.unit.test_inbound import HERALD_ID, POSTFIX_DSN

Received = list[tuple[bytes, str, list[str]]]


def listener(handler: InboundHandler, max_size: int = 10 * 1024 * 1024) -> InboundServer:
    """A listener on a free loopback port (0: the OS picks it)."""
    return InboundServer("127.0.0.1", 0, handler, max_size=max_size)


def connect(server: InboundServer) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=10)


@pytest.fixture
def received() -> Received:
    return []


@pytest.fixture
def server(received: Received) -> Iterator[InboundServer]:
    async def handler(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        received.append((raw, mail_from, rcpt_tos))

    with listener(handler) as running:
        yield running


def test_a_dsn_reaches_the_handler_before_250(server: InboundServer, received: Received) -> None:
    assert server.port != 0
    with connect(server) as client:
        refused = client.sendmail("", ["bounce@mail.herald.example", "anything@herald.example"], POSTFIX_DSN)
    assert refused == {}
    # 250 is only sent after the handler returned, so the message is already here.
    ((raw, mail_from, rcpt_tos),) = received
    assert mail_from == "<>"  # the null sender of a bounce
    assert rcpt_tos == ["bounce@mail.herald.example", "anything@herald.example"]
    result = parse_inbound(raw, rcpt_tos)
    assert isinstance(result, Bounce)
    assert result.message_id == HERALD_ID
    assert result.recipients[0].reason is BounceReason.MAILBOX_FULL


def test_a_plain_function_handler_works_too() -> None:
    got: list[bytes] = []

    def handler(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        got.append(raw)

    with listener(handler) as server, connect(server) as client:
        client.sendmail("someone@example.net", ["reply@herald.example"], b"Subject: hi\r\n\r\nhello\r\n")
    assert got == [b"Subject: hi\r\n\r\nhello\r\n"]


def test_handler_failure_answers_451_so_the_sender_retries(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        raise RuntimeError("event store unavailable")

    with listener(handler) as server, connect(server) as client:
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail("", ["bounce@mail.herald.example"], POSTFIX_DSN)
        # Only the transaction failed: the session goes on.
        assert client.noop()[0] == 250
    assert error.value.smtp_code == 451
    assert any("event store unavailable" in (record.exc_text or "") for record in caplog.records)


def test_oversize_message_answers_552(received: Received) -> None:
    async def handler(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        received.append((raw, mail_from, rcpt_tos))

    big = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    message = big * 3  # about 3 KB against a 2 KB limit
    with listener(handler, max_size=2048) as server, connect(server) as client:
        # smtplib announces the size (the server advertises SIZE): refused at MAIL FROM.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("", ["bounce@mail.herald.example"], message)
        assert refused.value.smtp_code == 552
        client.rset()
        # A client that does not announce the size is refused after DATA.
        assert client.mail("")[0] == 250
        assert client.rcpt("bounce@mail.herald.example")[0] == 250
        assert client.data(message)[0] == 552
        # A message under the limit still goes through.
        client.sendmail("", ["bounce@mail.herald.example"], big)
    assert [raw for raw, _, _ in received] == [big]
