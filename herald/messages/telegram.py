"""The Telegram bot channel's part of the sender worker: a queued message composed for the Bot API.

A message goes out through the campaign's virtual sender (`messages/routing.py`; the default is
`default_telegram_bot`) to a Telegram sender: a bot, its token sealed with the sender. The address
is the subscription's chat id; the text (plain, HTML or MarkdownV2, as the template says) and its
URL buttons carry click-tracked links. The Bot API's answer is the delivery (it sends no reports):
accepted is delivered. A chat that blocked the bot, a deactivated user or a chat not found is a
permanent failure whose subscription no longer exists (the worker's `address_gone`), as a push's
unregistered token is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herald.domain import senders as sd
from herald.domain.messages import MessageQueued
from herald.messages.rendering import RenderedTelegram
from herald.messages.routing import RoutedChannel, routed
from herald.messages.worker import Composed, Lookups
from herald.senders.gateway import ChannelGateway, Outbound, ReportHandler
from herald.senders.telegram import TelegramGateway, TelegramSettings


class TelegramChannel(RoutedChannel):
    name = "telegram_bot"

    def compose(self, queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        body, _, rendered_from = self.rendered(queued, lookups, RenderedTelegram)
        self.queued.channel_of(queued, lookups)  # the resource still has its bot channel
        _, sender = routed(queued, lookups, self.senders)
        outbound = Outbound(
            queued.message_id,
            queued.contact,
            body.text,
            markup=body.parse_mode,
            buttons=body.buttons,
            no_link_preview=body.disable_link_preview,
        )
        return Composed(outbound, sender, rendered_from)

    def gateway(self, sender: sd.OpenedSender, on_report: ReportHandler) -> ChannelGateway:
        return TelegramGateway(self.built_for(sender))

    def built_for(self, sender: sd.OpenedSender) -> TelegramSettings:
        settings = sender.state.settings
        assert settings is not None and settings.telegram is not None  # a Telegram sender has its bot
        return TelegramSettings(
            bot_token=sender.bot_token,
            base_url=settings.telegram.base_url,
            rate_per_second=settings.rate_per_second,
        )

    def await_delivery(self, sender: sd.OpenedSender) -> timedelta | None:
        return None  # the Bot API's answer is the delivery: Telegram sends no reports
