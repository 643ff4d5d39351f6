"""Segments: create, read, change, delete, validate, count, preview; static lists; membership as of a time.

Decisions where the guide is silent:
- `query` is sent in the stored JSON form (`domain/segments.py`) and checked
  whole; an error is a 422 (404 for an unknown database, resource or segment)
  naming the rule's path under `query` (`query.sources.0.rules.2.operator`).
- `PUT /segments/{id}` replaces name, query and schedule; the kind is fixed at creation.
- `POST /segments/{id}/members` (add) and `/members/remove` take either
  `profile_ids` or a `segment_id` (that segment's current members), and an
  optional `request_id` (or the Idempotency-Key header): the same request id
  never changes the list twice. `POST /segments/{id}/recalculate` takes the
  Idempotency-Key the same way.
- A dynamic segment's count and preview evaluate its query now; a static
  segment's are its list. Members (now or `as_of`) come from the membership
  events of either kind.
- A dynamic segment's `size` is its realtime membership once that is counted:
  a save (create or edit) evaluates every profile of its databases in steps, so
  until the last step `size` is null and `membership` says
  `{"status": "counting", "evaluated": n, "candidates": m}` (candidates null until
  the save is picked up), then `{"status": "ready", "size": n}`. A segment whose
  query fetches external sets (POST URL, CSV) has no realtime membership:
  `{"status": "at_use"}`, counted by `/count` when used. A static segment's
  `size` is its list's, and its membership is always ready.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.api.request_body import CURL_DEFAULT
from herald.api.routes.catalog import VersionQuery, expected_version_field
from herald.domain import segment_definitions as sd
from herald.domain.errors import ValidationFailed
from herald.domain.schedules import Schedule
from herald.services.segments import MAX_PROFILE_IDS, Change, SegmentService

MAX_PREVIEW = 100
MAX_PAGE = 1000


class SegmentPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    query: dict[str, JsonValue] | None = Field(
        None, description="the stored query (sources, rules, groups); none: a static list built by hand"
    )
    recalculation: Schedule | None = Field(None, description="static only: when to rebuild from the query")
    expected_version: int | None = expected_version_field()


class SegmentBody(SegmentPut):
    kind: Literal["dynamic", "static"] = "dynamic"


class ValidateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: dict[str, JsonValue]
    segment_id: str | None = Field(
        None, description="the segment being edited, for the cycle and nesting rules"
    )


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_ids: list[str] | None = Field(None, max_length=MAX_PROFILE_IDS)
    segment_id: str | None = Field(None, description="take this segment's current members")
    request_id: str | None = Field(None, max_length=200, description="the same id never edits twice")


class PreviewQuery(BaseModel):
    limit: int = Field(10, ge=1, le=MAX_PREVIEW)


class MembersQuery(BaseModel):
    as_of: datetime | None = Field(None, description="an instant with its offset; none: now")
    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=MAX_PAGE)


class AsOfQuery(BaseModel):
    as_of: datetime | None = Field(None, description="an instant with its offset; none: now")


def _service(call: Call) -> SegmentService:
    return call.herald.segments


def _segment_json(call: Call, segment_id: str) -> dict[str, Any]:
    loaded = _service(call).loaded(segment_id)
    state = loaded.state
    assert state.settings is not None
    due = state.next_recalculation_at
    return {
        "segment_id": segment_id,
        "kind": state.kind,
        **state.settings.model_dump(mode="json"),
        "timezone": state.timezone,
        "next_recalculation_at": due.isoformat() if due else None,
        "recalculations": state.recalculations,
        **_size(call, segment_id, state.kind),
        "version": loaded.version,
    }


def _size(call: Call, segment_id: str, kind: str) -> dict[str, Any]:
    """`size` and `membership`: a static segment's list, a dynamic one's realtime membership so far."""
    if kind == "static":
        size = len(_service(call).current_members(segment_id))
        return {"size": size, "membership": {"status": "ready", "size": size}}
    saved_by = _service(call).last_saved_by(segment_id)
    population = call.herald.projections.membership.population(segment_id, saved_by)
    membership = {k: v for k, v in dataclasses.asdict(population).items() if v is not None}
    if population.status == "counting":
        membership.setdefault("candidates", None)
    return {"size": population.size, "membership": membership}


def _saved(call: Call, change: Change, kind: str) -> dict[str, Any]:
    """A save's answer: a static segment's changes, or where a dynamic one's membership stands."""
    if kind == "static":
        return change.to_json()
    answer = {k: v for k, v in change.to_json().items() if k not in ("entered", "left")}
    return answer | _size(call, change.segment_id, kind)


def _settings(call: Call, body: SegmentPut, segment_id: str | None = None) -> sd.SegmentSettings:
    return _service(call).settings(body.name, body.query, body.recalculation, segment_id)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ValidationFailed("give the instant with its offset (e.g. 2026-03-02T09:00:00Z)", "as_of")
    return moment


async def create_segment(call: Call) -> dict[str, Any]:
    body: SegmentBody = call.body
    change = _service(call).create(body.kind, _settings(call, body), call.context)
    return _saved(call, change, body.kind)


async def list_segments(call: Call) -> dict[str, Any]:
    return {"segments": call.herald.projections.segments.cards()}


async def get_segment(call: Call) -> dict[str, Any]:
    return _segment_json(call, call.path_param("segment_id"))


async def put_segment(call: Call) -> dict[str, Any]:
    body: SegmentPut = call.body
    segment_id = call.path_param("segment_id")
    kind = _service(call).loaded(segment_id).state.kind
    settings = _settings(call, body, segment_id)
    change = _service(call).update(segment_id, settings, call.context, body.expected_version)
    return _saved(call, change, kind)


async def delete_segment(call: Call) -> dict[str, Any]:
    segment_id = call.path_param("segment_id")
    return _service(call).delete(segment_id, call.context, call.query.expected_version).to_json()


async def validate_segment(call: Call) -> dict[str, Any]:
    body: ValidateBody = call.body
    if body.segment_id is not None:
        _service(call).loaded(body.segment_id)
    query = _service(call).check(body.query, body.segment_id)
    return {"valid": True, "query": query.model_dump(mode="json")}


async def count_segment(call: Call) -> dict[str, Any]:
    segment_id = call.path_param("segment_id")
    return {"segment_id": segment_id, "count": _service(call).count(segment_id)}


async def preview_segment(call: Call) -> dict[str, Any]:
    segment_id = call.path_param("segment_id")
    return {"segment_id": segment_id, "profiles": _service(call).preview(segment_id, call.query.limit)}


async def segment_members(call: Call) -> dict[str, Any]:
    q: MembersQuery = call.query
    segment_id = call.path_param("segment_id")
    _service(call).loaded(segment_id)
    members = call.herald.projections.segments.members(segment_id, _aware(q.as_of), q.offset, q.limit)
    return {"segment_id": segment_id, "as_of": q.as_of.isoformat() if q.as_of else None, "members": members}


async def recalculate(call: Call) -> dict[str, Any]:
    segment_id = call.path_param("segment_id")
    ref = f"manual-{call.context.request_id or call.herald.ids.uuid()}"
    change = _service(call).recalculate(segment_id, "manual", ref, call.context)
    return _recalculated(change)


def _recalculated(change: Change) -> dict[str, Any]:
    body = change.to_json()
    body["recalculation_id"] = body.pop("ref")
    return body


def _edit(adding: bool) -> Any:
    async def handler(call: Call) -> dict[str, Any]:
        body: EditBody = call.body
        segment_id = call.path_param("segment_id")
        if (body.profile_ids is None) == (body.segment_id is None):
            raise ValidationFailed("give either profile_ids or segment_id", "profile_ids")
        verb = "add" if adding else "remove"
        edit_id = f"{verb}-{body.request_id or call.context.request_id or call.herald.ids.uuid()}"
        service = _service(call)
        if body.profile_ids is not None:
            edit = service.add_profiles if adding else service.remove_profiles
            change = edit(segment_id, body.profile_ids, edit_id, call.context)
        else:
            assert body.segment_id is not None
            by_segment = service.add_from_segment if adding else service.remove_from_segment
            change = by_segment(segment_id, body.segment_id, edit_id, call.context)
        json = change.to_json("added", "removed")
        json["edit_id"] = json.pop("ref")
        return json

    return handler


async def history(call: Call) -> dict[str, Any]:
    segment_id = call.path_param("segment_id")
    _service(call).loaded(segment_id)
    return {"segment_id": segment_id, "history": call.herald.projections.segments.history(segment_id)}


async def profile_segments(call: Call) -> dict[str, Any]:
    profile_id = call.path_param("profile_id")
    as_of = _aware(call.query.as_of)
    segments = call.herald.projections.segments.segments_of(profile_id, as_of)
    return {"profile_id": profile_id, "as_of": as_of.isoformat() if as_of else None, "segments": segments}


S = "/api/v1/segments/{segment_id}"
MAX_SEGMENT_FILE_BYTES = 50 * 1024 * 1024


async def upload_segment_file(call: Call) -> Any:
    """Keep an uploaded CSV file for segments' external rules (`{"kind": "csv", "file_id": ...}`)."""
    raw: bytes = call.body
    if not raw:
        raise HttpError(422, "the body is the CSV file's bytes", "body")
    return {"file_id": call.herald.segment_files.store(raw), "bytes": len(raw)}


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/segment-files",
        upload_segment_file,
        "Upload a CSV file whose column a segment's external rule reads",
        "segments",
        status=201,
        bytes_body="text/csv",
        # what browsers and curl label a CSV file with
        accepts=("text/plain", "application/vnd.ms-excel", "application/octet-stream", CURL_DEFAULT),
        max_body=MAX_SEGMENT_FILE_BYTES,
    ),
    Endpoint(
        "POST",
        "/api/v1/segments",
        create_segment,
        "Create a segment",
        "segments",
        body=SegmentBody,
        status=201,
    ),
    Endpoint("GET", "/api/v1/segments", list_segments, "List segments", "segments", role="read"),
    Endpoint(
        "POST",
        "/api/v1/segments/validate",
        validate_segment,
        "Check a segment query without saving it (errors name the rule's path)",
        "segments",
        body=ValidateBody,
    ),
    Endpoint("GET", S, get_segment, "A segment: settings, kind, schedule, size", "segments", role="read"),
    Endpoint(
        "PUT", S, put_segment, "Replace a segment's name, query and schedule", "segments", body=SegmentPut
    ),
    Endpoint("DELETE", S, delete_segment, "Delete a segment", "segments", query=VersionQuery),
    Endpoint(
        "GET", S + "/count", count_segment, "How many profiles the segment holds now", "segments", role="read"
    ),
    Endpoint(
        "GET",
        S + "/preview",
        preview_segment,
        "A sample of the segment's profiles with their cards",
        "segments",
        query=PreviewQuery,
        role="read",
    ),
    Endpoint(
        "GET",
        S + "/members",
        segment_members,
        "The segment's members, now or as of an instant (from the membership events)",
        "segments",
        query=MembersQuery,
        role="read",
    ),
    Endpoint(
        "POST", S + "/recalculate", recalculate, "Rebuild a static segment from its query now", "segments"
    ),
    Endpoint(
        "POST",
        S + "/members",
        _edit(adding=True),
        "Add profiles to a static segment, by id or by another segment",
        "segments",
        body=EditBody,
    ),
    Endpoint(
        "POST",
        S + "/members/remove",
        _edit(adding=False),
        "Remove profiles from a static segment, by id or by another segment",
        "segments",
        body=EditBody,
    ),
    Endpoint(
        "GET", S + "/history", history, "A static segment's recalculations and edits", "segments", role="read"
    ),
    Endpoint(
        "GET",
        "/api/v1/profiles/{profile_id}/segments",
        profile_segments,
        "The segments a profile is in, now or as of an instant",
        "segments",
        query=AsOfQuery,
        role="read",
    ),
]
