"""SMS over SMPP 3.4 (the operators' protocol), with `smpplib` as the client.

One `SmppGateway` keeps one transceiver bind to one SMSC (bind_transceiver,
so submits and delivery receipts share the connection). `smpplib` owns the
socket and encodes the submits; a reader thread runs its `read_once` loop
(submit_sm_resp, deliver_sm with its deliver_sm_resp, enquire_link both ways)
over 64 KiB reads, the two PDUs that come for every part (submit_sm_resp and
a receipt) read by `smpp_pdus` and the rest by smpplib, and hands what it
read to the event loop in batches; every write (submits, and the reader's answers) is made on the
loop's thread, so the two never share the socket under a lock. Each submit's
response is awaited by its sequence number, so up to `window` submits are in
flight at once instead of one round trip per message.

Decisions where the task is silent:
- Long messages go as concatenated parts with the 8-bit UDH (esm_class UDHI),
  cut by `domain/sms.py` (GSM 7-bit as data_coding 0, else UCS-2 as 8); the
  concatenation reference is derived from our message id, as is
  `user_message_reference`, so a resend carries the same values. SMPP has no
  idempotency key: exactly-once rests on the worker's commit mark.
- The sender (`source_addr`): an alphanumeric Caller ID goes as TON 5 / NPI 0,
  a number as international (TON 1 / NPI 1) when it starts with `+`, else
  national; destinations are E.164 numbers, sent without the `+`.
- Every part asks for a delivery receipt (registered_delivery 1). A receipt
  (deliver_sm whose esm_class says "SMSC delivery receipt") names the part by
  the `receipted_message_id` TLV, else by the `id:` of its text; its state
  comes from the `message_state` TLV, else the text's `stat:`.
- Outcomes by command status: throttled (0x58), queue full (0x14, 0x64),
  system error (0x08), submit failed (0x45) and a bind refused or lost are
  temporary; an invalid destination (0x0B) is permanent with the address gone;
  anything else permanent. A part refused after earlier parts were accepted
  makes the whole message refused (the parts already sent cannot be recalled).
- No answer to a submit that was written (timeout, connection lost) is a
  temporary failure marked `maybe_sent`: the SMSC may have taken it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import smpplib.client
import smpplib.consts as c
import smpplib.exceptions
from pydantic import BaseModel, ConfigDict, Field

from herald.domain.sms import split_sms
from herald.senders import smpp_pdus as pdus
from herald.senders.gateway import (
    Accepted,
    BeforeCommit,
    DeliveryReport,
    Outbound,
    PermanentFailure,
    ReportHandler,
    ReportState,
    SendOutcome,
    TemporaryFailure,
    ignore_report,
)
from herald.senders.rate import SendRate

log = logging.getLogger(__name__)

TEMPORARY_STATUSES = frozenset({0x08, 0x14, 0x45, 0x58, 0x64, c.SMPP_ESME_RINVBNDSTS})
ADDRESS_GONE_STATUSES = frozenset({c.SMPP_ESME_RINVDSTADR})
_RECEIPT = 0x04  # esm_class bits 2-5: SMSC delivery receipt
_READ_SIZE = 65536
_UDHI = 0x40
_STATES: dict[int, ReportState] = {
    2: "delivered",
    3: "expired",
    4: "undelivered",
    5: "undelivered",
    8: "rejected",
}
_STAT_WORDS: dict[str, ReportState] = {
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "undelivered",
    "UNDELIV": "undelivered",
    "REJECTD": "rejected",
}


class SmppSettings(BaseModel):
    """Where and how to bind: the SMSC, the account (system_id and password), the window and the rate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: str = Field("", max_length=8, repr=False)
    system_type: str = Field("", max_length=12)
    window: int = Field(64, ge=1, le=1024, description="submits awaiting their response at once")
    rate_per_second: float | None = Field(None, gt=0)
    timeout: float = Field(10.0, gt=0, description="seconds to wait for a response")
    enquire_link_seconds: float = Field(30.0, gt=0, description="idle time before an enquire_link")


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    message_id: str


class _Client(smpplib.client.Client):  # type: ignore[misc]
    """smpplib's client with every write made on the event loop's thread, in batches.

    Until its reader starts (the bind), a write goes straight out. After, `queue` takes every PDU:
    the reader thread's answers to deliver_sm and enquire_link are handed to the loop instead of
    sharing the socket under a lock, and the loop sends what one turn of it queued in one `sendall`
    (a `sendall` per PDU hands the GIL to the reader thread and back thousands of times a second).
    """

    def __init__(self, *args: Any, queue: Callable[[_Client, Any], None], **kwargs: Any) -> None:
        super().__init__(*args, sequence_generator=_Sequence(), **kwargs)
        self._queue = queue
        self.reader_thread: int | None = None
        self._received = bytearray()

    def _recv_exact(self, exact_size: int) -> bytes:
        """As smpplib's, but taken from what reads of up to `_READ_SIZE` bytes brought: one system call
        (and one hand-over of the GIL between the reader and the loop) per batch of PDUs, not two per
        PDU, and a timeout mid-PDU loses nothing read."""
        while len(self._received) < exact_size:
            try:
                part = self._socket.recv(_READ_SIZE)
            except TimeoutError:
                raise  # idle: the caller sends an enquire_link
            except OSError as error:
                raise smpplib.exceptions.ConnectionError() from error
            if not part:
                raise smpplib.exceptions.ConnectionError()
            self._received += part
        taken = bytes(self._received[:exact_size])
        del self._received[:exact_size]
        return taken

    def read_pdu(self) -> Any:
        """The next PDU: a submit_sm_resp or a receipt read by `smpp_pdus`, anything else by smpplib
        (which also moves the bind's state)."""
        head = self._recv_exact(4)
        length = int.from_bytes(head, "big")
        if length < 16:
            raise smpplib.exceptions.PDUError("Broken PDU")
        raw = head + self._recv_exact(length - 4)
        fast = pdus.decoded(raw)
        if fast is not None:
            return fast
        pdu = smpplib.smpp.parse_pdu(raw, client=self, allow_unknown_opt_params=self.allow_unknown_opt_params)
        if not pdu.is_error() and pdu.command in c.STATE_SETTERS:
            self.state = c.STATE_SETTERS[pdu.command]
        return pdu

    def _message_received(self, pdu: Any) -> None:
        status = self.message_received_handler(pdu=pdu)
        if isinstance(pdu, pdus.Receipt):
            self.send_pdu(pdus.ReceiptAnswer(pdu.sequence, c.SMPP_ESME_ROK if status is None else status))
        else:
            super()._message_received(pdu)

    def send_pdu(self, p: Any) -> bool:
        if self.reader_thread is None:
            return bool(super().send_pdu(p))
        self._queue(self, p)
        return True


class _Sequence:
    """Sequence numbers 1 … 0x7FFFFFFF, safe to take from two threads (`next` on a count is atomic)."""

    def __init__(self) -> None:
        self._count = itertools.count(1)
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = (next(self._count) - 1) % 0x7FFFFFFF + 1
        return self.sequence


class SmppGateway:
    """One transceiver bind to one SMSC behind the channel gateway port."""

    channel = "sms"
    reports_delivery = True

    def __init__(self, settings: SmppSettings, on_report: ReportHandler = ignore_report) -> None:
        self.settings = settings
        self.rate = SendRate(settings.rate_per_second) if settings.rate_per_second else None
        self._on_report = on_report
        self._window = asyncio.Semaphore(settings.window)
        self._bind_lock = asyncio.Lock()
        self._client: _Client | None = None
        self._reader: threading.Thread | None = None
        self._inbox: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._outbox: list[bytes] = []
        self._inbox_lock = threading.Lock()
        self._waking = False
        self._pending: dict[int, asyncio.Future[_Response]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        """Submit every part of `message` to `message.address`; the outcome of all of them together."""
        split = split_sms(message.text, _reference(message.message_id) & 0xFF)
        if not split.parts:
            raise ValueError("an SMS needs a text")
        if self._closed:
            raise RuntimeError("the SMPP gateway is closed")
        if self.rate is not None:
            await self.rate.acquire()
        async with self._window:
            try:
                client = await self._bound()
            except (smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError, OSError) as error:
                status = error.args[1] if len(error.args) > 1 else 0
                return TemporaryFailure(int(status), f"bind refused: {error}".strip())
            if before_commit is not None:
                await before_commit()
            futures = [
                self._submit(client, message, split.encoding, part, split.concatenated)
                for part in split.parts
            ]
            return await self._outcome(futures)

    def _submit(
        self, client: _Client, message: Outbound, encoding: str, part: bytes, concatenated: bool
    ) -> asyncio.Future[_Response]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Response] = loop.create_future()
        ton, npi = _source_numbering(message.sender)
        pdu = smpplib.smpp.make_pdu(
            "submit_sm",
            client=client,
            source_addr_ton=ton,
            source_addr_npi=npi,
            source_addr=message.sender,
            dest_addr_ton=c.SMPP_TON_INTL,
            dest_addr_npi=c.SMPP_NPI_ISDN,
            destination_addr=message.address.lstrip("+"),
            esm_class=_UDHI if concatenated else 0,
            data_coding=c.SMPP_ENCODING_ISO10646 if encoding == "ucs2" else c.SMPP_ENCODING_DEFAULT,
            registered_delivery=c.SMPP_SMSC_DELIVERY_RECEIPT_BOTH,
            short_message=part,
            user_message_reference=_reference(message.message_id) & 0xFFFF,
        )
        self._pending[pdu.sequence] = future
        client.send_pdu(pdu)  # queued: out with the rest of this turn's writes
        return future

    async def _outcome(self, futures: list[asyncio.Future[_Response]]) -> SendOutcome:
        ids: list[str] = []
        try:
            async with asyncio.timeout(self.settings.timeout):
                responses = [await future for future in futures]
        except (TimeoutError, ConnectionError) as error:
            return TemporaryFailure(0, f"no answer from the SMSC: {error}".rstrip(": "), maybe_sent=True)
        for response in responses:
            if response.status == c.SMPP_ESME_ROK:
                ids.append(response.message_id)
                continue
            text = c.DESCRIPTIONS.get(response.status, "unknown status")
            if response.status in TEMPORARY_STATUSES:
                return TemporaryFailure(response.status, text)
            gone = response.status in ADDRESS_GONE_STATUSES
            return PermanentFailure(response.status, text, address_gone=gone)
        return Accepted(tuple(ids), 0, "accepted")

    async def _bound(self) -> _Client:
        async with self._bind_lock:
            if self._client is not None:
                return self._client
            self._loop = asyncio.get_running_loop()
            client = await asyncio.to_thread(self._bind)
            self._client = client
            self._reader = threading.Thread(
                target=self._read, args=(client,), name="smpp-reader", daemon=True
            )
            self._reader.start()
            return client

    def _bind(self) -> _Client:
        s = self.settings
        client = _Client(
            s.host, s.port, timeout=s.timeout, allow_unknown_opt_params=True, queue=self._queue_write
        )
        client.connect()
        try:
            client.bind_transceiver(system_id=s.system_id, password=s.password, system_type=s.system_type)
        except BaseException:
            client.disconnect()
            raise
        client._socket.settimeout(s.enquire_link_seconds)  # idle reads time out into an enquire_link
        client.set_message_sent_handler(self._answered)
        client.set_message_received_handler(self._received)
        client.set_error_pdu_handler(lambda pdu: None)  # a refused submit is an outcome, not an error
        return client

    def _queue_write(self, client: _Client, pdu: Any) -> None:
        if threading.get_ident() == client.reader_thread:
            self._call(self._queue_write, client, pdu)
            return
        if client is not self._client and pdu.command != "unbind":
            return  # that bind is gone: an answer to the SMSC has nowhere to go
        self._outbox.append(pdu.generate())
        if len(self._outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush, client)

    def _flush(self, client: _Client) -> None:
        data, self._outbox = b"".join(self._outbox), []
        try:
            client._socket.sendall(data)
        except (OSError, AttributeError):  # lost (or closed): the reader sees it and fails what waits
            with contextlib.suppress(OSError, AttributeError):
                client._socket.shutdown(socket.SHUT_RDWR)

    def _read(self, client: _Client) -> None:
        """The reader thread: every PDU the SMSC sends, until the bind ends."""
        client.reader_thread = threading.get_ident()
        try:
            # after `close` the reader goes on until the unbind_resp ends the bound state
            while self._client is client or client.state == c.SMPP_CLIENT_STATE_BOUND_TRX:
                client.read_once()
        except (
            smpplib.exceptions.ConnectionError,
            smpplib.exceptions.PDUError,
            OSError,
            ValueError,
        ) as error:
            if self._client is client:
                log.warning("SMPP bind to %s:%s lost: %s", self.settings.host, self.settings.port, error)
        finally:
            with contextlib.suppress(OSError):
                client.disconnect()
            self._call(self._lost, client)

    def _answered(self, pdu: Any, **_: Any) -> None:
        response = _Response(int(pdu.status), _text(pdu.message_id))
        self._call(self._resolve, pdu.sequence, response)

    def _resolve(self, sequence: int, response: _Response) -> None:
        future = self._pending.pop(sequence, None)
        if future is not None and not future.done():
            future.set_result(response)

    def _lost(self, client: _Client) -> None:
        if self._client is client:
            self._client = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the SMPP bind was lost"))

    def _received(self, pdu: Any, **_: Any) -> int:
        if pdu.command == "deliver_sm" and (pdu.esm_class or 0) & _RECEIPT:
            report = parse_receipt(pdu)
            if report is not None:
                self._call(self._on_report, report)
        return c.SMPP_ESME_ROK  # the deliver_sm_resp smpplib sends

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        """Run `function(*args)` on the event loop: queued, with one wake-up per batch, not per PDU
        (a wake-up per response costs more than the response itself at thousands a second)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._inbox_lock:
            self._inbox.append((function, args))
            if self._waking:
                return
            self._waking = True
        loop.call_soon_threadsafe(self._drain_inbox)

    def _drain_inbox(self) -> None:
        with self._inbox_lock:
            calls, self._inbox = self._inbox, []
            self._waking = False
        for function, args in calls:
            function(*args)

    async def close(self) -> None:
        """Unbind and disconnect; submits still waiting fail as lost."""
        self._closed = True
        client, reader = self._client, self._reader
        if client is None or reader is None:
            return
        self._client = None  # the reader stops after the unbind_resp
        client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
        await asyncio.to_thread(reader.join, self.settings.timeout)
        if reader.is_alive() and client._socket is not None:
            client._socket.shutdown(socket.SHUT_RDWR)  # no unbind_resp: end the read
            await asyncio.to_thread(reader.join, self.settings.timeout)


def parse_receipt(pdu: Any) -> DeliveryReport | None:
    """A delivery receipt's part id, state, error and done date (TLVs first, then the text)."""
    fields = _receipt_fields(_text(pdu.short_message))
    provider_id = _text(getattr(pdu, "receipted_message_id", None)) or fields.get("id", "")
    if not provider_id:
        return None
    tlv_state = getattr(pdu, "message_state", None)
    state: ReportState = (
        _STATES.get(int(tlv_state), "unknown")
        if tlv_state is not None
        else _STAT_WORDS.get(fields.get("stat", "").upper(), "unknown")
    )
    return DeliveryReport(provider_id, state, fields.get("err", ""), _done_date(fields.get("done date", "")))


def _receipt_fields(text: str) -> dict[str, str]:
    """The `key:value` pairs of a receipt's text (SMPP 3.4 appendix B); `text:` runs to the end."""
    head = text.split(" text:", 1)[0]
    keys = ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err")
    found: dict[str, str] = {}
    for key in keys:
        marker = f"{key}:"
        at = head.find(marker)
        if at < 0:
            continue
        value = head[at + len(marker) :]
        found[key] = value.split(" ", 1)[0] if key not in ("submit date", "done date") else value[:10]
    return found


def _done_date(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def _source_numbering(sender: str) -> tuple[int, int]:
    if not sender.lstrip("+").isdigit():
        return c.SMPP_TON_ALNUM, c.SMPP_NPI_UNK
    if sender.startswith("+"):
        return c.SMPP_TON_INTL, c.SMPP_NPI_ISDN
    return c.SMPP_TON_NATNL, c.SMPP_NPI_ISDN


def _reference(message_id: str) -> int:
    return int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:2], "big")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
