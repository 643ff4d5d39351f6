"""The channel gateway port: one rendered message to one address, and what came of it.

Every protocol adapter (SMPP and HTTP SMS, web push, FCM, APNs, Telegram, and
SMTP email: `senders/smtp_gateway.py`) is a `ChannelGateway`. A sender
worker generic over this port needs to know nothing of the protocol:

- `send(message, before_commit)` hands one `Outbound` to the provider and
  returns an `Accepted` (with the provider's message ids), a
  `TemporaryFailure` (try again later: throttled, queue full, no answer) or a
  `PermanentFailure` (never try again; `address_gone` says the address itself
  no longer exists: an unregistered device token, a blocked bot, an invalid
  number). It raises nothing for what the provider or the network does;
  `ValueError` only for a message the adapter cannot put on the wire at all.
- `before_commit` is awaited right before the bytes that commit the message
  leave (the SMTP final dot, the first submit_sm, the HTTP request): the
  worker records `MessageCommitting` there, so a restarted worker never sends
  twice what may have left, and resends what surely did not. Nothing leaves
  until it returns, and the bytes leave right after it, with no wait between
  (a durable mark is taken as sent); if it raises the message is not sent (the
  error passes out of `send`).
- `message.message_id` is the idempotency key: every adapter puts it (or a
  value derived from it) on the wire where the protocol has a place for it
  (APNs `apns-id`, web push `Topic`, BulkSMS `userSuppliedId`, the SMPP
  concatenation reference and `user_message_reference`), so a resend carries
  the same key and a provider that deduplicates can.
- `rate` is the provider's limit (sends started per second), enforced by the
  adapter itself (`senders/rate.py`), so no caller can overshoot it.
- Delivery reports (an SMPP receipt, a BulkSMS webhook) come back as
  `DeliveryReport` values given to the `on_report` callback the gateway was
  built with; an adapter whose provider sends none says so
  (`reports_delivery = False`): push delivery is the `ack` tracking link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from herald.senders.mime import Attachment
from herald.senders.rate import SendRate


@dataclass(frozen=True, slots=True)
class EmailParts:
    """What an email has besides its recipient: the gateway writes the MIME message from these.

    `date` is the message's Date and its DKIM signing time (the worker's clock);
    `envelope_from` the SMTP MAIL FROM (the sender's bounce address), `from_email` when empty.
    """

    subject: str
    from_email: str
    html: str = ""
    text: str = ""
    from_name: str = ""
    to_name: str = ""
    reply_to_email: str = ""
    reply_to_name: str = ""
    attachments: tuple[Attachment, ...] = ()
    unsubscribe_url: str = ""
    list_id: str = ""
    list_name: str = ""
    feedback_id: str = ""
    date: datetime | None = None
    envelope_from: str = ""


@dataclass(frozen=True, slots=True)
class Outbound:
    """One rendered message for one address.

    `address`: the subscription's contact (an email address, E.164 phone, chat id,
    device token, a web push subscription's JSON). `sender`: who it is from (an SMS
    alpha sender). The content fields a channel does not use stay empty; an email's
    are `email`.
    """

    message_id: str
    address: str
    text: str = ""  # SMS or messenger text, push body
    sender: str = ""
    title: str = ""  # push
    icon: str = ""
    click_url: str = ""
    deep_link: str = ""
    data: Mapping[str, str] = field(default_factory=dict)  # push custom data (the ack/open links)
    ttl_seconds: int = 0  # push: how long the provider keeps an undelivered message; 0: its default
    markup: str = ""  # messenger text markup ("HTML", "MarkdownV2"); "": plain text
    buttons: tuple[tuple[str, str], ...] = ()  # messenger URL buttons (label, URL), one per row
    no_link_preview: bool = False  # messenger: no preview of the text's first link
    email: EmailParts | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the message; `provider_ids` name it (one per SMS part) for delivery reports."""

    provider_ids: tuple[str, ...]
    code: int = 0
    response: str = ""


@dataclass(frozen=True, slots=True)
class TemporaryFailure:
    """Not sent now, may succeed later (throttled, queue full, provider down, no answer)."""

    code: int
    response: str
    retry_after_seconds: float | None = None  # the provider's own hint, when it gives one
    maybe_sent: bool = False  # no answer after the message left: the provider may have taken it


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """Refused for good; `address_gone`: the address does not exist any more (its subscription is dead)."""

    code: int
    response: str
    address_gone: bool = False


SendOutcome = Accepted | TemporaryFailure | PermanentFailure
ReportState = Literal["delivered", "undelivered", "expired", "rejected", "unknown"]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's word on an accepted message: delivered, or not and why."""

    provider_id: str
    state: ReportState
    code: str = ""  # the provider's error code, as it gives it
    at: datetime | None = None  # when the provider says it happened
    message_id: str = ""  # ours, when the provider echoes it back


ReportHandler = Callable[[DeliveryReport], None]
BeforeCommit = Callable[[], Awaitable[None]]


class ChannelGateway(Protocol):
    """The port: send one message to one address; delivery reports go to the handler it was built with."""

    channel: str  # "sms", "push", "telegram_bot", "email"
    reports_delivery: bool
    rate: SendRate | None

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome: ...

    async def close(self) -> None: ...


def ignore_report(report: DeliveryReport) -> None:
    """The default report handler: a gateway built without one drops what comes back."""
