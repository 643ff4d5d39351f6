"""Scenario graphs: each refusal names the node's path; only a pause or a timed condition breaks a loop."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pytest

from herald.domain.errors import ValidationFailed
from herald.domain.scenario_graph import ScenarioGraph, check_graph, outputs


def graph(*nodes: dict[str, Any], start: str | None = None) -> ScenarioGraph:
    return ScenarioGraph.model_validate({"start": start, "nodes": list(nodes)})


def pause(node_id: str, next_: str | None = None, **wait: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "pause", "wait": wait or {"kind": "relative", "days": 1}, "next": next_}


def campaign(node_id: str, next_: str | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": "campaign", "campaign_id": "9", "next": next_}


def condition(node_id: str, true: str | None, false: str | None, **wait: int) -> dict[str, Any]:
    return {"id": node_id, "type": "condition", "true": true, "false": false, **wait}


def refused(g: ScenarioGraph) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        check_graph(g)
    return caught.value


WELCOME = graph(
    campaign("2", "3"),
    pause("3", "4"),
    condition("4", "5", "8", wait_hours=1),
    {
        "id": "5",
        "type": "update_data",
        "operations": [{"field": "score", "op": "increment", "value": 200}],
        "next": "7",
    },
    campaign("7"),
    condition("8", "9", "10"),
    {
        "id": "9",
        "type": "webhook",
        "url": "http://example.com",
        "params": [{"name": "phone", "source": "profile", "value": "phones"}],
    },
    campaign("10", "11"),
    pause("11", "4"),
)


def test_the_welcome_scenario_with_its_loop_back_to_node_4_is_a_valid_graph() -> None:
    checked = check_graph(WELCOME)
    assert checked.first == "2"
    assert [o.branch for o in outputs(checked.index()["4"])] == ["true", "false"]


@pytest.mark.parametrize(
    ("bad", "path", "words"),
    [
        (graph(), "graph.nodes", "at least one node"),
        (graph(campaign("1", "2")), "graph.nodes.0.next", "node '2', which does not exist"),
        (graph(condition("1", None, "7")), "graph.nodes.0.false", "does not exist"),
        (
            graph({"id": "1", "type": "split", "branches": [{"percent": 50}, {"percent": 50, "next": "x"}]}),
            "graph.nodes.0.branches.1.next",
            "does not exist",
        ),
        (graph(campaign("1"), campaign("2")), "graph.nodes.1", "cannot be reached from the start"),
        (graph(campaign("1"), campaign("1")), "graph.nodes.1.id", "used twice"),
        (graph(campaign(" 1")), "graph.nodes.0.id", "non-blank"),
        (graph(campaign("1"), start="5"), "graph.start", "does not exist"),
        (graph(campaign("1", "2"), campaign("2", "1")), "graph.nodes.1.next", "1 → 2 → 1"),
        # a timed condition's true output is taken at once: it does not break the loop
        (graph(condition("1", "2", None, wait_hours=1), campaign("2", "1")), "graph.nodes.1.next", "loop"),
        # a pause that may let a profile through at once does not either
        (graph(pause("1", "2", kind="relative"), campaign("2", "1")), "graph.nodes.1.next", "loop"),
        (
            graph(pause("1", "2", kind="window", start="09:00", end="21:00"), campaign("2", "1")),
            "graph.nodes.1.next",
            "loop",
        ),
        (
            graph(pause("1", "2", kind="date", at="2026-05-01T10:00:00"), campaign("2", "1")),
            "graph.nodes.1.next",
            "loop",
        ),
        (
            graph({"id": "1", "type": "split", "branches": [{"percent": 60}, {"percent": 30}]}),
            "graph.nodes.0.branches",
            "add up to 90",
        ),
        (
            graph({"id": "1", "type": "split", "branches": [{"percent": 100}]}),
            "graph.nodes.0.branches",
            "2 to 10",
        ),
        (
            graph(pause("1", kind="time_of_day", time="10:00:30")),
            "graph.nodes.0.wait.time",
            "without seconds",
        ),
        (graph(pause("1", kind="window", start="09:00", end="09:00")), "graph.nodes.0.wait.end", "different"),
        (graph({**pause("1"), "timezone": "Mars/Olympus"}), "graph.nodes.0.timezone", "unknown timezone"),
        (
            graph({"id": "1", "type": "update_data", "operations": [{"field": "a", "op": "set"}]}),
            "graph.nodes.0.operations.0.value",
            "needs a value",
        ),
        (
            graph(
                {"id": "1", "type": "update_data", "operations": [{"field": "a", "op": "clear", "value": 1}]}
            ),
            "graph.nodes.0.operations.0.value",
            "takes no value",
        ),
        (graph({"id": "1", "type": "update_data", "operations": []}), "graph.nodes.0.operations", "1 to 50"),
        (
            graph({"id": "1", "type": "goal", "pixel_id": "p", "goals": []}),
            "graph.nodes.0.goals",
            "at least one",
        ),
        (
            graph({"id": "1", "type": "subscription", "resource_id": "7", "channels": ["push"]}),
            "graph.nodes.0.source",
            "push",
        ),
        (
            graph(
                {"id": "1", "type": "subscription", "resource_id": "7", "channels": ["email", "telegram_bot"]}
            ),
            "graph.nodes.0.source",
            "telegram_bot subscriptions can only be copied",
        ),
        (
            graph(
                {
                    "id": "1",
                    "type": "content_filter",
                    "filter": {
                        "rules": [{"field": "price", "type": "number", "operator": "contains", "value": 1}]
                    },
                }
            ),
            "graph.nodes.0.filter.rules.0",
            "does not apply",
        ),
        (graph(condition("1", None, None, wait_days=400)), "graph.nodes.0.wait_days", "365"),
    ],
)
def test_a_graph_that_cannot_run_is_refused_with_the_path_of_the_node_at_fault(
    bad: ScenarioGraph, path: str, words: str
) -> None:
    error = refused(bad)
    assert error.path == path
    assert words in error.reason


@pytest.mark.parametrize(
    "breaker",
    [
        pause("1", "2"),
        pause("1", "2", kind="time_of_day", time="10:00"),
        pause("1", "2", kind="weekday", weekday="sunday", time="11:30"),
    ],
)
def test_a_loop_through_a_pause_that_always_waits_is_allowed(breaker: dict[str, Any]) -> None:
    check_graph(graph(breaker, campaign("2", "1")))


def test_a_loop_through_a_timed_conditions_timeout_is_allowed() -> None:
    check_graph(graph(condition("1", None, "2", wait_minutes=30), campaign("2", "1")))


def test_a_content_filters_values_are_stored_as_the_type_they_compare_as() -> None:
    checked = check_graph(
        graph(
            {
                "id": "1",
                "type": "content_filter",
                "filter": {
                    "rules": [{"field": "price", "type": "number", "operator": "gte", "value": "9000"}]
                },
            }
        )
    )
    node = checked.nodes[0]
    assert node.type == "content_filter"
    assert node.filter.rules[0].value == 9000


def test_a_date_pause_may_be_an_aware_instant_or_a_wall_time() -> None:
    checked = check_graph(graph(pause("1", kind="date", at="2026-05-01T10:00:00+03:00")))
    node = checked.nodes[0]
    assert node.type == "pause" and node.wait.kind == "date"
    assert node.wait.at == datetime.fromisoformat("2026-05-01T10:00:00+03:00")
    assert check_graph(graph(pause("1", kind="time_of_day", time="10:15"))).nodes[0].wait.time == time(10, 15)  # type: ignore[union-attr]
