"""Scoring as tables: number fields changed by amounts, and what a scoring rule does to an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.domain.databases import CreateDatabase, database_decider
from herald.domain.errors import NotFound, ValidationFailed
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.profiles import FieldChange, ProfileCreated, ProfileDeleted, ProfileFieldsUpdated
from herald.domain.scoring import (
    ChangeNumbers,
    CreateRule,
    EventTrigger,
    GoalTrigger,
    RuleState,
    ScoreChange,
    ScoringRuleCreated,
    ScoringRuleSettings,
    rule_decider,
    scoring_decider,
)
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DATABASE = database_decider.fold(
    database_decider.decide(
        CreateDatabase(
            "1",
            "Customers",
            T0,
            custom_fields=(
                FieldDefinition(name="score", type=FieldType.INT),
                FieldDefinition(name="balance", type=FieldType.FLOAT),
                FieldDefinition(name="plan", type=FieldType.STRING),
                FieldDefinition(name="card", type=FieldType.INT, unique=True),
            ),
        ),
        database_decider.initial,
    )
)
CREATED = ProfileCreated(
    profile_id="p", database_id="1", at=T0, md5_id="m", xxh_id="x", fields={"score": 10}, source="api"
)


def change(*changes: ScoreChange) -> ChangeNumbers:
    return ChangeNumbers("p", DATABASE, changes, T0, "scenario")


def updated(**values: tuple[object, object]) -> list[ProfileFieldsUpdated]:
    changes = {name: FieldChange(old=old, new=new) for name, (old, new) in values.items()}  # type: ignore[arg-type]
    return [ProfileFieldsUpdated(profile_id="p", database_id="1", at=T0, changes=changes, source="scenario")]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param(change(ScoreChange(field="score", amount=200)), updated(score=(10, 210)), id="add"),
        pytest.param(
            change(ScoreChange(field="score", op="subtract", amount=15)), updated(score=(10, -5)), id="sub"
        ),
        pytest.param(
            change(ScoreChange(field="balance", amount=2.5)), updated(balance=(None, 2.5)), id="from 0"
        ),
        pytest.param(
            change(
                ScoreChange(field="score", amount=5),
                ScoreChange(field="score", op="set", amount=1),
                ScoreChange(field="score", amount=2),
            ),
            updated(score=(10, 3)),
            id="in order",
        ),
        pytest.param(change(ScoreChange(field="score", op="set", amount=10)), [], id="no change"),
    ],
)
def test_number_changes(when: ChangeNumbers, expected: list[ProfileFieldsUpdated]) -> None:
    assert then(scoring_decider, [CREATED], when) == expected


@pytest.mark.parametrize(
    ("when", "path"),
    [
        (change(ScoreChange(field="nope", amount=1)), "changes.0.field"),
        (change(ScoreChange(field="plan", amount=1)), "changes.0.field"),
        (change(ScoreChange(field="card", amount=1)), "changes.0.field"),
        (
            change(ScoreChange(field="score", amount=1), ScoreChange(field="score", amount=0.5)),
            "changes.1.amount",
        ),
        (change(ScoreChange(field="score", op="set", amount=2.0**64)), "changes.0.amount"),
        (change(), "changes"),
    ],
)
def test_bad_changes_are_refused_at_their_path(when: ChangeNumbers, path: str) -> None:
    then_error(scoring_decider, [CREATED], when, ValidationFailed, path)


def test_a_deleted_profile_has_no_scores() -> None:
    deleted = ProfileDeleted(profile_id="p", database_id="1", at=T0)
    then_error(scoring_decider, [CREATED, deleted], change(ScoreChange(field="score", amount=1)), NotFound)


def rule(trigger: GoalTrigger | EventTrigger, points: float = 0, per_value: float = 0) -> RuleState:
    settings = ScoringRuleSettings(
        name="R", database_id="1", trigger=trigger, field="score", points=points, per_value=per_value
    )
    return rule_decider.fold([ScoringRuleCreated(rule_id="1", settings=settings, at=T0)])


LATER = T0 + timedelta(minutes=1)


def test_a_goal_rule_scores_matching_goals_by_points_and_value() -> None:
    buying = rule(GoalTrigger(goal="purchase", pixel_id="3"), points=10, per_value=0.1)
    goal = {"goal": "purchase", "pixel_id": "3", "value": 250.0}
    assert buying.change("purchase", goal, LATER, True) == ScoreChange(field="score", amount=35.0)
    assert buying.change("purchase", {**goal, "pixel_id": "4"}, LATER, True) is None
    assert buying.change("purchase", {**goal, "goal": "view"}, LATER, True) is None
    assert buying.change("purchase", {**goal, "fires_triggers": False}, LATER, True) is None  # re-fire block
    assert buying.change("purchase", goal, T0 - timedelta(minutes=1), True) is None  # before the rule
    assert buying.change("purchase", goal, LATER, False) is None  # an ordinary event is no goal


def test_an_event_rule_scores_tracked_events_of_its_name() -> None:
    viewing = rule(EventTrigger(name="Product Viewed"), points=1)
    assert viewing.change("Product Viewed", {}, LATER, False) == ScoreChange(field="score", amount=1)
    assert viewing.change("Order Completed", {}, LATER, False) is None


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        (
            ScoringRuleSettings(name="R", database_id="1", trigger=GoalTrigger(), field="plan", points=1),
            "field",
        ),
        (
            ScoringRuleSettings(name="R", database_id="1", trigger=GoalTrigger(), field="score", points=0.5),
            "points",
        ),
        (ScoringRuleSettings(name="R", database_id="1", trigger=GoalTrigger(), field="score"), "points"),
    ],
)
def test_bad_rules_are_refused_at_their_path(settings: ScoringRuleSettings, path: str) -> None:
    then_error(rule_decider, [], CreateRule("1", settings, DATABASE, T0), ValidationFailed, path)
