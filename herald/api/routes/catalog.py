"""Profile databases and resources: create, list, read, change, clone, delete.

Commands answer with the events' ids and the stream's new version, plus the new
object's id on create. `expected_version` (in the body, or the query of a
DELETE) makes a command fail with 409 if the stream moved on since it was read;
single objects are read from their streams and carry `version`, the value to
send. Errors name the field as the request spells it.

Decisions where the guide is silent:
- PATCH changes only the keys given; `null` leaves a setting as it is, except
  a resource's `sending_policy_id`, where it removes the policy. A database's
  `email` block is merged key by key.
- `PUT /databases/{id}/fields/{name}` changes the keys given (title, options,
  default, required, in_subscription_manager); `null` clears the default; the
  type and uniqueness may be repeated but not changed. `PUT
  .../standard-fields/{name}` sets the whole configuration, as the form does.
- `PUT /resources/{id}/channels/{channel}` enables the channel or replaces its
  settings; the body is the channel's settings, its `kind` implied by the path.
- The databases a resource names must exist (404 at `database_ids.<i>`); a
  database may be created with a custom stop list attached.
- Lists are read from the catalog read model (eventually consistent), by id
  in numeric order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from herald.api.channel_input import (
    CHANNEL_MODELS_IN,
    ChannelSettingsIn,
    CustomChannelIn,
    sealed_channel,
    shown_channel,
)
from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain import databases as db
from herald.domain import resources as rs
from herald.domain.fields import STANDARD_FIELDS, FieldDefinition, FieldType
from herald.domain.statuses import Status
from herald.projections.catalog import DATABASE, RESOURCE
from herald.services.catalog import Step

_Strict = ConfigDict(extra="forbid")


def expected_version_field() -> Any:
    """The optional `expected_version` every command body offers."""
    return Field(None, ge=0, description="the stream version you read (`version`); 409 if it moved on")


class VersionQuery(BaseModel):
    expected_version: int | None = expected_version_field()


def model_of(model: type[BaseModel], body: BaseModel) -> Any:
    """The domain value a body (a domain model plus `expected_version`) carries."""
    return model.model_validate(body.model_dump(exclude={"expected_version"}))


def values_of(body: BaseModel, *names: str) -> dict[str, Any]:
    """The body's values for `names` as validated (nested models stay models)."""
    return {name: getattr(body, name) for name in names}


def by_id(docs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Documents in id order, numbers numerically ("2" before "10")."""
    return sorted(docs, key=lambda d: (len(d[key]), d[key]) if d[key].isdigit() else (1_000_000, d[key]))


def now(call: Call) -> Any:
    return call.herald.clock.now()


# --- databases ---------------------------------------------------------------------------------


_TRACKING_FIELDS = (
    "the fields a track-role token (the one a website embeds) may write through identify; "
    "none by default, never email or phones"
)


class DatabaseBody(BaseModel):
    model_config = _Strict
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    subscription_manager_title: str = Field(
        "", description="shown on the subscription manager; blank: the name"
    )
    subscription_manager_language: str = "en"
    stop_list_id: str | None = Field(None, description="a custom stop list to attach")
    is_watchers: bool = False
    email: db.EmailDefaults = db.EmailDefaults()
    standard_fields: dict[str, db.StandardFieldConfig] = Field(
        default_factory=dict, description="standard field (name or alias) → its configuration"
    )
    custom_fields: tuple[FieldDefinition, ...] = ()
    tracking_fields: tuple[str, ...] = Field((), description=_TRACKING_FIELDS)


class DatabasePatch(BaseModel):
    model_config = _Strict
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    subscription_manager_title: str | None = None
    subscription_manager_language: str | None = None
    is_watchers: bool | None = None
    email: db.EmailDefaults | None = Field(None, description="the keys given replace the current ones")
    tracking_fields: tuple[str, ...] | None = Field(None, description=_TRACKING_FIELDS)
    expected_version: int | None = expected_version_field()


class NewFieldBody(FieldDefinition):
    """A field definition."""

    expected_version: int | None = expected_version_field()


class FieldChangesBody(BaseModel):
    model_config = _Strict
    title: str | None = None
    type: FieldType | None = Field(None, description="cannot change; may be repeated")
    options: tuple[str, ...] | None = None
    default: JsonValue = Field(None, description="null clears the default")
    required: bool | None = None
    unique: bool | None = Field(None, description="cannot change; may be repeated")
    in_subscription_manager: bool | None = None
    expected_version: int | None = expected_version_field()


class StandardFieldBody(db.StandardFieldConfig):
    """A standard field's whole configuration."""

    expected_version: int | None = expected_version_field()


class AttachStopListBody(BaseModel):
    model_config = _Strict
    stop_list_id: str
    expected_version: int | None = expected_version_field()


class CloneBody(BaseModel):
    model_config = _Strict
    name: str | None = Field(None, description="default: the source's name with ' (copy)'")


_DATABASE_DOC = TypeAdapter(db.DatabaseState)
_DATABASE_KEYS = (
    "database_id",
    "name",
    "description",
    "tags",
    "subscription_manager_title",
    "subscription_manager_language",
    "stop_list_id",
    "is_watchers",
    "email",
    "cloned_from",
    "created_at",
    "updated_at",
)


def _database_json(call: Call, doc: dict[str, Any]) -> dict[str, Any]:
    counts = call.herald.projections.profiles.status_counts(doc["database_id"])
    profiles = {str(s): counts.get(str(s), 0) for s in Status}
    return {
        **{k: doc[k] for k in _DATABASE_KEYS},
        # a read-model document written before the allow-list existed has none
        "tracking_fields": doc.get("tracking_fields", []),
        "profiles": {**profiles, "total": sum(profiles.values())},
    }


def _field_json(definition: FieldDefinition) -> dict[str, Any]:
    return {**definition.model_dump(mode="json"), "standard": definition.name in STANDARD_FIELDS}


async def create_database(call: Call) -> dict[str, Any]:
    b: DatabaseBody = call.body
    if b.stop_list_id is not None:
        call.herald.catalog.ensure_attachable(b.stop_list_id)
    at = now(call)
    given = values_of(b, *DatabaseBody.model_fields)
    database_id, outcome = call.herald.catalog.create_database(
        lambda new_id: db.CreateDatabase(database_id=new_id, at=at, **given), call.context
    )
    return {"database_id": database_id, **outcome.to_json()}


async def list_databases(call: Call) -> dict[str, Any]:
    docs = by_id(call.herald.projections.catalog.objects(DATABASE), "database_id")
    return {"databases": [_database_json(call, doc) for doc in docs]}


async def get_database(call: Call) -> dict[str, Any]:
    loaded = call.herald.catalog.loaded_database(call.path_param("database_id"))
    doc = _DATABASE_DOC.dump_python(loaded.state, mode="json")
    return {
        **_database_json(call, doc),
        "fields": [_field_json(f) for f in loaded.state.fields()],
        "version": loaded.version,
    }


def _change_database(call: Call, plan: Any, expected_version: int | None) -> dict[str, Any]:
    database_id = call.path_param("database_id")
    return call.herald.catalog.change_database(database_id, plan, call.context, expected_version).to_json()


async def update_database(call: Call) -> dict[str, Any]:
    b: DatabasePatch = call.body
    database_id, at = call.path_param("database_id"), now(call)
    settings = values_of(
        b, *(n for n in DatabasePatch.model_fields if n not in ("email", "expected_version"))
    )

    def plan(state: db.DatabaseState) -> list[Any]:
        email = (
            None if b.email is None else state.email.model_copy(update=b.email.model_dump(exclude_unset=True))
        )
        return [db.UpdateDatabase(database_id=database_id, at=at, email=email, **settings)]

    return _change_database(call, plan, b.expected_version)


async def add_custom_field(call: Call) -> dict[str, Any]:
    b: NewFieldBody = call.body
    command = db.AddCustomField(call.path_param("database_id"), model_of(FieldDefinition, b), now(call))
    return _change_database(call, lambda _: [Step(command, roots={"field": ""})], b.expected_version)


async def update_custom_field(call: Call) -> dict[str, Any]:
    b: FieldChangesBody = call.body
    database_id, name, at = call.path_param("database_id"), call.path_param("name"), now(call)
    changes = {
        k: getattr(b, k)
        for k in b.model_fields_set - {"expected_version"}
        if getattr(b, k) is not None or k == "default"
    }

    def plan(state: db.DatabaseState) -> list[Any]:
        current = state.custom.get(state.canonical_name(name) or "")
        # An unknown field is the domain's to refuse, so the placeholder type only carries the name there.
        base = current.model_dump() if current else {"name": name, "type": b.type or FieldType.STRING}
        definition = FieldDefinition.model_validate({**base, **changes})
        return [Step(db.UpdateCustomField(database_id, definition, at), roots={"field": ""})]

    return _change_database(call, plan, b.expected_version)


async def remove_custom_field(call: Call) -> dict[str, Any]:
    command = db.RemoveCustomField(call.path_param("database_id"), call.path_param("name"), now(call))
    return _change_database(call, lambda _: [command], call.query.expected_version)


async def configure_standard_field(call: Call) -> dict[str, Any]:
    b: StandardFieldBody = call.body
    command = db.ConfigureStandardField(
        call.path_param("database_id"),
        call.path_param("name"),
        model_of(db.StandardFieldConfig, b),
        now(call),
    )
    return _change_database(call, lambda _: [Step(command, roots={"config": ""})], b.expected_version)


async def attach_stop_list(call: Call) -> dict[str, Any]:
    b: AttachStopListBody = call.body
    database_id = call.path_param("database_id")
    call.herald.catalog.database(database_id)
    call.herald.catalog.ensure_attachable(b.stop_list_id)
    command = db.AttachStopList(database_id, b.stop_list_id, now(call))
    return _change_database(call, lambda _: [command], b.expected_version)


async def detach_stop_list(call: Call) -> dict[str, Any]:
    command = db.DetachStopList(call.path_param("database_id"), now(call))
    return _change_database(call, lambda _: [command], call.query.expected_version)


async def clone_database(call: Call) -> dict[str, Any]:
    source = call.herald.catalog.database(call.path_param("database_id"))
    at, name = now(call), call.body.name
    database_id, outcome = call.herald.catalog.create_database(
        lambda new_id: db.clone_database(source, new_id, at, name), call.context
    )
    return {"database_id": database_id, "cloned_from": source.database_id, **outcome.to_json()}


async def delete_database(call: Call) -> dict[str, Any]:
    command = db.DeleteDatabase(call.path_param("database_id"), now(call))
    return _change_database(call, lambda _: [command], call.query.expected_version)


# --- resources ---------------------------------------------------------------------------------


class ResourceBody(rs.ResourceSettings):
    """A resource: its basic settings, and optionally its channels, categories,
    subscription fields and unsubscribe policy, created in one step."""

    channels: tuple[ChannelSettingsIn, ...] = ()
    categories: tuple[rs.Category, ...] = ()
    subscription_fields: dict[str, tuple[FieldDefinition, ...]] = Field(
        default_factory=dict, description="channel → the fields of its subscriptions"
    )
    unsubscribe_policy: rs.UnsubscribePolicy | None = None


class ResourcePatch(BaseModel):
    model_config = _Strict
    name: str | None = None
    database_ids: tuple[str, ...] | None = None
    source_urls: tuple[str, ...] | None = None
    default_tracking_domain: str | None = None
    description: str | None = None
    sending_policy_id: str | None = Field(None, description="null removes the policy")
    raise_priority_for_new_subscriptions: bool | None = None
    expected_version: int | None = expected_version_field()


class ChannelBody(BaseModel):
    """The channel's settings, `kind` implied by the path: email {from_name, from_email, list_id,
    reply_to_name, reply_to_email}; sms {caller_id}; push {platforms, providers, firebase_api_key
    (write-only)}; any other channel {options, secrets (write-only)}."""

    model_config = ConfigDict(extra="allow")
    expected_version: int | None = expected_version_field()


class CategoryBody(rs.Category):
    """A category."""

    expected_version: int | None = expected_version_field()


class CategoryPatch(BaseModel):
    model_config = _Strict
    title: str | None = None
    in_subscription_manager: bool | None = None
    mandatory: bool | None = None
    expected_version: int | None = expected_version_field()


class PolicyBody(rs.UnsubscribePolicy):
    """The unsubscribe policy."""

    expected_version: int | None = expected_version_field()


_RESOURCE_DOC = TypeAdapter(rs.ResourceState)


def _resource_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A resource in the shape `POST /resources` takes, plus its id and token."""
    return {
        "resource_id": doc["resource_id"],
        "token": doc["token"],
        **doc["settings"],
        "channels": [shown_channel(c) for c in doc["channels"].values()],
        "categories": list(doc["categories"].values()),
        "subscription_fields": {channel: list(f.values()) for channel, f in doc["fields"].items()},
        "unsubscribe_policy": doc["unsubscribe_policy"],
    }


def _check_databases(call: Call, database_ids: tuple[str, ...]) -> None:
    for i, database_id in enumerate(database_ids):
        call.herald.catalog.database(database_id, f"database_ids.{i}")


def _change_resource(call: Call, plan: Any, expected_version: int | None) -> dict[str, Any]:
    resource_id = call.path_param("resource_id")
    return call.herald.catalog.change_resource(resource_id, plan, call.context, expected_version).to_json()


async def create_resource(call: Call) -> dict[str, Any]:
    b: ResourceBody = call.body
    _check_databases(call, b.database_ids)
    settings = rs.ResourceSettings(**values_of(b, *rs.ResourceSettings.model_fields))

    def plan_for(resource_id: str, token: str) -> Any:
        channels = tuple(sealed_channel(call.herald.box, resource_id, c, None) for c in b.channels)
        steps: list[Any] = [rs.CreateResource(resource_id, token, settings, channels)]
        steps += [
            Step(rs.AddCategory(resource_id, category), prefix=f"categories.{i}")
            for i, category in enumerate(b.categories)
        ]
        for channel, definitions in b.subscription_fields.items():
            at = f"subscription_fields.{channel}"
            steps += [
                Step(
                    rs.DefineSubscriptionField(resource_id, channel, d),
                    roots={"field": f"{at}.{j}", "channel": at},
                )
                for j, d in enumerate(definitions)
            ]
        if b.unsubscribe_policy is not None:
            policy = rs.ConfigureUnsubscribePolicy(resource_id, b.unsubscribe_policy)
            steps.append(Step(policy, prefix="unsubscribe_policy"))
        return lambda _: steps

    resource_id, outcome = call.herald.catalog.create_resource(plan_for, call.context)
    return {"resource_id": resource_id, **outcome.to_json()}


async def list_resources(call: Call) -> dict[str, Any]:
    docs = by_id(call.herald.projections.catalog.objects(RESOURCE), "resource_id")
    return {"resources": [_resource_json(doc) for doc in docs]}


async def get_resource(call: Call) -> dict[str, Any]:
    loaded = call.herald.catalog.loaded_resource(call.path_param("resource_id"))
    return {**_resource_json(_RESOURCE_DOC.dump_python(loaded.state, mode="json")), "version": loaded.version}


async def update_resource(call: Call) -> dict[str, Any]:
    b: ResourcePatch = call.body
    resource_id = call.path_param("resource_id")
    call.herald.catalog.resource(resource_id)
    if b.database_ids is not None:
        _check_databases(call, b.database_ids)
    given = {
        k: v
        for k, v in b.model_dump(exclude_unset=True, exclude={"expected_version"}).items()
        if v is not None or k == "sending_policy_id"
    }

    def plan(state: rs.ResourceState) -> list[Any]:
        current = state.settings.model_dump() if state.settings else {}  # a resource, once created, has them
        return [rs.UpdateResource(resource_id, rs.ResourceSettings.model_validate({**current, **given}))]

    return _change_resource(call, plan, b.expected_version)


def _channel_settings(channel: str, given: dict[str, Any]) -> Any:
    """The body as the channel's input model (credentials still in clear)."""
    model = CHANNEL_MODELS_IN.get(channel, CustomChannelIn)
    custom = model is CustomChannelIn
    implied = {"kind": "custom", "name": channel} if custom else {"kind": channel}
    settings = model.model_validate({**implied, **given})
    if settings.channel != channel:
        raise HttpError(
            422, f"these are the settings of channel {settings.channel!r}, not {channel!r}", "name"
        )
    return settings


async def put_channel(call: Call) -> dict[str, Any]:
    b: ChannelBody = call.body
    resource_id = call.path_param("resource_id")
    given = _channel_settings(call.path_param("channel"), dict(b.model_extra or {}))

    def plan(state: rs.ResourceState) -> list[Any]:
        settings = sealed_channel(call.herald.box, resource_id, given, state.channels.get(given.channel))
        enabled = state.channel_enabled(settings.channel)
        return [(rs.UpdateChannel if enabled else rs.EnableChannel)(resource_id, settings)]

    return _change_resource(call, plan, b.expected_version)


async def disable_channel(call: Call) -> dict[str, Any]:
    command = rs.DisableChannel(call.path_param("resource_id"), call.path_param("channel"))
    return _change_resource(call, lambda _: [command], call.query.expected_version)


async def define_subscription_field(call: Call) -> dict[str, Any]:
    b: NewFieldBody = call.body
    command = rs.DefineSubscriptionField(
        call.path_param("resource_id"), call.path_param("channel"), model_of(FieldDefinition, b)
    )
    return _change_resource(call, lambda _: [Step(command, roots={"field": ""})], b.expected_version)


async def remove_subscription_field(call: Call) -> dict[str, Any]:
    command = rs.RemoveSubscriptionField(
        call.path_param("resource_id"), call.path_param("channel"), call.path_param("name")
    )
    return _change_resource(call, lambda _: [command], call.query.expected_version)


async def add_category(call: Call) -> dict[str, Any]:
    b: CategoryBody = call.body
    command = rs.AddCategory(call.path_param("resource_id"), model_of(rs.Category, b))
    return _change_resource(call, lambda _: [command], b.expected_version)


async def update_category(call: Call) -> dict[str, Any]:
    b: CategoryPatch = call.body
    resource_id, api_name = call.path_param("resource_id"), call.path_param("api_name")

    def plan(state: rs.ResourceState) -> list[Any]:
        steps: list[Any] = []
        if b.title is not None:
            steps.append(rs.RenameCategory(resource_id, api_name, b.title))
        if b.in_subscription_manager is not None or b.mandatory is not None:
            # An unknown category is the domain's to refuse; the fallbacks only fill the command.
            current = state.category(api_name) or rs.Category(api_name=api_name, title=api_name)
            options = rs.ChangeCategoryOptions(
                resource_id,
                api_name,
                in_subscription_manager=_given(b.in_subscription_manager, current.in_subscription_manager),
                mandatory=_given(b.mandatory, current.mandatory),
            )
            steps.append(options)
        return steps

    return _change_resource(call, plan, b.expected_version)


def _given(value: bool | None, current: bool) -> bool:
    return current if value is None else value


async def remove_category(call: Call) -> dict[str, Any]:
    command = rs.RemoveCategory(call.path_param("resource_id"), call.path_param("api_name"))
    return _change_resource(call, lambda _: [command], call.query.expected_version)


async def configure_unsubscribe_policy(call: Call) -> dict[str, Any]:
    b: PolicyBody = call.body
    command = rs.ConfigureUnsubscribePolicy(call.path_param("resource_id"), model_of(rs.UnsubscribePolicy, b))
    return _change_resource(call, lambda _: [command], b.expected_version)


async def delete_resource(call: Call) -> dict[str, Any]:
    command = rs.DeleteResource(call.path_param("resource_id"))
    return _change_resource(call, lambda _: [command], call.query.expected_version)


D = "/api/v1/databases/{database_id}"
R = "/api/v1/resources/{resource_id}"
CH = R + "/channels/{channel}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/databases",
        create_database,
        "Create a profile database",
        "databases",
        body=DatabaseBody,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/v1/databases",
        list_databases,
        "List profile databases with profile counters",
        "databases",
        role="read",
    ),
    Endpoint("GET", D, get_database, "A database's settings and fields", "databases", role="read"),
    Endpoint("PATCH", D, update_database, "Change a database's settings", "databases", body=DatabasePatch),
    Endpoint(
        "POST",
        D + "/clone",
        clone_database,
        "Clone a database (settings and fields, no profiles)",
        "databases",
        body=CloneBody,
        status=201,
    ),
    Endpoint("DELETE", D, delete_database, "Delete a database", "databases", query=VersionQuery),
    Endpoint(
        "POST",
        D + "/fields",
        add_custom_field,
        "Add a custom field",
        "databases",
        body=NewFieldBody,
        status=201,
    ),
    Endpoint(
        "PUT",
        D + "/fields/{name}",
        update_custom_field,
        "Change a custom field",
        "databases",
        body=FieldChangesBody,
    ),
    Endpoint(
        "DELETE",
        D + "/fields/{name}",
        remove_custom_field,
        "Remove a custom field",
        "databases",
        query=VersionQuery,
    ),
    Endpoint(
        "PUT",
        D + "/standard-fields/{name}",
        configure_standard_field,
        "Configure a standard field",
        "databases",
        body=StandardFieldBody,
    ),
    Endpoint(
        "PUT",
        D + "/stop-list",
        attach_stop_list,
        "Attach a custom stop list (email sends)",
        "databases",
        body=AttachStopListBody,
    ),
    Endpoint(
        "DELETE",
        D + "/stop-list",
        detach_stop_list,
        "Detach the database's stop list",
        "databases",
        query=VersionQuery,
    ),
    Endpoint(
        "POST",
        "/api/v1/resources",
        create_resource,
        "Create a resource with its channels, categories, subscription fields and unsubscribe policy",
        "resources",
        body=ResourceBody,
        status=201,
    ),
    Endpoint("GET", "/api/v1/resources", list_resources, "List resources", "resources", role="read"),
    Endpoint("GET", R, get_resource, "A resource's settings", "resources", role="read"),
    Endpoint(
        "PATCH", R, update_resource, "Change a resource's basic settings", "resources", body=ResourcePatch
    ),
    Endpoint("DELETE", R, delete_resource, "Delete a resource", "resources", query=VersionQuery),
    Endpoint(
        "PUT", CH, put_channel, "Enable a channel or replace its settings", "resources", body=ChannelBody
    ),
    Endpoint("DELETE", CH, disable_channel, "Disable a channel", "resources", query=VersionQuery),
    Endpoint(
        "POST",
        CH + "/fields",
        define_subscription_field,
        "Define a subscription field on a channel (or change its title and options)",
        "resources",
        body=NewFieldBody,
    ),
    Endpoint(
        "DELETE",
        CH + "/fields/{name}",
        remove_subscription_field,
        "Remove a subscription field",
        "resources",
        query=VersionQuery,
    ),
    Endpoint(
        "POST", R + "/categories", add_category, "Add a category", "resources", body=CategoryBody, status=201
    ),
    Endpoint(
        "PATCH",
        R + "/categories/{api_name}",
        update_category,
        "Rename a category or change its options",
        "resources",
        body=CategoryPatch,
    ),
    Endpoint(
        "DELETE",
        R + "/categories/{api_name}",
        remove_category,
        "Remove a category",
        "resources",
        query=VersionQuery,
    ),
    Endpoint(
        "PUT",
        R + "/unsubscribe-policy",
        configure_unsubscribe_policy,
        "Set the unsubscribe policy",
        "resources",
        body=PolicyBody,
    ),
]
