"""What happens to a queued message: sending attempts, delivery outcomes, and what the recipient did.

These events follow `MessageQueued` on the message's stream (`message-<id>`)
and are decided by `delivery_decider` on the message's state, so every rule
that depends on the message's history lives here:

- a message is sent at most once: an attempt is recorded before the SMTP
  transaction is committed (`MessageCommitting`); a sender restarted after
  that point does not send again (the outcome is then recorded as assumed),
  nor does one that had no answer after the message left (`maybe_sent`);
- soft bounces are retried on `RETRY_BACKOFF` until the sender's deadline,
  then the message is not delivered (`MessageNotDelivered{reason: expired}`);
- the "unique" rule: an open (or click, or read) counts as unique unless the
  same action on the same message was counted unique within the previous 24
  hours (guide, reports: "уникальные ... повторно через 24 часа"); every
  action is still recorded, with its `unique` flag;
- tracker hits flagged as bots (mail scanners, prefetchers; `domain/bots.py`) are
  recorded with the rule that matched and why (`bot_rule`, `bot_reason`), never
  unique, so reports and segments leave them out and the history says why;
- a person's click on a message with no open counted in the 24 hours before
  it also records that open (`MessageOpened{implied: true}`, unique): whoever
  clicked opened the message, though the pixel did not load (images blocked or
  cached). So unique opens hold every unique clicker and CTOR (unique clicks
  per unique open) never counts a clicker who never opened, as Mailchimp and
  SendGrid count a click without an open;
- a gateway that reports delivery (SMS) first only accepts a message
  (`MessageAccepted`, with the provider's id of every part); the message is
  delivered when every part's delivery report says so, not delivered as soon
  as one part's says it failed, expired or was rejected, and not delivered
  (`no_delivery_report`) when the sender's "await delivery (seconds)" passes
  with a part unreported. A report that comes after that wait and says
  delivered still makes the message delivered (the provider knows best); a
  report for a message already settled otherwise changes nothing.

Every event repeats the message's reference (`MessageRef`: campaign, run,
template and version, profile, database, resource, channel, contact, test
flag), so the counters and the report rows need no join.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.bots import BotVerdict
from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.events import Event, registry
from herald.domain.messages import MessageQueued

UNIQUE_WINDOW = timedelta(hours=24)
READ_AFTER = timedelta(seconds=10)  # the read pixel fires after the message was open this long
# Waits before the 1st, 2nd, ... retry of a soft bounce; the last one repeats until the deadline.
RETRY_BACKOFF = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
)
DEFAULT_RETRY_DEADLINE = timedelta(hours=48)


class MessageRef(BaseModel):
    """What a delivery or tracking event is about (copied from the queued message)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    campaign_id: str
    run_id: str
    template_id: str
    template_version: int
    profile_id: str
    database_id: str
    resource_id: str
    channel: str
    contact: str
    is_test: bool = False
    scenario_id: str | None = None  # the scenario whose campaign node sent it

    @classmethod
    def of(cls, queued: MessageQueued) -> MessageRef:
        return cls(
            campaign_id=queued.campaign_id,
            run_id=queued.run_id,
            template_id=queued.template_id,
            template_version=queued.template_version,
            profile_id=queued.profile_id,
            database_id=queued.database_id,
            resource_id=queued.resource_id,
            channel=queued.channel,
            contact=queued.contact,
            is_test=queued.is_test,
            scenario_id=queued.scenario_id,
        )


class _MessageEvent(Event):
    message_id: str
    campaign_id: str
    template_id: str
    template_version: int
    profile_id: str
    database_id: str
    resource_id: str
    channel: str
    contact: str
    is_test: bool = False
    scenario_id: str | None = None
    at: datetime


def _ref_fields(message_id: str, ref: MessageRef) -> dict[str, object]:
    return {"message_id": message_id, **ref.model_dump(exclude={"run_id"})}


# --- sending -----------------------------------------------------------------------------------


class RenderInputs(BaseModel):
    """What a message was rendered from that may change after it is sent: the profile's stream
    version, the fragments' versions and the remote content fetched. The template version and a
    trigger's content are on the queued message already; with these, rendering again gives the
    message as it was sent (its web version), whatever changed since."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile_version: int
    fragment_versions: dict[str, int] = Field(default_factory=dict)
    remote_html: dict[str, str] = Field(default_factory=dict, description="`{[url]}` blocks: URL → HTML")
    remote_json: dict[str, dict[str, JsonValue]] = Field(
        default_factory=dict, description="the JSON content URL → what it answered"
    )


@registry.register("MessageSendAttempted")
class MessageSendAttempted(_MessageEvent):
    attempt: int
    sender_id: str
    rendered_from: RenderInputs | None = None  # absent on attempts recorded before it was kept


@registry.register("MessageCommitting")
class MessageCommitting(_MessageEvent):
    """The SMTP transaction's data is sent and its final dot is next: from here on, never send again."""

    attempt: int


@registry.register("MessageDelivered")
class MessageDelivered(_MessageEvent):
    sender_id: str
    code: int
    response: str
    assumed: bool = False  # the sender stopped after committing, or no answer came: none was seen


@registry.register("MessageAccepted")
class MessageAccepted(_MessageEvent):
    """A gateway took the message; its delivery reports will name it by `provider_ids` (one per part)."""

    sender_id: str
    provider_ids: tuple[str, ...]
    code: int = 0
    response: str = ""
    await_until: datetime | None = None  # when an unreported message stops waiting (None: it never waits)


@registry.register("MessageDeliveryReported")
class MessageDeliveryReported(_MessageEvent):
    """The provider's delivery report on one part of an accepted message."""

    provider_id: str
    state: Literal["delivered", "undelivered", "expired", "rejected", "unknown"]
    code: str = ""


@registry.register("MessageSoftBounced")
class MessageSoftBounced(_MessageEvent):
    attempt: int
    code: int
    response: str
    retry_at: datetime | None = None
    source: Literal["smtp", "dsn"] = "smtp"


@registry.register("MessageHardBounced")
class MessageHardBounced(_MessageEvent):
    code: int
    response: str
    status: str = ""  # the enhanced status code (5.1.1), when known
    reason: str = ""  # the non-delivery reason it maps to (user unknown, bad domain, ...)
    source: Literal["smtp", "dsn"] = "smtp"


@registry.register("MessageNotDelivered")
class MessageNotDelivered(_MessageEvent):
    reason: str  # expired (soft bounces until the deadline), campaign_stopped, sender_error, ...
    detail: str


@registry.register("MessageLinksShortened")
class MessageLinksShortened(_MessageEvent):
    """The short links (`/s/<code>`) of an SMS as it was sent: code → the click token it stands for."""

    links: dict[str, str]


# --- tracking ----------------------------------------------------------------------------------


class _TrackedEvent(_MessageEvent):
    ip: str = ""
    user_agent: str = ""
    unique: bool
    bot: bool = False
    bot_rule: str = ""  # the `domain/bots.py` rule that made it a machine's hit
    bot_reason: str = ""  # the same in words, for the message's history


@registry.register("MessageOpened")
class MessageOpened(_TrackedEvent):
    implied: bool = False  # recorded for a person's click: no open was counted in the 24 h before it


@registry.register("MessageRead")
class MessageRead(_TrackedEvent):
    pass


@registry.register("MessageAcknowledged")
class MessageAcknowledged(_TrackedEvent):
    """Push delivered: the app or service worker got the push and called its `ack` link."""


@registry.register("LinkClicked")
class LinkClicked(_TrackedEvent):
    link_id: str
    url: str
    link_name: str = ""


@registry.register("MessageUnsubscribed")
class MessageUnsubscribed(_MessageEvent):
    """The recipient unsubscribed through this message (link, one-click header, or mailto)."""

    via: Literal["link", "one_click", "mailto", "page"]
    ip: str = ""
    user_agent: str = ""


@registry.register("MessageUnsubscribeScheduled")
class MessageUnsubscribeScheduled(_MessageEvent):
    """Delayed mode: the recipient clicked unsubscribe; it applies at `apply_at` unless cancelled."""

    apply_at: datetime
    ip: str = ""
    user_agent: str = ""


@registry.register("MessageUnsubscribeCancelled")
class MessageUnsubscribeCancelled(_MessageEvent):
    pass


@registry.register("ComplaintReceived")
class ComplaintReceived(_MessageEvent):
    feedback_type: str
    source: Literal["arf", "http"] = "arf"


# --- state -------------------------------------------------------------------------------------

DeliveryStatus = Literal[
    "unsent",
    "queued",
    "attempting",
    "committing",
    "accepted",
    "soft_bounced",
    "delivered",
    "hard_bounced",
    "not_delivered",
]
_FINAL = ("delivered", "hard_bounced", "not_delivered")


@dataclass(frozen=True, slots=True)
class DeliveryState:
    message_id: str = ""
    ref: MessageRef | None = None
    queued_at: datetime | None = None
    due_at: datetime | None = None
    status: DeliveryStatus = "unsent"
    attempts: int = 0
    first_attempt_at: datetime | None = None
    retry_at: datetime | None = None
    delivered_at: datetime | None = None
    unique_since: dict[str, datetime] = field(default_factory=dict)  # action → when it last counted unique
    unsubscribed: bool = False
    unsubscribe_at: datetime | None = None  # a delayed unsubscribe waiting for its timer
    complained: bool = False
    short_codes: frozenset[str] = frozenset()
    provider_ids: tuple[str, ...] = ()  # the parts a gateway accepted
    reported: dict[str, str] = field(default_factory=dict)  # provider id → the state its report gave
    await_until: datetime | None = None
    accepted_by: str = ""  # the sender that accepted it
    not_delivered_reason: str = ""
    queued: MessageQueued | None = None  # the message as it was queued: what a sender renders it from

    @property
    def sendable(self) -> bool:
        return self.status in ("queued", "soft_bounced")

    @property
    def final(self) -> bool:
        return self.status in _FINAL


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartAttempt:
    sender_id: str
    at: datetime
    rendered_from: RenderInputs | None = None


@dataclass(frozen=True, slots=True)
class MarkCommitting:
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordSendFailure:
    """The gateway did not take the message: for now (a soft bounce: tried again after the backoff,
    or the provider's `retry_after` when longer, until the sender's deadline), or for good (a hard
    bounce). `maybe_sent`: no answer came after the message left, so the provider may have it."""

    permanent: bool
    code: int
    response: str
    sender_id: str
    deadline: timedelta
    at: datetime
    retry_after: timedelta | None = None
    maybe_sent: bool = False


@dataclass(frozen=True, slots=True)
class ResolveInterrupted:
    """A sender restarted: settle the attempt it left (resend-safe, or assumed delivered)."""

    sender_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordBounceReport:
    """A DSN said the message bounced after the relay accepted it."""

    kind: Literal["hard", "soft", "delayed"]
    status: str
    response: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordHit:
    """A tracker saw the recipient open, read or click the message, or a device acknowledge a push."""

    action: Literal["open", "read", "click", "ack"]
    ip: str
    user_agent: str
    bot: BotVerdict | None  # why it is a machine's hit; None for a person's
    at: datetime
    link_id: str = ""
    url: str = ""
    link_name: str = ""


@dataclass(frozen=True, slots=True)
class RecordUnsubscribe:
    via: Literal["link", "one_click", "mailto", "page"]
    ip: str
    user_agent: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleUnsubscribe:
    """Delayed mode: unsubscribe at `apply_at` unless the recipient cancels before."""

    apply_at: datetime
    ip: str
    user_agent: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CancelUnsubscribe:
    at: datetime


@dataclass(frozen=True, slots=True)
class ApplyScheduledUnsubscribe:
    """The timer fired: a scheduled unsubscribe still standing applies now."""

    at: datetime


@dataclass(frozen=True, slots=True)
class RecordComplaint:
    feedback_type: str
    source: Literal["arf", "http"]
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordAcceptance:
    """A gateway accepted the message; with `await_delivery`, its reports are awaited that long."""

    provider_ids: tuple[str, ...]
    code: int
    response: str
    sender_id: str
    await_delivery: timedelta | None
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordDeliveryReport:
    provider_id: str
    state: Literal["delivered", "undelivered", "expired", "rejected", "unknown"]
    code: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ExpireDeliveryWait:
    """The await-delivery timer fell due: a message still unreported is not delivered."""

    at: datetime


@dataclass(frozen=True, slots=True)
class RecordShortLinks:
    """The message's text was rendered with these short links: code → click token."""

    links: Mapping[str, str]
    at: datetime


DeliveryCommand = (
    StartAttempt
    | MarkCommitting
    | RecordSendFailure
    | ResolveInterrupted
    | GiveUp
    | RecordBounceReport
    | RecordHit
    | RecordUnsubscribe
    | ScheduleUnsubscribe
    | CancelUnsubscribe
    | ApplyScheduledUnsubscribe
    | RecordComplaint
    | RecordShortLinks
    | RecordAcceptance
    | RecordDeliveryReport
    | ExpireDeliveryWait
)


# --- decide ------------------------------------------------------------------------------------


def decide(command: DeliveryCommand, state: DeliveryState) -> list[Event]:
    if state.ref is None:
        raise NotFound(f"message {state.message_id or '?'} was never queued", "message_id")
    common = _ref_fields(state.message_id, state.ref) | {"at": command.at}
    match command:
        case StartAttempt():
            if not state.sendable:
                raise RuleViolated(f"the message is {state.status}: it is not sent again", "message_id")
            attempt = MessageSendAttempted(
                **common,
                attempt=state.attempts + 1,
                sender_id=command.sender_id,
                rendered_from=command.rendered_from,
            )
            return [attempt]
        case MarkCommitting():
            if state.status != "attempting":
                raise RuleViolated("no attempt in progress", "message_id")
            return [MessageCommitting(**common, attempt=state.attempts)]
        case RecordSendFailure():
            return _failure(command, state, common)
        case ResolveInterrupted():
            return _interrupted(command, state, common)
        case GiveUp():
            return (
                []
                if state.final
                else [MessageNotDelivered(**common, reason=command.reason, detail=command.detail)]
            )
        case RecordBounceReport():
            return _bounce_report(command, state, common)
        case RecordHit():
            return _hit(command, state, common)
        case RecordUnsubscribe():
            if state.unsubscribed:
                return []
            return [
                MessageUnsubscribed(**common, via=command.via, ip=command.ip, user_agent=command.user_agent)
            ]
        case ScheduleUnsubscribe():
            if state.unsubscribed or state.unsubscribe_at is not None:
                return []
            scheduled = {"apply_at": command.apply_at, "ip": command.ip, "user_agent": command.user_agent}
            return [MessageUnsubscribeScheduled(**common, **scheduled)]
        case CancelUnsubscribe():
            return [MessageUnsubscribeCancelled(**common)] if state.unsubscribe_at is not None else []
        case ApplyScheduledUnsubscribe():
            due = state.unsubscribe_at
            if due is None or state.unsubscribed or command.at < due:
                return []
            return [MessageUnsubscribed(**common, via="page")]
        case RecordComplaint():
            if state.complained:
                return []
            return [ComplaintReceived(**common, feedback_type=command.feedback_type, source=command.source)]
        case RecordShortLinks():
            new = {code: token for code, token in command.links.items() if code not in state.short_codes}
            return [MessageLinksShortened(**common, links=new)] if new else []
        case RecordAcceptance():
            return _accepted(command, state, common)
        case RecordDeliveryReport():
            return _delivery_report(command, state, common)
        case ExpireDeliveryWait():
            due = state.await_until
            if state.status != "accepted" or due is None or command.at < due:
                return []
            missing = len(state.provider_ids) - len(state.reported)
            detail = f"{missing} of {len(state.provider_ids)} part(s) unreported when the wait ended"
            return [MessageNotDelivered(**common, reason="no_delivery_report", detail=detail)]
    raise AssertionError(command)


def _accepted(command: RecordAcceptance, state: DeliveryState, common: dict[str, object]) -> list[Event]:
    if state.status not in ("attempting", "committing"):
        return []  # recorded already
    if not command.provider_ids:
        raise RuleViolated("an accepted message has the provider's id", "provider_ids")
    if command.await_delivery is None:  # no reports to wait for: taken is as far as it goes
        return [
            MessageDelivered(
                **common, sender_id=command.sender_id, code=command.code, response=command.response
            )
        ]
    accepted = {
        "sender_id": command.sender_id,
        "provider_ids": command.provider_ids,
        "code": command.code,
        "response": command.response,
        "await_until": command.at + command.await_delivery,
    }
    return [MessageAccepted(**common, **accepted)]


def _delivery_report(
    command: RecordDeliveryReport, state: DeliveryState, common: dict[str, object]
) -> list[Event]:
    late = state.status == "not_delivered" and state.not_delivered_reason == "no_delivery_report"
    if command.state == "unknown":
        return []  # says nothing about the part: it stays awaited
    if command.provider_id not in state.provider_ids or command.provider_id in state.reported:
        return []
    if state.status != "accepted" and not late:
        return []
    reported = MessageDeliveryReported(
        **common, provider_id=command.provider_id, state=command.state, code=command.code
    )
    parts = {**state.reported, command.provider_id: command.state}
    if command.state != "delivered":
        if late:
            return [reported]
        detail = f"part {command.provider_id}: {command.state} {command.code}".strip()
        return [reported, MessageNotDelivered(**common, reason=f"report_{command.state}", detail=detail)]
    done = all(parts.get(p) == "delivered" for p in state.provider_ids)
    if not done:
        return [reported]
    response = "delivery report" if not late else "delivery report after the wait"
    delivered = MessageDelivered(**common, sender_id=state.accepted_by, code=0, response=response)
    return [reported, delivered]


def _failure(command: RecordSendFailure, state: DeliveryState, common: dict[str, object]) -> list[Event]:
    if state.status not in ("attempting", "committing"):
        return []  # recorded already (a retried outcome write)
    if command.maybe_sent:
        # The message left and the answer was lost: sending again could duplicate it (as after the
        # commit mark), so it counts as delivered, assumed.
        response = f"no answer after the message left: {command.code} {command.response}".strip()
        return [
            MessageDelivered(**common, sender_id=command.sender_id, code=0, response=response, assumed=True)
        ]
    if command.permanent:
        return [MessageHardBounced(**common, code=command.code, response=command.response)]
    first = state.first_attempt_at or command.at
    retry_at = next_retry(state.attempts, command.at)
    if command.retry_after is not None:
        retry_at = max(retry_at, command.at + command.retry_after)
    if retry_at > first + command.deadline:
        return [
            MessageNotDelivered(
                **common,
                reason="expired",
                detail=f"soft bounces until the {_hours(command.deadline)} h deadline; last: {command.code} "
                f"{command.response}".strip(),
            )
        ]
    return [
        MessageSoftBounced(
            **common, attempt=state.attempts, code=command.code, response=command.response, retry_at=retry_at
        )
    ]


def next_retry(attempts: int, now: datetime) -> datetime:
    """When a message that soft-bounced on attempt number `attempts` is tried again."""
    return now + RETRY_BACKOFF[min(attempts, len(RETRY_BACKOFF)) - 1]


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g}"


def _interrupted(command: ResolveInterrupted, state: DeliveryState, common: dict[str, object]) -> list[Event]:
    if state.status == "committing":
        # The final dot may have reached the relay: sending again could duplicate the message.
        return [
            MessageDelivered(
                **common, sender_id=command.sender_id, code=0, response="outcome not seen", assumed=True
            )
        ]
    if state.status == "attempting":
        # The transaction never committed (no final dot): SMTP discards it, so the message is sent again.
        return [
            MessageSoftBounced(
                **common, attempt=state.attempts, code=0, response="the sender stopped", retry_at=command.at
            )
        ]
    return []


def _bounce_report(
    command: RecordBounceReport, state: DeliveryState, common: dict[str, object]
) -> list[Event]:
    if state.status == "hard_bounced":
        return []
    if command.kind == "hard":
        return [
            MessageHardBounced(
                **common,
                code=0,
                response=command.response,
                status=command.status,
                reason=command.reason,
                source="dsn",
            )
        ]
    return [
        MessageSoftBounced(
            **common, attempt=state.attempts, code=0, response=command.response, retry_at=None, source="dsn"
        )
    ]


def _hit(command: RecordHit, state: DeliveryState, common: dict[str, object]) -> list[Event]:
    bot = command.bot
    tracked = common | {
        "ip": command.ip,
        "user_agent": command.user_agent,
        "bot": bot is not None,
        "bot_rule": bot.rule if bot is not None else "",
        "bot_reason": bot.reason if bot is not None else "",
    }
    unique = bot is None and _counts_unique(state, command.action, command.at)
    if command.action == "open":
        return [MessageOpened(**tracked, unique=unique)]
    if command.action == "read":
        return [MessageRead(**tracked, unique=unique)]
    if command.action == "ack":
        return [MessageAcknowledged(**tracked, unique=unique)]
    clicked = LinkClicked(
        **tracked, unique=unique, link_id=command.link_id, url=command.url, link_name=command.link_name
    )
    if bot is None and _counts_unique(state, "open", command.at):
        return [MessageOpened(**tracked, unique=True, implied=True), clicked]
    return [clicked]


def _counts_unique(state: DeliveryState, action: str, at: datetime) -> bool:
    """Whether a person's `action` at `at` counts as unique: none counted in the 24 hours before."""
    last = state.unique_since.get(action)
    return last is None or at - last >= UNIQUE_WINDOW


# --- evolve ------------------------------------------------------------------------------------


def evolve(state: DeliveryState, event: Event) -> DeliveryState:
    if isinstance(event, MessageQueued):
        return DeliveryState(
            event.message_id, MessageRef.of(event), event.at, event.due_at, "queued", queued=event
        )
    if isinstance(event, MessageSendAttempted):
        first = state.first_attempt_at or event.at
        return replace(state, status="attempting", attempts=event.attempt, first_attempt_at=first)
    if isinstance(event, MessageCommitting):
        return replace(state, status="committing")
    if isinstance(event, MessageDelivered):
        return replace(state, status="delivered", delivered_at=event.at)
    if isinstance(event, MessageSoftBounced):
        if event.source == "dsn" and state.status == "delivered":
            return state  # a delayed-delivery notice after acceptance changes nothing
        return replace(state, status="soft_bounced", retry_at=event.retry_at)
    if isinstance(event, MessageHardBounced):
        return replace(state, status="hard_bounced")
    if isinstance(event, MessageNotDelivered):
        return replace(state, status="not_delivered", not_delivered_reason=event.reason)
    if isinstance(event, MessageAccepted):
        return replace(
            state,
            status="accepted",
            provider_ids=event.provider_ids,
            await_until=event.await_until,
            accepted_by=event.sender_id,
        )
    if isinstance(event, MessageDeliveryReported):
        return replace(state, reported={**state.reported, event.provider_id: event.state})
    if isinstance(event, MessageOpened | MessageRead | LinkClicked | MessageAcknowledged) and event.unique:
        kinds = {MessageOpened: "open", MessageRead: "read", LinkClicked: "click", MessageAcknowledged: "ack"}
        action = kinds[type(event)]
        return replace(state, unique_since={**state.unique_since, action: event.at})
    if isinstance(event, MessageUnsubscribed):
        return replace(state, unsubscribed=True, unsubscribe_at=None)
    if isinstance(event, MessageUnsubscribeScheduled):
        return replace(state, unsubscribe_at=event.apply_at)
    if isinstance(event, MessageUnsubscribeCancelled):
        return replace(state, unsubscribe_at=None)
    if isinstance(event, ComplaintReceived):
        return replace(state, complained=True)
    if isinstance(event, MessageLinksShortened):
        return replace(state, short_codes=state.short_codes | frozenset(event.links))
    return state


delivery_decider: Decider[DeliveryCommand, DeliveryState] = Decider(DeliveryState(), decide, evolve)
