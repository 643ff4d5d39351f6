"""Inbound mail over HTTP: an MTA or a mail service posts a raw message (a bounce, a complaint, a reply).

`POST /api/v1/inbound` takes the message's bytes as the body (message/rfc822;
at most 10 MiB) and answers what Herald did with it: a complaint or a bounce
recorded on its message, or the mail kept with the reason it was not acted on.
"""

from __future__ import annotations

from typing import Any

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.api.request_body import CURL_DEFAULT

MAX_INBOUND_BYTES = 10 * 1024 * 1024


async def receive(call: Call) -> dict[str, Any]:
    raw: bytes = call.body
    if not raw:
        raise HttpError(422, "the body is the raw message (message/rfc822)", "body")
    recipients = call.request.headers.get("x-envelope-to", "")
    return call.herald.inbound.receive(raw, [r.strip() for r in recipients.split(",") if r.strip()])


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/inbound",
        receive,
        "Take a bounce, complaint (ARF) or reply as raw mail",
        "inbound",
        bytes_body="message/rfc822",
        accepts=("text/plain", "application/octet-stream", CURL_DEFAULT),
        max_body=MAX_INBOUND_BYTES,
    ),
]
