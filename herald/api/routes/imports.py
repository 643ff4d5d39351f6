"""File import: upload a CSV or XLSX (streamed), preview it with suggested columns, start the job.

Jobs of every kind (imports, exports, mass updates, clearing a database) are
read, cancelled and reported on through `/api/v1/jobs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain.import_spec import ColumnMapping, SubscriptionSource
from herald.domain.matching import MatchMode
from herald.domain.profiles import ImportMode
from herald.infra.import_files import StoredFile, TooLarge
from herald.reports.export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE

_Strict = ConfigDict(extra="forbid")
_MULTIPART = "multipart/form-data"
_READ = 1024 * 1024


class StartImportBody(BaseModel):
    """A file import: the uploaded file, how its columns map to fields, the batch import's options."""

    model_config = _Strict
    file_id: str = Field(description="what the upload answered")
    header: bool = Field(True, description="the first row names the columns and is not imported")
    skip_rows: int = Field(0, ge=0, description="rows to skip after the header")
    columns: list[ColumnMapping] = Field(min_length=1)
    subscriptions: list[SubscriptionSource] = []
    mode: ImportMode = ImportMode.ADD_AND_UPDATE
    match: MatchMode = MatchMode.EMAIL
    field_name: str | None = None
    resubscribe: bool = False


class PreviewQuery(BaseModel):
    rows: int = Field(10, ge=1, le=100)


class JobsQuery(BaseModel):
    database_id: str | None = None
    kind: str | None = None
    limit: int = Field(100, ge=1, le=1000)


async def _body_chunks(call: Call) -> AsyncIterator[bytes]:
    """The file's bytes as they arrive: the raw body, or the `file` part of a multipart form."""
    if call.request.headers.get("content-type", "").startswith(_MULTIPART):
        # Starlette spools each part to a temporary file past 1 MiB, so the form never sits in memory.
        form = await call.request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HttpError(422, "the form's file part is called 'file'", "file")
        while chunk := await upload.read(_READ):
            yield chunk
        return
    async for chunk in call.request.stream():
        yield chunk


async def upload(call: Call) -> dict[str, Any]:
    database_id = call.path_param("database_id")
    call.herald.catalog.database(database_id)
    try:
        stored: StoredFile = await call.herald.import_files.receive(
            _body_chunks(call), call.herald.settings.import_max_bytes
        )
    except TooLarge as error:
        raise HttpError(413, error.reason, "body") from None
    if stored.size == 0:
        call.herald.import_files.delete(stored.file_id)
        raise HttpError(422, "the body is the file's bytes (CSV or XLSX)", "body")
    preview = call.herald.imports.preview(database_id, stored.file_id)
    return {"size": stored.size, **preview}


async def preview(call: Call) -> dict[str, Any]:
    return call.herald.imports.preview(
        call.path_param("database_id"), call.path_param("file_id"), call.query.rows
    )


async def start_import(call: Call) -> dict[str, Any]:
    body: StartImportBody = call.body
    database_id = call.path_param("database_id")
    spec = call.herald.imports.spec_for(body.file_id, body.model_dump(exclude={"file_id"}))
    job_id, outcome = call.herald.imports.start(database_id, spec, call.context)
    return {"job_id": job_id, **outcome.to_json()}


async def list_jobs(call: Call) -> dict[str, Any]:
    q: JobsQuery = call.query
    return {"jobs": call.herald.projections.jobs.list(q.database_id, q.kind, q.limit)}


async def get_job(call: Call) -> dict[str, Any]:
    return call.herald.jobs.job(call.path_param("job_id"))


async def cancel_job(call: Call) -> dict[str, Any]:
    return call.herald.jobs.cancel(call.path_param("job_id"), call.context).to_json()


async def error_report(call: Call) -> StreamingResponse:
    job_id = call.path_param("job_id")
    return StreamingResponse(
        call.herald.imports.error_report(job_id),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="import-{job_id}-errors.csv"'},
    )


D = "/api/v1/databases/{database_id}"
J = "/api/v1/jobs/{job_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        D + "/import-files",
        upload,
        "Upload a CSV or XLSX file to import (raw body or multipart 'file'); answers a preview",
        "imports",
        status=201,
        bytes_body="text/csv",
        accepts=(XLSX_MEDIA_TYPE, "multipart/form-data", "application/octet-stream", "text/plain"),
        streams_body=True,  # streamed to disk as it arrives, under HERALD_IMPORT_MAX_BYTES
    ),
    Endpoint(
        "GET",
        D + "/import-files/{file_id}/preview",
        preview,
        "The first rows of an uploaded file and the columns matched to fields",
        "imports",
        query=PreviewQuery,
        role="read",
    ),
    Endpoint(
        "POST",
        D + "/imports",
        start_import,
        "Import an uploaded file as a background job (mode, match key, column mapping)",
        "imports",
        body=StartImportBody,
        status=202,
    ),
    Endpoint(
        "GET",
        "/api/v1/jobs",
        list_jobs,
        "Jobs: imports, exports, mass updates",
        "jobs",
        query=JobsQuery,
        role="read",
    ),
    Endpoint("GET", J, get_job, "A job's status, progress and counts", "jobs", role="read"),
    Endpoint("POST", J + "/cancel", cancel_job, "Cancel a running job", "jobs"),
    Endpoint("GET", J + "/errors.csv", error_report, "An import's refused rows as CSV", "jobs", role="read"),
]
