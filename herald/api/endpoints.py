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
from herald.api.request_body import (
    JSON_MEDIA_TYPES,
    check_json_limits,
    check_media_type,
    parse_json,
    read_body,
)
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

    @property
    def role(self) -> str:
        """The token's role ("user" for a user's token); "public" on routes that take none."""
        return self.principal.role

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
    # the handler gets the parsed JSON, unvalidated (batches validate row by row; `body`, if given,
    # only documents it)
    raw_body: bool = False
    bytes_body: str | None = None  # the handler gets the body's bytes: its media type (documented)
    # media types taken besides `bytes_body`, or besides JSON's for a JSON body; None takes any
    accepts: tuple[str, ...] | None = ()
    max_body: int | None = None  # bytes; None: the settings' `max_body_bytes`
    # the handler reads the body as a stream itself (uploads larger than memory); `bytes_body` documents it
    streams_body: bool = False
    # which object's rights the request needs (`api/access.py`); derived from the path unless declared
    access: Access | None = None
    produces: str | None = None  # the success response's media type when it is not JSON (documented)

    def __post_init__(self) -> None:
        if self.access is None:
            object.__setattr__(self, "access", derive(self.method, self.path, self.role))

    @property
    def takes_body(self) -> bool:
        if self.streams_body:
            return False
        return self.body is not None or self.bytes_body is not None or self.raw_body

    def body_limit(self, settings_limit: int) -> int:
        return self.max_body if self.max_body is not None else settings_limit

    async def _body(self, request: Request, herald: Herald) -> Any:
        """The body as the handler takes it: a validated model, parsed JSON, or bytes."""
        settings_limit = herald.settings.max_body_bytes
        if self.bytes_body is not None:
            if self.accepts is not None:
                check_media_type(request, (self.bytes_body, *self.accepts))
            return await read_body(request, self.body_limit(settings_limit))
        if self.accepts is not None:
            check_media_type(request, (*JSON_MEDIA_TYPES, *self.accepts))
        raw = await read_body(request, self.body_limit(settings_limit))
        document = parse_json(raw)
        if self.raw_body:
            return document
        assert self.body is not None
        # validated from the text, not the parsed document: JSON-mode validation is what the models
        # (and their error messages) are written for
        return self.body.model_validate_json(raw)

    def route(self, herald: Herald) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return await self._serve(request, herald)
            except Exception as exc:  # mapped in one place; an unknown error is a JSON 500 with its id
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
        query = self.query.model_validate(dict(request.query_params)) if self.query else None
        if query is not None:
            check_json_limits(query.model_dump())  # an int past 64 bits would overflow SQLite
        body = await self._body(request, herald) if self.takes_body else None
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
        if principal.is_user and self.method == "GET" and isinstance(result, dict):
            result = herald.access_check.visible(principal, self.access, result)
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
