"""A resource's channel credentials: where each is bound, and sealing them again.

A push channel's `firebase_api_key` and each of a custom channel's `secrets`
is sealed bound to `resource-<id>.channels.<channel>.<name>`. `reseal_resource`
seals again under the current key what an older key sealed, and what an event
of schema version 1 held in clear (withheld on read) from that event's stored
bytes, in one `UpdateChannel` per channel.
"""

from __future__ import annotations

from typing import Any

from herald.domain import resources as rs
from herald.domain.secrets import SealedSecret, looks_like_credential
from herald.infra.secret_box import SecretBox
from herald.services.aggregates import CommandContext
from herald.services.catalog import CatalogService

CHANNEL_EVENTS = frozenset({"ResourceChannelEnabled", "ResourceChannelUpdated"})


def bound_to(resource_id: str, channel: str, name: str) -> str:
    """What a channel credential is bound to (the AEAD's associated data)."""
    return f"{rs.resource_stream(resource_id)}.channels.{channel}.{name}"


def secrets_of(settings: rs.ChannelSettings) -> dict[str, SealedSecret]:
    """The channel's credentials by name (`firebase_api_key`, `secrets.<name>`)."""
    if isinstance(settings, rs.PushSettings) and settings.firebase_api_key is not None:
        return {"firebase_api_key": settings.firebase_api_key}
    if isinstance(settings, rs.CustomChannelSettings):
        return {f"secrets.{name}": sealed for name, sealed in settings.secrets.items()}
    return {}


def _replaced(settings: rs.ChannelSettings, fresh: dict[str, SealedSecret]) -> rs.ChannelSettings:
    if isinstance(settings, rs.PushSettings):
        return settings.model_copy(update={"firebase_api_key": fresh["firebase_api_key"]})
    assert isinstance(settings, rs.CustomChannelSettings)  # only these two hold credentials
    named = {name.removeprefix("secrets."): sealed for name, sealed in fresh.items()}
    return settings.model_copy(update={"secrets": {**settings.secrets, **named}})


def reseal_resource(
    catalog: CatalogService, box: SecretBox, resource_id: str, context: CommandContext
) -> bool:
    """Seal the resource's channel credentials again where needed; True when something was."""
    loaded = catalog.loaded_resource(resource_id)
    stored = _stored_cleartext(catalog, loaded.stream)
    commands: list[Any] = []
    for channel, settings in loaded.state.channels.items():
        fresh = {}
        for name, sealed in secrets_of(settings).items():
            where = bound_to(resource_id, channel, name)
            if sealed.withheld:
                fresh[name] = box.seal(stored[(channel, name)], where)
            elif not box.is_current(sealed):
                fresh[name] = box.seal(box.open(sealed, where), where)
        if fresh:
            commands.append(rs.UpdateChannel(resource_id, _replaced(settings, fresh)))
    if not commands:
        return False
    once = CommandContext(context.actor, context.source, request_id=f"reseal:{loaded.version}")
    catalog.change_resource(resource_id, lambda _: commands, once)
    return True


def _stored_cleartext(catalog: CatalogService, stream: str) -> dict[tuple[str, str], str]:
    """The credentials the stream's version-1 channel events held in clear, the last of each."""
    found: dict[tuple[str, str], str] = {}
    for event in catalog.aggregates.store.read_stream(stream):
        if event.type not in CHANNEL_EVENTS or event.schema_version != 1:
            continue
        channel, settings = event.data["channel"], event.data["settings"]
        if settings.get("firebase_api_key"):
            found[(channel, "firebase_api_key")] = settings["firebase_api_key"]
        for name, value in settings.get("options", {}).items():
            if looks_like_credential(name):
                found[(channel, f"secrets.{name}")] = str(value)
    return found
