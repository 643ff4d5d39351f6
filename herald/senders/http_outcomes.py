"""What an HTTP provider's answer means for one message: the rules every HTTP gateway shares.

- 2xx: accepted (the gateway reads the provider's id from the body).
- 429 and 5xx: temporary, with the provider's `Retry-After` (seconds or an
  HTTP date) when it gives one.
- 401 and 403: temporary: the account (credentials, credit, a revoked key) is
  refused, not the recipient, so the message waits for the operator to fix it
  instead of being lost; a gateway that knows a 403 names the recipient
  (Telegram's "bot was blocked by the user") says so itself.
- other 4xx: permanent.
- No answer: a refused connection is temporary; a timeout or a dropped
  connection after the request was written is temporary and `maybe_sent`.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

import httpx

from herald.senders.gateway import BeforeCommit, PermanentFailure, SendOutcome, TemporaryFailure
from herald.senders.rate import SendRate


async def post_committed(
    http: httpx.AsyncClient,
    url: str,
    rate: SendRate | None,
    before_commit: BeforeCommit | None,
    **request: Any,
) -> httpx.Response | TemporaryFailure:
    """Take a place in the rate, mark the commit, POST: the answer, or the outcome of getting none."""
    if rate is not None:
        await rate.acquire()
    if before_commit is not None:
        await before_commit()
    try:
        return await http.post(url, **request)
    except httpx.HTTPError as error:
        return no_answer(error)


def refusal(
    status: int, text: str, retry_after: str | None = None, address_gone: bool = False
) -> SendOutcome:
    """The outcome of a non-2xx answer."""
    if status == 429 or status >= 500 or status in (401, 403):
        return TemporaryFailure(status, text, retry_after_seconds=parse_retry_after(retry_after))
    return PermanentFailure(status, text, address_gone=address_gone)


def no_answer(error: Exception) -> TemporaryFailure:
    """The outcome of a request that got no HTTP answer."""
    sent = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | ConnectionRefusedError)
    return TemporaryFailure(0, f"no answer: {type(error).__name__} {error}".strip(), maybe_sent=sent)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now (RFC 9110: delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
