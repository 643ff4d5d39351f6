"""Reading the log: the global order and one stream (an admin's right).

Events are shown as the code reads them: upcast to their type's current schema
version, so what an old version held and a newer one dropped (secrets stored
in clear before they were sealed) is never served. The raw log shows every
profile's data and every message's recipient, so reading it takes the admin
role; read tokens have the read models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from herald.api.endpoints import Call, Endpoint
from herald.domain.events import UnknownEventType, registry
from herald.infra.event_store import RecordedEvent


class LogQuery(BaseModel):
    after: int = Field(0, ge=0, description="return events after this global position")
    limit: int = Field(100, ge=1, le=10_000)


class StreamQuery(BaseModel):
    from_version: int = Field(1, ge=1)
    limit: int = Field(1000, ge=1, le=10_000)


def event_json(e: RecordedEvent) -> dict[str, Any]:
    """The envelope as the API shows it, its data upcast to the type's current schema version."""
    try:
        schema_version = registry.event_class(e.type).schema_version
        data = registry.upcast(e.type, e.schema_version, e.data)
    except UnknownEventType:  # a type this build does not know (a newer one's): shown as stored
        schema_version, data = e.schema_version, e.data
    return {
        "event_id": str(e.event_id),
        "stream": e.stream,
        "version": e.version,
        "position": e.position,
        "type": e.type,
        "schema_version": schema_version,
        "occurred_at": e.occurred_at.isoformat(),
        "recorded_at": e.recorded_at.isoformat(),
        "data": data,
        "metadata": e.metadata,
    }


async def read_log(call: Call) -> dict[str, Any]:
    events = list(call.herald.store.read_all(call.query.after + 1, limit=call.query.limit))
    return {
        "events": [event_json(e) for e in events],
        "next_after": events[-1].position if events else call.query.after,
        "log_head": call.herald.store.head_position(),
    }


async def read_stream(call: Call) -> dict[str, Any]:
    stream = call.path_param("stream")
    events = call.herald.store.read_stream(stream, call.query.from_version)[: call.query.limit]
    return {
        "stream": stream,
        "version": call.herald.store.stream_version(stream),
        "events": [event_json(e) for e in events],
    }


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/events",
        read_log,
        "Read the global event log in order",
        "events",
        query=LogQuery,
        role="admin",
    ),
    Endpoint(
        "GET",
        "/api/v1/streams/{stream}",
        read_stream,
        "Read one stream",
        "events",
        query=StreamQuery,
        role="admin",
    ),
]
