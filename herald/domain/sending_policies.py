"""Sending policies (frequency caps): the named policies, which one applies, and the send-time check.

A sending policy (guide, "Политики отправки") caps how many messages one
recipient gets. It has four optional caps, each "at most 1–15 messages in
1–16 days"; a cap that is not set is unlimited ("Не ограничено"):
- `per_profile`: every message to the profile, over any contact and subscription;
- `per_profile_resource`: the profile's messages from one resource;
- `per_profile_channel`: the profile's messages on one channel, over all resources;
- `per_contact`: messages to one email address or phone, over every profile holding it.

Policies are named objects (stream `sendingpolicy-<id>`) that the account, a
resource (`ResourceSettings.sending_policy_id`) and a campaign refer to by id;
the account's choice lives in stream `account-sendingpolicy`.

Precedence (`effective_policy`): campaign > resource > account, and a level
that sets a policy replaces the lower level's policy **whole**, not cap by cap.
The guide settles it: "a policy where no cap is chosen is unlimited; to allow
a resource or campaign unlimited sending under a global cap, create an
unlimited policy to override the global settings" — under per-cap overriding an
empty policy would override nothing. A campaign either picks a policy or keeps
the default "Применить политику ресурса" (apply the resource's policy).

Counting (`SendHistory`, `record_send`, `violation`): messages are counted per
calendar day in the recipient profile's time zone (the account's when the
profile has none); a window of N days is today and the N-1 days before it.
Only messages the gate let through and handed to a sender are recorded: test
sends, and messages stopped by a stop list, a policy, a failed render or a
missing subscription, do not count. A message handed over counts even if it
later bounces. Sending is refused when a window already holds `max_messages`.

Decisions where the guide is silent:
- The contact cap counts days in the time zone of the profile being sent to, the
  same day the profile's own counters use, so the gate computes one `today`.
- Push tokens are not contacts ("email адрес, телефон"): a push send has no
  contact history and the contact cap does not apply to it.
- A day recorded after `today` (the profile's time zone moved west) still counts;
  histories keep the 16 days up to the newest recorded day.
- A profile time zone this build does not know falls back to the account's.
- When several caps are exceeded the reason names the first in the order above.
- Names are required, at most 255 characters, unique per account compared
  case-insensitively (`policy_name_key`; the service enforces uniqueness with a claim).
- A policy may be deleted while assigned; a level whose policy is gone counts as
  not set, so the next level applies. Deleted policy ids are never reused.
- Access groups (the form's third block) are not modelled yet.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from herald.domain.contacts import email_key
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, ValidationFailed
from herald.domain.events import Event, registry

MAX_MESSAGES = 15
MAX_PERIOD_DAYS = 16
NAME_MAX_LENGTH = 255
ACCOUNT_SENDING_POLICY_STREAM = "account-sendingpolicy"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- the policy value ----------------------------------------------------------------------------


def _plural(count: int, one: str) -> str:
    return f"{count} {one}" if count == 1 else f"{count} {one}s"


class FrequencyCap(_Value):
    """At most `max_messages` messages in `period_days` calendar days."""

    max_messages: StrictInt = Field(ge=1, le=MAX_MESSAGES)
    period_days: StrictInt = Field(ge=1, le=MAX_PERIOD_DAYS)

    def describe(self) -> str:
        """The cap in words, e.g. "at most 2 messages in 4 days"."""
        return f"at most {_plural(self.max_messages, 'message')} in {_plural(self.period_days, 'day')}"


class SendingPolicy(_Value):
    """The four optional caps; a policy with none set is unlimited."""

    per_profile: FrequencyCap | None = None
    per_profile_resource: FrequencyCap | None = None
    per_profile_channel: FrequencyCap | None = None
    per_contact: FrequencyCap | None = None


UNLIMITED = SendingPolicy()


def effective_policy(
    account: SendingPolicy | None,
    resource: SendingPolicy | None,
    campaign: SendingPolicy | None,
    apply_resource_policy: bool,
) -> SendingPolicy:
    """The policy a campaign's sends obey: its own, else the resource's, else the account's.

    Each argument is the policy chosen at that level (`None`: not set, or deleted).
    With `apply_resource_policy` the campaign's own choice is ignored. A level
    that sets a policy replaces the lower levels' policy whole.
    """
    for chosen in (None if apply_resource_policy else campaign, resource, account):
        if chosen is not None:
            return chosen
    return UNLIMITED


# --- counting ------------------------------------------------------------------------------------


def local_day(moment: datetime, profile_timezone: str | None, account_timezone: str) -> date:
    """The calendar day `moment` falls on for the profile: in its time zone, else the account's."""
    if moment.tzinfo is None:
        raise ValueError("the send time must carry a time zone")
    zone = ZoneInfo(account_timezone)
    # a zone this build's tz database lacks: count in the account's days
    with suppress(ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(profile_timezone) if profile_timezone else zone
    return moment.astimezone(zone).date()


def contact_key(contact: str) -> str:
    """The key of a contact's history: emails case-insensitive, phones (E.164) as they are."""
    return email_key(contact) if "@" in contact else contact


class SendCount(_Value):
    """How many messages went out on one local day from one resource on one channel."""

    day: date
    resource_id: str
    channel: str
    count: StrictInt = Field(ge=1)


class SendHistory(_Value):
    """Recent sends to one profile (or one contact), pruned to the last `MAX_PERIOD_DAYS` days.

    Entries are sorted by (day, resource_id, channel), so equal histories compare equal.
    """

    entries: tuple[SendCount, ...] = ()

    def count_since(self, first_day: date, resource_id: str | None = None, channel: str | None = None) -> int:
        """Messages on `first_day` or later, from `resource_id` and on `channel` when given."""
        return sum(
            entry.count
            for entry in self.entries
            if entry.day >= first_day
            and (resource_id is None or entry.resource_id == resource_id)
            and (channel is None or entry.channel == channel)
        )


EMPTY_HISTORY = SendHistory()


def record_send(history: SendHistory, day: date, resource_id: str, channel: str) -> SendHistory:
    """`history` with one more message on `day`; days no window can reach any more are dropped."""
    counts: dict[tuple[date, str, str], int] = {
        (entry.day, entry.resource_id, entry.channel): entry.count for entry in history.entries
    }
    key = (day, resource_id, channel)
    counts[key] = counts.get(key, 0) + 1
    # prune against the newest day, not `day`: a late record must not drop newer days' counts
    oldest = max(d for d, _, _ in counts) - timedelta(days=MAX_PERIOD_DAYS - 1)
    kept = sorted((k, n) for k, n in counts.items() if k[0] >= oldest)
    return SendHistory(
        entries=tuple(SendCount(day=d, resource_id=r, channel=c, count=n) for (d, r, c), n in kept)
    )


def violation(
    policy: SendingPolicy,
    profile_history: SendHistory,
    contact_history: SendHistory | None,
    today: date,
    resource_id: str,
    channel: str,
) -> str | None:
    """Why `policy` forbids one more message today, naming the cap, or None if it allows it.

    `today` is the profile's local day (`local_day`); `contact_history` is the
    history of the message's email or phone, `None` when it has none (push).
    """
    checks = (
        ("per profile", policy.per_profile, profile_history, None, None),
        ("per profile within a resource", policy.per_profile_resource, profile_history, resource_id, None),
        ("per profile within a channel", policy.per_profile_channel, profile_history, None, channel),
        ("per contact", policy.per_contact, contact_history, None, None),
    )
    for label, cap, history, resource, on_channel in checks:
        if cap is None or history is None:
            continue
        first_day = today - timedelta(days=cap.period_days - 1)
        if history.count_since(first_day, resource, on_channel) >= cap.max_messages:
            return f"{label}: {cap.describe()}"
    return None


# --- the named policy: events, state, commands ---------------------------------------------------


def sending_policy_stream(policy_id: str) -> str:
    """The stream of one named sending policy."""
    return f"sendingpolicy-{policy_id}"


def policy_name_key(name: str) -> str:
    """What policy names are compared by for uniqueness: trimmed, case-insensitive."""
    return name.strip().casefold()


@registry.register("SendingPolicyCreated")
class SendingPolicyCreated(Event):
    policy_id: str
    name: str
    policy: SendingPolicy
    at: datetime


@registry.register("SendingPolicyChanged")
class SendingPolicyChanged(Event):
    policy_id: str
    name: str
    policy: SendingPolicy
    at: datetime


@registry.register("SendingPolicyDeleted")
class SendingPolicyDeleted(Event):
    policy_id: str
    name: str  # so the name's uniqueness claim can be released from the event alone
    at: datetime


@dataclass(frozen=True, slots=True)
class SendingPolicyState:
    policy_id: str = ""
    name: str = ""
    policy: SendingPolicy = UNLIMITED
    created: bool = False
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.created and not self.deleted


@dataclass(frozen=True, slots=True)
class CreateSendingPolicy:
    policy_id: str
    name: str
    policy: SendingPolicy
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeSendingPolicy:
    """Rename a policy or replace its caps; `None` keeps the current value."""

    policy_id: str
    at: datetime
    name: str | None = None
    policy: SendingPolicy | None = None


@dataclass(frozen=True, slots=True)
class DeleteSendingPolicy:
    policy_id: str
    at: datetime


SendingPolicyCommand = CreateSendingPolicy | ChangeSendingPolicy | DeleteSendingPolicy


def _valid_name(name: str) -> str:
    text = name.strip()
    if not text:
        raise ValidationFailed("a sending policy needs a name", "name")
    if len(text) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"the name is longer than {NAME_MAX_LENGTH} characters", "name")
    return text


def decide(command: SendingPolicyCommand, state: SendingPolicyState) -> list[Event]:
    """The events `command` causes on the policy in `state`."""
    if isinstance(command, CreateSendingPolicy):
        if not command.policy_id.strip():
            raise ValidationFailed("a sending policy needs an id", "policy_id")
        if state.created:
            raise AlreadyExists(f"the sending policy id {command.policy_id!r} is taken", "policy_id")
        name = _valid_name(command.name)
        return [
            SendingPolicyCreated(policy_id=command.policy_id, name=name, policy=command.policy, at=command.at)
        ]
    if not state.exists:
        gone = "was deleted" if state.deleted else "does not exist"
        raise NotFound(f"the sending policy {command.policy_id!r} {gone}", "policy_id")
    if isinstance(command, ChangeSendingPolicy):
        name = state.name if command.name is None else _valid_name(command.name)
        policy = state.policy if command.policy is None else command.policy
        if (name, policy) == (state.name, state.policy):
            return []
        return [SendingPolicyChanged(policy_id=state.policy_id, name=name, policy=policy, at=command.at)]
    return [SendingPolicyDeleted(policy_id=state.policy_id, name=state.name, at=command.at)]


def evolve(state: SendingPolicyState, event: Event) -> SendingPolicyState:
    """The policy after `event`."""
    if isinstance(event, SendingPolicyCreated):
        return SendingPolicyState(event.policy_id, event.name, event.policy, created=True)
    if isinstance(event, SendingPolicyChanged):
        return replace(state, name=event.name, policy=event.policy)
    if isinstance(event, SendingPolicyDeleted):
        return replace(state, deleted=True)
    return state


sending_policy_decider: Decider[SendingPolicyCommand, SendingPolicyState] = Decider(
    SendingPolicyState(), decide, evolve
)


def ensure_assignable(state: SendingPolicyState, policy_id: str, path: str = "sending_policy_id") -> None:
    """Refuse assigning policy `policy_id` (folded as `state`) to the account, a resource or a campaign
    unless it exists."""
    if not state.exists:
        raise NotFound(f"there is no sending policy {policy_id!r}", path)


# --- the account's policy ------------------------------------------------------------------------


@registry.register("AccountSendingPolicySet")
class AccountSendingPolicySet(Event):
    policy_id: str | None = None  # None: the account sets no policy (omitted from the stored payload)
    at: datetime


@dataclass(frozen=True, slots=True)
class AccountSendingPolicyState:
    policy_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetAccountSendingPolicy:
    """Choose the account's policy (`None` clears it); the caller checks it with `ensure_assignable`."""

    policy_id: str | None
    at: datetime


def decide_account(command: SetAccountSendingPolicy, state: AccountSendingPolicyState) -> list[Event]:
    """The event that records the account's choice, none if it does not change."""
    policy_id = None if command.policy_id is None else command.policy_id.strip()
    if policy_id == "":
        raise ValidationFailed("give a sending policy id, or none to clear it", "policy_id")
    if policy_id == state.policy_id:
        return []
    return [AccountSendingPolicySet(policy_id=policy_id, at=command.at)]


def evolve_account(state: AccountSendingPolicyState, event: Event) -> AccountSendingPolicyState:
    """The account's choice after `event`."""
    if isinstance(event, AccountSendingPolicySet):
        return AccountSendingPolicyState(event.policy_id)
    return state


account_sending_policy_decider: Decider[SetAccountSendingPolicy, AccountSendingPolicyState] = Decider(
    AccountSendingPolicyState(), decide_account, evolve_account
)
