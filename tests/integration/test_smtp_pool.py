"""The SMTP pool against a real aiosmtpd server on loopback: outcomes, connection reuse, rate, reconnects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from herald.senders.rate import SendRate
from herald.senders.smtp import SmtpOutcome, SmtpPool, SmtpRelay

MESSAGE = b"From: news@herald.test\r\nTo: someone@example.org\r\nSubject: Hi\r\n\r\nHello\r\n"
SENDER = "bounces@herald.test"


@dataclass
class Received:
    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Sink:
    """An aiosmtpd handler: records what it accepts and answers by the address's local part.

    Recipients `soft@` get 451, `hard@` 550 5.1.1, `old@` a bare 550, `relay@` 550 5.7.1,
    `busy@` 421; `spam@` is refused at DATA with 554; the sender `blocked@` is refused with 553.
    `refuse_mail_421` answers the next MAIL FROM with 421 (as a relay does after too many messages
    on one connection).
    """

    received: list[Received] = field(default_factory=list)
    peers: set[Any] = field(default_factory=set)  # one per connection that sent MAIL FROM
    transports: list[Any] = field(default_factory=list)
    rsets: int = 0
    quits: int = 0
    refuse_mail_421: bool = False

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.peers.add(session.peer)
        self.transports.append(server.transport)
        if self.refuse_mail_421:
            self.refuse_mail_421 = False
            return "421 4.7.0 Too many messages on this connection"
        if address.startswith("blocked@"):
            return "553 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        answers = {
            "soft": "451 4.2.0 Mailbox busy, try later",
            "hard": "550 5.1.1 No such user",
            "old": "550 Mailbox unavailable",
            "relay": "550 5.7.1 Relaying denied",
            "busy": "421 4.3.0 Service shutting down",
        }
        answer = answers.get(address.split("@")[0])
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(r.startswith("spam@") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message refused as spam"
        self.received.append(
            Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 2.0.0 Queued as 42"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.rsets += 1
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A threaded aiosmtpd server on a loopback port, which a test can restart on the same port."""

    def __init__(self, sink: Sink, port: int) -> None:
        self.sink = sink
        self.port = port
        self.controller = self._start()

    def _start(self) -> Controller:
        controller = Controller(self.sink, hostname="127.0.0.1", port=self.port, server_hostname="sink.test")
        controller.start()
        return controller

    def restart(self) -> None:
        self.controller.stop()  # cancels every session, closing their connections
        self.controller = self._start()

    async def drop_connections(self) -> None:
        """Close every connection from the server's side, as a relay does to idle clients."""
        loop = self.controller.loop

        async def close_all() -> None:
            for transport in self.sink.transports:
                transport.close()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close_all(), loop))

    def relay(self, **overrides: Any) -> SmtpRelay:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "local_hostname": "herald.test"}
        return SmtpRelay(**(settings | overrides))


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(Sink(), free_port())
    try:
        yield running
    finally:
        running.controller.stop()


@pytest.mark.parametrize("starttls", ["auto", False])
async def test_delivered_carries_the_bytes_and_envelope(server: Server, starttls: bool | str) -> None:
    async with SmtpPool(server.relay(starttls=starttls)) as pool:
        outcome = await pool.send(SENDER, "someone@example.org", MESSAGE)
    assert outcome == SmtpOutcome("delivered", 250, "2.0.0 Queued as 42")
    [got] = server.sink.received
    assert (got.mail_from, got.rcpt_tos, got.content) == (SENDER, ["someone@example.org"], MESSAGE)


DOTTED = [
    (
        "leading-dots",
        b"Subject: x\r\n\r\n.one\r\n..two\r\nend\r\n",
        b"Subject: x\r\n\r\n.one\r\n..two\r\nend\r\n",
    ),
    ("bare-line-feeds", b"Subject: x\n\n.a\nb", b"Subject: x\r\n\r\n.a\r\nb\r\n"),
    ("a-dot-first-and-last", b".\r\n", b".\r\n"),
]


@pytest.mark.parametrize(("sent", "received"), [c[1:] for c in DOTTED], ids=[c[0] for c in DOTTED])
async def test_the_message_arrives_as_given_whatever_dots_and_line_ends(
    server: Server, sent: bytes, received: bytes
) -> None:
    async with SmtpPool(server.relay()) as pool:
        outcome = await pool.send(SENDER, "someone@example.org", sent)
    assert outcome.kind == "delivered"
    assert server.sink.received[0].content == received


OUTCOMES = [
    ("soft@example.org", SmtpOutcome("soft_bounce", 451, "4.2.0 Mailbox busy, try later")),
    ("hard@example.org", SmtpOutcome("hard_bounce", 550, "5.1.1 No such user", address_gone=True)),
    ("old@example.org", SmtpOutcome("hard_bounce", 550, "Mailbox unavailable", address_gone=True)),
    ("relay@example.org", SmtpOutcome("hard_bounce", 550, "5.7.1 Relaying denied")),  # not the address
    ("busy@example.org", SmtpOutcome("soft_bounce", 421, "4.3.0 Service shutting down")),
    ("spam@example.org", SmtpOutcome("hard_bounce", 554, "5.7.1 Message refused as spam")),
]


@pytest.mark.parametrize(
    ("recipient", "expected"),
    OUTCOMES,
    ids=["451", "550-5.1.1", "550-bare", "550-5.7.1", "421", "554-at-data"],
)
async def test_refusals_become_bounces_by_reply_class(
    server: Server, recipient: str, expected: SmtpOutcome
) -> None:
    async with SmtpPool(server.relay()) as pool:
        outcome = await pool.send(SENDER, recipient, MESSAGE)
        after = await pool.send(SENDER, "someone@example.org", MESSAGE)
    assert outcome == expected
    assert after.kind == "delivered"
    assert len(server.sink.received) == 1


async def test_a_refused_recipient_is_reset_and_the_connection_reused(server: Server) -> None:
    async with SmtpPool(server.relay(), size=1) as pool:
        outcomes = [await pool.send(SENDER, to, MESSAGE) for to in ("soft@x.org", "hard@x.org", "ok@x.org")]
    assert [o.kind for o in outcomes] == ["soft_bounce", "hard_bounce", "delivered"]
    assert server.sink.rsets == 2
    assert len(server.sink.peers) == 1


async def test_a_refused_sender_is_failed_not_a_bounce(server: Server) -> None:
    async with SmtpPool(server.relay()) as pool:
        outcome = await pool.send("blocked@herald.test", "someone@example.org", MESSAGE)
    assert outcome == SmtpOutcome("failed", 553, "5.7.1 Sender not allowed")


async def test_connections_are_reused_up_to_the_pool_size(server: Server) -> None:
    async with SmtpPool(server.relay(), size=2) as pool:
        outcomes = await asyncio.gather(*(pool.send(SENDER, f"r{i}@example.org", MESSAGE) for i in range(20)))
    assert {o.kind for o in outcomes} == {"delivered"}
    assert len(server.sink.received) == 20
    assert 1 <= len(server.sink.peers) <= 2
    assert server.sink.quits == len(server.sink.peers)  # close() QUITs every connection it kept


async def test_sequential_sends_share_one_connection(server: Server) -> None:
    async with SmtpPool(server.relay(), size=8) as pool:
        for i in range(5):
            assert (await pool.send(SENDER, f"r{i}@example.org", MESSAGE)).kind == "delivered"
    assert len(server.sink.peers) == 1


async def test_a_connection_the_server_dropped_is_replaced(server: Server) -> None:
    async with SmtpPool(server.relay(), size=1) as pool:
        assert (await pool.send(SENDER, "a@example.org", MESSAGE)).kind == "delivered"
        await server.drop_connections()
        assert (await pool.send(SENDER, "b@example.org", MESSAGE)).kind == "delivered"
    assert [r.rcpt_tos for r in server.sink.received] == [["a@example.org"], ["b@example.org"]]
    assert len(server.sink.peers) == 2


async def test_the_server_restarting_between_messages_is_survived(server: Server) -> None:
    async with SmtpPool(server.relay(), size=2) as pool:
        assert (await pool.send(SENDER, "a@example.org", MESSAGE)).kind == "delivered"
        server.restart()
        assert (await pool.send(SENDER, "b@example.org", MESSAGE)).kind == "delivered"
    assert len(server.sink.received) == 2
    assert len(server.sink.peers) == 2


async def test_a_421_to_mail_from_on_a_reused_connection_retries_on_a_fresh_one(server: Server) -> None:
    async with SmtpPool(server.relay(), size=1) as pool:
        assert (await pool.send(SENDER, "a@example.org", MESSAGE)).kind == "delivered"
        server.sink.refuse_mail_421 = True
        assert (await pool.send(SENDER, "b@example.org", MESSAGE)).kind == "delivered"
    assert len(server.sink.received) == 2
    assert len(server.sink.peers) == 2


async def test_a_421_to_mail_from_on_a_fresh_connection_is_failed(server: Server) -> None:
    server.sink.refuse_mail_421 = True
    async with SmtpPool(server.relay()) as pool:
        outcome = await pool.send(SENDER, "a@example.org", MESSAGE)
        after = await pool.send(SENDER, "b@example.org", MESSAGE)
    assert outcome == SmtpOutcome("failed", 421, "4.7.0 Too many messages on this connection")
    assert after.kind == "delivered"


async def test_connection_refused_is_failed_with_code_zero() -> None:
    relay = SmtpRelay(host="127.0.0.1", port=free_port(), local_hostname="herald.test", timeout=5)
    async with SmtpPool(relay) as pool:
        outcome = await pool.send(SENDER, "a@example.org", MESSAGE)
    assert (outcome.kind, outcome.code) == ("failed", 0)
    assert "Error connecting to 127.0.0.1" in outcome.text


async def test_a_server_that_never_greets_times_out_as_failed() -> None:
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        async with SmtpPool(
            SmtpRelay(host="127.0.0.1", port=port, local_hostname="herald.test", timeout=0.2)
        ) as pool:
            outcome = await pool.send(SENDER, "a@example.org", MESSAGE)
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert (outcome.kind, outcome.code) == ("failed", 0)
    assert "Timed out" in outcome.text


async def test_no_answer_to_the_final_dot_may_have_been_sent() -> None:
    """A relay that takes the message and then falls silent may have it: `maybe_sent`, unlike a
    silence before the dot (nothing it would deliver was complete)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mute.test\r\n")
        while line := await reader.readline():
            if line.startswith((b"EHLO", b"HELO")):
                writer.write(b"250 mute.test\r\n")
            elif line.startswith((b"MAIL", b"RCPT")):
                writer.write(b"250 OK\r\n")
            elif line == b"DATA\r\n":
                writer.write(b"354 go ahead\r\n")
            # the message and its dot: no answer
            await writer.drain()

    mute = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = mute.sockets[0].getsockname()[1]
    committed: list[bool] = []

    async def committing() -> None:
        committed.append(True)

    try:
        relay = SmtpRelay(host="127.0.0.1", port=port, local_hostname="herald.test", timeout=0.3)
        async with SmtpPool(relay) as pool:
            outcome = await pool.send(SENDER, "a@example.org", MESSAGE, committing)
    finally:
        mute.close()
        await mute.wait_closed()
    assert (outcome.kind, outcome.code, outcome.maybe_sent, committed) == ("failed", 0, True, [True])


async def test_a_refusing_greeting_is_failed_with_its_code() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.3.2 No service for you\r\n")
        await writer.drain()
        writer.close()

    refusing = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = refusing.sockets[0].getsockname()[1]
    try:
        async with SmtpPool(
            SmtpRelay(host="127.0.0.1", port=port, local_hostname="herald.test", timeout=5)
        ) as pool:
            outcome = await pool.send(SENDER, "a@example.org", MESSAGE)
    finally:
        refusing.close()
        await refusing.wait_closed()
    assert outcome == SmtpOutcome("failed", 554, "5.3.2 No service for you")


async def test_malformed_addresses_are_refused_before_any_connection() -> None:
    pool = SmtpPool(SmtpRelay(host="127.0.0.1", port=1))
    for sender, recipient in [("a b@x.org", "c@x.org"), (SENDER, "josé@x.org"), (SENDER, "<c@x.org>")]:
        with pytest.raises(ValueError, match="not an ASCII mail address"):
            await pool.send(sender, recipient, MESSAGE)


def test_implicit_tls_and_starttls_cannot_both_be_on() -> None:
    with pytest.raises(ValueError, match="cannot both be on"):
        SmtpRelay(host="relay.test", use_tls=True, starttls=True)
    assert "secret" not in repr(SmtpRelay(host="relay.test", username="u", password="secret"))


# --- the send rate, on a simulated clock -----------------------------------------------------------


class FakeTime:
    """A monotonic clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def starts_per_second(rate: SendRate, time: FakeTime, sends: int) -> dict[int, int]:
    started: list[float] = []

    async def one() -> None:
        await rate.acquire()
        started.append(time.now)

    await asyncio.gather(*(one() for _ in range(sends)))
    counts: dict[int, int] = {}
    for moment in started:
        counts[int(moment)] = counts.get(int(moment), 0) + 1
    return counts


async def test_the_rate_allows_a_second_s_worth_then_that_many_each_second() -> None:
    time = FakeTime()
    counts = await starts_per_second(SendRate(5, time.clock, time.sleep), time, 17)
    assert counts == {0: 5, 1: 5, 2: 5, 3: 2}


async def test_the_rate_never_exceeds_itself_in_any_one_second_window() -> None:
    time = FakeTime()
    rate = SendRate(3, time.clock, time.sleep)
    started: list[float] = []
    for gap in [0.0, 0.4, 0.4, 0.1, 0.0, 0.7, 0.2, 0.0, 0.0, 0.9]:
        time.now += gap
        await rate.acquire()
        started.append(time.now)
    for first in started:
        assert sum(1 for s in started if first <= s < first + 1) <= 3
    assert started[:3] == [0.0, 0.4, 0.8]
    assert started[3] == pytest.approx(1.0)  # the 4th waits until the 1st is a second old


async def test_a_fractional_rate_spreads_sends_out() -> None:
    time = FakeTime()
    counts = await starts_per_second(SendRate(0.5, time.clock, time.sleep), time, 3)
    assert counts == {0: 1, 2: 1, 4: 1}


async def test_the_pool_applies_its_rate_to_all_its_connections(server: Server) -> None:
    time = FakeTime()
    async with SmtpPool(
        server.relay(), size=2, rate_per_second=5, clock=time.clock, sleep=time.sleep
    ) as pool:
        outcomes = await asyncio.gather(*(pool.send(SENDER, f"r{i}@example.org", MESSAGE) for i in range(12)))
    assert {o.kind for o in outcomes} == {"delivered"}
    # 5 start at 0 s, 5 more at 1 s, the last 2 at 2 s: the simulated clock waited twice, a second each.
    assert time.sleeps == [1.0, 1.0]
    assert time.now == 2.0
    assert len(server.sink.received) == 12
