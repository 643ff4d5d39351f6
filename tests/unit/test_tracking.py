"""The fast payload of a tracked event decodes to the same event the model would make."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.domain.databases import CreateDatabase, DatabaseState, database_decider
from herald.domain.errors import ValidationFailed
from herald.domain.events import registry
from herald.domain.matching import MatchMode, match_key
from herald.domain.tracking import ActivityTracked, activity_payload
from herald.services.tracking import selector_key

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


def _database() -> DatabaseState:
    command = CreateDatabase("db1", "Clients", AT)
    return database_decider.fold(database_decider.decide(command, database_decider.initial))


@pytest.mark.parametrize(
    "value",
    [
        "ann@example.org",
        "  Ann.Lee+x@Example.ORG ",
        "ANN@EXAMPLE.ORG",
        "not-an-email",
        "",
        "   ",
        "a@b",
        7,
        None,
    ],
)
def test_an_email_selector_names_the_key_the_import_match_rules_give(value: object) -> None:
    """`selector_key` reads `{"email": ...}` by a shortcut; it must agree with `match_key` or fail alike."""
    database = _database()
    try:
        expected: object = match_key(MatchMode.EMAIL, None, {"email": value}, database)
    except ValidationFailed as error:
        expected = (error.reason, error.path)
    try:
        got: object = selector_key(database, {"email": value})
    except ValidationFailed as error:
        got = (error.reason, error.path)
    if expected is None:  # nothing to match by: the selector says so
        assert got == ("the match value is empty", "email")
    else:
        assert got == expected
