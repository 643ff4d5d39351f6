"""The Starlette application: the route table, read top to bottom."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from herald.api.endpoints import Endpoint
from herald.api.errors import error_body, internal_error
from herald.api.openapi import OPENAPI_PATH, openapi_document
from herald.api.responses import json_response
from herald.api.routes import (
    audit,
    bulk,
    campaigns,
    catalog,
    events,
    imports,
    inbound,
    loyalty,
    messages,
    pixels,
    profiles,
    push,
    reports,
    scenarios,
    scheduled_imports,
    scoring,
    segments,
    senders,
    stop_lists,
    system,
    telegram,
    templates,
    tokens,
    trackers,
    tracking,
    users,
)
from herald.api.security_headers import SecurityHeaders
from herald.api.wiring import Herald

VERSION = "0.1.0"


def endpoints() -> list[Endpoint]:
    """Every endpoint of the API, grouped as the OpenAPI tags are."""
    return [
        *system.ENDPOINTS,
        *tokens.ENDPOINTS,
        *users.ENDPOINTS,
        *audit.ENDPOINTS,
        *catalog.ENDPOINTS,
        *stop_lists.ENDPOINTS,
        *profiles.ENDPOINTS,
        *imports.ENDPOINTS,
        *scheduled_imports.ENDPOINTS,
        *bulk.ENDPOINTS,
        *tracking.ENDPOINTS,
        *templates.ENDPOINTS,
        *campaigns.ENDPOINTS,
        *segments.ENDPOINTS,
        *loyalty.ENDPOINTS,
        *pixels.ENDPOINTS,
        *scoring.ENDPOINTS,
        *scenarios.ENDPOINTS,
        *senders.ENDPOINTS,
        *events.ENDPOINTS,
        *trackers.ENDPOINTS,
        *push.ENDPOINTS,
        *telegram.ENDPOINTS,
        *inbound.ENDPOINTS,
        *messages.ENDPOINTS,
        *reports.ENDPOINTS,
    ]


def openapi() -> dict[str, object]:
    return openapi_document(endpoints(), VERSION)


def create_app(herald: Herald, run_processors: bool = True) -> Starlette:
    """The app over a wired Herald; with `run_processors` the in-process runtime runs alongside."""
    table: Sequence[Endpoint] = endpoints()
    document = openapi_document(table, VERSION)

    async def serve_openapi(request: Request) -> Response:
        return json_response(document)

    async def not_found(request: Request, exc: Exception) -> Response:
        return json_response(error_body(404, f"no route {request.method} {request.url.path}"), 404)

    async def unexpected(request: Request, exc: Exception) -> Response:
        return internal_error(request, exc)  # outside the endpoints (their own errors are answered there)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if run_processors:
            herald.start_processors()
        try:
            yield
        finally:
            await herald.stop_processors()

    app = Starlette(
        routes=[e.route(herald) for e in table],
        exception_handlers={404: not_found, Exception: unexpected},
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
    )
    app.add_route(OPENAPI_PATH, serve_openapi, methods=["GET"])
    app.state.herald = herald
    return app
