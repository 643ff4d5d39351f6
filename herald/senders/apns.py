"""iOS push through Apple's APNs provider API: HTTP/2, token-based authentication (ES256 JWT).

`POST {base}/3/device/<device token>` over one HTTP/2 connection (many
streams at once), with `authorization: bearer <JWT>` (header `alg` ES256,
`kid` the key id; claims `iss` the team id, `iat`), `apns-topic` (the app's
bundle id), `apns-push-type: alert`, `apns-id`, `apns-priority`,
`apns-expiration` and `apns-collapse-id`. A 200 answers with the `apns-id`;
a refusal with `{"reason": …}`.

Decisions where the task is silent:
- The provider token is made once and reused for 50 minutes (Apple refuses
  tokens older than an hour and asks not to make them more than once every
  20 minutes); ExpiredProviderToken makes a new one and is temporary.
- `apns-id` is our message id when it is a UUID, else a UUID derived from it,
  so a resend carries the same id; `apns-collapse-id` is the message id too,
  so a duplicate that reaches the device replaces the first.
- 410 Unregistered and 400 BadDeviceToken / DeviceTokenNotForTopic mean the
  token is gone: permanent, address gone. 429 and 5xx temporary; 403 about
  the provider token temporary (the operator fixes the key); other 4xx
  permanent.
- The payload: `aps.alert` title and body, `mutable-content` (so an app
  extension can fetch the icon), the click URL, the deep link and `hub_link`
  with the `ack` and `open` tracking links the app GETs.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
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

TOKEN_LIFETIME = 50 * 60
MAX_PAYLOAD = 4096
_GONE = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})
_STALE_TOKEN = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
_ID_NAMESPACE = uuid.UUID("6f1f4b8e-3c0b-4b7e-9a59-3a1b0e6c2d41")


class ApnsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(min_length=1, description="kid: the signing key's id")
    team_id: str = Field(min_length=1, description="iss: the developer team id")
    topic: str = Field(min_length=1, description="apns-topic: the app's bundle id")
    signing_key: str = Field(min_length=1, repr=False, description="the .p8 key in PEM")
    base_url: str = "https://api.push.apple.com"
    rate_per_second: float | None = Field(None, gt=0)
    timeout: float = Field(10.0, gt=0)
    verify: str | bool = Field(True, description="TLS verification: True, or a CA bundle's path")


class ApnsGateway:
    channel = "push"
    reports_delivery = False

    def __init__(self, settings: ApnsSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.rate = SendRate(settings.rate_per_second) if settings.rate_per_second else None
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            http2=True,
            timeout=settings.timeout,
            verify=ssl.create_default_context(cafile=settings.verify)
            if isinstance(settings.verify, str)
            else settings.verify,
        )
        self._token = ""
        self._token_made = 0.0

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        payload = orjson.dumps(apns_payload(message))
        if len(payload) > MAX_PAYLOAD:
            return PermanentFailure(413, f"the payload is {len(payload)} bytes; APNs takes {MAX_PAYLOAD}")
        headers = {
            "authorization": f"bearer {self._provider_token()}",
            "apns-topic": self.settings.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-id": apns_id(message.message_id),
            "apns-collapse-id": message.message_id[:64],
        }
        if message.ttl_seconds:
            headers["apns-expiration"] = str(int(self._clock()) + message.ttl_seconds)
        url = f"/3/device/{message.address}"
        response = await post_committed(
            self._http, url, self.rate, before_commit, content=payload, headers=headers
        )
        if isinstance(response, TemporaryFailure):
            return response
        if response.status_code == 200:
            return Accepted((response.headers.get("apns-id", headers["apns-id"]),), 200, "accepted")
        reason = _reason(response)
        if reason in _STALE_TOKEN:
            self._token = ""
        if response.status_code == 410 or reason in _GONE:
            return PermanentFailure(response.status_code, reason, address_gone=True)
        if reason in _STALE_TOKEN:
            return refusal(401, reason)
        return refusal(response.status_code, reason, response.headers.get("Retry-After"))

    def _provider_token(self) -> str:
        now = self._clock()
        if not self._token or now - self._token_made >= TOKEN_LIFETIME:
            self._token = jwt.encode(
                {"iss": self.settings.team_id, "iat": int(now)},
                self.settings.signing_key,
                algorithm="ES256",
                headers={"kid": self.settings.key_id},
            )
            self._token_made = now
        return self._token

    async def close(self) -> None:
        await self._http.aclose()


def apns_id(message_id: str) -> str:
    """The `apns-id` of a message: its id when that is a UUID, else a UUID derived from it."""
    try:
        return str(uuid.UUID(message_id)).upper()
    except ValueError:
        return str(uuid.uuid5(_ID_NAMESPACE, message_id)).upper()


def apns_payload(message: Outbound) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "aps": {
            "alert": {"title": message.title, "body": message.text},
            "sound": "default",
            "mutable-content": 1,
        },
        "message_id": message.message_id,
    }
    links = {k: v for k, v in message.data.items() if k in ("ack", "open")}
    if links:
        payload["hub_link"] = links
    extra = {k: v for k, v in message.data.items() if k not in links}
    payload.update(extra)
    if message.click_url:
        payload["url"] = message.click_url
    if message.deep_link:
        payload["deep_link"] = message.deep_link
    if message.icon:
        payload["icon"] = message.icon
    return payload


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", response.status_code))
    except ValueError:
        return str(response.status_code)
