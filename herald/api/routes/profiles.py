"""Profiles: create, batch import, the card, edits, statuses, subscriptions, merge, delete, history."""

from __future__ import annotations

import base64
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError, row_error_json
from herald.api.routes.events import event_json
from herald.domain import profiles as domain
from herald.domain import subscriptions as subs
from herald.domain.databases import DatabaseState
from herald.domain.errors import DomainError, ValidationFailed
from herald.domain.matching import LookupKey, MatchMode, match_key
from herald.domain.messages import message_stream
from herald.domain.profiles import ImportMode
from herald.domain.statuses import Status
from herald.domain.tracking import activity_stream, anonymous_stream
from herald.projections.profiles import SubscriberCursor
from herald.services.profiles import MAX_BATCH, ImportOptions, RowResult

_Strict = ConfigDict(extra="forbid")


class ImportBody(BaseModel):
    """A batch import: rows are flat objects of field values, each with optional `subscriptions`."""

    model_config = _Strict
    mode: ImportMode = ImportMode.ADD_AND_UPDATE
    match: MatchMode = MatchMode.EMAIL
    field_name: str | None = Field(None, description="the unique field to match by when match is 'custom'")
    ignore_empty: bool | list[str] = Field(
        False, description="true, or the fields whose empty values are ignored"
    )
    resubscribe: bool = Field(False, description="set every imported profile's global status to subscribed")
    # Any JSON per row: a row that is not an object is reported at its index, not the whole batch refused.
    rows: list[Any] = Field(max_length=MAX_BATCH, json_schema_extra={"items": {"type": "object"}})


class ProfileBody(BaseModel):
    """One profile: field values plus optional `subscriptions` (the guide's import `data` object)."""

    model_config = ConfigDict(extra="allow")


class UpsertBody(BaseModel):
    model_config = _Strict
    mode: ImportMode = ImportMode.ADD_AND_UPDATE
    match: MatchMode = MatchMode.EMAIL
    field_name: str | None = None
    ignore_empty: bool | list[str] = False
    data: dict[str, Any]


class FieldsBody(BaseModel):
    model_config = _Strict
    fields: dict[str, Any]
    expected_version: int | None = Field(
        None, description="the profile stream version you read; 409 if stale"
    )


class StatusBody(BaseModel):
    model_config = _Strict
    status: Status
    cause: subs.Cause = subs.Cause.API
    expected_version: int | None = None


class TestFlagBody(BaseModel):
    model_config = _Strict
    is_test: bool


class TrackedDataBody(BaseModel):
    model_config = _Strict
    ip: str | None = None
    city: str | None = None
    country: str | None = None
    region: str | None = None
    postal_code: str | None = None
    timezone: str | None = None
    user_agent: str | None = None


class MergeBody(BaseModel):
    model_config = _Strict
    source_profile_id: str = Field(description="the profile merged away into the one in the path")


class SubscriptionTargetBody(BaseModel):
    model_config = _Strict
    resource_id: str
    channel: str
    contact: str
    provider: str | None = None
    expected_version: int | None = None


class AddSubscriptionBody(SubscriptionTargetBody):
    status: Status | None = Field(None, description="default subscribed; 'unconfirmed' for double opt-in")
    priority: int | None = Field(None, ge=0)
    fields: dict[str, Any] = {}
    device: dict[str, Any] = {}
    categories: dict[str, subs.CategoryStatus] = {}
    ip: str | None = None


class SubscriptionStatusBody(SubscriptionTargetBody):
    status: Status
    cause: subs.Cause = subs.Cause.API


class SubscriptionPriorityBody(SubscriptionTargetBody):
    priority: int = Field(ge=0)


class SubscriptionFieldsBody(SubscriptionTargetBody):
    fields: dict[str, Any] = {}
    device: dict[str, Any] = {}


class CategoriesBody(SubscriptionTargetBody):
    categories: dict[str, subs.CategoryStatus]
    cause: subs.Cause = subs.Cause.API


class ListQuery(BaseModel):
    after: str = ""
    limit: int = Field(100, ge=1, le=1000)
    status: Status | None = None


class LookupQuery(BaseModel):
    database_id: str
    by: Literal["email", "email_profile", "phone", "push", "profile_id"] | str = Field(
        description="a key kind, or field:<name> for a unique field"
    )
    value: str


class HistoryQuery(BaseModel):
    after: int = Field(0, ge=0, description="only events after this global position")
    limit: int = Field(100, ge=1, le=1000)


class SubscribersQuery(BaseModel):
    channel: str | None = None
    status: Status | None = None
    after: str = Field("", description="the previous page's next_after")
    limit: int = Field(100, ge=1, le=1000)


def _ignore(value: bool | list[str]) -> bool | frozenset[str]:
    return value if isinstance(value, bool) else frozenset(value)


async def import_profiles(call: Call) -> dict[str, Any]:
    body: ImportBody = call.body
    options = ImportOptions(
        mode=body.mode,
        match=body.match,
        field_name=body.field_name,
        ignore_empty=_ignore(body.ignore_empty),
        resubscribe=body.resubscribe,
    )
    results = call.herald.profiles.import_rows(
        call.path_param("database_id"), body.rows, options, call.context
    )
    counts = {k: 0 for k in ("created", "updated", "unchanged", "error")}
    for result in results:
        counts[result.status] += 1
    return {"counts": counts, "results": [row_json(r, f"rows.{r.index}") for r in results]}


def row_json(result: RowResult, at: str) -> dict[str, Any]:
    """One import row's result; its error located at `at` (the row's place in the request)."""
    body: dict[str, Any] = {"index": result.index, "status": result.status}
    if result.profile_id:
        body["profile_id"] = result.profile_id
    if result.error:
        body["error"] = row_error_json(result.error, at)
    return body


async def create_profile(call: Call) -> dict[str, Any]:
    row = call.body.model_dump()
    result = call.herald.profiles.create(call.path_param("database_id"), row, call.context)
    return {"profile_id": result.profile_id, "status": result.status}


async def upsert_profile(call: Call) -> dict[str, Any]:
    body: UpsertBody = call.body
    options = ImportOptions(
        mode=body.mode,
        match=body.match,
        field_name=body.field_name,
        ignore_empty=_ignore(body.ignore_empty),
        source="api",
        cause=subs.Cause.API,
    )
    result = call.herald.profiles.upsert(call.path_param("database_id"), body.data, options, call.context)
    return {"profile_id": result.profile_id, "status": result.status}


async def list_profiles(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    database_id = call.path_param("database_id")
    call.herald.catalog.database(database_id)
    found = call.herald.projections.profiles.list_profiles(
        database_id, q.after, q.limit, str(q.status) if q.status else None
    )
    return {"profiles": found, "next_after": found[-1]["profile_id"] if len(found) == q.limit else None}


def _card(call: Call) -> dict[str, Any]:
    profile_id = call.path_param("profile_id")
    card = call.herald.projections.profiles.card(profile_id)
    if card is None or card["deleted"] or card["merged_into"]:
        raise HttpError(404, f"no profile {profile_id!r}", "profile_id")
    return card


async def get_profile(call: Call) -> dict[str, Any]:
    return _card(call)


# A lookup is read as a one-field import row (mode, the row's field), so its value is
# normalised exactly as the stored keys were.
_LOOKUP_MODES = {
    "email": (MatchMode.EMAIL, "email"),
    "email_profile": (MatchMode.EMAIL_PROFILE, "email"),
    "phone": (MatchMode.PHONE, "phones"),
}


def _lookup_key(database: DatabaseState, by: str, value: str) -> LookupKey | None:
    """The key a lookup names: emails case-folded, phones in E.164, unique fields in stored form."""
    field_name = by.removeprefix("field:") if by.startswith("field:") else None
    if field_name is not None:
        mode, name = MatchMode.CUSTOM, field_name
    elif by in _LOOKUP_MODES:
        mode, name = _LOOKUP_MODES[by]
    else:
        return LookupKey(by, value.strip())
    try:
        return match_key(mode, field_name, {name: value}, database)
    except DomainError as error:
        raise ValidationFailed(error.reason, "by" if error.path == "field_name" else "value") from None


async def lookup_profiles(call: Call) -> dict[str, Any]:
    q: LookupQuery = call.query
    key = _lookup_key(call.herald.catalog.database(q.database_id), q.by, q.value)
    ids = call.herald.projections.profiles.resolve(q.database_id, [key]).get(key, []) if key else []
    return {"profiles": [call.herald.projections.profiles.card(i) for i in ids]}


async def update_profile(call: Call) -> dict[str, Any]:
    body: FieldsBody = call.body
    outcome = call.herald.profiles.update_fields(
        call.path_param("profile_id"), body.fields, call.context, body.expected_version
    )
    return outcome.to_json()


def _run(call: Call, command: Any, expected_version: int | None = None) -> dict[str, Any]:
    profile_id = call.path_param("profile_id")
    call.herald.profiles.state(profile_id)  # 404 for unknown or deleted profiles
    return call.herald.profiles.execute(profile_id, command, call.context, expected_version).to_json()


def _now(call: Call) -> Any:
    return call.herald.clock.now()


async def change_status(call: Call) -> dict[str, Any]:
    b: StatusBody = call.body
    return _run(
        call,
        domain.ChangeGlobalStatus(call.path_param("profile_id"), b.status, _now(call), b.cause),
        b.expected_version,
    )


async def set_test(call: Call) -> dict[str, Any]:
    return _run(call, domain.SetTestSubscriber(call.path_param("profile_id"), call.body.is_test, _now(call)))


async def record_tracked(call: Call) -> dict[str, Any]:
    return _run(
        call, domain.RecordTrackedData(call.path_param("profile_id"), _now(call), **call.body.model_dump())
    )


async def delete_profile(call: Call) -> dict[str, Any]:
    # Deleting releases the unique values (email, unique fields) for other profiles; 404 if none.
    return call.herald.profiles.delete(call.path_param("profile_id"), call.context).to_json()


async def erase_profile(call: Call) -> dict[str, Any]:
    # GDPR erasure: deleted, its key destroyed, every copy of its data outside the log scrubbed
    return call.herald.erasure.erase(call.path_param("profile_id"), call.context).to_json()


async def merge_profiles(call: Call) -> dict[str, Any]:
    outcomes = call.herald.profiles.merge(
        call.body.source_profile_id, call.path_param("profile_id"), call.context
    )
    return {"streams": [o.to_json() for o in outcomes]}


def _target(call: Call, body: SubscriptionTargetBody) -> dict[str, Any]:
    return {
        "resource_id": body.resource_id,
        "channel": body.channel,
        "contact": body.contact,
        "provider": body.provider,
        "at": _now(call),
    }


async def add_subscription(call: Call) -> dict[str, Any]:
    b: AddSubscriptionBody = call.body
    resource = call.herald.catalog.resource(b.resource_id)
    command = subs.AddSubscription(
        **_target(call, b),
        resource=resource,
        status=b.status,
        priority=b.priority,
        fields=b.fields,
        device=b.device,
        categories=b.categories,
        ip=b.ip,
    )
    return _run(call, command, b.expected_version)


async def subscription_status(call: Call) -> dict[str, Any]:
    b: SubscriptionStatusBody = call.body
    return _run(
        call,
        subs.ChangeSubscriptionStatus(**_target(call, b), status=b.status, cause=b.cause),
        b.expected_version,
    )


async def subscription_priority(call: Call) -> dict[str, Any]:
    b: SubscriptionPriorityBody = call.body
    return _run(
        call, subs.ChangeSubscriptionPriority(**_target(call, b), priority=b.priority), b.expected_version
    )


async def subscription_fields(call: Call) -> dict[str, Any]:
    b: SubscriptionFieldsBody = call.body
    resource = call.herald.catalog.resource(b.resource_id)
    command = subs.UpdateSubscriptionFields(
        **_target(call, b), resource=resource, fields=b.fields, device=b.device
    )
    return _run(call, command, b.expected_version)


async def subscription_categories(call: Call) -> dict[str, Any]:
    b: CategoriesBody = call.body
    resource = call.herald.catalog.resource(b.resource_id)
    command = subs.ChangeCategorySubscription(
        **_target(call, b), resource=resource, categories=b.categories, cause=b.cause
    )
    return _run(call, command, b.expected_version)


async def confirm_subscription(call: Call) -> dict[str, Any]:
    b: SubscriptionTargetBody = call.body
    return _run(call, subs.ConfirmSubscription(**_target(call, b)), b.expected_version)


async def remove_subscription(call: Call) -> dict[str, Any]:
    b: SubscriptionTargetBody = call.body
    return _run(call, subs.RemoveSubscription(**_target(call, b)), b.expected_version)


async def history(call: Call) -> dict[str, Any]:
    """The profile's own events, its activity (tracked events, linked anonymous visits) and its
    messages' events (decided, sent, delivered, opened, clicked...), by position."""
    q: HistoryQuery = call.query
    card = _card(call)
    profile_id = card["profile_id"]
    store = call.herald.store
    projections = call.herald.projections
    streams = [
        domain.profile_stream(profile_id),
        activity_stream(profile_id),
        *(anonymous_stream(a) for a in projections.profiles.anonymous_ids_of(profile_id)),
        *(message_stream(m) for m in projections.campaigns.messages_of(profile_id)),
    ]
    events = sorted(
        (e for s in streams for e in store.read_stream(s) if e.position > q.after), key=lambda e: e.position
    )[: q.limit]
    return {
        "profile_id": profile_id,
        "events": [event_json(e) for e in events],
        "next_after": events[-1].position if len(events) == q.limit else None,
    }


def _subscriber_cursor(row: dict[str, Any]) -> str:
    key = [row["profile_id"], row["channel"], row["contact"], row["provider"]]
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode()


def _after_subscriber(cursor: str) -> SubscriberCursor | None:
    if not cursor:
        return None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, orjson.JSONDecodeError):
        key = None
    if not (isinstance(key, list) and len(key) == 4 and all(isinstance(k, str) for k in key)):
        raise HttpError(422, "after is the next_after of the previous page", "after")
    return (key[0], key[1], key[2], key[3])


async def subscribers(call: Call) -> dict[str, Any]:
    q: SubscribersQuery = call.query
    resource_id = call.path_param("resource_id")
    call.herald.catalog.resource(resource_id)
    rows = call.herald.projections.profiles.subscribers(
        resource_id, q.channel, str(q.status) if q.status else None, _after_subscriber(q.after), q.limit
    )
    return {"subscribers": rows, "next_after": _subscriber_cursor(rows[-1]) if len(rows) == q.limit else None}


P = "/api/v1/profiles/{profile_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/databases/{database_id}/profiles",
        create_profile,
        "Create a profile",
        "profiles",
        body=ProfileBody,
        status=201,
    ),
    Endpoint(
        "POST",
        "/api/v1/databases/{database_id}/profiles/upsert",
        upsert_profile,
        "Import one profile (add and update, add only, or update only)",
        "profiles",
        body=UpsertBody,
    ),
    Endpoint(
        "POST",
        "/api/v1/databases/{database_id}/profiles/import",
        import_profiles,
        "Batch import of up to 10,000 profiles; a result per row",
        "profiles",
        body=ImportBody,
    ),
    Endpoint(
        "GET",
        "/api/v1/databases/{database_id}/profiles",
        list_profiles,
        "List a database's profiles",
        "profiles",
        query=ListQuery,
        role="read",
    ),
    Endpoint(
        "GET",
        "/api/v1/profiles/lookup",
        lookup_profiles,
        "Find profiles by email, phone or match key",
        "profiles",
        query=LookupQuery,
        role="read",
    ),
    Endpoint("GET", P, get_profile, "The profile card", "profiles", role="read"),
    Endpoint("PATCH", P, update_profile, "Change profile fields", "profiles", body=FieldsBody),
    Endpoint("DELETE", P, delete_profile, "Delete a profile", "profiles"),
    Endpoint(
        "POST",
        P + "/erase",
        erase_profile,
        "Erase a profile for good (GDPR): its personal data unreadable in the log, gone everywhere else",
        "profiles",
    ),
    Endpoint("PUT", P + "/status", change_status, "Change the global status", "profiles", body=StatusBody),
    Endpoint(
        "PUT", P + "/test", set_test, "Mark or unmark as a test subscriber", "profiles", body=TestFlagBody
    ),
    Endpoint(
        "POST",
        P + "/tracked-data",
        record_tracked,
        "Record the last action's tracked data",
        "profiles",
        body=TrackedDataBody,
    ),
    Endpoint(
        "POST",
        P + "/merge",
        merge_profiles,
        "Merge another profile into this one",
        "profiles",
        body=MergeBody,
    ),
    Endpoint(
        "GET",
        P + "/history",
        history,
        "The profile's history: its events, activity and messages",
        "profiles",
        query=HistoryQuery,
        role="read",
    ),
    Endpoint(
        "POST",
        P + "/subscriptions",
        add_subscription,
        "Add (or update) a subscription",
        "subscriptions",
        body=AddSubscriptionBody,
    ),
    Endpoint(
        "POST",
        P + "/subscriptions/status",
        subscription_status,
        "Change a subscription's status",
        "subscriptions",
        body=SubscriptionStatusBody,
    ),
    Endpoint(
        "POST",
        P + "/subscriptions/priority",
        subscription_priority,
        "Change a subscription's priority",
        "subscriptions",
        body=SubscriptionPriorityBody,
    ),
    Endpoint(
        "POST",
        P + "/subscriptions/fields",
        subscription_fields,
        "Change a subscription's fields",
        "subscriptions",
        body=SubscriptionFieldsBody,
    ),
    Endpoint(
        "POST",
        P + "/subscriptions/categories",
        subscription_categories,
        "Subscribe or unsubscribe categories",
        "subscriptions",
        body=CategoriesBody,
    ),
    Endpoint(
        "POST",
        P + "/subscriptions/confirm",
        confirm_subscription,
        "Confirm a double opt-in subscription",
        "subscriptions",
        body=SubscriptionTargetBody,
    ),
    Endpoint(
        "POST",
        P + "/subscriptions/remove",
        remove_subscription,
        "Remove a subscription",
        "subscriptions",
        body=SubscriptionTargetBody,
    ),
    Endpoint(
        "GET",
        "/api/v1/resources/{resource_id}/subscribers",
        subscribers,
        "A resource's subscribers by channel and status",
        "subscriptions",
        query=SubscribersQuery,
        role="read",
    ),
]
