"""Inbound mail (the SMTP listener or `POST /api/v1/inbound`): complaints and bounces become message events.

A complaint (ARF) for a known message records `ComplaintReceived` and makes
the subscription a complainer; a DSN records a hard or soft bounce per
recipient (a hard one makes the subscription hard bounced, and the stop-list
rule follows). Mail that is no report, a report that cannot be read, or one
that names no message Herald sent is kept as `InboundMailKept` with the
reason (and its bytes, up to `MAX_KEPT_BYTES`), never dropped and never a
crash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from herald.domain import deliveries as dl
from herald.domain.errors import NotFound
from herald.domain.inbound_mail import InboundMailKept, inbound_stream
from herald.infra.event_store import NewEvent
from herald.messages.deliveries import DeliveryService
from herald.senders.inbound import Bounce, Complaint, NotReport, Unparsed, parse_inbound

MAX_KEPT_BYTES = 256 * 1024


class InboundService:
    def __init__(self, deliveries: DeliveryService) -> None:
        self.deliveries = deliveries
        self.aggregates = deliveries.aggregates

    def receive(self, raw: bytes, recipients: Sequence[str] = ()) -> dict[str, Any]:
        """Read one inbound message and record what it says; returns a summary of what was done."""
        report = parse_inbound(raw, recipients)
        now = self.aggregates.clock.now()
        if isinstance(report, Complaint) and report.message_id and report.counts_as_complaint:
            if self._known(report.message_id):
                self.deliveries.complaint(report.message_id, report.feedback_type, "arf", now)
                return {"kind": "complaint", "message_id": report.message_id}
            return self._keep(
                raw, "unmatched", f"a complaint about message {report.message_id}, never sent here"
            )
        if isinstance(report, Complaint):
            why = (
                "names no message sent here"
                if not report.message_id
                else f"is a {report.feedback_type} report"
            )
            return self._keep(raw, "unmatched", f"the complaint {why}")
        if isinstance(report, Bounce):
            return self._bounce(raw, report)
        if isinstance(report, Unparsed):
            return self._keep(raw, "unparsed", report.reason)
        assert isinstance(report, NotReport)
        return self._keep(raw, "not_report", f"mail from {report.sender}: {report.subject}")

    def _bounce(self, raw: bytes, report: Bounce) -> dict[str, Any]:
        if not report.message_id or not self._known(report.message_id):
            return self._keep(raw, "unmatched", "the bounce names no message sent here")
        now = self.aggregates.clock.now()
        for recipient in report.recipients:
            response = recipient.diagnostic_code or recipient.status
            command = dl.RecordBounceReport(
                recipient.kind, recipient.status, response, str(recipient.reason), now
            )
            self.deliveries.bounce_report(report.message_id, command)
        kinds = [r.kind for r in report.recipients]
        return {"kind": "bounce", "message_id": report.message_id, "recipients": kinds}

    def _known(self, message_id: str) -> bool:
        try:
            self.deliveries.message(message_id)
        except NotFound:
            return False
        return True

    def _keep(
        self, raw: bytes, kind: Literal["unparsed", "unmatched", "not_report"], reason: str
    ) -> dict[str, Any]:
        digest = hashlib.sha256(raw).hexdigest()
        kept = InboundMailKept(
            inbound_id=digest[:32],
            kind=kind,
            reason=reason,
            size=len(raw),
            content_base64=base64.b64encode(raw[:MAX_KEPT_BYTES]).decode(),
            truncated=len(raw) > MAX_KEPT_BYTES,
            at=self.aggregates.clock.now(),
        )
        event = NewEvent(
            event_id=self.aggregates.ids.uuid(),
            type="InboundMailKept",
            data=kept.model_dump(mode="json"),
            occurred_at=kept.at,
            metadata={"actor": "inbound", "source": "inbound"},
        )
        self.aggregates.store.append(inbound_stream(kept.inbound_id), [event])
        return {"kind": kind, "reason": reason, "inbound_id": kept.inbound_id}
