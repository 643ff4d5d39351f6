"""Senders (an email sender's SMTP relay with its speed, retries and DKIM key; an SMS sender's SMPP
account or BulkSMS-style HTTP gateway with its "await delivery"; a push sender's Web Push contact,
FCM project or APNs app; a Telegram bot) and virtual senders (routing rules).

`PUT /senders/{id}` creates or replaces a sender; the relay, SMSC or gateway password, the DKIM
private key, an FCM service account, an APNs .p8 key and a bot token are write-only (sealed before
they are stored, never returned; left empty, the stored ones stay). `PUT /virtual-senders/{id}`
sets the ordered routing rules; the one named `default` routes email campaigns that name none,
`default_sms`, `default_push` and `default_telegram_bot` those of the other channels (a push
rule's domains name subscription providers: `fcm`, `apns`, `webpush`).

An SMS sender at an HTTP gateway (`bulksms`) gets its delivery reports by the gateway's webhook:
`POST /sms/reports/{sender_id}/{token}` (BulkSMS's status webhook, a JSON array of message
objects); the sender's `report_webhook` shows the path, whose token is derived from the sender
id with the account's signing key (never stored), so a forged call finds nothing (404). Each final
report is recorded on the message it names (`userSuppliedId`, else the provider's id).
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain import senders as sd
from herald.senders.bulksms import parse_reports
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


def _sender_json(call: Call, state: sd.SenderState) -> dict[str, Any]:
    assert state.settings is not None
    webhook = {"report_webhook": _webhook_path(call, state.sender_id)} if state.settings.bulksms else {}
    return {
        **webhook,
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
    return {**_sender_json(call, loaded.state), "version": loaded.version}


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


def _webhook_token(call: Call, sender_id: str) -> str:
    return call.herald.signer.compact("sms-reports", sender_id)[-22:]


def _webhook_path(call: Call, sender_id: str) -> str:
    return f"/sms/reports/{sender_id}/{_webhook_token(call, sender_id)}"


async def sms_reports(call: Call) -> Response:
    herald = call.herald
    sender_id = call.path_param("sender_id")
    given = call.path_param("token")
    if not hmac.compare_digest(given.encode(), _webhook_token(call, sender_id).encode()):
        raise HttpError(404, "no such webhook (the token is not this sender's)", "token")
    settings = herald.senders.sender(sender_id).state.settings
    if settings is None or settings.bulksms is None:
        raise HttpError(404, f"sender {sender_id!r} is no HTTP SMS gateway account", "sender_id")
    try:
        reports = parse_reports(call.body)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise HttpError(422, f"not a BulkSMS status webhook: {error}", "") from None
    herald.deliveries.record_reports(sender_id, reports, herald.projections.send_queue, herald.clock.now())
    return Response(status_code=200)


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
    Endpoint(
        "POST",
        "/sms/reports/{sender_id}/{token}",
        sms_reports,
        "An HTTP SMS gateway's delivery reports (BulkSMS's status webhook: a JSON array)",
        "senders",
        role="public",
        bytes_body="application/json",
    ),
]
