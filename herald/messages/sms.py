"""The SMS channel's part of the sender worker: a queued SMS composed for its sender's SMSC.

An SMS goes out through the campaign's virtual sender (`messages/routing.py`) as the resource's
SMS Caller ID, or the routing rule's From override (an alpha sender per rule), to the
subscription's number; its links are already `/s/<code>` short links, kept with the attempt
before it leaves so a click resolves. The sender is an SMPP account (`senders/smpp.py`) whose
receipts settle the message: delivered when every part is, and undelivered when the sender's
"await delivery" passes without them; or an account at an HTTP gateway in BulkSMS's JSON v1
shape (`senders/bulksms.py`), chosen by the sender's settings, whose reports come to its webhook
(`api/routes/sms_reports.py`) and settle the message the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herald.domain import senders as sd
from herald.domain.messages import MessageQueued
from herald.domain.resources import SmsSettings
from herald.messages.rendering import RenderedSms
from herald.messages.routing import RoutedChannel, routed
from herald.messages.worker import Composed, Lookups
from herald.senders.bulksms import BulkSmsGateway, BulkSmsSettings
from herald.senders.gateway import ChannelGateway, Outbound, ReportHandler
from herald.senders.smpp import SmppGateway, SmppSettings


class SmsChannel(RoutedChannel):
    name = "sms"

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        body, message, rendered_from = self.rendered(queued, lookups, RenderedSms)
        _, sms = self.queued.channel_of(queued, lookups)
        assert isinstance(sms, SmsSettings)
        target, sender = routed(queued, lookups, self.senders)
        outbound = Outbound(
            queued.message_id, queued.contact, body.body, sender=target.from_name or sms.caller_id
        )
        return Composed(outbound, sender, rendered_from, message.short_links)

    def gateway(self, sender: sd.OpenedSender, on_report: ReportHandler) -> ChannelGateway:
        built = self.built_for(sender)
        if isinstance(built, BulkSmsSettings):
            return BulkSmsGateway(built)  # its reports come to the webhook, not to the gateway
        return SmppGateway(built, on_report)

    def built_for(self, sender: sd.OpenedSender) -> SmppSettings | BulkSmsSettings:
        settings = sender.state.settings
        assert settings is not None
        if settings.bulksms is not None:
            return BulkSmsSettings(
                base_url=settings.bulksms.base_url,
                username=settings.bulksms.username,
                password=sender.password,
                rate_per_second=settings.rate_per_second,
                connections=settings.connections,
            )
        assert settings.smpp is not None  # an SMS sender has its SMSC or its HTTP gateway
        account = settings.smpp
        return SmppSettings(
            host=account.host,
            port=account.port,
            system_id=account.system_id,
            password=sender.password,
            system_type=account.system_type,
            window=account.window,
            rate_per_second=settings.rate_per_second,
        )

    def await_delivery(self, sender: sd.OpenedSender) -> timedelta | None:
        settings = sender.state.settings
        assert settings is not None
        seconds = settings.await_delivery_seconds
        return timedelta(seconds=seconds) if seconds else None
