"""Signatures of pixel URLs, and the signed tokens that name a pixel's visitor.

A pixel URL (`/pixel?k=<key>&s=<sig>&redirect_url=…&goals=…&value=…`, the
guide's format) carries the pixel's key and `s`, the first 16 hex digits of
HMAC-SHA256 over the key and the redirect URL under the account's secret.
So a redirect link only ever sends people where the pixel's code was made to
send them (no open redirect), and a key cannot be used without its
signature. Goals and value are not signed: the JavaScript API exists so that
a page names them itself (`ak_pixel_push`), and a code made for one goal may
be reused for another on purpose.

Visitor tokens (`TokenSigner`, purposes `visitor` and `visitorlink`):
- the `herald_vid` cookie names an anonymous visitor id (`{"v": id}`);
- `{visitor}` in a message renders `{"m": message_id}`, which a site passes
  on as `herald_visitor=` in its links' query: the page's pixel sends it back
  (`hv=`), and the hit is the message's profile's.
"""

from __future__ import annotations

import hashlib
import hmac

from herald.infra.signing import TokenSigner

SIGNATURE_HEX = 16
LINK_PURPOSE = "visitorlink"


def link_token(signer: TokenSigner, message_id: str) -> str:
    """What `{visitor}` renders: the message, so a site's pixel can name the message's profile."""
    return signer.sign(LINK_PURPOSE, {"m": message_id})


class PixelSigner:
    def __init__(self, secret_key: str) -> None:
        self._key = secret_key.encode()
        self._tokens = TokenSigner(secret_key)

    def signature(self, pixel_key: str, redirect_url: str = "") -> str:
        """`s` for a pixel URL with this key and redirect URL."""
        message = f"pixel\x1f{pixel_key}\x1f{redirect_url}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:SIGNATURE_HEX]

    def verify(self, pixel_key: str, redirect_url: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(pixel_key, redirect_url), signature.lower())

    def visitor_cookie(self, visitor_id: str) -> str:
        return self._tokens.sign("visitor", {"v": visitor_id})

    def visitor_of(self, cookie: str) -> str | None:
        payload = self._tokens.verify("visitor", cookie)
        visitor = payload.get("v") if payload else None
        return visitor if isinstance(visitor, str) else None

    def message_of(self, token: str) -> str | None:
        """The message a `{visitor}` token names, if it is genuine."""
        payload = self._tokens.verify(LINK_PURPOSE, token)
        message = payload.get("m") if payload else None
        return message if isinstance(message, str) else None
