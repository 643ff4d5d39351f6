"""Goals from pixels and apps, and anonymous goals carried to the profile once it is known.

A goal ("Цель") is recorded as a tracked event (`tracking.ActivityTracked`)
whose properties name it: `goal` (the goal's name; empty for a pixel visit
without goals), `pixel_id`, `value` (signed), and, from Herald's own
trackers, `source` (`pixel_js`, `pixel_img`, `pixel_redirect`, `api`,
`scenario_node`) and `fires_triggers` (false when the pixel's re-fire block
holds, see `pixels.py`). `tracking.goal_of` reads a goal from any such event.

A goal reached by an anonymous visitor (before a cookie, a tracked link or a
`match` told who it is), or by a profile later merged into another, is
carried to the profile with a `GoalAttributed` on that profile's activity
stream. It names the goal's first event (`goal_event_id`): the goals report
keys the goal by it (so the visit moves from "anonymous" to the profile
rather than counting twice) and segment evaluators add it to the profile.

Decisions where the guide is silent:
- A visitor's anonymous goals go to the first profile it is identified as
  (the carried event's id derives from the goal alone); a merge carries the
  merged-away profile's goals on to the profile it was merged into.
- Goal names are 1–200 characters, values finite with |value| <= 10^12; a
  pixel hit names at most `MAX_GOALS` goals, all with one value; a goal
  registration by API names up to `MAX_GOALS` (goal, value) pairs.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from herald.domain.errors import ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.tracking import MAX_EVENT_NAME, GoalReached

MAX_GOALS = 20
MAX_VALUE = 1e12
PIXEL_VISIT = "Pixel visit"
GoalSource = Literal["pixel_js", "pixel_img", "pixel_redirect", "api", "scenario_node"]


@registry.register("GoalAttributed")
class GoalAttributed(Event):
    """A goal reached before its visitor was known (or by a merged-away profile), now the profile's."""

    database_id: str
    profile_id: str
    goal_event_id: str  # the event that recorded the goal first
    from_anonymous_id: str | None = None
    from_profile_id: str | None = None
    goal: str
    pixel_id: str
    value: float
    referrer: str = ""
    browser: str = ""
    os: str = ""
    country: str = ""
    city: str = ""
    reached_at: datetime
    at: datetime

    def reached(self) -> GoalReached:
        return GoalReached(
            self.goal, self.pixel_id, self.value, self.referrer, self.browser, self.os, self.country,
            self.city,
        )  # fmt: skip


def attributed(
    goal: GoalReached,
    goal_event_id: str,
    reached_at: datetime,
    database_id: str,
    profile_id: str,
    at: datetime,
    from_anonymous_id: str | None = None,
    from_profile_id: str | None = None,
) -> GoalAttributed:
    """The event that gives `goal` (first recorded by `goal_event_id`) to `profile_id`."""
    return GoalAttributed(
        database_id=database_id,
        profile_id=profile_id,
        goal_event_id=goal_event_id,
        from_anonymous_id=from_anonymous_id,
        from_profile_id=from_profile_id,
        goal=goal.goal,
        pixel_id=goal.pixel_id,
        value=goal.value,
        referrer=goal.referrer,
        browser=goal.browser,
        os=goal.os,
        country=goal.country,
        city=goal.city,
        reached_at=reached_at,
        at=at,
    )


def goal_name(name: str, path: str) -> str:
    """A goal's name, trimmed; refused when empty or too long."""
    text = name.strip()
    if not text or len(text) > MAX_EVENT_NAME:
        raise ValidationFailed(f"a goal's name is 1-{MAX_EVENT_NAME} characters", path)
    return text


def goal_value(value: Any, path: str) -> float:
    """A goal's value: a finite number within ±10^12 (empty: 0)."""
    if value is None or value == "":
        return 0.0
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or abs(number) > MAX_VALUE:
        raise ValidationFailed("the value is a number between -10^12 and 10^12", path)
    return number


def goal_properties(
    goal: str, pixel_id: str, value: float, source: GoalSource, fires_triggers: bool = True, **extra: Any
) -> dict[str, Any]:
    """The tracked event's properties that make it a goal (what `tracking.goal_of` reads)."""
    return {
        "goal": goal,
        "pixel_id": pixel_id,
        "value": value,
        "source": source,
        "fires_triggers": fires_triggers,
        **extra,
    }


def fires_triggers(properties: dict[str, Any]) -> bool:
    """Whether a goal's event may fire triggers and scenarios (the pixel's re-fire block did not hold)."""
    return properties.get("fires_triggers", True) is not False
