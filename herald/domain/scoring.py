"""Scoring: a profile's number fields changed by amounts, and the rules that change them on goals and events.

The guide has no scoring engine of its own: scores are number fields
(`LOYALTY_SCORE +200`) changed by the scenario's "Обновить данные" node, and
goal values summed or averaged by segment rules. Herald adds what a marketer
of a serious platform expects besides: `ChangeNumbers` (add, subtract or set,
on int and float fields, as the API sends them; a scenario's update node
changes fields with its own profile command) and scoring rules (stream `scoringrule-<id>`): "when a profile
of this database reaches this goal (of this pixel), or does this tracked
event, change this field by `points` plus `per_value` times the goal's
value".

Decisions where the guide is silent:
- A field without a value counts as 0; unique fields are not scores. Changes apply in the order given; the
  result is one `ProfileFieldsUpdated` (source: who asked), none when nothing
  changes. An int field takes whole amounts only (a rule's per-value part is
  rounded to the nearest whole number, halves to even); the result must stay
  within the field's range.
- A rule scores goals and events that happen while it is active, from the
  moment it was made or last changed (events dated earlier, such as a
  backfill, are not scored), and never a goal the pixel's re-fire block
  held back (`fires_triggers: false`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.databases import DatabaseState
from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.fields import FieldDefinition, FieldType, coerce_value
from herald.domain.profiles import FieldChange, ProfileFieldsUpdated, ProfileState
from herald.domain.profiles import evolve as evolve_profile

NUMBER_TYPES = frozenset({FieldType.INT, FieldType.FLOAT})
MAX_CHANGES = 50
NumberOp = Literal["add", "subtract", "set"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScoreChange(_Model):
    """One change of a number field."""

    field: str = Field(min_length=1, max_length=64)
    op: NumberOp = "add"
    amount: float


@dataclass(frozen=True, slots=True)
class ChangeNumbers:
    profile_id: str
    database: DatabaseState
    changes: tuple[ScoreChange, ...]
    at: datetime
    source: str = "scoring"


def number_field(database: DatabaseState, name: str, path: str) -> FieldDefinition:
    """The int or float field `name` of the database, or ValidationFailed at `path`."""
    definition = database.field(name)
    if definition is None:
        raise ValidationFailed(f"the database has no field {name!r}", path)
    if definition.type not in NUMBER_TYPES:
        raise ValidationFailed(f"{definition.name!r} is a {definition.type} field, not a number", path)
    if definition.unique:  # a unique value is claimed across profiles: change it as a profile update
        raise ValidationFailed(f"{definition.name!r} is unique: scores are kept in fields that are not", path)
    return definition


def decide(command: ChangeNumbers, state: ProfileState) -> list[Event]:
    """One `ProfileFieldsUpdated` with the changed fields' old and new values (none if nothing changes)."""
    if not state.exists:
        raise NotFound(f"there is no profile {command.profile_id!r}", "profile_id")
    if state.database_id != command.database.database_id:
        raise RuleViolated(f"profile {command.profile_id} is of database {state.database_id}", "profile_id")
    if not 1 <= len(command.changes) <= MAX_CHANGES:
        raise ValidationFailed(f"give 1 to {MAX_CHANGES} changes", "changes")
    values: dict[str, Any] = {}
    for index, change in enumerate(command.changes):
        path = f"changes.{index}"
        definition = number_field(command.database, change.field, f"{path}.field")
        name = definition.name
        current = values.get(name, state.fields.get(name))
        values[name] = _applied(definition, current if isinstance(current, int | float) else 0, change, path)
    updated = {
        name: FieldChange(old=state.fields.get(name), new=value)
        for name, value in values.items()
        if state.fields.get(name) != value
    }
    if not updated:
        return []
    return [
        ProfileFieldsUpdated(
            profile_id=state.profile_id,
            database_id=state.database_id,
            at=command.at,
            changes=updated,
            source=command.source,
        )
    ]


def _applied(definition: FieldDefinition, current: float, change: ScoreChange, path: str) -> int | float:
    amount = change.amount
    if definition.type is FieldType.INT and not float(amount).is_integer():
        raise ValidationFailed(
            f"{definition.name!r} holds whole numbers: {amount} is not one", f"{path}.amount"
        )
    result = {"add": current + amount, "subtract": current - amount, "set": amount}[change.op]
    if definition.type is FieldType.INT:
        result = int(result)
    coerced = coerce_value(definition, result, f"{path}.amount")
    assert isinstance(coerced, int | float)
    return coerced


scoring_decider: Decider[ChangeNumbers, ProfileState] = Decider(ProfileState(), decide, evolve_profile)
"""Decides on the profile's stream (its events are the profile's own)."""


# --- scoring rules -----------------------------------------------------------------------------


def rule_stream(rule_id: str) -> str:
    return f"scoringrule-{rule_id}"


class GoalTrigger(_Model):
    """A goal reached: any goal (None) or one, of any pixel (None) or one."""

    kind: Literal["goal"] = "goal"
    goal: str | None = None
    pixel_id: str | None = None


class EventTrigger(_Model):
    """A tracked event of this name (the batch API's `event`, Segment's `track`)."""

    kind: Literal["event"] = "event"
    name: str = Field(min_length=1, max_length=200)


Trigger = Annotated[GoalTrigger | EventTrigger, Field(discriminator="kind")]


class ScoringRuleSettings(_Model):
    name: str = Field(min_length=1, max_length=255)
    database_id: str
    trigger: Trigger
    field: str = Field(min_length=1, max_length=64, description="the int or float field the rule changes")
    points: float = Field(0.0, description="added each time (negative: subtracted)")
    per_value: float = Field(0.0, description="added per unit of the goal's value")
    active: bool = True


@registry.register("ScoringRuleCreated")
class ScoringRuleCreated(Event):
    rule_id: str
    settings: ScoringRuleSettings
    at: datetime


@registry.register("ScoringRuleChanged")
class ScoringRuleChanged(Event):
    rule_id: str
    settings: ScoringRuleSettings
    at: datetime


@registry.register("ScoringRuleDeleted")
class ScoringRuleDeleted(Event):
    rule_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RuleState:
    rule_id: str = ""
    settings: ScoringRuleSettings | None = None
    since: datetime | None = None  # when it was made or last changed: it scores what happens after
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.settings is not None and not self.deleted

    def change(
        self, name: str, properties: Mapping[str, Any], at: datetime, goal: bool
    ) -> ScoreChange | None:
        """What the rule does to a profile for a tracked event (`goal`: it reads as a goal), or None."""
        settings = self.settings
        if settings is None or self.deleted or not settings.active or self.since is None or at < self.since:
            return None
        trigger = settings.trigger
        if isinstance(trigger, EventTrigger):
            if goal or name != trigger.name:
                return None
            return ScoreChange(field=settings.field, amount=settings.points)
        if not goal or properties.get("fires_triggers", True) is False:
            return None
        if trigger.goal is not None and properties.get("goal") != trigger.goal:
            return None
        if trigger.pixel_id is not None and str(properties.get("pixel_id")) != trigger.pixel_id:
            return None
        value = properties.get("value")
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        return ScoreChange(field=settings.field, amount=settings.points + settings.per_value * number)


@dataclass(frozen=True, slots=True)
class CreateRule:
    rule_id: str
    settings: ScoringRuleSettings
    database: DatabaseState
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeRule:
    rule_id: str
    settings: ScoringRuleSettings
    database: DatabaseState
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteRule:
    rule_id: str
    at: datetime


RuleCommand = CreateRule | ChangeRule | DeleteRule


def decide_rule(command: RuleCommand, state: RuleState) -> list[Event]:
    if isinstance(command, CreateRule):
        if state.settings is not None:
            raise RuleViolated(f"scoring rule {command.rule_id!r} exists already", "rule_id")
        settings = _checked_rule(command.settings, command.database)
        return [ScoringRuleCreated(rule_id=command.rule_id, settings=settings, at=command.at)]
    if isinstance(command, DeleteRule) and state.deleted:
        return []
    if not state.exists:
        raise NotFound(f"no scoring rule {command.rule_id!r}", "rule_id")
    if isinstance(command, ChangeRule):
        settings = _checked_rule(command.settings, command.database)
        if settings == state.settings:
            return []
        return [ScoringRuleChanged(rule_id=command.rule_id, settings=settings, at=command.at)]
    return [ScoringRuleDeleted(rule_id=command.rule_id, at=command.at)]


def _checked_rule(settings: ScoringRuleSettings, database: DatabaseState) -> ScoringRuleSettings:
    if database.database_id != settings.database_id:
        raise ValidationFailed("the rule's database does not match", "database_id")
    definition = number_field(database, settings.field, "field")
    if definition.type is FieldType.INT and not float(settings.points).is_integer():
        raise ValidationFailed(f"{definition.name!r} holds whole numbers", "points")
    if settings.points == 0 and settings.per_value == 0:
        raise ValidationFailed("the rule changes nothing: give points or per_value", "points")
    return settings.model_copy(update={"name": settings.name.strip(), "field": definition.name})


def evolve_rule(state: RuleState, event: Event) -> RuleState:
    match event:
        case ScoringRuleCreated():
            return RuleState(event.rule_id, event.settings, event.at)
        case ScoringRuleChanged():
            return replace(state, settings=event.settings, since=event.at)
        case ScoringRuleDeleted():
            return replace(state, deleted=True)
    return state


rule_decider: Decider[RuleCommand, RuleState] = Decider(RuleState(), decide_rule, evolve_rule)


def rounded_for(definition: FieldDefinition, amount: float) -> float:
    """A rule's amount as the field takes it: whole for an int field (halves to even)."""
    return float(round(amount)) if definition.type is FieldType.INT else amount
