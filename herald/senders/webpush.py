"""Web push to browsers (RFC 8030 delivery, RFC 8291 aes128gcm encryption, RFC 8292 VAPID), with pywebpush.

The address is the browser's subscription as its `PushManager` gave it:
`{"endpoint": …, "keys": {"p256dh": …, "auth": …}}` (JSON). pywebpush
encrypts the payload for that browser (a fresh ECDH key and salt per
message) and posts it to the endpoint over a shared aiohttp session; the
VAPID `Authorization: vapid t=…, k=…` header (py_vapid, ES256) is made once
per push service origin and reused until an hour before its 12-hour expiry.

Decisions where the task is silent:
- The payload is the JSON the served service worker shows: title, body,
  icon, url, our message id and `hub_link` (ack, open).
- `Topic` is derived from the message id (RFC 8030 §5.4: a push service keeps
  only the newest undelivered message of one topic), so a resend replaces a
  first copy still waiting instead of showing twice; TTL defaults to 24 h.
- 201 (or 200/202) accepted, its `Location` the provider id; 404 and 410 mean
  the subscription expired or was revoked: permanent, address gone; 413
  permanent; 429 and 5xx temporary with Retry-After; 401/403 (the VAPID key)
  temporary.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pydantic import BaseModel, ConfigDict, Field
from pywebpush import WebPusher

from herald.senders.gateway import (
    Accepted,
    BeforeCommit,
    Outbound,
    PermanentFailure,
    SendOutcome,
    TemporaryFailure,
)
from herald.senders.http_outcomes import refusal
from herald.senders.rate import SendRate

DEFAULT_TTL = 24 * 3600
VAPID_LIFETIME = 12 * 3600


class WebPushSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vapid_private_key: str = Field(min_length=1, repr=False, description="PEM, or the raw key in base64url")
    subject: str = Field(min_length=1, description="VAPID `sub`: mailto: or https: contact of the sender")
    rate_per_second: float | None = Field(None, gt=0)
    timeout: float = Field(10.0, gt=0)
    connections: int = Field(64, ge=1, le=1024)


class WebPushGateway:
    channel = "push"
    reports_delivery = False

    def __init__(self, settings: WebPushSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.rate = SendRate(settings.rate_per_second) if settings.rate_per_second else None
        self._clock = clock
        key = settings.vapid_private_key.strip()
        self._vapid = Vapid.from_pem(key.encode()) if key.startswith("-----") else Vapid.from_string(key)
        self._headers: dict[str, tuple[float, dict[str, str]]] = {}  # origin → (expiry, VAPID headers)
        self._session: aiohttp.ClientSession | None = None

    @property
    def public_key(self) -> str:
        """The application server key a browser subscribes with (`applicationServerKey`, base64url)."""
        return vapid_public_key(self._vapid)

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        subscription = parse_subscription(message.address)
        payload = orjson.dumps(webpush_payload(message))
        headers = {
            **self._vapid_headers(subscription["endpoint"]),
            "Topic": topic(message.message_id),
            "Urgency": "normal",
        }
        if self.rate is not None:
            await self.rate.acquire()
        session = self._session or aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.connections)
        )
        self._session = session
        pusher = WebPusher(subscription, aiohttp_session=session)
        if before_commit is not None:
            await before_commit()
        try:
            response = await pusher.send_async(
                payload,
                headers,
                ttl=message.ttl_seconds or DEFAULT_TTL,
                content_encoding="aes128gcm",
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            )
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as error:
            return TemporaryFailure(0, f"no answer: {error}")
        except (aiohttp.ClientError, TimeoutError) as error:
            return TemporaryFailure(0, f"no answer: {type(error).__name__} {error}".strip(), maybe_sent=True)
        assert not isinstance(response, str)  # only curl=True makes a string
        text = (await response.text())[:300]
        if response.status in (200, 201, 202):
            return Accepted((response.headers.get("Location", ""),), response.status, "accepted")
        if response.status in (404, 410):
            return PermanentFailure(response.status, text or "the subscription is gone", address_gone=True)
        return refusal(response.status, text, response.headers.get("Retry-After"))

    def _vapid_headers(self, endpoint: str) -> dict[str, str]:
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        now = self._clock()
        known = self._headers.get(origin)
        if known is None or now > known[0] - 3600:
            expires = int(now) + VAPID_LIFETIME
            signed = self._vapid.sign({"aud": origin, "exp": expires, "sub": self.settings.subject})
            known = (float(expires), {str(k): str(v) for k, v in signed.items()})
            self._headers[origin] = known
        return known[1]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def parse_subscription(address: str) -> dict[str, Any]:
    """A browser subscription's JSON as pywebpush takes it; ValueError when it is not one."""
    try:
        subscription = orjson.loads(address)
    except orjson.JSONDecodeError:
        raise ValueError("a web push address is the browser subscription's JSON") from None
    keys = subscription.get("keys") if isinstance(subscription, dict) else None
    if (
        not isinstance(keys, dict)
        or not subscription.get("endpoint")
        or not keys.get("p256dh")
        or not keys.get("auth")
    ):
        raise ValueError("a web push subscription needs an endpoint and its p256dh and auth keys")
    return {
        "endpoint": str(subscription["endpoint"]),
        "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]},
    }


def webpush_payload(message: Outbound) -> dict[str, Any]:
    payload: dict[str, Any] = {"title": message.title, "body": message.text, "message_id": message.message_id}
    if message.icon:
        payload["icon"] = message.icon
    if message.click_url:
        payload["url"] = message.click_url
    links = {k: v for k, v in message.data.items() if k in ("ack", "open")}
    if links:
        payload["hub_link"] = links
    return payload


def topic(message_id: str) -> str:
    """A `Topic` header for the message: 32 characters of the URL-safe alphabet, as RFC 8030 allows."""
    return base64.urlsafe_b64encode(hashlib.sha256(message_id.encode()).digest()).decode()[:32]


def vapid_public_key(vapid: Vapid) -> str:
    """The public half of a VAPID key as browsers take it (uncompressed P-256 point, base64url)."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_key_of(private_pem: str) -> str:
    """The `applicationServerKey` for a VAPID private key in PEM."""
    return vapid_public_key(Vapid.from_pem(private_pem.encode()))


def generate_vapid_key() -> str:
    """A new VAPID private key (P-256) in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
