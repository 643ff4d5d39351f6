"""The submit_sm_resp and receipt reader reads what smpplib reads from the same bytes, and leaves to
smpplib what it does not read (a phone's message, a cut or foreign PDU)."""

from __future__ import annotations

import smpplib.consts as c
import smpplib.smpp

from herald.senders import smpp_pdus as pdus
from herald.senders.smpp import parse_receipt

TEXT = b"id:4f2a sub:001 dlvrd:001 submit date:2612072300 done date:2612072301 stat:DELIVRD err:000 text:"


class _Client:
    """What smpplib's PDUs ask of their client: sequence numbers."""

    sequence = 7

    def next_sequence(self) -> int:
        return self.sequence


def _generated(command: str, **fields: object) -> bytes:
    pdu = smpplib.smpp.make_pdu(command, client=_Client(), **fields)
    raw: bytes = pdu.generate()
    return raw


def _receipt(**fields: object) -> bytes:
    return _generated(
        "deliver_sm",
        source_addr="79161234567",
        destination_addr="AWESOME",
        esm_class=fields.pop("esm_class", 0x04),
        short_message=TEXT,
        **fields,
    )


def test_a_submit_sm_resp_is_read_as_smpplib_reads_it() -> None:
    for status, message_id in ((0, "4f2a-1"), (c.SMPP_ESME_RTHROTTLED, "")):
        raw = _generated("submit_sm_resp", status=status, message_id=message_id)
        fast, slow = pdus.decoded(raw), smpplib.smpp.parse_pdu(raw, client=_Client())
        assert isinstance(fast, pdus.SubmitResponse)
        assert (fast.command, fast.status, fast.sequence) == (slow.command, slow.status, slow.sequence)
        assert fast.message_id == (slow.message_id or b"") and fast.is_error() == slow.is_error()


def test_a_receipt_is_read_as_smpplib_reads_it_with_or_without_its_tlvs() -> None:
    for fields in ({"receipted_message_id": "4f2a", "message_state": 2}, {}):
        raw = _receipt(**fields)
        fast, slow = (
            pdus.decoded(raw),
            smpplib.smpp.parse_pdu(raw, client=_Client(), allow_unknown_opt_params=True),
        )
        assert isinstance(fast, pdus.Receipt)
        assert (fast.sequence, fast.esm_class, fast.short_message) == (
            slow.sequence,
            slow.esm_class,
            slow.short_message,
        )
        assert fast.message_state == getattr(slow, "message_state", None)
        assert parse_receipt(fast) == parse_receipt(slow)


def test_what_it_does_not_read_is_left_to_smpplib() -> None:
    receipt = _receipt(receipted_message_id="4f2a", message_state=2)
    assert pdus.decoded(_receipt(esm_class=0)) is None  # a message from a phone
    assert pdus.decoded(_generated("enquire_link")) is None
    assert pdus.decoded(receipt[:40]) is None  # cut short
    assert pdus.decoded(receipt[:-2]) is None  # its last TLV cut


def test_the_answer_to_a_receipt_is_smpplibs_deliver_sm_resp() -> None:
    answer = pdus.ReceiptAnswer(sequence=7, status=0).generate()
    assert answer == _generated("deliver_sm_resp", status=0)
