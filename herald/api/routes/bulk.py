"""Data out and over many profiles: exports, mass updates, clearing a database (all run as jobs)."""

from __future__ import annotations

from typing import Any

from starlette.responses import FileResponse

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain.exports import ExportSpec
from herald.domain.jobs import JobKind
from herald.domain.mass_updates import MassUpdateSpec
from herald.reports.export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE

_MEDIA = {"csv": CSV_MEDIA_TYPE, "xlsx": XLSX_MEDIA_TYPE, "jsonl": "application/jsonl"}


async def start_export(call: Call) -> dict[str, Any]:
    job_id, outcome = call.herald.exports.start(call.path_param("database_id"), call.body, call.context)
    return {"job_id": job_id, **outcome.to_json()}


async def start_mass_update(call: Call) -> dict[str, Any]:
    job_id, outcome = call.herald.mass_updates.start(call.path_param("database_id"), call.body, call.context)
    return {"job_id": job_id, **outcome.to_json()}


async def clear_database(call: Call) -> dict[str, Any]:
    job_id, outcome = call.herald.clearing.start(
        call.path_param("database_id"), call.context, call.herald.catalog
    )
    return {"job_id": job_id, **outcome.to_json()}


async def export_file(call: Call) -> FileResponse:
    job_id = call.path_param("job_id")
    job = call.herald.jobs.load(job_id).state
    if job.kind is not JobKind.EXPORT:
        raise HttpError(404, f"job {job_id!r} is not an export", "job_id")
    if not job.result:
        raise HttpError(409, f"the export is {job.status}: its file is made when it completes", "job_id")
    format = str(job.spec["format"])
    path = call.herald.export_files.path(job_id, format)
    return FileResponse(
        path, media_type=_MEDIA[format], filename=f"profiles-{job.database_id}-{job_id}.{path.suffix[1:]}"
    )


D = "/api/v1/databases/{database_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        D + "/exports",
        start_export,
        "Export a database's or a segment's profiles (CSV, XLSX, JSON lines) as a job",
        "exports",
        body=ExportSpec,
        status=202,
    ),
    Endpoint(
        "GET",
        "/api/v1/jobs/{job_id}/file",
        export_file,
        "An export's file, when it completed",
        "jobs",
        role="read",
    ),
    Endpoint(
        "POST",
        D + "/mass-updates",
        start_mass_update,
        "Change fields of a database's or a segment's profiles (or unsubscribe them) as a job",
        "exports",
        body=MassUpdateSpec,
        status=202,
    ),
    Endpoint(
        "POST",
        D + "/clear",
        clear_database,
        "Delete every profile of a database as a job (the database and its settings stay)",
        "databases",
        status=202,
    ),
]
