"""Calls out of Herald for the scenario webhook node ("Обратная связь"), under the remote content policy.

One call is a GET with the parameters in the query string, or a POST with them as a JSON object.
Each call has the node's timeout (DNS, connect, TLS, request and answer together), redirects are
not followed (a POST is not replayed elsewhere), the start of the answer's body is read and kept (up
to `KEPT_BODY` characters), and every address connected to passes the policy's check
(`remote_content.GuardedTransport`: no loopback, private or link-local address unless its network
is allowed). `X-Herald-Request-Id` is the same on every attempt of one step, so a receiver can
drop a repeat.

What counts as worth retrying: a timeout, a connection failure, a 5xx answer, 429. A refused
address, a bad URL, any other answer is final.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, replace

import httpx

from herald.infra.remote_content import RemoteContentPolicy, check_url, failure, guarded_client

KEPT_BODY = 4_096
USER_AGENT_SUFFIX = " (scenario webhook)"


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    method: str
    url: str
    params: Sequence[tuple[str, str]]
    timeout_seconds: float
    request_id: str


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int | None
    body: str
    error: str | None
    retryable: bool
    duration_ms: int


class WebhookCaller:
    """Makes webhook calls under a policy; thread-safe, one per process."""

    def __init__(self, policy: RemoteContentPolicy, transport: httpx.BaseTransport | None = None) -> None:
        self._policy = policy
        self._client = guarded_client(
            policy, transport, {"Accept": "application/json, */*;q=0.5"}, USER_AGENT_SUFFIX
        )

    def call(self, request: WebhookRequest) -> WebhookAnswer:
        started = time.monotonic()
        try:
            url = httpx.URL(request.url)
        except httpx.InvalidURL as error:
            return _failed(f"not a valid URL ({error})", False, started)
        refused = check_url(url, self._policy)
        if refused is not None:
            return _failed(refused, False, started)
        policy = replace(self._policy, timeout_seconds=request.timeout_seconds)
        try:
            return self._send(url, request, started)
        except Exception as error:
            known = failure(error, policy)
            if known is None:
                raise
            return _failed(known[0], known[1], started)

    def _send(self, url: httpx.URL, request: WebhookRequest, started: float) -> WebhookAnswer:
        params: list[tuple[str, str | int | float | bool | None]] = list(request.params)
        built = self._client.build_request(
            request.method,
            url.copy_merge_params(params) if request.method == "GET" else url,
            json=dict(params) if request.method == "POST" else None,
            headers={"X-Herald-Request-Id": request.request_id},
            timeout=request.timeout_seconds,
        )
        deadline = started + request.timeout_seconds
        response = self._client.send(built, stream=True)
        with closing(response):
            body = _read(response, deadline)
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")[:KEPT_BODY]
        took = _millis(started)
        if response.is_success:
            return WebhookAnswer(response.status_code, text, None, False, took)
        retryable = response.status_code >= 500 or response.status_code == 429
        return WebhookAnswer(response.status_code, text, f"HTTP {response.status_code}", retryable, took)

    def close(self) -> None:
        self._client.close()


def _read(response: httpx.Response, deadline: float) -> bytes:
    """The start of the body (what is kept), by the call's deadline; the rest is not read."""
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer came too slowly")
        chunks.append(chunk)
        total += len(chunk)
        if total >= 4 * KEPT_BODY:  # enough for the characters kept, whatever their encoding
            break
    return b"".join(chunks)


def _failed(reason: str, retryable: bool, started: float) -> WebhookAnswer:
    return WebhookAnswer(None, "", reason, retryable, _millis(started))


def _millis(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
