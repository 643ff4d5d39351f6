"""The email channel's part of the sender worker: a queued email composed for the SMTP gateway.

A message goes out through the campaign's virtual sender (`messages/routing.py`:
the first rule matching the recipient's domain, split by percentage), as the
template's From and Reply-To or else the resource's email channel's (a rule may
override the From name), with the resource's List-ID, List-Unsubscribe (unless
its unsubscribe policy turns it off), `Feedback-ID: campaign:resource:herald`
and the sender's DKIM key; its envelope sender is the sender's bounce address.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from herald.domain import senders as sd
from herald.domain.messages import MessageQueued
from herald.domain.resources import EmailSettings
from herald.infra.signing import TokenSigner
from herald.messages.queued import QueuedMessages
from herald.messages.rendering import RenderedEmail, SignedTrackingUrls, as_sent, tracking_base
from herald.messages.routing import RoutedChannel, Senders, routed
from herald.messages.worker import Composed, Lookups
from herald.senders.dkim import DkimKey
from herald.senders.gateway import ChannelGateway, EmailParts, Outbound, ReportHandler
from herald.senders.mime import attachment_from_rendered
from herald.senders.smtp import SmtpRelay
from herald.senders.smtp_gateway import SmtpGateway, wire

_STARTTLS: dict[str, bool | Literal["auto"]] = {"auto": "auto", "always": True, "never": False}


class EmailChannel(RoutedChannel):
    name = "email"

    def __init__(
        self,
        queued: QueuedMessages,
        senders: Senders,
        signer: TokenSigner,
        read_file: Callable[[str], bytes] = lambda path: Path(path).read_bytes(),
    ) -> None:
        super().__init__(queued, senders)
        self.signer = signer
        self.read_file = read_file

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        body, _, rendered_from = self.rendered(queued, lookups, RenderedEmail)
        resource, email = self.queued.channel_of(queued, lookups)
        assert isinstance(email, EmailSettings) and resource.settings is not None
        body = as_sent(body, email)
        target, sender = routed(queued, lookups, self.senders)
        settings = sender.state.settings
        assert settings is not None
        tracking = SignedTrackingUrls(self.signer, tracking_base(resource), queued.message_id)
        parts = EmailParts(
            subject=body.subject,
            from_email=body.from_email,
            html=body.html,
            text=body.text,
            from_name=target.from_name or body.from_name,
            reply_to_email=body.reply_to_email,
            reply_to_name=body.reply_to_name,
            attachments=tuple(attachment_from_rendered(a, self.read_file) for a in body.attachments),
            unsubscribe_url=""
            if resource.unsubscribe_policy.list_unsubscribe_disabled
            else tracking.system("unsubscribe"),
            list_id=email.list_id,
            list_name=resource.settings.name,
            feedback_id=f"{queued.campaign_id}:{queued.resource_id}:herald",
            date=at,
            envelope_from=settings.bounce_address or body.from_email,
        )
        return Composed(Outbound(queued.message_id, queued.contact, email=parts), sender, rendered_from)

    def gateway(self, sender: sd.OpenedSender, on_report: ReportHandler) -> ChannelGateway:
        relay, connections, rate, dkim = self.built_for(sender)  # a relay's reports are DSNs: inbound
        return SmtpGateway(relay, connections, rate, dkim)

    def built_for(self, sender: sd.OpenedSender) -> tuple[SmtpRelay, int, float, DkimKey | None]:
        settings = sender.state.settings
        assert settings is not None and settings.relay is not None  # an email sender has its relay
        relay = SmtpRelay(
            host=settings.relay.host,
            port=settings.relay.port,
            username=settings.relay.username or None,
            password=sender.password or None,
            starttls=_STARTTLS[settings.relay.starttls],
            use_tls=settings.relay.implicit_tls,
        )
        dkim = (
            DkimKey(settings.dkim_selector, settings.dkim_domain, sender.dkim_private_key)
            if settings.dkim_selector
            else None
        )
        return relay, settings.connections, settings.rate_per_second, dkim

    def await_delivery(self, sender: sd.OpenedSender) -> timedelta | None:
        return None  # a relay's 250 is the delivery; later bounces come back as DSNs

    def wire(self, queued: MessageQueued, at: datetime) -> bytes:
        """The signed bytes the message goes out as now (what a benchmark's baseline sends again)."""
        composed = self.compose(queued, Lookups(self.queued.aggregates), at)
        return wire(composed.outbound, self.built_for(composed.sender)[3])[1]
