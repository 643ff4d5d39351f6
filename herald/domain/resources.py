"""The resource aggregate (stream `resource-<id>`): a publisher that owns subscriptions.

A resource names the profile databases whose profiles may subscribe, the
channels it sends over (each with its settings and its own typed subscription
fields), its categories and its unsubscribe policy (guide "Ресурсы подписок").
Subscriptions themselves live in the profile aggregate; they read a
`ResourceState` snapshot through the helpers at the bottom of `ResourceState`.

Decisions where the guide is silent:
- Required settings follow the form's asterisks: name, at least one database,
  at least one source URL, the default tracking domain. A resource may exist
  without channels while it is being set up; subscriptions need the channel.
- `UpdateResource` replaces the basic settings as a whole (the API merges a
  partial body into the current settings first); no change, no event.
- Disabling a channel drops its subscription field definitions; existing
  subscriptions on it stay (history) but no new one can be added.
- List-ID: RFC 2919 `label.domain` without `<>`, ≤255 characters, ending in the
  From email's domain or a parent domain of it with at least two labels
  (`promo.example.com` fits `news@mail.example.com`), so relaxed alignment works.
- SMS Caller ID: an alphanumeric sender of ≤11 characters or a numeric one of
  ≤15 digits, the limits every SMS gateway enforces.
- Push: `webpush` is the standard Web Push protocol with a VAPID key (every
  current browser's push service speaks it: Chrome's FCM endpoints, Mozilla's,
  Apple's for Safari 16+), beside the guide's providers. Every chosen
  provider must serve one of the chosen platforms and every chosen platform
  must be served by one chosen provider; the Firebase API key is required
  when FCM or AppMetrica (which sends through the Firebase SDK) is used.
- API names (fields, categories, custom channels) are latin letters, digits and
  `_`, start with a letter, ≤64 characters; custom channel names are lower-case.
- Subscription fields are database-style custom field definitions
  (`herald.domain.fields.FieldDefinition`) limited to int/float/string/bool,
  and their values are coerced exactly as database fields of the same type.
  A required field with a default is satisfied by its default. A field's type
  cannot change (stored values depend on it): remove it and define a new one.
- Unsubscribe policy: `confirm` and `delayed` need a page URL carrying
  `{send_message_id}`; `delayed` needs a timer of 1–30 minutes and only it may
  have one; `forbidden` needs its explanation; a List-Unsubscribe callback URL
  makes no sense with the header disabled. The guide's "On-Premise only" marks
  do not apply: Herald is self-hosted.
- Deleted resource ids are never reused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.contacts import email_domain, normalize_domain, normalize_email
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, JsonDict, registry
from herald.domain.fields import FieldDefinition, FieldType, check_definition, coerce_value
from herald.domain.secrets import WITHHELD, SealedSecret, looks_like_credential

_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LIST_LABEL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{1,15}$")
_ALPHA_SENDER = re.compile(r"^[A-Za-z0-9 ._&'-]{1,11}$")
MAX_LIST_ID = 255
MAX_UNSUBSCRIBE_TIMER_MINUTES = 30


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- value objects ---------------------------------------------------------------------------


class ResourceSettings(_Value):
    """The resource's basic settings (the form's "Основные" block)."""

    name: str
    database_ids: tuple[str, ...]
    source_urls: tuple[str, ...]
    default_tracking_domain: str
    description: str = ""
    sending_policy_id: str | None = None
    raise_priority_for_new_subscriptions: bool = False


class EmailSettings(_Value):
    kind: Literal["email"] = "email"
    from_name: str
    from_email: str
    list_id: str
    reply_to_name: str = ""
    reply_to_email: str | None = None

    @property
    def channel(self) -> str:
        return "email"


class SmsSettings(_Value):
    kind: Literal["sms"] = "sms"
    caller_id: str

    @property
    def channel(self) -> str:
        return "sms"


class PushPlatform(StrEnum):
    ANDROID = "android"
    IOS = "ios"
    CHROME = "chrome"
    SAFARI = "safari"
    FIREFOX = "firefox"
    OPERA = "opera"


class PushProvider(StrEnum):
    FCM = "fcm"  # Google Firebase Cloud Messaging
    APNS = "apns"  # Apple Push Notification service
    MOZILLA = "mozilla"  # Mozilla Services
    APPMETRICA = "appmetrica"  # Yandex AppMetrica (sends through the Firebase SDK)
    HMS = "hms"  # Huawei Mobile Services
    RUSTORE = "rustore"
    WEBPUSH = "webpush"  # the Web Push protocol (RFC 8030/8291/8292, VAPID): any browser push service


PROVIDER_PLATFORMS: Mapping[PushProvider, frozenset[PushPlatform]] = {
    PushProvider.FCM: frozenset(PushPlatform) - {PushPlatform.SAFARI},
    PushProvider.APNS: frozenset({PushPlatform.SAFARI, PushPlatform.IOS}),
    PushProvider.MOZILLA: frozenset({PushPlatform.FIREFOX}),
    PushProvider.APPMETRICA: frozenset({PushPlatform.ANDROID, PushPlatform.IOS}),
    PushProvider.HMS: frozenset({PushPlatform.ANDROID, PushPlatform.IOS}),
    PushProvider.RUSTORE: frozenset({PushPlatform.ANDROID}),
    PushProvider.WEBPUSH: frozenset(
        {PushPlatform.CHROME, PushPlatform.FIREFOX, PushPlatform.OPERA, PushPlatform.SAFARI}
    ),
}
"""Which platforms each push provider can deliver to (guide, "Push канал")."""

_FIREBASE_PROVIDERS = frozenset({PushProvider.FCM, PushProvider.APPMETRICA})


class PushSettings(_Value):
    kind: Literal["push"] = "push"
    platforms: tuple[PushPlatform, ...]
    providers: tuple[PushProvider, ...]
    firebase_api_key: SealedSecret | None = None  # a credential: sealed, never shown

    @property
    def channel(self) -> str:
        return "push"


class CustomChannelSettings(_Value):
    """A messenger or admin-defined channel (telegram_bot, whatsapp, viber, …) with free options.

    Credentials (a bot token, an API key) go in `secrets`, sealed and never shown; an option whose
    name says it is one is refused, so a token is not stored in clear by mistake."""

    kind: Literal["custom"] = "custom"
    name: str
    options: dict[str, JsonValue] = Field(default_factory=dict)
    secrets: dict[str, SealedSecret] = Field(default_factory=dict)

    @property
    def channel(self) -> str:
        return self.name


ChannelSettings = Annotated[
    EmailSettings | SmsSettings | PushSettings | CustomChannelSettings, Field(discriminator="kind")
]
_BUILT_IN_CHANNELS = frozenset({"email", "sms", "push"})

PHONE_CHANNELS = frozenset({"sms", "viber", "whatsapp"})
"""Channels whose subscribers are addressed by phone (E.164)."""

SUBSCRIPTION_FIELD_TYPES = frozenset({FieldType.INT, FieldType.FLOAT, FieldType.STRING, FieldType.BOOL})
"""The guide's four types of extra fields on channel subscriptions."""


class Category(_Value):
    """A resource category: subscribers may opt out of it unless it is mandatory."""

    api_name: str
    title: str
    in_subscription_manager: bool = False
    mandatory: bool = False


class UnsubscribeMode(StrEnum):
    INSTANT = "instant"  # Мгновенная отписка без подтверждения (default)
    CONFIRM = "confirm"  # Подтверждение отписки на отдельной странице
    FORBIDDEN = "forbidden"  # Запретить пользователям отписываться от ресурса
    DELAYED = "delayed"  # Отложенная отписка (timer ≤ 30 minutes)


class UnsubscribePolicy(_Value):
    mode: UnsubscribeMode = UnsubscribeMode.INSTANT
    page_url: str | None = None
    timer_minutes: int | None = None
    forbidden_explanation: str | None = None
    list_unsubscribe_disabled: bool = False
    list_unsubscribe_callback_url: str | None = None


# --- events ----------------------------------------------------------------------------------


@registry.register("ResourceCreated")
class ResourceCreated(Event):
    resource_id: str
    token: str
    settings: ResourceSettings


@registry.register("ResourceUpdated")
class ResourceUpdated(Event):
    resource_id: str
    settings: ResourceSettings


@registry.register("ResourceChannelEnabled", version=2)
class ResourceChannelEnabled(Event):
    resource_id: str
    channel: str
    settings: ChannelSettings


@registry.register("ResourceChannelUpdated", version=2)
class ResourceChannelUpdated(Event):
    resource_id: str
    channel: str
    settings: ChannelSettings


@registry.upcaster("ResourceChannelEnabled", 1)
@registry.upcaster("ResourceChannelUpdated", 1)
def withhold_channel_credentials(data: JsonDict) -> JsonDict:
    """Version 1 held channel credentials in clear (the push Firebase key, tokens among a custom
    channel's options): each becomes `WITHHELD`, a custom channel's moving to its `secrets`."""
    settings = dict(data["settings"])
    if settings.get("firebase_api_key"):
        settings["firebase_api_key"] = WITHHELD.model_dump()
    options = settings.get("options", {})
    credentials = [name for name in options if looks_like_credential(name)]
    if credentials:
        settings["options"] = {k: v for k, v in options.items() if k not in credentials}
        settings["secrets"] = {name: WITHHELD.model_dump() for name in credentials}
    return {**data, "settings": settings}


@registry.register("ResourceChannelDisabled")
class ResourceChannelDisabled(Event):
    resource_id: str
    channel: str


@registry.register("SubscriptionFieldDefined")
class SubscriptionFieldDefined(Event):
    resource_id: str
    channel: str
    field: FieldDefinition


@registry.register("SubscriptionFieldRemoved")
class SubscriptionFieldRemoved(Event):
    resource_id: str
    channel: str
    name: str


@registry.register("ResourceCategoryAdded")
class ResourceCategoryAdded(Event):
    resource_id: str
    category: Category


@registry.register("ResourceCategoryRenamed")
class ResourceCategoryRenamed(Event):
    resource_id: str
    api_name: str
    title: str


@registry.register("ResourceCategoryOptionsChanged")
class ResourceCategoryOptionsChanged(Event):
    resource_id: str
    api_name: str
    in_subscription_manager: bool
    mandatory: bool


@registry.register("ResourceCategoryRemoved")
class ResourceCategoryRemoved(Event):
    resource_id: str
    api_name: str


@registry.register("UnsubscribePolicyConfigured")
class UnsubscribePolicyConfigured(Event):
    resource_id: str
    policy: UnsubscribePolicy


@registry.register("ResourceDeleted")
class ResourceDeleted(Event):
    resource_id: str


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateResource:
    resource_id: str
    token: str  # the resource token (`rtoken`), generated at the edge
    settings: ResourceSettings
    channels: tuple[ChannelSettings, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateResource:
    resource_id: str
    settings: ResourceSettings


@dataclass(frozen=True, slots=True)
class EnableChannel:
    resource_id: str
    settings: ChannelSettings


@dataclass(frozen=True, slots=True)
class UpdateChannel:
    resource_id: str
    settings: ChannelSettings


@dataclass(frozen=True, slots=True)
class DisableChannel:
    resource_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class DefineSubscriptionField:
    """Define a field on a channel's subscriptions, or change an existing one's title and options."""

    resource_id: str
    channel: str
    field: FieldDefinition


@dataclass(frozen=True, slots=True)
class RemoveSubscriptionField:
    resource_id: str
    channel: str
    name: str


@dataclass(frozen=True, slots=True)
class AddCategory:
    resource_id: str
    category: Category


@dataclass(frozen=True, slots=True)
class RenameCategory:
    resource_id: str
    api_name: str
    title: str


@dataclass(frozen=True, slots=True)
class ChangeCategoryOptions:
    resource_id: str
    api_name: str
    in_subscription_manager: bool
    mandatory: bool


@dataclass(frozen=True, slots=True)
class RemoveCategory:
    resource_id: str
    api_name: str


@dataclass(frozen=True, slots=True)
class ConfigureUnsubscribePolicy:
    resource_id: str
    policy: UnsubscribePolicy


@dataclass(frozen=True, slots=True)
class DeleteResource:
    resource_id: str


ResourceCommand = (
    CreateResource
    | UpdateResource
    | EnableChannel
    | UpdateChannel
    | DisableChannel
    | DefineSubscriptionField
    | RemoveSubscriptionField
    | AddCategory
    | RenameCategory
    | ChangeCategoryOptions
    | RemoveCategory
    | ConfigureUnsubscribePolicy
    | DeleteResource
)


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceState:
    """A resource as its events left it; `ResourceState()` is the empty stream."""

    resource_id: str = ""
    token: str = ""
    settings: ResourceSettings | None = None
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)
    fields: Mapping[str, Mapping[str, FieldDefinition]] = field(default_factory=dict)
    categories: Mapping[str, Category] = field(default_factory=dict)
    unsubscribe_policy: UnsubscribePolicy = field(default_factory=UnsubscribePolicy)
    deleted: bool = False

    @property
    def exists(self) -> bool:
        """Created and not deleted."""
        return self.settings is not None and not self.deleted

    def accepts_database(self, database_id: str) -> bool:
        """Whether profiles of `database_id` may subscribe."""
        return self.settings is not None and database_id in self.settings.database_ids

    def channel_enabled(self, channel: str) -> bool:
        return channel in self.channels

    def subscription_fields(self, channel: str) -> Mapping[str, FieldDefinition]:
        """The custom subscription field definitions of `channel`, by API name."""
        return self.fields.get(channel, {})

    def category(self, api_name: str) -> Category | None:
        return self.categories.get(api_name)

    @property
    def raise_priority_for_new_subscriptions(self) -> bool:
        return self.settings is not None and self.settings.raise_priority_for_new_subscriptions

    @property
    def sends_list_unsubscribe(self) -> bool:
        """Whether email sends carry the List-Unsubscribe header."""
        policy = self.unsubscribe_policy
        return not policy.list_unsubscribe_disabled and policy.mode is not UnsubscribeMode.FORBIDDEN

    def coerce_subscription_fields(
        self,
        channel: str,
        given: Mapping[str, object],
        current: Mapping[str, JsonValue] | None = None,
    ) -> dict[str, JsonValue]:
        """A subscription's custom field values after applying `given` (an empty value clears one).

        A new subscription (`current` None) starts from the defaults; values of
        fields the channel no longer defines are dropped; required fields must
        end up with a value. Values are coerced as database fields of the same
        type are; errors carry the path `fields.<api_name>`.
        """
        definitions = self.subscription_fields(channel)
        values: dict[str, JsonValue]
        if current is None:
            values = {n: d.default for n, d in definitions.items() if d.default is not None}
        else:
            values = {n: v for n, v in current.items() if n in definitions}
        for name, value in given.items():
            path = f"fields.{name}"
            definition = definitions.get(name)
            if definition is None:
                raise ValidationFailed(f"channel {channel!r} of this resource has no field {name!r}", path)
            coerced = coerce_value(definition, value, path)
            if coerced is None:
                values.pop(name, None)
            else:
                values[name] = coerced
        for name, definition in definitions.items():
            if definition.required and name not in values:
                raise ValidationFailed(f"field {name!r} is required", f"fields.{name}")
        return values


# --- validation helpers ----------------------------------------------------------------------


def _text(value: str, path: str, what: str) -> str:
    text = value.strip()
    if not text:
        raise ValidationFailed(f"{what} must not be empty", path)
    return text


def _api_name(value: str, path: str) -> str:
    if not _API_NAME.match(value):
        raise ValidationFailed(
            f"{value!r} is not a valid API name: use latin letters, digits and _, "
            "start with a letter, at most 64 characters",
            path,
        )
    return value


def _url(value: str, path: str, *, web: bool) -> str:
    """An absolute URL; `web` ones must be http(s), others may use an app scheme."""
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    valid = (
        parts is not None
        and bool(parts.scheme)
        and bool(parts.netloc)
        and not any(c.isspace() for c in text)
        and (not web or parts.scheme.lower() in ("http", "https"))
    )
    if not valid:
        example = "https://example.com/page"
        raise ValidationFailed(f"{value!r} is not a valid absolute URL (e.g. {example})", path)
    return text


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _checked_settings(settings: ResourceSettings) -> ResourceSettings:
    if not settings.database_ids:
        raise ValidationFailed("choose at least one database whose profiles may subscribe", "database_ids")
    if not settings.source_urls:
        raise ValidationFailed("give the URL of the website, form or app", "source_urls")
    policy = settings.sending_policy_id
    return settings.model_copy(
        update={
            "name": _text(settings.name, "name", "the resource name"),
            "description": settings.description.strip(),
            "database_ids": _unique(
                tuple(
                    _text(d, f"database_ids.{i}", "a database id")
                    for i, d in enumerate(settings.database_ids)
                )
            ),
            "source_urls": _unique(
                tuple(_url(u, f"source_urls.{i}", web=False) for i, u in enumerate(settings.source_urls))
            ),
            "default_tracking_domain": normalize_domain(
                settings.default_tracking_domain, "default_tracking_domain"
            ),
            "sending_policy_id": None
            if policy is None
            else _text(policy, "sending_policy_id", "the policy id"),
        }
    )


def _checked_list_id(list_id: str, from_email: str) -> str:
    text = list_id.strip()
    if "<" in text or ">" in text:
        raise ValidationFailed("write the List-ID without < and >", "list_id")
    if len(text) > MAX_LIST_ID:
        raise ValidationFailed(f"the List-ID must be at most {MAX_LIST_ID} characters", "list_id")
    if not _LIST_LABEL.match(text):
        raise ValidationFailed(f"{list_id!r} is not of the form label.domain", "list_id")
    labels = email_domain(from_email).split(".")
    domains = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    lowered = text.lower()
    if not any(lowered.endswith("." + d) for d in domains):
        raise RuleViolated(
            f"the List-ID must be label.{email_domain(from_email)}: its domain must match the From email's",
            "list_id",
        )
    return text


def _checked_email(settings: EmailSettings) -> EmailSettings:
    from_email = normalize_email(settings.from_email, "from_email")
    reply_to = settings.reply_to_email
    return settings.model_copy(
        update={
            "from_name": _text(settings.from_name, "from_name", "the From name"),
            "from_email": from_email,
            "reply_to_name": settings.reply_to_name.strip(),
            "reply_to_email": None if reply_to is None else normalize_email(reply_to, "reply_to_email"),
            "list_id": _checked_list_id(settings.list_id, from_email),
        }
    )


def _checked_sms(settings: SmsSettings) -> SmsSettings:
    caller_id = settings.caller_id.strip()
    if not (_NUMERIC_SENDER.match(caller_id) or _ALPHA_SENDER.match(caller_id)):
        raise ValidationFailed(
            "the Caller ID is an alphanumeric name of at most 11 characters or a number of at most 15 digits",
            "caller_id",
        )
    return settings.model_copy(update={"caller_id": caller_id})


def _checked_push(settings: PushSettings) -> PushSettings:
    platforms = tuple(dict.fromkeys(settings.platforms))
    providers = tuple(dict.fromkeys(settings.providers))
    if not platforms:
        raise ValidationFailed("choose at least one platform", "platforms")
    if not providers:
        raise ValidationFailed("choose at least one provider", "providers")
    for i, provider in enumerate(providers):
        if not PROVIDER_PLATFORMS[provider] & set(platforms):
            supported = ", ".join(sorted(PROVIDER_PLATFORMS[provider]))
            raise RuleViolated(f"{provider.value} delivers only to {supported}", f"providers.{i}")
    for i, platform in enumerate(platforms):
        if not any(platform in PROVIDER_PLATFORMS[p] for p in providers):
            raise RuleViolated(f"no chosen provider delivers to {platform.value}", f"platforms.{i}")
    if settings.firebase_api_key is None and _FIREBASE_PROVIDERS & set(providers):
        raise ValidationFailed("the Firebase API key is required for FCM and AppMetrica", "firebase_api_key")
    return settings.model_copy(update={"platforms": platforms, "providers": providers})


def _checked_custom(settings: CustomChannelSettings) -> CustomChannelSettings:
    if settings.name in _BUILT_IN_CHANNELS or not _CHANNEL_NAME.match(settings.name):
        raise ValidationFailed(
            f"{settings.name!r} is not a valid custom channel name: lower-case latin letters, digits "
            "and _, starting with a letter, and not email, sms or push",
            "name",
        )
    if any(not key.strip() for key in (*settings.options, *settings.secrets)):
        raise ValidationFailed("option names must not be empty", "options")
    for name in settings.options:
        if looks_like_credential(name):
            raise ValidationFailed(
                f"{name[:50]!r} looks like a credential: give it in `secrets` (sealed, never shown)",
                f"options.{name[:50]}",
            )
    return settings


def _checked_channel(settings: ChannelSettings) -> ChannelSettings:
    match settings:
        case EmailSettings():
            return _checked_email(settings)
        case SmsSettings():
            return _checked_sms(settings)
        case PushSettings():
            return _checked_push(settings)
        case CustomChannelSettings():
            return _checked_custom(settings)


def _checked_field(definition: FieldDefinition) -> FieldDefinition:
    """A subscription field: a database-style custom field of one of the four subscription types."""
    _api_name(definition.name, "field.name")
    if definition.type not in SUBSCRIPTION_FIELD_TYPES:
        allowed = ", ".join(sorted(SUBSCRIPTION_FIELD_TYPES))
        raise ValidationFailed(f"a subscription field's type is one of {allowed}", "field.type")
    if definition.unique:
        raise ValidationFailed("subscription fields cannot be unique", "field.unique")
    return check_definition(definition.model_copy(update={"title": definition.title.strip()}), "field")


def _checked_category(category: Category) -> Category:
    return category.model_copy(
        update={
            "api_name": _api_name(category.api_name, "api_name"),
            "title": _text(category.title, "title", "the category name"),
        }
    )


def _checked_policy(policy: UnsubscribePolicy) -> UnsubscribePolicy:
    mode = policy.mode
    page_url = None if policy.page_url is None else _url(policy.page_url, "page_url", web=True)
    needs_page = mode in (UnsubscribeMode.CONFIRM, UnsubscribeMode.DELAYED)
    if needs_page and (page_url is None or "{send_message_id}" not in page_url):
        raise ValidationFailed(
            f"the {mode.value} mode needs an unsubscribe page URL carrying {{send_message_id}}",
            "page_url",
        )
    timer = policy.timer_minutes
    if mode is UnsubscribeMode.DELAYED:
        if timer is None or not 1 <= timer <= MAX_UNSUBSCRIBE_TIMER_MINUTES:
            raise ValidationFailed(
                f"the delayed mode needs a timer of 1 to {MAX_UNSUBSCRIBE_TIMER_MINUTES} minutes",
                "timer_minutes",
            )
    elif timer is not None:
        raise ValidationFailed("only the delayed mode has a timer", "timer_minutes")
    explanation = (policy.forbidden_explanation or "").strip() or None
    if mode is UnsubscribeMode.FORBIDDEN and explanation is None:
        raise ValidationFailed("explain to subscribers why they cannot unsubscribe", "forbidden_explanation")
    callback = policy.list_unsubscribe_callback_url
    if callback is not None:
        callback = _url(callback, "list_unsubscribe_callback_url", web=True)
        if policy.list_unsubscribe_disabled:
            raise RuleViolated(
                "List-Unsubscribe is disabled, so nothing would call this URL",
                "list_unsubscribe_callback_url",
            )
    return policy.model_copy(
        update={
            "page_url": page_url,
            "forbidden_explanation": explanation,
            "list_unsubscribe_callback_url": callback,
        }
    )


# --- decide / evolve -------------------------------------------------------------------------


def _enabled_channel(state: ResourceState, channel: str) -> str:
    if channel not in state.channels:
        raise NotFound(f"channel {channel!r} is not enabled on this resource", "channel")
    return channel


def _existing_category(state: ResourceState, api_name: str) -> Category:
    category = state.categories.get(api_name)
    if category is None:
        raise NotFound(f"the resource has no category {api_name!r}", "api_name")
    return category


def _enable(state: ResourceState, settings: ChannelSettings) -> ResourceChannelEnabled:
    checked = _checked_channel(settings)
    if checked.channel in state.channels:
        raise AlreadyExists(f"channel {checked.channel!r} is already enabled", "channel")
    return ResourceChannelEnabled(resource_id=state.resource_id, channel=checked.channel, settings=checked)


def decide_resource(command: ResourceCommand, state: ResourceState) -> list[Event]:
    """The events `command` causes on the resource `state`."""
    if isinstance(command, CreateResource):
        if state.settings is not None:
            raise AlreadyExists(f"resource {command.resource_id!r} exists already", "resource_id")
        created = ResourceCreated(
            resource_id=command.resource_id,
            token=_text(command.token, "token", "the resource token"),
            settings=_checked_settings(command.settings),
        )
        events: list[Event] = [created]
        current = evolve_resource(state, created)
        for i, channel_settings in enumerate(command.channels):
            try:
                enabled = _enable(current, channel_settings)
            except DomainError as error:
                raise error.at(f"channels.{i}") from None
            events.append(enabled)
            current = evolve_resource(current, enabled)
        return events
    if not state.exists:
        raise NotFound(f"resource {command.resource_id!r} does not exist", "resource_id")
    rid = state.resource_id
    match command:
        case UpdateResource():
            settings = _checked_settings(command.settings)
            return [] if settings == state.settings else [ResourceUpdated(resource_id=rid, settings=settings)]
        case EnableChannel():
            return [_enable(state, command.settings)]
        case UpdateChannel():
            checked = _checked_channel(command.settings)
            channel = _enabled_channel(state, checked.channel)
            if state.channels[channel] == checked:
                return []
            return [ResourceChannelUpdated(resource_id=rid, channel=channel, settings=checked)]
        case DisableChannel():
            return [
                ResourceChannelDisabled(resource_id=rid, channel=_enabled_channel(state, command.channel))
            ]
        case DefineSubscriptionField():
            channel = _enabled_channel(state, command.channel)
            definition = _checked_field(command.field)
            existing = state.subscription_fields(channel).get(definition.name)
            if existing == definition:
                return []
            if existing is not None and existing.type is not definition.type:
                raise RuleViolated(
                    f"field {definition.name!r} is a {existing.type.value} field; "
                    "a field's type cannot change: remove it and define a new one",
                    "field.type",
                )
            return [SubscriptionFieldDefined(resource_id=rid, channel=channel, field=definition)]
        case RemoveSubscriptionField():
            channel = _enabled_channel(state, command.channel)
            if command.name not in state.subscription_fields(channel):
                raise NotFound(f"channel {channel!r} has no field {command.name!r}", "name")
            return [SubscriptionFieldRemoved(resource_id=rid, channel=channel, name=command.name)]
        case AddCategory():
            category = _checked_category(command.category)
            if category.api_name in state.categories:
                raise AlreadyExists(f"category {category.api_name!r} exists already", "api_name")
            return [ResourceCategoryAdded(resource_id=rid, category=category)]
        case RenameCategory():
            existing_category = _existing_category(state, command.api_name)
            title = _text(command.title, "title", "the category name")
            if title == existing_category.title:
                return []
            return [ResourceCategoryRenamed(resource_id=rid, api_name=command.api_name, title=title)]
        case ChangeCategoryOptions():
            existing_category = _existing_category(state, command.api_name)
            options = (command.in_subscription_manager, command.mandatory)
            if options == (existing_category.in_subscription_manager, existing_category.mandatory):
                return []
            return [
                ResourceCategoryOptionsChanged(
                    resource_id=rid,
                    api_name=command.api_name,
                    in_subscription_manager=command.in_subscription_manager,
                    mandatory=command.mandatory,
                )
            ]
        case RemoveCategory():
            _existing_category(state, command.api_name)
            return [ResourceCategoryRemoved(resource_id=rid, api_name=command.api_name)]
        case ConfigureUnsubscribePolicy():
            policy = _checked_policy(command.policy)
            if policy == state.unsubscribe_policy:
                return []
            return [UnsubscribePolicyConfigured(resource_id=rid, policy=policy)]
        case DeleteResource():
            return [ResourceDeleted(resource_id=rid)]


def evolve_resource(state: ResourceState, event: Event) -> ResourceState:
    """The resource after `event`; events of other aggregates leave it unchanged."""
    match event:
        case ResourceCreated():
            return ResourceState(resource_id=event.resource_id, token=event.token, settings=event.settings)
        case ResourceUpdated():
            return replace(state, settings=event.settings)
        case ResourceChannelEnabled() | ResourceChannelUpdated():
            return replace(state, channels={**state.channels, event.channel: event.settings})
        case ResourceChannelDisabled():
            return replace(
                state,
                channels={k: v for k, v in state.channels.items() if k != event.channel},
                fields={k: v for k, v in state.fields.items() if k != event.channel},
            )
        case SubscriptionFieldDefined():
            channel_fields = {**state.subscription_fields(event.channel), event.field.name: event.field}
            return replace(state, fields={**state.fields, event.channel: channel_fields})
        case SubscriptionFieldRemoved():
            channel_fields = {
                k: v for k, v in state.subscription_fields(event.channel).items() if k != event.name
            }
            return replace(state, fields={**state.fields, event.channel: channel_fields})
        case ResourceCategoryAdded():
            return replace(state, categories={**state.categories, event.category.api_name: event.category})
        case ResourceCategoryRenamed() if event.api_name in state.categories:
            category = state.categories[event.api_name].model_copy(update={"title": event.title})
            return replace(state, categories={**state.categories, event.api_name: category})
        case ResourceCategoryOptionsChanged() if event.api_name in state.categories:
            category = state.categories[event.api_name].model_copy(
                update={
                    "in_subscription_manager": event.in_subscription_manager,
                    "mandatory": event.mandatory,
                }
            )
            return replace(state, categories={**state.categories, event.api_name: category})
        case ResourceCategoryRemoved():
            return replace(
                state, categories={k: v for k, v in state.categories.items() if k != event.api_name}
            )
        case UnsubscribePolicyConfigured():
            return replace(state, unsubscribe_policy=event.policy)
        case ResourceDeleted():
            return replace(state, deleted=True)
    return state


resource_decider: Decider[ResourceCommand, ResourceState] = Decider(
    initial=ResourceState(), decide=decide_resource, evolve=evolve_resource
)


def resource_stream(resource_id: str) -> str:
    """The event stream of resource `resource_id`."""
    return f"resource-{resource_id}"
