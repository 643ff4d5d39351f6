"""API tokens: issue (the secret is shown once), list, revoke. Admin only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from herald.api.endpoints import Call, Endpoint


class IssueTokenBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "write", "read", "track", "user"] = Field(
        "user", description="a service token's role, or 'user' for a token acting with its user's rights"
    )
    user_id: str | None = Field(None, description="the user the token belongs to (role 'user')")
    roles: list[str] | None = Field(None, description="only these of the user's roles (default all)")
    groups: list[str] | None = Field(None, description="only these of the user's groups (default all)")


async def issue(call: Call) -> dict[str, Any]:
    body: IssueTokenBody = call.body
    role = "user" if body.user_id is not None else body.role
    if body.user_id is not None:
        call.herald.users.user(body.user_id)  # 404 for an unknown user
    token_id, secret, outcome = call.herald.tokens.issue(
        body.name,
        role,
        call.context,
        body.user_id,
        tuple(body.roles) if body.roles is not None else None,
        tuple(body.groups) if body.groups is not None else None,
    )
    return {"token_id": token_id, "token": secret, "role": role, **outcome.to_json()}


async def list_tokens(call: Call) -> dict[str, Any]:
    return {"tokens": call.herald.tokens.list()}


async def revoke(call: Call) -> dict[str, Any]:
    return call.herald.tokens.revoke(call.path_param("token_id"), call.context).to_json()


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/tokens",
        issue,
        "Issue an API token",
        "tokens",
        body=IssueTokenBody,
        role="admin",
        status=201,
    ),
    Endpoint(
        "GET", "/api/v1/tokens", list_tokens, "List API tokens (never their secrets)", "tokens", role="admin"
    ),
    Endpoint("DELETE", "/api/v1/tokens/{token_id}", revoke, "Revoke an API token", "tokens", role="admin"),
]
