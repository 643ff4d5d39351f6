"""Bearer-token authentication: the bootstrap admin token, service tokens and users' tokens, by hash."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from herald.api.errors import HttpError
from herald.api.principal import SERVICE_RIGHTS, Principal
from herald.domain.access import Rights
from herald.domain.api_tokens import api_token_stream
from herald.infra.clock import Clock
from herald.infra.event_store import EventStore
from herald.projections.access import AccessProjection, expired
from herald.projections.api_tokens import ApiTokensProjection
from herald.services.tokens import token_hash


class Authenticator:
    def __init__(
        self,
        admin_token: str | None,
        tokens: ApiTokensProjection,
        store: EventStore,
        access: AccessProjection,
        clock: Clock,
    ) -> None:
        self._admin_token = admin_token
        self._tokens = tokens
        self._store = store
        self._access = access
        self._clock = clock

    def authenticate(self, request: Request) -> Principal:
        """Who the bearer token is: the admin, a service token with its role, or a user with their rights."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "send 'Authorization: Bearer <token>'", "authorization")
        if self._admin_token and hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Principal("admin", "admin", Rights(master=True))
        hashed = token_hash(token)
        found = self._tokens.role_of(hashed)
        if found is None:
            raise HttpError(401, "unknown or revoked token", "authorization")
        token_id, role = found
        # The projection may lag a revocation by a moment; the token's own stream does not.
        if self._store.stream_version(api_token_stream(token_id)) > 1:
            raise HttpError(401, "unknown or revoked token", "authorization")
        if role != "user":
            return Principal(f"token:{token_id}", role, SERVICE_RIGHTS[role], token_id=token_id)
        return self._user(hashed, token_id)

    def _user(self, hashed: str, token_id: str) -> Principal:
        binding = self._access.token_binding(hashed)
        if binding is None:
            raise HttpError(401, "unknown or revoked token", "authorization")
        _, user_id, roles, groups, expires_at = binding
        if expired(expires_at, self._clock.now()):
            raise HttpError(401, "the token has expired: log in again", "authorization")
        rights = self._access.rights(user_id, roles, groups)
        if rights is None:
            raise HttpError(401, "the token's user is deleted or not active", "authorization")
        return Principal(f"user:{user_id}", "user", rights, user_id=user_id, token_id=token_id)
