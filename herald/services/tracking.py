"""Tracked events from sites and apps: a batch of up to 10,000, durable on return, resends no-ops.

Each event names its profile by one match field (`email`, `phone`,
`profile_id`, or a unique custom field) or by an anonymous id. Its event id
is derived from the client's event id (`uuid5`), so a resend of the same
event is dropped by the store; events without a client id are always new.
A row that names no known profile and no anonymous id is reported, not
guessed at (a row whose match field finds nobody but that has an anonymous
id stays with that visitor; an unknown `profile_id` is always an error); the
rest of the batch is written in one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from herald.domain.contacts import email_key, normalize_email
from herald.domain.databases import DatabaseState
from herald.domain.errors import DomainError, NotFound, ValidationFailed
from herald.domain.matching import EMAIL, EMAIL_PROFILE, PROFILE_ID, LookupKey, MatchMode, match_key
from herald.domain.profiles import profile_decider, profile_stream
from herald.domain.tracking import (
    ActivityTracked,
    AnonymousIdLinked,
    activity_payload,
    activity_stream,
    anonymous_stream,
)
from herald.infra.event_store import NewEvent, StreamAppend
from herald.infra.ids import deterministic_id, deterministic_ids
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import Aggregates, CommandContext
from herald.services.catalog import CatalogService
from herald.services.profiles import in_row

MAX_BATCH = 10_000
_MODES = {
    "email": MatchMode.EMAIL,
    "phone": MatchMode.PHONE,
    "phones": MatchMode.PHONE,
    "profile_id": MatchMode.PROFILE_ID,
}


class TrackedEvent(Protocol):
    """One tracked event as the API validated its shape (a `TrackInput`, or the API's wire struct)."""

    @property
    def name(self) -> str: ...
    @property
    def at(self) -> datetime | None: ...
    @property
    def profile(self) -> Mapping[str, Any] | None: ...
    @property
    def anonymous_id(self) -> str | None: ...
    @property
    def properties(self) -> Mapping[str, Any] | None: ...
    @property
    def context(self) -> Mapping[str, Any] | None: ...
    @property
    def event_id(self) -> str | None: ...


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


class TrackingService:
    def __init__(
        self, aggregates: Aggregates, catalog: CatalogService, projection: ProfilesProjection
    ) -> None:
        self.aggregates = aggregates
        self.catalog = catalog
        self.projection = projection

    def track(
        self, database_id: str, events: Sequence[TrackedEvent | DomainError], context: CommandContext
    ) -> list[dict[str, Any]]:
        """Store each valid event in its profile's (or anonymous visitor's) activity stream.

        A result per event: accepted, duplicate (already stored), or error with
        the DomainError, its path relative to the event (the caller locates it).
        """
        if len(events) > MAX_BATCH:
            raise ValidationFailed(f"a batch holds at most {MAX_BATCH} events, not {len(events)}", "events")
        database = self.catalog.database(database_id)
        keys = self._keys(database, events)
        lookups = [k for k in keys if isinstance(k, LookupKey) and k.kind != PROFILE_ID]
        # An email is first the profile's own (`email_profile`), then any subscription's.
        owned = {k: (EMAIL_PROFILE, k.value) for k in lookups if k.kind == EMAIL}  # tuples: a key each
        found = self.projection.resolve(database_id, [owned.get(k, k) for k in lookups])
        unowned = [k for k, owner in owned.items() if owner not in found]
        if unowned:
            found.update(self.projection.resolve(database_id, unowned))
        found.update(self._named_profiles(database_id, keys))
        anonymous = [e.anonymous_id for e in events if not isinstance(e, DomainError) and e.anonymous_id]
        linked = self.projection.linked_profiles(database_id, anonymous) if anonymous else {}
        results: list[dict[str, Any]] = []
        streams: dict[str, list[NewEvent]] = {}
        now = self.aggregates.clock.now()
        meta = context.metadata()
        tracked_id = deterministic_ids("tracked", database_id)
        head = self.aggregates.store.head_position()
        placed: list[tuple[int, str, int]] = []
        in_batch: set[UUID] = set()  # a client event id sent twice in one batch is stored once
        # Each distinct time formatted once (most share `now`); keyed with the offset too, since
        # 10:00+01:00 equals 09:00+00:00 but is written differently.
        times: dict[tuple[datetime, Any], str] = {}
        for index, (event, key) in enumerate(zip(events, keys, strict=True)):
            try:
                if isinstance(event, DomainError):
                    raise event
                if isinstance(key, DomainError):
                    raise key
                profile_id = self._profile_of(database_id, key, found, event.anonymous_id, linked)
                new = self._new_event(database_id, profile_id, event, now, times, meta, tracked_id)
            except DomainError as error:
                results.append({"index": index, "status": "error", "error": error})
                continue
            stream = activity_stream(profile_id) if profile_id else anonymous_stream(event.anonymous_id or "")
            repeated = new.event_id in in_batch
            if not repeated:
                in_batch.add(new.event_id)
                bucket = streams.setdefault(stream, [])
                placed.append((index, stream, len(bucket)))
                bucket.append(new)
            results.append(
                {
                    "index": index,
                    "status": "duplicate" if repeated else "accepted",
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

    def _keys(self, database: DatabaseState, events: Sequence[TrackedEvent | DomainError]) -> list[Any]:
        keys: list[LookupKey | DomainError | None] = []
        seen: dict[tuple[str, Any], LookupKey | DomainError] = {}  # a batch names one profile many times
        for event in events:
            if isinstance(event, DomainError) or not event.profile:
                keys.append(None)
                continue
            selector = _selector(event.profile)
            if selector is None or selector not in seen:
                try:
                    key: LookupKey | DomainError = selector_key(database, event.profile)
                except DomainError as error:
                    key = in_row(error).at("profile")
                if selector is not None:
                    seen[selector] = key
            else:
                key = seen[selector]
            keys.append(key)
        return keys

    def _named_profiles(self, database_id: str, keys: Sequence[Any]) -> dict[LookupKey, list[str]]:
        """The profile ids the batch names that exist in the database, each checked once.

        Read from the streams, not the cards: a profile created a moment ago is trackable at once.
        """
        named = {k for k in keys if isinstance(k, LookupKey) and k.kind == PROFILE_ID}
        live = {}
        for key in named:
            state = self.aggregates.load(profile_decider, profile_stream(key.value)).state
            if state.exists and state.database_id == database_id:
                live[key] = [key.value]
        return live

    def _profile_of(
        self,
        database_id: str,
        key: LookupKey | None,
        found: Mapping[tuple[str, str], list[str]],
        anonymous_id: str | None,
        linked: Mapping[str, str],
    ) -> str | None:
        """The event's profile; None keeps it under its anonymous id."""
        visitor = linked.get(anonymous_id) if anonymous_id else None
        if key is None:
            return visitor
        if key.kind == PROFILE_ID:
            if key not in found:
                raise NotFound(f"no profile {key.value!r} in database {database_id!r}", "profile.profile_id")
            return key.value
        owner = found.get((EMAIL_PROFILE, key.value)) if key.kind == EMAIL else None
        profiles = owner or found.get(key)
        if not profiles and anonymous_id:
            return visitor  # not known yet: the visitor keeps it until an identify links them
        if not profiles:
            raise NotFound(
                f"no profile has {key.kind} {key.value!r}; identify it first or send an anonymous_id",
                "profile",
            )
        return profiles[0]

    def _new_event(
        self,
        database_id: str,
        profile_id: str | None,
        event: TrackedEvent,
        now: datetime,
        times: dict[tuple[datetime, Any], str],
        meta: dict[str, Any],
        tracked_id: Callable[[object], UUID],
    ) -> NewEvent:
        if profile_id is None and not event.anonymous_id:
            raise ValidationFailed("name the profile (by a match field) or give an anonymous_id", "profile")
        given = event.at
        at = _aware(given) if given else now
        moment = (at, at.tzinfo)
        at_text = times.get(moment)
        if at_text is None:
            at_text = times[moment] = at.isoformat()
        payload = activity_payload(
            database_id=database_id,
            profile_id=profile_id,
            anonymous_id=event.anonymous_id,
            name=event.name,
            properties=dict(event.properties or {}),
            context=dict(event.context or {}),
            client_event_id=event.event_id,
            at=at_text,
        )
        event_id = tracked_id(event.event_id) if event.event_id else self.aggregates.ids.uuid()
        return NewEvent(
            event_id, ActivityTracked.type_name, payload, at, ActivityTracked.schema_version, meta
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


def _aware(at: datetime) -> datetime:
    """A time without an offset is taken as UTC, as profile datetime fields are."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _selector(profile: Mapping[str, Any]) -> tuple[str, Any] | None:
    """A hashable form of a one-field profile selector, to resolve it once per batch."""
    if len(profile) != 1:
        return None
    ((name, value),) = profile.items()
    return (name, value) if isinstance(value, str | int) else None


def selector_key(database: DatabaseState, profile: Mapping[str, Any]) -> LookupKey:
    """The key a one-field selector (`{"email": ...}`, `{"profile_id": ...}`, a unique field) names."""
    if len(profile) != 1:
        raise ValidationFailed('name the profile by exactly one match field, e.g. {"email": …}', "")
    ((name, value),) = profile.items()
    if name == "email" and isinstance(value, str):
        # The commonest selector, without the general path's field lookups and row (the two agree:
        # `tests/unit/test_tracking.py`); anything it refuses, the general path words the error for.
        with contextlib.suppress(ValidationFailed):
            return LookupKey(EMAIL, email_key(normalize_email(value)))
    mode = _MODES.get(name.casefold(), MatchMode.CUSTOM)
    row = {"profile_id": value} if mode is MatchMode.PROFILE_ID else {name: value}
    try:
        key = match_key(mode, name if mode is MatchMode.CUSTOM else None, row, database)
    except DomainError as error:
        # A custom match field that is unknown or not unique is the fault of the name the event gave.
        raise (type(error)(error.reason, name) if error.path == "field_name" else error) from None
    if key is None:
        raise ValidationFailed("the match value is empty", name)
    return key
