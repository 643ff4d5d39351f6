"""The send gate: every reason a message is not sent, in the guide's order, and what tests may skip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.domain.messages import Suppression
from herald.domain.profiles import ProfileState
from herald.domain.send_gate import Passed, SendGate, Stopped
from herald.domain.statuses import Status
from herald.domain.subscriptions import Subscription, SubscriptionKey, SubscriptionsState

AT = datetime(2026, 3, 2, tzinfo=UTC)


def subscription(
    contact: str, status: Status = Status.SUBSCRIBED, priority: int = 0, resource: str = "7"
) -> Subscription:
    return Subscription(SubscriptionKey(resource, "email", contact), status, priority, AT)


def profile(*subs: Subscription, status: Status = Status.SUBSCRIBED, **flags: bool) -> ProfileState:
    items = {s.key: s for s in subs}
    return ProfileState(
        profile_id="p1",
        database_id="1",
        status=status,
        subscriptions=SubscriptionsState(items),
        created=True,
        deleted=flags.get("deleted", False),
    )


def gate(stopped: set[str] | None = None, capped: bool = False, **options: bool) -> SendGate:
    return SendGate(
        "7",
        "email",
        lambda database_id, channel, contact: (
            "account stop list global" if contact in (stopped or set()) else None
        ),
        lambda p, s: "per profile: at most 1 message in 1 day" if capped else None,
        **options,
    )


@pytest.mark.parametrize(
    ("the_profile", "the_gate", "reason"),
    [
        (profile(subscription("a@x.io"), deleted=True), gate(), Suppression.PROFILE_GONE),
        (profile(subscription("a@x.io"), status=Status.UNSUBSCRIBED), gate(), Suppression.PROFILE_STATUS),
        (profile(subscription("a@x.io", resource="8")), gate(), Suppression.NO_SUBSCRIPTION),
        (profile(subscription("a@x.io", Status.HARD_BOUNCED)), gate(), Suppression.SUBSCRIPTION_STATUS),
        (profile(subscription("a@x.io", Status.UNCONFIRMED)), gate(), Suppression.SUBSCRIPTION_STATUS),
        (profile(subscription("a@x.io")), gate(stopped={"a@x.io"}), Suppression.STOP_LIST),
        (profile(subscription("a@x.io")), gate(capped=True), Suppression.POLICY),
    ],
)
def test_each_reason_a_message_is_stopped(
    the_profile: ProfileState, the_gate: SendGate, reason: Suppression
) -> None:
    verdict = the_gate.check(the_profile)
    assert isinstance(verdict, Stopped) and verdict.reason is reason and verdict.detail


def test_one_message_per_contact_per_run() -> None:
    the_gate = gate()
    assert isinstance(the_gate.check(profile(subscription("a@x.io"))), Passed)
    second = the_gate.check(profile(subscription("a@x.io")))
    assert isinstance(second, Stopped) and second.reason is Suppression.DUPLICATE_CONTACT
    assert isinstance(gate(check_uniqueness=False).check(profile(subscription("a@x.io"))), Passed)


def test_the_highest_priority_active_subscription_is_chosen() -> None:
    verdict = gate().check(
        profile(subscription("old@x.io", Status.UNSUBSCRIBED, 0), subscription("new@x.io", priority=1))
    )
    assert isinstance(verdict, Passed) and verdict.contact == "new@x.io"


def test_a_test_message_skips_statuses_policy_and_uniqueness_but_not_stop_lists() -> None:
    tester = profile(subscription("t@x.io", Status.UNSUBSCRIBED), status=Status.UNSUBSCRIBED)
    the_gate = gate(capped=True, is_test=True)
    assert isinstance(the_gate.check(tester), Passed)
    assert isinstance(the_gate.check(tester), Passed)
    blocked = gate(stopped={"t@x.io"}, is_test=True).check(tester)
    assert isinstance(blocked, Stopped) and blocked.reason is Suppression.STOP_LIST
