"""Scheduled imports: a URL (CSV, XLSX or JSON) imported on a campaign schedule through the SSRF guard."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.api.endpoints import Call, Endpoint
from herald.domain import scheduled_imports as si


class ScheduledImportBody(si.ScheduledImportSettings):
    active: bool = Field(True, description="run on the schedule (false: saved, not running)")
    run_now: bool = Field(False, description="also run once at once (the guide's 'Запустить сразу')")


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database_id: str | None = None


def _settings(body: ScheduledImportBody) -> si.ScheduledImportSettings:
    return si.ScheduledImportSettings.model_validate(body.model_dump(exclude={"active", "run_now"}))


async def create(call: Call) -> dict[str, Any]:
    body: ScheduledImportBody = call.body
    import_id, outcome = call.herald.scheduled_imports.create(
        _settings(body), body.active, body.run_now, call.context
    )
    return {"import_id": import_id, **outcome.to_json()}


async def replace(call: Call) -> dict[str, Any]:
    body: ScheduledImportBody = call.body
    return call.herald.scheduled_imports.replace(
        call.path_param("import_id"), _settings(body), body.active, body.run_now, call.context
    ).to_json()


async def list_imports(call: Call) -> dict[str, Any]:
    return {"scheduled_imports": call.herald.projections.scheduled_imports.list(call.query.database_id)}


async def card(call: Call) -> dict[str, Any]:
    return call.herald.scheduled_imports.card(call.path_param("import_id"))


def _command(call: Call, command: si.ScheduledImportCommand) -> dict[str, Any]:
    service = call.herald.scheduled_imports
    import_id = call.path_param("import_id")
    service.state(import_id)
    return service.execute(import_id, command, call.context).to_json()


async def activate(call: Call) -> dict[str, Any]:
    now = call.herald.clock.now()
    return _command(call, si.ActivateScheduledImport(now, call.herald.settings.account_timezone))


async def deactivate(call: Call) -> dict[str, Any]:
    return _command(call, si.DeactivateScheduledImport(call.herald.clock.now()))


async def run_now(call: Call) -> dict[str, Any]:
    return _command(call, si.RunScheduledImportNow(call.herald.clock.now()))


async def delete(call: Call) -> dict[str, Any]:
    return _command(call, si.DeleteScheduledImport(call.herald.clock.now()))


S = "/api/v1/scheduled-imports/{import_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/scheduled-imports",
        create,
        "Create a scheduled import of a URL (CSV, XLSX or JSON)",
        "imports",
        body=ScheduledImportBody,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/v1/scheduled-imports",
        list_imports,
        "List scheduled imports",
        "imports",
        query=ListQuery,
        role="read",
    ),
    Endpoint(
        "GET", S, card, "A scheduled import: settings, next 12 runs, last 10 runs", "imports", role="read"
    ),
    Endpoint("PUT", S, replace, "Replace a scheduled import's settings", "imports", body=ScheduledImportBody),
    Endpoint("POST", S + "/activate", activate, "Start a scheduled import's timers", "imports"),
    Endpoint("POST", S + "/deactivate", deactivate, "Stop a scheduled import's timers", "imports"),
    Endpoint("POST", S + "/run", run_now, "Run a scheduled import at once", "imports"),
    Endpoint("DELETE", S, delete, "Delete a scheduled import", "imports"),
]
