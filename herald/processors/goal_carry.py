"""Carries goals to the profile they turn out to belong to (`domain/goals.GoalAttributed`).

- `AnonymousIdLinked` (a cookie, a tracked link, a `match` or an `identify`
  said who an anonymous visitor is): every goal in the visitor's anonymous
  stream goes to that profile. The carried event's id derives from the goal
  alone, so a visitor later identified as someone else does not take its old
  goals along twice: they stay with the first profile.
- `ProfileMergedAway`: the merged-away profile's goals (its own and those
  carried to it) go to the profile it was merged into.

Each carried goal is a `GoalAttributed` on the profile's activity stream,
with an id derived from the goal's first event, so a redelivered link or
merge appends nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from uuid import UUID

from herald.domain.events import registry
from herald.domain.goals import GoalAttributed, attributed
from herald.domain.profiles import ProfileMergedAway
from herald.domain.tracking import (
    ActivityTracked,
    AnonymousIdLinked,
    activity_stream,
    anonymous_stream,
    goal_of,
)
from herald.infra.event_store import EventFilter, EventStore, RecordedEvent
from herald.infra.ids import deterministic_id
from herald.processors.runtime import Emission, Reaction

NAME = "goal-carry"


class GoalCarry:
    name = NAME
    consumes = EventFilter(frozenset({"AnonymousIdLinked", "ProfileMergedAway"}))

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type == "AnonymousIdLinked":
            linked = registry.decode(event.type, event.schema_version, event.data)
            assert isinstance(linked, AnonymousIdLinked)
            source = self.store.read_stream(anonymous_stream(linked.anonymous_id))
            carried = self._carried(source, linked.database_id, linked.profile_id, linked.at)
            update = {"from_anonymous_id": linked.anonymous_id}
            return [
                _emission(g.model_copy(update=update), deterministic_id(NAME, g.goal_event_id))
                for g in carried
            ]
        if event.type == "ProfileMergedAway":
            away = registry.decode(event.type, event.schema_version, event.data)
            assert isinstance(away, ProfileMergedAway)
            source = self.store.read_stream(activity_stream(away.profile_id))
            carried = self._carried(source, away.database_id, away.target_profile_id, away.at)
            update = {"from_profile_id": away.profile_id}
            target = away.target_profile_id
            return [
                _emission(g.model_copy(update=update), deterministic_id(NAME, g.goal_event_id, target))
                for g in carried
            ]
        return []

    def _carried(
        self, events: Iterable[RecordedEvent], database_id: str, profile_id: str, at: datetime
    ) -> list[GoalAttributed]:
        carried: list[GoalAttributed] = []
        for recorded in events:
            if recorded.type == "GoalAttributed":
                before = registry.decode(recorded.type, recorded.schema_version, recorded.data)
                assert isinstance(before, GoalAttributed)
                carried.append(
                    before.model_copy(update={"database_id": database_id, "profile_id": profile_id, "at": at})
                )
            elif recorded.type == "ActivityTracked":
                tracked = registry.decode(recorded.type, recorded.schema_version, recorded.data)
                assert isinstance(tracked, ActivityTracked)
                goal = goal_of(tracked)
                if goal is not None:
                    carried.append(
                        attributed(goal, str(recorded.event_id), tracked.at, database_id, profile_id, at)
                    )
        return carried


def _emission(goal: GoalAttributed, event_id: UUID) -> Emission:
    return Emission(
        activity_stream(goal.profile_id), goal.type_name, goal.to_data(), goal.at, event_id=event_id
    )
