"""The profile aggregate: create, update, the import modes, status, tracking, delete, merge, subscriptions."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain.databases import (
    AddCustomField,
    ConfigureStandardField,
    CreateDatabase,
    DatabaseDeleted,
    DatabaseState,
    DeleteDatabase,
    StandardFieldConfig,
    database_decider,
)
from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.profiles import (
    PROFILE_EVENTS,
    AbsorbProfile,
    ChangeGlobalStatus,
    CreateProfile,
    DeleteProfile,
    FieldChange,
    ImportMode,
    ImportOutcome,
    ImportProfile,
    MergeProfileInto,
    ProfileAbsorbed,
    ProfileCreated,
    ProfileDeleted,
    ProfileErased,
    ProfileFieldsUpdated,
    ProfileGlobalStatusChanged,
    ProfileMergedAway,
    ProfileState,
    ProfileTestSubscriberSet,
    ProfileTrackedDataRecorded,
    RecordTrackedData,
    SetTestSubscriber,
    TrackedData,
    UpdateProfile,
    import_outcome,
    placeholder_email,
    profile_decider,
    profile_stream,
)
from herald.domain.resources import (
    CreateResource,
    EmailSettings,
    ResourceSettings,
    ResourceState,
    SmsSettings,
    resource_decider,
)
from herald.domain.statuses import Status
from herald.domain.subscriptions import (
    AddSubscription,
    Cause,
    ChangeSubscriptionStatus,
    SubscriptionAdded,
    SubscriptionKey,
    SubscriptionStatusChanged,
)
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 3, 9, 0, tzinfo=UTC)
P1, P2 = "5e8a7f9de7d8b9372bb0de5c", "5ea93659e7d8b903cc1481b3"
ANN = "ann@example.com"
PHONE = "+79123456789"


def build_database(database_id: str, *commands: Any) -> DatabaseState:
    """A database snapshot built through the commands users send."""
    state = database_decider.initial
    for command in (CreateDatabase(database_id, "Clients", T0), *commands):
        state = database_decider.fold(database_decider.decide(command, state), state)
    return state


DB = build_database(
    "db1",
    AddCustomField("db1", FieldDefinition(name="CRM_ID", type=FieldType.STRING, unique=True), T0),
    AddCustomField(
        "db1",
        FieldDefinition(name="Plan", type=FieldType.LIST, options=("Basic", "Pro"), default="Basic"),
        T0,
    ),
    AddCustomField("db1", FieldDefinition(name="Tags", type=FieldType.TAGS), T0),
)
STRICT = build_database(
    "db1",
    ConfigureStandardField("db1", "LastName", StandardFieldConfig(required=True), T0),
    AddCustomField("db1", FieldDefinition(name="Score", type=FieldType.INT, required=True, default=0), T0),
)
OTHER_DB = build_database("db2")
GONE_DB = build_database("db3", DeleteDatabase("db3", T0))

RESOURCE = resource_decider.fold(
    resource_decider.decide(
        CreateResource(
            resource_id="r1",
            token="rtoken",
            settings=ResourceSettings(
                name="Shop",
                database_ids=("db1",),
                source_urls=("https://shop.example.com",),
                default_tracking_domain="trk.example.com",
            ),
            channels=(
                EmailSettings(from_name="Shop", from_email="news@example.com", list_id="promo.example.com"),
                SmsSettings(caller_id="Shop"),
            ),
        ),
        ResourceState(),
    )
)


def ids(profile_id: str = P1, at: datetime = T1, database_id: str = "db1") -> dict[str, Any]:
    return {"profile_id": profile_id, "database_id": database_id, "at": at}


def created(
    profile_id: str = P1, source: str = "manual", database_id: str = "db1", **fields: Any
) -> ProfileCreated:
    values: dict[str, Any] = {"Plan": "Basic", "email": placeholder_email(profile_id)} | fields
    return ProfileCreated(
        **ids(profile_id, T0, database_id),
        md5_id=f"md5-{profile_id}",
        xxh_id=f"xxh-{profile_id}",
        fields=values,
        source=source,
    )


def updated(source: str = "manual", profile_id: str = P1, **changes: tuple[Any, Any]) -> ProfileFieldsUpdated:
    return ProfileFieldsUpdated(
        **ids(profile_id),
        changes={name: FieldChange(old=old, new=new) for name, (old, new) in changes.items()},
        source=source,
    )


def status_changed(before: Status, after: Status, cause: Cause = Cause.MANUAL) -> ProfileGlobalStatusChanged:
    return ProfileGlobalStatusChanged(**ids(), from_status=before, to_status=after, cause=cause)


def create(fields: dict[str, Any], database: DatabaseState = DB, **kw: Any) -> CreateProfile:
    return CreateProfile(P1, f"md5-{P1}", f"xxh-{P1}", database, fields, T0, **kw)


def import_(fields: dict[str, Any], mode: ImportMode = ImportMode.ADD_AND_UPDATE, **kw: Any) -> ImportProfile:
    at = kw.pop("at", T1)
    return ImportProfile(P1, f"md5-{P1}", f"xxh-{P1}", kw.pop("database", DB), fields, at, mode=mode, **kw)


def subscribe(contact: str = ANN, channel: str = "email", at: datetime = T1, **kw: Any) -> AddSubscription:
    return AddSubscription(resource_id="r1", channel=channel, contact=contact, at=at, resource=RESOURCE, **kw)


def sub_added(
    contact: str = ANN,
    priority: int = 0,
    profile_id: str = P1,
    cause: Cause = Cause.API,
    at: datetime = T1,
    **kw: Any,
) -> SubscriptionAdded:
    email: dict[str, Any] = {}
    channel = kw.pop("channel", "email")
    if channel == "email":
        email = {
            "email_domain": contact.rsplit("@", 1)[1],
            "email_md5": hashlib.md5(contact.encode()).hexdigest(),
        }
    return SubscriptionAdded(
        profile_id=profile_id,
        database_id="db1",
        resource_id="r1",
        channel=channel,
        contact=contact,
        status=kw.pop("status", Status.SUBSCRIBED),
        priority=priority,
        registered_at=at,
        cause=cause,
        **email,
        **kw,
    )


EXISTING = [created(email="ann@example.com", _fname="Ann", Tags=["a", "b"])]
DELETED = [*EXISTING, ProfileDeleted(**ids())]
MERGED = [*EXISTING, ProfileMergedAway(**ids(), target_profile_id=P2)]


# --- create --------------------------------------------------------------------

CREATE_CASES: list[tuple[str, CreateProfile, list[Event]]] = [
    (
        "fields in stored form, defaults for the missing",
        create({"Email": " Ann@Example.com", "FirstName": "Ann", "Birthday": "22.08.1990", "crm_id": 7}),
        [created(email="Ann@example.com", _fname="Ann", _bdate="1990-08-22", CRM_ID="7")],
    ),
    ("no email: the placeholder", create({"phone": "+7 912 345 67 89"}), [created(phones=[PHONE])]),
    ("empty values are no data", create({"Plan": "", "FirstName": None}), [created()]),
    ("a given value beats the default", create({"Plan": "pro"}), [created(Plan="Pro")]),
    (
        "required with a default is satisfied",
        create({"LastName": "Doe"}, database=STRICT, source="api"),
        [
            ProfileCreated(
                **ids(P1, T0),
                md5_id=f"md5-{P1}",
                xxh_id=f"xxh-{P1}",
                fields={"_lname": "Doe", "Score": 0, "email": placeholder_email(P1)},
                source="api",
            )
        ],
    ),
    (
        "subscriptions in the same decision",
        create({"email": ANN}, subscriptions=(subscribe(at=T0), subscribe("+79123456789", "sms", at=T0))),
        [created(email=ANN), sub_added(at=T0), sub_added(PHONE, channel="sms", at=T0)],
    ),
]


@pytest.mark.parametrize(
    ("when", "expected"), [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES]
)
def test_create(when: CreateProfile, expected: list[Event]) -> None:
    assert then(profile_decider, [], when) == expected


CREATE_ERRORS: list[tuple[str, list[Event], CreateProfile, type[DomainError], str]] = [
    ("exists", EXISTING, create({}), AlreadyExists, "profile_id"),
    ("exists though deleted", DELETED, create({}), AlreadyExists, "profile_id"),
    ("database deleted", [], create({}, database=GONE_DB), NotFound, "database_id"),
    ("database missing", [], create({}, database=DatabaseState()), NotFound, "database_id"),
    ("unknown field", [], create({"Nope": 1}), ValidationFailed, "fields.Nope"),
    ("invalid date", [], create({"Birthday": "soon"}), ValidationFailed, "fields.Birthday"),
    ("invalid option", [], create({"Plan": "Gold"}), ValidationFailed, "fields.Plan"),
    ("invalid tag", [], create({"Tags": ["a", "b;c"]}), ValidationFailed, "fields.Tags.1"),
    ("invalid phone", [], create({"phones": [PHONE, "1"]}), ValidationFailed, "fields.phones.1"),
    (
        "required missing",
        [],
        create({"FirstName": "Ann"}, database=STRICT),
        ValidationFailed,
        "fields._lname",
    ),
    ("required empty", [], create({"LastName": " "}, database=STRICT), ValidationFailed, "fields._lname"),
    (
        "subscription refused",
        [],
        create({}, subscriptions=(subscribe("nope"),)),
        ValidationFailed,
        "subscriptions.0.contact",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in CREATE_ERRORS], ids=[c[0] for c in CREATE_ERRORS]
)
def test_create_refusals(
    given: list[Event], when: CreateProfile, error: type[DomainError], path: str
) -> None:
    then_error(profile_decider, given, when, error, path)


# --- import: the three modes × existing / missing, ignore empty, resubscribe ----------------

UNSUBSCRIBED = [
    *EXISTING,
    ProfileGlobalStatusChanged(
        **ids(at=T0), from_status=Status.SUBSCRIBED, to_status=Status.UNSUBSCRIBED, cause=Cause.MANUAL
    ),
]

IMPORT_CASES: list[tuple[str, list[Event], ImportProfile, list[Event], ImportOutcome]] = [
    (
        "upsert, missing: created",
        [],
        import_({"email": ANN}, at=T0),
        [created(source="import", email=ANN)],
        ImportOutcome.CREATED,
    ),
    (
        "upsert, existing: updated",
        EXISTING,
        import_({"FirstName": "Anna", "Plan": "Pro"}),
        [updated("import", _fname=("Ann", "Anna"), Plan=("Basic", "Pro"))],
        ImportOutcome.UPDATED,
    ),
    (
        "upsert, equal values: unchanged",
        EXISTING,
        import_({"Email": " ann@EXAMPLE.com ", "Tags": "b,a"}),
        [],
        ImportOutcome.UNCHANGED,
    ),
    (
        "add only, missing: created",
        [],
        import_({"email": ANN}, ImportMode.ADD_ONLY, at=T0),
        [created(source="import", email=ANN)],
        ImportOutcome.CREATED,
    ),
    (
        "add only, existing: nothing",
        EXISTING,
        import_({"FirstName": "Anna"}, ImportMode.ADD_ONLY, resubscribe=True, subscriptions=(subscribe(),)),
        [],
        ImportOutcome.UNCHANGED,
    ),
    (
        "update only, existing: updated",
        EXISTING,
        import_({"FirstName": "Anna"}, ImportMode.UPDATE_ONLY),
        [updated("import", _fname=("Ann", "Anna"))],
        ImportOutcome.UPDATED,
    ),
    (
        "an empty value clears",
        EXISTING,
        import_({"FirstName": "", "Tags": []}),
        [updated("import", _fname=("Ann", None), Tags=(["a", "b"], None))],
        ImportOutcome.UPDATED,
    ),
    (
        "ignore empty: all",
        EXISTING,
        import_({"FirstName": "", "Tags": None}, ignore_empty=True),
        [],
        ImportOutcome.UNCHANGED,
    ),
    (
        "ignore empty: named columns only",
        EXISTING,
        import_({"FirstName": "", "Tags": ""}, ignore_empty=frozenset({"firstname"})),
        [updated("import", Tags=(["a", "b"], None))],
        ImportOutcome.UPDATED,
    ),
    (
        "clearing the email restores the placeholder",
        EXISTING,
        import_({"email": None}),
        [updated("import", email=(ANN, placeholder_email(P1)))],
        ImportOutcome.UPDATED,
    ),
    (
        "no defaults for an existing profile",
        EXISTING,
        import_({"Plan": ""}),
        [updated("import", Plan=("Basic", None))],
        ImportOutcome.UPDATED,
    ),
    (
        "resubscribe",
        UNSUBSCRIBED,
        import_({}, resubscribe=True),
        [status_changed(Status.UNSUBSCRIBED, Status.SUBSCRIBED, Cause.IMPORT)],
        ImportOutcome.UPDATED,
    ),
    (
        "resubscribe a subscribed profile",
        EXISTING,
        import_({}, resubscribe=True),
        [],
        ImportOutcome.UNCHANGED,
    ),
    (
        "subscriptions decided one after another",
        EXISTING,
        import_({"FirstName": "Anna"}, subscriptions=(subscribe(), subscribe("ann@work.example.com"))),
        [updated("import", _fname=("Ann", "Anna")), sub_added(), sub_added("ann@work.example.com", 1)],
        ImportOutcome.UPDATED,
    ),
    (
        "a subscription change alone is an update",
        [*EXISTING, sub_added(at=T0)],
        import_(
            {"FirstName": "Ann"}, subscriptions=(subscribe(status=Status.UNSUBSCRIBED, cause=Cause.IMPORT),)
        ),
        [
            SubscriptionStatusChanged(
                profile_id=P1,
                database_id="db1",
                resource_id="r1",
                channel="email",
                contact=ANN,
                from_status=Status.SUBSCRIBED,
                to_status=Status.UNSUBSCRIBED,
                cause=Cause.IMPORT,
            )
        ],
        ImportOutcome.UPDATED,
    ),
    (
        "created with defaults and subscriptions",
        [],
        import_({"email": ANN}, subscriptions=(subscribe(at=T0, cause=Cause.IMPORT),), at=T0),
        [created(source="import", email=ANN), sub_added(cause=Cause.IMPORT, at=T0)],
        ImportOutcome.CREATED,
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "expected", "outcome"), [c[1:] for c in IMPORT_CASES], ids=[c[0] for c in IMPORT_CASES]
)
def test_import(
    given: list[Event], when: ImportProfile, expected: list[Event], outcome: ImportOutcome
) -> None:
    events = then(profile_decider, given, when)
    assert events == expected
    assert import_outcome(events) is outcome


IMPORT_ERRORS: list[tuple[str, list[Event], ImportProfile, type[DomainError], str]] = [
    ("update only, missing", [], import_({"email": ANN}, ImportMode.UPDATE_ONLY), NotFound, "profile_id"),
    ("deleted", DELETED, import_({"email": ANN}), NotFound, "profile_id"),
    ("merged away", MERGED, import_({"email": ANN}, ImportMode.UPDATE_ONLY), NotFound, "profile_id"),
    ("another database", EXISTING, import_({}, database=OTHER_DB), RuleViolated, "database_id"),
    ("required on creation", [], import_({"email": ANN}, database=STRICT), ValidationFailed, "fields._lname"),
    (
        "clearing a required field",
        [created(_lname="Doe", Score=0)],
        import_({"LastName": ""}, database=STRICT),
        ValidationFailed,
        "fields._lname",
    ),
    ("invalid value", EXISTING, import_({"Birthday": "2019-02-30"}), ValidationFailed, "fields.Birthday"),
    (
        "second subscription refused",
        EXISTING,
        import_({}, subscriptions=(subscribe(), subscribe("x", "sms"))),
        ValidationFailed,
        "subscriptions.1.contact",
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in IMPORT_ERRORS], ids=[c[0] for c in IMPORT_ERRORS]
)
def test_import_refusals(
    given: list[Event], when: ImportProfile, error: type[DomainError], path: str
) -> None:
    then_error(profile_decider, given, when, error, path)


# --- update --------------------------------------------------------------------


def update(fields: dict[str, Any], **kw: Any) -> UpdateProfile:
    return UpdateProfile(P1, kw.pop("database", DB), fields, T1, **kw)


UPDATE_CASES: list[tuple[str, list[Event], UpdateProfile, list[Event]]] = [
    (
        "only the given fields, old and new",
        EXISTING,
        update({"LastName": "Doe", "Tags": "c"}),
        [updated(_lname=(None, "Doe"), Tags=(["a", "b"], ["c"]))],
    ),
    ("equal values emit nothing", EXISTING, update({"_fname": " Ann ", "Tags": ["b", "a", "a"]}), []),
    (
        "the source is recorded",
        EXISTING,
        update({"CRM_ID": 5}, source="scenario"),
        [updated("scenario", CRM_ID=(None, "5"))],
    ),
    (
        "ignore empty",
        EXISTING,
        update({"FirstName": "", "LastName": "Doe"}, ignore_empty=True),
        [updated(_lname=(None, "Doe"))],
    ),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
def test_update(given: list[Event], when: UpdateProfile, expected: list[Event]) -> None:
    assert then(profile_decider, given, when) == expected


# --- global status, test flag, tracking ----------------------------------------------

OTHER_CASES: list[tuple[str, list[Event], Any, list[Event]]] = [
    (
        "unsubscribe manually",
        EXISTING,
        ChangeGlobalStatus(P1, Status.UNSUBSCRIBED, T1),
        [status_changed(Status.SUBSCRIBED, Status.UNSUBSCRIBED)],
    ),
    ("the same status", EXISTING, ChangeGlobalStatus(P1, Status.SUBSCRIBED, T1), []),
    (
        "a complaint",
        EXISTING,
        ChangeGlobalStatus(P1, Status.COMPLAINER, T1, Cause.COMPLAINT),
        [status_changed(Status.SUBSCRIBED, Status.COMPLAINER, Cause.COMPLAINT)],
    ),
    (
        "unsubscribe link without a resource",
        EXISTING,
        ChangeGlobalStatus(P1, Status.UNSUBSCRIBED, T1, Cause.UNSUBSCRIBE_LINK),
        [status_changed(Status.SUBSCRIBED, Status.UNSUBSCRIBED, Cause.UNSUBSCRIBE_LINK)],
    ),
    (
        "unsubscribe link on a complainer changes nothing",
        [
            *EXISTING,
            ProfileGlobalStatusChanged(
                **ids(at=T0),
                from_status=Status.SUBSCRIBED,
                to_status=Status.COMPLAINER,
                cause=Cause.COMPLAINT,
            ),
        ],
        ChangeGlobalStatus(P1, Status.UNSUBSCRIBED, T1, Cause.UNSUBSCRIBE_LINK),
        [],
    ),
    (
        "operator resubscribes",
        UNSUBSCRIBED,
        ChangeGlobalStatus(P1, Status.SUBSCRIBED, T1, Cause.API),
        [status_changed(Status.UNSUBSCRIBED, Status.SUBSCRIBED, Cause.API)],
    ),
    (
        "mark as test subscriber",
        EXISTING,
        SetTestSubscriber(P1, True, T1),
        [ProfileTestSubscriberSet(**ids(), is_test=True)],
    ),
    ("test flag unchanged", EXISTING, SetTestSubscriber(P1, False, T1), []),
    ("subscription command delegated", EXISTING, subscribe(), [sub_added()]),
    (
        "subscription command on the profile's subscriptions",
        [*EXISTING, sub_added(at=T0)],
        ChangeSubscriptionStatus(
            resource_id="r1", channel="email", contact=ANN, at=T1, status=Status.SUSPENDED
        ),
        [
            SubscriptionStatusChanged(
                profile_id=P1,
                database_id="db1",
                resource_id="r1",
                channel="email",
                contact=ANN,
                from_status=Status.SUBSCRIBED,
                to_status=Status.SUSPENDED,
                cause=Cause.MANUAL,
            )
        ],
    ),
    ("delete", EXISTING, DeleteProfile(P1, T1), [ProfileDeleted(**ids())]),
    ("delete again", DELETED, DeleteProfile(P1, T2), []),
    ("delete a merged-away profile", MERGED, DeleteProfile(P1, T2), []),
]


@pytest.mark.parametrize(
    ("given", "when", "expected"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES]
)
def test_other_commands(given: list[Event], when: Any, expected: list[Event]) -> None:
    assert then(profile_decider, given, when) == expected


OTHER_ERRORS: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    ("update missing", [], update({"FirstName": "A"}), NotFound, "profile_id"),
    ("update deleted", DELETED, update({"FirstName": "A"}), NotFound, "profile_id"),
    ("update merged away", MERGED, update({"FirstName": "A"}), NotFound, "profile_id"),
    ("update in another database", EXISTING, update({}, database=OTHER_DB), RuleViolated, "database_id"),
    ("update unknown field", EXISTING, update({"Nope": 1}), ValidationFailed, "fields.Nope"),
    ("status of deleted", DELETED, ChangeGlobalStatus(P1, Status.UNSUBSCRIBED, T2), NotFound, "profile_id"),
    (
        "a form cannot resubscribe a complainer",
        [
            *EXISTING,
            ProfileGlobalStatusChanged(
                **ids(at=T0),
                from_status=Status.SUBSCRIBED,
                to_status=Status.COMPLAINER,
                cause=Cause.COMPLAINT,
            ),
        ],
        ChangeGlobalStatus(P1, Status.SUBSCRIBED, T1, Cause.FORM),
        RuleViolated,
        "status",
    ),
    (
        "a link cannot subscribe",
        UNSUBSCRIBED,
        ChangeGlobalStatus(P1, Status.SUBSCRIBED, T1, Cause.UNSUBSCRIBE_LINK),
        RuleViolated,
        "status",
    ),
    ("test flag of missing", [], SetTestSubscriber(P1, True, T1), NotFound, "profile_id"),
    ("tracking a missing profile", [], RecordTrackedData(P1, T1, ip="1.2.3.4"), NotFound, "profile_id"),
    ("tracking a bad IP", EXISTING, RecordTrackedData(P1, T1, ip="1.2.3"), ValidationFailed, "ip"),
    (
        "tracking a bad time zone",
        EXISTING,
        RecordTrackedData(P1, T1, timezone="Moscow"),
        ValidationFailed,
        "timezone",
    ),
    ("delete missing", [], DeleteProfile(P1, T1), NotFound, "profile_id"),
    ("subscription on missing", [], subscribe(), NotFound, "profile_id"),
    ("subscription on deleted", DELETED, subscribe(), NotFound, "profile_id"),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in OTHER_ERRORS], ids=[c[0] for c in OTHER_ERRORS]
)
def test_other_refusals(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(profile_decider, given, when, error, path)


def test_tracking_records_the_last_action() -> None:
    record = RecordTrackedData(
        P1,
        T1,
        ip="94.25.184.183",
        city="Рязань",
        country="Russia",
        region="Рязанская",
        postal_code="390000",
        timezone="Europe/Moscow",
        user_agent="Mozilla/5.0",
    )
    [event] = then(profile_decider, EXISTING, record)
    assert event == ProfileTrackedDataRecorded(
        **ids(),
        tracked=TrackedData(
            ip="94.25.184.183",
            city="Рязань",
            country="Russia",
            region="Рязанская",
            postal_code="390000",
            timezone="Europe/Moscow",
            user_agent="Mozilla/5.0",
            at=T1,
        ),
        changes={
            "_ip": FieldChange(new="94.25.184.183"),
            "_city": FieldChange(new="Рязань"),
            "_country": FieldChange(new="Russia"),
            "_region": FieldChange(new="Рязанская"),
            "_postal_code": FieldChange(new="390000"),
            "_tz": FieldChange(new="Europe/Moscow"),
        },
    )
    state = profile_decider.fold([*EXISTING, event])
    assert state.tracked is not None and state.tracked.at == T1
    assert state.timezone == "Europe/Moscow" and state.fields["_city"] == "Рязань"

    # the same data at a later action changes nothing
    assert then(profile_decider, [*EXISTING, event], replace(record, at=T2)) == []


def test_tracking_keeps_what_it_did_not_see_and_drops_ipv6() -> None:
    first = then(profile_decider, EXISTING, RecordTrackedData(P1, T1, ip="1.2.3.4", city="Tver"))
    [event] = then(
        profile_decider, [*EXISTING, *first], RecordTrackedData(P1, T2, ip="2001:db8::1", user_agent="UA")
    )
    assert isinstance(event, ProfileTrackedDataRecorded)
    assert event.changes == {} and event.tracked.ip is None and event.tracked.user_agent == "UA"
    state = profile_decider.fold([*EXISTING, *first, event])
    assert state.fields["_ip"] == "1.2.3.4" and state.fields["_city"] == "Tver"


# --- merge -------------------------------------------------------------------------

TARGET_EVENTS: list[Event] = [
    created(P2, _fname="Anna", Plan="Pro", email=placeholder_email(P2)),
    sub_added("anna@example.com", 0, profile_id=P2, at=T0),
]
TARGET = profile_decider.fold(TARGET_EVENTS)
SOURCE_EVENTS: list[Event] = [
    *EXISTING,
    sub_added(ANN, 0, at=T0, ip="10.0.0.1"),
    sub_added("anna@example.com", 1, at=T0),
    sub_added("ann@work.example.com", 2, at=T0, status=Status.UNSUBSCRIBED),
]
SOURCE = profile_decider.fold(SOURCE_EVENTS)
ELSEWHERE = profile_decider.fold([created(P2, database_id="db2")])


def test_merge_away_the_source() -> None:
    assert then(profile_decider, SOURCE_EVENTS, MergeProfileInto(P1, TARGET, T1)) == [
        ProfileMergedAway(**ids(), target_profile_id=P2)
    ]
    merged = profile_decider.fold([*SOURCE_EVENTS, ProfileMergedAway(**ids(), target_profile_id=P2)])
    assert not merged.exists and merged.merged_into == P2


def test_absorb_takes_what_the_target_lacks_and_the_target_wins() -> None:
    events = then(profile_decider, TARGET_EVENTS, AbsorbProfile(P2, SOURCE, T1))
    assert events == [
        ProfileAbsorbed(
            **ids(P2),
            source_profile_id=P1,
            changes={
                "email": FieldChange(old=placeholder_email(P2), new=ANN),
                "Tags": FieldChange(new=["a", "b"]),
            },
        ),
        sub_added(ANN, 1, profile_id=P2, cause=Cause.MANUAL, at=T0, ip="10.0.0.1"),
        sub_added(
            "ann@work.example.com", 2, profile_id=P2, cause=Cause.MANUAL, at=T0, status=Status.UNSUBSCRIBED
        ),
    ]
    target = profile_decider.fold(events, TARGET)
    assert target.fields["_fname"] == "Anna" and target.fields["Plan"] == "Pro" and target.email == ANN
    assert [s.key.contact for s in target.subscriptions.of_resource("r1", "email")] == [
        "anna@example.com",
        ANN,
        "ann@work.example.com",
    ]


MERGE_ERRORS: list[tuple[str, list[Event], Any, type[DomainError], str]] = [
    ("into itself", SOURCE_EVENTS, MergeProfileInto(P1, SOURCE, T1), RuleViolated, "target_profile_id"),
    (
        "into another database",
        SOURCE_EVENTS,
        MergeProfileInto(P1, ELSEWHERE, T1),
        RuleViolated,
        "target_profile_id",
    ),
    (
        "into a missing profile",
        SOURCE_EVENTS,
        MergeProfileInto(P1, ProfileState(), T1),
        NotFound,
        "target_profile_id",
    ),
    (
        "into a deleted profile",
        SOURCE_EVENTS,
        MergeProfileInto(P1, profile_decider.fold([*TARGET_EVENTS, ProfileDeleted(**ids(P2))]), T1),
        NotFound,
        "target_profile_id",
    ),
    ("a missing source", [], MergeProfileInto(P1, TARGET, T1), NotFound, "profile_id"),
    ("twice", MERGED, MergeProfileInto(P1, TARGET, T1), NotFound, "profile_id"),
    (
        "absorb from another database",
        [created(P2, database_id="db2")],
        AbsorbProfile(P2, SOURCE, T1),
        RuleViolated,
        "source_profile_id",
    ),
    ("absorb itself", SOURCE_EVENTS, AbsorbProfile(P1, SOURCE, T1), RuleViolated, "source_profile_id"),
    (
        "absorb a merged-away source",
        TARGET_EVENTS,
        AbsorbProfile(P2, profile_decider.fold(MERGED), T1),
        NotFound,
        "source_profile_id",
    ),
    ("absorb into a missing target", [], AbsorbProfile(P2, SOURCE, T1), NotFound, "profile_id"),
]


@pytest.mark.parametrize(
    ("given", "when", "error", "path"), [c[1:] for c in MERGE_ERRORS], ids=[c[0] for c in MERGE_ERRORS]
)
def test_merge_refusals(given: list[Event], when: Any, error: type[DomainError], path: str) -> None:
    then_error(profile_decider, given, when, error, path)


# --- state and events ------------------------------------------------------------------


def test_state_views() -> None:
    state = profile_decider.fold(
        [
            created(
                _regdate="2020-04-19T23:34:57.398Z",
                _regip="214.95.107.26",
                _regcity="Moscow",
                _regcountry="Russian Federation",
                _regurl="https://shop.example.com/form",
                _vendor="77777",
                phones=[PHONE],
                _tz="Europe/Moscow",
            ),
            ProfileTestSubscriberSet(**ids(), is_test=True),
            status_changed(Status.SUBSCRIBED, Status.SUSPENDED),
            sub_added(at=T2),
        ]
    )
    assert state.exists and state.is_test and state.status is Status.SUSPENDED
    assert state.email == placeholder_email(P1) and state.phones == (PHONE,)
    assert state.registration.date == "2020-04-19T23:34:57.398Z" and state.registration.vendor == "77777"
    assert (
        state.registration.ip == "214.95.107.26" and state.registration.url == "https://shop.example.com/form"
    )
    assert state.timezone == "Europe/Moscow"
    assert (state.md5_id, state.xxh_id, state.source) == (f"md5-{P1}", f"xxh-{P1}", "manual")
    assert state.created_at == T0 and state.updated_at == T1
    assert state.subscriptions.get(SubscriptionKey("r1", "email", ANN)) is not None


def test_a_new_profile_is_subscribed_and_unknown_events_change_nothing() -> None:
    state = profile_decider.fold([created()])
    assert state.status is Status.SUBSCRIBED and not state.is_test and state.tracked is None
    foreign = DatabaseDeleted(database_id="db1", at=T1)
    assert profile_decider.evolve(state, foreign) is state


ALL_EVENTS: list[Event] = [
    created(_fname="Ann", Tags=["a"]),
    updated(_fname=("Ann", None), Tags=(None, ["x"])),
    status_changed(Status.SUBSCRIBED, Status.HARD_BOUNCED, Cause.HARD_BOUNCE),
    ProfileTestSubscriberSet(**ids(), is_test=True),
    ProfileTrackedDataRecorded(
        **ids(), tracked=TrackedData(ip="1.2.3.4", at=T1), changes={"_ip": FieldChange(new="1.2.3.4")}
    ),
    ProfileDeleted(**ids()),
    ProfileErased(**ids()),
    ProfileMergedAway(**ids(), target_profile_id=P2),
    ProfileAbsorbed(**ids(), source_profile_id=P2, changes={"Plan": FieldChange(new="Pro")}),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: e.type_name)
def test_events_survive_the_store(event: Event) -> None:
    data = event.to_data()
    assert registry.decode(event.type_name, event.schema_version, data) == event
    assert data["profile_id"] == P1 and data["database_id"] == "db1"


def test_every_profile_event_is_covered() -> None:
    assert {type(e) for e in ALL_EVENTS} == set(PROFILE_EVENTS)
    assert profile_stream(P1) == f"profile-{P1}"
