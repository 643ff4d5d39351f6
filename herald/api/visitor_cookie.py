"""The pixel's visitor cookie (`herald_vid`): the anonymous visitor a browser's pixel hits come from.

It names a visitor id, not a profile: the browser cookie (`api/browser_cookie.py`,
set when an email is opened or clicked) names the profile, and a pixel hit
with both links the two, so the visitor's anonymous goals go to the profile.

Signed (`infra/pixel_signing.py`), a year long, `HttpOnly`; over HTTPS it is
`SameSite=None; Secure`, so a pixel on a customer's site can send it with its
hits, and `SameSite=Lax` otherwise (browsers refuse `None` without `Secure`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from herald.infra.pixel_signing import PixelSigner

COOKIE = "herald_vid"
COOKIE_SECONDS = 365 * 24 * 3600


def visitor_of(request: Request, signer: PixelSigner) -> str | None:
    """The visitor the request's cookie names, if the cookie is genuine."""
    return signer.visitor_of(request.cookies.get(COOKIE, ""))


def remember(request: Request, response: Response, signer: PixelSigner, visitor_id: str) -> None:
    """Set the visitor cookie on a tracker's answer."""
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE,
        signer.visitor_cookie(visitor_id),
        max_age=COOKIE_SECONDS,
        httponly=True,
        secure=secure,
        samesite="none" if secure else "lax",
    )
