"""Telegram messages through the Bot API's `sendMessage`, the first messenger channel.

`POST {base}/bot<token>/sendMessage` with `{"chat_id", "text"}` (and the message's
`parse_mode`, `link_preview_options` and URL buttons as an `inline_keyboard`); the answer
is `{"ok": true, "result": {"message_id": …}}` or `{"ok": false,
"error_code", "description", "parameters": {"retry_after"}}`. The address is
the subscription's chat id (the user's id once they started the bot).

Decisions where the task is silent:
- "bot was blocked by the user", "user is deactivated" (403) and "chat not
  found" (400) mean the chat cannot be reached again: permanent, address gone.
  Any other 403 and a 401 (a revoked token) are the bot's, not the chat's:
  temporary. 429 waits `parameters.retry_after` seconds.
- The Bot API has no idempotency key, so exactly-once rests on the worker's
  commit mark alone (the request is the commit).
- The default rate is Telegram's broadcast limit for a bot, 30 messages per
  second; text longer than the API's 4,096 characters is refused here.
- The bot token is a secret: it is in the URL path, so neither the URL nor
  the settings' repr ever reach a log.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from herald.senders.gateway import (
    Accepted,
    BeforeCommit,
    Outbound,
    PermanentFailure,
    SendOutcome,
    TemporaryFailure,
)
from herald.senders.http_outcomes import post_committed, refusal
from herald.senders.rate import SendRate

MAX_TEXT = 4096
_GONE = ("bot was blocked by the user", "user is deactivated", "chat not found", "bot was kicked")


class TelegramSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bot_token: str = Field(min_length=1, repr=False)
    base_url: str = "https://api.telegram.org"
    rate_per_second: float | None = Field(30.0, gt=0)
    timeout: float = Field(10.0, gt=0)
    parse_mode: str = Field("", description="HTML or MarkdownV2; empty: plain text")
    disable_link_preview: bool = False


class TelegramGateway:
    channel = "telegram_bot"
    reports_delivery = False

    def __init__(self, settings: TelegramSettings) -> None:
        self.settings = settings
        self.rate = SendRate(settings.rate_per_second) if settings.rate_per_second else None
        self._http = httpx.AsyncClient(
            base_url=f"{settings.base_url.rstrip('/')}/bot{settings.bot_token}/", timeout=settings.timeout
        )

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        if not message.text.strip():
            raise ValueError("a Telegram message needs a text")
        if len(message.text) > MAX_TEXT:
            return PermanentFailure(
                400, f"the text is {len(message.text)} characters; Telegram takes {MAX_TEXT}"
            )
        body: dict[str, Any] = {"chat_id": message.address, "text": message.text}
        parse_mode = message.markup or self.settings.parse_mode
        if parse_mode:
            body["parse_mode"] = parse_mode
        if message.no_link_preview or self.settings.disable_link_preview:
            body["link_preview_options"] = {"is_disabled": True}
        if message.buttons:
            rows = [[{"text": label, "url": url}] for label, url in message.buttons]
            body["reply_markup"] = {"inline_keyboard": rows}
        response = await post_committed(
            self._http,
            "sendMessage",
            self.rate,
            before_commit,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        if isinstance(response, TemporaryFailure):
            return response
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 200 and answer.get("ok"):
            return Accepted((str(answer["result"]["message_id"]),), 200, "sent")
        description = str(answer.get("description") or response.text[:300])
        retry_after = (answer.get("parameters") or {}).get("retry_after")
        gone = any(marker in description.lower() for marker in _GONE)
        if gone:
            return PermanentFailure(response.status_code, description, address_gone=True)
        return refusal(response.status_code, description, str(retry_after) if retry_after else None)

    async def close(self) -> None:
        await self._http.aclose()
