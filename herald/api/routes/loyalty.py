"""Loyalty programs and their promo codes: settings, generation, import, export, view, assign, activate.

Decisions where the guide is silent:
- A code travels in the body or the query (`?code=`), never in the path: codes
  may hold `/` and other characters paths treat specially.
- `POST …/codes/generate` answers 200 with the result for up to 1,000 codes,
  and 202 with a job id for more (`GET …/jobs/{job_id}` shows its progress).
- `POST …/codes/import` takes the file's bytes (CSV, TXT or XLSX), the code's
  `column` (from 1, or its header's name) and `skip_rows` (the guide's default
  is 1: the header). Rows whose cell is empty or longer than 200 characters,
  repeated in the file, or already in the program are skipped and listed.
- `GET …/codes/export` is CSV: one line per code and per profile holding it,
  with the profile fields asked for (`profile_fields=email,_fname`).
- The profile of an assignment or activation is named by `profile_id`, or by
  `database_id` and a one-field `profile` selector (`{"email": …}`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.api.request_body import CURL_DEFAULT
from herald.api.responses import json_response
from herald.api.routes.catalog import VersionQuery, expected_version_field
from herald.domain import loyalty as ly
from herald.domain.errors import NotFound, ValidationFailed
from herald.domain.profiles import profile_decider, profile_stream
from herald.domain.promo_patterns import MAX_CODE_LENGTH
from herald.domain.promo_pool import BindingCause
from herald.infra.serialization import loads
from herald.infra.table_files import read_table
from herald.reports.base import ReportResult
from herald.reports.export import CSV_MEDIA_TYPE, to_csv
from herald.services.profile_lookup import ProfileLookup
from herald.services.promo_codes import MAX_GENERATION, IssueResult

P = "/api/v1/loyalty-programs"
ONE = P + "/{program_id}"
MAX_IMPORT_BYTES = 64 * 1024 * 1024
MAX_PAGE = 1000
T = "loyalty"


class ProgramBody(ly.ProgramSettings):
    active: bool = Field(True, description="give codes out from the start")


class ProgramPut(ly.ProgramSettings):
    expected_version: int | None = expected_version_field()


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=MAX_GENERATION)
    ignore_limit: bool = Field(False, description="generate past the program's maximum")
    fields: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ImportQuery(BaseModel):
    column: str = Field("1", description="the codes' column: its number from 1, or its header's name")
    skip_rows: int = Field(1, ge=0, description="rows before the codes (the header)")


class CodesQuery(BaseModel):
    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    sort: str = Field(
        "seq", pattern="^-?(seq|code)$", description="seq (issue order) or code; - for descending"
    )
    bound: bool | None = Field(None, description="only codes given out (true) or free (false)")


class CodeQuery(BaseModel):
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH)


class ExportQuery(BaseModel):
    profile_fields: str = Field("", description="comma-separated profile fields: email,_fname,_lname,phones…")


class ProfileRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_id: str | None = None
    database_id: str | None = None
    profile: dict[str, Any] | None = Field(None, description='one match field, e.g. {"email": "ann@x.io"}')


class AssignBody(ProfileRef):
    request_id: str | None = Field(None, max_length=200, description="the same id never gives out twice")


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_ids: list[str] = Field(min_length=1, max_length=10_000)


class ActivateBody(ProfileRef):
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH)
    at: datetime | None = Field(None, description="when the customer used it (default: now)")
    by: str = Field("", max_length=200, description="who reports the use: a shop, a till, a partner")


def _settings(body: ly.ProgramSettings) -> ly.ProgramSettings:
    return ly.ProgramSettings.model_validate(body.model_dump(exclude={"active", "expected_version"}))


def _card(call: Call, program_id: str) -> dict[str, Any]:
    loaded = call.herald.loyalty.loaded(program_id)
    state = loaded.state
    assert state.settings is not None
    pool, _ = call.herald.promo_codes.pool(program_id)
    now = call.herald.clock.now()
    listed = next(
        (p for p in call.herald.projections.loyalty.programs() if p["program_id"] == program_id), None
    )
    return {
        "program_id": program_id,
        **state.settings.model_dump(mode="json"),
        "active": state.active,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "version": loaded.version,
        "macro": f"{{loyalty.{state.settings.shortcode}.promocode}}",
        "codes": {"count": pool.count, "free": pool.free(now)},
        "low_stock": listed["low_stock"] if listed else None,
    }


async def create_program(call: Call) -> dict[str, Any]:
    body: ProgramBody = call.body
    program_id, outcome = call.herald.loyalty.create(_settings(body), body.active, call.context)
    return {"program_id": program_id, **outcome.to_json()}


async def list_programs(call: Call) -> dict[str, Any]:
    return {"programs": call.herald.projections.loyalty.programs()}


async def get_program(call: Call) -> dict[str, Any]:
    return _card(call, call.path_param("program_id"))


async def put_program(call: Call) -> dict[str, Any]:
    body: ProgramPut = call.body
    program_id = call.path_param("program_id")
    return call.herald.loyalty.change(
        program_id, _settings(body), call.context, body.expected_version
    ).to_json()


async def delete_program(call: Call) -> dict[str, Any]:
    return call.herald.loyalty.delete(call.path_param("program_id"), call.context).to_json()


async def activate_program(call: Call) -> dict[str, Any]:
    return call.herald.loyalty.activate(call.path_param("program_id"), call.context).to_json()


async def stop_program(call: Call) -> dict[str, Any]:
    return call.herald.loyalty.stop(call.path_param("program_id"), call.context).to_json()


def _issue_json(result: IssueResult) -> dict[str, Any]:
    return {"issued": result.issued, "duplicates": [{"index": i, "code": c} for i, c in result.duplicates]}


async def generate_codes(call: Call) -> Any:
    body: GenerateBody = call.body
    program_id = call.path_param("program_id")
    result = call.herald.promo_codes.generate(
        program_id, body.count, body.ignore_limit, body.fields, call.context
    )
    if isinstance(result, str):
        return json_response({"job_id": result, "status": "running", "requested": body.count}, 202)
    return _issue_json(result)


async def get_job(call: Call) -> dict[str, Any]:
    job = call.herald.projections.loyalty.job(call.path_param("job_id"))
    if job is None or job["program_id"] != call.path_param("program_id"):
        raise NotFound(f"no job {call.path_param('job_id')!r} of this program", "job_id")
    return job


async def preview_code(call: Call) -> dict[str, Any]:
    return {"code": call.herald.promo_codes.preview(call.path_param("program_id"))}


async def import_codes(call: Call) -> dict[str, Any]:
    query: ImportQuery = call.query
    program_id = call.path_param("program_id")
    call.herald.loyalty.program(program_id)
    raw: bytes = call.body
    if not raw:
        raise HttpError(422, "the body is the file's bytes (CSV, TXT or XLSX)", "body")
    rows = read_table(raw)
    header = rows[query.skip_rows - 1] if 0 < query.skip_rows <= len(rows) else []
    column = _column(query.column, header)
    codes, skipped = _codes(rows, query.skip_rows, column)
    imported, duplicates = call.herald.promo_codes.import_codes(program_id, codes, call.context)
    skipped = sorted([*skipped, *duplicates], key=lambda item: item["row"])
    return {"imported": imported, "skipped": skipped}


def _column(given: str, header: list[str]) -> int:
    """The codes' column as an index from 0: a number from 1, or a header's name (case-blind)."""
    if given.isdigit() and int(given) >= 1:
        return int(given) - 1
    names = [cell.strip().casefold() for cell in header]
    if given.strip().casefold() in names:
        return names.index(given.strip().casefold())
    raise ValidationFailed(f"no column {given!r}: give its number from 1 or its header's name", "column")


def _codes(
    rows: list[list[str]], skip: int, column: int
) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    """(row number from 1, code) of each usable row, and the rows skipped with why."""
    codes: list[tuple[int, str]] = []
    skipped: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[skip:], start=skip + 1):
        code = row[column].strip() if column < len(row) else ""
        reason = None
        if not code:
            reason = "the code's cell is empty"
        elif len(code) > MAX_CODE_LENGTH or not code.isprintable():
            reason = f"longer than {MAX_CODE_LENGTH} characters or holds control characters"
        elif code in seen:
            reason = "the code is in the file twice"
        if reason is not None:
            skipped.append({"row": number, "code": code, "reason": reason})
            continue
        seen.add(code)
        codes.append((number, code))
    return codes, skipped


async def list_codes(call: Call) -> dict[str, Any]:
    query: CodesQuery = call.query
    program_id = call.path_param("program_id")
    call.herald.loyalty.program(program_id)
    total, rows = call.herald.projections.loyalty.code_rows(
        program_id, query.offset, query.limit, query.sort, query.bound
    )
    return {"total": total, "offset": query.offset, "codes": rows}


async def get_code(call: Call) -> dict[str, Any]:
    query: CodeQuery = call.query
    program_id = call.path_param("program_id")
    row = call.herald.projections.loyalty.code_row(program_id, query.code)
    if row is None:
        raise NotFound(f"the program has no promo code {query.code!r}", "code")
    loyalty = call.herald.projections.loyalty
    holders = [loyalty.holding(program_id, p) for p in loyalty.holders_of(program_id, row["seq"])]
    return {**row, "holdings": holders}


async def delete_code(call: Call) -> dict[str, Any]:
    query: CodeQuery = call.query
    call.herald.promo_codes.withdraw(call.path_param("program_id"), query.code, call.context)
    return {"deleted": query.code}


async def export_codes(call: Call) -> Response:
    query: ExportQuery = call.query
    program_id = call.path_param("program_id")
    settings = call.herald.loyalty.program(program_id).settings
    assert settings is not None
    wanted = [name.strip() for name in query.profile_fields.split(",") if name.strip()]
    extra = [f.name for f in settings.fields]
    columns = ("code", "created_at", "expires_at", "source", *extra, "profile_id", "bound_at")
    columns += ("activated_at", "activated_by", *wanted)
    rows = []
    profiles = call.herald.aggregates
    for (
        code,
        created,
        expires,
        source,
        fields,
        profile_id,
        bound,
        activated,
        by,
    ) in call.herald.projections.loyalty.export_rows(program_id):
        values = _loads(fields)
        fields_of = (
            profiles.load(profile_decider, profile_stream(profile_id)).state.fields if profile_id else {}
        )
        extras = tuple(values.get(n) for n in extra)
        chosen = tuple(_cell(fields_of.get(n)) for n in wanted)
        rows.append((code, created, expires, source, *extras, profile_id, bound, activated, by, *chosen))
    body = to_csv(ReportResult(columns, tuple(rows), ()))
    headers = {"content-disposition": f'attachment; filename="promo-codes-{program_id}.csv"'}
    return Response(body, media_type=CSV_MEDIA_TYPE, headers=headers)


def _loads(value: bytes | None) -> dict[str, Any]:
    return dict(loads(value)) if value else {}


def _cell(value: Any) -> Any:
    return ", ".join(map(str, value)) if isinstance(value, list) else value


def _profile(call: Call, body: ProfileRef) -> str:
    lookup = ProfileLookup(call.herald.catalog, call.herald.projections.profiles)
    if body.profile_id is not None:
        return lookup.existing(body.profile_id)
    if body.database_id is None or body.profile is None:
        raise ValidationFailed("name the profile: profile_id, or database_id and profile", "profile_id")
    return lookup.resolve(body.database_id, body.profile, "profile")


async def assign_code(call: Call) -> dict[str, Any]:
    body: AssignBody = call.body
    program_id = call.path_param("program_id")
    profile_id = _profile(call, body)
    request_id = body.request_id or call.context.request_id or call.herald.ids.uuid().hex
    cause = BindingCause(kind="api", id=request_id)
    assigned = call.herald.promo_codes.assign(program_id, profile_id, request_id, cause, call.context)
    return assigned.to_json()


async def activate_code(call: Call) -> dict[str, Any]:
    body: ActivateBody = call.body
    program_id = call.path_param("program_id")
    profile_id = _profile(call, body) if body.profile_id or body.profile else None
    if body.at is not None and body.at.tzinfo is None:
        raise ValidationFailed("give the instant with its offset (e.g. Z)", "at")
    outcome = call.herald.promo_codes.activate(
        program_id, body.code, profile_id, body.at, body.by, call.context
    )
    return outcome.to_json()


async def release_codes(call: Call) -> dict[str, Any]:
    body: ReleaseBody = call.body
    return call.herald.promo_codes.release(
        call.path_param("program_id"), body.profile_ids, call.context
    ).to_json()


async def codes_report(call: Call) -> dict[str, Any]:
    loyalty = call.herald.projections.loyalty
    programs = loyalty.programs()
    counts = loyalty.report(call.herald.clock.now(), [p["program_id"] for p in programs])
    return {
        "programs": [
            {"program_id": p["program_id"], "name": p["settings"]["name"], **counts[p["program_id"]]}
            for p in programs
        ]
    }


async def profile_codes(call: Call) -> dict[str, Any]:
    profile_id = call.path_param("profile_id")
    loyalty = call.herald.projections.loyalty
    held = []
    for program in loyalty.programs():
        holding = loyalty.holding(program["program_id"], profile_id)
        if holding is not None:
            held.append({"program_id": program["program_id"], "name": program["settings"]["name"], **holding})
    return {"promo_codes": held}


ENDPOINTS = [
    Endpoint("POST", P, create_program, "Create a loyalty program", T, body=ProgramBody, status=201),
    Endpoint("GET", P, list_programs, "List loyalty programs", T, role="read"),
    Endpoint(
        "GET",
        P + "/report",
        codes_report,
        "Promo codes per program: issued, bound, activated, expired, free",
        T,
        role="read",
    ),
    Endpoint("GET", ONE, get_program, "A loyalty program: settings, status, codes", T, role="read"),
    Endpoint("PUT", ONE, put_program, "Replace a loyalty program's settings", T, body=ProgramPut),
    Endpoint("DELETE", ONE, delete_program, "Delete a loyalty program", T, query=VersionQuery),
    Endpoint("POST", ONE + "/activate", activate_program, "Activate a loyalty program", T),
    Endpoint("POST", ONE + "/stop", stop_program, "Stop a loyalty program (it gives no codes out)", T),
    Endpoint(
        "POST",
        ONE + "/codes/generate",
        generate_codes,
        "Generate promo codes (over 1,000: a background job, 202)",
        T,
        body=GenerateBody,
    ),
    Endpoint("GET", ONE + "/jobs/{job_id}", get_job, "A generation job's progress", T, role="read"),
    Endpoint(
        "GET",
        ONE + "/codes/preview",
        preview_code,
        "A sample code (a test request to an external service)",
        T,
    ),
    Endpoint(
        "POST",
        ONE + "/codes/import",
        import_codes,
        "Import promo codes from a CSV, TXT or XLSX file (the body)",
        T,
        query=ImportQuery,
        bytes_body="text/csv",
        accepts=(
            "text/plain",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/octet-stream",
            CURL_DEFAULT,
        ),
        max_body=MAX_IMPORT_BYTES,
    ),
    Endpoint(
        "GET",
        ONE + "/codes/export",
        export_codes,
        "Export the codes as CSV, with the holders' profile fields",
        T,
        query=ExportQuery,
        role="read",
    ),
    Endpoint(
        "GET", ONE + "/codes", list_codes, "The program's codes, a page", T, query=CodesQuery, role="read"
    ),
    Endpoint(
        "GET", ONE + "/codes/item", get_code, "One code and who holds it", T, query=CodeQuery, role="read"
    ),
    Endpoint("DELETE", ONE + "/codes", delete_code, "Delete a code", T, query=CodeQuery),
    Endpoint(
        "POST",
        ONE + "/assignments",
        assign_code,
        "Give a profile its code (the one it holds, else the next free one)",
        T,
        body=AssignBody,
    ),
    Endpoint(
        "POST",
        ONE + "/releases",
        release_codes,
        "Take their codes from profiles (unbind): they may be given new ones",
        T,
        body=ReleaseBody,
    ),
    Endpoint(
        "POST",
        ONE + "/activations",
        activate_code,
        "Activate (redeem) a code: who used it and when",
        T,
        body=ActivateBody,
    ),
    Endpoint(
        "GET",
        "/api/v1/profiles/{profile_id}/promo-codes",
        profile_codes,
        "The promo codes a profile holds",
        T,
        role="read",
    ),
]
