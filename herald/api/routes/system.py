"""Health, processor progress and failures, metrics, and re-driving parked events."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from herald.api.endpoints import Call, Endpoint
from herald.api.metrics import CONTENT_TYPE, metrics_text
from herald.domain.errors import NotFound, ValidationFailed
from herald.processors.runtime import InProcessRuntime


async def health(call: Call) -> dict[str, Any]:
    return {"status": "ok", "log_head": call.herald.store.head_position()}


async def processors(call: Call) -> dict[str, Any]:
    """Every processor's checkpoint and lag, its failures and parked events; the loops' failures."""
    head = call.herald.store.head_position()
    found: dict[str, Any] = {}
    parked: list[dict[str, object]] = []
    for runtime in call.herald.runtimes():
        for s in runtime.status():
            found[s.name] = {
                "position": s.position,
                "lag": head - s.position,
                "parked": s.parked,
                "failures": s.failures_total,
                "failing_at": s.failing_at,
                "attempts": s.attempts,
                "last_error": s.last_error or None,
                "retry_at": s.retry_at.isoformat() if s.retry_at else None,
            }
        parked += [p.to_json() for p in runtime.parked_events()]
    loops = {
        name: {"failures": b.failures_total, "failing": b.failures, "last_error": b.last_error or None}
        for name, b in call.herald.loops.items()
    }
    return {"log_head": head, "processors": found, "parked": parked, "loops": loops}


async def metrics(call: Call) -> Response:
    return Response(metrics_text(call.herald), media_type=CONTENT_TYPE)


def _runtime_of(call: Call, processor: str) -> InProcessRuntime:
    runtime = next((r for r in call.herald.runtimes() if processor in r.names), None)
    if runtime is None:
        raise NotFound(f"no processor {processor!r} runs in this server", "processor")
    return runtime


def _position(call: Call) -> int:
    text = call.path_param("position")
    if not text.isdigit():
        raise ValidationFailed("a log position is a whole number", "position")
    return int(text)


async def parked_event(call: Call) -> dict[str, Any]:
    """One parked event with its whole traceback (admin: a traceback may quote the data)."""
    processor = call.path_param("processor")
    found = _runtime_of(call, processor).parked.get(processor, _position(call))
    if found is None:
        raise NotFound(f"processor {processor!r} has parked no event at {_position(call)}", "position")
    return found.to_json(with_traceback=True)


async def redrive(call: Call) -> dict[str, Any]:
    """Apply a parked event to its processor again, after a fix; 422 with the error if it still fails."""
    processor = call.path_param("processor")
    return _runtime_of(call, processor).redrive(processor, _position(call)).to_json()


P = "/api/v1/processors/{processor}/parked/{position}"
ENDPOINTS = [
    Endpoint(
        "GET", "/api/v1/health", health, "Liveness and the log's head position", "system", role="public"
    ),
    Endpoint(
        "GET",
        "/api/v1/processors",
        processors,
        "Each processor's checkpoint, lag, failures and parked events",
        "system",
        role="read",
    ),
    Endpoint(
        "GET",
        "/api/v1/metrics",
        metrics,
        "Processors and loops in the Prometheus text format",
        "system",
        role="read",
        produces=CONTENT_TYPE,
    ),
    Endpoint("GET", P, parked_event, "A parked event, with its traceback", "system", role="admin"),
    Endpoint(
        "POST", P + "/redrive", redrive, "Apply a parked event to its processor again", "system", role="admin"
    ),
]
