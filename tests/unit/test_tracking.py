"""The fast payload of a tracked event decodes to the same event the model would make."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.domain.events import registry
from herald.domain.tracking import ActivityTracked, activity_payload

AT = datetime(2026, 3, 2, 9, 30, 15, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    "parts",
    [
        {"database_id": "1", "name": "Viewed", "at": AT, "profile_id": "p1"},
        {
            "database_id": "1",
            "name": "Viewed",
            "at": AT,
            "anonymous_id": "a1",
            "client_event_id": "e-9",
            "properties": {"sku": "A-1", "price": 9.5, "tags": ["x"]},
            "context": {"ip": "10.0.0.1"},
        },
    ],
    ids=["known profile", "anonymous with everything"],
)
def test_the_payload_is_what_the_model_stores(parts: dict) -> None:
    payload = activity_payload(**{**parts, "at": parts["at"].isoformat()})
    assert registry.decode("ActivityTracked", 1, payload) == ActivityTracked(**parts)
