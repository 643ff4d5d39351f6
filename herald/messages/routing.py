"""Which sender a queued message goes out through: its campaign's virtual sender's route.

A campaign names its virtual sender, or gets its channel's default: `default` for email (as
before there were other channels), `default_sms` and `default_push` for the others, so one
virtual sender's rules never mix senders of two channels. The sender the route picks must
serve the message's channel. A push is routed by its subscription's provider: a rule's domains
name providers (`fcm`, `webpush`), so one virtual sender sends browsers and apps each their way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol, TypeVar

from herald.domain import senders as sd
from herald.domain.deliveries import RenderInputs
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.messages import MessageQueued
from herald.messages.queued import QueuedMessages
from herald.messages.rendering import RenderedBody, RenderedMessage
from herald.messages.worker import Lookups

DEFAULT_VIRTUAL_SENDER = "default"
B = TypeVar("B", bound=RenderedBody)


class Senders(Protocol):
    """Senders with their secrets opened (`services/senders.SenderService`)."""

    def for_sending(self, sender_id: str) -> sd.OpenedSender: ...


def default_virtual_sender(channel: str) -> str:
    return DEFAULT_VIRTUAL_SENDER if channel == "email" else f"{DEFAULT_VIRTUAL_SENDER}_{channel}"


def routed(
    queued: MessageQueued, lookups: Lookups, senders: Senders, recipient: str = ""
) -> tuple[sd.RouteTarget, sd.OpenedSender]:
    """The route's target (with its From-name override) and its sender, opened; NotFound or
    RuleViolated when there is none or it serves another channel. Rules match `recipient`'s domain
    (default: the contact's; a push routes as `push@<provider>`)."""
    target = sd.route(_rules(queued, lookups), recipient or queued.contact, queued.message_id)
    sender = lookups.remember(("sender", target.sender_id), lambda: senders.for_sending(target.sender_id))
    settings = sender.state.settings
    assert settings is not None  # for_sending finds only senders that exist
    if settings.channel != queued.channel:
        raise RuleViolated(
            f"sender {target.sender_id!r} sends {settings.channel}, not {queued.channel}", "virtual_sender_id"
        )
    return target, sender


def _rules(queued: MessageQueued, lookups: Lookups) -> tuple[sd.RouteRule, ...]:
    campaign = lookups.campaign(queued.campaign_id)
    chosen = (campaign.settings.virtual_sender_id if campaign.settings else None) or default_virtual_sender(
        queued.channel
    )
    virtual = lookups.remember(
        ("virtual sender", chosen),
        lambda: lookups.aggregates.load(sd.virtual_sender_decider, sd.virtual_sender_stream(chosen)).state,
    )
    if not virtual.exists:
        raise NotFound(f"no virtual sender {chosen!r}", "virtual_sender_id")
    return virtual.rules


def retry_deadline(sender: sd.OpenedSender) -> timedelta:
    """How long a sender's temporary failures are retried."""
    settings = sender.state.settings
    assert settings is not None
    return timedelta(hours=settings.retry_deadline_hours)


class RoutedChannel:
    """What the channels routed by virtual sender share: the queued messages they render, the
    senders they open, the sender's retry deadline."""

    def __init__(self, queued: QueuedMessages, senders: Senders) -> None:
        self.queued = queued
        self.senders = senders

    def rendered(
        self, queued: MessageQueued, lookups: Lookups, kind: type[B]
    ) -> tuple[B, RenderedMessage, RenderInputs]:
        """The message rendered to be sent now: its channel's body, the message, what it came from."""
        message, rendered_from = self.queued.render_to_send(queued, lookups)
        body = message.body
        assert isinstance(body, kind)
        return body, message, rendered_from

    def retry_deadline(self, sender: sd.OpenedSender) -> timedelta:
        return retry_deadline(sender)
