"""One message's identifying fields, as every delivery event of it carries them, and its queued event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from herald.domain.messages import MessageQueued


def message_ref(channel: str, contact: str) -> dict[str, Any]:
    return {
        "message_id": "m1",
        "campaign_id": "c1",
        "template_id": "t1",
        "template_version": 1,
        "profile_id": "p1",
        "database_id": "1",
        "resource_id": "7",
        "channel": channel,
        "contact": contact,
    }


def queued(ref: dict[str, Any], at: datetime) -> MessageQueued:
    return MessageQueued(**ref, run_id="r1", due_at=at, local_day=at.date(), at=at)
