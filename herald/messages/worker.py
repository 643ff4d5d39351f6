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
   the sender's gateway, records `MessageCommitting` when the gateway awaits
   `before_commit` (right before the bytes that commit it leave) and then what
   the gateway answered: accepted, a temporary failure (retried on the backoff
   until the sender's deadline), a permanent one (a hard bounce; the
   subscription too when the address is gone), or no answer after the message
   left (delivered, assumed: never sent twice).

The commit mark and the outcome are decided on the state the worker holds
(`Aggregates.execute_on`), with one read per message. The attempts of `BATCH`
messages are one append (`Aggregates.execute_on_many`, each stream's version
checked: a message another worker took is left out and the rest are started),
and their outcomes are kept and appended `BATCH` at a time (and at the end of a
pass); a conflict there (a tracker's hit) decides each again on its own. The
commit mark stays one transaction per message, recorded in the same step of the
event loop in which the gateway writes the bytes it commits: a mark that is
durable while its bytes wait for later turns (as grouping a batch's marks had
them wait) is a message `recover` takes as delivered though it never left. A crash
with outcomes kept leaves those messages at their marks: `recover` records them
delivered, assumed (never sent twice; a refusal among them is then not seen),
as for a crash before one outcome.

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
from collections.abc import Callable, Hashable, Mapping, Sequence
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
    PermanentFailure,
    ReportHandler,
    SendOutcome,
    TemporaryFailure,
)

log = logging.getLogger(__name__)
WORKER = CommandContext(actor="sender", source="sender")
REPORT_PATIENCE = timedelta(hours=1)
MESSAGE_ATTEMPTS = 5
DECIDE_TRIES = 5  # appends that lost to another writer (a tracker's hit) before one gives up
# Messages whose attempts are one append, and outcomes kept before they are appended together: one
# transaction costs about as much as 30 events in it (BENCHMARKS.md, "Email sending"), and a crash
# with outcomes kept leaves those messages at their commit marks (delivered, assumed, by `recover`)
BATCH = 32
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

        Reading, rendering and recording run one at a time on the event loop, `BATCH` messages
        together: their attempts are one append, and their outcomes are kept and appended
        `BATCH` at a time; the gateways' exchanges of up to `concurrency` messages overlap (with
        the next batch's rendering), over as many connections as each gateway holds.
        """
        self.settle_reports()
        index, parts = self.part
        due = self.queue.due(self.channel.name, self.clock.now(), limit * parts)
        mine = [m for m in due if zlib.crc32(m.encode()) % parts == index][:limit]
        lookups = Lookups(self.aggregates)
        slots = asyncio.Semaphore(self.concurrency)
        outcomes = _Outcomes(self)
        sending: set[asyncio.Task[None]] = set()
        broken: list[Exception] = []  # the store or the network failed: the whole pass backs off

        async def deliver(started: _Started) -> None:
            try:
                outcomes.add(started, await self._deliver(started))
            except Exception as error:
                if is_transient(error):
                    broken.append(error)
                else:
                    self._failed(started.loaded.state.message_id, error)
            finally:
                slots.release()

        attempts = 0
        try:
            for first in range(0, len(mine), BATCH):
                prepared = [
                    p for m in mine[first : first + BATCH] if (p := self._prepared_safely(m, lookups))
                ]
                for started in self._start_all(prepared):
                    await slots.acquire()
                    if broken:
                        slots.release()
                        raise broken[0]
                    task = asyncio.ensure_future(deliver(started))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                    attempts += 1
            await asyncio.gather(*sending)
            if broken:
                raise broken[0]
        finally:  # what came back is recorded even when the pass stops on an error
            await asyncio.gather(*sending, return_exceptions=True)
            outcomes.flush()
        self.settle_reports()
        return attempts

    def _prepared_safely(self, message_id: str, lookups: Lookups) -> _Prepared | None:
        try:
            return self._prepare(message_id, lookups)
        except Exception as error:
            if is_transient(error):
                raise
            self._failed(message_id, error)
            return None

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
        work = [
            (
                self.deliveries.message(message_id),
                # at our clock's instant it arrived: a receipt's own date has minutes and no time zone
                [dl.RecordDeliveryReport(r.provider_id, r.state, r.code, at) for r, at in reports],
            )
            for message_id, reports in found.items()
        ]
        try:  # every message's reports in one write
            self.aggregates.execute_on_many(dl.delivery_decider, work, WORKER)
        except WrongExpectedVersion:  # one of them moved on (a hit): each on its own, read again
            for loaded, commands in work:
                self._decided(loaded, *commands)
        return sum(len(r) for r in found.values())

    async def send(self, message_id: str, lookups: Lookups | None = None) -> int:
        """Send one message if it is still to be sent; 1 when an attempt was made."""
        prepared = self._prepare(message_id, lookups or Lookups(self.aggregates))
        started = self._start_all([prepared] if prepared else [])
        if not started:
            return 0
        outcomes = _Outcomes(self)
        outcomes.add(started[0], await self._deliver(started[0]))
        outcomes.flush()
        return 1

    def _prepare(self, message_id: str, lookups: Lookups) -> _Prepared | None:
        """The message read, its campaign checked, rendered and routed: its attempt's commands, or
        None when it is not to be sent now (given up if it never will be)."""
        loaded = self.deliveries.message(message_id)
        queued = loaded.state.queued
        if not loaded.state.sendable or queued is None:
            return None
        stopped = _stopped(queued, lookups)
        if stopped == "wait":
            return None
        if stopped:
            self._give_up(loaded, "campaign_stopped", stopped)
            return None
        try:
            composed = self.channel.compose(queued, lookups, self.clock.now())
        except RenderFailed as failed:
            self._give_up(
                loaded, "render_failed", f"{failed.reason} ({failed.path})" if failed.path else failed.reason
            )
            return None
        except DomainError as error:
            self._give_up(loaded, "sender_error", error.reason)
            return None
        now = self.clock.now()
        start: list[dl.DeliveryCommand] = [
            dl.StartAttempt(composed.sender.state.sender_id, now, composed.rendered_from)
        ]
        if composed.short_links:  # kept before it leaves, so `/s/<code>` resolves when it arrives
            start.append(dl.RecordShortLinks(composed.short_links, now))
        return _Prepared(loaded, start, composed)

    def _start_all(self, prepared: Sequence[_Prepared]) -> list[_Started]:
        """Record the attempts of `prepared` in one append, each checked against the version its
        message was read at: a message another worker took meanwhile is left out (it conflicts:
        the append is tried again without it), the others are started."""
        waiting = list(prepared)
        while waiting:
            work = [(p.loaded, p.start) for p in waiting]
            try:
                states = self.aggregates.execute_on_many(dl.delivery_decider, work, WORKER)
            except WrongExpectedVersion as moved:  # another worker took it: the rest go on
                waiting = [p for p in waiting if p.loaded.stream != moved.stream]
                continue
            except Exception as error:
                if is_transient(error) or len(waiting) == 1:
                    raise
                return [s for p in waiting for s in self._start_all([p])]  # find which one broke it
            return [_Started(s, p.composed) for s, p in zip(states, waiting, strict=True)]
        return []

    async def _deliver(self, started: _Started) -> tuple[Loaded[dl.DeliveryState], SendOutcome]:
        """Hand a started message to its sender's gateway, its commit mark recorded right before
        the bytes that commit it leave; the state after the mark, and what the gateway answered."""
        held = [started.loaded]

        async def committing() -> None:
            # Recorded without yielding to the event loop: the gateway writes the bytes in the same
            # step, so no kill can land between a durable mark and the bytes leaving.
            held[0] = self._decided(held[0], dl.MarkCommitting(self.clock.now()))

        gateway = await self._gateway(started.composed.sender)
        outcome = await gateway.send(started.composed.outbound, before_commit=committing)
        return held[0], outcome

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

    def _outcome_command(self, sender: OpenedSender, outcome: SendOutcome) -> dl.DeliveryCommand:
        now = self.clock.now()
        sender_id = sender.state.sender_id
        if isinstance(outcome, Accepted):
            waits = self.channel.await_delivery(sender)
            return dl.RecordAcceptance(
                outcome.provider_ids, outcome.code, outcome.response, sender_id, waits, now
            )
        temporary = isinstance(outcome, TemporaryFailure)
        retry = outcome.retry_after_seconds if isinstance(outcome, TemporaryFailure) else None
        return dl.RecordSendFailure(
            not temporary,
            outcome.code,
            outcome.response,
            sender_id,
            self.channel.retry_deadline(sender),
            now,
            retry_after=timedelta(seconds=retry) if retry is not None else None,
            maybe_sent=isinstance(outcome, TemporaryFailure) and outcome.maybe_sent,
        )

    def _record_all(self, answered: Sequence[_Answered]) -> None:
        """The gateways' answers appended together; when one message moved on since (a tracker's
        hit) nothing of the append was stored, and each is decided again on its own."""
        work = [(a.loaded, (a.command,)) for a in answered]
        if not work:
            return
        try:
            self.aggregates.execute_on_many(dl.delivery_decider, work, WORKER)
        except Exception as error:
            if is_transient(error):
                raise
            for a in answered:
                try:
                    self._decided(a.loaded, a.command)
                except Exception as broke:
                    if is_transient(broke):
                        raise
                    self._failed(a.loaded.state.message_id, broke)
        for a in answered:
            if a.address_gone:  # the subscription too
                self.deliveries.hard_bounced(a.loaded.state.message_id, self.clock.now())

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


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message to send now: as read, its attempt's commands, and what it goes out as."""

    loaded: Loaded[dl.DeliveryState]
    start: Sequence[dl.DeliveryCommand]
    composed: Composed


@dataclass(frozen=True, slots=True)
class _Started:
    """A message whose attempt is recorded: its state after it, and what it goes out as."""

    loaded: Loaded[dl.DeliveryState]
    composed: Composed


@dataclass(frozen=True, slots=True)
class _Answered:
    """A gateway's answer to be recorded: the message's state after its commit mark, the command."""

    loaded: Loaded[dl.DeliveryState]
    command: dl.DeliveryCommand
    address_gone: bool


class _Outcomes:
    """The gateways' answers of one pass, kept and appended `BATCH` at a time (and at its end)."""

    def __init__(self, worker: MessageWorker) -> None:
        self.worker = worker
        self.kept: list[_Answered] = []

    def add(self, started: _Started, delivered: tuple[Loaded[dl.DeliveryState], SendOutcome]) -> None:
        loaded, outcome = delivered
        command = self.worker._outcome_command(started.composed.sender, outcome)
        gone = isinstance(outcome, PermanentFailure) and outcome.address_gone
        self.kept.append(_Answered(loaded, command, gone))
        if len(self.kept) >= BATCH:
            self.flush()

    def flush(self) -> None:
        kept, self.kept = self.kept, []
        self.worker._record_all(kept)


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
