"""Response headers that keep browsers from doing more than a response means, on every route.

Pages on the tracking domain (`/t/...`: the web version, unsubscribe pages,
the subscription manager, click redirects) render HTML built from messages and
profiles, so they carry a Content-Security-Policy that runs no script at all:
an email's HTML needs images, styles, fonts and media from anywhere, and the
confirmation pages post their form to themselves, nothing more. They may not
be framed (no clickjacking of an unsubscribe button), and `no-referrer` keeps
the tracker URL, whose token names the recipient, from the sites a click leads
to. Every response, JSON included, is `nosniff`: a browser takes its media type
as declared.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACKER_PREFIX = "/t/"
TRACKER_CSP = (
    "default-src 'none'; img-src * data:; style-src * 'unsafe-inline'; font-src * data:; media-src *; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_EVERY_RESPONSE = [(b"x-content-type-options", b"nosniff")]
_TRACKER_RESPONSE = [
    *_EVERY_RESPONSE,
    (b"content-security-policy", TRACKER_CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response, errors and 404s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _TRACKER_RESPONSE if str(scope["path"]).startswith(TRACKER_PREFIX) else _EVERY_RESPONSE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
