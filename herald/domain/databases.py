"""The profile database aggregate (stream `database-<id>`): settings and the profile schema.

A profile database ("База данных") holds profiles and defines their fields:
the standard fields every database has, each configurable (default, required,
shown in the subscription manager), and any number of custom fields. Its
state is the schema snapshot that profile commands carry (`coerce_fields`,
`defaults_for_missing`, `check_required`, `unique_fields`).

Rules from the guide: the name and the subscription manager title are
required; a custom field's API name is unique and its type cannot change once
added; a default must itself be a valid value; a required field with a default
lets an import without it through; cloning makes an empty database with the
same settings and custom fields (`clone_database` builds the `CreateDatabase`).

Decisions where the guide is silent:
- Field names are unique case-insensitively (`Custom_ID` and `custom_id` are one
  field, as the guide's webhooks spell the same field both ways) and a custom
  field may not take a standard field's name or alias, nor a reserved name.
- Uniqueness, like the type, is fixed once a field is added: turning it on
  would need every existing value checked, which no single stream can do.
- A removed field's name can be reused only with the same type, because the
  profiles' history still holds its old values.
- A field that identifies profiles (email, phones, a unique field) has no default.
- A blank subscription manager title falls back to the database name.
- The attached stop list arrives as an id: the caller checks it with
  `stop_lists.ensure_attachable`, so attaching never folds the list's entries.
- A deleted database refuses every command (NotFound) except a repeated delete.
- Commands that change nothing emit no events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.contacts import normalize_email
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import (
    RESERVED_NAMES,
    STANDARD_FIELDS,
    FieldDefinition,
    FieldType,
    check_definition,
    check_options_and_default,
    coerce_value,
    standard_field_name,
)

NAME_MAX_LENGTH = 255
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


def database_stream(database_id: str) -> str:
    return f"database-{database_id}"


class EmailDefaults(BaseModel):
    """The database's default sender and reply-to for email ("Настройки Email")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender_name: str = ""
    sender_email: str = ""
    reply_to_name: str = ""
    reply_to_email: str = ""


class StandardFieldConfig(BaseModel):
    """How a database configures one standard field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: JsonValue = None
    required: bool = False
    in_subscription_manager: bool = False


# --- events ------------------------------------------------------------------


@registry.register("DatabaseCreated")
class DatabaseCreated(Event):
    database_id: str
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    subscription_manager_title: str
    subscription_manager_language: str
    stop_list_id: str | None = None
    is_watchers: bool = False
    email: EmailDefaults = Field(default_factory=EmailDefaults)
    standard_fields: dict[str, StandardFieldConfig] = Field(default_factory=dict)
    custom_fields: tuple[FieldDefinition, ...] = ()
    tracking_fields: tuple[str, ...] = ()
    cloned_from: str | None = None
    at: datetime


@registry.register("DatabaseUpdated")
class DatabaseUpdated(Event):
    """The settings that changed, with their new values; the others are None."""

    database_id: str
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    subscription_manager_title: str | None = None
    subscription_manager_language: str | None = None
    is_watchers: bool | None = None
    email: EmailDefaults | None = None
    tracking_fields: tuple[str, ...] | None = None
    at: datetime


@registry.register("StandardFieldConfigured")
class StandardFieldConfigured(Event):
    database_id: str
    name: str
    config: StandardFieldConfig
    at: datetime


@registry.register("CustomFieldAdded")
class CustomFieldAdded(Event):
    database_id: str
    field: FieldDefinition
    at: datetime


@registry.register("CustomFieldUpdated")
class CustomFieldUpdated(Event):
    database_id: str
    field: FieldDefinition
    at: datetime


@registry.register("CustomFieldRemoved")
class CustomFieldRemoved(Event):
    database_id: str
    name: str
    at: datetime


@registry.register("DatabaseStopListAttached")
class DatabaseStopListAttached(Event):
    database_id: str
    stop_list_id: str
    at: datetime


@registry.register("DatabaseStopListDetached")
class DatabaseStopListDetached(Event):
    database_id: str
    stop_list_id: str
    at: datetime


@registry.register("DatabaseDeleted")
class DatabaseDeleted(Event):
    database_id: str
    at: datetime


DATABASE_EVENTS: tuple[type[Event], ...] = (
    DatabaseCreated,
    DatabaseUpdated,
    StandardFieldConfigured,
    CustomFieldAdded,
    CustomFieldUpdated,
    CustomFieldRemoved,
    DatabaseStopListAttached,
    DatabaseStopListDetached,
    DatabaseDeleted,
)


# --- state -------------------------------------------------------------------


class _SchemaMemo:
    """What `DatabaseState`'s schema questions answered, for one state object.

    A state is frozen, so its answers never change; an import asks `field` for every value of
    every row (measured: 10 % of an import's time rebuilt the same definitions).
    """

    __slots__ = ("by_name", "fields", "state", "unique")

    def __init__(self, state: DatabaseState) -> None:
        self.state = state  # held, so its id() is not reused while the memo lives
        self.by_name: dict[str, FieldDefinition | None] = {}
        self.fields: tuple[FieldDefinition, ...] | None = None
        self.unique: frozenset[str] | None = None


_MEMOS: dict[int, _SchemaMemo] = {}
_MEMO_LIMIT = 64  # live database states: one per database, plus a few superseded ones


def _schema_memo(state: DatabaseState) -> _SchemaMemo:
    memo = _MEMOS.get(id(state))
    if memo is None or memo.state is not state:
        if len(_MEMOS) >= _MEMO_LIMIT:
            _MEMOS.pop(next(iter(_MEMOS)))
        memo = _MEMOS[id(state)] = _SchemaMemo(state)
    return memo


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """A profile database's settings and schema; `exists` is False before creation and after delete."""

    database_id: str = ""
    name: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    subscription_manager_title: str = ""
    subscription_manager_language: str = "en"
    stop_list_id: str | None = None
    is_watchers: bool = False
    email: EmailDefaults = field(default_factory=EmailDefaults)
    standard: Mapping[str, StandardFieldConfig] = field(default_factory=dict)
    custom: Mapping[str, FieldDefinition] = field(default_factory=dict)
    retired: Mapping[str, FieldType] = field(default_factory=dict)
    # The fields a track-role token (the one a website embeds) may write, by canonical name.
    tracking_fields: tuple[str, ...] = ()
    cloned_from: str | None = None
    created: bool = False
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.created and not self.deleted

    def canonical_name(self, name: str) -> str | None:
        """The field `name` names (a standard alias, any case), or None if the database has none."""
        standard = standard_field_name(name)
        if standard is not None:
            return standard
        if name in self.custom:
            return name
        folded = name.casefold()
        return next((known for known in self.custom if known.casefold() == folded), None)

    def field(self, name: str) -> FieldDefinition | None:
        """The definition of the field `name` names, standard config applied; None if unknown."""
        by_name = _schema_memo(self).by_name
        if name not in by_name:
            by_name[name] = self._field(name)
        return by_name[name]

    def _field(self, name: str) -> FieldDefinition | None:
        canonical = self.canonical_name(name)
        if canonical is None:
            return None
        if canonical in self.custom:
            return self.custom[canonical]
        config = self.standard.get(canonical)
        definition = STANDARD_FIELDS[canonical]
        return definition if config is None else definition.model_copy(update=config.model_dump())

    def fields(self) -> tuple[FieldDefinition, ...]:
        """Every field: the standard ones as configured, then the custom ones in the order added."""
        memo = _schema_memo(self)
        if memo.fields is None:
            standard = (self.field(name) for name in STANDARD_FIELDS)
            memo.fields = tuple(f for f in standard if f is not None) + tuple(self.custom.values())
        return memo.fields

    @property
    def unique_fields(self) -> frozenset[str]:
        """The fields whose values identify one profile in the database: email and unique custom fields."""
        memo = _schema_memo(self)
        if memo.unique is None:
            memo.unique = frozenset(f.name for f in self.fields() if f.unique)
        return memo.unique

    def coerce_fields(self, values: Mapping[str, Any], path: str = "fields") -> dict[str, JsonValue]:
        """Incoming values by canonical name in stored form; None marks a value that clears its field."""
        coerced: dict[str, JsonValue] = {}
        given_as: dict[str, str] = {}
        for key, value in values.items():
            definition = self.field(key)
            if definition is None:
                raise ValidationFailed(f"the database has no field {key!r}", f"{path}.{key}")
            if definition.name in given_as:
                raise ValidationFailed(
                    f"{definition.name!r} is given twice (as {given_as[definition.name]!r} and {key!r})",
                    f"{path}.{key}",
                )
            given_as[definition.name] = key
            coerced[definition.name] = coerce_value(definition, value, f"{path}.{key}")
        return coerced

    def defaults_for_missing(self, values: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        """The defaults of the fields `values` gives no data for (absent or None)."""
        return {
            f.name: f.default for f in self.fields() if f.default is not None and values.get(f.name) is None
        }

    def check_required(self, values: Mapping[str, JsonValue], path: str = "fields") -> None:
        """Refuse `values` (canonical names) if a required field has no data."""
        for definition in self.fields():
            if definition.required and values.get(definition.name) is None:
                raise ValidationFailed(
                    f"{definition.label} is required in this database", f"{path}.{definition.name}"
                )


def evolve(state: DatabaseState, event: Event) -> DatabaseState:
    """The database after `event`."""
    match event:
        case DatabaseCreated():
            return DatabaseState(
                database_id=event.database_id,
                name=event.name,
                description=event.description,
                tags=event.tags,
                subscription_manager_title=event.subscription_manager_title,
                subscription_manager_language=event.subscription_manager_language,
                stop_list_id=event.stop_list_id,
                is_watchers=event.is_watchers,
                email=event.email,
                standard=dict(event.standard_fields),
                custom={f.name: f for f in event.custom_fields},
                tracking_fields=event.tracking_fields,
                cloned_from=event.cloned_from,
                created=True,
                created_at=event.at,
                updated_at=event.at,
            )
        case DatabaseUpdated():
            changed = {
                k: v for k, v in event.model_dump(exclude={"database_id", "at"}).items() if v is not None
            }
            if event.email is not None:
                changed["email"] = event.email
            return replace(state, **changed, updated_at=event.at)
        case StandardFieldConfigured():
            return replace(state, standard={**state.standard, event.name: event.config}, updated_at=event.at)
        case CustomFieldAdded() | CustomFieldUpdated():
            retired = {k: v for k, v in state.retired.items() if k.casefold() != event.field.name.casefold()}
            custom = {**state.custom, event.field.name: event.field}
            return replace(state, custom=custom, retired=retired, updated_at=event.at)
        case CustomFieldRemoved():
            removed = state.custom[event.name]
            custom = {k: v for k, v in state.custom.items() if k != event.name}
            retired = {**state.retired, event.name: removed.type}
            tracking = tuple(n for n in state.tracking_fields if n != event.name)
            return replace(
                state, custom=custom, retired=retired, tracking_fields=tracking, updated_at=event.at
            )
        case DatabaseStopListAttached():
            return replace(state, stop_list_id=event.stop_list_id, updated_at=event.at)
        case DatabaseStopListDetached():
            return replace(state, stop_list_id=None, updated_at=event.at)
        case DatabaseDeleted():
            return replace(state, deleted=True, updated_at=event.at)
    return state


# --- commands ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateDatabase:
    database_id: str
    name: str
    at: datetime
    description: str = ""
    tags: tuple[str, ...] = ()
    subscription_manager_title: str = ""
    subscription_manager_language: str = "en"
    stop_list_id: str | None = None
    is_watchers: bool = False
    email: EmailDefaults = field(default_factory=EmailDefaults)
    standard_fields: Mapping[str, StandardFieldConfig] = field(default_factory=dict)
    custom_fields: tuple[FieldDefinition, ...] = ()
    tracking_fields: tuple[str, ...] = ()
    cloned_from: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateDatabase:
    """Change the settings given; None leaves a setting as it is."""

    database_id: str
    at: datetime
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    subscription_manager_title: str | None = None
    subscription_manager_language: str | None = None
    is_watchers: bool | None = None
    email: EmailDefaults | None = None
    tracking_fields: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ConfigureStandardField:
    """Set a standard field's whole configuration (`name` may be an alias)."""

    database_id: str
    name: str
    config: StandardFieldConfig
    at: datetime


@dataclass(frozen=True, slots=True)
class AddCustomField:
    database_id: str
    field: FieldDefinition
    at: datetime


@dataclass(frozen=True, slots=True)
class UpdateCustomField:
    """Replace a custom field's definition; its name, type and uniqueness stay."""

    database_id: str
    field: FieldDefinition
    at: datetime


@dataclass(frozen=True, slots=True)
class RemoveCustomField:
    database_id: str
    name: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AttachStopList:
    """Attach a stop list, replacing one attached; the caller checks it with `ensure_attachable`."""

    database_id: str
    stop_list_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DetachStopList:
    database_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteDatabase:
    database_id: str
    at: datetime


DatabaseCommand = (
    CreateDatabase
    | UpdateDatabase
    | ConfigureStandardField
    | AddCustomField
    | UpdateCustomField
    | RemoveCustomField
    | AttachStopList
    | DetachStopList
    | DeleteDatabase
)


def decide(command: DatabaseCommand, state: DatabaseState) -> list[Event]:
    """The events `command` causes on the database, or a DomainError."""
    if isinstance(command, CreateDatabase):
        if state.created:
            raise AlreadyExists(f"database {command.database_id!r} exists already", "database_id")
        return [_create(command)]
    if isinstance(command, DeleteDatabase) and state.deleted:
        return []
    if not state.exists:
        raise NotFound(f"there is no database {command.database_id!r}", "database_id")
    match command:
        case UpdateDatabase():
            return _update(command, state)
        case ConfigureStandardField():
            return _configure_standard(command, state)
        case AddCustomField():
            return _add_custom(command, state)
        case UpdateCustomField():
            return _update_custom(command, state)
        case RemoveCustomField():
            name = _existing_custom(state, command.name, "name")
            return [CustomFieldRemoved(database_id=state.database_id, name=name, at=command.at)]
        case AttachStopList():
            if command.stop_list_id == state.stop_list_id:
                return []
            return [
                DatabaseStopListAttached(
                    database_id=state.database_id, stop_list_id=command.stop_list_id, at=command.at
                )
            ]
        case DetachStopList():
            if state.stop_list_id is None:
                return []
            return [
                DatabaseStopListDetached(
                    database_id=state.database_id, stop_list_id=state.stop_list_id, at=command.at
                )
            ]
        case DeleteDatabase():
            return [DatabaseDeleted(database_id=state.database_id, at=command.at)]


def _create(command: CreateDatabase) -> DatabaseCreated:
    name = _valid_name(command.name)
    schema = DatabaseState(database_id=command.database_id, created=True)
    standard: dict[str, StandardFieldConfig] = {}
    for key, config in command.standard_fields.items():
        canonical, checked = _checked_standard_config(key, config, f"standard_fields.{key}")
        standard[canonical] = checked
    for position, definition in enumerate(command.custom_fields):
        checked_field = _new_custom_field(schema, definition, f"custom_fields.{position}")
        schema = replace(schema, custom={**schema.custom, checked_field.name: checked_field})
    return DatabaseCreated(
        database_id=command.database_id,
        name=name,
        description=command.description.strip(),
        tags=_valid_tags(command.tags),
        subscription_manager_title=command.subscription_manager_title.strip() or name,
        subscription_manager_language=_valid_language(command.subscription_manager_language),
        stop_list_id=command.stop_list_id,
        is_watchers=command.is_watchers,
        email=_valid_email_defaults(command.email),
        standard_fields=standard,
        custom_fields=tuple(schema.custom.values()),
        tracking_fields=_valid_tracking_fields(command.tracking_fields, schema),
        cloned_from=command.cloned_from,
        at=command.at,
    )


def _update(command: UpdateDatabase, state: DatabaseState) -> list[Event]:
    name = _valid_name(command.name) if command.name is not None else state.name
    wanted: dict[str, Any] = {
        "name": name,
        "description": None if command.description is None else command.description.strip(),
        "tags": None if command.tags is None else _valid_tags(command.tags),
        "subscription_manager_title": (
            None
            if command.subscription_manager_title is None
            else command.subscription_manager_title.strip() or name
        ),
        "subscription_manager_language": (
            None
            if command.subscription_manager_language is None
            else _valid_language(command.subscription_manager_language)
        ),
        "is_watchers": command.is_watchers,
        "email": None if command.email is None else _valid_email_defaults(command.email),
        "tracking_fields": (
            None
            if command.tracking_fields is None
            else _valid_tracking_fields(command.tracking_fields, state)
        ),
    }
    changed = {k: v for k, v in wanted.items() if v is not None and v != getattr(state, k)}
    if not changed:
        return []
    return [DatabaseUpdated(database_id=state.database_id, at=command.at, **changed)]


# A track token never changes a profile's contacts: it matches profiles by them instead.
_NEVER_TRACKED = frozenset({"email", "phones"})


def _valid_tracking_fields(names: tuple[str, ...], schema: DatabaseState) -> tuple[str, ...]:
    """The allow-list by canonical name, each once; every name a field of the database."""
    valid: list[str] = []
    for i, name in enumerate(names):
        canonical = schema.canonical_name(name)
        if canonical is None:
            raise ValidationFailed(f"the database has no field {name[:100]!r}", f"tracking_fields.{i}")
        if canonical in _NEVER_TRACKED:
            raise ValidationFailed(
                f"a track token never changes a profile's {canonical}; it matches profiles by it",
                f"tracking_fields.{i}",
            )
        if canonical not in valid:
            valid.append(canonical)
    return tuple(valid)


def _configure_standard(command: ConfigureStandardField, state: DatabaseState) -> list[Event]:
    if standard_field_name(command.name) is None:
        raise NotFound(f"there is no standard field {command.name!r}", "name")
    name, config = _checked_standard_config(command.name, command.config, "config")
    current = state.field(name)
    if (
        current is not None
        and StandardFieldConfig(
            default=current.default,
            required=current.required,
            in_subscription_manager=current.in_subscription_manager,
        )
        == config
    ):
        return []
    return [StandardFieldConfigured(database_id=state.database_id, name=name, config=config, at=command.at)]


def _checked_standard_config(
    name: str, config: StandardFieldConfig, path: str
) -> tuple[str, StandardFieldConfig]:
    canonical = standard_field_name(name)
    if canonical is None:
        raise ValidationFailed(f"there is no standard field {name!r}", path)
    merged = check_options_and_default(
        STANDARD_FIELDS[canonical].model_copy(update=config.model_dump()), path
    )
    return canonical, config.model_copy(update={"default": merged.default})


def _add_custom(command: AddCustomField, state: DatabaseState) -> list[Event]:
    definition = _new_custom_field(state, command.field, "field")
    return [CustomFieldAdded(database_id=state.database_id, field=definition, at=command.at)]


def _new_custom_field(state: DatabaseState, definition: FieldDefinition, path: str) -> FieldDefinition:
    checked = check_definition(definition, path)
    if standard_field_name(checked.name) is not None:
        raise AlreadyExists(f"{checked.name!r} is a standard field", f"{path}.name")
    if checked.name.casefold() in RESERVED_NAMES:
        raise ValidationFailed(f"{checked.name!r} is a reserved name", f"{path}.name")
    existing = state.canonical_name(checked.name)
    if existing is not None:
        raise AlreadyExists(f"the database has a field {existing!r} already", f"{path}.name")
    folded = checked.name.casefold()
    for name, old_type in state.retired.items():
        if name.casefold() == folded and old_type is not checked.type:
            raise RuleViolated(
                f"a removed field {name!r} held {old_type} values that profiles still keep; "
                f"re-add it as {old_type} or pick another name",
                f"{path}.type",
            )
    return checked


def _update_custom(command: UpdateCustomField, state: DatabaseState) -> list[Event]:
    name = _existing_custom(state, command.field.name, "field.name")
    current = state.custom[name]
    if command.field.type is not current.type:
        raise RuleViolated(f"a field's type cannot change once added (it is {current.type})", "field.type")
    if command.field.unique != current.unique:
        raise RuleViolated("a field's uniqueness cannot change once added", "field.unique")
    updated = check_definition(command.field.model_copy(update={"name": name}), "field")
    if updated == current:
        return []
    return [CustomFieldUpdated(database_id=state.database_id, field=updated, at=command.at)]


def _existing_custom(state: DatabaseState, name: str, path: str) -> str:
    canonical = state.canonical_name(name)
    if canonical is None or canonical not in state.custom:
        raise NotFound(f"the database has no custom field {name!r}", path)
    return canonical


def _valid_name(name: str) -> str:
    text = name.strip()
    if not text:
        raise ValidationFailed("a database needs a name", "name")
    if len(text) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"the name is longer than {NAME_MAX_LENGTH} characters", "name")
    return text


def _valid_tags(tags: Sequence[str]) -> tuple[str, ...]:
    kept: dict[str, None] = {}
    for position, tag in enumerate(tags):
        if not tag.strip():
            raise ValidationFailed("a tag cannot be blank", f"tags.{position}")
        kept.setdefault(tag.strip(), None)
    return tuple(kept)


def _valid_language(language: str) -> str:
    if not _LANGUAGE.match(language):
        raise ValidationFailed(
            f"{language!r} is not a language code such as 'en' or 'ru'", "subscription_manager_language"
        )
    return language


def _valid_email_defaults(email: EmailDefaults) -> EmailDefaults:
    return EmailDefaults(
        sender_name=email.sender_name.strip(),
        sender_email=_optional_email(email.sender_email, "email.sender_email"),
        reply_to_name=email.reply_to_name.strip(),
        reply_to_email=_optional_email(email.reply_to_email, "email.reply_to_email"),
    )


def _optional_email(value: str, path: str) -> str:
    return normalize_email(value, path) if value.strip() else ""


def clone_database(
    source: DatabaseState, database_id: str, at: datetime, name: str | None = None
) -> CreateDatabase:
    """A `CreateDatabase` for an empty database with `source`'s settings and fields (structure only)."""
    return CreateDatabase(
        database_id=database_id,
        name=name or f"{source.name} (copy)",
        at=at,
        description=source.description,
        tags=source.tags,
        subscription_manager_title=source.subscription_manager_title,
        subscription_manager_language=source.subscription_manager_language,
        stop_list_id=source.stop_list_id,
        is_watchers=source.is_watchers,
        email=source.email,
        standard_fields=dict(source.standard),
        custom_fields=tuple(source.custom.values()),
        tracking_fields=source.tracking_fields,
        cloned_from=source.database_id,
    )


database_decider: Decider[DatabaseCommand, DatabaseState] = Decider(DatabaseState(), decide, evolve)
