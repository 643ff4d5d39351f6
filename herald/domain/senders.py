"""Senders and virtual senders (streams `sender-<id>`, `vsender-<id>`): where messages leave Herald.

A sender serves one channel: an email sender is an SMTP relay with its speed,
connection count, retry deadline and DKIM key (guide, admin "Senders" and
"Keys"); an SMS sender an SMPP account at an SMSC, with how long an accepted
SMS waits for its delivery report; a push sender the Web Push protocol with
its VAPID contact (the key is the account's), an FCM project with its
service account or an APNs app (team, key id, topic; the .p8 key a secret); a Telegram
sender a bot (its token a secret). An SMS sender may instead be an account at an HTTP gateway
in BulkSMS's JSON v1 shape. A virtual sender is an
ordered list of routing rules over senders: the first rule whose recipient
domains match takes the message, and splits its traffic over its senders by
percentage, each optionally overriding the From name.

Decisions where the guide is silent:
- The DKIM private key is write-only: it is stored sealed (`domain/secrets.py`),
  opened only to sign, and never shown again (the guide shows it once, at
  creation). The relay password too. Events before schema version 2 held both
  in clear; their upcaster withholds them.
- A rule matches recipient domains by suffix (`gmail.com` matches
  `gmail.com`, not `notgmail.com`; `.ru` matches every `*.ru`); a rule with
  no domains matches everything ("Default (match all)").
- A rule's percentages add up to 100. The split is decided by the message id,
  so a retried message goes through the same sender.
- A virtual sender must end with a match-all rule, so every message has a route.
- A sender names its channel and holds the settings of that channel's protocol
  only (`relay` for email, `smpp` or `bulksms` for SMS, `webpush`, `fcm` or `apns` for push,
  `telegram` for `telegram_bot`); events from
  before channels had no `channel` and are email senders. A rule's From-name
  override is an SMS's alpha sender when the route sends SMS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, ValidationFailed
from herald.domain.events import Event, JsonDict, registry
from herald.domain.secrets import WITHHELD, SealedSecret

_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SmtpRelaySettings(_Value):
    host: str
    port: int = Field(587, ge=1, le=65535)
    username: str = ""
    starttls: Literal["auto", "always", "never"] = "auto"
    implicit_tls: bool = False


class SmppAccountSettings(_Value):
    """An SMSC account (SMPP 3.4 transceiver bind); the password is a secret."""

    host: str
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    system_type: str = Field("", max_length=12)
    window: int = Field(64, ge=1, le=1024, description="submits awaiting their response at once")


class WebPushServiceSettings(_Value):
    """The Web Push protocol (RFC 8030/8291/8292) with the account's VAPID key."""

    subject: str = Field(min_length=1, description="VAPID `sub`: a mailto: or https: contact of the sender")


class FcmProjectSettings(_Value):
    """Firebase Cloud Messaging's HTTP v1 API; the project and its key are the service-account JSON,
    a secret."""

    base_url: str = Field("https://fcm.googleapis.com", min_length=1)


class ApnsAppSettings(_Value):
    """Apple's push service with token (JWT) authentication; the .p8 signing key is a secret."""

    team_id: str = Field(min_length=1, max_length=64, description="the Apple developer team id (`iss`)")
    key_id: str = Field(min_length=1, max_length=64, description="the signing key's id (`kid`)")
    topic: str = Field(min_length=1, max_length=255, description="`apns-topic`: the app's bundle id")
    base_url: str = Field("https://api.push.apple.com", min_length=1, description="the sandbox's for tests")
    ca_file: str = Field("", description="a CA bundle to trust instead of the system's (a proxy, a test)")


class BulkSmsAccountSettings(_Value):
    """An HTTP SMS gateway in the shape of BulkSMS's JSON REST API v1; the token secret is `password`."""

    base_url: str = Field("https://api.bulksms.com/v1", min_length=1)
    username: str = Field(min_length=1, max_length=255, description="the API token id (or the username)")


class TelegramBotSettings(_Value):
    """A Telegram bot through the Bot API; its token is a secret (`bot_token`)."""

    base_url: str = Field("https://api.telegram.org", min_length=1, description="a local Bot API server's")


SenderChannel = Literal["email", "sms", "push", "telegram_bot"]


class SenderSettings(_Value):
    name: str
    channel: SenderChannel = "email"
    relay: SmtpRelaySettings | None = None
    smpp: SmppAccountSettings | None = None
    webpush: WebPushServiceSettings | None = None
    fcm: FcmProjectSettings | None = None
    apns: ApnsAppSettings | None = None
    bulksms: BulkSmsAccountSettings | None = None
    telegram: TelegramBotSettings | None = None
    await_delivery_seconds: int = Field(
        0,
        ge=0,
        le=7 * 24 * 3600,
        description="SMS: how long an accepted message waits for its delivery "
        "report before it counts as undelivered; 0: accepted is delivered",
    )
    rate_per_second: float = Field(10.0, gt=0, le=10_000, description="messages started per second")
    connections: int = Field(2, ge=1, le=64)
    retry_deadline_hours: int = Field(48, ge=1, le=24 * 7, description="soft bounces are retried this long")
    dkim_selector: str = ""
    dkim_domain: str = ""
    bounce_address: str = Field(
        "", description="the envelope sender (Return-Path); default: the From address"
    )


class SenderSecrets(_Value):
    """What is stored (sealed) but never shown: the relay's (or SMSC's, or SMS gateway's) password, the
    DKIM private key, an FCM sender's service-account JSON, an APNs sender's .p8 signing key, a
    Telegram bot's token."""

    password: SealedSecret | None = None
    dkim_private_key: SealedSecret | None = None
    service_account: SealedSecret | None = None
    signing_key: SealedSecret | None = None
    bot_token: SealedSecret | None = None

    def names(self) -> tuple[str, ...]:
        """The secrets that are set."""
        return tuple(name for name in SECRET_NAMES if getattr(self, name) is not None)


SECRET_NAMES = ("password", "dkim_private_key", "service_account", "signing_key", "bot_token")


class RouteTarget(_Value):
    sender_id: str
    percent: int = Field(ge=1, le=100)
    from_name: str = Field("", description="overrides the From name of messages it sends")


class RouteRule(_Value):
    domains: tuple[str, ...] = Field((), description="recipient domains (suffixes); empty: match all")
    targets: tuple[RouteTarget, ...]


@registry.register("SenderCreated", version=2)
class SenderCreated(Event):
    sender_id: str
    settings: SenderSettings
    secrets: SenderSecrets
    at: datetime


@registry.register("SenderChanged", version=2)
class SenderChanged(Event):
    sender_id: str
    settings: SenderSettings
    secrets: SenderSecrets
    at: datetime


@registry.upcaster("SenderCreated", 1)
@registry.upcaster("SenderChanged", 1)
def withhold_cleartext_secrets(data: JsonDict) -> JsonDict:
    """Version 1 held the secrets in clear: each one set becomes `WITHHELD` (the cleartext is dropped)."""
    given = data.get("secrets", {})
    withheld = {name: WITHHELD.model_dump() for name in SECRET_NAMES if given.get(name)}
    return {**data, "secrets": withheld}


@registry.register("VirtualSenderSet")
class VirtualSenderSet(Event):
    virtual_sender_id: str
    name: str
    rules: tuple[RouteRule, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class SenderState:
    sender_id: str = ""
    settings: SenderSettings | None = None
    secrets: SenderSecrets = field(default_factory=SenderSecrets)

    @property
    def exists(self) -> bool:
        return self.settings is not None


@dataclass(frozen=True, slots=True)
class SetSender:
    """Create the sender, or replace its settings; secrets not given (None) keep the stored ones."""

    sender_id: str
    settings: SenderSettings
    secrets: SenderSecrets
    at: datetime
    create: bool = False


def decide_sender(command: SetSender, state: SenderState) -> list[Event]:
    if command.create and state.exists:
        raise AlreadyExists(f"sender {command.sender_id!r} exists", "sender_id")
    if not command.create and not state.exists:
        raise NotFound(f"no sender {command.sender_id!r}", "sender_id")
    settings = _checked_sender(command.settings)
    secrets = SenderSecrets(
        **{name: getattr(command.secrets, name) or getattr(state.secrets, name) for name in SECRET_NAMES}
    )  # a secret not given keeps the stored one
    if bool(settings.dkim_selector) != bool(secrets.dkim_private_key):
        raise ValidationFailed("DKIM needs both a selector and a private key", "dkim_selector")
    for protocol, secret, reason in _NEEDED_SECRETS:
        if getattr(settings, protocol) is not None and getattr(secrets, secret) is None:
            raise ValidationFailed(reason, secret)
    if command.create:
        return [SenderCreated(sender_id=command.sender_id, settings=settings, secrets=secrets, at=command.at)]
    if settings == state.settings and secrets == state.secrets:
        return []
    return [SenderChanged(sender_id=command.sender_id, settings=settings, secrets=secrets, at=command.at)]


PROTOCOLS = {
    "relay": "email",
    "smpp": "sms",
    "bulksms": "sms",
    "webpush": "push",
    "fcm": "push",
    "apns": "push",
    "telegram": "telegram_bot",
}
"""Each protocol's settings field and the channel it serves; a sender has exactly one (the first of a
channel's is where a sender of it that has none is told to look)."""

_NEEDED_SECRETS = (
    ("fcm", "service_account", "an FCM sender needs its service-account JSON"),
    ("apns", "signing_key", "an APNs sender needs its .p8 signing key"),
    ("bulksms", "password", "an SMS gateway account needs its token secret (password)"),
    ("telegram", "bot_token", "a Telegram sender needs its bot token"),
)
"""(protocol, the secret it cannot send without, the error when it is missing)."""


def _checked_sender(settings: SenderSettings) -> SenderSettings:
    if not settings.name.strip():
        raise ValidationFailed("a sender needs a name", "name")
    given = {name for name in PROTOCOLS if getattr(settings, name) is not None}
    allowed = [name for name, channel in PROTOCOLS.items() if channel == settings.channel]
    for name in sorted(given - set(allowed)):
        raise ValidationFailed(f"a sender of {settings.channel} has no {name}", name)
    if len(given) != 1:
        choices = " or ".join(allowed)
        raise ValidationFailed(f"a sender of {settings.channel} needs one of {choices}", allowed[0])
    if settings.relay is not None and not settings.relay.host.strip():
        raise ValidationFailed("the relay needs a host", "relay.host")
    if settings.smpp is not None and not settings.smpp.host.strip():
        raise ValidationFailed("the SMSC needs a host", "smpp.host")
    for name in ("fcm", "apns", "bulksms", "telegram"):
        api = getattr(settings, name)
        if api is not None and not _HTTP_URL.match(api.base_url):
            raise ValidationFailed("the API's base URL is an http(s) URL", f"{name}.base_url")
    if settings.channel != "email" and settings.dkim_selector:
        raise ValidationFailed("only email is DKIM-signed", "dkim_selector")
    if settings.dkim_selector and not settings.dkim_domain:
        raise ValidationFailed("DKIM needs the signing domain", "dkim_domain")
    return settings


def evolve_sender(state: SenderState, event: Event) -> SenderState:
    if isinstance(event, SenderCreated | SenderChanged):
        return SenderState(event.sender_id, event.settings, event.secrets)
    return state


sender_decider: Decider[SetSender, SenderState] = Decider(SenderState(), decide_sender, evolve_sender)


def sender_stream(sender_id: str) -> str:
    return f"sender-{sender_id}"


# --- virtual senders ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VirtualSenderState:
    virtual_sender_id: str = ""
    name: str = ""
    rules: tuple[RouteRule, ...] = ()

    @property
    def exists(self) -> bool:
        return bool(self.rules)


@dataclass(frozen=True, slots=True)
class SetVirtualSender:
    virtual_sender_id: str
    name: str
    rules: tuple[RouteRule, ...]
    known_senders: frozenset[str]
    at: datetime


def decide_virtual(command: SetVirtualSender, state: VirtualSenderState) -> list[Event]:
    if not command.rules:
        raise ValidationFailed("a virtual sender needs at least one rule", "rules")
    for i, rule in enumerate(command.rules):
        _check_rule(rule, f"rules.{i}", command.known_senders)
    if command.rules[-1].domains:
        raise ValidationFailed(
            "the last rule must match all recipients (no domains)", f"rules.{len(command.rules) - 1}"
        )
    if (command.name, command.rules) == (state.name, state.rules):
        return []
    return [
        VirtualSenderSet(
            virtual_sender_id=command.virtual_sender_id, name=command.name, rules=command.rules, at=command.at
        )
    ]


def _check_rule(rule: RouteRule, path: str, known: frozenset[str]) -> None:
    if not rule.targets:
        raise ValidationFailed("a rule sends through at least one sender", f"{path}.targets")
    if sum(t.percent for t in rule.targets) != 100:
        raise ValidationFailed("a rule's percentages add up to 100", f"{path}.targets")
    for j, target in enumerate(rule.targets):
        if target.sender_id not in known:
            raise NotFound(f"no sender {target.sender_id!r}", f"{path}.targets.{j}.sender_id")


def evolve_virtual(state: VirtualSenderState, event: Event) -> VirtualSenderState:
    if isinstance(event, VirtualSenderSet):
        return replace(state, virtual_sender_id=event.virtual_sender_id, name=event.name, rules=event.rules)
    return state


virtual_sender_decider: Decider[SetVirtualSender, VirtualSenderState] = Decider(
    VirtualSenderState(), decide_virtual, evolve_virtual
)


def virtual_sender_stream(virtual_sender_id: str) -> str:
    return f"vsender-{virtual_sender_id}"


@dataclass(frozen=True, slots=True)
class OpenedSender:
    """A sender with its secrets opened, for the moment they are used (the SMTP login, DKIM)."""

    state: SenderState
    password: str = field(repr=False)
    dkim_private_key: str = field(repr=False)
    service_account: str = field(default="", repr=False)
    signing_key: str = field(default="", repr=False)
    bot_token: str = field(default="", repr=False)


def route(rules: tuple[RouteRule, ...], recipient: str, message_id: str) -> RouteTarget:
    """The sender (and From-name override) a message to `recipient` goes through."""
    domain = recipient.rpartition("@")[2].lower()
    rule = next((r for r in rules if not r.domains or any(_matches(domain, d) for d in r.domains)), None)
    if rule is None:
        raise NotFound(f"no rule routes mail to {domain!r}", "virtual_sender_id")
    point = int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % 100
    for target in rule.targets:
        if point < target.percent:
            return target
        point -= target.percent
    return rule.targets[-1]


def _matches(domain: str, suffix: str) -> bool:
    suffix = suffix.lower().lstrip("*")
    if suffix.startswith("."):
        return domain.endswith(suffix)
    return domain == suffix or domain.endswith("." + suffix)
