"""JSON responses rendered with orjson."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from herald.infra.serialization import dumps


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json", headers=headers)
