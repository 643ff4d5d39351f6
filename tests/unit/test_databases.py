"""The profile database aggregate: settings, standard field config, custom fields, stop list, schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain.databases import (
    AddCustomField,
    AttachStopList,
    ConfigureStandardField,
    CreateDatabase,
    CustomFieldAdded,
    CustomFieldRemoved,
    CustomFieldUpdated,
    DatabaseCreated,
    DatabaseDeleted,
    DatabaseState,
    DatabaseStopListAttached,
    DatabaseStopListDetached,
    DatabaseUpdated,
    DeleteDatabase,
    DetachStopList,
    EmailDefaults,
    RemoveCustomField,
    StandardFieldConfig,
    StandardFieldConfigured,
    UpdateCustomField,
    UpdateDatabase,
    clone_database,
    database_decider,
    database_stream,
)
from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import FieldDefinition, FieldType
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
DB = "4"

CRM = FieldDefinition(name="CRM_ID", type=FieldType.STRING, unique=True)
PLAN = FieldDefinition(name="Plan", type=FieldType.LIST, options=("Basic", "Pro"), default="Basic")
SCORE = FieldDefinition(name="Score", type=FieldType.INT, required=True, default=0)


def created(**overrides: Any) -> DatabaseCreated:
    fields: dict[str, Any] = dict(
        database_id=DB,
        name="Клиенты B2C",
        subscription_manager_title="Клиенты B2C",
        subscription_manager_language="en",
        at=T0,
    )
    return DatabaseCreated(**(fields | overrides))


def field_added(field: FieldDefinition) -> CustomFieldAdded:
    return CustomFieldAdded(database_id=DB, field=field, at=T0)


def schema(*events: Event) -> DatabaseState:
    return database_decider.fold([created(), *events])


# --- create ------------------------------------------------------------------

CREATE_CASES: list[tuple[str, CreateDatabase, DatabaseCreated]] = [
    (
        "minimal: the manager title falls back to the name",
        CreateDatabase(DB, "  Клиенты B2C ", T0),
        created(),
    ),
    (
        "every setting",
        CreateDatabase(
            DB,
            "New astral database",
            T0,
            description="East coast",
            tags=("EastCoast", " Corporate", "EastCoast"),
            subscription_manager_title="New database",
            subscription_manager_language="ru",
            stop_list_id="2",
            is_watchers=True,
            email=EmailDefaults(
                sender_name=" Shop ", sender_email="news@Shop.com", reply_to_email="help@shop.com"
            ),
            standard_fields={"FirstName": StandardFieldConfig(required=True, default="Friend")},
            custom_fields=(PLAN, CRM),
        ),
        created(
            name="New astral database",
            description="East coast",
            tags=("EastCoast", "Corporate"),
            subscription_manager_title="New database",
            subscription_manager_language="ru",
            stop_list_id="2",
            is_watchers=True,
            email=EmailDefaults(
                sender_name="Shop", sender_email="news@shop.com", reply_to_email="help@shop.com"
            ),
            standard_fields={"_fname": StandardFieldConfig(required=True, default="Friend")},
            custom_fields=(PLAN, CRM),
        ),
    ),
]


@pytest.mark.parametrize(
    ("when", "expected"), [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES]
)
def test_create(when: CreateDatabase, expected: DatabaseCreated) -> None:
    assert then(database_decider, [], when) == [expected]


CREATE_ERRORS: list[tuple[str, list[Event], CreateDatabase, type[DomainError], str]] = [
    ("exists", [created()], CreateDatabase(DB, "Again", T0), AlreadyExists, "database_id"),
    ("blank name", [], CreateDatabase(DB, "  ", T0), ValidationFailed, "name"),
    ("long name", [], CreateDatabase(DB, "x" * 256, T0), ValidationFailed, "name"),
    ("blank tag", [], CreateDatabase(DB, "n", T0, tags=("a", " ")), ValidationFailed, "tags.1"),
    (
        "bad language",
        [],
        CreateDatabase(DB, "n", T0, subscription_manager_language="English"),
        ValidationFailed,
        "subscription_manager_language",
    ),
    (
        "bad sender",
        [],
        CreateDatabase(DB, "n", T0, email=EmailDefaults(sender_email="nope")),
        ValidationFailed,
        "email.sender_email",
    ),
    (
        "bad reply-to",
        [],
        CreateDatabase(DB, "n", T0, email=EmailDefaults(reply_to_email="@x")),
        ValidationFailed,
        "email.reply_to_email",
    ),
    (
        "unknown standard field",
        [],
        CreateDatabase(DB, "n", T0, standard_fields={"Nope": StandardFieldConfig()}),
        ValidationFailed,
        "standard_fields.Nope",
    ),
    (
        "bad standard default",
        [],
        CreateDatabase(DB, "n", T0, standard_fields={"Birthday": StandardFieldConfig(default="someday")}),
        ValidationFailed,
        "standard_fields.Birthday.default",
    ),
    (
        "second custom field clashes",
        [],
        CreateDatabase(DB, "n", T0, custom_fields=(CRM, CRM)),
        AlreadyExists,
        "custom_fields.1.name",
    ),
    (
        "bad custom field",
        [],
        CreateDatabase(DB, "n", T0, custom_fields=(FieldDefinition(name="x y", type=FieldType.INT),)),
        ValidationFailed,
        "custom_fields.0.name",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in CREATE_ERRORS], ids=[c[0] for c in CREATE_ERRORS]
)
def test_create_refusals(
    given: list[Event], when: CreateDatabase, error: type[DomainError], path: str
) -> None:
    then_error(database_decider, given, when, error, path)


# --- update, stop list, delete -------------------------------------------------

SETTINGS_CASES: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "rename and retitle",
        [created()],
        UpdateDatabase(DB, T1, name="B2B", subscription_manager_title="Our news"),
        [DatabaseUpdated(database_id=DB, name="B2B", subscription_manager_title="Our news", at=T1)],
    ),
    (
        "a blank manager title falls back to the name",
        [created(subscription_manager_title="Other")],
        UpdateDatabase(DB, T1, subscription_manager_title=" "),
        [DatabaseUpdated(database_id=DB, subscription_manager_title="Клиенты B2C", at=T1)],
    ),
    (
        "only what changed",
        [created()],
        UpdateDatabase(
            DB,
            T1,
            name="Клиенты B2C",
            description="d",
            tags=("t",),
            is_watchers=True,
            subscription_manager_language="en-US",
            email=EmailDefaults(sender_name="S"),
        ),
        [
            DatabaseUpdated(
                database_id=DB,
                description="d",
                tags=("t",),
                is_watchers=True,
                subscription_manager_language="en-US",
                email=EmailDefaults(sender_name="S"),
                at=T1,
            )
        ],
    ),
    ("nothing changes", [created()], UpdateDatabase(DB, T1, name="Клиенты B2C", is_watchers=False), []),
    (
        "attach",
        [created()],
        AttachStopList(DB, "2", T1),
        [DatabaseStopListAttached(database_id=DB, stop_list_id="2", at=T1)],
    ),
    (
        "attach replaces",
        [created(stop_list_id="2")],
        AttachStopList(DB, "3", T1),
        [DatabaseStopListAttached(database_id=DB, stop_list_id="3", at=T1)],
    ),
    ("attach the attached", [created(stop_list_id="2")], AttachStopList(DB, "2", T1), []),
    (
        "detach",
        [created(stop_list_id="2")],
        DetachStopList(DB, T1),
        [DatabaseStopListDetached(database_id=DB, stop_list_id="2", at=T1)],
    ),
    ("detach none", [created()], DetachStopList(DB, T1), []),
    (
        "allow fields for tracking, by alias and once each",
        [created(), field_added(PLAN)],
        UpdateDatabase(DB, T1, tracking_fields=("plan", "FirstName", "Plan")),
        [DatabaseUpdated(database_id=DB, tracking_fields=("Plan", "_fname"), at=T1)],
    ),
    (
        "allow none again",
        [created(tracking_fields=("_fname",))],
        UpdateDatabase(DB, T1, tracking_fields=()),
        [DatabaseUpdated(database_id=DB, tracking_fields=(), at=T1)],
    ),
    ("delete", [created()], DeleteDatabase(DB, T1), [DatabaseDeleted(database_id=DB, at=T1)]),
    ("delete again", [created(), DatabaseDeleted(database_id=DB, at=T1)], DeleteDatabase(DB, T1), []),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES]
)
def test_settings(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(database_decider, given, when) == expected


DELETED = [created(), DatabaseDeleted(database_id=DB, at=T1)]

REFUSALS: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    ("update missing", [], UpdateDatabase(DB, T1, name="x"), NotFound, "database_id"),
    ("update deleted", DELETED, UpdateDatabase(DB, T1, name="x"), NotFound, "database_id"),
    ("add field to deleted", DELETED, AddCustomField(DB, CRM, T1), NotFound, "database_id"),
    ("delete missing", [], DeleteDatabase(DB, T1), NotFound, "database_id"),
    ("recreate deleted", DELETED, CreateDatabase(DB, "x", T1), AlreadyExists, "database_id"),
    ("blank rename", [created()], UpdateDatabase(DB, T1, name=""), ValidationFailed, "name"),
    (
        "track a field the database lacks",
        [created()],
        UpdateDatabase(DB, T1, tracking_fields=("_fname", "nope")),
        ValidationFailed,
        "tracking_fields.1",
    ),
    (
        "let a track token change emails",
        [created()],
        UpdateDatabase(DB, T1, tracking_fields=("Email",)),
        ValidationFailed,
        "tracking_fields.0",
    ),
    (
        "let a track token change phones",
        [created()],
        UpdateDatabase(DB, T1, tracking_fields=("phone",)),
        ValidationFailed,
        "tracking_fields.0",
    ),
    (
        "create tracking an unknown field",
        [],
        CreateDatabase(DB, "x", T1, tracking_fields=("nope",)),
        ValidationFailed,
        "tracking_fields.0",
    ),
    (
        "bad sender on update",
        [created()],
        UpdateDatabase(DB, T1, email=EmailDefaults(sender_email="x")),
        ValidationFailed,
        "email.sender_email",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refusals(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(database_decider, given, when, error, path)


# --- standard fields -------------------------------------------------------------

STANDARD_CASES: list[tuple[str, list[Event], ConfigureStandardField, list[Event]]] = [
    (
        "required first name with a default, by alias",
        [created()],
        ConfigureStandardField(DB, "FirstName", StandardFieldConfig(default=" Friend ", required=True), T1),
        [
            StandardFieldConfigured(
                database_id=DB,
                name="_fname",
                config=StandardFieldConfig(default="Friend", required=True),
                at=T1,
            )
        ],
    ),
    (
        "registration IP default stored normalised",
        [created()],
        ConfigureStandardField(DB, "_regip", StandardFieldConfig(default="127.0.0.1"), T1),
        [
            StandardFieldConfigured(
                database_id=DB, name="_regip", config=StandardFieldConfig(default="127.0.0.1"), at=T1
            )
        ],
    ),
    (
        "gender default is one of its options",
        [created()],
        ConfigureStandardField(DB, "_sex", StandardFieldConfig(default="Female"), T1),
        [
            StandardFieldConfigured(
                database_id=DB, name="_sex", config=StandardFieldConfig(default="female"), at=T1
            )
        ],
    ),
    (
        "email's built-in config again changes nothing",
        [created()],
        ConfigureStandardField(DB, "Email", StandardFieldConfig(in_subscription_manager=True), T1),
        [],
    ),
    (
        "the same config twice changes nothing",
        [
            created(),
            StandardFieldConfigured(
                database_id=DB, name="_lname", config=StandardFieldConfig(required=True), at=T0
            ),
        ],
        ConfigureStandardField(DB, "LastName", StandardFieldConfig(required=True), T1),
        [],
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in STANDARD_CASES], ids=[c[0] for c in STANDARD_CASES]
)
def test_configure_standard_field(
    given: list[Event], when: ConfigureStandardField, expected: list[Event]
) -> None:
    assert then(database_decider, given, when) == expected


@pytest.mark.parametrize(
    ("name", "config", "error", "path"),
    [
        ("Nope", StandardFieldConfig(), NotFound, "name"),
        ("Email", StandardFieldConfig(default="a@b.com"), ValidationFailed, "config.default"),
        ("Phones", StandardFieldConfig(default="+79123456789"), ValidationFailed, "config.default"),
        ("Birthday", StandardFieldConfig(default="%Y-%m-%d"), ValidationFailed, "config.default"),
        ("_sex", StandardFieldConfig(default="other"), ValidationFailed, "config.default"),
        ("_regip", StandardFieldConfig(default="::1"), ValidationFailed, "config.default"),
    ],
)
def test_configure_standard_field_refusals(
    name: str, config: StandardFieldConfig, error: type[DomainError], path: str
) -> None:
    then_error(database_decider, [created()], ConfigureStandardField(DB, name, config, T1), error, path)


# --- custom fields -------------------------------------------------------------

CUSTOM_CASES: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "add with its default coerced",
        [created()],
        AddCustomField(DB, FieldDefinition(name="Tags", type=FieldType.TAGS, default="Тег 2, Тег 1"), T1),
        [
            CustomFieldAdded(
                database_id=DB,
                field=FieldDefinition(name="Tags", type=FieldType.TAGS, default=["Тег 1", "Тег 2"]),
                at=T1,
            )
        ],
    ),
    (
        "re-add a removed name with the same type",
        [created(), field_added(CRM), CustomFieldRemoved(database_id=DB, name="CRM_ID", at=T0)],
        AddCustomField(DB, CRM, T1),
        [CustomFieldAdded(database_id=DB, field=CRM, at=T1)],
    ),
    (
        "update title, options and default",
        [created(), field_added(PLAN)],
        UpdateCustomField(
            DB,
            PLAN.model_copy(update={"title": "Тариф", "options": ("Basic", "Pro", "Max"), "default": "max"}),
            T1,
        ),
        [
            CustomFieldUpdated(
                database_id=DB,
                field=PLAN.model_copy(
                    update={"title": "Тариф", "options": ("Basic", "Pro", "Max"), "default": "Max"}
                ),
                at=T1,
            )
        ],
    ),
    (
        "update by another case keeps the name",
        [created(), field_added(CRM)],
        UpdateCustomField(DB, CRM.model_copy(update={"name": "crm_id", "required": True}), T1),
        [CustomFieldUpdated(database_id=DB, field=CRM.model_copy(update={"required": True}), at=T1)],
    ),
    ("update changing nothing", [created(), field_added(PLAN)], UpdateCustomField(DB, PLAN, T1), []),
    (
        "remove",
        [created(), field_added(PLAN)],
        RemoveCustomField(DB, "plan", T1),
        [CustomFieldRemoved(database_id=DB, name="Plan", at=T1)],
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in CUSTOM_CASES], ids=[c[0] for c in CUSTOM_CASES]
)
def test_custom_fields(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(database_decider, given, when) == expected


CUSTOM_ERRORS: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    (
        "duplicate name",
        [created(), field_added(CRM)],
        AddCustomField(DB, CRM, T1),
        AlreadyExists,
        "field.name",
    ),
    (
        "duplicate in another case",
        [created(), field_added(CRM)],
        AddCustomField(DB, FieldDefinition(name="crm_id", type=FieldType.INT), T1),
        AlreadyExists,
        "field.name",
    ),
    (
        "standard name",
        [created()],
        AddCustomField(DB, FieldDefinition(name="email", type=FieldType.STRING), T1),
        AlreadyExists,
        "field.name",
    ),
    (
        "standard alias",
        [created()],
        AddCustomField(DB, FieldDefinition(name="FirstName", type=FieldType.STRING), T1),
        AlreadyExists,
        "field.name",
    ),
    (
        "reserved name",
        [created()],
        AddCustomField(DB, FieldDefinition(name="Profile_ID", type=FieldType.STRING), T1),
        ValidationFailed,
        "field.name",
    ),
    (
        "invalid default",
        [created()],
        AddCustomField(DB, FieldDefinition(name="n", type=FieldType.INT, default="1.5"), T1),
        ValidationFailed,
        "field.default",
    ),
    (
        "removed name with another type",
        [created(), field_added(CRM), CustomFieldRemoved(database_id=DB, name="CRM_ID", at=T0)],
        AddCustomField(DB, FieldDefinition(name="crm_id", type=FieldType.INT), T1),
        RuleViolated,
        "field.type",
    ),
    (
        "type change",
        [created(), field_added(CRM)],
        UpdateCustomField(DB, FieldDefinition(name="CRM_ID", type=FieldType.INT, unique=True), T1),
        RuleViolated,
        "field.type",
    ),
    (
        "uniqueness change",
        [created(), field_added(CRM)],
        UpdateCustomField(DB, FieldDefinition(name="CRM_ID", type=FieldType.STRING), T1),
        RuleViolated,
        "field.unique",
    ),
    (
        "default outside new options",
        [created(), field_added(PLAN)],
        UpdateCustomField(DB, PLAN.model_copy(update={"options": ("Pro",)}), T1),
        ValidationFailed,
        "field.default",
    ),
    ("update unknown", [created()], UpdateCustomField(DB, CRM, T1), NotFound, "field.name"),
    (
        "update a standard field",
        [created()],
        UpdateCustomField(DB, FieldDefinition(name="email", type=FieldType.EMAIL), T1),
        NotFound,
        "field.name",
    ),
    ("remove unknown", [created()], RemoveCustomField(DB, "Nope", T1), NotFound, "name"),
    ("remove a standard field", [created()], RemoveCustomField(DB, "Email", T1), NotFound, "name"),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in CUSTOM_ERRORS], ids=[c[0] for c in CUSTOM_ERRORS]
)
def test_custom_field_refusals(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(database_decider, given, when, error, path)


# --- the schema profiles use -------------------------------------------------------


def test_state_after_events() -> None:
    state = schema(
        field_added(CRM),
        field_added(PLAN),
        CustomFieldRemoved(database_id=DB, name="Plan", at=T1),
        DatabaseStopListAttached(database_id=DB, stop_list_id="2", at=T1),
        DatabaseUpdated(database_id=DB, name="B2B", email=EmailDefaults(sender_name="S"), at=T1),
    )
    assert state.exists and state.name == "B2B" and state.email.sender_name == "S"
    assert state.stop_list_id == "2"
    assert list(state.custom) == ["CRM_ID"]
    assert state.retired == {"Plan": FieldType.LIST}
    assert state.updated_at == T1 and state.created_at == T0
    assert not database_decider.fold([DatabaseDeleted(database_id=DB, at=T1)], state).exists


def test_field_lookup_by_alias_and_case() -> None:
    state = schema(
        field_added(CRM),
        StandardFieldConfigured(
            database_id=DB, name="_fname", config=StandardFieldConfig(required=True), at=T0
        ),
    )
    assert state.field("FirstName") == state.field("_fname")
    first_name = state.field("firstname")
    assert first_name is not None and first_name.required and first_name.type is FieldType.STRING
    assert state.field("crm_id") == CRM
    assert state.field("Nope") is None
    assert state.canonical_name("LastIP") == "_ip"
    assert [f.name for f in state.fields()][-1] == "CRM_ID"
    assert state.unique_fields == {"email", "CRM_ID"}


def test_coerce_fields_by_canonical_name() -> None:
    state = schema(field_added(CRM), field_added(PLAN))
    coerced = state.coerce_fields({"FirstName": " Ann ", "crm_id": 42, "Plan": "", "Email": "A@B.COM"})
    assert coerced == {"_fname": "Ann", "CRM_ID": "42", "Plan": None, "email": "A@b.com"}


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"Nope": 1}, "fields.Nope"),
        ({"Birthday": "someday"}, "fields.Birthday"),
        ({"_fname": "a", "FirstName": "b"}, "fields.FirstName"),
        ({"phones": ["+79123456789", "x"]}, "fields.phones.1"),
    ],
)
def test_coerce_fields_refusals(values: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        schema().coerce_fields(values)
    assert caught.value.path == path


def test_defaults_and_required() -> None:
    state = schema(
        field_added(PLAN),
        field_added(SCORE),
        StandardFieldConfigured(
            database_id=DB, name="_lname", config=StandardFieldConfig(required=True), at=T0
        ),
    )
    assert state.defaults_for_missing({"Plan": None}) == {"Plan": "Basic", "Score": 0}
    assert state.defaults_for_missing({"Plan": "Pro", "Score": 5}) == {}
    state.check_required({"_lname": "Doe", "Score": 0})
    with pytest.raises(ValidationFailed) as caught:
        state.check_required({"Score": 0}, "data")
    assert caught.value.path == "data._lname"


def test_clone_copies_the_structure() -> None:
    source = schema(
        field_added(CRM),
        field_added(PLAN),
        StandardFieldConfigured(
            database_id=DB, name="_lname", config=StandardFieldConfig(required=True), at=T0
        ),
        DatabaseUpdated(database_id=DB, tags=("vip",), is_watchers=True, at=T0),
        DatabaseStopListAttached(database_id=DB, stop_list_id="2", at=T0),
    )
    command = clone_database(source, "5", T1)
    [event] = then(database_decider, [], command)
    assert isinstance(event, DatabaseCreated)
    clone = database_decider.fold([event])
    assert clone.database_id == "5" and clone.name == "Клиенты B2C (copy)" and clone.cloned_from == DB
    assert clone.fields() == source.fields()
    assert (clone.tags, clone.is_watchers, clone.stop_list_id) == (("vip",), True, "2")
    assert clone_database(source, "6", T1, name="Copy").name == "Copy"


def test_events_survive_the_store() -> None:
    events: list[Event] = [
        created(custom_fields=(PLAN,), standard_fields={"_sex": StandardFieldConfig(default="male")}),
        DatabaseUpdated(database_id=DB, email=EmailDefaults(sender_email="a@b.com"), at=T1),
        CustomFieldUpdated(database_id=DB, field=CRM, at=T1),
    ]
    for event in events:
        assert registry.decode(event.type_name, event.schema_version, event.to_data()) == event
    assert database_stream(DB) == "database-4"


def test_a_removed_field_leaves_the_tracking_allow_list() -> None:
    state = database_decider.fold(
        [
            created(tracking_fields=("_fname",)),
            field_added(PLAN),
            DatabaseUpdated(database_id=DB, tracking_fields=("_fname", "Plan"), at=T1),
            CustomFieldRemoved(database_id=DB, name="Plan", at=T1),
        ]
    )
    assert state.tracking_fields == ("_fname",)
