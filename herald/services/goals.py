"""Goal registrations from apps, the API and scenarios: several (goal, value) pairs in one call.

Unlike a pixel's codes, which give every goal of a hit one value, a
registration names each goal with its own value (the guide: "пары
цель+значение"). A registration names its pixel (goals are organised by
pixel), its profile by one match field in the pixel's database (or the
`database_id` given, for a pixel of all databases), or an anonymous id, and
a client id: each pair's event id derives from (pixel, client id, place), so
sending the same registration again records nothing new and says so
(`duplicate`). Without a client id every call records anew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.domain.errors import DomainError, ValidationFailed
from herald.domain.goals import MAX_GOALS, GoalSource, goal_name, goal_properties, goal_value
from herald.services.aggregates import CommandContext
from herald.services.pixels import PixelService
from herald.services.tracking import TrackingService, TrackInput


@dataclass(frozen=True, slots=True)
class GoalPair:
    goal: str
    value: float = 0.0


class GoalService:
    def __init__(self, pixels: PixelService, tracking: TrackingService) -> None:
        self.pixels = pixels
        self.tracking = tracking

    def register(
        self,
        pixel_id: str,
        pairs: Sequence[GoalPair],
        context: CommandContext,
        profile: Mapping[str, Any] | None = None,
        anonymous_id: str | None = None,
        database_id: str | None = None,
        client_id: str | None = None,
        at: datetime | None = None,
        source: GoalSource = "api",
        event_context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Record each pair as a goal of the pixel for the profile (or anonymous visitor); a result
        per pair."""
        pixel = self.pixels.pixel(pixel_id)
        assert pixel.settings is not None
        own = pixel.settings.database_id
        database = own or database_id
        if database is None:
            raise ValidationFailed(
                "the pixel is of all databases: name the profile's database_id", "database_id"
            )
        if own and database_id and database_id != own:
            raise ValidationFailed(f"pixel {pixel_id} is of database {own}", "database_id")
        if not 1 <= len(pairs) <= MAX_GOALS:
            raise ValidationFailed(f"register 1 to {MAX_GOALS} goals at once", "goals")
        inputs = []
        for i, pair in enumerate(pairs):
            name = goal_name(pair.goal, f"goals.{i}.goal")
            value = goal_value(pair.value, f"goals.{i}.value")
            inputs.append(
                TrackInput(
                    name=name,
                    at=at,
                    profile=profile,
                    anonymous_id=anonymous_id,
                    properties=goal_properties(name, pixel_id, value, source),
                    context=event_context,
                    event_id=f"goal:{pixel_id}:{client_id}:{i}" if client_id else None,
                )
            )
        results = self.tracking.track(database, inputs, context)
        failed = next((r["error"] for r in results if r["status"] == "error"), None)
        if isinstance(failed, DomainError):  # every pair names the same profile: one error refuses all
            raise failed
        return [{**r, "goal": i.name} for r, i in zip(results, inputs, strict=True)]
