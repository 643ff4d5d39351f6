"""Channel settings as the API takes and shows them: credentials in clear on the way in, sealed
before they reach a command, and shown only as whether they are set.

A push channel's `firebase_api_key` and a custom channel's `secrets` (a bot
token, an API key) are write-only: left out, the stored ones stay; given again
unchanged, nothing is appended.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from herald.domain import resources as rs
from herald.domain.secrets import SealedSecret
from herald.infra.secret_box import SecretBox
from herald.services.channel_secrets import bound_to


class PushSettingsIn(rs.PushSettings):
    firebase_api_key: str | None = Field(  # type: ignore[assignment]
        None, description="write-only: the Firebase server key (FCM and AppMetrica); left out, it stays"
    )


class CustomChannelIn(rs.CustomChannelSettings):
    secrets: dict[str, str] = Field(  # type: ignore[assignment]
        default_factory=dict,
        description="write-only credentials (bot token, API key), sealed, never shown; left out, they stay",
    )


ChannelSettingsIn = Annotated[
    rs.EmailSettings | rs.SmsSettings | PushSettingsIn | CustomChannelIn, Field(discriminator="kind")
]
CHANNEL_MODELS_IN: dict[str, type[Any]] = {
    "email": rs.EmailSettings,
    "sms": rs.SmsSettings,
    "push": PushSettingsIn,
}


def sealed_channel(
    box: SecretBox, resource_id: str, given: Any, current: rs.ChannelSettings | None
) -> rs.ChannelSettings:
    """The domain settings for `given` (an input model), its credentials sealed or kept."""
    if isinstance(given, PushSettingsIn):
        stored = current.firebase_api_key if isinstance(current, rs.PushSettings) else None
        where = bound_to(resource_id, given.channel, "firebase_api_key")
        key = box.seal_changed((given.firebase_api_key or "").strip(), stored, where)
        return rs.PushSettings(platforms=given.platforms, providers=given.providers, firebase_api_key=key)
    if isinstance(given, CustomChannelIn):
        stored_secrets: dict[str, SealedSecret] = (
            dict(current.secrets) if isinstance(current, rs.CustomChannelSettings) else {}
        )
        for name, value in given.secrets.items():
            where = bound_to(resource_id, given.channel, f"secrets.{name}")
            sealed = box.seal_changed(value, stored_secrets.get(name), where)
            if sealed is not None:
                stored_secrets[name] = sealed
        return rs.CustomChannelSettings(name=given.name, options=given.options, secrets=stored_secrets)
    settings: rs.ChannelSettings = given
    return settings


def shown_channel(settings: dict[str, Any]) -> dict[str, Any]:
    """A channel's settings (as JSON) with each credential replaced by whether it is set."""
    shown = {k: v for k, v in settings.items() if k not in ("firebase_api_key", "secrets")}
    if settings.get("kind") == "push":
        shown["has_firebase_api_key"] = settings.get("firebase_api_key") is not None
    if settings.get("kind") == "custom":
        shown["secret_names"] = sorted(settings.get("secrets", {}))
    return shown
