"""Endpoints as data: method, path, handler, request models and the role they need.

The route table is a plain list (read it top to bottom in `api/app.py`), and
the OpenAPI document is generated from the same list, so it cannot drift from
the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from herald.api.access import PUBLIC, Access, derive
from herald.api.errors import HttpError, handle_exception
from herald.api.principal import ANONYMOUS, Principal
from herald.api.responses import json_response
from herald.services.aggregates import CommandContext

if TYPE_CHECKING:
    from herald.api.wiring import Herald

ROLES = ("read", "write", "track", "admin")
# What each role may do: a write token may also read, a track token only posts tracking data.
_GRANTS = {
    "admin": {"admin", "write", "read", "track"},
    "write": {"write", "read", "track"},
    "read": {"read"},
    "track": {"track"},
}


@dataclass
class Call:
    """One request as a handler sees it: validated body and query, the actor, the app."""

    request: Request
    herald: Herald
    body: Any
    query: Any
    context: CommandContext
    principal: Principal = ANONYMOUS

    def path_param(self, name: str) -> str:
        return str(self.request.path_params[name])


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    role: str = "write"  # "public" = no token (trackers, health)
    status: int = 200
    raw_body: bool = False  # the handler reads the body itself (batches validate row by row)
    bytes_body: str | None = None  # a body of bytes the handler reads whole: its media type (documented)
    # which object's rights the request needs (`api/access.py`); derived from the path unless declared
    access: Access | None = None

    def __post_init__(self) -> None:
        if self.access is None:
            object.__setattr__(self, "access", derive(self.method, self.path, self.role))

    def route(self, herald: Herald) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return await self._serve(request, herald)
            except Exception as exc:  # mapped in one place; unknown errors propagate
                return await handle_exception(request, exc)

        return Route(self.path, endpoint, methods=[self.method], name=f"{self.method} {self.path}")

    def authorize(self, request: Request, herald: Herald) -> Principal:
        """Who asks, if they may: a service token by its role, a user by their rights on the object."""
        if self.role == PUBLIC:
            return ANONYMOUS
        principal = herald.auth.authenticate(request)
        if not principal.is_user:
            if not grants(principal.role, self.role):
                role, needed = principal.role, self.role
                raise HttpError(403, f"this token's role {role!r} does not allow {needed!r}", "authorization")
            return principal
        if self.access is None:
            raise HttpError(403, f"{self.method} {self.path} declares no access rule", "authorization")
        herald.access_check.check(principal, self.access, request.path_params)
        return principal

    async def _serve(self, request: Request, herald: Herald) -> Response:
        principal = self.authorize(request, herald)
        body = None
        if self.body is not None and not self.raw_body:
            raw = await request.body()
            if not raw:
                raise HttpError(422, "a JSON body is required", "body")
            body = self.body.model_validate_json(raw)
        query = self.query.model_validate(dict(request.query_params)) if self.query else None
        context = CommandContext(
            actor=principal.actor,
            source="api",
            correlation_id=request.headers.get("x-correlation-id"),
            request_id=request.headers.get("idempotency-key"),
            extra=_request_metadata(request, principal),
        )
        result = await self.handler(Call(request, herald, body, query, context, principal))
        if isinstance(result, Response):
            return result
        if principal.is_user and self.status == 201 and isinstance(result, dict):
            herald.access_check.place_created(principal, self.access, result, request, context)
        return json_response(result, self.status)


def _request_metadata(request: Request, principal: Principal) -> dict[str, Any]:
    """What the audit log shows of a request besides its actor: the client's address and token."""
    extra: dict[str, Any] = {}
    if request.client is not None:
        extra["ip"] = request.client.host
    if principal.token_id is not None:
        extra["token_id"] = principal.token_id
    return extra


def grants(role: str, needed: str) -> bool:
    return needed in _GRANTS.get(role, set())
