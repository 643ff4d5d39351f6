"""Bearer-token authentication: the bootstrap admin token from config, and issued tokens by hash."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from herald.api.endpoints import grants
from herald.api.errors import HttpError
from herald.api.principal import Principal
from herald.domain.api_tokens import api_token_stream
from herald.infra.event_store import EventStore
from herald.projections.api_tokens import ApiTokensProjection


def token_hash(token: str) -> str:
    """Tokens are stored as SHA-256: they are random 192-bit secrets, so no slow KDF is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(self, admin_token: str | None, tokens: ApiTokensProjection, store: EventStore) -> None:
        self._admin_token = admin_token
        self._tokens = tokens
        self._store = store

    def authorize(self, request: Request, needed: str) -> Principal:
        """Who the bearer token is, when it has the `needed` role."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "send 'Authorization: Bearer <token>'", "authorization")
        if self._admin_token and hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Principal("admin", "admin")
        found = self._tokens.role_of(token_hash(token))
        if found is None:
            raise HttpError(401, "unknown or revoked token", "authorization")
        token_id, role = found
        # The projection may lag a revocation by a moment; the token's own stream does not.
        if self._store.stream_version(api_token_stream(token_id)) > 1:
            raise HttpError(401, "unknown or revoked token", "authorization")
        if not grants(role, needed):
            raise HttpError(403, f"this token's role {role!r} does not allow {needed!r}", "authorization")
        return Principal(f"token:{token_id}", role)
