"""Subscriptions the subscriber makes from a device: web and app push, a Telegram bot's chat.

The guide's `initSubscription(match, update)`: the subscription is attached to
the profile `match` names (`{profile_field: value}`), else to the profile that
opened an email from the same browser (the tracker's browser cookie), else to
a new profile in the resource's first database; `update` is written to that
profile. App subscriptions (FCM, APNs, …) arrive the same way from the app,
with a device token and its provider instead of a browser subscription. A
Telegram user who starts the bot from a link made for a profile subscribes
that profile's `telegram_bot` channel with their chat id (no provider).

Decisions where the guide is silent:
- The same device (the same browser endpoint, the same token) subscribing
  again updates the profile that holds it, whatever `match` says: one device,
  one subscription.
- `match` is looked up in each of the resource's databases in order; when no
  profile has it, the new profile gets the `match` values too.
- A browser subscription is stored in one canonical JSON form (endpoint,
  then the p256dh and auth keys, nothing else), so the same browser is one
  contact however its script serialised it. Its endpoint must be https (a
  push service never speaks plain HTTP), unless `allow_http_endpoints` (tests).
- The subscriber's own act: cause `form`, status subscribed; the profile's
  source `push`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from herald.domain.errors import DomainError, NotFound, ValidationFailed
from herald.domain.matching import MatchMode, match_key
from herald.domain.profiles import ImportMode
from herald.domain.resources import ResourceState
from herald.domain.subscriptions import TELEGRAM_BOT, Cause
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import CommandContext
from herald.services.catalog import CatalogService
from herald.services.profiles import ImportOptions, ProfileService

_MATCH_MODES = {"email": MatchMode.EMAIL, "phone": MatchMode.PHONE, "phones": MatchMode.PHONE}


@dataclass(frozen=True, slots=True)
class DeviceSubscribed:
    profile_id: str
    database_id: str
    status: str  # created / updated / unchanged


class DeviceSubscriptions:
    def __init__(
        self,
        catalog: CatalogService,
        profiles: ProfileService,
        projection: ProfilesProjection,
        allow_http_endpoints: bool = False,
    ) -> None:
        self.catalog = catalog
        self.profiles = profiles
        self.projection = projection
        self.allow_http_endpoints = allow_http_endpoints

    def subscribe(
        self,
        resource: ResourceState,
        contact: str,
        provider: str | None,
        match: Mapping[str, Any],
        update: Mapping[str, Any],
        device: Mapping[str, Any],
        browser_profile: str | None,
        ip: str | None,
        context: CommandContext,
    ) -> DeviceSubscribed:
        """Subscribe `contact`: with a provider, push (a device token, or a browser subscription from
        `browser_subscription`); without, a Telegram chat id. `ip` (IPv4) is the opt-in's evidence."""
        if resource.settings is None:
            raise NotFound("no such resource", "resource_token")
        channel = "push" if provider is not None else TELEGRAM_BOT
        subscription: dict[str, Any] = {
            "resource_id": resource.resource_id,
            "channel": channel,
            "contact": contact,
        }
        if provider is not None:
            subscription["provider"] = provider
        if device:
            subscription["device"] = dict(device)
        if ip and _is_ipv4(ip):
            subscription["ip"] = ip
        row: dict[str, Any] = {**update, "subscriptions": [subscription]}
        databases = resource.settings.database_ids
        options = ImportOptions(mode=ImportMode.ADD_AND_UPDATE, source="push", cause=Cause.FORM)
        holder = self._holder(databases, row) if provider is not None else None
        if holder is not None:
            return self._write(holder, row, replace(options, match=MatchMode.PUSH), context)
        if match:
            return self._matched(databases, {**match, **row}, match, options, context)
        known = self._browser_profile(browser_profile, databases)
        if known is not None:
            row = {**row, "profile_id": known}
            return self._write(
                self.profiles.state(known).database_id,
                row,
                replace(options, match=MatchMode.PROFILE_ID),
                context,
            )
        return self._write(databases[0], row, replace(options, mode=ImportMode.ADD_ONLY), context)

    def browser_subscription(self, subscription: Mapping[str, Any]) -> str:
        """A browser's PushSubscription (`toJSON()`) as its canonical contact; ValidationFailed if not one."""
        endpoint = subscription.get("endpoint")
        keys = subscription.get("keys")
        if not isinstance(endpoint, str) or not isinstance(keys, Mapping):
            raise ValidationFailed("a push subscription has an endpoint and keys", "subscription")
        parts = urlsplit(endpoint)
        schemes = ("https", "http") if self.allow_http_endpoints else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValidationFailed("the endpoint is the push service's https URL", "subscription.endpoint")
        for name in ("p256dh", "auth"):
            if not isinstance(keys.get(name), str) or not keys[name]:
                path = f"subscription.keys.{name}"
                raise ValidationFailed(f"the subscription's {name} key is missing", path)
        canonical = {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}
        return orjson.dumps(canonical).decode()

    def _holder(self, databases: tuple[str, ...], row: Mapping[str, Any]) -> str | None:
        """The database whose profile already holds this device's subscription."""
        for database_id in databases:
            key = match_key(MatchMode.PUSH, None, row, self.catalog.database(database_id))
            if key is not None and self.projection.resolve(database_id, [key]).get(key):
                return database_id
        return None

    def _matched(
        self,
        databases: tuple[str, ...],
        row: dict[str, Any],
        match: Mapping[str, Any],
        options: ImportOptions,
        context: CommandContext,
    ) -> DeviceSubscribed:
        name = next(iter(match))
        mode = _MATCH_MODES.get(name.lower(), MatchMode.CUSTOM)
        field_name = None if mode in _MATCH_MODES.values() else name
        matched = replace(options, match=mode, field_name=field_name)
        for database_id in databases:
            key = match_key(mode, field_name, row, self.catalog.database(database_id))
            if key is not None and self.projection.resolve(database_id, [key]).get(key):
                return self._write(database_id, row, matched, context)
        return self._write(databases[0], row, matched, context)

    def _browser_profile(self, profile_id: str | None, databases: tuple[str, ...]) -> str | None:
        if not profile_id:
            return None
        state = self.profiles.state(profile_id)
        return profile_id if state.exists and state.database_id in databases else None

    def _write(
        self, database_id: str, row: Mapping[str, Any], options: ImportOptions, context: CommandContext
    ) -> DeviceSubscribed:
        try:
            result = self.profiles.upsert(database_id, row, options, context)
        except DomainError as error:
            raise type(error)(error.reason, _request_path(error.path, row)) from None
        assert result.profile_id is not None
        return DeviceSubscribed(result.profile_id, database_id, result.status)


def _is_ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False


def _request_path(path: str, row: Mapping[str, Any]) -> str:
    """An import row's error path as the subscribe request spells it (`provider`, `device.…`, `update.…`)."""
    inner = path.removeprefix("subscriptions.0.")
    if inner != path:
        return {"token": "token", "contact": "token"}.get(inner, inner)
    name = path.removeprefix("fields.").split(".", 1)[0]
    return f"update.{name}" if name in row else path
