"""Asks a loyalty program's external service for promo codes: the guide's JSON request and answer.

Request (`POST` to the program's URL, `Content-Type: application/json`), the
guide's fields verbatim:

    {"account_id": …, "loyalty_id": …, "loyalty_name": …, "loyalty_shortcode": …,
     "campaign_id": …, "campaign_name": …, "workflow_id": …, "workflow_name": …,
     "count": …, "is_test": true|false, "fields": {"<name>": "<value>"}}

The campaign (or scenario: `workflow_*`) fields are filled when one asks for
the codes, empty strings otherwise; `is_test` asks for fake codes to preview.

Answer, either form: `{"codes": ["…", …]}` or
`{"codes": [{"code": "…", "fields": {"<name>": "<value>"}}, …]}`.

The call runs under the remote content policy (`infra/remote_content.py`: one
deadline per attempt, a body cap, no private, loopback or metadata address
unless the policy allows its network, checked on the address connected to;
no redirects followed, since a POST is not replayed elsewhere).

The guide: "if the service does not answer or answers with an HTTP error, the
system makes a few more attempts and then returns an error". Herald makes
`attempts` tries (3) with a doubling pause between them (0.5 s, 1 s) when the
service cannot be reached, times out, or answers 5xx or 429; a 4xx answer and
an answer that is not the contract's JSON fail at once, since asking again
gets the same. Every failure is a `GeneratorFailed` with a reason a user can
act on, and no code of a failed request is issued.

Decisions where the guide is silent: a code is 1-200 characters of text
without control characters; an answer with more codes than asked for, a code
repeated within it, or a code that is not text is refused whole ("garbage");
fewer codes than asked for are accepted. Field values in the answer must be
text, numbers or booleans.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import orjson

from herald.domain.errors import RuleViolated
from herald.domain.promo_patterns import MAX_CODE_LENGTH
from herald.infra.remote_content import RemoteContentPolicy, guarded_client

USER_AGENT_SUFFIX = " (promo codes)"
ATTEMPTS = 3
FIRST_PAUSE_SECONDS = 0.5
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class GeneratorFailed(RuleViolated):
    """The external service gave no usable codes; `reason` says why (HTTP 422 at `path`)."""


@dataclass(frozen=True, slots=True)
class CodeRequest:
    """What one request asks for; the `campaign_*` and `workflow_*` fields name who needs the codes."""

    account_id: str
    loyalty_id: str
    loyalty_name: str
    loyalty_shortcode: str
    count: int
    is_test: bool = False
    fields: Mapping[str, Any] = field(default_factory=dict)
    campaign_id: str = ""
    campaign_name: str = ""
    workflow_id: str = ""
    workflow_name: str = ""

    def body(self) -> dict[str, Any]:
        """The JSON body, with the guide's field names."""
        return {
            "account_id": self.account_id,
            "loyalty_id": self.loyalty_id,
            "loyalty_name": self.loyalty_name,
            "loyalty_shortcode": self.loyalty_shortcode,
            "campaign_id": self.campaign_id,
            "campaign_name": self.campaign_name,
            "workflow_id": self.workflow_id,
            "workflow_name": self.workflow_name,
            "count": self.count,
            "is_test": self.is_test,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True, slots=True)
class GeneratedCode:
    code: str
    fields: Mapping[str, Any] = field(default_factory=dict)


class _Retry(Exception):
    """This attempt failed in a way another attempt may not."""


class ExternalCodeGenerator:
    """POSTs code requests under a remote content policy; thread-safe, one per process.

    `transport` defaults to the guarded one (the address check); `sleep` is injected so tests
    run without waiting.
    """

    def __init__(
        self,
        policy: RemoteContentPolicy,
        transport: httpx.BaseTransport | None = None,
        attempts: int = ATTEMPTS,
        first_pause: float = FIRST_PAUSE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._policy = policy
        self._client = guarded_client(policy, transport, {"Accept": "application/json"}, USER_AGENT_SUFFIX)
        self._attempts = attempts
        self._first_pause = first_pause
        self._sleep = sleep

    def request(self, url: str, request: CodeRequest, path: str = "generator.url") -> list[GeneratedCode]:
        """The codes the service at `url` answers `request` with, or GeneratorFailed at `path`."""
        pause = self._first_pause
        for attempt in range(1, self._attempts + 1):
            try:
                body = self._post(url, request)
            except _Retry as failure:
                if attempt == self._attempts:
                    raise GeneratorFailed(
                        f"the code service {url} failed {self._attempts} times; the last: {failure}", path
                    ) from None
                self._sleep(pause)
                pause *= 2
                continue
            return parse_codes(body, request.count, path)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()

    def _post(self, url: str, request: CodeRequest) -> bytes:
        deadline = time.monotonic() + self._policy.timeout_seconds
        content = orjson.dumps(request.body())
        try:
            built = self._client.build_request(
                "POST", url, content=content, headers={"Content-Type": "application/json"}
            )
            response = self._client.send(built, stream=True)
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise _Retry(f"no answer within {self._policy.timeout_seconds:g} s") from None
        except (httpx.HTTPError, httpcore.NetworkError, httpcore.ProtocolError, OSError) as error:
            raise _Retry(f"could not reach it ({error or type(error).__name__})") from None
        except Exception as error:  # the guarded transport's refusal of an address names itself
            raise GeneratorFailed(f"the code service {url} was refused: {error}", "generator.url") from None
        with closing(response):
            if response.status_code in _RETRIED_STATUSES:
                raise _Retry(f"it answered HTTP {response.status_code}")
            if not response.is_success:
                raise GeneratorFailed(
                    f"the code service {url} answered HTTP {response.status_code}", "generator.url"
                )
            return _read(response, self._policy.max_bytes, deadline, url)


def _read(response: httpx.Response, max_bytes: int, deadline: float, url: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > max_bytes:
                raise GeneratorFailed(
                    f"the code service {url} answered more than {max_bytes} bytes", "generator.url"
                )
            if time.monotonic() > deadline:
                raise _Retry(f"no whole answer within the deadline from {url}")
            chunks.append(chunk)
    except (httpx.TimeoutException, httpcore.TimeoutException):
        raise _Retry("the answer stopped coming") from None
    return b"".join(chunks)


def parse_codes(body: bytes, asked: int, path: str = "generator.url") -> list[GeneratedCode]:
    """The codes of an answer in either of the guide's forms, or GeneratorFailed naming the fault."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise GeneratorFailed(f"the code service's answer is not JSON ({error})", path) from None
    codes = document.get("codes") if isinstance(document, dict) else None
    if not isinstance(codes, list):
        raise GeneratorFailed('the code service\'s answer has no "codes" list', path)
    if len(codes) > asked:
        raise GeneratorFailed(f"the code service answered {len(codes)} codes for {asked} asked", path)
    found = [_code(item, index, path) for index, item in enumerate(codes)]
    seen: set[str] = set()
    for index, item in enumerate(found):
        if item.code in seen:
            raise GeneratorFailed(f"codes.{index}: {item.code!r} is in the answer twice", path)
        seen.add(item.code)
    return found


def _code(item: Any, index: int, path: str) -> GeneratedCode:
    fields: Any = {}
    if isinstance(item, dict):
        code, fields = item.get("code"), item.get("fields", {})
        if not isinstance(fields, dict) or not all(
            isinstance(v, str | int | float | bool) or v is None for v in fields.values()
        ):
            raise GeneratorFailed(f"codes.{index}.fields must map names to texts or numbers", path)
    else:
        code = item
    if not isinstance(code, str) or not code.strip():
        raise GeneratorFailed(f"codes.{index} is not a code (a non-empty text)", path)
    code = code.strip()
    if len(code) > MAX_CODE_LENGTH or not code.isprintable():
        raise GeneratorFailed(
            f"codes.{index} is longer than {MAX_CODE_LENGTH} characters or holds control characters", path
        )
    return GeneratedCode(code, fields)
