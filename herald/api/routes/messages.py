"""Messages: one message's story, and the unsubscribe calls a resource's own page makes.

`GET /api/v1/messages/{id}` shows the message's delivery state and its events.
`POST /api/v1/messages/{id}/unsubscribe` and `.../cancel-unsubscribe` are what
a resource's unsubscribe page calls (confirm and delayed modes; the guide's
`message_unsub`, with the message id the page got as `{send_message_id}`): the
body carries the resource token (`rtoken`), which must be the message's
resource's, so a page of one resource cannot unsubscribe from another.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from herald.api.endpoints import Call, Endpoint
from herald.domain.errors import NotFound


class PageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rtoken: str


def _checked(call: Call) -> str:
    """The message id, after checking the body's resource token against the message's resource."""
    message_id = call.path_param("message_id")
    ref = call.herald.deliveries.message(message_id).state.ref
    assert ref is not None
    if call.herald.catalog.resource(ref.resource_id).token != call.body.rtoken:
        raise NotFound(f"no message {message_id!r} for this resource token", "rtoken")
    return message_id


async def get_message(call: Call) -> dict[str, Any]:
    message_id = call.path_param("message_id")
    state = call.herald.deliveries.message(message_id).state
    events = call.herald.store.read_stream(f"message-{message_id}")
    return {
        "message_id": message_id,
        "status": state.status,
        "attempts": state.attempts,
        **(state.ref.model_dump(mode="json") if state.ref else {}),
        "events": [{"type": e.type, "at": e.occurred_at.isoformat(), "data": e.data} for e in events],
    }


async def confirm_unsubscribe(call: Call) -> dict[str, Any]:
    message_id = _checked(call)
    at = call.herald.clock.now()
    return call.herald.deliveries.unsubscribe(message_id, "page", "", "", at).to_json()


async def cancel_unsubscribe(call: Call) -> dict[str, Any]:
    message_id = _checked(call)
    return call.herald.deliveries.cancel_unsubscribe(message_id, call.herald.clock.now()).to_json()


M = "/api/v1/messages/{message_id}"
ENDPOINTS = [
    Endpoint("GET", M, get_message, "A message: its delivery state and every event", "messages", role="read"),
    Endpoint(
        "POST",
        M + "/unsubscribe",
        confirm_unsubscribe,
        "Confirm an unsubscribe (the resource's page)",
        "messages",
        body=PageBody,
        role="track",
    ),
    Endpoint(
        "POST",
        M + "/cancel-unsubscribe",
        cancel_unsubscribe,
        "Cancel a delayed unsubscribe (the resource's page)",
        "messages",
        body=PageBody,
        role="track",
    ),
]
