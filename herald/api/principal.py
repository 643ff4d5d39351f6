"""Who a request is: the actor its events carry, the token's role, and the rights its access check asks."""

from __future__ import annotations

from dataclasses import dataclass

from herald.domain.access import ACTIONS, MAIN, Rights, Role

_EVERYTHING = {kind: frozenset(actions) for kind, actions in ACTIONS.items()}
_READING = {kind: frozenset(a for a in actions if a in ("view", "read")) for kind, actions in ACTIONS.items()}

# Service tokens (no user) keep their built-in roles, as rights over every object in main.
SERVICE_RIGHTS = {
    "admin": Rights(master=True),
    "write": Rights(groups=frozenset({MAIN}), roles=(Role(frozenset({MAIN}), _EVERYTHING),)),
    "read": Rights(groups=frozenset({MAIN}), roles=(Role(frozenset({MAIN}), _READING),)),
    "track": Rights(),
}


@dataclass(frozen=True, slots=True)
class Principal:
    actor: str  # what events' metadata name: "admin", "token:<id>", "user:<id>", "anonymous"
    role: str  # a service token's role, "user" for a user's token, "public" without a token
    rights: Rights
    user_id: str | None = None
    token_id: str | None = None

    @property
    def is_user(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal("anonymous", "public", Rights())
