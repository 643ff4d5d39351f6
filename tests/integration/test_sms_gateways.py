"""SMS gateways beyond the shared contract: SMPP parts, numbering, binds, receipts; BulkSMS specifics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

import orjson

from herald.domain.sms import decode_part
from herald.senders.bulksms import BulkSmsGateway, BulkSmsSettings, parse_reports
from herald.senders.gateway import Accepted, DeliveryReport, Outbound, TemporaryFailure
from herald.senders.smpp import SmppGateway, SmppSettings, parse_receipt
from tests import channel_servers as cs
from tests.smsc import Smsc, smsc_server


def smpp(smsc: Smsc, reports: list[DeliveryReport] | None = None, **settings: object) -> SmppGateway:
    config = SmppSettings(
        host="127.0.0.1",
        port=smsc.port,
        system_id="herald",
        password="secret",
        **settings,  # type: ignore[arg-type]
    )
    return SmppGateway(config, (reports if reports is not None else []).append)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the SMSC's bytes to arrive (network I/O, not a processor)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_long_message_goes_as_concatenated_parts_each_with_its_receipt() -> None:
    text = "Привет, Анна! Спешим показать новую коллекцию: trk.example.com/s/vkxNTsPot2 " * 2
    reports: list[DeliveryReport] = []
    async with smsc_server() as smsc:
        gateway = smpp(smsc, reports)
        outcome = await gateway.send(Outbound("m-long", "+79161234567", text, sender="AWESOME"))
        await until(lambda: len(reports) == 3)
        await gateway.close()
    assert isinstance(outcome, Accepted) and len(outcome.provider_ids) == 3
    assert [s.esm_class for s in smsc.submits] == [0x40] * 3 and {s.data_coding for s in smsc.submits} == {8}
    references = {s.udh[3] for s in smsc.submits}
    assert len(references) == 1
    assert [s.udh[4:6] for s in smsc.submits] == [bytes((3, i)) for i in (1, 2, 3)]
    assert "".join(decode_part(s.payload, "ucs2") for s in smsc.submits) == text
    assert sorted(r.provider_id for r in reports) == sorted(outcome.provider_ids)
    assert smsc.receipts_acknowledged == 3  # every deliver_sm got its deliver_sm_resp


async def test_alpha_and_numeric_senders_and_destinations_are_numbered_as_smscs_expect() -> None:
    async with smsc_server() as smsc:
        gateway = smpp(smsc)
        await gateway.send(Outbound("a", "+79161234567", "hi", sender="AWESOME"))
        await gateway.send(Outbound("b", "+79161234567", "hi", sender="+79990001122"))
        await gateway.send(Outbound("c", "+79161234567", "hi", sender="7911"))
        await gateway.close()
    assert [(s.source_addr_ton, s.source_addr_npi, s.source_addr) for s in smsc.submits] == [
        (5, 0, "AWESOME"),
        (1, 1, "+79990001122"),
        (2, 1, "7911"),
    ]
    assert {(s.dest_addr_ton, s.destination_addr) for s in smsc.submits} == {(1, "79161234567")}
    assert [s.payload for s in smsc.submits] == [b"hi"] * 3  # GSM 7-bit, one septet per octet


async def test_a_refused_bind_is_temporary_and_submits_nothing() -> None:
    async with smsc_server(Smsc(accounts={"herald": "other"})) as smsc:
        gateway = smpp(smsc)
        outcome = await gateway.send(Outbound("m", "+79161234567", "hi"))
        await gateway.close()
    assert isinstance(outcome, TemporaryFailure) and "bind refused" in outcome.response
    assert outcome.code == 0x0E and not outcome.maybe_sent and smsc.submits == []


async def test_no_answer_to_a_written_submit_may_have_been_sent() -> None:
    async with smsc_server(Smsc(silent={"79160000000"})) as smsc:
        gateway = smpp(smsc, timeout=0.2)
        outcome = await gateway.send(Outbound("m", "+79160000000", "hi"))
        await gateway.close()
    assert isinstance(outcome, TemporaryFailure) and outcome.maybe_sent


async def test_a_lost_bind_fails_what_was_in_flight_and_the_next_send_binds_again() -> None:
    async with smsc_server(Smsc(silent={"79160000000"})) as smsc:
        gateway = smpp(smsc)
        waiting = asyncio.create_task(gateway.send(Outbound("m1", "+79160000000", "hi")))
        await until(lambda: len(smsc.submits) == 1)
        await smsc.drop_connections()
        lost = await waiting
        again = await gateway.send(Outbound("m2", "+79161234567", "hi"))
        await gateway.close()
    assert isinstance(lost, TemporaryFailure) and lost.maybe_sent
    assert isinstance(again, Accepted) and len(smsc.binds) == 2


async def test_an_idle_bind_is_kept_alive_with_enquire_link() -> None:
    async with smsc_server() as smsc:
        gateway = smpp(smsc, enquire_link_seconds=0.05)
        await gateway.send(Outbound("m", "+79161234567", "hi"))
        await until(lambda: smsc.enquire_links >= 2)
        await gateway.close()


async def test_many_submits_are_in_flight_at_once_within_the_window() -> None:
    async with smsc_server() as smsc:
        gateway = smpp(smsc, window=32)
        outcomes = await asyncio.gather(
            *(gateway.send(Outbound(f"m{i}", "+79161234567", f"n{i}")) for i in range(300))
        )
        await gateway.close()
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert len({o.provider_ids[0] for o in outcomes if isinstance(o, Accepted)}) == 300


async def test_an_undelivered_receipt_is_reported_as_undelivered() -> None:
    reports: list[DeliveryReport] = []
    async with smsc_server(Smsc(receipt_state={"79161234567": "UNDELIV"})) as smsc:
        gateway = smpp(smsc, reports)
        await gateway.send(Outbound("m", "+79161234567", "hi"))
        await until(lambda: len(reports) == 1)
        await gateway.close()
    assert (reports[0].state, reports[0].code) == ("undelivered", "001")


def test_a_receipt_without_tlvs_is_read_from_its_text() -> None:
    text = (
        b"id:0A1B2C sub:001 dlvrd:000 submit date:2603020900 done date:2603020905 "
        b"stat:EXPIRED err:027 text:hi"
    )
    pdu = SimpleNamespace(short_message=text, receipted_message_id=None, message_state=None)
    report = parse_receipt(pdu)
    assert report is not None
    assert (report.provider_id, report.state, report.code) == ("0A1B2C", "expired", "027")
    assert report.at is not None and report.at.isoformat() == "2026-03-02T09:05:00+00:00"


async def test_bulksms_sends_the_counted_encoding_and_parts_and_a_retried_submission_once() -> None:
    async with cs.bulksms_server() as server:
        gateway = BulkSmsGateway(
            BulkSmsSettings(base_url=server.base_url, username=server.username, password=server.password)
        )
        message = Outbound("m-1", "+15551234567", "Привет! " * 12, sender="AWESOME")
        first = await gateway.send(message)
        second = await gateway.send(message)
        await gateway.close()
    assert isinstance(first, Accepted) and first == second  # the provider dropped the retried submission
    body = server.received[0].body
    assert (body["encoding"], body["longMessageMaxParts"], body["from"]) == ("UNICODE", 2, "AWESOME")
    assert body["deliveryReports"] == "ALL" and body["userSuppliedId"] == "m-1"


def test_bulksms_reports_keep_final_states_only() -> None:
    body = orjson.dumps(
        [
            {"id": "1", "userSuppliedId": "a", "status": {"type": "DELIVERED", "subtype": None}},
            {"id": "2", "userSuppliedId": "b", "status": {"type": "FAILED", "subtype": "EXPIRED"}},
            {"id": "3", "userSuppliedId": "c", "status": {"type": "FAILED", "subtype": "BLOCKED"}},
            {"id": "4", "userSuppliedId": "d", "status": {"type": "SENT", "subtype": None}},
            {"id": "5", "status": {"type": "FAILED", "subtype": "ABSENT"}},
        ]
    )
    assert [(r.provider_id, r.state, r.message_id) for r in parse_reports(body)] == [
        ("1", "delivered", "a"),
        ("2", "expired", "b"),
        ("3", "rejected", "c"),
        ("5", "undelivered", ""),
    ]
