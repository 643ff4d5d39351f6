"""The profile aggregate (stream `profile-<profile_id>`): a customer's fields, status and subscriptions.

A profile lives in one database and holds the values of that database's
fields (standard and custom, by canonical API name, in stored form), its
global status, the test-subscriber flag, its last tracked data and its
subscriptions (decided by `subscriptions.py`, to which this decider delegates).

Views over the fields: the registration data (opt-in proof: `_regdate`,
`_regip`, `_regcity`, `_regcountry`, `_regurl`, `_vendor`), the last-known
geo that tracking updates (`_ip`, `_city`, `_country`, `_region`,
`_postal_code`, `_tz`), and the profile's time zone (`_tz`).

Rules from the guide: a profile without an email gets `<profile_id>@localhost`;
the global status starts subscribed; import has three modes (add and update,
add only, update only), "ignore empty" values, defaults for missing fields and
required fields on creation, and "resubscribe" which sets the global status to
subscribed; a profile is in exactly one database.

Decisions where the guide is silent:
- An update that sets equal values emits nothing; so does `add_only` on an
  existing profile (its subscriptions included). `import_outcome` tells
  created / updated / unchanged from the events.
- Clearing a field (None or "") removes its value; clearing the email restores
  the placeholder; clearing a required field is refused. Defaults fill only
  fields a new profile has no data for.
- A global status change obeys the subscription causes' rules
  (`subscriptions.TRANSITIONS`): operators set anything, a subscriber's link
  only unsubscribes, and an unsubscribe request on a profile that already
  receives nothing (complainer, hard bounced, invalid) changes nothing.
- Tracking (`RecordTrackedData`) overwrites the last-known fields it has
  values for and keeps the rest; it ignores an IPv6 address (IP fields are
  IPv4 only) but keeps the geo resolved from it; it emits only when something
  differs, so `tracked.at` is when the tracked data last changed.
- Merge: the source profile is merged away (and then behaves as deleted) and
  the target absorbs the source's field values it lacks, the target winning
  on conflicts (a placeholder email counts as lacking); the source's
  subscriptions the target lacks move over with their status, registration
  proof and fields, queued after the target's own on the same resource channel.
  The target keeps its global status and test flag.
- A deleted or merged-away profile refuses commands with NotFound, except a
  repeated delete, which changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from herald.domain.databases import DatabaseState
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import STANDARD_FIELDS, coerce_value
from herald.domain.statuses import Status
from herald.domain.subscriptions import (
    SUBSCRIPTION_EVENTS,
    TRANSITIONS,
    Cause,
    ProfileRef,
    SubscriptionAdded,
    SubscriptionCommand,
    SubscriptionsState,
    decide_subscription,
    evolve_subscriptions,
)

PLACEHOLDER_DOMAIN = "localhost"


def profile_stream(profile_id: str) -> str:
    return f"profile-{profile_id}"


def placeholder_email(profile_id: str) -> str:
    """The email a profile without one holds (the guide's `<profile_id>@localhost`)."""
    return f"{profile_id}@{PLACEHOLDER_DOMAIN}"


def is_placeholder_email(email: str) -> bool:
    return email.endswith(f"@{PLACEHOLDER_DOMAIN}")


class ImportMode(StrEnum):
    ADD_AND_UPDATE = "add_and_update"  # "Добавить новых и обновить существующих"
    ADD_ONLY = "add_only"  # "Только добавить новых, не обновлять существующих"
    UPDATE_ONLY = "update_only"  # "Только обновлять существующих, не добавлять новых"


class ImportOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class FieldChange(BaseModel):
    """One field's value before and after (None: no value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    old: JsonValue = None
    new: JsonValue = None


class TrackedData(BaseModel):
    """What tracking recorded at the profile's last action (the card's "Отслеженная" tab)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ip: str | None = None
    city: str | None = None
    country: str | None = None
    region: str | None = None
    postal_code: str | None = None
    timezone: str | None = None
    user_agent: str | None = None
    at: datetime


# The last-known fields tracking writes, by TrackedData attribute.
_TRACKED_FIELDS = {
    "ip": "_ip",
    "city": "_city",
    "country": "_country",
    "region": "_region",
    "postal_code": "_postal_code",
    "timezone": "_tz",
}


@dataclass(frozen=True, slots=True)
class Registration:
    """The opt-in proof (the card's "Регистрационная" tab)."""

    date: str | None
    ip: str | None
    city: str | None
    country: str | None
    url: str | None
    vendor: str | None


# --- events ------------------------------------------------------------------


class ProfileEvent(Event):
    profile_id: str
    database_id: str
    at: datetime


@registry.register("ProfileCreated")
class ProfileCreated(ProfileEvent):
    md5_id: str
    xxh_id: str
    fields: dict[str, JsonValue]
    source: str


@registry.register("ProfileFieldsUpdated")
class ProfileFieldsUpdated(ProfileEvent):
    changes: dict[str, FieldChange]
    source: str


@registry.register("ProfileGlobalStatusChanged")
class ProfileGlobalStatusChanged(ProfileEvent):
    from_status: Status
    to_status: Status
    cause: Cause


@registry.register("ProfileTestSubscriberSet")
class ProfileTestSubscriberSet(ProfileEvent):
    is_test: bool


@registry.register("ProfileTrackedDataRecorded")
class ProfileTrackedDataRecorded(ProfileEvent):
    tracked: TrackedData
    changes: dict[str, FieldChange]


@registry.register("ProfileDeleted")
class ProfileDeleted(ProfileEvent):
    pass


@registry.register("ProfileErased")
class ProfileErased(ProfileEvent):
    """GDPR erasure: the profile's key is destroyed; its sealed personal data reads as erased.

    `stop_list_entries` names (by keyed digest) the stop-list entries of its addresses and phones,
    whose keys are destroyed too: they keep matching but read as erased from now on."""

    stop_list_entries: tuple[str, ...] = ()


@registry.register("ProfileMergedAway")
class ProfileMergedAway(ProfileEvent):
    target_profile_id: str


@registry.register("ProfileAbsorbed")
class ProfileAbsorbed(ProfileEvent):
    """The field values taken from the merged-away source; its subscriptions follow as SubscriptionAdded."""

    source_profile_id: str
    changes: dict[str, FieldChange]


PROFILE_EVENTS: tuple[type[Event], ...] = (
    ProfileCreated,
    ProfileFieldsUpdated,
    ProfileGlobalStatusChanged,
    ProfileTestSubscriberSet,
    ProfileTrackedDataRecorded,
    ProfileDeleted,
    ProfileErased,
    ProfileMergedAway,
    ProfileAbsorbed,
)


# --- state -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileState:
    """A profile as its events left it; `ProfileState()` is the empty stream."""

    profile_id: str = ""
    database_id: str = ""
    md5_id: str = ""
    xxh_id: str = ""
    fields: Mapping[str, JsonValue] = field(default_factory=dict)
    status: Status = Status.SUBSCRIBED
    is_test: bool = False
    tracked: TrackedData | None = None
    subscriptions: SubscriptionsState = field(default_factory=SubscriptionsState)
    source: str = ""
    created: bool = False
    deleted: bool = False
    erased: bool = False
    merged_into: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None  # the last profile event's time (subscription events carry none)

    @property
    def exists(self) -> bool:
        """Created, and neither deleted nor merged away."""
        return self.created and not self.deleted and self.merged_into is None

    @property
    def ref(self) -> ProfileRef:
        return ProfileRef(self.profile_id, self.database_id)

    @property
    def email(self) -> str:
        return str(self.fields.get("email") or placeholder_email(self.profile_id))

    @property
    def phones(self) -> tuple[str, ...]:
        phones = self.fields.get("phones")
        return tuple(str(p) for p in phones) if isinstance(phones, list) else ()

    @property
    def timezone(self) -> str | None:
        """The profile's time zone (`_tz`), for sending at the profile's local time."""
        return self._text("_tz")

    @property
    def registration(self) -> Registration:
        return Registration(
            date=self._text("_regdate"),
            ip=self._text("_regip"),
            city=self._text("_regcity"),
            country=self._text("_regcountry"),
            url=self._text("_regurl"),
            vendor=self._text("_vendor"),
        )

    def _text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None else str(value)


def _with_changes(
    fields: Mapping[str, JsonValue], changes: Mapping[str, FieldChange]
) -> dict[str, JsonValue]:
    updated = dict(fields)
    for name, change in changes.items():
        if change.new is None:
            updated.pop(name, None)
        else:
            updated[name] = change.new
    return updated


def evolve(state: ProfileState, event: Event) -> ProfileState:
    """The profile after `event`."""
    if isinstance(event, SUBSCRIPTION_EVENTS):
        return replace(state, subscriptions=evolve_subscriptions(state.subscriptions, event))
    if not isinstance(event, ProfileEvent):
        return state
    # One `replace` per event (with `updated_at`): a replay folds every profile event here.
    match event:
        case ProfileCreated():
            return replace(
                state,
                profile_id=event.profile_id,
                database_id=event.database_id,
                md5_id=event.md5_id,
                xxh_id=event.xxh_id,
                fields=dict(event.fields),
                source=event.source,
                created=True,
                created_at=event.at,
                updated_at=event.at,
            )
        case ProfileFieldsUpdated() | ProfileAbsorbed():
            return replace(state, fields=_with_changes(state.fields, event.changes), updated_at=event.at)
        case ProfileGlobalStatusChanged():
            return replace(state, status=event.to_status, updated_at=event.at)
        case ProfileTestSubscriberSet():
            return replace(state, is_test=event.is_test, updated_at=event.at)
        case ProfileTrackedDataRecorded():
            fields = _with_changes(state.fields, event.changes)
            return replace(state, tracked=event.tracked, fields=fields, updated_at=event.at)
        case ProfileDeleted():
            return replace(state, deleted=True, updated_at=event.at)
        case ProfileErased():
            return replace(
                state,
                deleted=True,
                erased=True,
                fields={},
                tracked=None,
                subscriptions=SubscriptionsState(),
                updated_at=event.at,
            )
        case ProfileMergedAway():
            return replace(state, merged_into=event.target_profile_id, updated_at=event.at)
    return replace(state, updated_at=event.at)


# --- commands ----------------------------------------------------------------


IgnoreEmpty = bool | frozenset[str]
"""True ignores every empty value; a set of field names (any alias) ignores those only."""


@dataclass(frozen=True, slots=True)
class CreateProfile:
    """Create a profile; the ids are made by the caller (`infra.ids`)."""

    profile_id: str
    md5_id: str
    xxh_id: str
    database: DatabaseState
    fields: Mapping[str, Any]
    at: datetime
    source: str = "manual"
    subscriptions: tuple[SubscriptionCommand, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateProfile:
    """Change the fields given; an empty value clears its field unless ignored."""

    profile_id: str
    database: DatabaseState
    fields: Mapping[str, Any]
    at: datetime
    ignore_empty: IgnoreEmpty = False
    source: str = "manual"


@dataclass(frozen=True, slots=True)
class ImportProfile:
    """Upsert one import row onto the matched profile (or a new one with these ids)."""

    profile_id: str
    md5_id: str
    xxh_id: str
    database: DatabaseState
    fields: Mapping[str, Any]
    at: datetime
    mode: ImportMode = ImportMode.ADD_AND_UPDATE
    ignore_empty: IgnoreEmpty = False
    resubscribe: bool = False
    source: str = "import"
    subscriptions: tuple[SubscriptionCommand, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeGlobalStatus:
    profile_id: str
    status: Status
    at: datetime
    cause: Cause = Cause.MANUAL


@dataclass(frozen=True, slots=True)
class SetTestSubscriber:
    profile_id: str
    is_test: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordTrackedData:
    """What tracking saw at the profile's last action (IP, the geo resolved from it, user agent)."""

    profile_id: str
    at: datetime
    ip: str | None = None
    city: str | None = None
    country: str | None = None
    region: str | None = None
    postal_code: str | None = None
    timezone: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteProfile:
    profile_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class EraseProfile:
    """Erase a (deleted) profile for good: the caller destroys its key once this is recorded."""

    profile_id: str
    at: datetime
    stop_list_entries: tuple[str, ...] = ()  # the names of its addresses' stop-list entries


@dataclass(frozen=True, slots=True)
class MergeProfileInto:
    """On the source: merge it into `target` (appended atomically with the target's `AbsorbProfile`)."""

    profile_id: str
    target: ProfileState
    at: datetime


@dataclass(frozen=True, slots=True)
class AbsorbProfile:
    """On the target: take over what the merged-away `source` has that the target lacks."""

    profile_id: str
    source: ProfileState
    at: datetime
    cause: Cause = Cause.MANUAL


ProfileCommand = (
    CreateProfile
    | UpdateProfile
    | ImportProfile
    | ChangeGlobalStatus
    | SetTestSubscriber
    | RecordTrackedData
    | DeleteProfile
    | EraseProfile
    | MergeProfileInto
    | AbsorbProfile
    | SubscriptionCommand
)


# --- decide ------------------------------------------------------------------


def decide(command: ProfileCommand, state: ProfileState) -> list[Event]:
    """The events `command` causes on the profile, or a DomainError."""
    match command:
        case CreateProfile():
            if state.created:
                raise AlreadyExists(f"profile {command.profile_id!r} exists already", "profile_id")
            return _create(command)
        case ImportProfile():
            return _import(command, state)
        case DeleteProfile() if state.created and not state.exists:
            return []
        case EraseProfile():
            if not state.created:
                raise NotFound(f"there is no profile {command.profile_id!r}", "profile_id")
            if not state.deleted or state.merged_into is not None:
                raise RuleViolated("delete the profile before erasing it", "profile_id")
            if state.erased:
                return []
            return [ProfileErased(**_ids(state, command.at), stop_list_entries=command.stop_list_entries)]
    if isinstance(command, SubscriptionCommand):
        _require(state, state.profile_id)
        return decide_subscription(command, state.subscriptions, state.ref)
    _require(state, command.profile_id)
    match command:
        case UpdateProfile():
            _require_database(state, command.database)
            changes = _field_changes(state, command.database, command.fields, command.ignore_empty)
            return _fields_updated(state, changes, command.source, command.at)
        case ChangeGlobalStatus():
            return _global_status(state, command.status, command.cause, command.at)
        case SetTestSubscriber():
            if command.is_test == state.is_test:
                return []
            return [ProfileTestSubscriberSet(**_ids(state, command.at), is_test=command.is_test)]
        case RecordTrackedData():
            return _tracked(state, command)
        case DeleteProfile():
            return [ProfileDeleted(**_ids(state, command.at))]
        case MergeProfileInto():
            _check_merge(state, command.target, "target")
            return [ProfileMergedAway(**_ids(state, command.at), target_profile_id=command.target.profile_id)]
        case AbsorbProfile():
            _check_merge(state, command.source, "source")
            return _absorb(state, command)
    raise TypeError(f"not a profile command: {command!r}")  # pragma: no cover


def _require(state: ProfileState, profile_id: str) -> None:
    if not state.created:
        raise NotFound(
            f"there is no profile {profile_id!r}" if profile_id else "there is no such profile", "profile_id"
        )
    if state.deleted:
        raise NotFound(f"profile {profile_id!r} was deleted", "profile_id")
    if state.merged_into is not None:
        raise NotFound(f"profile {profile_id!r} was merged into {state.merged_into!r}", "profile_id")


def _require_database(state: ProfileState, database: DatabaseState) -> None:
    if database.database_id != state.database_id:
        raise RuleViolated(f"the profile belongs to database {state.database_id!r}", "database_id")


def _ids(state: ProfileState, at: datetime) -> dict[str, Any]:
    return {"profile_id": state.profile_id, "database_id": state.database_id, "at": at}


def _then(state: ProfileState, events: list[Event], commands: Sequence[SubscriptionCommand]) -> list[Event]:
    """`events` followed by those of `commands`, each decided on the state the earlier ones left."""
    state = profile_decider.fold(events, state)
    for position, command in enumerate(commands):
        try:
            new = decide(command, state)
        except DomainError as error:
            raise error.at(f"subscriptions.{position}") from None
        state = profile_decider.fold(new, state)
        events = [*events, *new]
    return events


def _create(command: CreateProfile | ImportProfile) -> list[Event]:
    database = command.database
    if not database.exists:
        raise NotFound(f"there is no database {database.database_id!r}", "database_id")
    given = {k: v for k, v in database.coerce_fields(command.fields).items() if v is not None}
    values = {**database.defaults_for_missing(given), **given}
    database.check_required(values)
    values.setdefault("email", placeholder_email(command.profile_id))
    created = ProfileCreated(
        profile_id=command.profile_id,
        database_id=database.database_id,
        md5_id=command.md5_id,
        xxh_id=command.xxh_id,
        fields=values,
        source=command.source,
        at=command.at,
    )
    return _then(ProfileState(), [created], command.subscriptions)


def _import(command: ImportProfile, state: ProfileState) -> list[Event]:
    if not state.created:
        if command.mode is ImportMode.UPDATE_ONLY:
            raise NotFound("no profile matches, and the import only updates existing profiles", "profile_id")
        return _create(command)
    _require(state, command.profile_id)
    _require_database(state, command.database)
    if command.mode is ImportMode.ADD_ONLY:
        return []
    changes = _field_changes(state, command.database, command.fields, command.ignore_empty)
    events = _fields_updated(state, changes, command.source, command.at)
    if command.resubscribe:
        events += _global_status(state, Status.SUBSCRIBED, Cause.IMPORT, command.at)
    return _then(state, events, command.subscriptions)


def _ignored(database: DatabaseState, ignore_empty: IgnoreEmpty) -> frozenset[str] | bool:
    if isinstance(ignore_empty, bool):
        return ignore_empty
    return frozenset(database.canonical_name(name) or name for name in ignore_empty)


def _field_changes(
    state: ProfileState, database: DatabaseState, values: Mapping[str, Any], ignore_empty: IgnoreEmpty
) -> dict[str, FieldChange]:
    ignored = _ignored(database, ignore_empty)
    changes: dict[str, FieldChange] = {}
    for name, new in database.coerce_fields(values).items():
        if new is None:
            if ignored is True or (isinstance(ignored, frozenset) and name in ignored):
                continue
            definition = database.field(name)
            if definition is not None and definition.required:
                raise ValidationFailed(
                    f"{definition.label} is required and cannot be cleared", f"fields.{name}"
                )
            if name == "email":
                new = placeholder_email(state.profile_id)
        old = state.fields.get(name)
        if old != new:
            changes[name] = FieldChange(old=old, new=new)
    return changes


def _fields_updated(
    state: ProfileState, changes: dict[str, FieldChange], source: str, at: datetime
) -> list[Event]:
    if not changes:
        return []
    return [ProfileFieldsUpdated(**_ids(state, at), changes=changes, source=source)]


def _global_status(state: ProfileState, to: Status, cause: Cause, at: datetime) -> list[Event]:
    before = state.status
    if before is to:
        return []
    if before not in TRANSITIONS[cause].get(to, frozenset()):
        if to is Status.UNSUBSCRIBED and before.is_unsafe:
            return []  # an unsubscribe request on a profile that already receives nothing
        raise RuleViolated(
            f"cause {cause.value} cannot set the global status {before.value} → {to.value}", "status"
        )
    return [ProfileGlobalStatusChanged(**_ids(state, at), from_status=before, to_status=to, cause=cause)]


def _tracked(state: ProfileState, command: RecordTrackedData) -> list[Event]:
    seen: dict[str, Any] = {
        "ip": _ipv4_or_none(command.ip),
        "city": command.city,
        "country": command.country,
        "region": command.region,
        "postal_code": command.postal_code,
        "timezone": command.timezone,
    }
    values = {attr: coerce_value(STANDARD_FIELDS[_TRACKED_FIELDS[attr]], v, attr) for attr, v in seen.items()}
    user_agent = command.user_agent.strip() if command.user_agent else None
    tracked = TrackedData.model_validate({**values, "user_agent": user_agent or None, "at": command.at})
    changes = {
        _TRACKED_FIELDS[attr]: FieldChange(old=state.fields.get(_TRACKED_FIELDS[attr]), new=value)
        for attr, value in values.items()
        if value is not None and state.fields.get(_TRACKED_FIELDS[attr]) != value
    }
    previous = state.tracked.model_copy(update={"at": command.at}) if state.tracked else None
    if not changes and tracked == previous:
        return []
    return [ProfileTrackedDataRecorded(**_ids(state, command.at), tracked=tracked, changes=changes)]


def _ipv4_or_none(ip: str | None) -> str | None:
    """The address if it is IPv4; tracking drops IPv6, which IP fields cannot hold."""
    if ip is None or not ip.strip():
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise ValidationFailed(f"{ip!r} is not an IP address", "ip") from None
    return str(address) if address.version == 4 else None


def _check_merge(state: ProfileState, other: ProfileState, role: str) -> None:
    path = f"{role}_profile_id"
    if not other.exists:
        raise NotFound(f"the {role} profile {other.profile_id!r} does not exist", path)
    if other.profile_id == state.profile_id:
        raise RuleViolated("a profile cannot be merged with itself", path)
    if other.database_id != state.database_id:
        raise RuleViolated("only profiles of the same database can be merged", path)


def _absorb(state: ProfileState, command: AbsorbProfile) -> list[Event]:
    source = command.source
    changes = {
        name: FieldChange(old=state.fields.get(name), new=value)
        for name, value in source.fields.items()
        if _lacks(state, name) and not (name == "email" and is_placeholder_email(str(value)))
    }
    events: list[Event] = [
        ProfileAbsorbed(**_ids(state, command.at), source_profile_id=source.profile_id, changes=changes)
    ]
    return events + _moved_subscriptions(state, source.subscriptions, command.cause, command.at)


def _lacks(state: ProfileState, name: str) -> bool:
    if name == "email":
        return is_placeholder_email(state.email)
    return state.fields.get(name) is None


def _moved_subscriptions(
    state: ProfileState, subscriptions: SubscriptionsState, cause: Cause, at: datetime
) -> list[Event]:
    """The source's subscriptions the target lacks, added to it after its own on each resource channel."""
    next_priority: dict[tuple[str, str], int] = {}
    moved: list[Event] = []
    for subscription in sorted(subscriptions, key=lambda s: s.priority):
        key = subscription.key
        if state.subscriptions.get(key) is not None:
            continue
        channel = (key.resource_id, key.channel)
        if channel not in next_priority:
            own = state.subscriptions.of_resource(*channel)
            next_priority[channel] = max((s.priority for s in own), default=-1) + 1
        moved.append(
            SubscriptionAdded(
                profile_id=state.profile_id,
                database_id=state.database_id,
                resource_id=key.resource_id,
                channel=key.channel,
                contact=key.contact,
                provider=key.provider,
                status=subscription.status,
                priority=next_priority[channel],
                registered_at=subscription.registered_at,
                cause=cause,
                ip=subscription.ip,
                fields=dict(subscription.fields),
                device=subscription.device,
                categories=dict(subscription.categories),
                email_domain=subscription.email_domain,
                email_md5=subscription.email_md5,
            )
        )
        next_priority[channel] += 1
    return moved


def import_outcome(events: Iterable[Event]) -> ImportOutcome:
    """What an import decision did: created a profile, updated one, or nothing."""
    events = list(events)
    if any(isinstance(e, ProfileCreated) for e in events):
        return ImportOutcome.CREATED
    return ImportOutcome.UPDATED if events else ImportOutcome.UNCHANGED


profile_decider: Decider[ProfileCommand, ProfileState] = Decider(ProfileState(), decide, evolve)
