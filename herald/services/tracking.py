"""Tracked events from sites and apps: a batch of up to 10,000, durable on return, resends no-ops.

Each event names its profile by one match field (`email`, `phone`,
`profile_id`, or a unique custom field) or by an anonymous id. Its event id
is derived from the client's event id (`uuid5`), so a resend of the same
event is dropped by the store; events without a client id are always new.
A row that names no known profile and no anonymous id is reported, not
guessed at; the rest of the batch is written in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.domain.databases import DatabaseState
from herald.domain.errors import DomainError, NotFound, ValidationFailed
from herald.domain.matching import PROFILE_ID, LookupKey, MatchMode, match_key
from herald.domain.tracking import ActivityTracked, AnonymousIdLinked, activity_stream, anonymous_stream
from herald.infra.event_store import NewEvent, StreamAppend
from herald.infra.ids import deterministic_id
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import Aggregates, CommandContext
from herald.services.catalog import CatalogService

MAX_BATCH = 10_000
_MODES = {"email": MatchMode.EMAIL, "phone": MatchMode.PHONE, "profile_id": MatchMode.PROFILE_ID}


@dataclass(frozen=True)
class TrackInput:
    """One tracked event as the API validated its shape."""

    name: str
    at: datetime | None = None
    profile: Mapping[str, Any] | None = None  # {match field: value}, exactly one
    anonymous_id: str | None = None
    properties: Mapping[str, Any] | None = None
    context: Mapping[str, Any] | None = None
    event_id: str | None = None


def tracked_event_id(database_id: str, client_event_id: str) -> str:
    return str(deterministic_id("tracked", database_id, client_event_id))


class TrackingService:
    def __init__(
        self, aggregates: Aggregates, catalog: CatalogService, projection: ProfilesProjection
    ) -> None:
        self.aggregates = aggregates
        self.catalog = catalog
        self.projection = projection

    def track(
        self, database_id: str, events: Sequence[TrackInput | DomainError], context: CommandContext
    ) -> list[dict[str, Any]]:
        """Store each valid event in its profile's (or anonymous visitor's) activity stream."""
        if len(events) > MAX_BATCH:
            raise ValidationFailed(f"a batch holds at most {MAX_BATCH} events, not {len(events)}", "events")
        database = self.catalog.database(database_id)
        keys = self._keys(database, events)
        found = self.projection.resolve(
            database_id, [k for k in keys if k is not None and k.kind != PROFILE_ID]
        )
        anonymous = [e.anonymous_id for e in events if isinstance(e, TrackInput) and e.anonymous_id]
        linked = self.projection.linked_profiles(database_id, anonymous) if anonymous else {}
        results: list[dict[str, Any]] = []
        streams: dict[str, list[NewEvent]] = {}
        now = self.aggregates.clock.now()
        meta = context.metadata()
        head = self.aggregates.store.head_position()
        placed: list[tuple[int, str, int]] = []
        for index, (event, key) in enumerate(zip(events, keys, strict=True)):
            try:
                if isinstance(event, DomainError):
                    raise event
                if isinstance(key, DomainError):
                    raise key
                profile_id = self._profile_of(key, found, linked.get(event.anonymous_id or ""))
                new = self._new_event(database_id, profile_id, event, now, meta)
            except DomainError as error:
                located = error.at(f"events.{index}")
                results.append(
                    {
                        "index": index,
                        "status": "error",
                        "error": {"path": located.path, "reason": located.reason},
                    }
                )
                continue
            stream = activity_stream(profile_id) if profile_id else anonymous_stream(event.anonymous_id or "")
            bucket = streams.setdefault(stream, [])
            placed.append((index, stream, len(bucket)))
            bucket.append(new)
            results.append(
                {
                    "index": index,
                    "status": "accepted",
                    "event_id": str(new.event_id),
                    **({"profile_id": profile_id} if profile_id else {"anonymous_id": event.anonymous_id}),
                }
            )
        if streams:
            appended = self.aggregates.store.append_many([StreamAppend(s, evs) for s, evs in streams.items()])
            positions = {s: r.positions for s, r in zip(streams, appended, strict=True)}
            for index, stream, ordinal in placed:
                if positions[stream][ordinal] <= head:  # the store already had it: a resend
                    results[index]["status"] = "duplicate"
        return results

    def _keys(self, database: DatabaseState, events: Sequence[TrackInput | DomainError]) -> list[Any]:
        keys: list[LookupKey | DomainError | None] = []
        for event in events:
            if isinstance(event, DomainError) or not event.profile:
                keys.append(None)
                continue
            try:
                keys.append(_key(database, event.profile))
            except DomainError as error:
                keys.append(error.at("profile"))
        return keys

    def _profile_of(
        self, key: LookupKey | None, found: Mapping[LookupKey, list[str]], linked: str | None
    ) -> str | None:
        if key is None:
            return linked
        if key.kind == PROFILE_ID:
            card = self.projection.card(key.value)
            if card is None or card["deleted"] or card["merged_into"]:
                raise NotFound(f"no profile {key.value!r}", "profile.profile_id")
            return key.value
        profiles = found.get(key)
        if not profiles:
            raise NotFound(
                f"no profile has {key.kind} {key.value!r}; identify it first or send an anonymous_id",
                "profile",
            )
        return profiles[0]

    def _new_event(
        self, database_id: str, profile_id: str | None, event: TrackInput, now: datetime, meta: dict[str, Any]
    ) -> NewEvent:
        if profile_id is None and not event.anonymous_id:
            raise ValidationFailed("name the profile (by a match field) or give an anonymous_id", "profile")
        tracked = ActivityTracked(
            database_id=database_id,
            profile_id=profile_id,
            anonymous_id=event.anonymous_id,
            name=event.name,
            properties=dict(event.properties or {}),
            context=dict(event.context or {}),
            client_event_id=event.event_id,
            at=event.at or now,
        )
        event_id = (
            deterministic_id("tracked", database_id, event.event_id)
            if event.event_id
            else self.aggregates.ids.uuid()
        )
        return NewEvent(
            event_id,
            ActivityTracked.type_name,
            tracked.to_data(),
            tracked.at,
            ActivityTracked.schema_version,
            meta,
        )

    def link_anonymous(
        self, database_id: str, profile_id: str, anonymous_id: str, context: CommandContext
    ) -> None:
        """Record that an anonymous visitor is this profile (an `identify` with both ids)."""
        linked = AnonymousIdLinked(
            database_id=database_id,
            profile_id=profile_id,
            anonymous_id=anonymous_id,
            at=self.aggregates.clock.now(),
        )
        event_id = deterministic_id("anonymous-link", database_id, anonymous_id, profile_id)
        new = NewEvent(
            event_id, linked.type_name, linked.to_data(), linked.at, linked.schema_version, context.metadata()
        )
        self.aggregates.store.append(activity_stream(profile_id), [new])


def _key(database: DatabaseState, profile: Mapping[str, Any]) -> LookupKey:
    if len(profile) != 1:
        raise ValidationFailed('name the profile by exactly one match field, e.g. {"email": …}', "")
    ((name, value),) = profile.items()
    mode = _MODES.get(name.casefold(), MatchMode.CUSTOM)
    key = match_key(
        mode,
        None if mode in _MODES.values() and mode is not MatchMode.CUSTOM else name,
        {name: value},
        database,
    )
    if key is None:
        raise ValidationFailed("the match value is empty", name)
    return key
