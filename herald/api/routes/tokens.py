"""API tokens: issue (the secret is shown once), list, revoke. Admin only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from herald.api.endpoints import Call, Endpoint


class IssueTokenBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "write", "read", "track"]


async def issue(call: Call) -> dict[str, Any]:
    token_id, secret, outcome = call.herald.tokens.issue(call.body.name, call.body.role, call.context)
    return {"token_id": token_id, "token": secret, "role": call.body.role, **outcome.to_json()}


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
