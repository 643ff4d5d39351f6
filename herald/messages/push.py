"""The push channel's part of the sender worker: a queued push composed for a browser or an app.

A push goes out through the campaign's virtual sender (`messages/routing.py`), routed by the
subscription's provider, to the sender that serves it: the Web Push protocol (RFC 8030/8291/8292)
signed with the account's VAPID key, to a browser subscription; FCM's HTTP v1 API with the
sender's service account, or APNs over HTTP/2 with the sender's token-auth key (team, key id, the
app's bundle id as topic), to an app's device token. Its title, body, icon, click URL and deep link
(the iOS one to APNs, the Android one to FCM) go with the `ack` and `open` tracking links the
service worker or the app calls (`hub_link`, FCM's `data`), so delivery and opening are the
recipient's own reports. Accepted is sent; `ack` says delivered. A token the provider says is gone
(web push 404/410, FCM UNREGISTERED, APNs 410 or BadDeviceToken) is a hard bounce that makes its
subscription `hard_bounced`. A route to a sender of another provider is not delivered
(`sender_error`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herald.domain import senders as sd
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.messages import MessageQueued
from herald.messages.deliveries import push_provider
from herald.messages.queued import QueuedMessages
from herald.messages.rendering import RenderedPush, SignedTrackingUrls, tracking_base
from herald.messages.routing import RoutedChannel, Senders, routed
from herald.messages.worker import Composed, Lookups
from herald.senders.apns import ApnsGateway, ApnsSettings
from herald.senders.fcm import FcmGateway, FcmSettings, ServiceAccount
from herald.senders.gateway import ChannelGateway, Outbound, ReportHandler
from herald.senders.webpush import WebPushGateway, WebPushSettings


class PushChannel(RoutedChannel):
    name = "push"

    def __init__(self, queued: QueuedMessages, senders: Senders, vapid_private_key: str) -> None:
        super().__init__(queued, senders)
        self.vapid_private_key = vapid_private_key

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        provider = self._provider(queued)
        body, _, rendered_from = self.rendered(queued, lookups, RenderedPush)
        resource, _ = self.queued.channel_of(queued, lookups)
        links = SignedTrackingUrls(
            self.queued.signer, tracking_base(resource), queued.message_id
        ).push_links()
        _, sender = routed(queued, lookups, self.senders, f"push@{provider}")
        settings = sender.state.settings
        assert settings is not None
        serves = provider_of(settings)
        if serves != provider:
            raise RuleViolated(
                f"sender {settings.name!r} sends {serves}, not {provider}: route {provider} to its own",
                "virtual_sender_id",
            )
        outbound = Outbound(
            queued.message_id,
            queued.contact,
            body.body,
            title=body.title,
            icon=body.icon,
            click_url=body.click_url,
            deep_link=body.ios_deep_link if provider == "apns" else body.android_deep_link,
            data=links,
        )
        return Composed(outbound, sender, rendered_from)

    def _provider(self, queued: MessageQueued) -> str:
        """The provider of the subscription the push was queued for (its profile is read to render it)."""
        provider = push_provider(
            self.queued.aggregates, queued.profile_id, queued.resource_id, queued.contact
        )
        if provider is None:
            raise NotFound("the push subscription is gone", "contact")
        return provider

    def gateway(self, sender: sd.OpenedSender, on_report: ReportHandler) -> ChannelGateway:
        built = self.built_for(sender)
        if isinstance(built, FcmSettings):
            return FcmGateway(built)
        if isinstance(built, ApnsSettings):
            return ApnsGateway(built)
        return WebPushGateway(built)

    def built_for(self, sender: sd.OpenedSender) -> WebPushSettings | FcmSettings | ApnsSettings:
        settings = sender.state.settings
        assert settings is not None
        if settings.fcm is not None:
            return FcmSettings(
                service_account=ServiceAccount.model_validate_json(sender.service_account),
                base_url=settings.fcm.base_url,
                rate_per_second=settings.rate_per_second,
                connections=settings.connections,
            )
        if settings.apns is not None:
            app = settings.apns
            return ApnsSettings(
                key_id=app.key_id,
                team_id=app.team_id,
                topic=app.topic,
                signing_key=sender.signing_key,
                base_url=app.base_url,
                rate_per_second=settings.rate_per_second,
                verify=app.ca_file or True,
            )
        assert settings.webpush is not None  # a push sender has one of the three
        return WebPushSettings(
            vapid_private_key=self.vapid_private_key,
            subject=settings.webpush.subject,
            rate_per_second=settings.rate_per_second,
            connections=settings.connections,
        )

    def await_delivery(self, sender: sd.OpenedSender) -> timedelta | None:
        return None  # push services send no delivery reports: the service worker's `ack` is one


def provider_of(settings: sd.SenderSettings) -> str:
    """The subscription provider a push sender serves: `fcm`, `apns` or `webpush`."""
    return "fcm" if settings.fcm is not None else "apns" if settings.apns is not None else "webpush"
