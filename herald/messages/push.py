"""The push channel's part of the sender worker: a queued push composed for a browser's push service.

A push goes out through the campaign's virtual sender (`messages/routing.py`), whose push sender
speaks the Web Push protocol (RFC 8030/8291/8292) signed with the account's VAPID key, to the
browser subscription the message was queued for: its title, body, icon and click URL, with the
`ack` and `open` tracking links the service worker calls (`hub_link`), so delivery and opening
are the recipient's own reports. Accepted by the push service is sent; the `ack` says delivered.

Not yet: app subscriptions (FCM, APNs tokens) have gateways (`senders/fcm.py`, `senders/apns.py`)
but no sender kind; a push queued for one is not delivered (`sender_error`) rather than guessed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herald.domain import senders as sd
from herald.domain.errors import RuleViolated
from herald.domain.messages import MessageQueued
from herald.messages.queued import QueuedMessages
from herald.messages.rendering import RenderedPush, SignedTrackingUrls, tracking_base
from herald.messages.routing import Senders, retry_deadline, routed
from herald.messages.worker import Composed, Lookups
from herald.senders.gateway import ChannelGateway, Outbound, ReportHandler
from herald.senders.webpush import WebPushGateway, WebPushSettings, parse_subscription


class PushChannel:
    name = "push"

    def __init__(self, queued: QueuedMessages, senders: Senders, vapid_private_key: str) -> None:
        self.queued = queued
        self.senders = senders
        self.vapid_private_key = vapid_private_key

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        try:
            parse_subscription(queued.contact)
        except ValueError:
            raise RuleViolated("no sender serves app push subscriptions yet (FCM, APNs)", "contact") from None
        message, rendered_from = self.queued.render_to_send(queued, lookups)
        body = message.body
        assert isinstance(body, RenderedPush)
        resource, _ = self.queued.channel_of(queued, lookups)
        links = SignedTrackingUrls(
            self.queued.signer, tracking_base(resource), queued.message_id
        ).push_links()
        _, sender = routed(queued, lookups, self.senders)
        outbound = Outbound(
            queued.message_id,
            queued.contact,
            body.body,
            title=body.title,
            icon=body.icon,
            click_url=body.click_url,
            data=links,
        )
        return Composed(outbound, sender, rendered_from)

    def gateway(self, sender: sd.OpenedSender, on_report: ReportHandler) -> ChannelGateway:
        return WebPushGateway(self.built_for(sender))

    def built_for(self, sender: sd.OpenedSender) -> WebPushSettings:
        settings = sender.state.settings
        assert settings is not None and settings.webpush is not None  # a push sender has its service
        return WebPushSettings(
            vapid_private_key=self.vapid_private_key,
            subject=settings.webpush.subject,
            rate_per_second=settings.rate_per_second,
            connections=settings.connections,
        )

    def retry_deadline(self, sender: sd.OpenedSender) -> timedelta:
        return retry_deadline(sender)

    def await_delivery(self, sender: sd.OpenedSender) -> timedelta | None:
        return None  # push services send no delivery reports: the service worker's `ack` is one
