"""A small SMSC on loopback speaking SMPP 3.4 for the SMS tests: binds, submits, receipts, throttling.

It has its own PDU codec (not smpplib's), so a test against it checks the
bytes Herald's client puts on the wire, not a library talking to itself.

Behaviour a test sets:
- `accounts`: system_id → password a bind must give (else ESME_RINVPASWD);
- `refuse`: destination → command status for its submits (0x0B invalid
  destination, 0x58 throttled, ...);
- `per_second`: submits beyond this many in one second get ESME_RTHROTTLED;
- `receipt_state`: destination → the receipt's `stat` (default DELIVRD); a
  receipt follows every accepted submit asking for one (registered_delivery);
- `hold_receipts`: receipts wait until `release_receipts()`;
- `silent`: destinations whose submits are never answered.
Everything received is kept in `submits` (decoded) and `binds`.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

BIND_TRANSCEIVER, BIND_TRANSCEIVER_RESP = 0x00000009, 0x80000009
SUBMIT_SM, SUBMIT_SM_RESP = 0x00000004, 0x80000004
DELIVER_SM, DELIVER_SM_RESP = 0x00000005, 0x80000005
ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x00000015, 0x80000015
UNBIND, UNBIND_RESP = 0x00000006, 0x80000006
GENERIC_NACK = 0x80000000
ESME_RINVPASWD, ESME_RTHROTTLED = 0x0E, 0x58
TLV_USER_MESSAGE_REFERENCE, TLV_RECEIPTED_MESSAGE_ID, TLV_MESSAGE_STATE = 0x0204, 0x001E, 0x0427
_STATE_CODES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "REJECTD": 8}


@dataclass
class Submit:
    """One submit_sm as the SMSC decoded it."""

    message_id: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    destination_addr: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes]

    @property
    def udh(self) -> bytes:
        return self.short_message[: self.short_message[0] + 1] if self.esm_class & 0x40 else b""

    @property
    def payload(self) -> bytes:
        return self.short_message[len(self.udh) :]

    @property
    def user_message_reference(self) -> int | None:
        raw = self.tlvs.get(TLV_USER_MESSAGE_REFERENCE)
        return struct.unpack(">H", raw)[0] if raw else None


@dataclass
class Smsc:
    accounts: dict[str, str] = field(default_factory=lambda: {"herald": "secret"})
    refuse: dict[str, int] = field(default_factory=dict)
    per_second: int | None = None
    receipt_state: dict[str, str] = field(default_factory=dict)
    hold_receipts: bool = False
    silent: set[str] = field(default_factory=set)
    submits: list[Submit] = field(default_factory=list)
    binds: list[tuple[str, str]] = field(default_factory=list)
    enquire_links: int = 0
    receipts_acknowledged: int = 0
    port: int = 0
    _held: list[tuple[asyncio.StreamWriter, Submit]] = field(default_factory=list)
    _window: list[float] = field(default_factory=list)
    _sequence: int = 0
    _next_id: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(16)
                length, command, _status, sequence = struct.unpack(">IIII", header)
                body = await reader.readexactly(length - 16)
                if not await self._dispatch(writer, command, sequence, body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _dispatch(self, writer: asyncio.StreamWriter, command: int, sequence: int, body: bytes) -> bool:
        if command == BIND_TRANSCEIVER:
            system_id, at = _cstring(body, 0)
            password, at = _cstring(body, at)
            self.binds.append((system_id, password))
            ok = self.accounts.get(system_id) == password
            _send(writer, BIND_TRANSCEIVER_RESP, 0 if ok else ESME_RINVPASWD, sequence, b"smsc\0")
            return ok
        if command == SUBMIT_SM:
            self._submit(writer, sequence, body)
        elif command == ENQUIRE_LINK:
            self.enquire_links += 1
            _send(writer, ENQUIRE_LINK_RESP, 0, sequence, b"")
        elif command == DELIVER_SM_RESP:
            self.receipts_acknowledged += 1
        elif command == UNBIND:
            _send(writer, UNBIND_RESP, 0, sequence, b"")
            await writer.drain()
            return False
        else:
            _send(writer, GENERIC_NACK, 0x03, sequence, b"")
        await writer.drain()
        return True

    def _submit(self, writer: asyncio.StreamWriter, sequence: int, body: bytes) -> None:
        submit = _decode_submit(body, f"{self._next_id + 1:08X}")
        if submit.destination_addr in self.silent:
            self.submits.append(submit)
            return
        status = self.refuse.get(submit.destination_addr, 0)
        if not status and self._throttled():
            status = ESME_RTHROTTLED
        if status:
            _send(writer, SUBMIT_SM_RESP, status, sequence, b"\0")
            return
        self._next_id += 1
        self.submits.append(submit)
        _send(writer, SUBMIT_SM_RESP, 0, sequence, submit.message_id.encode() + b"\0")
        if submit.registered_delivery & 0x03:
            if self.hold_receipts:
                self._held.append((writer, submit))
            else:
                self._receipt(writer, submit)

    def _throttled(self) -> bool:
        if self.per_second is None:
            return False
        now = time.monotonic()
        self._window = [t for t in self._window if t > now - 1.0]
        if len(self._window) >= self.per_second:
            return True
        self._window.append(now)
        return False

    def _receipt(self, writer: asyncio.StreamWriter, submit: Submit) -> None:
        stat = self.receipt_state.get(submit.destination_addr, "DELIVRD")
        stamp = datetime.now(UTC).strftime("%y%m%d%H%M")
        err = "000" if stat == "DELIVRD" else "001"
        text = (
            f"id:{submit.message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{stamp} done date:{stamp} stat:{stat} err:{err} text:"
        ).encode()
        self._sequence += 1
        body = (
            b"\0"  # service_type
            + bytes((submit.dest_addr_ton, 1))
            + submit.destination_addr.encode()
            + b"\0"
            + bytes((submit.source_addr_ton, submit.source_addr_npi))
            + submit.source_addr.encode()
            + b"\0"
            + bytes((0x04, 0, 0))  # esm_class: SMSC delivery receipt; protocol_id; priority
            + b"\0\0"  # schedule_delivery_time, validity_period
            + bytes((0, 0, 0, 0, len(text)))  # registered_delivery, replace, data_coding, default id, length
            + text
            + _tlv(TLV_RECEIPTED_MESSAGE_ID, submit.message_id.encode() + b"\0")
            + _tlv(TLV_MESSAGE_STATE, bytes((_STATE_CODES.get(stat, 7),)))
        )
        _send(writer, DELIVER_SM, 0, self._sequence, body)

    async def release_receipts(self) -> None:
        held, self._held = self._held, []
        for writer, submit in held:
            self._receipt(writer, submit)
            await writer.drain()

    async def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()


def _send(writer: asyncio.StreamWriter, command: int, status: int, sequence: int, body: bytes) -> None:
    writer.write(struct.pack(">IIII", 16 + len(body), command, status, sequence) + body)


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\0", at)
    return data[at:end].decode("latin-1"), end + 1


def _decode_submit(body: bytes, message_id: str) -> Submit:
    _service_type, at = _cstring(body, 0)
    source_ton, source_npi = body[at], body[at + 1]
    source, at = _cstring(body, at + 2)
    dest_ton = body[at]
    destination, at = _cstring(body, at + 2)
    esm_class = body[at]
    at += 3  # esm_class, protocol_id, priority_flag
    _schedule, at = _cstring(body, at)
    _validity, at = _cstring(body, at)
    registered, data_coding, length = body[at], body[at + 2], body[at + 4]
    at += 5
    short_message = body[at : at + length]
    at += length
    tlvs: dict[int, bytes] = {}
    while at + 4 <= len(body):
        tag, size = struct.unpack(">HH", body[at : at + 4])
        tlvs[tag] = body[at + 4 : at + 4 + size]
        at += 4 + size
    return Submit(
        message_id,
        source_ton,
        source_npi,
        source,
        dest_ton,
        destination,
        esm_class,
        registered,
        data_coding,
        short_message,
        tlvs,
    )


@asynccontextmanager
async def smsc_server(smsc: Smsc | None = None, port: int = 0) -> AsyncIterator[Smsc]:
    """Run an SMSC on loopback (a free port unless given: `smsc.port`) until the block ends."""
    smsc = smsc or Smsc()
    server = await asyncio.start_server(smsc.handle, "127.0.0.1", port)
    smsc.port = server.sockets[0].getsockname()[1]
    try:
        yield smsc
    finally:
        await smsc.drop_connections()
        server.close()
        await server.wait_closed()
