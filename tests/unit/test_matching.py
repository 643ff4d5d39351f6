"""Match modes and lookup keys: what a row is looked up by, and every key a profile is found by."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain.databases import AddCustomField, CreateDatabase, DatabaseState, database_decider
from herald.domain.errors import ValidationFailed
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.matching import (
    LookupKey,
    MatchMode,
    field_kind,
    match_key,
    profile_lookup_keys,
    unique_lookup_keys,
)
from herald.domain.profiles import (
    CreateProfile,
    DeleteProfile,
    ProfileState,
    profile_decider,
)
from herald.domain.resources import (
    CreateResource,
    CustomChannelSettings,
    EmailSettings,
    PushPlatform,
    PushProvider,
    PushSettings,
    ResourceSettings,
    ResourceState,
    SmsSettings,
    resource_decider,
)
from herald.domain.secrets import SealedSecret
from herald.domain.subscriptions import AddSubscription

SEALED_KEY = SealedSecret(key_id="test-key", ciphertext="c2VhbGVk")  # what the domain stores

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
P1 = "5e8a7f9de7d8b9372bb0de5c"
PHONE = "+79123456789"


def _database() -> DatabaseState:
    state = database_decider.initial
    for command in (
        CreateDatabase("db1", "Clients", T0),
        AddCustomField("db1", FieldDefinition(name="CRM_ID", type=FieldType.STRING, unique=True), T0),
        AddCustomField("db1", FieldDefinition(name="Account", type=FieldType.INT, unique=True), T0),
        AddCustomField("db1", FieldDefinition(name="Nickname", type=FieldType.STRING), T0),
    ):
        state = database_decider.fold(database_decider.decide(command, state), state)
    return state


DB = _database()
RESOURCE = resource_decider.fold(
    resource_decider.decide(
        CreateResource(
            resource_id="r1",
            token="t",
            settings=ResourceSettings(
                name="Shop",
                database_ids=("db1",),
                source_urls=("https://shop.example.com",),
                default_tracking_domain="trk.example.com",
            ),
            channels=(
                EmailSettings(from_name="Shop", from_email="news@example.com", list_id="promo.example.com"),
                SmsSettings(caller_id="Shop"),
                PushSettings(
                    platforms=(PushPlatform.ANDROID,),
                    providers=(PushProvider.FCM,),
                    firebase_api_key=SEALED_KEY,
                ),
                CustomChannelSettings(name="telegram_bot"),
            ),
        ),
        ResourceState(),
    )
)


def subscribe(channel: str, contact: str, **kw: Any) -> AddSubscription:
    return AddSubscription(resource_id="r1", channel=channel, contact=contact, at=T0, resource=RESOURCE, **kw)


def profile(fields: dict[str, Any], *subscriptions: AddSubscription) -> ProfileState:
    command = CreateProfile(P1, "md5", "xxh", DB, fields, T0, subscriptions=subscriptions)
    return profile_decider.fold(profile_decider.decide(command, ProfileState()))


ROW_CASES: list[tuple[str, MatchMode, str | None, dict[str, Any], LookupKey | None]] = [
    (
        "email, case-insensitive",
        MatchMode.EMAIL,
        None,
        {"Email": " Ann@Example.COM"},
        LookupKey("email", "ann@example.com"),
    ),
    (
        "email profile only",
        MatchMode.EMAIL_PROFILE,
        None,
        {"email": "ann@example.com"},
        LookupKey("email_profile", "ann@example.com"),
    ),
    (
        "email from a flat subscription",
        MatchMode.EMAIL,
        None,
        {
            "subscriptions": [
                {"channel": "sms", "phone": PHONE},
                {"resource_id": 46, "channel": "email", "email": "Bob@Example.org"},
            ]
        },
        LookupKey("email", "bob@example.org"),
    ),
    (
        "email from email_data",
        MatchMode.EMAIL_PROFILE,
        None,
        {"subscriptions": [{"channel": "email", "email_data": {"email": "example_email@example.org"}}]},
        LookupKey("email_profile", "example_email@example.org"),
    ),
    ("no email", MatchMode.EMAIL, None, {"FirstName": "Ann"}, None),
    ("empty email", MatchMode.EMAIL, None, {"email": ""}, None),
    (
        "phone: the first of the row's phones",
        MatchMode.PHONE,
        None,
        {"Phones": "+7 912 345 67 89, +79123456780"},
        LookupKey("phone", PHONE),
    ),
    ("phone by alias", MatchMode.PHONE, None, {"phone": "79123456789"}, LookupKey("phone", PHONE)),
    (
        "phone from an sms subscription",
        MatchMode.PHONE,
        None,
        {"subscriptions": [{"channel": "sms", "sms_data": {"phone": "+7 (912) 345-67-89"}}]},
        LookupKey("phone", PHONE),
    ),
    ("no phone", MatchMode.PHONE, None, {"email": "a@b.com"}, None),
    (
        "push token",
        MatchMode.PUSH,
        None,
        {"subscriptions": [{"channel": "push", "token": " tok-1 "}]},
        LookupKey("push", "tok-1"),
    ),
    (
        "push token as contact",
        MatchMode.PUSH,
        None,
        {"subscriptions": [{"channel": "push", "contact": "tok-2"}]},
        LookupKey("push", "tok-2"),
    ),
    ("no push subscription", MatchMode.PUSH, None, {"subscriptions": "nonsense"}, None),
    ("profile id", MatchMode.PROFILE_ID, None, {"profile_id": f" {P1} "}, LookupKey("profile_id", P1)),
    ("no profile id", MatchMode.PROFILE_ID, None, {"email": "a@b.com"}, None),
    (
        "custom string field, any case",
        MatchMode.CUSTOM,
        "crm_id",
        {"CRM_ID": " A-17 "},
        LookupKey("field:CRM_ID", "A-17"),
    ),
    ("custom int field", MatchMode.CUSTOM, "Account", {"account": "42.0"}, LookupKey("field:Account", "42")),
    ("custom field missing from the row", MatchMode.CUSTOM, "CRM_ID", {"email": "a@b.com"}, None),
    (
        "custom by email is the profile email",
        MatchMode.CUSTOM,
        "Email",
        {"email": "A@b.com"},
        LookupKey("email_profile", "a@b.com"),
    ),
]


@pytest.mark.parametrize(
    ("mode", "field_name", "row", "expected"), [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES]
)
def test_match_key(
    mode: MatchMode, field_name: str | None, row: dict[str, Any], expected: LookupKey | None
) -> None:
    assert match_key(mode, field_name, row, DB) == expected


ROW_ERRORS: list[tuple[str, MatchMode, str | None, dict[str, Any], str]] = [
    ("bad email", MatchMode.EMAIL, None, {"Email": "nope"}, "fields.Email"),
    (
        "bad subscription email",
        MatchMode.EMAIL,
        None,
        {"subscriptions": [{"channel": "email", "email": "x"}]},
        "subscriptions.0.email",
    ),
    ("bad phone", MatchMode.PHONE, None, {"phones": "12"}, "fields.phones.0"),
    ("custom without a field", MatchMode.CUSTOM, None, {"CRM_ID": "1"}, "field_name"),
    ("custom unknown field", MatchMode.CUSTOM, "Nope", {"Nope": "1"}, "field_name"),
    ("custom field not unique", MatchMode.CUSTOM, "Nickname", {"Nickname": "a"}, "field_name"),
    ("custom bad value", MatchMode.CUSTOM, "Account", {"Account": "1.5"}, "fields.Account"),
]


@pytest.mark.parametrize(
    ("mode", "field_name", "row", "path"), [c[1:] for c in ROW_ERRORS], ids=[c[0] for c in ROW_ERRORS]
)
def test_match_key_refusals(mode: MatchMode, field_name: str | None, row: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        match_key(mode, field_name, row, DB)
    assert caught.value.path == path


def test_every_key_a_profile_is_found_by() -> None:
    state = profile(
        {
            "email": "Ann@Example.com",
            "phones": [PHONE, "+79123456780"],
            "CRM_ID": "A-17",
            "Account": 42,
            "Nickname": "annie",
        },
        subscribe("email", "Ann.Work@Example.com"),
        subscribe("sms", "+79000000001"),
        subscribe("push", "tok-1", provider=PushProvider.FCM),
        subscribe("telegram_bot", "100200300"),
    )
    assert profile_lookup_keys(state, DB.unique_fields) == {
        LookupKey("profile_id", P1),
        LookupKey("email", "ann@example.com"),
        LookupKey("email_profile", "ann@example.com"),
        LookupKey("phone", PHONE),
        LookupKey("phone", "+79123456780"),
        LookupKey("email", "ann.work@example.com"),
        LookupKey("phone", "+79000000001"),
        LookupKey("push", "tok-1"),
        LookupKey("field:CRM_ID", "A-17"),
        LookupKey("field:Account", "42"),
    }
    assert unique_lookup_keys(state, DB.unique_fields) == {
        LookupKey("email_profile", "ann@example.com"),
        LookupKey("field:CRM_ID", "A-17"),
        LookupKey("field:Account", "42"),
    }


def test_a_row_finds_the_profile_it_names() -> None:
    state = profile({"email": "Ann@Example.com", "CRM_ID": "A-17"}, subscribe("sms", PHONE))
    keys = profile_lookup_keys(state, DB.unique_fields)
    rows: list[tuple[MatchMode, str | None, dict[str, Any]]] = [
        (MatchMode.EMAIL, None, {"Email": "ANN@example.com"}),
        (MatchMode.EMAIL_PROFILE, None, {"Email": "ann@example.com"}),
        (MatchMode.PHONE, None, {"Phones": PHONE}),
        (MatchMode.PROFILE_ID, None, {"profile_id": P1}),
        (MatchMode.CUSTOM, "CRM_ID", {"CRM_ID": "A-17"}),
    ]
    for mode, field_name, row in rows:
        assert match_key(mode, field_name, row, DB) in keys, mode


def test_placeholder_email_is_no_key_and_gone_profiles_have_none() -> None:
    state = profile({"Nickname": "x"})
    assert profile_lookup_keys(state, DB.unique_fields) == {LookupKey("profile_id", P1)}
    assert unique_lookup_keys(state, DB.unique_fields) == frozenset()
    deleted = profile_decider.fold(profile_decider.decide(DeleteProfile(P1, T0), state), state)
    assert (
        profile_lookup_keys(deleted, DB.unique_fields)
        == frozenset()
        == unique_lookup_keys(deleted, DB.unique_fields)
    )
    assert field_kind("CRM_ID") == "field:CRM_ID"
