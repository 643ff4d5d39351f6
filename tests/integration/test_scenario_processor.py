"""The scenario processor over the real log: captures, timers to the instant, actions once, conditions on
events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herald.api import replay as replay_module
from herald.api.wiring import Herald, build
from herald.domain.scenario_capture import ApiCapture, FieldChangedCapture, ImportCapture
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from tests.scenario_builders import (
    CTX,
    campaign_node,
    graph,
    imported,
    journey_types,
    messages_of,
    pause_node,
    ready,
    scenario,
    trigger,
)


def test_an_import_captures_the_profile_which_gets_the_welcome_then_the_pause_ends_to_the_second(
    herald: Herald, clock: ManualClock
) -> None:
    ready(herald)
    welcome, later = trigger(herald, "Welcome"), trigger(herald, "Later")
    sid = scenario(
        herald,
        graph(
            campaign_node("2", welcome, "3"),
            pause_node("3", "4", kind="relative", hours=5),
            campaign_node("4", later),
        ),
        capture=ImportCapture(via="any"),
    )
    herald.runtime.drain()
    [pid] = imported(herald, "ann@mail.example")
    herald.runtime.drain()
    assert list(messages_of(herald, welcome)) == [pid]
    assert messages_of(herald, later) == {}
    queued = next(e for e in herald.store.read_all(1) if e.type == "MessageQueued")
    assert queued.data["scenario_id"] == sid
    assert journey_types(herald, sid, pid)[-1] == "ScenarioWaitScheduled"

    clock.advance(timedelta(hours=5) - timedelta(seconds=1))
    herald.tick()
    herald.runtime.drain()
    assert messages_of(herald, later) == {}  # a second early: still waiting
    clock.advance(timedelta(seconds=1))
    herald.tick()
    herald.runtime.drain()
    assert list(messages_of(herald, later)) == [pid]
    assert journey_types(herald, sid, pid)[-1] == "ScenarioInstanceCompleted"


def test_running_the_processor_again_from_the_start_appends_and_sends_nothing(herald: Herald) -> None:
    ready(herald)
    welcome = trigger(herald, "Welcome")
    scenario(herald, graph(campaign_node("1", welcome)), capture=ImportCapture())
    herald.runtime.drain()
    imported(herald, *(f"u{i}@mail.example" for i in range(20)))
    herald.runtime.drain()
    head = herald.store.head_position()
    processor = next(c for c in herald.runtime.consumers() if c.name == "scenarios")
    processor._position = 0  # type: ignore[attr-defined]  # a lost checkpoint: every event again
    processor.discard()
    herald.runtime.drain()
    assert herald.store.head_position() == head
    assert sorted(len(m) for m in messages_of(herald, welcome).values()) == [1] * 20


def test_a_timed_condition_goes_true_when_the_field_changes_not_at_its_deadline(
    herald: Herald, clock: ManualClock
) -> None:
    ready(herald)
    gold, basic = trigger(herald, "Gold"), trigger(herald, "Basic")
    rule = {"kind": "field", "field": "tier", "operator": "equal", "value": "gold"}
    condition = {"id": "c", "type": "condition", "rules": [rule], "wait_days": 2, "true": "g", "false": "b"}
    sid = scenario(herald, graph(condition, campaign_node("g", gold), campaign_node("b", basic)))
    herald.runtime.drain()
    [pid] = imported(herald, "bob@mail.example", tier="basic")
    herald.runtime.drain()
    assert journey_types(herald, sid, pid)[-1] == "ScenarioWaitScheduled"
    [wait] = [
        e.data for e in herald.store.read_stream(f"journey-{sid}-{pid}") if e.type == "ScenarioWaitScheduled"
    ]
    assert wait["due_at"] == wait["deadline"]  # one durable timer, at the deadline: nothing polls
    clock.advance(timedelta(hours=3))
    herald.profiles.update_fields(pid, {"tier": "gold"}, CTX)
    herald.runtime.drain()  # no tick: the change itself is what re-evaluates the condition
    assert list(messages_of(herald, gold)) == [pid]
    assert messages_of(herald, basic) == {}


def test_an_update_data_node_does_not_capture_its_own_scenario_again(herald: Herald) -> None:
    ready(herald)
    update = {
        "id": "u",
        "type": "update_data",
        "operations": [{"field": "age", "op": "increment", "value": 1}],
        "next": None,
    }
    sid = scenario(herald, graph(update), capture=FieldChangedCapture())
    herald.runtime.drain()
    [pid] = imported(herald, "carl@mail.example", age=30)
    herald.profiles.update_fields(pid, {"tier": "gold"}, CTX)
    herald.runtime.drain()
    assert herald.campaigns.profile(pid).fields["age"] == 31
    assert journey_types(herald, sid, pid).count("ProfileEnteredScenario") == 1


def test_the_special_api_call_enters_with_content_that_a_content_filter_reads(herald: Herald) -> None:
    ready(herald)
    premium, other = trigger(herald, "Premium"), trigger(herald, "Other")
    content_filter = {
        "id": "f",
        "type": "content_filter",
        "filter": {"rules": [{"field": "price", "type": "number", "operator": "gte", "value": 9000}]},
        "true": "p",
        "false": "o",
    }
    sid = scenario(
        herald,
        graph(content_filter, campaign_node("p", premium), campaign_node("o", other)),
        capture=ApiCapture(),
    )
    rich, poor = imported(herald, "dora@mail.example", "eve@mail.example")
    herald.runtime.drain()  # the email look-up reads the profiles read model
    herald.scenarios.enter(sid, [{"profile_id": rich}], {"price": 12000}, "r1", CTX)
    herald.scenarios.enter(sid, [{"email": "eve@mail.example"}], {"price": 10}, "r2", CTX)
    herald.scenarios.enter(sid, [{"profile_id": rich}], {"price": 12000}, "r1", CTX)  # the same request again
    herald.runtime.drain()
    assert list(messages_of(herald, premium)) == [rich]
    assert list(messages_of(herald, other)) == [poor]


def test_herald_replay_rebuilds_the_scenario_read_model_exactly_and_keeps_the_processors_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    settings = Settings(data_dir=tmp_path / "replayed", admin_token="t", reports_engine="off")
    herald = build(settings, clock=clock, ids=IdSource(5))
    herald.runtime._batch_size = 7  # small live batches, one large replay batch: the same rows
    ready(herald)
    welcome = trigger(herald, "Welcome")
    nodes = (
        campaign_node("1", welcome, "2"),
        pause_node("2", "3", kind="relative", hours=2),
        pause_node("3", None, kind="relative", days=3),
    )
    sid = scenario(herald, graph(*nodes))  # fmt: skip
    imported(herald, *(f"r{i}@mail.example" for i in range(12)))
    clock.advance(timedelta(hours=2))
    herald.tick()
    herald.runtime.drain()
    live = herald.projections.checksums()
    assert herald.scenarios.statistics(sid, clock.now().date(), clock.now().date())["in_process"] == 12
    herald.close()
    assert replay_module.replay(settings) == 0
    assert "checksums identical" in capsys.readouterr().out
    rebuilt = build(settings, clock=clock, ids=IdSource(5))
    try:
        assert rebuilt.projections.checksums() == live
        assert rebuilt.runtime.positions()["scenarios"] == rebuilt.store.head_position()
    finally:
        rebuilt.close()
