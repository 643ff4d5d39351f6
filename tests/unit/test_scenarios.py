"""The scenario aggregate as tables: settings, versions with removed-node rules, state, run timers."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from herald.domain import scenarios as sc
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from herald.domain.scenario_capture import ApiCapture, ImportCapture, ScheduleCapture
from herald.domain.scenario_graph import ScenarioGraph
from herald.domain.schedules import DailySchedule, OnceSchedule
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OK = sc.ScenarioChecks()
DAILY = DailySchedule(time=time(19, 30), timezone="UTC")


def settings(**overrides: Any) -> sc.ScenarioSettings:
    values: dict[str, Any] = {
        "name": "Welcome",
        "database_id": "5",
        "reentry": sc.ReentryMode.ONCE_EVER,
        "capture": ImportCapture(via="any"),
        **overrides,
    }
    return sc.ScenarioSettings.model_validate(values)


def graph(*ids: str) -> ScenarioGraph:
    """A chain of campaign nodes."""
    nodes = [
        {
            "id": node_id,
            "type": "campaign",
            "campaign_id": "9",
            "next": ids[i + 1] if i + 1 < len(ids) else None,
        }
        for i, node_id in enumerate(ids)
    ]
    return ScenarioGraph.model_validate({"nodes": nodes})


def created(**overrides: Any) -> list[Any]:
    return [
        sc.ScenarioCreated(scenario_id="1", settings=settings(**overrides), at=T0),
        sc.ScenarioPublished(scenario_id="1", version=1, graph=graph("a", "b", "c"), at=T0),
    ]


ACTIVATED = sc.ScenarioActivated(scenario_id="1", at=T0)


def change(
    new_graph: ScenarioGraph, removed: tuple[sc.RemovedNode, ...] = (), **overrides: Any
) -> sc.ChangeScenario:
    return sc.ChangeScenario("1", settings(**overrides), new_graph, removed, OK, "UTC", T0)


def test_creating_publishes_version_1() -> None:
    events = then(sc.scenario_decider, [], sc.CreateScenario("1", settings(), graph("a"), OK, T0))
    assert [type(e) for e in events] == [sc.ScenarioCreated, sc.ScenarioPublished]
    assert events[1].version == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "error", "path"),
    [
        (sc.CreateScenario("1", settings(name=" "), graph("a"), OK, T0), ValidationFailed, "settings.name"),
        (
            sc.CreateScenario("1", settings(tags=("", "x")), graph("a"), OK, T0),
            ValidationFailed,
            "settings.tags.0",
        ),
        (sc.CreateScenario("1", settings(), graph(), OK, T0), ValidationFailed, "graph.nodes"),
        (
            sc.CreateScenario(
                "1", settings(), graph("a"), sc.ScenarioChecks((("graph.nodes.0.campaign_id", "no"),)), T0
            ),
            RuleViolated,
            "graph.nodes.0.campaign_id",
        ),
    ],
)
def test_creation_refuses_with_the_path(command: sc.CreateScenario, error: type, path: str) -> None:
    then_error(sc.scenario_decider, [], command, error, path)


def test_a_changed_graph_is_the_next_version_and_removed_nodes_get_their_rule_or_end() -> None:
    events = then(
        sc.scenario_decider,
        created(),
        change(graph("a", "d"), (sc.RemovedNode(node_id="b", move_to="d"),)),
    )
    assert len(events) == 1
    published = events[0]
    assert isinstance(published, sc.ScenarioPublished) and published.version == 2
    assert published.removed == (sc.RemovedNode(node_id="b", move_to="d"), sc.RemovedNode(node_id="c"))
    state = sc.scenario_decider.fold([*created(), published])
    assert state.removed == {"b": "d", "c": None}
    assert state.node("b") is None and state.node("b", version=1) is not None


def test_saving_the_same_graph_publishes_nothing() -> None:
    assert then(sc.scenario_decider, created(), change(graph("a", "b", "c"))) == []


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ((sc.RemovedNode(node_id="a"),), "removed.0.node_id"),  # "a" stays
        ((sc.RemovedNode(node_id="b", move_to="b"),), "removed.0.move_to"),  # not in the new graph
    ],
)
def test_removed_node_rules_must_name_removed_nodes_and_new_targets(
    rules: tuple[sc.RemovedNode, ...], path: str
) -> None:
    then_error(sc.scenario_decider, created(), change(graph("a", "c"), rules), ValidationFailed, path)


def test_a_node_id_that_comes_back_is_a_node_again() -> None:
    removed = sc.ScenarioPublished(
        scenario_id="1",
        version=2,
        graph=graph("a"),
        at=T0,
        removed=(sc.RemovedNode(node_id="b"), sc.RemovedNode(node_id="c")),
    )
    back = sc.ScenarioPublished(scenario_id="1", version=3, graph=graph("a", "b"), at=T0)
    state = sc.scenario_decider.fold([*created(), removed, back])
    assert state.removed == {"c": None}


def test_the_database_cannot_change_once_the_scenario_has_been_active() -> None:
    then(sc.scenario_decider, created(), change(graph("a", "b", "c"), database_id="6"))  # never active: fine
    then_error(
        sc.scenario_decider,
        [*created(), ACTIVATED, sc.ScenarioDeactivated(scenario_id="1", at=T0)],
        change(graph("a", "b", "c"), database_id="6"),
        RuleViolated,
        "settings.database_id",
    )


def test_activation_of_an_audience_scenario_schedules_its_first_run() -> None:
    events = then(
        sc.scenario_decider,
        created(capture=ScheduleCapture(schedule=DAILY)),
        sc.ActivateScenario("1", OK, "UTC", T0),
    )
    assert events == [
        ACTIVATED,
        sc.ScenarioRunScheduled(
            scenario_id="1", run_number=1, due_at=datetime(2026, 3, 2, 19, 30, tzinfo=UTC)
        ),
    ]


def test_a_due_run_starts_and_schedules_the_next() -> None:
    given = [
        *created(capture=ScheduleCapture(schedule=DAILY)),
        ACTIVATED,
        sc.ScenarioRunScheduled(scenario_id="1", run_number=1, due_at=T0 + timedelta(hours=10, minutes=30)),
    ]
    at = T0 + timedelta(hours=10, minutes=31)
    events = then(sc.scenario_decider, given, sc.StartScheduledRun("1", 1, "UTC", at))
    assert events == [
        sc.ScenarioRunStarted(
            scenario_id="1", run_number=1, due_at=T0 + timedelta(hours=10, minutes=30), at=at
        ),
        sc.ScenarioRunScheduled(
            scenario_id="1", run_number=2, due_at=datetime(2026, 3, 3, 19, 30, tzinfo=UTC)
        ),
    ]
    assert then(sc.scenario_decider, [*given, *events], sc.StartScheduledRun("1", 1, "UTC", at)) == []


def test_a_schedule_with_no_run_left_cannot_be_activated() -> None:
    past = OnceSchedule(date=datetime(2026, 1, 1).date(), time=time(10), timezone="UTC")
    then_error(
        sc.scenario_decider,
        created(capture=ScheduleCapture(schedule=past)),
        sc.ActivateScenario("1", OK, "UTC", T0),
        ValidationFailed,
        "settings.capture.schedule.date",
    )


def test_deactivation_drops_the_run_timer_and_delete_deactivates() -> None:
    given = [*created(capture=ScheduleCapture(schedule=DAILY)), ACTIVATED]
    state = sc.scenario_decider.fold(
        [
            *given,
            sc.ScenarioRunScheduled(scenario_id="1", run_number=1, due_at=T0),
            sc.ScenarioDeactivated(scenario_id="1", at=T0),
        ]
    )
    assert state.next_run is None and not state.active
    events = then(sc.scenario_decider, given, sc.DeleteScenario("1", T0))
    assert events == [
        sc.ScenarioDeactivated(scenario_id="1", at=T0),
        sc.ScenarioDeleted(scenario_id="1", at=T0),
    ]
    then_error(sc.scenario_decider, [*given, *events], sc.ActivateScenario("1", OK, "UTC", T0), NotFound)


def test_changing_an_active_scenarios_capture_to_a_schedule_schedules_its_run() -> None:
    events = then(
        sc.scenario_decider,
        [*created(capture=ApiCapture()), ACTIVATED],
        change(graph("a", "b", "c"), capture=ScheduleCapture(schedule=DAILY)),
    )
    assert isinstance(events[0], sc.ScenarioSettingsChanged)
    assert isinstance(events[1], sc.ScenarioRunScheduled) and events[1].due_at.hour == 19
