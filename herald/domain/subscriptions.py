"""A profile's subscriptions: contacts on a resource's channels, with status, priority and fields.

Subscriptions live inside the profile aggregate, whose decider delegates the
subscription commands here (`decide_subscription`, `evolve_subscriptions`).
A subscription is keyed by resource × channel × contact: an email (normalised
and lower-cased), a phone in E.164 for sms/whatsapp/viber, a device token plus
its provider for push, the user's chat id for a Telegram bot (`telegram_bot`), an
opaque identifier for other channels.

Status transitions: each change names its cause; `TRANSITIONS` says which
statuses a cause may set and from which statuses. Setting the current status
changes nothing.

| cause | may set | from |
|---|---|---|
| manual, api, import, mass_update, scenario (operators) | any status | any status |
| form, subscription_manager (the subscriber) | subscribed | unsubscribed, unconfirmed, suspended |
| | unconfirmed | unsubscribed, suspended |
| | unsubscribed | subscribed, unconfirmed, suspended |
| unsubscribe_link, list_unsubscribe | unsubscribed | subscribed, unconfirmed, suspended |
| complaint | complainer | any status |
| hard_bounce | hard_bounced | any status |
| doi_confirmed (`ConfirmSubscription`) | subscribed | unconfirmed |

A subscriber's own request that already holds in a stronger form changes
nothing instead of failing: unsubscribing a complainer, hard-bounced or invalid
subscription (it receives nothing already), or a double opt-in sign-up of an
already confirmed contact (it stays subscribed). Other transitions a cause may
not make are refused: a complainer comes back only through an operator.

Decisions where the guide is silent:
- Adding an existing subscription updates it: the status only when one is
  given (re-adding never resurrects an unsubscribed contact by default), the
  priority only when given explicitly, fields, device fields and categories
  merged; registration proof stays the first one. Only what changed is emitted.
- A new subscription without an explicit priority: with the resource's "raise
  priority for new subscriptions" it gets 0 and every other subscription on the
  same resource and channel moves down by one; without it, it queues after the
  others (the largest priority there plus one, 0 for the first).
- A subscription adder's cause must be an operator's or the subscriber's (form,
  subscription manager); the subscriber can only start subscribed or unconfirmed.
- Categories: a subscription is subscribed to every category of its resource
  (also ones added later) unless it unsubscribed from it; mandatory categories
  cannot be unsubscribed, whatever the cause.
- Emails are keyed lower-cased: mailbox providers treat local parts
  case-insensitively, so one address is one subscription however it was typed;
  the MD5 is of that form.
- The registration IP is IPv4, as the profile's registration IP field.
- The resource's unsubscribe policy (confirm, delayed, forbidden) is applied by
  the unsubscribe tracker before it sends `ChangeSubscriptionStatus`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError

from herald.domain.contacts import email_domain, email_key, normalize_email, normalize_phone
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import STANDARD_FIELDS, coerce_value, parse_datetime
from herald.domain.resources import PHONE_CHANNELS, PushProvider, PushSettings, ResourceState
from herald.domain.statuses import Status

MAX_OPAQUE_CONTACT = 4096  # web push subscriptions and device tokens run to a few KB
TELEGRAM_BOT = "telegram_bot"
_CHAT_ID = re.compile(r"^-?[0-9]{1,20}$")


class Cause(StrEnum):
    """Why a subscription changed; reports group subscription changes by it."""

    MANUAL = "manual"  # a user in the profile card
    API = "api"
    IMPORT = "import"
    MASS_UPDATE = "mass_update"
    FORM = "form"  # a subscription form or subscribe link
    SUBSCRIPTION_MANAGER = "subscription_manager"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    LIST_UNSUBSCRIBE = "list_unsubscribe"
    COMPLAINT = "complaint"
    HARD_BOUNCE = "hard_bounce"
    DOI_CONFIRMED = "doi_confirmed"
    SCENARIO = "scenario"  # a scenario's subscription-management node


OPERATOR_CAUSES = frozenset({Cause.MANUAL, Cause.API, Cause.IMPORT, Cause.MASS_UPDATE, Cause.SCENARIO})
SUBSCRIBER_CAUSES = frozenset(
    {Cause.FORM, Cause.SUBSCRIPTION_MANAGER, Cause.UNSUBSCRIBE_LINK, Cause.LIST_UNSUBSCRIBE}
)

_ANY = frozenset(Status)
_RECEIVING = frozenset({Status.SUBSCRIBED, Status.UNCONFIRMED, Status.SUSPENDED})
_SUBSCRIBER_CHOICES: Mapping[Status, frozenset[Status]] = {
    Status.SUBSCRIBED: frozenset({Status.UNSUBSCRIBED, Status.UNCONFIRMED, Status.SUSPENDED}),
    Status.UNCONFIRMED: frozenset({Status.UNSUBSCRIBED, Status.SUSPENDED}),
    Status.UNSUBSCRIBED: _RECEIVING,
}
_UNSUBSCRIBE: Mapping[Status, frozenset[Status]] = {Status.UNSUBSCRIBED: _RECEIVING}

TRANSITIONS: Mapping[Cause, Mapping[Status, frozenset[Status]]] = {
    **{cause: dict.fromkeys(Status, _ANY) for cause in OPERATOR_CAUSES},
    Cause.FORM: _SUBSCRIBER_CHOICES,
    Cause.SUBSCRIPTION_MANAGER: _SUBSCRIBER_CHOICES,
    Cause.UNSUBSCRIBE_LINK: _UNSUBSCRIBE,
    Cause.LIST_UNSUBSCRIBE: _UNSUBSCRIBE,
    Cause.COMPLAINT: {Status.COMPLAINER: _ANY},
    Cause.HARD_BOUNCE: {Status.HARD_BOUNCED: _ANY},
    Cause.DOI_CONFIRMED: {Status.SUBSCRIBED: frozenset({Status.UNCONFIRMED})},
}
"""cause → status it may set → statuses it may set it from."""

_ALREADY_HOLDS: Mapping[Status, frozenset[Status]] = {
    Status.UNSUBSCRIBED: frozenset({Status.COMPLAINER, Status.HARD_BOUNCED, Status.INVALID}),
    Status.UNCONFIRMED: frozenset({Status.SUBSCRIBED}),
}
"""For a subscriber's request: target → current statuses that already satisfy it."""

_MAY_ADD: Mapping[Cause, frozenset[Status]] = {
    **dict.fromkeys(OPERATOR_CAUSES, _ANY),
    Cause.FORM: frozenset({Status.SUBSCRIBED, Status.UNCONFIRMED}),
    Cause.SUBSCRIPTION_MANAGER: frozenset({Status.SUBSCRIBED, Status.UNCONFIRMED}),
}


class CategoryStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


# --- the standard device fields (seed 002 §2.3) -----------------------------------------------


class DeviceType(StrEnum):
    DESKTOP = "desktop"
    MOBILE = "mobile"
    OTHER = "other"


class DevicePlatform(StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"
    MAC = "mac"
    OPERA = "opera"
    IOS = "ios"
    BLACKBERRY = "blackberry"
    ANDROID = "android"


class Browser(StrEnum):
    BOTS = "bots"
    INTERNET_EXPLORER = "internet_explorer"
    FIREFOX = "firefox"
    SAFARI = "safari"
    FACEBOOK = "facebook"
    CHROME = "chrome"
    OPERA = "opera"
    OUTLOOK = "outlook"
    THUNDERBIRD = "thunderbird"


_DeviceText = Annotated[str, StringConstraints(max_length=255)]


class Device(BaseModel):
    """The standard fields a subscription may carry about the subscriber's device."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    device_type: DeviceType | None = None
    device_model: _DeviceText | None = None
    device_name: _DeviceText | None = None
    platform: DevicePlatform | None = None
    platform_version: _DeviceText | None = None
    platform_timezone: _DeviceText | None = None
    platform_language: _DeviceText | None = None
    ads_allowed: bool | None = None
    advertising_id: _DeviceText | None = None
    app_id: _DeviceText | None = None
    app_install_id: _DeviceText | None = None
    app_version: _DeviceText | None = None
    browser: Browser | None = None
    browser_version: _DeviceText | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("device_type", "platform", "browser", mode="before")
    @classmethod
    def _choice(cls, value: object) -> object:
        """Accept the guide's spellings ("iOS", "Internet Explorer")."""
        if isinstance(value, str):
            return value.strip().lower().replace(" ", "_") or None
        return value


def _device(current: Device, given: Mapping[str, object]) -> Device:
    if not given:
        return current
    try:
        return Device.model_validate({**current.model_dump(exclude_none=True), **given})
    except PydanticValidationError as error:
        problem = error.errors()[0]
        name = ".".join(str(part) for part in problem["loc"])
        reason = problem["msg"]
        if problem["type"] == "extra_forbidden":
            reason = f"{name!r} is not a standard subscription field"
        raise ValidationFailed(reason, f"device.{name}") from None


# --- keys, state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileRef:
    """The profile whose subscriptions these are."""

    profile_id: str
    database_id: str


@dataclass(frozen=True, slots=True)
class SubscriptionKey:
    """Resource × channel × normalised contact (× provider, for push)."""

    resource_id: str
    channel: str
    contact: str
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    key: SubscriptionKey
    status: Status
    priority: int
    registered_at: datetime
    ip: str | None = None
    fields: Mapping[str, JsonValue] = field(default_factory=dict)
    device: Device = field(default_factory=Device)
    categories: Mapping[str, CategoryStatus] = field(default_factory=dict)
    email_domain: str | None = None
    email_md5: str | None = None

    def category_status(self, api_name: str) -> CategoryStatus:
        """Subscribed unless the subscriber unsubscribed from the category."""
        return self.categories.get(api_name, CategoryStatus.SUBSCRIBED)


@dataclass(frozen=True, slots=True)
class SubscriptionsState:
    """A profile's subscriptions in the order they were added."""

    items: Mapping[SubscriptionKey, Subscription] = field(default_factory=dict)

    def get(self, key: SubscriptionKey) -> Subscription | None:
        return self.items.get(key)

    def of_resource(self, resource_id: str, channel: str) -> list[Subscription]:
        """The subscriptions on one resource channel, highest priority (0) first."""
        found = [s for k, s in self.items.items() if k.resource_id == resource_id and k.channel == channel]
        return sorted(found, key=lambda s: s.priority)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self.items.values())

    def __len__(self) -> int:
        return len(self.items)


def contacts(subs: SubscriptionsState) -> Iterator[tuple[str, str]]:
    """(channel, contact) of every subscription."""
    for key in subs.items:
        yield key.channel, key.contact


def normalize_contact(channel: str, contact: str, path: str = "contact") -> str:
    """The contact as subscriptions on `channel` are keyed by it."""
    if channel == "email":
        return email_key(normalize_email(contact, path))
    if channel in PHONE_CHANNELS:
        return normalize_phone(contact, path)
    text = contact.strip()
    if channel == TELEGRAM_BOT and not _CHAT_ID.match(text):
        raise ValidationFailed("a Telegram bot subscription's contact is the user's chat id (a number)", path)
    if not text or len(text) > MAX_OPAQUE_CONTACT or any(c.isspace() for c in text):
        raise ValidationFailed(
            f"a {channel} contact is a token of 1 to {MAX_OPAQUE_CONTACT} characters without spaces", path
        )
    return text


# --- events ----------------------------------------------------------------------------------


class SubscriptionEvent(Event):
    """What every subscription event carries, so projections need no lookups."""

    profile_id: str
    database_id: str
    resource_id: str
    channel: str
    contact: str
    provider: str | None = None

    @property
    def key(self) -> SubscriptionKey:
        return SubscriptionKey(self.resource_id, self.channel, self.contact, self.provider)


@registry.register("SubscriptionAdded")
class SubscriptionAdded(SubscriptionEvent):
    status: Status
    priority: int
    registered_at: datetime
    cause: Cause
    ip: str | None = None
    fields: dict[str, JsonValue] = Field(default_factory=dict)
    device: Device = Field(default_factory=Device)
    categories: dict[str, CategoryStatus] = Field(default_factory=dict)
    email_domain: str | None = None
    email_md5: str | None = None


@registry.register("SubscriptionStatusChanged")
class SubscriptionStatusChanged(SubscriptionEvent):
    from_status: Status
    to_status: Status
    cause: Cause


@registry.register("SubscriptionPriorityChanged")
class SubscriptionPriorityChanged(SubscriptionEvent):
    from_priority: int
    to_priority: int


@registry.register("SubscriptionFieldsUpdated")
class SubscriptionFieldsUpdated(SubscriptionEvent):
    """The subscription's custom and device fields as they now are (whole, not a diff)."""

    fields: dict[str, JsonValue]
    device: Device


@registry.register("CategorySubscriptionChanged")
class CategorySubscriptionChanged(SubscriptionEvent):
    category: str
    from_status: CategoryStatus
    to_status: CategoryStatus
    cause: Cause


@registry.register("SubscriptionRemoved")
class SubscriptionRemoved(SubscriptionEvent):
    pass


SUBSCRIPTION_EVENTS: tuple[type[Event], ...] = (
    SubscriptionAdded,
    SubscriptionStatusChanged,
    SubscriptionPriorityChanged,
    SubscriptionFieldsUpdated,
    CategorySubscriptionChanged,
    SubscriptionRemoved,
)


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionTarget:
    """Names one subscription of the profile; `provider` only for push."""

    resource_id: str
    channel: str
    contact: str
    provider: str | None = None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AddSubscription(SubscriptionTarget):
    """Subscribe the contact (or update the subscription if it exists)."""

    resource: ResourceState
    status: Status | None = None  # a new subscription starts subscribed; `unconfirmed` for double opt-in
    priority: int | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    device: Mapping[str, object] = field(default_factory=dict)
    categories: Mapping[str, CategoryStatus] = field(default_factory=dict)
    ip: str | None = None
    cause: Cause = Cause.API


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeSubscriptionStatus(SubscriptionTarget):
    status: Status
    cause: Cause = Cause.MANUAL


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeSubscriptionPriority(SubscriptionTarget):
    priority: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSubscriptionFields(SubscriptionTarget):
    """Merge custom (`fields`) and standard device (`device`) values; an empty value clears one."""

    resource: ResourceState
    fields: Mapping[str, object] = field(default_factory=dict)
    device: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeCategorySubscription(SubscriptionTarget):
    resource: ResourceState
    categories: Mapping[str, CategoryStatus]
    cause: Cause = Cause.MANUAL


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmSubscription(SubscriptionTarget):
    """The double opt-in confirmation link was clicked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveSubscription(SubscriptionTarget):
    pass


SubscriptionCommand = (
    AddSubscription
    | ChangeSubscriptionStatus
    | ChangeSubscriptionPriority
    | UpdateSubscriptionFields
    | ChangeCategorySubscription
    | ConfirmSubscription
    | RemoveSubscription
)


# --- decide ----------------------------------------------------------------------------------

E = TypeVar("E", bound=SubscriptionEvent)


def _event(cls: type[E], profile: ProfileRef, key: SubscriptionKey, **payload: Any) -> E:
    return cls(
        profile_id=profile.profile_id,
        database_id=profile.database_id,
        resource_id=key.resource_id,
        channel=key.channel,
        contact=key.contact,
        provider=key.provider,
        **payload,
    )


def _key(target: SubscriptionTarget) -> SubscriptionKey:
    contact = normalize_contact(target.channel, target.contact)
    provider = target.provider
    if target.channel != "push":
        if provider is not None:
            raise ValidationFailed("only push subscriptions have a provider", "provider")
    elif provider is None:
        raise ValidationFailed("a push subscription names its provider", "provider")
    elif provider not in frozenset(PushProvider):
        choices = ", ".join(PushProvider)
        raise ValidationFailed(f"{provider!r} is not a push provider ({choices})", "provider")
    return SubscriptionKey(target.resource_id, target.channel, contact, provider)


def _check_resource(resource: ResourceState, resource_id: str) -> None:
    if not resource.exists or resource.resource_id != resource_id:
        raise NotFound(f"resource {resource_id!r} does not exist", "resource_id")


def _status_change(current: Subscription, to: Status, cause: Cause, profile: ProfileRef) -> list[Event]:
    before = current.status
    if before == to:
        return []
    if cause in SUBSCRIBER_CAUSES and before in _ALREADY_HOLDS.get(to, frozenset()):
        return []
    rules = TRANSITIONS[cause]
    if before not in rules.get(to, frozenset()):
        if to in rules:
            sources = ", ".join(sorted(rules[to]))
            reason = f"cause {cause.value} sets {to.value} only from {sources}, not from {before.value}"
        else:
            reason = f"cause {cause.value} can only set {', '.join(sorted(rules))}"
        raise RuleViolated(reason, "status")
    return [
        _event(SubscriptionStatusChanged, profile, current.key, from_status=before, to_status=to, cause=cause)
    ]


def _checked_categories(
    resource: ResourceState, requested: Mapping[str, CategoryStatus]
) -> dict[str, CategoryStatus]:
    for api_name, status in requested.items():
        path = f"categories.{api_name}"
        category = resource.category(api_name)
        if category is None:
            raise NotFound(f"the resource has no category {api_name!r}", path)
        if category.mandatory and status == CategoryStatus.UNSUBSCRIBED:
            raise RuleViolated(f"category {api_name!r} is mandatory and cannot be unsubscribed", path)
    return dict(requested)


def _category_changes(
    current: Subscription, requested: Mapping[str, CategoryStatus], cause: Cause, profile: ProfileRef
) -> list[Event]:
    return [
        _event(
            CategorySubscriptionChanged,
            profile,
            current.key,
            category=api_name,
            from_status=current.category_status(api_name),
            to_status=status,
            cause=cause,
        )
        for api_name, status in requested.items()
        if current.category_status(api_name) != status
    ]


def _fields_change(
    current: Subscription,
    resource: ResourceState,
    fields: Mapping[str, object],
    device: Mapping[str, object],
    profile: ProfileRef,
) -> list[Event]:
    values = resource.coerce_subscription_fields(current.key.channel, fields, current.fields)
    new_device = _device(current.device, device)
    if values == current.fields and new_device == current.device:
        return []
    return [_event(SubscriptionFieldsUpdated, profile, current.key, fields=values, device=new_device)]


def _add(command: AddSubscription, subs: SubscriptionsState, profile: ProfileRef) -> list[Event]:
    resource = command.resource
    _check_resource(resource, command.resource_id)
    if not resource.accepts_database(profile.database_id):
        raise RuleViolated(
            f"resource {command.resource_id!r} does not accept profiles of database {profile.database_id!r}",
            "resource_id",
        )
    if not resource.channel_enabled(command.channel):
        raise RuleViolated(
            f"channel {command.channel!r} is not enabled on resource {command.resource_id!r}", "channel"
        )
    key = _key(command)
    settings = resource.channels[key.channel]
    if isinstance(settings, PushSettings) and key.provider not in settings.providers:
        raise RuleViolated(f"the resource does not send push through {key.provider}", "provider")
    if command.priority is not None and command.priority < 0:
        raise ValidationFailed("the priority is a whole number from 0 (the highest)", "priority")
    categories = _checked_categories(resource, command.categories)
    current = subs.get(key)
    if current is not None:
        events: list[Event] = []
        if command.status is not None:
            events += _status_change(current, command.status, command.cause, profile)
        if command.priority is not None and command.priority != current.priority:
            events.append(
                _event(
                    SubscriptionPriorityChanged,
                    profile,
                    key,
                    from_priority=current.priority,
                    to_priority=command.priority,
                )
            )
        events += _fields_change(current, resource, command.fields, command.device, profile)
        return events + _category_changes(current, categories, command.cause, profile)

    status = command.status or Status.SUBSCRIBED
    if status not in _MAY_ADD.get(command.cause, frozenset()):
        allowed = ", ".join(sorted(_MAY_ADD.get(command.cause, frozenset()))) or "nothing"
        raise RuleViolated(
            f"a subscription added by cause {command.cause.value} may start as {allowed}", "status"
        )
    others = subs.of_resource(key.resource_id, key.channel)
    moved: list[Subscription] = []
    if command.priority is not None:
        priority = command.priority
    elif resource.raise_priority_for_new_subscriptions:
        priority, moved = 0, others
    else:
        priority = max((s.priority for s in others), default=-1) + 1
    is_email = key.channel == "email"
    added = _event(
        SubscriptionAdded,
        profile,
        key,
        status=status,
        priority=priority,
        registered_at=parse_datetime(command.at, "at"),
        cause=command.cause,
        ip=None if command.ip is None else coerce_value(STANDARD_FIELDS["_regip"], command.ip, "ip"),
        fields=resource.coerce_subscription_fields(key.channel, command.fields),
        device=_device(Device(), command.device),
        categories=categories,
        email_domain=email_domain(key.contact) if is_email else None,
        email_md5=hashlib.md5(key.contact.encode(), usedforsecurity=False).hexdigest() if is_email else None,
    )
    return [
        added,
        *(
            _event(
                SubscriptionPriorityChanged,
                profile,
                s.key,
                from_priority=s.priority,
                to_priority=s.priority + 1,
            )
            for s in moved
        ),
    ]


def decide_subscription(
    command: SubscriptionCommand, subs: SubscriptionsState, profile: ProfileRef
) -> list[Event]:
    """The events `command` causes on the subscriptions `subs` of `profile`."""
    if isinstance(command, AddSubscription):
        return _add(command, subs, profile)
    key = _key(command)
    current = subs.get(key)
    if current is None:
        raise NotFound(
            f"the profile has no {key.channel} subscription {key.contact!r} on resource {key.resource_id!r}",
            "contact",
        )
    match command:
        case ChangeSubscriptionStatus():
            return _status_change(current, command.status, command.cause, profile)
        case ConfirmSubscription():
            return _status_change(current, Status.SUBSCRIBED, Cause.DOI_CONFIRMED, profile)
        case ChangeSubscriptionPriority():
            if command.priority < 0:
                raise ValidationFailed("the priority is a whole number from 0 (the highest)", "priority")
            if command.priority == current.priority:
                return []
            return [
                _event(
                    SubscriptionPriorityChanged,
                    profile,
                    key,
                    from_priority=current.priority,
                    to_priority=command.priority,
                )
            ]
        case UpdateSubscriptionFields():
            _check_resource(command.resource, key.resource_id)
            return _fields_change(current, command.resource, command.fields, command.device, profile)
        case ChangeCategorySubscription():
            _check_resource(command.resource, key.resource_id)
            categories = _checked_categories(command.resource, command.categories)
            return _category_changes(current, categories, command.cause, profile)
        case RemoveSubscription():
            return [_event(SubscriptionRemoved, profile, key)]


# --- evolve ----------------------------------------------------------------------------------


def _changed(subs: SubscriptionsState, key: SubscriptionKey, **changes: Any) -> SubscriptionsState:
    current = subs.items.get(key)
    if current is None:
        return subs
    return SubscriptionsState({**subs.items, key: replace(current, **changes)})


def evolve_subscriptions(subs: SubscriptionsState, event: Event) -> SubscriptionsState:
    """The subscriptions after `event`; other events leave them unchanged."""
    match event:
        case SubscriptionAdded():
            added = Subscription(
                key=event.key,
                status=event.status,
                priority=event.priority,
                registered_at=event.registered_at,
                ip=event.ip,
                fields=event.fields,
                device=event.device,
                categories=event.categories,
                email_domain=event.email_domain,
                email_md5=event.email_md5,
            )
            return SubscriptionsState({**subs.items, event.key: added})
        case SubscriptionStatusChanged():
            return _changed(subs, event.key, status=event.to_status)
        case SubscriptionPriorityChanged():
            return _changed(subs, event.key, priority=event.to_priority)
        case SubscriptionFieldsUpdated():
            return _changed(subs, event.key, fields=event.fields, device=event.device)
        case CategorySubscriptionChanged():
            current = subs.items.get(event.key)
            categories = {} if current is None else current.categories
            return _changed(subs, event.key, categories={**categories, event.category: event.to_status})
        case SubscriptionRemoved():
            return SubscriptionsState({k: v for k, v in subs.items.items() if k != event.key})
    return subs
