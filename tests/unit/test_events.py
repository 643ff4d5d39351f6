"""The event registry: type names, schema versions, upcasting of old payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from herald.domain.events import Event, EventRegistry, UnknownEventType


def make_registry() -> EventRegistry:
    registry = EventRegistry()

    @registry.register("NameGiven", version=3)
    class NameGiven(Event):
        first_name: str
        last_name: str
        at: datetime

    @registry.upcaster("NameGiven", from_version=1)
    def split_name(data: dict) -> dict:
        first, _, last = data.pop("name").partition(" ")
        return {**data, "first": first, "last": last}

    @registry.upcaster("NameGiven", from_version=2)
    def rename(data: dict) -> dict:
        return {"first_name": data["first"], "last_name": data["last"], "at": data["at"]}

    return registry


def test_a_current_payload_decodes_as_is() -> None:
    registry = make_registry()
    event = registry.decode(
        "NameGiven", 3, {"first_name": "Ann", "last_name": "Lee", "at": "2026-01-01T00:00:00Z"}
    )
    assert (event.first_name, event.last_name) == ("Ann", "Lee")  # type: ignore[attr-defined]
    assert event.at == datetime(2026, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    assert type(event).type_name == "NameGiven" and type(event).schema_version == 3


@pytest.mark.parametrize(
    ("version", "data"),
    [
        (1, {"name": "Ann Lee", "at": "2026-01-01T00:00:00Z"}),
        (2, {"first": "Ann", "last": "Lee", "at": "2026-01-01T00:00:00Z"}),
    ],
    ids=["v1 upcast twice", "v2 upcast once"],
)
def test_old_versions_are_upcast_in_order(version: int, data: dict) -> None:
    event = make_registry().decode("NameGiven", version, data)
    assert event.to_data() == {"first_name": "Ann", "last_name": "Lee", "at": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("version", "data"),
    [
        (3, {"first_name": "Ann", "last_name": "Lee", "at": "2026-01-01T00:00:00Z"}),
        (1, {"name": "Ann Lee", "at": "2026-01-01T00:00:00Z"}),
    ],
    ids=["current", "upcast"],
)
def test_a_payload_given_as_its_stored_json_decodes_as_the_dict_does(version: int, data: dict) -> None:
    decode = make_registry().decode
    assert decode("NameGiven", version, orjson.dumps(data)) == decode("NameGiven", version, data)


def test_stored_json_is_validated_as_the_dict_is() -> None:
    with pytest.raises(ValidationError):
        make_registry().decode("NameGiven", 3, b'{"first_name": "Ann", "at": "2026-01-01T00:00:00Z"}')


def test_upcasting_never_changes_the_stored_payload() -> None:
    stored = {"name": "Ann Lee", "at": "2026-01-01T00:00:00Z"}
    make_registry().decode("NameGiven", 1, stored)
    assert stored == {"name": "Ann Lee", "at": "2026-01-01T00:00:00Z"}


def test_a_missing_upcaster_is_an_error() -> None:
    registry = EventRegistry()

    @registry.register("Renamed", version=2)
    class Renamed(Event):
        name: str

    with pytest.raises(ValueError, match="no upcaster for Renamed v1"):
        registry.decode("Renamed", 1, {"name": "x"})


def test_unknown_types_and_double_registration_are_refused() -> None:
    registry = make_registry()
    with pytest.raises(UnknownEventType):
        registry.decode("Nope", 1, {})
    with pytest.raises(ValueError, match="registered twice"):

        @registry.register("NameGiven")
        class Other(Event):
            pass


def test_events_are_frozen_and_refuse_unknown_fields() -> None:
    registry = make_registry()
    cls = registry.event_class("NameGiven")
    event = cls(first_name="A", last_name="B", at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(Exception, match="frozen"):
        event.first_name = "C"  # type: ignore[misc]
    with pytest.raises(Exception, match="Extra inputs"):
        cls(first_name="A", last_name="B", at=datetime(2026, 1, 1, tzinfo=UTC), nickname="x")
