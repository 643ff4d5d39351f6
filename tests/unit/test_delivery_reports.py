"""A gateway's acceptance and its delivery reports: given events, when a command, then events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.domain import deliveries as dl
from herald.domain.events import Event
from tests.unit.message_refs import message_ref, queued

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT = timedelta(seconds=300)
REF = message_ref("sms", "+79161234567")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


QUEUED = queued(REF, T0)
ATTEMPTED = dl.MessageSendAttempted(**REF, attempt=1, sender_id="smsc", at=at(1))
COMMITTING = dl.MessageCommitting(**REF, attempt=1, at=at(1))


def accepted(*parts: str, wait: timedelta | None = WAIT) -> dl.MessageAccepted:
    until = at(2) + wait if wait else None
    return dl.MessageAccepted(
        **REF, sender_id="smsc", provider_ids=parts, code=0, response="accepted", await_until=until, at=at(2)
    )


def reported(part: str, state: str, when: int, code: str = "000") -> dl.MessageDeliveryReported:
    return dl.MessageDeliveryReported(**REF, provider_id=part, state=state, code=code, at=at(when))


def report(part: str, state: Any, when: int, code: str = "000") -> dl.RecordDeliveryReport:
    return dl.RecordDeliveryReport(part, state, code, at(when))


def delivered(when: int, response: str = "delivery report") -> dl.MessageDelivered:
    return dl.MessageDelivered(**REF, sender_id="smsc", code=0, response=response, at=at(when))


def not_delivered(when: int, reason: str, detail: str) -> dl.MessageNotDelivered:
    return dl.MessageNotDelivered(**REF, reason=reason, detail=detail, at=at(when))


CASES: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "accepted with reports to await",
        [QUEUED, ATTEMPTED, COMMITTING],
        dl.RecordAcceptance(("a", "b"), 0, "accepted", "smsc", WAIT, at(2)),
        [accepted("a", "b")],
    ),
    (
        "accepted by a gateway that reports nothing: delivered as far as it can tell",
        [QUEUED, ATTEMPTED],
        dl.RecordAcceptance(("x",), 201, "accepted", "push", None, at(2)),
        [dl.MessageDelivered(**REF, sender_id="push", code=201, response="accepted", at=at(2))],
    ),
    (
        "an acceptance recorded again",
        [QUEUED, ATTEMPTED, accepted("a")],
        dl.RecordAcceptance(("a",), 0, "accepted", "smsc", WAIT, at(3)),
        [],
    ),
    (
        "one part of two delivered: still awaited",
        [QUEUED, ATTEMPTED, accepted("a", "b")],
        report("a", "delivered", 10),
        [reported("a", "delivered", 10)],
    ),
    (
        "the last part delivered: the message is",
        [QUEUED, ATTEMPTED, accepted("a", "b"), reported("a", "delivered", 10)],
        report("b", "delivered", 11),
        [reported("b", "delivered", 11), delivered(11)],
    ),
    (
        "a part undelivered: the message is not",
        [QUEUED, ATTEMPTED, accepted("a", "b")],
        report("b", "undelivered", 12, "001"),
        [
            reported("b", "undelivered", 12, "001"),
            not_delivered(12, "report_undelivered", "part b: undelivered 001"),
        ],
    ),
    (
        "a report repeated",
        [QUEUED, ATTEMPTED, accepted("a", "b"), reported("a", "delivered", 10)],
        report("a", "delivered", 20),
        [],
    ),
    (
        "a report on a part the message never had",
        [QUEUED, ATTEMPTED, accepted("a")],
        report("zz", "delivered", 10),
        [],
    ),
    (
        "an unknown state says nothing",
        [QUEUED, ATTEMPTED, accepted("a")],
        report("a", "unknown", 10),
        [],
    ),
    (
        "the wait ends with a part unreported",
        [QUEUED, ATTEMPTED, accepted("a", "b"), reported("a", "delivered", 10)],
        dl.ExpireDeliveryWait(at(302)),
        [not_delivered(302, "no_delivery_report", "1 of 2 part(s) unreported when the wait ended")],
    ),
    (
        "the timer fires early: nothing yet",
        [QUEUED, ATTEMPTED, accepted("a")],
        dl.ExpireDeliveryWait(at(301)),
        [],
    ),
    (
        "the timer after the message was delivered",
        [QUEUED, ATTEMPTED, accepted("a"), reported("a", "delivered", 10), delivered(10)],
        dl.ExpireDeliveryWait(at(400)),
        [],
    ),
    (
        "a late report of delivery still delivers",
        [
            QUEUED,
            ATTEMPTED,
            accepted("a"),
            not_delivered(302, "no_delivery_report", "1 of 1 part(s) unreported"),
        ],
        report("a", "delivered", 500),
        [reported("a", "delivered", 500), delivered(500, "delivery report after the wait")],
    ),
    (
        "a late report of failure is recorded and changes nothing",
        [
            QUEUED,
            ATTEMPTED,
            accepted("a"),
            not_delivered(302, "no_delivery_report", "1 of 1 part(s) unreported"),
        ],
        report("a", "expired", 500),
        [reported("a", "expired", 500)],
    ),
    (
        "a report after the message failed for another reason",
        [
            QUEUED,
            ATTEMPTED,
            accepted("a", "b"),
            reported("b", "rejected", 5),
            not_delivered(5, "report_rejected", "part b: rejected 000"),
        ],
        report("a", "delivered", 6),
        [],
    ),
]


@pytest.mark.parametrize(("name", "given", "when", "then"), CASES, ids=[c[0] for c in CASES])
def test_acceptance_and_delivery_reports(name: str, given: list[Event], when: Any, then: list[Event]) -> None:
    state = dl.delivery_decider.fold(given)
    assert dl.delivery_decider.decide(when, state) == then


def test_an_accepted_message_awaiting_reports_is_neither_sendable_nor_final() -> None:
    state = dl.delivery_decider.fold([QUEUED, ATTEMPTED, accepted("a")])
    assert state.status == "accepted" and not state.sendable and not state.final
    assert state.await_until == at(302)
