"""The browser cookie: which profile last opened or clicked a message in this browser.

The trackers set it on the tracking domain when an email is opened or
clicked; the web push subscribe call, made from the same browser to the same
domain, reads it to attach the push subscription to that profile (guide: a
profile that opened an email from this browser gets the subscription, no new
profile is created). It is a signed token (`infra/signing.py`, purpose
`browser`): a forged or edited cookie names nobody.

`SameSite=None; Secure` because the subscribe call comes from the customer's
site, a third party to the tracking domain; `HttpOnly`: no script reads it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from herald.infra.signing import TokenSigner

BROWSER_COOKIE = "herald_browser"
MAX_AGE = 365 * 24 * 3600


def remember_browser(response: Response, signer: TokenSigner, profile_id: str) -> None:
    """Set the cookie naming `profile_id` on `response`."""
    response.set_cookie(
        BROWSER_COOKIE,
        signer.sign("browser", {"pr": profile_id}),
        max_age=MAX_AGE,
        path="/",
        secure=True,
        httponly=True,
        samesite="none",
    )


def browser_profile(request: Request, signer: TokenSigner) -> str | None:
    """The profile a genuine browser cookie names, else None."""
    token = request.cookies.get(BROWSER_COOKIE)
    payload = signer.verify("browser", token) if token else None
    profile_id = payload.get("pr") if payload else None
    return profile_id if isinstance(profile_id, str) else None
