"""SMS over an HTTP gateway in the shape of BulkSMS's JSON REST API v1 (the guide names BulkSMS.com).

`POST {base}/messages?deduplication-id=N` with Basic auth and one message
`{"to", "body", "from", "encoding", "longMessageMaxParts", "deliveryReports",
"userSuppliedId"}`; a 201 answers with the created message objects, each with
its `id`. Delivery reports come back as the provider's webhook calls: a JSON
array of message objects whose `status.type` is final (`parse_reports`).

Decisions where the task is silent:
- `deduplication-id` (the provider's guard against a retried submission) and
  `userSuppliedId` are derived from our message id, so a resend after a lost
  answer is dropped by the provider instead of sent twice.
- The encoding is chosen by `domain/sms.py` (GSM 7-bit → TEXT, else UNICODE)
  and `longMessageMaxParts` is the part count it gives, so the provider never
  refuses a long message Herald already counted and allowed.
- Status types DELIVERED → delivered, FAILED → undelivered (subtype EXPIRED →
  expired, REJECTED/BLOCKED → rejected); ACCEPTED, SCHEDULED and SENT are not
  final and are not reported.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from herald.domain.sms import sms_length
from herald.senders.gateway import (
    Accepted,
    BeforeCommit,
    DeliveryReport,
    Outbound,
    ReportState,
    SendOutcome,
    TemporaryFailure,
)
from herald.senders.http_outcomes import post_committed, refusal
from herald.senders.rate import SendRate

_FINAL: dict[str, ReportState] = {"DELIVERED": "delivered", "FAILED": "undelivered"}
_FAILED_SUBTYPES: dict[str, ReportState] = {
    "EXPIRED": "expired",
    "REJECTED": "rejected",
    "BLOCKED": "rejected",
}


class BulkSmsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "https://api.bulksms.com/v1"
    username: str = Field(min_length=1, description="the API token id (or the account's username)")
    password: str = Field(min_length=1, repr=False, description="the API token secret")
    rate_per_second: float | None = Field(None, gt=0)
    timeout: float = Field(10.0, gt=0)
    connections: int = Field(16, ge=1, le=256)


class BulkSmsGateway:
    channel = "sms"
    reports_delivery = True

    def __init__(self, settings: BulkSmsSettings) -> None:
        self.settings = settings
        self.rate = SendRate(settings.rate_per_second) if settings.rate_per_second else None
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/",
            auth=(settings.username, settings.password),
            timeout=settings.timeout,
            limits=httpx.Limits(max_connections=settings.connections),
        )

    async def send(self, message: Outbound, before_commit: BeforeCommit | None = None) -> SendOutcome:
        if not message.text:
            raise ValueError("an SMS needs a text")
        length = sms_length(message.text)
        body: dict[str, Any] = {
            "to": message.address,
            "body": message.text,
            "encoding": "TEXT" if length.encoding == "gsm7" else "UNICODE",
            "longMessageMaxParts": length.parts,
            "deliveryReports": "ALL",
            "userSuppliedId": message.message_id,
        }
        if message.sender:
            body["from"] = message.sender
        response = await post_committed(
            self._http,
            "messages",
            self.rate,
            before_commit,
            params={"deduplication-id": deduplication_id(message.message_id)},
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        if isinstance(response, TemporaryFailure):
            return response
        if response.status_code in (200, 201):
            created = response.json()
            return Accepted(tuple(str(m["id"]) for m in created), response.status_code, "accepted")
        return refusal(response.status_code, _problem(response), response.headers.get("Retry-After"))

    async def close(self) -> None:
        await self._http.aclose()


def deduplication_id(message_id: str) -> int:
    """A number (53 bits, exact in any JSON reader) that stands for our message id."""
    return int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:7], "big") >> 3


def parse_reports(body: bytes) -> list[DeliveryReport]:
    """The final delivery reports in a webhook call's body (a JSON array of message objects)."""
    items = orjson.loads(body)
    if not isinstance(items, list):
        raise ValueError("a BulkSMS webhook posts a JSON array")
    reports = []
    for item in items:
        status = item.get("status") or {}
        kind = str(status.get("type", ""))
        if kind not in _FINAL:
            continue
        subtype = str(status.get("subtype") or "")
        state = _FAILED_SUBTYPES.get(subtype, _FINAL[kind]) if kind == "FAILED" else _FINAL[kind]
        when = item.get("statusDatetime") or (item.get("submission") or {}).get("date")
        reports.append(
            DeliveryReport(
                provider_id=str(item["id"]),
                state=state,
                code=subtype,
                at=datetime.fromisoformat(when) if when else None,
                message_id=str(item.get("userSuppliedId") or ""),
            )
        )
    return reports


def _problem(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(problem, dict):
        return str(problem.get("detail") or problem.get("title") or problem)[:500]
    return str(problem)[:500]
