"""API tokens: issued to a user with a role, stored only as a hash, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, ValidationFailed
from herald.domain.events import Event, registry

ROLES = ("admin", "write", "read", "track")


def api_token_stream(token_id: str) -> str:
    return f"apitoken-{token_id}"


@registry.register("ApiTokenIssued")
class ApiTokenIssued(Event):
    token_id: str
    name: str
    role: str
    token_hash: str
    at: datetime


@registry.register("ApiTokenRevoked")
class ApiTokenRevoked(Event):
    token_id: str
    token_hash: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ApiTokenState:
    token_id: str = ""
    token_hash: str = ""
    issued: bool = False
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class IssueApiToken:
    token_id: str
    name: str
    role: str
    token_hash: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RevokeApiToken:
    at: datetime


ApiTokenCommand = IssueApiToken | RevokeApiToken


def decide(command: ApiTokenCommand, state: ApiTokenState) -> list[Event]:
    if isinstance(command, IssueApiToken):
        if state.issued:
            raise AlreadyExists("this token id is taken", "token_id")
        if command.role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}", "role")
        if not command.name.strip():
            raise ValidationFailed("a token needs a name", "name")
        return [
            ApiTokenIssued(
                token_id=command.token_id,
                name=command.name.strip(),
                role=command.role,
                token_hash=command.token_hash,
                at=command.at,
            )
        ]
    if not state.issued:
        raise NotFound("no such token", "token_id")
    if state.revoked:
        return []
    return [ApiTokenRevoked(token_id=state.token_id, token_hash=state.token_hash, at=command.at)]


def evolve(state: ApiTokenState, event: Event) -> ApiTokenState:
    if isinstance(event, ApiTokenIssued):
        return ApiTokenState(token_id=event.token_id, token_hash=event.token_hash, issued=True)
    if isinstance(event, ApiTokenRevoked):
        return ApiTokenState(state.token_id, state.token_hash, issued=True, revoked=True)
    return state


api_token_decider: Decider[ApiTokenCommand, ApiTokenState] = Decider(ApiTokenState(), decide, evolve)
