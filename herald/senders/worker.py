"""The email sender worker: queued messages out over SMTP, each at most once, outcomes recorded.

For each due message (priority lanes first) the worker:
1. reads the message's stream: only a message still waiting (queued, or soft
   bounced and due again) is sent; a paused campaign's messages wait, a
   stopped campaign's are not delivered (`campaign_stopped`);
2. renders it again from the template version it was queued with (the same
   links and tokens), routes it through the campaign's virtual sender, builds
   the MIME message with its List-Unsubscribe, List-ID and DKIM signature;
3. records the attempt with what it was rendered from (the profile's version,
   the fragments' versions, remote content; the web version renders from them)
   (an append checked against the stream's version, so two
   workers never both take a message), runs the SMTP transaction up to the
   final dot, records `MessageCommitting`, sends the dot, and records the
   relay's answer (delivered, soft bounce with its retry time, hard bounce).

A worker that restarts settles what it left first: an attempt that never
reached the commit mark is sent again (SMTP discards a transaction without its
final dot); one that did is recorded as delivered, assumed, and never sent
again. The one case left is a stop between the commit mark and the final dot
leaving the process: then the message is recorded delivered but never left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Literal

from herald.domain import deliveries as dl
from herald.domain import senders as sd
from herald.domain.campaigns import CampaignStatus
from herald.domain.errors import DomainError, NotFound
from herald.domain.messages import MessageQueued
from herald.domain.resources import EmailSettings
from herald.infra.clock import Clock
from herald.infra.event_store import WrongExpectedVersion
from herald.infra.failures import describe, is_transient
from herald.projections.send_queue import SendQueueProjection
from herald.senders.dkim import DkimKey, sign
from herald.senders.mime import attachment_from_rendered, build_email
from herald.senders.smtp import SmtpOutcome, SmtpPool, SmtpRelay
from herald.services.aggregates import Aggregates, CommandContext
from herald.services.campaigns import CampaignService, tracking_base
from herald.services.deliveries import DeliveryService
from herald.services.rendering import RenderedEmail, SignedTrackingUrls, as_sent
from herald.services.senders import OpenedSender, SenderService

log = logging.getLogger(__name__)
WORKER = CommandContext(actor="sender", source="sender")
MESSAGE_ATTEMPTS = 5
DEFAULT_VIRTUAL_SENDER = "default"
_STARTTLS: dict[str, bool | Literal["auto"]] = {"auto": "auto", "always": True, "never": False}


class EmailWorker:
    def __init__(
        self,
        aggregates: Aggregates,
        queue: SendQueueProjection,
        deliveries: DeliveryService,
        campaigns: CampaignService,
        senders: SenderService,
        clock: Clock,
        read_file: Callable[[str], bytes] = lambda path: Path(path).read_bytes(),
        concurrency: int = 8,
    ) -> None:
        self.concurrency = concurrency
        self.aggregates = aggregates
        self.queue = queue
        self.deliveries = deliveries
        self.campaigns = campaigns
        self.senders = senders
        self.clock = clock
        self.read_file = read_file
        # one pool per sender, with the relay it was built for: changed settings or secrets replace it
        self._pools: dict[str, tuple[tuple[SmtpRelay, int, float], SmtpPool]] = {}
        self._failures: dict[str, int] = {}  # messages that broke a pass, with their tries so far

    async def recover(self) -> int:
        """Settle the attempts a previous run left mid-way; returns how many."""
        settled = 0
        for message_id in self.queue.interrupted("email"):
            state = self.deliveries.message(message_id).state
            if state.status in ("attempting", "committing"):
                self.deliveries.execute(
                    message_id, dl.ResolveInterrupted("recovery", self.clock.now()), WORKER
                )
                settled += 1
        return settled

    async def run_once(self, limit: int = 1000) -> int:
        """Send what is due now (`limit` messages at most, `concurrency` at a time); returns the attempts.

        Rendering, signing and recording run one at a time on the event loop; the SMTP exchanges of
        up to `concurrency` messages overlap, over as many connections as each sender's pool holds.
        """
        due = self.queue.due("email", self.clock.now(), limit)
        slots = asyncio.Semaphore(self.concurrency)

        async def one(message_id: str) -> int:
            async with slots:
                try:
                    return await self.send(message_id)
                except Exception as error:
                    if is_transient(error):
                        raise  # the store or the network: the whole pass backs off
                    self._failed(message_id, error)
                    return 0

        return sum(await asyncio.gather(*(one(m) for m in due)))

    def _failed(self, message_id: str, error: Exception) -> None:
        """One message broke the worker (not the relay's answer: a bug, a value nothing expected): it is
        tried again on the next passes, and given up with the error after `MESSAGE_ATTEMPTS` tries, so
        it never holds the others up."""
        tries = self._failures.get(message_id, 0) + 1
        if tries < MESSAGE_ATTEMPTS:
            self._failures[message_id] = tries
            log.warning(
                "sending message %s failed (try %d of %d): %s",
                message_id,
                tries,
                MESSAGE_ATTEMPTS,
                describe(error, where=True),
            )
            return
        self._failures.pop(message_id, None)
        log.error("message %s given up after %d tries: %s", message_id, tries, describe(error, where=True))
        self._give_up(message_id, "sender_error", describe(error))

    async def send(self, message_id: str) -> int:
        """Send one message if it is still to be sent; 1 when an attempt was made."""
        loaded = self.deliveries.message(message_id)
        state = loaded.state
        if not state.sendable or state.ref is None:
            return 0
        queued = self.deliveries.queued(message_id)
        stopped = self._stopped(queued)
        if stopped == "wait":
            return 0
        if stopped:
            self.deliveries.execute(
                message_id, dl.GiveUp("campaign_stopped", stopped, self.clock.now()), WORKER
            )
            return 0
        try:
            prepared = self.prepare(queued)
        except DomainError as error:
            self.deliveries.execute(
                message_id, dl.GiveUp("sender_error", error.reason, self.clock.now()), WORKER
            )
            return 0
        sender, data, envelope_from, rendered_from = prepared
        try:
            self.aggregates.execute(
                dl.delivery_decider,
                f"message-{message_id}",
                dl.StartAttempt(sender.state.sender_id, self.clock.now(), rendered_from),
                WORKER,
                expected_version=loaded.version,
            )
        except WrongExpectedVersion:
            return 0  # another worker took it
        pool = await self._pool(sender)
        outcome = await pool.send(
            envelope_from, queued.contact, data, before_commit=lambda: self._committing(message_id)
        )
        self._record(message_id, sender.state, outcome)
        return 1

    def _give_up(self, message_id: str, reason: str, detail: str) -> None:
        self.deliveries.execute(message_id, dl.GiveUp(reason, detail, self.clock.now()), WORKER)

    def _committing(self, message_id: str) -> None:
        self.deliveries.execute(message_id, dl.MarkCommitting(self.clock.now()), WORKER)

    def _record(self, message_id: str, sender: sd.SenderState, outcome: SmtpOutcome) -> None:
        assert sender.settings is not None
        deadline = timedelta(hours=sender.settings.retry_deadline_hours)
        kind = "soft_bounce" if outcome.kind == "failed" else outcome.kind
        now = self.clock.now()
        command = dl.RecordSmtpOutcome(kind, outcome.code, outcome.text, sender.sender_id, deadline, now)
        self.deliveries.execute(message_id, command, WORKER)
        if outcome.kind == "hard_bounce":
            self.deliveries.hard_bounced(message_id, now)

    def _stopped(self, queued: MessageQueued) -> str:
        """ "" to send; "wait" while the campaign is paused; else why the campaign stopped it."""
        if queued.is_test:
            return ""
        campaign = self.campaigns.campaign(queued.campaign_id)
        if campaign.status is CampaignStatus.PAUSED:
            return "wait"
        if not campaign.exists:
            return "the campaign was deleted"
        if campaign.status is CampaignStatus.INACTIVE:
            return "the campaign was deactivated"
        return ""

    def prepare(self, queued: MessageQueued) -> tuple[OpenedSender, bytes, str, dl.RenderInputs]:
        """The sender (its secrets opened), the signed message bytes, the envelope sender of a queued
        message, and what it was rendered from (kept with the attempt: its web version renders it)."""
        message, rendered_from = self.campaigns.render_to_send(queued)
        assert isinstance(message.body, RenderedEmail)
        resource = self.campaigns.catalog.resource(queued.resource_id)
        email = next((c for c in resource.channels.values() if isinstance(c, EmailSettings)), None)
        if email is None or resource.settings is None:
            raise NotFound(f"resource {queued.resource_id} has no email channel", "resource_id")
        body = as_sent(message.body, email)
        target = sd.route(self._rules(queued), queued.contact, queued.message_id)
        sender = self.senders.for_sending(target.sender_id)
        from_email = body.from_email
        tracking = SignedTrackingUrls(self.campaigns.signer, tracking_base(resource), queued.message_id)
        policy = resource.unsubscribe_policy
        data = build_email(
            message_id=queued.message_id,
            domain=from_email.rpartition("@")[2],
            date=self.clock.now(),
            from_email=from_email,
            from_name=target.from_name or body.from_name,
            to_email=queued.contact,
            subject=body.subject,
            text=body.text,
            html=body.html,
            reply_to_email=body.reply_to_email,
            reply_to_name=body.reply_to_name,
            attachments=[attachment_from_rendered(a, self.read_file) for a in body.attachments],
            unsubscribe_url="" if policy.list_unsubscribe_disabled else tracking.system("unsubscribe"),
            list_id=email.list_id,
            list_name=resource.settings.name,
            feedback_id=f"{queued.campaign_id}:{queued.resource_id}:herald",
        )
        settings = sender.state.settings
        assert settings is not None  # for_sending finds only senders that exist
        if settings.dkim_selector:
            key = DkimKey(settings.dkim_selector, settings.dkim_domain, sender.dkim_private_key)
            data = sign(data, key)
        return sender, data, settings.bounce_address or from_email, rendered_from

    def _rules(self, queued: MessageQueued) -> tuple[sd.RouteRule, ...]:
        campaign = self.campaigns.campaign(queued.campaign_id)
        chosen = campaign.settings.virtual_sender_id if campaign.settings else None
        virtual = self.aggregates.load(
            sd.virtual_sender_decider, sd.virtual_sender_stream(chosen or DEFAULT_VIRTUAL_SENDER)
        ).state
        if not virtual.exists:
            raise NotFound(f"no virtual sender {chosen or DEFAULT_VIRTUAL_SENDER!r}", "virtual_sender_id")
        return virtual.rules

    async def _pool(self, sender: OpenedSender) -> SmtpPool:
        settings = sender.state.settings
        assert settings is not None
        relay = SmtpRelay(
            host=settings.relay.host,
            port=settings.relay.port,
            username=settings.relay.username or None,
            password=sender.password or None,
            starttls=_STARTTLS[settings.relay.starttls],
            use_tls=settings.relay.implicit_tls,
        )
        built_for = (relay, settings.connections, settings.rate_per_second)
        known = self._pools.get(sender.state.sender_id)
        if known is not None and known[0] == built_for:
            return known[1]
        if known is not None:
            await known[1].close()  # the sender changed (relay, login, speed): its old connections go
        pool = SmtpPool(relay, settings.connections, settings.rate_per_second)
        self._pools[sender.state.sender_id] = (built_for, pool)
        return pool

    async def close(self) -> None:
        for _, pool in self._pools.values():
            await pool.close()
        self._pools.clear()
