"""The audit log (master only): who did what to which object, filterable by user, object, action and time."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from herald.api.endpoints import Call, Endpoint
from herald.reports.export import CSV_MEDIA_TYPE, csv_text


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(None, description="entries by this user (actor user:<id>)")
    actor: str | None = Field(None, description="entries by this actor (admin, token:<id>, scheduler, …)")
    object_kind: str | None = Field(None, description="database, campaign, segment, user, role, job, …")
    object_id: str | None = None
    action: str | None = Field(None, description="an event type, e.g. CampaignActivated")
    start: datetime | None = None
    end: datetime | None = Field(None, description="exclusive")
    after: int = Field(0, ge=0, description="the previous page's next_after")
    limit: int = Field(100, ge=1, le=1000)
    format: Literal["json", "csv"] = "json"


async def audit(call: Call) -> Any:
    q: AuditQuery = call.query
    actor = f"user:{q.user_id}" if q.user_id else q.actor
    entries = call.herald.projections.audit.entries(
        actor, q.object_kind, q.object_id, q.action, q.start, q.end, q.after, q.limit
    )
    logins = {u["user_id"]: u["login"] for u in call.herald.projections.access.users()}
    for entry in entries:
        user_id = entry["actor"].removeprefix("user:") if entry["actor"].startswith("user:") else None
        entry["user"] = {"user_id": user_id, "login": logins.get(user_id)} if user_id else None
    if q.format == "csv":
        return Response(_csv(entries), media_type=CSV_MEDIA_TYPE)
    return {"entries": entries, "next_after": entries[-1]["position"] if len(entries) == q.limit else None}


def _csv(entries: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["at", "actor", "login", "ip", "action", "object_kind", "object_id", "details"])
    for e in entries:
        login = (e["user"] or {}).get("login") or ""
        obj = e["object"]
        row = [
            e["at"],
            e["actor"],
            login,
            e["ip"] or "",
            e["action"],
            obj["kind"],
            obj["id"],
            str(e["details"]),
        ]
        writer.writerow([csv_text(str(cell)) for cell in row])
    return out.getvalue().encode("utf-8-sig")


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/audit",
        audit,
        "The audit log: who did what to which object, when, from which address (JSON or CSV)",
        "users",
        query=AuditQuery,
        role="admin",
    ),
]
