"""Delivering email bytes over SMTP: a sender's relay settings, a pool of reused connections, a send rate.

`SmtpPool.send` hands one message to the relay for one recipient and says
what came of it as an `SmtpOutcome`; it does not raise for anything the
server or the network does.

Decisions where the task is silent:
- Outcome kinds follow the reply class of the recipient's own stage: the
  RCPT reply when the recipient is refused, else the reply to the message
  data. A refusal before any recipient was named (greeting, EHLO, STARTTLS,
  AUTH, MAIL FROM) says nothing about the recipient, so it is "failed" with
  the server's code, never a bounce: a bounce can put an address on the stop
  list, and a relay refusing our sender must not do that to every recipient.
  "failed" with code 0 means no reply was had (refused or lost connection,
  timeout, TLS error). A RCPT reply of 252 ("cannot verify, will try") goes on
  to DATA. A timeout after the data was sent is "failed" though the relay may
  have taken the message: the worker's retry may then deliver it twice.
- A pooled connection the server has dropped while idle, or that answers
  MAIL FROM with 421 (too many messages on this connection, shutting down),
  is replaced by a fresh one and the message is tried once more there; the
  message had not been handed over, so this cannot duplicate it.
- After a refusal mid-transaction the pool sends RSET before reusing the
  connection; when RSET fails, the connection is dropped instead.
- The send rate is `senders/rate.py`'s sliding one-second window.
- A send takes a connection first and then its place in the rate, so sends
  that waited for a connection cannot start together and overshoot the rate.
- STARTTLS defaults to "auto" (upgrade when the relay offers it).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus
from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.senders.gateway import BeforeCommit
from herald.senders.rate import Clock, SendRate, Sleep

OutcomeKind = Literal["delivered", "soft_bounce", "hard_bounce", "failed"]

_ENVELOPE_ADDRESS = re.compile(r"^[^\s<>@\"]+@[^\s<>@\"]+$")


@dataclass(frozen=True, slots=True)
class SmtpOutcome:
    """What came of one message: delivered, soft/hard bounce (4xx/5xx) or failed; the reply code and text.

    `address_gone`: a hard bounce that says the address itself is dead (RFC 3463 x.1.1 no such
    mailbox, x.1.2/x.1.10 no such domain, x.1.3 bad syntax, x.1.6 moved, x.2.1 disabled; without
    an enhanced code, a 550/551/553 to RCPT), not a refusal of this message (x.7.* policy, spam).
    `maybe_sent`: failed after the final dot left, so the relay may have taken the message."""

    kind: OutcomeKind
    code: int
    text: str
    address_gone: bool = False
    maybe_sent: bool = False


class SmtpRelay(BaseModel):
    """Where and how a sender hands mail over: host, port, login, TLS and the per-command timeout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(None, repr=False)
    starttls: bool | Literal["auto"] = "auto"
    use_tls: bool = False  # TLS from the first byte (port 465)
    timeout: float = Field(30.0, gt=0)  # seconds, for connecting and for each command
    local_hostname: str | None = None  # the EHLO name; None: this machine's FQDN

    @model_validator(mode="after")
    def _one_kind_of_tls(self) -> SmtpRelay:
        if self.use_tls and self.starttls is True:
            raise ValueError("use_tls (TLS from the start) and starttls cannot both be on")
        return self

    def client(self) -> aiosmtplib.SMTP:
        """A new, unconnected client for this relay."""
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
            use_tls=self.use_tls,
            start_tls=None if self.starttls == "auto" else bool(self.starttls),
        )


class _Unconfirmed(Exception):
    """The final dot left and no reply came: the relay may have the message."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error) or type(error).__name__)


class _Stale(Exception):
    """MAIL FROM found the connection closed, or closing (421): the message was not handed over."""

    def __init__(self, outcome: SmtpOutcome) -> None:
        super().__init__(outcome.text)
        self.outcome = outcome


class SmtpPool:
    """Up to `size` open connections to one relay, reused across messages, under one send rate."""

    def __init__(
        self,
        relay: SmtpRelay,
        size: int = 1,
        rate_per_second: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self.relay = relay
        self._slots = asyncio.Semaphore(size)
        self._idle: list[aiosmtplib.SMTP] = []  # connected clients no send holds; at most `size` exist
        self.rate = SendRate(rate_per_second, clock, sleep) if rate_per_second is not None else None
        self._closed = False

    async def send(
        self, envelope_from: str, recipient: str, data: bytes, before_commit: BeforeCommit | None = None
    ) -> SmtpOutcome:
        """Hand `data` to the relay for `recipient`; ValueError only for a malformed address."""
        _check_address(envelope_from, "envelope_from")
        _check_address(recipient, "recipient")
        if self._closed:
            raise RuntimeError("the SMTP pool is closed")
        async with self._slots:
            client = self._idle.pop() if self._idle else self.relay.client()
            done = False
            try:
                if self.rate is not None:
                    await self.rate.acquire()
                outcome = await self._deliver(client, envelope_from, recipient, data, before_commit)
                done = True
                return outcome
            finally:
                # A cancelled send leaves the connection mid-transaction: never reuse it.
                if done and client.is_connected and not self._closed:
                    self._idle.append(client)
                else:
                    client.close()

    async def close(self) -> None:
        """QUIT every idle connection; connections still sending close when their send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client) for client in idle))

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def _deliver(
        self,
        client: aiosmtplib.SMTP,
        envelope_from: str,
        recipient: str,
        data: bytes,
        before_commit: BeforeCommit | None,
    ) -> SmtpOutcome:
        try:
            if client.is_connected:
                try:
                    return await _transaction(client, envelope_from, recipient, data, before_commit)
                except _Stale:
                    client.close()  # dropped while idle: try once on a fresh connection
            await _connect(client)
            return await _transaction(client, envelope_from, recipient, data, before_commit)
        except _Stale as stale:
            client.close()
            return stale.outcome
        except _Unconfirmed as lost:
            client.close()
            return SmtpOutcome("failed", 0, str(lost), maybe_sent=True)
        except aiosmtplib.SMTPResponseException as refused:  # greeting, EHLO, STARTTLS or AUTH refused
            client.close()
            return SmtpOutcome("failed", refused.code, refused.message)
        except (aiosmtplib.SMTPException, OSError) as error:  # no reply: refused, lost, timed out, TLS
            client.close()
            return SmtpOutcome("failed", 0, str(error) or type(error).__name__)


async def _connect(client: aiosmtplib.SMTP) -> None:
    await client.connect()
    if client.is_ehlo_or_helo_needed:  # EHLO now, so the first MAIL FROM knows about SIZE
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()


async def _transaction(
    client: aiosmtplib.SMTP,
    envelope_from: str,
    recipient: str,
    data: bytes,
    before_commit: BeforeCommit | None = None,
) -> SmtpOutcome:
    """MAIL, RCPT, DATA for one recipient; refusals become outcomes, lost connections raise.

    The commands go straight to aiosmtplib's protocol: the addresses are checked ASCII already,
    so its `mail`/`rcpt` (each parsing its address again with the email package) add only cost.
    """
    size = b" SIZE=%d" % len(data) if client.supports_extension("size") else b""
    try:
        mailed = await _command(client, b"MAIL FROM:<" + envelope_from.encode() + b">" + size)
    except aiosmtplib.SMTPServerDisconnected as lost:
        raise _Stale(SmtpOutcome("failed", 0, str(lost))) from None
    if mailed.code == 421:
        raise _Stale(SmtpOutcome("failed", mailed.code, mailed.message))
    if mailed.code != SMTPStatus.completed:
        return await _reset(client, SmtpOutcome("failed", mailed.code, mailed.message))
    named = await _command(client, b"RCPT TO:<" + recipient.encode() + b">")
    if not 200 <= named.code < 300:  # 252 ("cannot verify, will try") goes on
        return await _reset(client, _by_code(named.code, named.message, at_rcpt=True))
    try:
        accepted = await _data(client, data, before_commit)
    except aiosmtplib.SMTPDataError as refused:
        return await _reset(client, _by_code(refused.code, refused.message, at_rcpt=False))
    return SmtpOutcome("delivered", accepted.code, accepted.message)


async def _command(client: aiosmtplib.SMTP, line: bytes) -> SMTPResponse:
    """One command and its reply; a lost or timed-out connection (and a 421) is closed."""
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    try:
        reply = await protocol.execute_command(line, timeout=client.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()  # a reply given up on would be paired with the next command
        raise
    if reply.code == SMTPStatus.domain_unavailable:
        client.close()
    return reply


async def _data(client: aiosmtplib.SMTP, data: bytes, before_commit: BeforeCommit | None) -> SMTPResponse:
    """DATA, the message and its final dot, with `before_commit` awaited right before they go.

    Until the final dot the relay holds nothing it would deliver: a process that stops before it
    leaves no message behind. `before_commit` records that the message is about to go, so a
    restarted sender knows not to send it again; the message and the dot then leave in one write
    (one system call, not two). This reaches into aiosmtplib's protocol (its command lock and
    reader), which the pinned version range keeps stable.
    """
    protocol = client.protocol
    lock = protocol._command_lock if protocol is not None else None  # see the docstring
    if protocol is None or lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    body = _stuffed(data)
    try:
        async with lock:
            protocol._response_pending = True
            protocol.write(b"DATA\r\n")
            started = await protocol.read_response(timeout=client.timeout)
            if started.code != SMTPStatus.start_input:
                raise aiosmtplib.SMTPDataError(started.code, started.message)
            if before_commit is not None:
                await before_commit()
            protocol._response_pending = True
            protocol.write(body + b".\r\n")
            try:
                done = await protocol.read_response(timeout=client.timeout)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as lost:
                raise _Unconfirmed(lost) from None
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if done.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(done.code, done.message)
    return done


def _stuffed(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, a leading dot doubled, ending in CRLF.
    A message that already has CRLF line ends only (what `senders/mime.py` writes) takes two
    whole-buffer replaces, not aiosmtplib's regular expressions."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = normalize_message_line_endings(data)
    body = data.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body if body.endswith(b"\r\n") else body + b"\r\n"


async def _reset(client: aiosmtplib.SMTP, outcome: SmtpOutcome) -> SmtpOutcome:
    """RSET so the connection can carry the next message; drop it when even that fails."""
    if client.is_connected:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
    return outcome


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass  # closing anyway
    finally:
        client.close()


def _by_code(code: int, text: str, at_rcpt: bool) -> SmtpOutcome:
    """The outcome a reply to the recipient's own stage means: 2xx, 4xx, 5xx; anything else failed."""
    kinds: dict[int, OutcomeKind] = {2: "delivered", 4: "soft_bounce", 5: "hard_bounce"}
    kind = kinds.get(code // 100, "failed")
    return SmtpOutcome(
        kind, code, text, address_gone=kind == "hard_bounce" and _address_gone(code, text, at_rcpt)
    )


def _address_gone(code: int, text: str, at_rcpt: bool) -> bool:
    status = _ENHANCED.match(text)
    if status is None:
        return at_rcpt and code in (550, 551, 553)
    return (status.group(1), status.group(2)) in _GONE


_ENHANCED = re.compile(r"\s*[245]\.(\d{1,3})\.(\d{1,3})\b")  # RFC 3463: class.subject.detail
_GONE = {("1", "1"), ("1", "2"), ("1", "3"), ("1", "6"), ("1", "10"), ("2", "1")}


def _check_address(address: str, name: str) -> None:
    if not address.isascii() or not _ENVELOPE_ADDRESS.match(address):
        raise ValueError(f"{name} {address!r} is not an ASCII mail address")
