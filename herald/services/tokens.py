"""Issuing and revoking API tokens."""

from __future__ import annotations

import hashlib
import secrets

from herald.domain.api_tokens import IssueApiToken, RevokeApiToken, api_token_decider, api_token_stream
from herald.projections.api_tokens import ApiTokensProjection
from herald.services.aggregates import Aggregates, CommandContext, Outcome


def token_hash(token: str) -> str:
    """Tokens are stored as SHA-256: they are random 192-bit secrets, so no slow KDF is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, aggregates: Aggregates, tokens: ApiTokensProjection) -> None:
        self._aggregates = aggregates
        self._tokens = tokens

    def issue(
        self,
        name: str,
        role: str,
        context: CommandContext,
        user_id: str | None = None,
        roles: tuple[str, ...] | None = None,
        groups: tuple[str, ...] | None = None,
    ) -> tuple[str, str, Outcome]:
        """A new token: (token id, the secret shown once, outcome). Only its hash is stored.

        A user's token (role `user`) carries its user's rights, narrowed to `roles` and `groups`."""
        token_id = self._aggregates.ids.token(8)
        secret = f"hrld_{secrets.token_urlsafe(32)}"
        command = IssueApiToken(
            token_id=token_id,
            name=name,
            role=role,
            token_hash=token_hash(secret),
            at=self._aggregates.clock.now(),
            user_id=user_id,
            roles=roles,
            groups=groups,
        )
        outcome = self._aggregates.execute(api_token_decider, api_token_stream(token_id), command, context)
        return token_id, secret, outcome

    def revoke(self, token_id: str, context: CommandContext) -> Outcome:
        command = RevokeApiToken(at=self._aggregates.clock.now())
        return self._aggregates.execute(api_token_decider, api_token_stream(token_id), command, context)

    def list(self) -> list[dict[str, object]]:
        return self._tokens.list()
