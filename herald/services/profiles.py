"""Profiles: import (one row or a batch of up to 10,000), edits, status, subscriptions, merge, delete.

A batch is decided row by row against the profiles' current states and
appended in ONE atomic `append_many`: each valid row's events are written,
each invalid row is reported with its field path, and no profile is ever
half-written. Rows of one batch that name the same profile apply in order.

Uniqueness (the profile email and unique custom fields, per database) is
enforced by claim streams (`domain/claims.py`) appended in the same
transaction, so two writers cannot both give one email to two profiles: the
loser's append fails its version check and its batch is decided again.
Non-unique keys (phones, push tokens, subscription emails) are resolved by
the lookup projection plus the keys of profiles this batch already touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from herald.domain import claims, profiles
from herald.domain.databases import DatabaseState
from herald.domain.errors import AlreadyExists, DomainError, NotFound, ValidationFailed
from herald.domain.events import Event
from herald.domain.matching import (
    EMAIL,
    EMAIL_PROFILE,
    PROFILE_ID,
    LookupKey,
    MatchMode,
    entry_contact,
    match_key,
    profile_lookup_keys,
    unique_lookup_keys,
)
from herald.domain.profiles import ImportMode, ImportProfile, ProfileState, import_outcome, profile_stream
from herald.domain.resources import ResourceState
from herald.domain.statuses import Status
from herald.domain.subscriptions import (
    AddSubscription,
    CategoryStatus,
    Cause,
    SubscriptionCommand,
    normalize_contact,
)
from herald.infra.event_store import ANY, StreamAppend, WrongExpectedVersion
from herald.infra.ids import profile_md5_id, profile_xxh_id
from herald.infra.log_names import LogNames
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import Aggregates, CommandContext, Outcome
from herald.services.catalog import CatalogService

MAX_BATCH = 10_000
C = TypeVar("C", bound=StrEnum)
_ATTEMPTS = 5
_SUBSCRIPTION_KEYS = frozenset(
    {
        "resource_id",
        "channel",
        "status",
        "priority",
        "fields",
        "device",
        "categories",
        "ip",
        "provider",
        "email",
        "phone",
        "token",
        "chat_id",
        "contact",
        "email_data",
        "sms_data",
        "push_data",
        "viber_data",
        "whatsapp_data",
        "telegram_bot_data",
    }
)


@dataclass(frozen=True)
class ImportOptions:
    mode: ImportMode = ImportMode.ADD_AND_UPDATE
    match: MatchMode = MatchMode.EMAIL
    field_name: str | None = None
    ignore_empty: bool | frozenset[str] = False
    resubscribe: bool = False
    source: str = "import"
    cause: Cause = Cause.IMPORT


@dataclass
class RowResult:
    index: int
    status: str  # created / updated / unchanged / error
    profile_id: str | None = None
    error: DomainError | None = None  # as raised, its path relative to the row


Along = Callable[[list[RowResult]], Sequence[StreamAppend]]


@dataclass
class _Loaded:
    state: ProfileState
    version: int
    events: list[Event] = field(default_factory=list)


@dataclass
class _Claim:
    state: claims.ClaimState
    version: int
    events: list[Event] = field(default_factory=list)


class _Batch:
    """The working set of one batch attempt: profiles and claims as loaded plus pending events."""

    def __init__(self, service: ProfileService, database: DatabaseState) -> None:
        self.service = service
        self.database = database
        self.unique_fields = database.unique_fields
        self.profiles: dict[str, _Loaded] = {}
        self.claims: dict[str, _Claim] = {}
        self.keys: dict[LookupKey, str] = {}  # keys of profiles this batch touched
        self.resources: dict[str, ResourceState] = {}

    def profile(self, profile_id: str) -> _Loaded:
        if profile_id not in self.profiles:
            loaded = self.service.aggregates.load(profiles.profile_decider, profile_stream(profile_id))
            self.profiles[profile_id] = _Loaded(loaded.state, loaded.version)
        return self.profiles[profile_id]

    def new_profile(self, profile_id: str) -> _Loaded:
        """A profile under an id just drawn: nothing to read (a create's query found nothing, a cache
        entry it would fill evicted a useful one). Its append expects an empty stream, so an id
        that is taken after all fails the append and the batch is decided again with new ids."""
        if profile_id in self.profiles:  # drawn twice in one batch: as `profile` answers
            return self.profiles[profile_id]
        loaded = self.profiles[profile_id] = _Loaded(profiles.profile_decider.initial, 0)
        return loaded

    def claim(self, key: LookupKey) -> _Claim:
        digest = self.service.names.claim_digest(key.value)
        stream = claims.named_claim_stream(self.database.database_id, key.kind, digest)
        if stream not in self.claims:
            loaded = self.service.aggregates.load(claims.claim_decider, stream)
            self.claims[stream] = _Claim(loaded.state, loaded.version)
        return self.claims[stream]

    def resource(self, resource_id: str, path: str) -> ResourceState:
        if resource_id not in self.resources:
            self.resources[resource_id] = self.service.catalog.resource(resource_id, path)
        return self.resources[resource_id]

    def appends(self, context: CommandContext) -> list[StreamAppend]:
        aggregates = self.service.aggregates
        appends = []
        for profile_id, loaded in self.profiles.items():
            if loaded.events:
                stream = profile_stream(profile_id)
                appends.append(
                    StreamAppend(
                        stream, aggregates.new_events(stream, loaded.events, context), loaded.version
                    )
                )
        for stream, claim in self.claims.items():
            if claim.events:
                appends.append(
                    StreamAppend(stream, aggregates.new_events(stream, claim.events, context), claim.version)
                )
        return appends


class ProfileService:
    def __init__(
        self, aggregates: Aggregates, catalog: CatalogService, projection: ProfilesProjection, names: LogNames
    ) -> None:
        self.aggregates = aggregates
        self.catalog = catalog
        self.projection = projection
        self.names = names  # how the claims name unique values (keyed)

    # --- import ---------------------------------------------------------------------------------

    def import_rows(
        self,
        database_id: str,
        rows: Sequence[Any],
        options: ImportOptions,
        context: CommandContext,
        along: Along | None = None,
    ) -> list[RowResult]:
        """Upsert each row; one atomic append for the whole batch; a result per row.

        `along` adds appends of its own to that one transaction, made from the results (a job's
        chunk record); a version conflict on one of its streams is raised, not retried.
        """
        if len(rows) > MAX_BATCH:
            raise ValidationFailed(f"a batch holds at most {MAX_BATCH} rows, not {len(rows)}", "rows")
        database = self.catalog.database(database_id)
        if options.match is MatchMode.CUSTOM:
            match_key(options.match, options.field_name, {}, database)  # refuses a bad field name up front
        return self._batched(
            database,
            lambda batch: [self._row(batch, i, row, options) for i, row in enumerate(rows)],
            context,
            along,
        )

    def _batched(
        self,
        database: DatabaseState,
        decide: Callable[[_Batch], list[RowResult]],
        context: CommandContext,
        along: Along | None,
    ) -> list[RowResult]:
        """Decide on a fresh working set and append it (with `along`'s appends) atomically; on a race
        with another writer, decide again. A conflict on one of `along`'s streams is raised."""
        for _ in range(_ATTEMPTS):
            batch = _Batch(self, database)
            results = decide(batch)
            extra = list(along(results)) if along else []
            try:
                self.aggregates.store.append_many([*batch.appends(context), *extra])
            except WrongExpectedVersion as conflict:
                if any(a.stream == conflict.stream for a in extra):
                    raise
                continue  # another writer moved a profile or a claim: decide the batch again
            return results
        raise WrongExpectedVersion("profiles", ANY, -1)

    def _row(self, batch: _Batch, index: int, row: Any, options: ImportOptions) -> RowResult:
        try:
            if not isinstance(row, Mapping):
                raise ValidationFailed("a row is a JSON object of field values", "")
            return self._import_row(batch, index, row, options)
        except DomainError as error:
            return RowResult(index, "error", error=in_row(error))

    def _import_row(
        self, batch: _Batch, index: int, row: Mapping[str, Any], options: ImportOptions
    ) -> RowResult:
        database = batch.database
        key = match_key(options.match, options.field_name, row, database)
        found = self._resolve(batch, key)
        profile_id = found or self.aggregates.ids.profile_id()
        loaded = batch.profile(profile_id) if found else batch.new_profile(profile_id)
        fields = {k: v for k, v in row.items() if k not in ("subscriptions", "profile_id")}
        command = ImportProfile(
            profile_id=profile_id,
            md5_id=profile_md5_id(profile_id),
            xxh_id=profile_xxh_id(profile_id),
            database=database,
            fields=fields,
            at=self.aggregates.clock.now(),
            mode=options.mode,
            ignore_empty=options.ignore_empty,
            resubscribe=options.resubscribe,
            source=options.source,
            subscriptions=self._subscription_commands(batch, row.get("subscriptions"), options.cause),
        )
        events = profiles.decide(command, loaded.state)
        after = profiles.profile_decider.fold(events, loaded.state)
        self._take(batch, loaded, events, after, row)
        return RowResult(index, str(import_outcome(events)), profile_id)

    def _take(
        self,
        batch: _Batch,
        loaded: _Loaded,
        events: list[Event],
        after: ProfileState,
        given: Mapping[str, Any],
        prefix: str = "",
    ) -> None:
        """Accept a decision into the batch: its claims first (which may refuse it), then its events."""
        for claim, event in self._claims(batch, loaded.state, after, given, prefix):
            claim.events.append(event)
            claim.state = claims.evolve(claim.state, event)
        loaded.events += events
        loaded.state = after
        for lookup in profile_lookup_keys(after, batch.unique_fields):
            batch.keys[lookup] = after.profile_id

    def _resolve(self, batch: _Batch, key: LookupKey | None) -> str | None:
        """The profile a row's key finds: this batch's own first, then claims, then the projection."""
        if key is None:
            return None
        if key in batch.keys:
            return batch.keys[key]
        if key.kind == PROFILE_ID:
            exists = batch.profile(key.value).state.exists
            if not exists:
                raise NotFound(f"no profile {key.value!r}", "profile_id")
            return key.value
        owned_key = LookupKey(EMAIL_PROFILE, key.value) if key.kind in (EMAIL, EMAIL_PROFILE) else key
        if owned_key.kind == EMAIL_PROFILE or owned_key.kind.startswith("field:"):
            owner = batch.claim(owned_key).state.owner
            if owner is not None or key.kind != EMAIL:
                return owner
        found = self.projection.resolve(batch.database.database_id, [key]).get(key, [])
        return found[0] if found else None

    def _claims(
        self, batch: _Batch, before: ProfileState, after: ProfileState, given: Mapping[str, Any], prefix: str
    ) -> list[tuple[_Claim, Event]]:
        """Claim the unique values `after` gained, release those it lost; refuse values others own."""
        db, profile_id = batch.database.database_id, after.profile_id or before.profile_id
        old = unique_lookup_keys(before, batch.unique_fields)
        new = unique_lookup_keys(after, batch.unique_fields)
        decided: list[tuple[_Claim, Event]] = []
        for key in sorted(new - old):
            claim = batch.claim(key)
            path = prefix + _field_path(key, given)
            digest = self.names.claim_digest(key.value)
            command = claims.ClaimValue(db, key.kind, key.value, profile_id, path=path, digest=digest)
            decided += [(claim, e) for e in claims.decide(command, claim.state)]
        for key in sorted(old - new):
            claim = batch.claim(key)
            release = claims.ReleaseValue(
                db, key.kind, key.value, profile_id, self.names.claim_digest(key.value)
            )
            decided += [(claim, e) for e in claims.decide(release, claim.state)]
        return decided

    def _subscription_commands(
        self, batch: _Batch, entries: Any, cause: Cause
    ) -> tuple[SubscriptionCommand, ...]:
        if entries is None:
            return ()
        if not isinstance(entries, list):
            raise ValidationFailed("subscriptions is a list of objects", "subscriptions")
        return tuple(self._subscription(batch, i, e, cause) for i, e in enumerate(entries))

    def _subscription(self, batch: _Batch, index: int, entry: Any, cause: Cause) -> AddSubscription:
        path = f"subscriptions.{index}"
        if not isinstance(entry, Mapping):
            raise ValidationFailed("a subscription is an object", path)
        unknown = sorted(set(entry) - _SUBSCRIPTION_KEYS)
        if unknown:
            raise ValidationFailed(f"unknown subscription key {unknown[0]!r}", f"{path}.{unknown[0]}")
        resource_id = str(entry.get("resource_id") or "")
        if not resource_id:
            raise ValidationFailed("a subscription names its resource", f"{path}.resource_id")
        contact = entry_contact(entry)
        if contact is None:
            raise ValidationFailed(
                "a subscription needs its contact (email, phone or token)", f"{path}.contact"
            )
        channel = str(entry.get("channel") or "")
        return AddSubscription(
            resource_id=resource_id,
            channel=channel,
            # Normalised here so that a bad contact is reported where the row gave it
            # (`email`, `email_data.email`, …), not as the command's `contact`.
            contact=normalize_contact(channel, contact[1], f"{path}.{contact[0]}"),
            provider=entry.get("provider"),
            at=self.aggregates.clock.now(),
            resource=batch.resource(resource_id, f"{path}.resource_id"),
            status=_choice(Status, entry["status"], f"{path}.status") if entry.get("status") else None,
            priority=_priority(entry.get("priority"), f"{path}.priority"),
            fields=_mapping(entry.get("fields"), f"{path}.fields"),
            device=_mapping(entry.get("device"), f"{path}.device"),
            categories={
                k: _choice(CategoryStatus, v, f"{path}.categories.{k}")
                for k, v in _mapping(entry.get("categories"), f"{path}.categories").items()
            },
            ip=entry.get("ip"),
            cause=cause,
        )

    # --- many profiles at once (jobs) ----------------------------------------------------------

    def decide_many(
        self,
        database_id: str,
        profile_ids: Sequence[str],
        commands_for: Callable[[ProfileState], Sequence[Any]],
        context: CommandContext,
        along: Along | None = None,
    ) -> list[RowResult]:
        """Decide each profile's commands (none: skipped) and append every profile's events, their
        claims and `along`'s appends in one transaction; a result per profile, its error if refused.

        Profiles gone or in another database are `skipped`; a refused profile keeps its state.
        """
        database = self.catalog.database(database_id)
        return self._batched(
            database,
            lambda batch: [
                self._decide_one(batch, i, pid, commands_for) for i, pid in enumerate(profile_ids)
            ],
            context,
            along,
        )

    def _decide_one(
        self,
        batch: _Batch,
        index: int,
        profile_id: str,
        commands_for: Callable[[ProfileState], Sequence[Any]],
    ) -> RowResult:
        loaded = batch.profile(profile_id)
        if not loaded.state.exists or loaded.state.database_id != batch.database.database_id:
            return RowResult(index, "skipped", profile_id)
        state, decided = loaded.state, []
        commands = list(commands_for(loaded.state))
        try:
            for command in commands:
                events = profiles.decide(command, state)
                state = profiles.profile_decider.fold(events, state)
                decided += events
            given = {k: v for c in commands for k, v in getattr(c, "fields", {}).items()}
            self._take(batch, loaded, decided, state, given, "fields.")
        except DomainError as error:
            return RowResult(index, "error", profile_id, in_row(error))
        return RowResult(index, "updated" if decided else "unchanged", profile_id)

    # --- single-profile commands -------------------------------------------------------------

    def execute(
        self, profile_id: str, command: Any, context: CommandContext, expected_version: int | None = None
    ) -> Outcome:
        """Run one profile command (status, test flag, tracked data, subscriptions, delete)."""
        return self.aggregates.execute(
            profiles.profile_decider, profile_stream(profile_id), command, context, expected_version
        )

    def state(self, profile_id: str) -> ProfileState:
        state = self.aggregates.load(profiles.profile_decider, profile_stream(profile_id)).state
        if not state.exists:
            raise NotFound(f"no profile {profile_id!r}", "profile_id")
        return state

    def merge(self, source_id: str, target_id: str, context: CommandContext) -> list[Outcome]:
        """Merge `source` into `target`: both streams and the moved claims in one atomic append."""

        def decide(batch: _Batch) -> None:
            source, target = batch.profile(source_id), batch.profile(target_id)
            at = self.aggregates.clock.now()
            away = profiles.decide(profiles.MergeProfileInto(source_id, target.state, at), source.state)
            absorbed = profiles.decide(profiles.AbsorbProfile(target_id, source.state, at), target.state)
            self._take(batch, source, away, profiles.profile_decider.fold(away, source.state), {})
            self._take(batch, target, absorbed, profiles.profile_decider.fold(absorbed, target.state), {})

        return self._commit(target_id, decide, context)

    def delete(self, profile_id: str, context: CommandContext) -> Outcome:
        """Delete a profile, releasing its unique values for other profiles."""

        def decide(batch: _Batch) -> None:
            loaded = batch.profile(profile_id)
            events = profiles.decide(
                profiles.DeleteProfile(profile_id, self.aggregates.clock.now()), loaded.state
            )
            self._take(batch, loaded, events, profiles.profile_decider.fold(events, loaded.state), {})

        return self._commit(profile_id, decide, context)[0]

    def update_fields(
        self,
        profile_id: str,
        fields: Mapping[str, Any],
        context: CommandContext,
        expected_version: int | None = None,
    ) -> Outcome:
        """Change a profile's fields, keeping its unique values' claims in step (one atomic append)."""

        def decide(batch: _Batch) -> None:
            loaded = batch.profile(profile_id)
            command = profiles.UpdateProfile(profile_id, batch.database, fields, self.aggregates.clock.now())
            events = profiles.decide(command, loaded.state)
            self._take(
                batch, loaded, events, profiles.profile_decider.fold(events, loaded.state), fields, "fields."
            )

        return self._commit(profile_id, decide, context, expected_version)[0]

    def _commit(
        self,
        profile_id: str,
        decide: Callable[[_Batch], None],
        context: CommandContext,
        expected_version: int | None = None,
    ) -> list[Outcome]:
        """Decide on a working set of profiles and claims, append it atomically; on a race, decide again."""
        stream = profile_stream(profile_id)
        for _ in range(_ATTEMPTS):
            loaded = self.aggregates.load(profiles.profile_decider, stream)
            if not loaded.state.created:
                raise NotFound(f"no profile {profile_id!r}", "profile_id")
            if expected_version is not None and loaded.version != expected_version:
                raise WrongExpectedVersion(stream, expected_version, loaded.version)
            batch = _Batch(self, self.catalog.database(loaded.state.database_id))
            batch.profiles[profile_id] = _Loaded(loaded.state, loaded.version)
            decide(batch)
            appends = batch.appends(context)
            try:
                results = self.aggregates.store.append_many(appends)
            except WrongExpectedVersion:
                if expected_version is not None:
                    raise
                continue
            outcomes = [
                Outcome(a.stream, tuple(e.event_id for e in a.events), r.stream_version)
                for a, r in zip(appends, results, strict=True)
                if a.stream.startswith("profile-")
            ]
            return outcomes or [Outcome(stream, (), loaded.version)]
        raise WrongExpectedVersion(stream, ANY, -1)

    def create(self, database_id: str, row: Mapping[str, Any], context: CommandContext) -> RowResult:
        """Create one profile (add-only import of one row); errors raise instead of being reported."""
        options = ImportOptions(
            mode=ImportMode.ADD_ONLY, match=MatchMode.EMAIL_PROFILE, source="api", cause=Cause.API
        )
        return self._single(database_id, row, options, context, must_create=True)

    def upsert(
        self, database_id: str, row: Mapping[str, Any], options: ImportOptions, context: CommandContext
    ) -> RowResult:
        return self._single(database_id, row, options, context, must_create=False)

    def _single(
        self,
        database_id: str,
        row: Mapping[str, Any],
        options: ImportOptions,
        context: CommandContext,
        must_create: bool,
    ) -> RowResult:
        result = self.import_rows(database_id, [row], options, context)[0]
        if result.error:
            raise result.error
        if must_create and result.status != "created":
            raise AlreadyExists(f"profile {result.profile_id} has this email already", "email")
        return result


def in_row(error: DomainError) -> DomainError:
    """The error with its path as a flat row (field values beside `subscriptions`) spells it.

    The domain nests field values under `fields.`; a row gives them at its top level.
    """
    if not error.path.startswith("fields."):
        return error
    return type(error)(error.reason, error.path.removeprefix("fields."))


def _field_path(key: LookupKey, row: Mapping[str, Any]) -> str:
    name = "email" if key.kind == EMAIL_PROFILE else key.kind.removeprefix("field:")
    for given in row:
        if given.casefold().removeprefix("fields.") == name.casefold():
            return given
    return name


def _choice(kind: type[C], value: Any, path: str) -> C:
    try:
        return kind(value)
    except ValueError:
        raise ValidationFailed(f"{value!r} is not one of {', '.join(kind)}", path) from None


def _priority(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed("priority is a whole number ≥ 0 (0 is the highest)", path)
    return value


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed("expected an object", path)
    return value
