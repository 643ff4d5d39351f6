"""Email as a channel gateway: an email's parts written as MIME, DKIM-signed, sent over the SMTP pool.

The sender's pool (`senders/smtp.py`) and its DKIM key make one gateway, so the
generic worker sends email the way it sends any channel. What the relay answers
maps onto the port's outcomes:
- 250 to the data: `Accepted`, named by the relay's queue id when its answer
  gives one (`queued as <id>`), else by our Message-ID's left part (the message
  id): DSNs and the relay's logs name it either way;
- 4xx to RCPT or the data: `TemporaryFailure` (a soft bounce, retried);
- 5xx to RCPT or the data: `PermanentFailure`, `address_gone` when the relay
  says the address itself is dead (see `SmtpOutcome.address_gone`), not for a
  refusal of this message (spam, policy);
- no answer, or a refusal before the recipient was named (the relay refusing
  us, not the recipient): `TemporaryFailure`, `maybe_sent` when the final dot
  had left.

`before_commit` runs right before the message and its final dot are written:
until then the relay holds nothing it would deliver. The Message-ID is derived
from the message id, so a resend carries the same one (the relay's duplicate
suppression and the recipient's client can tell).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from herald.senders.dkim import DkimKey, sign
from herald.senders.gateway import (
    Accepted,
    BeforeCommit,
    Outbound,
    PermanentFailure,
    SendOutcome,
    TemporaryFailure,
)
from herald.senders.mime import build_email
from herald.senders.rate import SendRate
from herald.senders.smtp import SmtpOutcome, SmtpPool, SmtpRelay

_QUEUE_ID = re.compile(r"queued as\s+<?([A-Za-z0-9._@-]+)>?", re.IGNORECASE)


class SmtpGateway:
    channel = "email"
    reports_delivery = False  # bounces after acceptance come back as DSNs, through inbound mail

    def __init__(
        self,
        relay: SmtpRelay,
        connections: int = 1,
        rate_per_second: float | None = None,
        dkim: DkimKey | None = None,
    ) -> None:
        self.pool = SmtpPool(relay, connections, rate_per_second)
        self.dkim = dkim

    @property
    def rate(self) -> SendRate | None:
        return self.pool.rate

    @rate.setter
    def rate(self, rate: SendRate | None) -> None:
        self.pool.rate = rate

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        envelope_from, data = wire(message, self.dkim)
        outcome = await self.pool.send(envelope_from, message.address, data, before_commit)
        return _as_sent(message.message_id, outcome)

    async def close(self) -> None:
        await self.pool.close()


def wire(message: Outbound, dkim: DkimKey | None) -> tuple[str, bytes]:
    """The envelope sender and the bytes an email goes out as: MIME, signed with `dkim` when given."""
    parts = message.email
    if parts is None:
        raise ValueError("an email gateway sends emails: the message has no email parts")
    date = parts.date or datetime.now(UTC)
    data = build_email(
        message_id=message.message_id,
        domain=parts.from_email.rpartition("@")[2],
        date=date,
        from_email=parts.from_email,
        from_name=parts.from_name,
        to_email=message.address,
        to_name=parts.to_name,
        subject=parts.subject,
        text=parts.text,
        html=parts.html,
        reply_to_email=parts.reply_to_email,
        reply_to_name=parts.reply_to_name,
        attachments=parts.attachments,
        unsubscribe_url=parts.unsubscribe_url,
        list_id=parts.list_id,
        list_name=parts.list_name,
        feedback_id=parts.feedback_id,
    )
    if dkim is not None:
        data = sign(data, dkim, at=date)
    return parts.envelope_from or parts.from_email, data


def _as_sent(message_id: str, outcome: SmtpOutcome) -> SendOutcome:
    if outcome.kind == "delivered":
        queued = _QUEUE_ID.search(outcome.text)
        return Accepted((queued.group(1) if queued else message_id,), outcome.code, outcome.text)
    if outcome.kind == "hard_bounce":
        return PermanentFailure(outcome.code, outcome.text, address_gone=outcome.address_gone)
    return TemporaryFailure(outcome.code, outcome.text, maybe_sent=outcome.maybe_sent)
