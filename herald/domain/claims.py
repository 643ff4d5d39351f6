"""Unique values (a profile's email within its database, unique custom fields) as claims.

Uniqueness spans profiles, so no single profile stream can enforce it. Each
unique value gets a tiny claim stream; a profile takes the claim in the same
atomic append that gives it the value, and the store's version check makes
two concurrent takers collide instead of both winning.

A claim names its value by a digest (stream and events alike), so the log holds
no email or custom value in clear that erasing a profile could not reach (its
profile's events seal the value itself). A profile's unique values are named by
a keyed digest the service passes in (`digest`: HMAC-SHA-256 under a key held
outside the log, `infra/log_names.py`), since an unkeyed digest of an email is
checked by anyone holding a guess; values that are no one's personal data
(promo codes, shortcodes, pixel keys) keep the unkeyed SHA-256 (`value_digest`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists
from herald.domain.events import Event, registry


@registry.register("UniqueValueClaimed")
class UniqueValueClaimed(Event):
    database_id: str
    kind: str
    value: str
    profile_id: str


@registry.register("UniqueValueReleased")
class UniqueValueReleased(Event):
    database_id: str
    kind: str
    value: str
    profile_id: str


@dataclass(frozen=True, slots=True)
class ClaimState:
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimValue:
    database_id: str
    kind: str
    value: str
    profile_id: str
    path: str = ""
    digest: str = ""  # the value's name in the claim's events; "" for its unkeyed `value_digest`


@dataclass(frozen=True, slots=True)
class ReleaseValue:
    database_id: str
    kind: str
    value: str
    profile_id: str
    digest: str = ""


ClaimCommand = ClaimValue | ReleaseValue


def value_digest(value: str) -> str:
    """How a claim names a value that is no one's personal data (and how logs written before keyed
    names named every value)."""
    return hashlib.sha256(value.encode()).hexdigest()


def claim_stream(database_id: str, kind: str, value: str) -> str:
    """The stream that holds the claim on one unique value, named by its unkeyed digest."""
    return named_claim_stream(database_id, kind, value_digest(value))


def named_claim_stream(database_id: str, kind: str, digest: str) -> str:
    """The stream that holds the claim on the value `digest` names."""
    return f"unique-{database_id}-{kind}-{digest}"


def decide(command: ClaimCommand, state: ClaimState) -> list[Event]:
    """Claim a free value, or release one's own; a value owned by another profile is refused."""
    fields = dict(
        database_id=command.database_id,
        kind=command.kind,
        value=command.digest or value_digest(command.value),
        profile_id=command.profile_id,
    )
    if isinstance(command, ReleaseValue):
        return [UniqueValueReleased(**fields)] if state.owner == command.profile_id else []
    if state.owner is None:
        return [UniqueValueClaimed(**fields)]
    if state.owner == command.profile_id:
        return []
    raise AlreadyExists(
        f"{command.value!r} is already used by profile {state.owner} in this database",
        command.path or command.kind,
    )


def evolve(state: ClaimState, event: Event) -> ClaimState:
    if isinstance(event, UniqueValueClaimed):
        return ClaimState(owner=event.profile_id)
    if isinstance(event, UniqueValueReleased):
        return ClaimState(owner=None)
    return state


claim_decider: Decider[ClaimCommand, ClaimState] = Decider(ClaimState(), decide, evolve)
