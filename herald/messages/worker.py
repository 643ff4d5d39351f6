"""The sender worker, generic over the channel gateway port: due messages out, each at most once.

One worker sends one channel's messages; what is the channel's own (how a
queued message becomes an `Outbound`, which sender it goes out as and that
sender's gateway) is its `Channel` (email: `messages/email.py`). For each due
message (priority lanes first) the worker:
1. reads the message's stream once: only a message still waiting (queued, or
   soft bounced and due again) is sent; a paused campaign's messages wait, a
   stopped campaign's are not delivered (`campaign_stopped`);
2. has the channel route and compose it: rendered now from the template version
   it was queued with (the same links and tokens), its sender chosen; a message
   that cannot be rendered or routed is not delivered (`render_failed`,
   `sender_error`) and the others go on;
3. records the attempt with what it was rendered from (an append checked against
   the version it read, so two workers never both take a message), hands it to
   the sender's gateway, records `MessageCommitting` in the gateway's
   `before_commit` (right before the bytes that commit it leave) and then what
   the gateway answered: accepted, a temporary failure (retried on the backoff
   until the sender's deadline), a permanent one (a hard bounce; the
   subscription too when the address is gone), or no answer after the message
   left (delivered, assumed: never sent twice).

The commit mark and the outcome are decided on the state the worker holds
(`Aggregates.execute_on`), so an attempt costs three appends and one read.

Exactly once across restarts: a worker that starts settles what a previous run
left (`recover`): an attempt that never reached the commit mark is sent again
(nothing that commits it left), one that did is recorded delivered, assumed,
and never sent again. Only the process that runs the processors recovers, and
before any other sender starts (`herald send --processes N` starts its others
after), since a live sender's attempt looks the same as an interrupted one.

Several workers may share one queue: each takes its `part` of it (by message
id), and the version check keeps two that overlap from both sending a message.

Delivery reports (an SMSC's receipts) come back through the gateway's report
handler at any time, before the acceptance they answer may even be recorded:
the worker keeps them and settles them at the start and end of each pass,
finding the message by the sender's provider id (`send_queue.message_of`); a
report no message is found for yet waits for the next pass, and one still
unmatched after `REPORT_PATIENCE` is dropped (logged).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from herald.domain import campaigns as cp
from herald.domain import deliveries as dl
from herald.domain.errors import DomainError
from herald.domain.messages import MessageQueued
from herald.domain.senders import OpenedSender
from herald.domain.templates import RenderFailed
from herald.infra.aggregates import Aggregates, CommandContext, Loaded
from herald.infra.clock import Clock
from herald.infra.event_store import WrongExpectedVersion
from herald.infra.failures import describe, is_transient
from herald.messages.deliveries import DeliveryService
from herald.senders.gateway import (
    Accepted,
    ChannelGateway,
    DeliveryReport,
    Outbound,
    ReportHandler,
    SendOutcome,
    TemporaryFailure,
)

log = logging.getLogger(__name__)
WORKER = CommandContext(actor="sender", source="sender")
REPORT_PATIENCE = timedelta(hours=1)
MESSAGE_ATTEMPTS = 5
DECIDE_TRIES = 5  # appends that lost to another writer (a tracker's hit) before one gives up
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Composed:
    """A message ready to go: what it goes out as, through whom, and what it was rendered from."""

    outbound: Outbound
    sender: OpenedSender
    rendered_from: dl.RenderInputs | None = None
    short_links: Mapping[str, str] = field(default_factory=dict)  # kept before it leaves (SMS)


class Channel(Protocol):
    """What one channel adds to the generic worker (see the module's docstring)."""

    name: str  # the queue's channel: "email", "sms", "push", "telegram_bot"

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        """The message rendered for its contact and its sender chosen; RenderFailed or DomainError."""
        ...

    def gateway(self, sender: OpenedSender, on_report: ReportHandler) -> ChannelGateway:
        """A new gateway for `sender` giving its delivery reports to `on_report` (the worker keeps
        it while `built_for` is the same)."""
        ...

    def built_for(self, sender: OpenedSender) -> Hashable:
        """What the sender's gateway depends on: when it changes the gateway is built again."""
        ...

    def retry_deadline(self, sender: OpenedSender) -> timedelta:
        """How long temporary failures are retried."""
        ...

    def await_delivery(self, sender: OpenedSender) -> timedelta | None:
        """How long an accepted message waits for its delivery reports; None: accepted is delivered."""
        ...


class Lookups:
    """What one pass reads once for all its messages: campaigns and anything a channel keeps here
    (`remember`), so a pass sees one state of them and asks the store once each."""

    def __init__(self, aggregates: Aggregates) -> None:
        self.aggregates = aggregates
        self._found: dict[Hashable, object] = {}

    def campaign(self, campaign_id: str) -> cp.CampaignState:
        return self.remember(
            ("campaign", campaign_id),
            lambda: self.aggregates.load(cp.campaign_decider, cp.campaign_stream(campaign_id)).state,
        )

    def remember(self, key: Hashable, read: Callable[[], T]) -> T:
        if key not in self._found:
            self._found[key] = read()
        return self._found[key]  # type: ignore[return-value]


class SendQueue(Protocol):
    """The queue a worker takes its messages from: the read model's, or the owned partitions' (scale)."""

    def due(self, channel: str, now: datetime, limit: int) -> list[str]: ...

    def interrupted(self, channel: str) -> list[str]: ...

    def message_of(self, sender_id: str, provider_id: str) -> str | None: ...


class MessageWorker:
    def __init__(
        self,
        channel: Channel,
        aggregates: Aggregates,
        queue: SendQueue,
        deliveries: DeliveryService,
        clock: Clock,
        concurrency: int = 8,
        part: tuple[int, int] = (0, 1),
    ) -> None:
        self.channel = channel
        self.aggregates = aggregates
        self.queue = queue
        self.deliveries = deliveries
        self.clock = clock
        self.concurrency = concurrency
        self.part = part  # (index, of how many): the share of the queue this worker takes
        # one gateway per sender, with what it was built for: changed settings or secrets replace it
        self._gateways: dict[str, tuple[Hashable, ChannelGateway]] = {}
        self._reports: list[tuple[str, DeliveryReport, datetime]] = []  # (sender, report, received)
        self._failures: dict[str, int] = {}  # messages that broke a pass, with their tries so far

    async def recover(self) -> int:
        """Settle the attempts a previous run left mid-way; returns how many."""
        settled = 0
        for message_id in self.queue.interrupted(self.channel.name):
            state = self.deliveries.message(message_id).state
            if state.status in ("attempting", "committing"):
                self.deliveries.execute(
                    message_id, dl.ResolveInterrupted("recovery", self.clock.now()), WORKER
                )
                settled += 1
        return settled

    async def run_once(self, limit: int = 1000) -> int:
        """Send what is due now (`limit` messages at most, `concurrency` at a time); returns the attempts.

        Rendering and recording run one at a time on the event loop; the gateways' exchanges of up
        to `concurrency` messages overlap, over as many connections as each gateway holds.
        """
        self.settle_reports()
        index, parts = self.part
        due = self.queue.due(self.channel.name, self.clock.now(), limit * parts)
        mine = [m for m in due if zlib.crc32(m.encode()) % parts == index][:limit]
        lookups = Lookups(self.aggregates)
        slots = asyncio.Semaphore(self.concurrency)

        async def one(message_id: str) -> int:
            async with slots:
                try:
                    return await self.send(message_id, lookups)
                except Exception as error:
                    if is_transient(error):
                        raise  # the store or the network: the whole pass backs off
                    self._failed(message_id, error)
                    return 0

        attempts = sum(await asyncio.gather(*(one(m) for m in mine)))
        self.settle_reports()
        return attempts

    def _failed(self, message_id: str, error: Exception) -> None:
        """One message broke the worker (not the provider's answer: a bug, a value nothing expected): it
        is tried again on the next passes, and given up with the error after `MESSAGE_ATTEMPTS` tries,
        so it never holds the others up."""
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
        self._give_up(self.deliveries.message(message_id), "sender_error", describe(error))

    def settle_reports(self) -> int:
        """Record the delivery reports received so far whose message is known; returns how many (a
        message's reports are decided on one read of it)."""
        waiting, self._reports = self._reports, []
        now = self.clock.now()
        found: dict[str, list[tuple[DeliveryReport, datetime]]] = {}
        for sender_id, report, received in waiting:
            message_id = report.message_id or self.queue.message_of(sender_id, report.provider_id)
            if message_id is not None:
                found.setdefault(message_id, []).append((report, received))
            elif now - received < REPORT_PATIENCE:
                self._reports.append((sender_id, report, received))
            else:
                log.warning(
                    "a delivery report for %s of sender %s matched no message", report.provider_id, sender_id
                )
        for message_id, reports in found.items():
            # at our clock's instant it arrived: a receipt's own date has minutes and no time zone
            commands = [dl.RecordDeliveryReport(r.provider_id, r.state, r.code, at) for r, at in reports]
            self._decided(self.deliveries.message(message_id), *commands)
        return sum(len(r) for r in found.values())

    async def send(self, message_id: str, lookups: Lookups | None = None) -> int:
        """Send one message if it is still to be sent; 1 when an attempt was made."""
        lookups = lookups or Lookups(self.aggregates)
        loaded = self.deliveries.message(message_id)
        queued = loaded.state.queued
        if not loaded.state.sendable or queued is None:
            return 0
        stopped = _stopped(queued, lookups)
        if stopped == "wait":
            return 0
        if stopped:
            self._give_up(loaded, "campaign_stopped", stopped)
            return 0
        try:
            composed = self.channel.compose(queued, lookups, self.clock.now())
        except RenderFailed as failed:
            self._give_up(
                loaded, "render_failed", f"{failed.reason} ({failed.path})" if failed.path else failed.reason
            )
            return 0
        except DomainError as error:
            self._give_up(loaded, "sender_error", error.reason)
            return 0
        sender = composed.sender
        now = self.clock.now()
        start: list[dl.DeliveryCommand] = [
            dl.StartAttempt(sender.state.sender_id, now, composed.rendered_from)
        ]
        if composed.short_links:  # kept before it leaves, so `/s/<code>` resolves when it arrives
            start.append(dl.RecordShortLinks(composed.short_links, now))
        try:
            loaded = self.aggregates.execute_all_on(dl.delivery_decider, loaded, start, WORKER)
        except WrongExpectedVersion:
            return 0  # another worker took it
        held = [loaded]

        def committing() -> None:
            held[0] = self._decided(held[0], dl.MarkCommitting(self.clock.now()))

        gateway = await self._gateway(sender)
        outcome = await gateway.send(composed.outbound, before_commit=committing)
        self._record(held[0], sender, outcome)
        return 1

    def _decided(
        self, loaded: Loaded[dl.DeliveryState], *commands: dl.DeliveryCommand
    ) -> Loaded[dl.DeliveryState]:
        """`commands` decided on the state this worker holds and appended together; read again if
        someone appended since (a tracker's hit, a report)."""
        for _ in range(DECIDE_TRIES - 1):
            try:
                return self.aggregates.execute_all_on(dl.delivery_decider, loaded, commands, WORKER)
            except WrongExpectedVersion:
                loaded = self.aggregates.load(dl.delivery_decider, loaded.stream)
        return self.aggregates.execute_all_on(dl.delivery_decider, loaded, commands, WORKER)

    def _give_up(self, loaded: Loaded[dl.DeliveryState], reason: str, detail: str) -> None:
        self._decided(loaded, dl.GiveUp(reason, detail, self.clock.now()))

    def _record(self, loaded: Loaded[dl.DeliveryState], sender: OpenedSender, outcome: SendOutcome) -> None:
        now = self.clock.now()
        sender_id = sender.state.sender_id
        command: dl.DeliveryCommand
        if isinstance(outcome, Accepted):
            waits = self.channel.await_delivery(sender)
            command = dl.RecordAcceptance(
                outcome.provider_ids, outcome.code, outcome.response, sender_id, waits, now
            )
        else:
            temporary = isinstance(outcome, TemporaryFailure)
            retry = outcome.retry_after_seconds if isinstance(outcome, TemporaryFailure) else None
            command = dl.RecordSendFailure(
                not temporary,
                outcome.code,
                outcome.response,
                sender_id,
                self.channel.retry_deadline(sender),
                now,
                retry_after=timedelta(seconds=retry) if retry is not None else None,
                maybe_sent=isinstance(outcome, TemporaryFailure) and outcome.maybe_sent,
            )
        self._decided(loaded, command)
        if not isinstance(outcome, Accepted | TemporaryFailure) and outcome.address_gone:
            self.deliveries.hard_bounced(loaded.state.message_id, now)

    async def _gateway(self, sender: OpenedSender) -> ChannelGateway:
        built_for = self.channel.built_for(sender)
        known = self._gateways.get(sender.state.sender_id)
        if known is not None and known[0] == built_for:
            return known[1]
        if known is not None:
            await known[1].close()  # the sender changed (relay, login, speed): its old connections go
        sender_id = sender.state.sender_id

        def received(report: DeliveryReport) -> None:
            self._reports.append((sender_id, report, self.clock.now()))

        gateway = self.channel.gateway(sender, received)
        self._gateways[sender.state.sender_id] = (built_for, gateway)
        return gateway

    async def close(self) -> None:
        for _, gateway in self._gateways.values():
            await gateway.close()
        self._gateways.clear()


def _stopped(queued: MessageQueued, lookups: Lookups) -> str:
    """ "" to send; "wait" while the campaign is paused; else why the campaign stopped it."""
    if queued.is_test:
        return ""
    campaign = lookups.campaign(queued.campaign_id)
    if campaign.status is cp.CampaignStatus.PAUSED:
        return "wait"
    if not campaign.exists:
        return "the campaign was deleted"
    if campaign.status is cp.CampaignStatus.INACTIVE:
        return "the campaign was deactivated"
    return ""
