"""Errors mapped to HTTP statuses, in one place."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from herald.api.responses import json_response
from herald.domain.errors import AlreadyExists, DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.templates import TemplateInvalid
from herald.domain.templating import TemplateSyntaxError
from herald.infra.event_store import WrongExpectedVersion
from herald.infra.failures import describe

log = logging.getLogger(__name__)


class HttpError(Exception):
    """An error the API raises itself (auth, limits, unknown routes)."""

    def __init__(self, status: int, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.path = path


# An error echoes what it refused; a value a megabyte long is cut in the middle to this many
# characters, keeping both ends (the start of the value and the reason after it).
MAX_ECHO_CHARS = 500


def clipped(text: str) -> str:
    """`text` cut in its middle when longer than `MAX_ECHO_CHARS`, saying how much was left out."""
    if len(text) <= MAX_ECHO_CHARS:
        return text
    keep = MAX_ECHO_CHARS // 2
    return f"{text[:keep]}…({len(text) - 2 * keep:,} characters left out)…{text[-keep:]}"


_DOMAIN_STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 422,
    RuleViolated: 422,
    NotFound: 404,
    AlreadyExists: 409,
}


def error_body(status: int, reason: str, path: str = "", **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"reason": clipped(reason)}
    if path:
        detail["path"] = clipped(path)
    return {"error": {"status": status, **detail, **extra}}


def row_error_json(error: DomainError, prefix: str) -> dict[str, Any]:
    """A batch row's error as its result shows it: the status its kind maps to, the path under `prefix`."""
    located = error.at(prefix)
    return {"status": domain_status(error), "path": clipped(located.path), "reason": clipped(located.reason)}


def pydantic_errors(error: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Each pydantic error as {path, reason}, the path dotted like `rows.3.email` ("" for the whole)."""
    items = []
    for e in error.errors(include_url=False):
        path = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        items.append({"path": clipped(path), "reason": clipped(e["msg"])})
    return items


def _syntax_error_json(error: TemplateSyntaxError) -> dict[str, Any]:
    """A template syntax error: where (path, line, column) and what was expected."""
    return {"path": error.path, "line": error.line, "column": error.column, "reason": clipped(error.message)}


def domain_status(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in _DOMAIN_STATUS:
            return _DOMAIN_STATUS[cls]
    return 422


async def handle_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ValidationError):
        # an error about the whole body (not an object, say) names `body`
        errors = [{**e, "path": e["path"] or "body"} for e in pydantic_errors(exc)]
        first = errors[0] if errors else {"path": "body", "reason": "invalid request"}
        return json_response(error_body(422, first["reason"], first["path"], errors=errors), 422)
    if isinstance(exc, TemplateInvalid):
        errors = [_syntax_error_json(e) for e in exc.errors]
        first = errors[0]
        position = {"line": first["line"], "column": first["column"]}
        body = error_body(422, exc.reason, exc.path, **position, errors=errors)
        return json_response(body, 422)
    if isinstance(exc, DomainError):
        status = domain_status(exc)
        return json_response(error_body(status, exc.reason, exc.path), status)
    if isinstance(exc, WrongExpectedVersion):
        body = error_body(409, str(exc), "expected_version", actual_version=exc.actual)
        return json_response(body, 409)
    if isinstance(exc, HttpError):
        # RFC 7235/6750: a 401 names the scheme to authenticate with.
        headers = {"WWW-Authenticate": 'Bearer realm="herald"'} if exc.status == 401 else None
        return json_response(error_body(exc.status, exc.reason, exc.path), exc.status, headers)
    return internal_error(request, exc)


def internal_error(request: Request, exc: BaseException) -> Response:
    """An error nothing expected: a JSON 500 naming an error id, the same id in the log line with the
    traceback. Answered, not re-raised, so the server keeps the client's keep-alive connection."""
    error_id = secrets.token_hex(8)
    log.error(
        "error %s answering %s %s: %s",
        error_id,
        request.method,
        request.url.path,
        describe(exc, where=True),
        exc_info=exc,
    )
    reason = f"an unexpected error: the server's log has it under error id {error_id}"
    return json_response(error_body(500, reason, error_id=error_id), 500)
