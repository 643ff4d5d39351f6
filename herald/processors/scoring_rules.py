"""The scoring rules processor: a profile's goal or tracked event changes its scores by the rules that match.

For each tracked event of a known profile (and each goal carried to one),
every live rule of the profile's database that matches it (`domain/scoring`)
adds its change; the changes go to the profile in one command whose request
id is the event's, so a redelivered event scores once. The database's rules
are read once and read again when a rule changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from herald.domain import scoring as sc
from herald.domain.events import registry
from herald.domain.goals import GoalAttributed
from herald.domain.tracking import ActivityTracked, goal_of
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.processors.runtime import Reaction

NAME = "scoring-rules"
_RULE_EVENTS = frozenset({"ScoringRuleCreated", "ScoringRuleChanged", "ScoringRuleDeleted"})


class ScoringPorts(Protocol):
    def rules(self, database_id: str) -> list[sc.RuleState]: ...

    def score(
        self, profile_id: str, database_id: str, changes: Sequence[sc.ScoreChange], cause_id: str
    ) -> None:
        """Apply the changes once per cause; refusals are the port's to log."""
        ...


class ScoringRules:
    name = NAME
    consumes = EventFilter(_RULE_EVENTS | {"ActivityTracked", "GoalAttributed"})

    def __init__(self, ports: ScoringPorts) -> None:
        self.ports = ports
        self._rules: dict[str, list[sc.RuleState]] = {}

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type in _RULE_EVENTS:
            self._rules.clear()
            return []
        if event.type not in ("ActivityTracked", "GoalAttributed"):
            return []
        data = event.data
        profile_id, database_id = data.get("profile_id"), data.get("database_id", "")
        if not profile_id or not self._rules_of(database_id):
            return []  # most tracked events: nothing to decode
        decoded = registry.decode(event.type, event.schema_version, data)
        if isinstance(decoded, ActivityTracked):
            goal = goal_of(decoded) is not None
            self._score(event, profile_id, database_id, decoded.name, decoded.properties, decoded.at, goal)
        elif isinstance(decoded, GoalAttributed):
            properties = {"goal": decoded.goal, "pixel_id": decoded.pixel_id, "value": decoded.value}
            self._score(event, profile_id, database_id, decoded.goal, properties, decoded.reached_at, True)
        return []

    def _rules_of(self, database_id: str) -> list[sc.RuleState]:
        if database_id not in self._rules:
            self._rules[database_id] = self.ports.rules(database_id)
        return self._rules[database_id]

    def _score(
        self,
        event: RecordedEvent,
        profile_id: str,
        database_id: str,
        name: str,
        properties: Mapping[str, Any],
        at: datetime,
        goal: bool,
    ) -> None:
        changes = [
            change
            for rule in self._rules_of(database_id)
            if (change := rule.change(name, properties, at, goal)) is not None
        ]
        if changes:
            self.ports.score(profile_id, database_id, changes, str(event.event_id))
