"""Mobile (and FCM web) push through Firebase Cloud Messaging's HTTP v1 API, with service-account OAuth.

A service account (the JSON key Firebase gives: `project_id`, `client_email`,
`private_key_id`, `private_key`, `token_uri`) signs a JWT assertion (RS256,
scope `firebase.messaging`); the token endpoint exchanges it for a bearer
token (OAuth 2.0 JWT bearer grant, RFC 7523), kept until a minute before it
expires; each message is `POST {base}/v1/projects/<id>/messages:send`.

Decisions where the task is silent:
- The payload: `notification` (title, body, image), `data` (every custom
  value as a string, with the `ack` and `open` tracking links and our
  message id: the app GETs `ack` on receipt and `open` on tap), Android's
  click action and TTL, and the deep link for the app to open.
- The message id also goes as Android's `collapse_key` and APNs'
  `apns-collapse-id`, so a resend that reaches the device replaces the first
  instead of showing twice; FCM itself has no idempotency key.
- Error codes (the `FcmError` detail): UNREGISTERED (404) and
  SENDER_ID_MISMATCH (403) mean the token is not ours to reach any more:
  permanent, address gone. INVALID_ARGUMENT (400) permanent. QUOTA_EXCEEDED
  (429), UNAVAILABLE (503), INTERNAL (500) temporary with Retry-After. A 401
  drops the cached bearer token and is temporary.
"""

from __future__ import annotations

import time
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

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_GONE = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


class ServiceAccount(BaseModel):
    """The fields of a Google service-account key file that the OAuth exchange needs."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    project_id: str
    client_email: str
    private_key_id: str
    private_key: str = Field(repr=False)
    token_uri: str = "https://oauth2.googleapis.com/token"


class FcmSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    service_account: ServiceAccount
    base_url: str = "https://fcm.googleapis.com"
    rate_per_second: float | None = Field(None, gt=0)
    timeout: float = Field(10.0, gt=0)
    connections: int = Field(32, ge=1, le=256)


class FcmGateway:
    channel = "push"
    reports_delivery = False

    def __init__(self, settings: FcmSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.rate = SendRate(settings.rate_per_second) if settings.rate_per_second else None
        self._clock = clock
        self._http = httpx.AsyncClient(
            timeout=settings.timeout, limits=httpx.Limits(max_connections=settings.connections)
        )
        self._token = ""
        self._token_expires = 0.0
        account = settings.service_account
        self._send_url = f"{settings.base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        body = orjson.dumps({"message": fcm_message(message)})
        try:
            token = await self._bearer()
        except httpx.HTTPError as error:
            return TemporaryFailure(0, f"no access token: {type(error).__name__} {error}".strip())
        except _TokenRefused as refused:
            return TemporaryFailure(
                refused.status, f"the token endpoint refused the service account: {refused}"
            )
        response = await post_committed(
            self._http,
            self._send_url,
            self.rate,
            before_commit,
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if isinstance(response, TemporaryFailure):
            return response
        if response.status_code == 200:
            return Accepted((str(response.json().get("name", "")),), 200, "accepted")
        if response.status_code == 401:
            self._token = ""
        code, text = _error(response)
        if code in _GONE:
            return PermanentFailure(response.status_code, f"{code}: {text}", address_gone=True)
        return refusal(response.status_code, f"{code}: {text}", response.headers.get("Retry-After"))

    async def _bearer(self) -> str:
        now = self._clock()
        if self._token and now < self._token_expires - 60:
            return self._token
        account = self.settings.service_account
        assertion = jwt.encode(
            {
                "iss": account.client_email,
                "scope": SCOPE,
                "aud": account.token_uri,
                "iat": int(now),
                "exp": int(now) + 3600,
            },
            account.private_key,
            algorithm="RS256",
            headers={"kid": account.private_key_id},
        )
        response = await self._http.post(
            account.token_uri,
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
        if response.status_code != 200:
            raise _TokenRefused(response.status_code, response.text[:300])
        answer = response.json()
        self._token = str(answer["access_token"])
        self._token_expires = now + float(answer.get("expires_in", 3600))
        return self._token

    async def close(self) -> None:
        await self._http.aclose()


class _TokenRefused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def fcm_message(message: Outbound) -> dict[str, Any]:
    """The v1 `message` object for one device token."""
    notification = {"title": message.title, "body": message.text}
    if message.icon:
        notification["image"] = message.icon
    data = {**message.data, "message_id": message.message_id}
    if message.click_url:
        data["url"] = message.click_url
    if message.deep_link:
        data["deep_link"] = message.deep_link
    android: dict[str, Any] = {"collapse_key": message.message_id[:64], "priority": "high"}
    if message.ttl_seconds:
        android["ttl"] = f"{message.ttl_seconds}s"
    if message.deep_link or message.click_url:
        android["notification"] = {"click_action": message.deep_link or message.click_url}
    return {
        "token": message.address,
        "notification": notification,
        "data": data,
        "android": android,
        "apns": {"headers": {"apns-collapse-id": message.message_id[:64]}},
    }


def _error(response: httpx.Response) -> tuple[str, str]:
    """FCM's error code (the FcmError detail, else the status) and message."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return str(response.status_code), response.text[:300]
    for detail in error.get("details") or ():
        if str(detail.get("@type", "")).endswith("FcmError") and detail.get("errorCode"):
            return str(detail["errorCode"]), str(error.get("message", ""))
    return str(error.get("status", response.status_code)), str(error.get("message", ""))
