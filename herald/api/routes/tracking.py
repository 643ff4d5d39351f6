"""Tracked events: Herald's batch endpoint and the Segment tracking spec's `identify`/`track`/`batch`.

A batch, parsed and held to the request limits by the endpoint layer, is first
converted whole by msgspec into `WireEvent`s (the same rules as
`TrackedEventIn`, checked in C; measured: 10,000 events in ≈ 9 ms against
≈ 40 ms for one pydantic model per row). A body msgspec refuses, for whatever
reason, is read again row by row (one pydantic model per row), so one
malformed event is reported at its index, with pydantic's wording,
while the valid ones are stored. msgspec accepts no event pydantic refuses
(`tests/api/test_tracking_api.py` holds the two to the same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError, pydantic_errors, row_error_json
from herald.api.routes.profiles import row_json
from herald.domain.errors import ValidationFailed
from herald.domain.matching import MatchMode
from herald.domain.profiles import ImportMode
from herald.domain.tracking import MAX_EVENT_NAME
from herald.services.profiles import ImportOptions
from herald.services.tracking import MAX_BATCH, TrackedEvent, TrackInput


class TrackedEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str = Field(min_length=1, max_length=MAX_EVENT_NAME, description="the action's name")
    profile: dict[str, Any] | None = Field(None, description='one match field, e.g. {"email": "ann@x.io"}')
    anonymous_id: str | None = Field(None, min_length=1, max_length=200)
    properties: dict[str, Any] = {}
    context: dict[str, Any] = {}
    at: datetime | None = Field(None, description="when it happened (default: when received)")
    event_id: str | None = Field(
        None, min_length=1, max_length=200, description="the client's id: resends are no-ops"
    )


_ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# RFC 3339 to the microsecond: the times both decoders read alike (msgspec rounds nanoseconds
# where pydantic truncates them); any other spelling goes the row-by-row way.
_RFC_3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)?$"
_Time = Annotated[str, msgspec.Meta(pattern=_RFC_3339)]


class WireEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`TrackedEventIn` for msgspec; it is also the service's `TrackedEvent` (no copy per event)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_NAME)] = msgspec.field(name="event")
    profile: dict[str, Any] | None = None
    anonymous_id: _ClientId | None = None
    properties: dict[str, Any] = {}
    context: dict[str, Any] = {}
    at_text: _Time | None = msgspec.field(name="at", default=None)
    event_id: _ClientId | None = None

    @property
    def at(self) -> datetime | None:
        return None if self.at_text is None else datetime.fromisoformat(self.at_text)


class WireBatch(msgspec.Struct):
    database_id: str
    events: Annotated[list[WireEvent], msgspec.Meta(max_length=MAX_BATCH)]


class TrackBatchBody(BaseModel):
    """Documentation shape of the batch; rows are validated one by one."""

    database_id: str
    events: list[TrackedEventIn] = Field(max_length=MAX_BATCH)


class SegmentMessage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: Literal["identify", "track"]
    user_id: str | None = Field(None, alias="userId")
    anonymous_id: str | None = Field(None, alias="anonymousId")
    event: str | None = Field(None, max_length=MAX_EVENT_NAME)
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: dict[str, Any] = {}
    timestamp: datetime | None = None
    message_id: str | None = Field(None, alias="messageId")


class SegmentBatchBody(BaseModel):
    batch: list[SegmentMessage] = Field(max_length=MAX_BATCH)


class SegmentQuery(BaseModel):
    database_id: str
    user_id_field: str = Field(
        "email", description="the match field userId is: email, phone, profile_id or a unique custom field"
    )


_ROW = TypeAdapter(TrackedEventIn)
_SEGMENT = TypeAdapter(SegmentMessage)
_BATCHES: dict[int, TypeAdapter[Any]] = {
    id(_ROW): TypeAdapter(list[TrackedEventIn]),
    id(_SEGMENT): TypeAdapter(list[SegmentMessage]),
}


def _batch_adapter(row: TypeAdapter[Any]) -> TypeAdapter[Any]:
    return _BATCHES[id(row)]


def _rows(items: Any, key: str, adapter: TypeAdapter[Any]) -> list[Any]:
    if not isinstance(items, list):
        raise HttpError(422, f"{key} must be a list", key)
    if len(items) > MAX_BATCH:
        raise HttpError(422, f"a batch holds at most {MAX_BATCH} events, not {len(items)}", key)
    try:  # the common case: every row valid, checked in one pass
        return list(_batch_adapter(adapter).validate_python(items))
    except ValidationError:
        pass
    parsed: list[Any] = []
    for item in items:
        try:
            parsed.append(adapter.validate_python(item))
        except ValidationError as error:
            first = pydantic_errors(error)[0]
            parsed.append(ValidationFailed(first["reason"], first["path"]))
    return parsed


async def track_batch(call: Call) -> dict[str, Any]:
    database_id, inputs = decode_batch(call.body)
    results = call.herald.tracking.track(database_id, inputs, call.context)
    return _summary([_located(r, f"events.{r['index']}") for r in results])


def decode_batch(body: Any) -> tuple[str, Sequence[TrackedEvent | ValidationFailed]]:
    """The batch's database and its events, or for a row that breaks a rule, its error.

    `body` is the JSON document the endpoint layer parsed and held to the request limits."""
    try:
        batch = msgspec.convert(body, WireBatch)
        for event in batch.events:
            if event.at_text is not None:
                event.at  # noqa: B018  (a date that does not exist, e.g. 30 February, raises here)
        return batch.database_id, batch.events
    except (msgspec.ValidationError, ValueError):
        pass  # read again below, row by row, to say which row is wrong and how
    if not isinstance(body, dict) or not isinstance(body.get("database_id"), str):
        raise HttpError(422, "name the profile database", "database_id")
    rows = _rows(body.get("events"), "events", _ROW)
    inputs = [
        r
        if isinstance(r, ValidationFailed)
        else TrackInput(
            name=r.event,
            at=r.at,
            profile=r.profile,
            anonymous_id=r.anonymous_id,
            properties=r.properties,
            context=r.context,
            event_id=r.event_id,
        )
        for r in rows
    ]
    return body["database_id"], inputs


def _located(result: dict[str, Any], at: str) -> dict[str, Any]:
    """A tracking result with its error (if any) rendered at `at`, the event's place in the request."""
    if result["status"] != "error":
        return result
    return {**result, "error": row_error_json(result["error"], at)}


_TRACK_OUTCOMES = ("accepted", "duplicate", "error")
# Segment batches also carry identify messages, which import a profile.
_SEGMENT_OUTCOMES = ("accepted", "duplicate", "created", "updated", "unchanged", "error")


def _summary(results: list[dict[str, Any]], outcomes: tuple[str, ...] = _TRACK_OUTCOMES) -> dict[str, Any]:
    counts = dict.fromkeys(outcomes, 0)
    for result in results:
        counts[result["status"]] += 1
    return {"counts": counts, "results": results}


async def segment_batch(call: Call) -> dict[str, Any]:
    body = call.body
    if not isinstance(body, dict):
        raise HttpError(422, 'expected {"batch": [...]}', "batch")
    return _segment(call, _rows(body.get("batch"), "batch", _SEGMENT))


async def segment_single(call: Call) -> dict[str, Any]:
    body = call.body
    if isinstance(body, dict):
        body.setdefault("type", call.request.url.path.rsplit("/", 1)[-1])
    return _segment(call, _rows([body], "body", _SEGMENT))


def _segment(call: Call, messages: list[Any]) -> dict[str, Any]:
    """Identify messages upsert profiles (traits as fields); track messages become tracked events."""
    q: SegmentQuery = call.query
    herald = call.herald
    results: list[dict[str, Any]] = [{} for _ in messages]
    # Who this batch's identify messages turned out to be: the lookup projection may not show a
    # profile created a moment ago, so the batch's track messages are resolved through this first.
    identified: dict[tuple[str, str], str] = {}
    for index, message in enumerate(messages):
        if isinstance(message, SegmentMessage) and message.type == "identify":
            results[index] = _identify(call, message, q, index)
            profile_id = results[index].get("profile_id")
            if profile_id and results[index]["status"] != "error":
                ids = (("user", message.user_id), ("anonymous", message.anonymous_id))
                identified.update({(kind, i): profile_id for kind, i in ids if i})
    tracks = [
        (index, message if isinstance(message, ValidationFailed) else _track_input(message, q, identified))
        for index, message in enumerate(messages)
        if not (isinstance(message, SegmentMessage) and message.type == "identify")
    ]
    if tracks:
        tracked = herald.tracking.track(q.database_id, [t for _, t in tracks], call.context)
        for (index, _), result in zip(tracks, tracked, strict=True):
            results[index] = _located({**result, "index": index}, f"batch.{index}")
    return _summary(results, _SEGMENT_OUTCOMES)


def _track_input(
    message: SegmentMessage, q: SegmentQuery, identified: dict[tuple[str, str], str]
) -> TrackInput | ValidationFailed:
    if not message.event:
        return ValidationFailed("a track message names its event", "event")
    profile_id = identified.get(("user", message.user_id or "")) or identified.get(
        ("anonymous", message.anonymous_id or "")
    )
    profile: dict[str, Any] | None = None
    if profile_id:
        profile = {"profile_id": profile_id}
    elif message.user_id:
        profile = {q.user_id_field: message.user_id}
    return TrackInput(
        name=message.event,
        at=message.timestamp,
        profile=profile,
        anonymous_id=message.anonymous_id,
        properties=message.properties,
        context=message.context,
        event_id=message.message_id,
    )


def _identify(call: Call, message: SegmentMessage, q: SegmentQuery, index: int) -> dict[str, Any]:
    """Upsert the profile from the traits the database has fields for; the others are listed, not stored.

    Tracking libraries send traits of their own (`createdAt`, `name`, ...): refusing
    the whole identify for them would lose the traits that do fit. A track token (the one a
    website embeds, so anyone may hold it) writes only the fields the database allows for
    tracking (`tracking_fields`, none by default, never email or phones); the rest are listed as
    `not_allowed_traits`. The user id itself only names the profile.
    """
    database = call.herald.catalog.database(q.database_id)
    row = {k: v for k, v in message.traits.items() if database.field(k) is not None}
    ignored = sorted(k for k in message.traits if k not in row)
    not_allowed: list[str] = []
    if call.role == "track":
        allowed = set(database.tracking_fields)
        not_allowed = sorted(k for k in row if database.canonical_name(k) not in allowed)
        row = {k: v for k, v in row.items() if k not in not_allowed}
    if message.user_id:
        row[q.user_id_field] = message.user_id
    mode = {"email": MatchMode.EMAIL, "phone": MatchMode.PHONE, "profile_id": MatchMode.PROFILE_ID}.get(
        q.user_id_field, MatchMode.CUSTOM
    )
    field_name = q.user_id_field if mode is MatchMode.CUSTOM else None
    options = ImportOptions(
        mode=ImportMode.ADD_AND_UPDATE, match=mode, field_name=field_name, source="segment"
    )
    result = call.herald.profiles.import_rows(q.database_id, [row], options, call.context)[0]
    result.index = index
    if message.anonymous_id and result.profile_id and not result.error:
        call.herald.tracking.link_anonymous(
            q.database_id, result.profile_id, message.anonymous_id, call.context
        )
    body = row_json(result, f"batch.{index}.traits")
    if ignored:
        body["ignored_traits"] = ignored
    if not_allowed:
        body["not_allowed_traits"] = not_allowed
    return body


async def erase_visitor(call: Call) -> dict[str, Any]:
    # GDPR erasure of a visitor no identify linked to a profile (a linked one goes with its profile)
    return call.herald.erasure.erase_visitor(call.path_param("anonymous_id"), call.context).to_json()


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/erasures/visitors/{anonymous_id}",
        erase_visitor,
        "Erase an anonymous visitor never identified as a profile (GDPR): its tracked data unreadable "
        "in the log, its goals' referrers blanked in the reports; the master's right",
        "tracking",
    ),
    Endpoint(
        "POST",
        "/api/v1/track/batch",
        track_batch,
        "Post up to 10,000 tracked events",
        "tracking",
        body=TrackBatchBody,
        role="track",
        raw_body=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/track/segment/batch",
        segment_batch,
        "Segment-spec batch of identify and track messages",
        "tracking",
        body=SegmentBatchBody,
        query=SegmentQuery,
        role="track",
        raw_body=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/track/segment/identify",
        segment_single,
        "Segment-spec identify",
        "tracking",
        body=SegmentMessage,
        query=SegmentQuery,
        role="track",
        raw_body=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/track/segment/track",
        segment_single,
        "Segment-spec track",
        "tracking",
        body=SegmentMessage,
        query=SegmentQuery,
        role="track",
        raw_body=True,
    ),
]
