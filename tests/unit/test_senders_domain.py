"""Senders serve one channel: given no sender, when it is set, then it is created or refused (where)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain import senders as sd
from herald.domain.errors import ValidationFailed

AT = datetime(2026, 1, 1, tzinfo=UTC)
RELAY = {"host": "smtp.example.com"}
SMPP = {"host": "smsc.example.com", "system_id": "herald"}
WEBPUSH = {"subject": "mailto:ops@example.com"}


def setting(**given: Any) -> sd.SetSender:
    settings = sd.SenderSettings.model_validate({"name": "main", **given})
    return sd.SetSender("main", settings, sd.SenderSecrets(), AT, create=True)


@pytest.mark.parametrize(
    "given",
    [
        {"relay": RELAY},  # email, as every sender was before channels
        {"channel": "sms", "smpp": SMPP, "await_delivery_seconds": 300},
        {"channel": "push", "webpush": WEBPUSH},
    ],
)
def test_a_sender_with_its_channels_protocol_is_created(given: dict[str, Any]) -> None:
    [event] = sd.decide_sender(setting(**given), sd.SenderState())
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
    ],
)
def test_a_sender_without_its_channels_protocol_or_with_anothers_is_refused(
    given: dict[str, Any], path: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        sd.decide_sender(setting(**given), sd.SenderState())
    assert refused.value.path == path


def test_a_sender_stored_before_channels_is_an_email_sender() -> None:
    event = sd.SenderCreated.model_validate(
        {"sender_id": "main", "settings": {"name": "main", "relay": RELAY}, "secrets": {}, "at": AT}
    )
    assert sd.evolve_sender(sd.SenderState(), event).settings == sd.SenderSettings(
        name="main", channel="email", relay=sd.SmtpRelaySettings(**RELAY)
    )
