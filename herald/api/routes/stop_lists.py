"""Stop lists: custom lists, entries, export, the manual membership check and the send-time check.

The built-in lists (`platform-invalid`, `platform-blacklist`, `global`) need no
creation: their first entry creates their stream, and they are listed from
then on. Changing the platform lists needs an admin token; the account global
list and custom lists need a write token.

Decisions where the guide is silent:
- Adding or removing entries takes at most 500 items per request, the guide's
  limit for one manual batch; a bigger file is sent in several requests.
- Entries added through the API are recorded with the reason `api` unless the
  body names another.
- Exports and checks read the catalog read model, which follows the log: an
  entry appears there once the processors have passed it. A single list is read
  from its stream and carries `version` (for `expected_version`).
- The send-time check also needs the profile database to exist (404 otherwise):
  its attached list is one of the levels checked.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.api.routes.catalog import VersionQuery, by_id, expected_version_field, now
from herald.domain import stop_lists as sl
from herald.domain.errors import ValidationFailed
from herald.projections.catalog import STOP_LIST

_Strict = ConfigDict(extra="forbid")
_PLATFORM_LISTS = frozenset({sl.PLATFORM_INVALID_LIST_ID, sl.PLATFORM_BLACKLIST_ID})


class StopListBody(BaseModel):
    model_config = _Strict
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()


class StopListPatch(BaseModel):
    model_config = _Strict
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    expected_version: int | None = expected_version_field()


class EntriesBody(BaseModel):
    model_config = _Strict
    items: list[str] = Field(max_length=sl.BULK_CHECK_LIMIT, description="emails, domains or phones")
    reason: sl.EntryReason = sl.EntryReason.API
    expected_version: int | None = expected_version_field()


class RemoveEntriesBody(BaseModel):
    model_config = _Strict
    items: list[str] = Field(max_length=sl.BULK_CHECK_LIMIT, description="emails, domains or phones")
    expected_version: int | None = expected_version_field()


class EntriesQuery(BaseModel):
    after: str = Field("", description="the `cursor` of the last entry of the previous page")
    limit: int = Field(1000, ge=1, le=10_000)


class CheckBody(BaseModel):
    model_config = _Strict
    items: list[str] | None = Field(None, description="up to 500 emails, domains or phones")
    text: str | None = Field(None, description="or the same as text, separated by commas, spaces or newlines")


class CheckContactBody(BaseModel):
    model_config = _Strict
    channel: str
    contact: str = Field(description="the subscription's email address or phone")
    database_id: str
    template_id: str | None = None


def _list_id(call: Call) -> str:
    """The list in the path; changing a platform list needs the admin role."""
    list_id = call.path_param("list_id")
    if list_id in _PLATFORM_LISTS and not call.principal.rights.master:
        raise HttpError(403, "the platform lists are the master's to change", "authorization")
    return list_id


def _item_json(item: sl.StopListItem) -> dict[str, str]:
    return {"kind": str(item.kind), "value": item.value}


def _change(call: Call, command: sl.StopListCommand, expected_version: int | None = None) -> dict[str, Any]:
    return call.herald.catalog.change_stop_list(command, call.context, expected_version).to_json()


async def create_stop_list(call: Call) -> dict[str, Any]:
    b: StopListBody = call.body
    at = now(call)
    list_id, outcome = call.herald.catalog.create_stop_list(
        lambda new_id: sl.CreateStopList(new_id, b.name, at, b.description, b.tags), call.context
    )
    return {"list_id": list_id, **outcome.to_json()}


async def list_stop_lists(call: Call) -> dict[str, Any]:
    catalog = call.herald.projections.catalog
    docs = by_id(catalog.objects(STOP_LIST), "list_id")
    return {
        "stop_lists": [
            {
                **{k: v for k, v in doc.items() if k != "deleted"},
                "entry_count": catalog.entry_count(doc["list_id"]),
            }
            for doc in docs
        ]
    }


async def get_stop_list(call: Call) -> dict[str, Any]:
    loaded = call.herald.catalog.stop_list(call.path_param("list_id"))
    state = loaded.state
    return {
        "list_id": state.list_id,
        "kind": state.kind,
        "name": state.name,
        "description": state.description,
        "tags": state.tags,
        "entry_count": len(state.entries),
        "version": loaded.version,
    }


async def update_stop_list(call: Call) -> dict[str, Any]:
    b: StopListPatch = call.body
    command = sl.UpdateStopList(_list_id(call), now(call), b.name, b.description, b.tags)
    return _change(call, command, b.expected_version)


async def delete_stop_list(call: Call) -> dict[str, Any]:
    return _change(call, sl.DeleteStopList(_list_id(call), now(call)), call.query.expected_version)


async def add_entries(call: Call) -> dict[str, Any]:
    b: EntriesBody = call.body
    command = sl.AddStopListEntries(_list_id(call), tuple(b.items), b.reason, now(call))
    return _change(call, command, b.expected_version)


async def remove_entries(call: Call) -> dict[str, Any]:
    b: RemoveEntriesBody = call.body
    return _change(
        call, sl.RemoveStopListEntries(_list_id(call), tuple(b.items), now(call)), b.expected_version
    )


async def clear_stop_list(call: Call) -> dict[str, Any]:
    return _change(call, sl.ClearStopList(_list_id(call), now(call)), call.query.expected_version)


async def export_entries(call: Call) -> dict[str, Any]:
    q: EntriesQuery = call.query
    list_id = call.herald.catalog.listed_stop_list(call.path_param("list_id"))["list_id"]
    entries = call.herald.projections.catalog.entries(list_id, q.after, q.limit)
    return {"entries": entries, "next_after": entries[-1]["cursor"] if len(entries) == q.limit else None}


async def check_items(call: Call) -> dict[str, Any]:
    b: CheckBody = call.body
    if (b.items is None) == (b.text is None):
        raise HttpError(422, "give the items to check as a list (items) or as text, one of the two", "items")
    list_id = call.herald.catalog.listed_stop_list(call.path_param("list_id"))["list_id"]
    items = b.items if b.items is not None else sl.parse_items(b.text or "")
    try:
        result = sl.bulk_check(call.herald.catalog.stop_list_lookup, list_id, items)
    except ValidationFailed as error:
        raise error if b.items is not None else ValidationFailed(error.reason, "text") from None
    return {
        "existing": [_item_json(i) for i in result.existing],
        "new": [_item_json(i) for i in result.new],
        "invalid": [{"position": i.position, "text": i.text, "reason": i.reason} for i in result.invalid],
    }


async def check_contact(call: Call) -> dict[str, Any]:
    b: CheckContactBody = call.body
    call.herald.catalog.database(b.database_id)
    hit = sl.check(
        call.herald.catalog.stop_list_lookup,
        channel=b.channel,
        contact=b.contact,
        database_id=b.database_id,
        template_id=b.template_id,
    )
    if hit is None:
        return {"blocked": False}
    return {"blocked": True, "level": hit.level, "list_id": hit.list_id, "entry": _item_json(hit.item)}


L = "/api/v1/stop-lists/{list_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/stop-lists",
        create_stop_list,
        "Create a custom stop list",
        "stop lists",
        body=StopListBody,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/v1/stop-lists",
        list_stop_lists,
        "List stop lists with their entry counts",
        "stop lists",
        role="read",
    ),
    Endpoint(
        "POST",
        "/api/v1/stop-lists/check-contact",
        check_contact,
        "Whether a send to a contact is stopped, and by which list (first hit in the guide's order)",
        "stop lists",
        body=CheckContactBody,
        role="read",
    ),
    Endpoint("GET", L, get_stop_list, "A stop list", "stop lists", role="read"),
    Endpoint(
        "PATCH",
        L,
        update_stop_list,
        "Rename a stop list or change its description and tags",
        "stop lists",
        body=StopListPatch,
    ),
    Endpoint("DELETE", L, delete_stop_list, "Delete a custom stop list", "stop lists", query=VersionQuery),
    Endpoint("POST", L + "/entries", add_entries, "Add up to 500 entries", "stop lists", body=EntriesBody),
    Endpoint(
        "POST",
        L + "/entries/remove",
        remove_entries,
        "Remove up to 500 entries",
        "stop lists",
        body=RemoveEntriesBody,
    ),
    Endpoint("POST", L + "/clear", clear_stop_list, "Remove every entry", "stop lists", query=VersionQuery),
    Endpoint(
        "GET",
        L + "/entries",
        export_entries,
        "Export entries, a page at a time",
        "stop lists",
        query=EntriesQuery,
        role="read",
    ),
    Endpoint(
        "POST",
        L + "/check",
        check_items,
        "Check up to 500 items: existing, new and invalid (the manual check)",
        "stop lists",
        body=CheckBody,
        role="read",
    ),
]
