"""Senders (an email sender's SMTP relay with its speed, retries and DKIM key; an SMS sender's SMPP
account or BulkSMS-style HTTP gateway with its "await delivery"; a push sender's Web Push contact,
FCM project or APNs app; a Telegram bot) and virtual senders (routing rules).

`PUT /senders/{id}` creates or replaces a sender; the relay, SMSC or gateway password, the DKIM
private key, an FCM service account, an APNs .p8 key and a bot token are write-only (sealed before
they are stored, never returned; left empty, the stored ones stay). `PUT /virtual-senders/{id}`
sets the ordered routing rules; the one named `default` routes email campaigns that name none,
`default_sms`, `default_push` and `default_telegram_bot` those of the other channels (a push
rule's domains name subscription providers: `fcm`, `apns`, `webpush`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.api.endpoints import Call, Endpoint
from herald.domain import senders as sd
from herald.services.senders import PlainSenderSecrets

_Strict = ConfigDict(extra="forbid")


class SenderBody(sd.SenderSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")
    password: str = Field("", description="write-only: the relay login's (or SMSC account's) password")
    dkim_private_key: str = Field("", description="write-only: the PEM private key DKIM signs with")
    service_account: str = Field("", description="write-only: an FCM sender's service-account key (JSON)")
    signing_key: str = Field("", description="write-only: an APNs sender's .p8 signing key (PEM)")
    bot_token: str = Field("", description="write-only: a Telegram sender's bot token")


class VirtualSenderBody(BaseModel):
    model_config = _Strict
    name: str
    rules: tuple[sd.RouteRule, ...]


def _sender_json(state: sd.SenderState) -> dict[str, Any]:
    assert state.settings is not None
    return {
        "sender_id": state.sender_id,
        **state.settings.model_dump(mode="json"),
        "has_password": state.secrets.password is not None,
        "has_dkim_key": state.secrets.dkim_private_key is not None,
        "has_service_account": state.secrets.service_account is not None,
        "has_signing_key": state.secrets.signing_key is not None,
        "has_bot_token": state.secrets.bot_token is not None,
    }


async def put_sender(call: Call) -> dict[str, Any]:
    body: SenderBody = call.body
    sender_id = call.path_param("sender_id")
    settings = sd.SenderSettings.model_validate(body.model_dump(exclude=set(sd.SECRET_NAMES)))
    secrets = PlainSenderSecrets(**{name: getattr(body, name) for name in sd.SECRET_NAMES})
    exists = call.herald.aggregates.store.stream_version(sd.sender_stream(sender_id)) > 0
    return call.herald.senders.set_sender(sender_id, settings, secrets, call.context, not exists).to_json()


async def get_sender(call: Call) -> dict[str, Any]:
    loaded = call.herald.senders.sender(call.path_param("sender_id"))
    return {**_sender_json(loaded.state), "version": loaded.version}


async def put_virtual_sender(call: Call) -> dict[str, Any]:
    body: VirtualSenderBody = call.body
    outcome = call.herald.senders.set_virtual_sender(
        call.path_param("virtual_sender_id"), body.name, body.rules, call.context
    )
    return outcome.to_json()


async def get_virtual_sender(call: Call) -> dict[str, Any]:
    loaded = call.herald.senders.virtual_sender(call.path_param("virtual_sender_id"))
    state = loaded.state
    rules = [r.model_dump(mode="json") for r in state.rules]
    return {
        "virtual_sender_id": state.virtual_sender_id,
        "name": state.name,
        "rules": rules,
        "version": loaded.version,
    }


S = "/api/v1/senders/{sender_id}"
V = "/api/v1/virtual-senders/{virtual_sender_id}"
ENDPOINTS = [
    Endpoint(
        "PUT",
        S,
        put_sender,
        "Create or replace a sender (SMTP relay)",
        "senders",
        body=SenderBody,
        role="admin",
    ),
    Endpoint("GET", S, get_sender, "A sender (secrets are never shown)", "senders", role="admin"),
    Endpoint(
        "PUT",
        V,
        put_virtual_sender,
        "Set a virtual sender's routing rules",
        "senders",
        body=VirtualSenderBody,
        role="admin",
    ),
    Endpoint("GET", V, get_virtual_sender, "A virtual sender's routing rules", "senders", role="admin"),
]
