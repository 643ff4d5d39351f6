"""A message's attempts and what came of them: given events, when a command, then events (or an error)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.domain import deliveries as dl
from herald.domain.errors import RuleViolated
from herald.domain.events import Event
from tests.unit.decider_table import then, then_error
from tests.unit.message_refs import message_ref, queued

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DEADLINE = timedelta(hours=48)
REF = message_ref("email", "ann@example.org")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


QUEUED = queued(REF, T0)


def attempted(n: int, minutes: float) -> dl.MessageSendAttempted:
    return dl.MessageSendAttempted(**REF, attempt=n, sender_id="smtp", at=at(minutes))


def committing(n: int, minutes: float) -> dl.MessageCommitting:
    return dl.MessageCommitting(**REF, attempt=n, at=at(minutes))


def soft(n: int, minutes: float, retry: float, code: int = 451) -> dl.MessageSoftBounced:
    return dl.MessageSoftBounced(
        **REF, attempt=n, code=code, response="try later", retry_at=at(retry), at=at(minutes)
    )


def failure(minutes: float, permanent: bool = False, **more: Any) -> dl.RecordSendFailure:
    code = 550 if permanent else 451
    response = "no such user" if permanent else "try later"
    return dl.RecordSendFailure(permanent, code, response, "smtp", DEADLINE, at(minutes), **more)


def delivered(minutes: float, response: str, code: int = 250, assumed: bool = False) -> dl.MessageDelivered:
    return dl.MessageDelivered(
        **REF, sender_id="smtp", code=code, response=response, assumed=assumed, at=at(minutes)
    )


CASES: list[tuple[str, list[Event], Any, list[Event]]] = [
    ("a queued message is attempted", [QUEUED], dl.StartAttempt("smtp", at(0)), [attempted(1, 0)]),
    (
        "a soft-bounced one is attempted again, counted",
        [QUEUED, attempted(1, 0), soft(1, 0, 5)],
        dl.StartAttempt("smtp", at(5)),
        [attempted(2, 5)],
    ),
    (
        "the commit mark during an attempt",
        [QUEUED, attempted(1, 0)],
        dl.MarkCommitting(at(0)),
        [committing(1, 0)],
    ),
    (
        "an acceptance without reports to wait for is the delivery",
        [QUEUED, attempted(1, 0), committing(1, 0)],
        dl.RecordAcceptance(("Q1",), 250, "queued as Q1", "smtp", None, at(0)),
        [delivered(0, "queued as Q1")],
    ),
    (
        "a temporary failure waits the first backoff",
        [QUEUED, attempted(1, 0)],
        failure(0),
        [soft(1, 0, 5)],
    ),
    (
        "the third waits the third",
        [QUEUED, attempted(1, 0), soft(1, 0, 5), attempted(2, 5), soft(2, 5, 20), attempted(3, 20)],
        failure(20),
        [soft(3, 20, 50)],
    ),
    (
        "a provider's longer retry-after wins",
        [QUEUED, attempted(1, 0)],
        failure(0, retry_after=timedelta(minutes=12)),
        [soft(1, 0, 12)],
    ),
    (
        "a shorter one does not shorten the backoff",
        [QUEUED, attempted(1, 0)],
        failure(0, retry_after=timedelta(seconds=30)),
        [soft(1, 0, 5)],
    ),
    (
        "past the sender's deadline it is not delivered",
        [QUEUED, attempted(1, 0), soft(1, 0, 5), attempted(7, 47 * 60)],
        failure(47 * 60),
        [
            dl.MessageNotDelivered(
                **REF,
                reason="expired",
                detail="soft bounces until the 48 h deadline; last: 451 try later",
                at=at(47 * 60),
            )
        ],
    ),
    (
        "a permanent failure is a hard bounce",
        [QUEUED, attempted(1, 0), committing(1, 0)],
        failure(0, permanent=True),
        [dl.MessageHardBounced(**REF, code=550, response="no such user", at=at(0))],
    ),
    (
        "no answer after the message left: delivered, assumed, never sent again",
        [QUEUED, attempted(1, 0), committing(1, 0)],
        failure(0, maybe_sent=True),
        [delivered(0, "no answer after the message left: 451 try later", code=0, assumed=True)],
    ),
    (
        "a failure recorded twice is recorded once",
        [QUEUED, attempted(1, 0), soft(1, 0, 5)],
        failure(0),
        [],
    ),
    (
        "a restart settles an uncommitted attempt as sendable now",
        [QUEUED, attempted(1, 0)],
        dl.ResolveInterrupted("recovery", at(3)),
        [soft(1, 3, 3, code=0).model_copy(update={"response": "the sender stopped"})],
    ),
    (
        "and a committed one as delivered, assumed",
        [QUEUED, attempted(1, 0), committing(1, 0)],
        dl.ResolveInterrupted("recovery", at(3)),
        [
            dl.MessageDelivered(
                **REF, sender_id="recovery", code=0, response="outcome not seen", assumed=True, at=at(3)
            )
        ],
    ),
]


@pytest.mark.parametrize(("name", "given", "when", "then_events"), CASES, ids=[c[0] for c in CASES])
def test_attempts_and_their_outcomes(
    name: str, given: list[Event], when: Any, then_events: list[Event]
) -> None:
    assert then(dl.delivery_decider, given, when) == then_events


REFUSED = [
    (
        "a delivered message is not attempted again",
        [QUEUED, attempted(1, 0), delivered(0, "ok")],
        dl.StartAttempt("smtp", at(1)),
    ),
    ("a committing one neither", [QUEUED, attempted(1, 0), committing(1, 0)], dl.StartAttempt("smtp", at(1))),
    ("no commit mark without an attempt", [QUEUED], dl.MarkCommitting(at(0))),
]


@pytest.mark.parametrize(("name", "given", "when"), REFUSED, ids=[c[0] for c in REFUSED])
def test_what_cannot_happen_is_refused(name: str, given: list[Event], when: Any) -> None:
    then_error(dl.delivery_decider, given, when, RuleViolated, "message_id")
