"""The send gate: the one place every message passes before it is queued (broadcasts, triggers, scenarios).

In the guide's order (notes seed000-B §2.1): the profile must still exist and
its global status allow sending; it needs a subscription on the resource's
channel whose status is "subscribed"; the contact must be on no stop list;
one message per contact per run; the sending policy's caps must allow one
more. The first rule that fails is the message's `Suppression` reason.

Decisions where the guide is silent:
- A profile receives one message per run, at its highest-priority subscription
  on the resource's channel (priority 0 first); a profile with several active
  subscriptions on one channel does not get several copies.
- For email, a profile with no email subscription but an email field is not
  sent to: the guide's "main Email field" exception needs the resource to
  allow it, which no setting here does yet.
- Test messages bypass the statuses, the policy and the de-duplication, not
  the stop lists (a test to a stop-listed address would still damage the
  sender's reputation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from herald.domain.messages import Suppression
from herald.domain.profiles import ProfileState
from herald.domain.statuses import Status
from herald.domain.subscriptions import Subscription


@dataclass(frozen=True, slots=True)
class Passed:
    """The message may be sent, to this subscription."""

    subscription: Subscription

    @property
    def contact(self) -> str:
        return self.subscription.key.contact


@dataclass(frozen=True, slots=True)
class Stopped:
    """The message is not sent, for this reason."""

    reason: Suppression
    detail: str
    contact: str = ""


StopListCheck = Callable[[str, str, str], str | None]
"""(database_id, channel, contact) → the blocking stop list's description, or None.

The database is the profile's: a segment's audience spans several databases, each with its own lists."""

_DUPLICATE = "another profile in this run has this contact"

PolicyCheck = Callable[[ProfileState, Subscription], str | None]
"""(profile, subscription) → the policy cap one more message would break, or None."""


@dataclass
class SendGate:
    """The gate for one run (it remembers the contacts the run already used)."""

    resource_id: str
    channel: str
    stop_list: StopListCheck
    policy: PolicyCheck
    is_test: bool = False
    check_uniqueness: bool = True

    def __post_init__(self) -> None:
        self._contacts: set[str] = set()

    def remember(self, contacts: set[str]) -> None:
        """Start from the contacts earlier messages of the run used. The gate takes the set over and adds
        to it (a run's million contacts are not copied per chunk): the caller must not use it again."""
        self._contacts = contacts

    def used_contacts(self) -> set[str]:
        """The contacts this run's messages used so far (the gate's own set, handed over)."""
        return self._contacts

    def check(self, profile: ProfileState) -> Passed | Stopped:
        """Whether `profile` may be sent this run's message, and to which subscription."""
        if not profile.exists:
            return Stopped(Suppression.PROFILE_GONE, "the profile was deleted or merged")
        if profile.status is not Status.SUBSCRIBED and not self.is_test:
            return Stopped(Suppression.PROFILE_STATUS, f"the profile's global status is {profile.status}")
        subscriptions = profile.subscriptions.of_resource(self.resource_id, self.channel)
        if not subscriptions:
            missing = f"no {self.channel} subscription on resource {self.resource_id}"
            return Stopped(Suppression.NO_SUBSCRIPTION, missing)
        active = [s for s in subscriptions if s.status is Status.SUBSCRIBED]
        if not active and self.is_test:
            active = subscriptions  # a test goes to the tester's address whatever its status
        if not active:
            first = subscriptions[0]
            return Stopped(
                Suppression.SUBSCRIPTION_STATUS, f"the subscription is {first.status}", first.key.contact
            )
        chosen = active[0]
        contact = chosen.key.contact
        blocked = self.stop_list(profile.database_id, self.channel, contact)
        if blocked is not None:
            return Stopped(Suppression.STOP_LIST, blocked, contact)
        if self.is_test:
            return Passed(chosen)
        if self.check_uniqueness and contact in self._contacts:
            return Stopped(Suppression.DUPLICATE_CONTACT, _DUPLICATE, contact)
        violated = self.policy(profile, chosen)
        if violated is not None:
            return Stopped(Suppression.POLICY, violated, contact)
        self._contacts.add(contact)
        return Passed(chosen)
