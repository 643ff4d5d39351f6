"""Tracked events: what customers do on sites and in apps, posted by trackers.

A tracked event belongs to a profile (found by a match key) or, before the
visitor is known, to an anonymous id. Known profiles' events go to the
profile's activity stream, which the profile's history merges with its own
stream; anonymous events wait in the anonymous stream until an `identify`
links that anonymous id to a profile. Activity lives apart from the profile
stream so that loading a profile to decide a command never folds its clicks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from herald.domain.events import Event, registry

MAX_EVENT_NAME = 200


def activity_stream(profile_id: str) -> str:
    return f"activity-{profile_id}"


def anonymous_stream(anonymous_id: str) -> str:
    return f"anonymous-{anonymous_id}"


@registry.register("ActivityTracked")
class ActivityTracked(Event):
    """A named action with properties, at the time it happened on the customer's side."""

    database_id: str
    profile_id: str | None = None
    anonymous_id: str | None = None
    name: str = Field(min_length=1, max_length=MAX_EVENT_NAME)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)  # ip, user agent, page, library
    client_event_id: str | None = None
    at: datetime


@dataclass(frozen=True, slots=True)
class GoalReached:
    """A tracked event read as a goal (it names a `goal` or a `pixel_id`): reports and segments read it so."""

    goal: str
    pixel_id: str
    value: float  # the goal's profit, may be negative; 0 when absent or not a finite number
    referrer: str
    browser: str
    os: str
    country: str
    city: str


GOAL_MARKS = (b'"goal"', b'"pixel_id"')
"""What the stored JSON of an `ActivityTracked` that may record a goal contains (orjson never
escapes a key's ASCII): one without either is no goal, so a reader need not decode it."""


def goal_of(tracked: ActivityTracked) -> GoalReached | None:
    """The goal `tracked` records, or None for an ordinary tracked action."""
    goal = tracked.properties.get("goal")
    pixel = tracked.properties.get("pixel_id")
    if goal is None and pixel is None:
        return None
    context = tracked.context
    page = _mapping(context.get("page"))
    location = _mapping(context.get("location"))
    return GoalReached(
        goal=_text(goal),
        pixel_id=_text(pixel),
        value=_number(tracked.properties.get("value")),
        referrer=_text(page.get("referrer", context.get("referrer"))),
        browser=_text(context.get("browser")),
        os=_text(context.get("os")),
        country=_text(location.get("country", context.get("country"))),
        city=_text(location.get("city", context.get("city"))),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    try:
        number = float(value) if isinstance(value, int | float | str) else 0.0
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def activity_payload(
    *,
    database_id: str,
    name: str,
    at: str,
    profile_id: str | None = None,
    anonymous_id: str | None = None,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """The stored payload of an `ActivityTracked` whose parts the caller has already validated.

    Ingestion builds a hundred thousand of these a second; going through the
    model would validate again what the API's request model just checked.
    `at` is the time as `datetime.isoformat()` writes it: a batch's events mostly
    share one time, and formatting an aware datetime costs more than the rest of
    this function. `tests/unit/test_tracking.py` proves the payload decodes to the
    same event.
    """
    payload: dict[str, Any] = {
        "database_id": database_id,
        "name": name,
        "properties": properties or {},
        "context": context or {},
        "at": at,
    }
    if profile_id is not None:
        payload["profile_id"] = profile_id
    if anonymous_id is not None:
        payload["anonymous_id"] = anonymous_id
    if client_event_id is not None:
        payload["client_event_id"] = client_event_id
    return payload


@registry.register("AnonymousIdLinked")
class AnonymousIdLinked(Event):
    """An `identify` told us who an anonymous visitor is."""

    database_id: str
    profile_id: str
    anonymous_id: str
    at: datetime
