"""A message (stream `message-<id>`): one recipient of one campaign run, from queue to outcome.

Every message a campaign means to send gets a stream, whether it is queued
or not: a message that is not sent records why (`MessageSuppressed`), so
"why didn't X get it" always has an answer. Its id is derived from the
campaign, the run and the recipient, so a retried or replayed run makes the
same ids and the store drops what it already holds.

Decisions where the guide is silent:
- A message is decided once: queued, suppressed or failed. Deciding it again
  (a redelivered run chunk) makes no event.
- Suppression reasons are a closed list (`Suppression`), each one counted
  by the campaign's progress; `detail` says the specifics (which stop list,
  which policy cap, which status).
- A test message (to the test contacts of a campaign) is marked `is_test`
  everywhere and never counts in a campaign's audience or statistics.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from herald.domain.campaigns import CampaignSettings
from herald.domain.decider import Decider
from herald.domain.events import Event, registry


class Suppression(StrEnum):
    """Why a message was not sent (the campaign's counters group by these)."""

    NO_SUBSCRIPTION = "no_subscription"  # the profile has no subscription on the resource's channel
    PROFILE_STATUS = "profile_status"  # the profile's global status forbids sending
    SUBSCRIPTION_STATUS = "subscription_status"  # the subscription is unsubscribed, bounced, ...
    STOP_LIST = "stop_list"
    POLICY = "policy"  # a sending policy's frequency cap
    DUPLICATE_CONTACT = "duplicate_contact"  # another profile of this run has the same contact
    PROFILE_GONE = "profile_gone"  # deleted or merged since the run froze its audience


class Lane(StrEnum):
    """The sender queue a message waits in: bulk campaigns, or the triggers' priority lane."""

    BULK = "bulk"
    TRIGGER = "trigger"
    TRIGGER_HIGH = "trigger_high"


@registry.register("MessageQueued")
class MessageQueued(Event):
    """The message passed the send gate and was rendered; the sender takes it from here."""

    message_id: str
    campaign_id: str
    run_id: str
    profile_id: str
    database_id: str
    resource_id: str
    channel: str
    contact: str
    template_id: str
    template_version: int
    fragment_versions: dict[str, int] = Field(default_factory=dict)
    lane: Lane = Lane.BULK
    due_at: datetime
    local_day: date  # the profile's calendar day when queued: what sending policies count by
    is_test: bool = False
    content: dict[str, Any] | None = None  # JSON passed with a trigger, for the template's `json.*`
    promo_codes: dict[str, str] | None = None  # the codes the message carries, by program template name
    scenario_id: str | None = None  # sent by a scenario's campaign node
    at: datetime


@registry.register("MessageSuppressed")
class MessageSuppressed(Event):
    """The send gate stopped the message; `reason` and `detail` say why."""

    message_id: str
    campaign_id: str
    run_id: str
    profile_id: str
    resource_id: str
    channel: str
    contact: str
    reason: Suppression
    detail: str
    is_test: bool = False
    scenario_id: str | None = None
    at: datetime


@registry.register("MessageFailed")
class MessageFailed(Event):
    """The message could not be made (a remote fetch failed, a limit was hit); `reason` says what."""

    message_id: str
    campaign_id: str
    run_id: str
    profile_id: str
    resource_id: str
    channel: str
    contact: str
    template_id: str
    template_version: int
    reason: str
    is_test: bool = False
    scenario_id: str | None = None
    at: datetime


MessageDecision = MessageQueued | MessageSuppressed | MessageFailed


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A message about to be decided: whose, which run, which template, when."""

    campaign_id: str
    settings: CampaignSettings
    run_id: str
    message_id: str
    template_id: str
    at: datetime
    due_at: datetime | None = None  # default: at once
    lookups: object = None  # what the ports looked up for this chunk (templates, resource), reused
    scenario_id: str | None = None  # a scenario's campaign node sends it


@dataclass(frozen=True, slots=True)
class MessageState:
    decided: MessageDecision | None = None


@dataclass(frozen=True, slots=True)
class DecideMessage:
    """Record what became of a message: queued, suppressed or failed."""

    decision: MessageDecision


def decide(command: DecideMessage, state: MessageState) -> list[Event]:
    return [] if state.decided is not None else [command.decision]


def evolve(state: MessageState, event: Event) -> MessageState:
    if isinstance(event, MessageQueued | MessageSuppressed | MessageFailed):
        return MessageState(event)
    return state


message_decider: Decider[DecideMessage, MessageState] = Decider(MessageState(), decide, evolve)


def message_stream(message_id: str) -> str:
    return f"message-{message_id}"


_MESSAGE_NAMESPACE = uuid.UUID("6d1b3f0e-6c52-5c1a-9b7e-0f3c8f1d2a41")


def message_id(campaign_id: str, run_id: str, profile_id: str) -> str:
    """The id of the message a run makes for a profile: the same every time the run is (re)played."""
    return uuid.uuid5(_MESSAGE_NAMESPACE, "\x1f".join((campaign_id, run_id, profile_id))).hex
