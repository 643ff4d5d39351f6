"""The two PDUs an SMSC sends most, read without smpplib's generic machinery, and the answer to one.

For every SMS part the SMSC sends a submit_sm_resp and, later, a delivery receipt (a deliver_sm),
and each receipt is answered with a deliver_sm_resp. smpplib builds a command object for each, by
a table of parameters walked in Python (its `Command.__init__` alone took a sixth of the reader
thread's time, `bench/bench_channels_e2e.py`); these read the fixed layout of SMPP 3.4 §4.4.2 and
§4.6.1 directly. Anything else (a mobile-originated deliver_sm, enquire_link, unbind, a generic
nack, a PDU that does not parse here) is None, and smpplib reads it as before.

The values carry the names and types smpplib gives the same fields (`message_id` and
`receipted_message_id` as bytes, `message_state` as int), so what reads them does not know which
reader made them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
_RECEIPT = 0x04  # esm_class bits 2-5: SMSC delivery receipt
_TLV_RECEIPTED_MESSAGE_ID = 0x001E
_TLV_MESSAGE_STATE = 0x0427
_HEADER = struct.Struct(">IIII")


@dataclass(frozen=True, slots=True)
class SubmitResponse:
    status: int
    sequence: int
    message_id: bytes
    command: str = "submit_sm_resp"

    def is_error(self) -> bool:
        return self.status != 0


@dataclass(frozen=True, slots=True)
class Receipt:
    sequence: int
    esm_class: int
    short_message: bytes
    receipted_message_id: bytes | None
    message_state: int | None
    status: int = 0
    command: str = "deliver_sm"

    def is_error(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ReceiptAnswer:
    """The deliver_sm_resp to a receipt (message_id unused: empty)."""

    sequence: int
    status: int
    command: str = "deliver_sm_resp"

    def generate(self) -> bytes:
        return _HEADER.pack(17, DELIVER_SM_RESP, self.status, self.sequence) + b"\0"


def decoded(raw: bytes) -> SubmitResponse | Receipt | None:
    """`raw` (one whole PDU, its length first) read here, or None for smpplib to read."""
    if len(raw) < _HEADER.size:
        return None
    _, command, status, sequence = _HEADER.unpack_from(raw)
    try:
        if command == SUBMIT_SM_RESP:
            end = raw.find(b"\0", 16)
            return SubmitResponse(status, sequence, raw[16:end] if end >= 0 else raw[16:])
        if command == DELIVER_SM and status == 0:
            return _receipt(raw, sequence)
    except (IndexError, ValueError, struct.error):  # not whole: smpplib says what is wrong
        return None
    return None


def _receipt(raw: bytes, sequence: int) -> Receipt | None:
    at = _skip_cstring(raw, 16)  # service_type
    at = _skip_cstring(raw, at + 2)  # source_addr_ton, _npi, source_addr
    at = _skip_cstring(raw, at + 2)  # dest_addr_ton, _npi, destination_addr
    esm_class = raw[at]
    if not esm_class & _RECEIPT:
        return None  # a message from a phone: smpplib's
    at = _skip_cstring(raw, at + 3)  # esm_class, protocol_id, priority_flag, schedule_delivery_time
    at = _skip_cstring(raw, at)  # validity_period
    length = raw[at + 4]  # after registered_delivery, replace_if_present, data_coding, sm_default_msg_id
    at += 5
    short_message = raw[at : at + length]
    if len(short_message) != length:
        return None
    at += length
    receipted: bytes | None = None
    state: int | None = None
    while at + 4 <= len(raw):
        tag, size = struct.unpack_from(">HH", raw, at)
        value = raw[at + 4 : at + 4 + size]
        if len(value) != size:
            return None
        if tag == _TLV_RECEIPTED_MESSAGE_ID:
            receipted = value.rstrip(b"\0")
        elif tag == _TLV_MESSAGE_STATE and size == 1:
            state = value[0]
        at += 4 + size
    if at != len(raw):
        return None  # bytes after the last whole TLV
    return Receipt(sequence, esm_class, short_message, receipted, state)


def _skip_cstring(raw: bytes, at: int) -> int:
    end = raw.index(b"\0", at)  # ValueError: not a whole PDU
    return end + 1
