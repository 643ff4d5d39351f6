"""Inbound mail Herald kept without acting on it (stream `inbound-<id>`): unparsed, unmatched or no report.

The id is the first half of the message's SHA-256, so the same message
delivered twice lands on the same stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from herald.domain.events import Event, registry


@registry.register("InboundMailKept")
class InboundMailKept(Event):
    inbound_id: str
    kind: Literal["unparsed", "unmatched", "not_report"]
    reason: str
    size: int
    content_base64: str
    truncated: bool = False
    at: datetime


def inbound_stream(inbound_id: str) -> str:
    return f"inbound-{inbound_id}"
