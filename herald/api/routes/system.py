"""Health and processor progress."""

from __future__ import annotations

from typing import Any

from herald.api.endpoints import Call, Endpoint


async def health(call: Call) -> dict[str, Any]:
    return {"status": "ok", "log_head": call.herald.store.head_position()}


async def processors(call: Call) -> dict[str, Any]:
    head = call.herald.store.head_position()
    positions = call.herald.runtime.positions()
    return {
        "log_head": head,
        "processors": {n: {"position": p, "lag": head - p} for n, p in positions.items()},
    }


ENDPOINTS = [
    Endpoint(
        "GET", "/api/v1/health", health, "Liveness and the log's head position", "system", role="public"
    ),
    Endpoint(
        "GET", "/api/v1/processors", processors, "Each processor's checkpoint and lag", "system", role="read"
    ),
]
