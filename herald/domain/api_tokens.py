"""API tokens: stored only as a hash, revocable; a service token has a role, a user's token its user.

A token issued to a user (role `user`) acts with that user's rights as they are
at each request, narrowed to the roles and groups the token names (the guide's
token form has "Роли" and "Группа"); a deactivated or deleted user's tokens stop
working. A token from a login expires (`expires_at`). Service tokens keep the
built-in roles: `admin` (master rights), `write`, `read`, `track` (tracking only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, ValidationFailed
from herald.domain.events import Event, registry

ROLES = ("admin", "write", "read", "track", "user")


def api_token_stream(token_id: str) -> str:
    return f"apitoken-{token_id}"


@registry.register("ApiTokenIssued")
class ApiTokenIssued(Event):
    token_id: str
    name: str
    role: str
    token_hash: str
    at: datetime
    user_id: str | None = None
    roles: tuple[str, ...] | None = None  # the user's roles it keeps (None: all of them)
    groups: tuple[str, ...] | None = None  # the user's groups it keeps (None: all of them)
    expires_at: datetime | None = None


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
    user_id: str | None = None
    roles: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    expires_at: datetime | None = None


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
        if (command.role == "user") != (command.user_id is not None):
            raise ValidationFailed("a user's token has role 'user', a service token another role", "role")
        return [
            ApiTokenIssued(
                token_id=command.token_id,
                name=command.name.strip(),
                role=command.role,
                token_hash=command.token_hash,
                at=command.at,
                user_id=command.user_id,
                roles=command.roles,
                groups=command.groups,
                expires_at=command.expires_at,
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
