"""Finding an existing profile: the match modes ("Режим поиска профиля") and lookup keys.

An import row, a webhook or a quick search names a profile by one value; a
profile can be found by several. Both sides are expressed as `LookupKey`s, a
kind and a normalised value, so the app layer resolves a row to a profile with
one projection from keys to profile ids (per database):

| mode | row value | key kind | a profile is found by it when |
|---|---|---|---|
| `email` | the row's email | `email` | it is the profile's email or a subscription's email |
| `email_profile` | the row's email | `email_profile` | it is the profile's email |
| `phone` | the row's first phone | `phone` | it is a profile phone or an sms/viber/whatsapp contact |
| `push` | the row's push token | `push` | it is a push subscription's token |
| `profile_id` | `profile_id` | `profile_id` | it is the profile's id |
| `custom` | the named field | `field:<name>` | it is the value of that unique field |

Emails are keyed case-insensitively (`contacts.email_key`), phones in E.164.
When a row carries no value of its own for an email, phone or push key, the
first subscription of the matching channel in the row's `subscriptions` is
used, so a form that only subscribes an address still finds its profile.

The `email` kind is not unique (several profiles may share an address through
subscriptions); the app should prefer the profile whose own email it is (the
`email_profile` key) and then the earliest. `unique_lookup_keys` are the keys
no two profiles of a database may share: the profile email and the values of
unique custom fields. The `<profile_id>@localhost` placeholder is no key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from herald.domain.contacts import email_key
from herald.domain.databases import DatabaseState
from herald.domain.errors import ValidationFailed
from herald.domain.fields import coerce_value
from herald.domain.profiles import ProfileState, is_placeholder_email
from herald.domain.resources import PHONE_CHANNELS
from herald.domain.subscriptions import contacts, normalize_contact


class MatchMode(StrEnum):
    EMAIL = "email"
    EMAIL_PROFILE = "email_profile"
    PHONE = "phone"
    PUSH = "push"
    PROFILE_ID = "profile_id"
    CUSTOM = "custom"


class LookupKey(NamedTuple):
    """A normalised value a profile can be found by; `kind` is one of the table's key kinds.

    A named tuple rather than a dataclass: ingestion and the profiles projection hash keys by
    the hundred thousand, and a tuple's hash is C.
    """

    kind: str
    value: str


EMAIL = "email"
EMAIL_PROFILE = "email_profile"
PHONE = "phone"
PUSH = "push"
PROFILE_ID = "profile_id"

# The subscription channels whose contacts stand for each contact kind.
_CHANNEL_KINDS = {"email": EMAIL, "push": PUSH, **dict.fromkeys(PHONE_CHANNELS, PHONE)}


def field_kind(name: str) -> str:
    """The key kind of the unique field `name`."""
    return f"field:{name}"


def match_key(
    mode: MatchMode, field_name: str | None, row_data: Mapping[str, Any], database: DatabaseState
) -> LookupKey | None:
    """The key that finds the profile `row_data` (an import row) names, or None if it names none."""
    match mode:
        case MatchMode.EMAIL | MatchMode.EMAIL_PROFILE:
            kind = EMAIL if mode is MatchMode.EMAIL else EMAIL_PROFILE
            email = _row_value(row_data, "email", database)
            if isinstance(email, str):
                return LookupKey(kind, email_key(email))
            return _subscription_key(row_data, "email", kind)
        case MatchMode.PHONE:
            phones = _row_value(row_data, "phones", database)
            if isinstance(phones, list):
                return LookupKey(PHONE, str(phones[0]))
            return _subscription_key(row_data, "sms", PHONE)
        case MatchMode.PUSH:
            return _subscription_key(row_data, "push", PUSH)
        case MatchMode.PROFILE_ID:
            profile_id = str(row_data.get("profile_id") or "").strip()
            return LookupKey(PROFILE_ID, profile_id) if profile_id else None
        case MatchMode.CUSTOM:
            return _custom_key(field_name, row_data, database)


def _custom_key(
    field_name: str | None, row_data: Mapping[str, Any], database: DatabaseState
) -> LookupKey | None:
    if not field_name:
        raise ValidationFailed("matching by a custom field needs the field's name", "field_name")
    definition = database.field(field_name)
    if definition is None:
        raise ValidationFailed(f"the database has no field {field_name!r}", "field_name")
    if not definition.unique:
        raise ValidationFailed(
            f"{definition.name!r} is not a unique field, so it cannot find one profile", "field_name"
        )
    if definition.name == "email":
        return match_key(MatchMode.EMAIL_PROFILE, None, row_data, database)
    value = _row_value(row_data, definition.name, database)
    return None if value is None else LookupKey(field_kind(definition.name), str(value))


def _row_value(row_data: Mapping[str, Any], canonical: str, database: DatabaseState) -> Any:
    """The row's value for the field `canonical`, whatever name the row gives it, in stored form."""
    for key, value in row_data.items():
        definition = database.field(key)
        if definition is not None and definition.name == canonical:
            return coerce_value(definition, value, f"fields.{key}")
    return None


def _subscription_key(row_data: Mapping[str, Any], channel: str, kind: str) -> LookupKey | None:
    """The key of the contact of the row's first `channel` subscription (flat or in `<channel>_data`)."""
    subscriptions = row_data.get("subscriptions")
    if not isinstance(subscriptions, list):
        return None
    for position, entry in enumerate(subscriptions):
        if not isinstance(entry, Mapping) or entry.get("channel") != channel:
            continue
        found = entry_contact(entry)
        if found is not None:
            name, contact = found
            return LookupKey(kind, normalize_contact(channel, contact, f"subscriptions.{position}.{name}"))
    return None


def entry_contact(entry: Mapping[str, Any]) -> tuple[str, str] | None:
    """(where, contact): the contact an import row's subscription entry gives, in any spelling.

    The guide shows `email` flat and `email_data.email` nested; by analogy SMS
    gives `phone` and push `token`, and `contact` works for every channel.
    """
    channel = str(entry.get("channel", ""))
    nested = entry.get(f"{channel}_data")
    sources = (("", entry), (f"{channel}_data.", nested if isinstance(nested, Mapping) else {}))
    for prefix, source in sources:
        for name in (*_CONTACT_NAMES.get(channel, ()), "contact"):
            if source.get(name):
                return f"{prefix}{name}", str(source[name])
    return None


# How the guide's import payload names each channel's contact (`email`, `email_data.email`, …).
_CONTACT_NAMES = {
    "email": ("email",),
    "sms": ("phone",),
    "push": ("token",),
    "telegram_bot": ("chat_id",),
    **{c: ("phone",) for c in PHONE_CHANNELS},
}


def profile_lookup_keys(state: ProfileState, unique_fields: frozenset[str]) -> frozenset[LookupKey]:
    """Every key `state`'s profile can be found by; none once it is deleted or merged away.

    `unique_fields` is the database's `unique_fields` (passed alone so that a
    projection can give the schema as of the event it folds).
    """
    if not state.exists:
        return frozenset()
    return frozenset(_keys(state, unique_fields, unique_only=False))


def lookup_key_inputs(state: ProfileState, unique_fields: frozenset[str]) -> tuple[Any, ...]:
    """Everything `profile_lookup_keys(state, unique_fields)` reads: equal inputs, equal keys.

    Cheaper than the keys, so a projection recomputes them only when these differ (the
    subscriptions compare by identity first: an unchanged profile keeps the same object).
    """
    fields = state.fields
    return (
        state.exists,
        state.profile_id,
        fields.get("email"),
        fields.get("phones"),
        unique_fields,
        tuple(fields.get(name) for name in sorted(unique_fields)),
        state.subscriptions,
    )


def unique_lookup_keys(state: ProfileState, unique_fields: frozenset[str]) -> frozenset[LookupKey]:
    """The keys no other profile of the database may hold: its email and unique field values."""
    if not state.exists:
        return frozenset()
    return frozenset(_keys(state, unique_fields, unique_only=True))


def _keys(state: ProfileState, unique_fields: frozenset[str], unique_only: bool) -> Iterator[LookupKey]:
    if not is_placeholder_email(state.email):
        yield LookupKey(EMAIL_PROFILE, email_key(state.email))
    for name in sorted(unique_fields - {"email"}):
        value = state.fields.get(name)
        if value is not None:
            yield LookupKey(field_kind(name), str(value))
    if unique_only:
        return
    yield LookupKey(PROFILE_ID, state.profile_id)
    if not is_placeholder_email(state.email):
        yield LookupKey(EMAIL, email_key(state.email))
    for phone in state.phones:
        yield LookupKey(PHONE, phone)
    for channel, contact in contacts(state.subscriptions):
        kind = _CHANNEL_KINDS.get(channel)
        if kind is not None:
            yield LookupKey(kind, email_key(contact) if kind == EMAIL else contact)
