"""What happens to sent messages: trackers' hits, unsubscribes, complaints, bounce reports, web versions.

Every entry point names a message by id and records its event through the
delivery decider (so the 24-hour unique rule and "once" rules hold), then
applies the effect on the profile the guide describes:
- an unsubscribe sets the subscription on the message's resource (and
  channel, contact) to unsubscribed, cause `unsubscribe_link` or
  `list_unsubscribe`; with the template's option, the contact also goes on
  the template's stop list;
- a complaint sets it to complainer;
- a hard bounce sets it to hard bounced (the stop-list rule follows from that);
- a click on a link with `update-<field>` attributes writes those fields, and
  one with `subscribe-to` subscribes the same contact to that resource on the
  same channel.

Decisions where the guide is silent:
- Test messages record their hits but change no subscription or field.
- An unsubscribe from a profile or subscription that is gone is recorded on
  the message and changes nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from herald.domain import deliveries as dl
from herald.domain import profiles as pr
from herald.domain.bots import BotVerdict
from herald.domain.errors import DomainError, NotFound
from herald.domain.messages import MessageQueued, message_stream
from herald.domain.statuses import Status
from herald.domain.stop_lists import stop_list_stream, template_unsubscribe_entry
from herald.domain.subscriptions import AddSubscription, Cause, ChangeSubscriptionStatus
from herald.domain.templates import template_decider, template_stream
from herald.infra.aggregates import Aggregates, CommandContext, Loaded, Outcome
from herald.messages.ports import Catalog
from herald.senders.gateway import DeliveryReport

log = logging.getLogger(__name__)
TRACKER = CommandContext(actor="tracker", source="tracker")
SENDER = CommandContext(actor="sender", source="sender")


class FindsMessages(Protocol):
    """Finds the message a sender's provider id names (`projections/send_queue`)."""

    def message_of(self, sender_id: str, provider_id: str) -> str | None: ...


class DeliveryService:
    def __init__(self, aggregates: Aggregates, catalog: Catalog) -> None:
        self.catalog = catalog
        self.aggregates = aggregates

    def message(self, message_id: str) -> Loaded[dl.DeliveryState]:
        """The message's delivery state; NotFound unless it was queued."""
        loaded = self.aggregates.load(dl.delivery_decider, message_stream(message_id))
        if loaded.state.ref is None:
            raise NotFound(f"no message {message_id!r}", "message_id")
        return loaded

    def queued(self, message_id: str) -> MessageQueued:
        """The message as it was queued (its template version, fragments, content)."""
        queued = self.message(message_id).state.queued
        assert queued is not None  # a message with a ref was queued
        return queued

    def rendered_from(self, message_id: str) -> dl.RenderInputs | None:
        """What the message's last attempt was rendered from; None before any attempt kept it."""
        found = None
        for event in self.aggregates.store.read_stream(message_stream(message_id)):
            if event.type == "MessageSendAttempted":
                attempt = self.aggregates.decode(event)
                assert isinstance(attempt, dl.MessageSendAttempted)
                found = attempt.rendered_from or found
        return found

    def execute(
        self, message_id: str, command: dl.DeliveryCommand, context: CommandContext = TRACKER
    ) -> Outcome:
        return self.aggregates.execute(dl.delivery_decider, message_stream(message_id), command, context)

    def record_short_links(self, message_id: str, links: Mapping[str, str], at: datetime) -> Outcome:
        """Keep an SMS's short links (code → click token) before it is sent, so `/s/<code>` resolves."""
        return self.execute(message_id, dl.RecordShortLinks(links, at), SENDER)

    def record_reports(
        self, sender_id: str, reports: Sequence[DeliveryReport], queue: FindsMessages, at: datetime
    ) -> int:
        """Record delivery reports a gateway posted (a webhook) on the messages they name (ours, else
        the provider's id the sender was given); returns how many named a message. A report the
        message already has, or one for no part it sent, changes nothing."""
        found = 0
        for report in reports:
            message_id = report.message_id or queue.message_of(sender_id, report.provider_id)
            if message_id is None or self.message(message_id).state.ref is None:
                log.info(
                    "a delivery report for %s of sender %s matched no message", report.provider_id, sender_id
                )
                continue
            command = dl.RecordDeliveryReport(report.provider_id, report.state, report.code, at)
            self.execute(message_id, command, SENDER)
            found += 1
        return found

    def expire_delivery_waits(self, due: list[str], at: datetime) -> int:
        """Settle the accepted messages whose "await delivery" ended unreported; returns how many."""
        return sum(1 for m in due if self.execute(m, dl.ExpireDeliveryWait(at), SENDER).event_ids)

    # --- the recipient's actions ---------------------------------------------------------------

    def hit(
        self,
        message_id: str,
        action: Literal["open", "read", "click", "ack"],
        ip: str,
        user_agent: str,
        bot: BotVerdict | None,
        at: datetime,
        link: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Record an open, read, click or push ack (`bot`: why it is a machine's, None for a person's);
        a person's click applies its link's actions (`update-*`, `subscribe-to`)."""
        link = link or {}
        command = dl.RecordHit(
            action, ip, user_agent, bot, at, link.get("l", ""), link.get("u", ""), link.get("n", "")
        )
        outcome = self.execute(message_id, command)
        if action == "click" and bot is None:
            self._link_actions(message_id, link, at)
        return outcome

    def _link_actions(self, message_id: str, link: Mapping[str, Any], at: datetime) -> None:
        ref = self.message(message_id).state.ref
        assert ref is not None
        if ref.is_test:
            return
        updates, subscribe_to = link.get("f") or {}, link.get("s")
        profile = self.aggregates.load(pr.profile_decider, pr.profile_stream(ref.profile_id)).state
        if not profile.exists:
            return
        if updates:
            database = self.catalog.database(profile.database_id)
            command = pr.UpdateProfile(
                ref.profile_id, database, updates, at, ignore_empty=False, source="link"
            )
            self._profile(ref.profile_id, command)
        if subscribe_to:
            resource = self.catalog.resource(str(subscribe_to), "subscribe_to")
            add = AddSubscription(
                resource_id=str(subscribe_to),
                channel=ref.channel,
                contact=ref.contact,
                at=at,
                resource=resource,
                cause=Cause.FORM,
            )
            self._profile(ref.profile_id, add)

    def unsubscribe(
        self,
        message_id: str,
        via: Literal["link", "one_click", "mailto", "page"],
        ip: str,
        user_agent: str,
        at: datetime,
    ) -> Outcome:
        """The recipient leaves the message's resource (on its channel and contact)."""
        outcome = self.execute(message_id, dl.RecordUnsubscribe(via, ip, user_agent, at))
        cause = Cause.LIST_UNSUBSCRIBE if via in ("one_click", "mailto") else Cause.UNSUBSCRIBE_LINK
        self._set_status(message_id, Status.UNSUBSCRIBED, cause, at)
        self._template_stop_list(message_id, at)
        return outcome

    def global_unsubscribe(self, message_id: str, at: datetime) -> None:
        """The recipient asks for nothing more from the account: the profile's global status
        becomes unsubscribed (cause `unsubscribe_link`); a test message changes nothing."""
        ref = self.message(message_id).state.ref
        assert ref is not None
        if ref.is_test:
            return
        command = pr.ChangeGlobalStatus(ref.profile_id, Status.UNSUBSCRIBED, at, Cause.UNSUBSCRIBE_LINK)
        self._profile(ref.profile_id, command)

    def recipient(self, message_id: str) -> pr.ProfileState:
        """The profile the message went to, as it is now (an empty state once it is deleted)."""
        ref = self.message(message_id).state.ref
        assert ref is not None
        return self.aggregates.load(pr.profile_decider, pr.profile_stream(ref.profile_id)).state

    def schedule_unsubscribe(
        self, message_id: str, minutes: int, ip: str, user_agent: str, at: datetime
    ) -> Outcome:
        """Delayed mode: the unsubscribe applies `minutes` after the click unless the recipient cancels."""
        command = dl.ScheduleUnsubscribe(at + timedelta(minutes=minutes), ip, user_agent, at)
        return self.execute(message_id, command)

    def cancel_unsubscribe(self, message_id: str, at: datetime) -> Outcome:
        return self.execute(message_id, dl.CancelUnsubscribe(at))

    def apply_due_unsubscribes(self, due: list[str], at: datetime) -> int:
        """Apply the delayed unsubscribes whose timers fell due; returns how many applied."""
        applied = 0
        for message_id in due:
            outcome = self.execute(message_id, dl.ApplyScheduledUnsubscribe(at))
            if outcome.event_ids:
                self._set_status(message_id, Status.UNSUBSCRIBED, Cause.UNSUBSCRIBE_LINK, at)
                self._template_stop_list(message_id, at)
                applied += 1
        return applied

    def complaint(
        self, message_id: str, feedback_type: str, source: Literal["arf", "http"], at: datetime
    ) -> Outcome:
        outcome = self.execute(message_id, dl.RecordComplaint(feedback_type, source, at))
        self._set_status(message_id, Status.COMPLAINER, Cause.COMPLAINT, at)
        return outcome

    def bounce_report(self, message_id: str, report: dl.RecordBounceReport) -> Outcome:
        outcome = self.execute(message_id, report)
        if report.kind == "hard":
            self._set_status(message_id, Status.HARD_BOUNCED, Cause.HARD_BOUNCE, report.at)
        return outcome

    def hard_bounced(self, message_id: str, at: datetime) -> None:
        """The relay refused the address for good: the subscription is hard bounced."""
        self._set_status(message_id, Status.HARD_BOUNCED, Cause.HARD_BOUNCE, at)

    # --- effects on the profile ----------------------------------------------------------------

    def _set_status(self, message_id: str, status: Status, cause: Cause, at: datetime) -> None:
        ref = self.message(message_id).state.ref
        assert ref is not None
        if ref.is_test:
            return
        command = ChangeSubscriptionStatus(
            resource_id=ref.resource_id,
            channel=ref.channel,
            contact=ref.contact,
            provider=push_provider(self.aggregates, ref.profile_id, ref.resource_id, ref.contact)
            if ref.channel == "push"
            else None,
            at=at,
            status=status,
            cause=cause,
        )
        self._profile(ref.profile_id, command)

    def _template_stop_list(self, message_id: str, at: datetime) -> None:
        """With the template's option, the unsubscribed contact goes on the template's stop list."""
        ref = self.message(message_id).state.ref
        assert ref is not None
        if ref.is_test:
            return
        content = self.aggregates.load(template_decider, template_stream(ref.template_id)).state.content
        if content is None:
            return
        command = template_unsubscribe_entry(
            ref.contact,
            at,
            stop_list_id=content.stop_list_id,
            add_unsubscribed=content.add_unsubscribed_to_stop_list,
        )
        if command is not None:
            self.aggregates.execute(
                self.catalog.stop_lists, stop_list_stream(command.list_id), command, TRACKER
            )

    def _profile(self, profile_id: str, command: Any) -> None:
        try:
            self.aggregates.execute(pr.profile_decider, pr.profile_stream(profile_id), command, TRACKER)
        except DomainError as refused:
            # the profile or its subscription is gone, or a link names a field the database lacks:
            # the message's own event stays recorded, the recipient's click or unsubscribe goes on
            log.info("message effect on profile %s not applied: %s", profile_id, refused)


def push_provider(aggregates: Aggregates, profile_id: str, resource_id: str, contact: str) -> str | None:
    """The provider of the profile's push subscription with `contact` (a push is keyed by it too);
    None when the subscription is gone."""
    profile = aggregates.load(pr.profile_decider, pr.profile_stream(profile_id)).state
    for subscription in profile.subscriptions.of_resource(resource_id, "push"):
        if subscription.key.contact == contact and subscription.key.provider:
            return subscription.key.provider
    return None
