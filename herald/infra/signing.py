"""Signed tokens for tracking URLs: what a link, pixel or unsubscribe URL carries, tamper-proof.

A token is `<payload>.<mac>`: the payload is compact JSON in unpadded base64url,
the MAC the first 16 bytes of HMAC-SHA256 over the payload's text under the
account's secret key (128 bits: forging one is out of reach, and URLs stay
short). The payload names its purpose, so a token made for one action (an
open) is refused for another (an unsubscribe), and a click token carries the
destination it was made for, so the redirect can go nowhere else.

Only the canonical spelling of a token verifies: base64url without padding, no
other characters, and the unused low bits of the last character zero. A
lenient decoder maps up to 16 spellings of a MAC to the same bytes, so one
token would have many URLs (each a fresh key for caches, deduplication and
rate limits) — the decoded bytes are encoded again and must give back the text.

A short code (`/s/<code>` in an SMS) stands for one such token: ten
characters of base62 taken from an HMAC of the token under the same key
(about 59 bits), so a code cannot be made without the key nor found by
counting; the code → token map is kept from the message's own event
(`MessageLinksShortened`), and the token behind a code is verified again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Any

import orjson

MAC_BYTES = 16
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
SHORT_CODE_LENGTH = 10
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class TokenSigner:
    def __init__(self, secret_key: str) -> None:
        self._key = secret_key.encode()

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        """A token for `payload`, valid only for `purpose`."""
        body = _encode(orjson.dumps({"p": purpose, **payload}))
        return f"{body}.{_encode(self._mac(body))}"

    def verify(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The payload a genuine token for `purpose` carries; None for a forged, cut or foreign one."""
        body, _, mac = token.partition(".")
        try:
            given = _decode(mac)
            if not hmac.compare_digest(given, self._mac(body)):
                return None
            payload = orjson.loads(_decode(body))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(payload, dict) or payload.pop("p", None) != purpose:
            return None
        return payload

    def short_code(self, token: str) -> str:
        """The short code standing for `token` (deterministic: the same token, the same code)."""
        number = int.from_bytes(self._mac(f"short:{token}"), "big")
        digits = []
        for _ in range(SHORT_CODE_LENGTH):
            number, digit = divmod(number, 62)
            digits.append(_BASE62[digit])
        return "".join(digits)

    def compact(self, purpose: str, value: str) -> str:
        """`value` with a MAC for `purpose`, in URL-safe characters only (a Telegram `start` parameter
        takes at most 64 of [A-Za-z0-9_-]): `<value>-<22 characters>`."""
        return f"{value}-{_encode(self._mac(f'{purpose}:{value}'))}"

    def verify_compact(self, purpose: str, text: str) -> str | None:
        """The value a genuine `compact` token for `purpose` carries, else None."""
        value, separator, mac = text[:-23], text[-23:-22], text[-22:]  # the MAC is 22 characters
        if separator != "-":
            return None
        try:
            given = _decode(mac)
        except (binascii.Error, ValueError):
            return None
        if not value or not hmac.compare_digest(given, self._mac(f"{purpose}:{value}")):
            return None
        return value

    def _mac(self, body: str) -> bytes:
        # the one-shot C HMAC: a message's render makes several tokens, `hmac.new` costs ≈ 2× per token
        return hmac.digest(self._key, body.encode(), "sha256")[:MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    """The bytes of canonical unpadded base64url `text`; `ValueError` for any other spelling."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _encode(raw) != text:
        raise ValueError("not the canonical spelling")
    return raw
