"""Senders serve one channel: given no sender, when it is set, then it is created or refused (where)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from herald.domain import senders as sd
from herald.domain.errors import ValidationFailed
from herald.domain.secrets import SealedSecret

AT = datetime(2026, 1, 1, tzinfo=UTC)
RELAY = {"host": "smtp.example.com"}
SMPP = {"host": "smsc.example.com", "system_id": "herald"}
WEBPUSH = {"subject": "mailto:ops@example.com"}
APNS = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.app"}
BULKSMS = {"username": "token-id"}
TELEGRAM = {"base_url": "http://127.0.0.1:8081"}
SEALED = SealedSecret(key_id="k1", ciphertext="c2VhbGVk")


def setting(*secrets: str, **given: Any) -> sd.SetSender:
    """A new sender of `given` settings with the `secrets` named (sealed)."""
    settings = sd.SenderSettings.model_validate({"name": "main", **given})
    sealed = sd.SenderSecrets(**dict.fromkeys(secrets, SEALED))
    return sd.SetSender("main", settings, sealed, AT, create=True)


@pytest.mark.parametrize(
    "given",
    [
        {"relay": RELAY},  # email, as every sender was before channels
        {"channel": "sms", "smpp": SMPP, "await_delivery_seconds": 300},
        {"channel": "push", "webpush": WEBPUSH},
        {"channel": "push", "apns": APNS, "secrets": ("signing_key",)},
        {"channel": "sms", "bulksms": BULKSMS, "secrets": ("password",)},
        {"channel": "telegram_bot", "telegram": TELEGRAM, "secrets": ("bot_token",)},
    ],
)
def test_a_sender_with_its_channels_protocol_is_created(given: dict[str, Any]) -> None:
    given = dict(given)
    [event] = sd.decide_sender(setting(*given.pop("secrets", ()), **given), sd.SenderState())
    assert isinstance(event, sd.SenderCreated) and event.settings.channel == given.get("channel", "email")


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ({}, "relay"),
        ({"channel": "sms"}, "smpp"),
        ({"channel": "sms", "smpp": SMPP, "relay": RELAY}, "relay"),
        ({"channel": "push", "webpush": WEBPUSH, "smpp": SMPP}, "smpp"),
        ({"channel": "sms", "smpp": {**SMPP, "host": " "}}, "smpp.host"),
        ({"channel": "sms", "smpp": SMPP, "dkim_selector": "s1", "dkim_domain": "x.io"}, "dkim_selector"),
        ({"channel": "push"}, "webpush"),
        ({"channel": "push", "apns": APNS}, "signing_key"),
        ({"channel": "push", "apns": {**APNS, "topic": ""}}, "apns.topic"),
        ({"channel": "sms", "bulksms": BULKSMS}, "password"),
        ({"channel": "sms", "bulksms": BULKSMS, "smpp": SMPP}, "smpp"),  # one of the two
        ({"channel": "telegram_bot"}, "telegram"),
        ({"channel": "telegram_bot", "telegram": TELEGRAM}, "bot_token"),
        ({"channel": "email", "relay": RELAY, "telegram": TELEGRAM}, "telegram"),
        ({"channel": "telegram_bot", "telegram": {"base_url": "api.telegram.org"}}, "telegram.base_url"),
        ({"channel": "push", "apns": {**APNS, "base_url": "https:// x"}}, "apns.base_url"),
    ],
)
def test_a_sender_without_its_channels_protocol_or_with_anothers_is_refused(
    given: dict[str, Any], path: str
) -> None:
    with pytest.raises((ValidationFailed, PydanticValidationError)) as refused:
        sd.decide_sender(setting(**given), sd.SenderState())
    error = refused.value
    where = (
        error.path if isinstance(error, ValidationFailed) else ".".join(map(str, error.errors()[0]["loc"]))
    )
    assert where == path


def test_a_sender_stored_before_channels_is_an_email_sender() -> None:
    event = sd.SenderCreated.model_validate(
        {"sender_id": "main", "settings": {"name": "main", "relay": RELAY}, "secrets": {}, "at": AT}
    )
    assert sd.evolve_sender(sd.SenderState(), event).settings == sd.SenderSettings(
        name="main", channel="email", relay=sd.SmtpRelaySettings(**RELAY)
    )
