"""Telegram bot subscriptions: a start link per profile, and the Bot API webhook that receives `/start`.

A resource's `telegram_bot` channel names the bot (`options.bot_username`;
the bot token is a secret and stays out of the resource's events). A user
who opens `https://t.me/<bot>?start=<code>` and presses Start makes Telegram
post an update with the text `/start <code>` to the webhook; the code names
the profile it was made for (`TokenSigner.compact`: 47 URL-safe characters,
within Telegram's 64), so that profile is subscribed with the user's chat id.
A plain `/start` (no code, or a forged one) subscribes a new profile, named
from the Telegram user, in the resource's first database.

The webhook is `POST /telegram/{resource_token}/updates`; Telegram sends the
secret given to `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`, and an
update without the right one is refused (403). Every other update is
answered 200 and ignored (Telegram resends an update it got no 200 for).
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain.resources import CustomChannelSettings, ResourceState
from herald.domain.subscriptions import TELEGRAM_BOT
from herald.messages.rendering import tracking_base

_SECRET_HEADER = "x-telegram-bot-api-secret-token"


class StartLinkQuery(BaseModel):
    profile_id: str | None = Field(None, description="the profile the link subscribes; none: a new one")


def _bot(resource: ResourceState, path: str) -> str:
    settings = resource.channels.get(TELEGRAM_BOT)
    username = settings.options.get("bot_username") if isinstance(settings, CustomChannelSettings) else None
    if not isinstance(username, str) or not username:
        raise HttpError(422, "the resource has no telegram_bot channel with its bot_username", path)
    return username


def webhook_secret(call: Call, resource_id: str) -> str:
    """The `secret_token` to give `setWebhook` for the resource's bot (derived, never stored)."""
    return call.herald.signer.compact("telegram-webhook", resource_id)[-22:]


async def start_link(call: Call) -> dict[str, Any]:
    resource = call.herald.catalog.resource(call.path_param("resource_id"))
    bot = _bot(resource, "resource_id")
    query: StartLinkQuery = call.query
    url = f"https://t.me/{bot}"
    if query.profile_id:
        if not call.herald.profiles.state(query.profile_id).exists:
            raise HttpError(404, f"no profile {query.profile_id!r}", "profile_id")
        url += f"?start={call.herald.signer.compact('telegram', query.profile_id)}"
    return {
        "url": url,
        "webhook_url": f"{tracking_base(resource)}/telegram/{resource.token}/updates",
        "secret_token": webhook_secret(call, resource.resource_id),
    }


async def updates(call: Call) -> Response:
    herald = call.herald
    resource = herald.catalog.resource_by_token(call.path_param("resource_token"))
    _bot(resource, "resource_token")
    given = call.request.headers.get(_SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), webhook_secret(call, resource.resource_id).encode()):
        raise HttpError(403, "not Telegram: the webhook's secret token is wrong", _SECRET_HEADER)
    update = call.body  # JSON, read under the request limits
    message = update.get("message") if isinstance(update, dict) else None
    text = str(message.get("text") or "") if isinstance(message, dict) else ""
    if not isinstance(message, dict) or not (text == "/start" or text.startswith("/start ")):
        return Response(status_code=200)
    chat, sender = message.get("chat"), message.get("from") or {}
    if not (isinstance(chat, dict) and isinstance(chat.get("id"), int | str) and isinstance(sender, dict)):
        raise HttpError(422, "a /start update names its chat (chat.id) and its sender", "message.chat")
    if chat.get("type", "private") != "private":
        return Response(status_code=200)  # a bot's subscriber is a person, not a group
    code = text.removeprefix("/start").strip()
    profile_id = herald.signer.verify_compact("telegram", code) if code else None
    names = {"_fname": sender.get("first_name"), "_lname": sender.get("last_name")}
    herald.device_subscriptions.subscribe(
        resource,
        str(chat["id"]),
        None,
        {},
        {k: v for k, v in names.items() if isinstance(v, str) and v and not profile_id},
        {},
        profile_id,
        None,
        call.context,
    )
    return Response(status_code=200)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/resources/{resource_id}/telegram/start-link",
        start_link,
        "A t.me start link that subscribes a profile to the resource's Telegram bot; the webhook to set",
        "telegram",
        query=StartLinkQuery,
        role="read",
    ),
    Endpoint(
        "POST",
        "/telegram/{resource_token}/updates",
        updates,
        "The Telegram Bot API webhook: /start subscribes the chat",
        "telegram",
        role="public",
        raw_body=True,
    ),
]
