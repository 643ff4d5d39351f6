"""The scenario's assign-promo-code and goal nodes over the real loyalty and pixel services.

The node gives the profile its code once (a step done again gives nothing new), the campaign node's
message carries that code, a webhook's `{loyalty.<name>.promocode}` is it, and a program that cannot
give a code ends the profile's journey at the node with the reason (the guide).
"""

from __future__ import annotations

from typing import Any

import pytest

from herald.api.wiring import Herald
from herald.domain import loyalty as ly
from herald.domain.errors import DomainError, RuleViolated
from herald.domain.messages import message_stream
from herald.domain.pixels import PixelSettings
from herald.domain.promo_pool import pool_stream
from tests.builders import create_database
from tests.integration.test_scenario_nodes import _Receiver, open_herald, receiver  # noqa: F401 (fixtures)
from tests.scenario_builders import (
    CTX,
    campaign_node,
    graph,
    imported,
    journey_types,
    messages_of,
    ready,
    trigger,
)
from tests.scenario_builders import scenario as make_scenario


def _program(herald: Herald, codes: int, **options: Any) -> str:
    settings = ly.ProgramSettings(
        name="Spring", shortcode="spring", generator=ly.PatternGenerator(pattern="{X4}-{X4}"), **options
    )
    program_id, _ = herald.loyalty.create(settings, True, CTX)
    if codes:
        herald.promo_codes.generate(program_id, codes, False, {}, CTX)
    herald.runtime.drain()
    return program_id


def _promo_trigger(herald: Herald) -> str:
    """An active trigger campaign whose email shows the profile's Spring code."""
    return trigger(herald, "Code mail", html="<p>Code: {loyalty.spring.promocode}</p>")


def _promo_node(program_id: str, next_: str | None = None) -> dict[str, Any]:
    return {"id": "p", "type": "promo_code", "program_id": program_id, "next": next_}


def _ended(herald: Herald, scenario_id: str, profile_id: str) -> dict[str, Any]:
    [end] = [
        e.data
        for e in herald.store.read_stream(f"journey-{scenario_id}-{profile_id}")
        if e.type == "ScenarioInstanceTerminated"
    ]
    return end


def test_the_node_binds_a_code_once_and_the_campaign_and_webhook_after_it_use_that_code(
    open_herald: Herald,  # noqa: F811
    receiver: str,  # noqa: F811
) -> None:
    herald = open_herald
    ready(herald)
    program_id = _program(herald, codes=5)
    campaign_id = _promo_trigger(herald)
    url = receiver + "/c?code={loyalty.spring.promocode}"
    hook = {"id": "h", "type": "webhook", "method": "GET", "url": url}
    nodes = [_promo_node(program_id, "m"), campaign_node("m", campaign_id, "h"), hook]
    sid = make_scenario(herald, graph(*nodes))
    herald.runtime.drain()
    [pid] = imported(herald, "ann@mail.example")
    herald.runtime.drain()
    holding = herald.projections.loyalty.holding(program_id, pid)
    assert holding is not None and holding["cause_kind"] == "scenario" and holding["cause_id"] == sid
    [message_id] = messages_of(herald, campaign_id)[pid]
    [queued] = herald.store.read_stream(message_stream(message_id))
    assert queued.data["promo_codes"] == {"spring": holding["code"]}
    assert herald.webhooks.call_due() == 1
    herald.runtime.drain()
    assert _Receiver.calls[0]["query"]["code"] == [holding["code"]]
    assert journey_types(herald, sid, pid)[-1] == "ScenarioInstanceCompleted"
    # the pool gave one code in all: one binding for the node, none again for the message
    bound = [e for e in herald.store.read_stream(pool_stream(program_id)) if e.type == "PromoCodesBound"]
    assert len(bound) == 1
    assert herald.projections.loyalty.report(herald.clock.now(), [program_id])[program_id]["bound"] == 1


def test_the_same_step_done_again_gives_no_second_code(herald: Herald) -> None:
    ready(herald)
    program_id = _program(herald, codes=5)
    [pid] = imported(herald, "bob@mail.example")
    port = herald.scenarios.promo_codes
    assert port is not None
    first = port.assign(program_id, pid, "scenario-step:s1", "9", "Welcome")
    again = port.assign(program_id, pid, "scenario-step:s1", "9", "Welcome")
    later = port.assign(program_id, pid, "scenario-step:s2", "9", "Welcome")  # another visit: its code
    assert first.code is not None and first.code == again.code == later.code
    herald.runtime.drain()
    assert herald.projections.loyalty.report(herald.clock.now(), [program_id])[program_id]["bound"] == 1


@pytest.mark.parametrize(
    ("codes", "options", "stopped", "bound", "reason"),
    [
        (0, {}, False, False, "no free"),
        (0, {"scenario_may_create": True}, False, True, None),
        (0, {"campaign_may_create": True}, False, False, "no free"),  # a campaign's flag, not a scenario's
        (3, {}, True, False, "stopped"),
    ],
)
def test_a_program_that_cannot_give_a_code_ends_the_journey_at_the_node(
    herald: Herald, codes: int, options: dict[str, Any], stopped: bool, bound: bool, reason: str | None
) -> None:
    ready(herald)
    program_id = _program(herald, codes, **options)
    if stopped:
        herald.loyalty.stop(program_id, CTX)
    sid = make_scenario(herald, graph(_promo_node(program_id)))
    herald.runtime.drain()
    [pid] = imported(herald, "cy@mail.example")
    herald.runtime.drain()
    holding = herald.projections.loyalty.holding(program_id, pid)
    assert (holding is not None) is bound
    if reason is None:
        assert journey_types(herald, sid, pid)[-1] == "ScenarioInstanceCompleted"
    else:
        end = _ended(herald, sid, pid)
        assert end["node_id"] == "p" and reason in end["reason"], end


def test_a_node_naming_no_program_is_refused_at_its_path(herald: Herald) -> None:
    ready(herald)
    with pytest.raises(RuleViolated) as refused:
        make_scenario(herald, graph(_promo_node("404")))
    assert refused.value.path.endswith("program_id") and "404" in refused.value.reason


def test_a_campaign_node_alone_gives_the_code_its_message_shows(herald: Herald) -> None:
    """No assign node first: the message's render gives the code, as a trigger's does, and the pool
    records it (a scenario's batch is no run chunk whose effects would be appended with it)."""
    ready(herald)
    program_id = _program(herald, codes=5)
    campaign_id = _promo_trigger(herald)
    make_scenario(herald, graph(campaign_node("m", campaign_id)))
    herald.runtime.drain()
    [pid] = imported(herald, "dee@mail.example")
    herald.runtime.drain()
    [message_id] = messages_of(herald, campaign_id)[pid]
    [queued] = herald.store.read_stream(message_stream(message_id))
    holding = herald.projections.loyalty.holding(program_id, pid)
    assert holding is not None and queued.data["promo_codes"] == {"spring": holding["code"]}
    assert holding["cause_kind"] == "campaign" and holding["message_id"] == message_id


def test_a_goal_node_names_a_pixel_of_the_scenarios_database(herald: Herald) -> None:
    ready(herald)
    create_database(herald, "2")
    other, _ = herald.pixels.create(PixelSettings(name="Other shop", database_id="2"), 0, CTX)
    anywhere, _ = herald.pixels.create(PixelSettings(name="All shops"), 1, CTX)
    goal = {"id": "g", "type": "goal", "goals": ["Bought"], "value": 10}
    for pixel_id, refusal in (("404", "no pixel '404'"), (other, f"pixel {other} is of database 2")):
        with pytest.raises(DomainError) as refused:
            make_scenario(herald, graph({**goal, "pixel_id": pixel_id}))
        assert refused.value.path == "graph.nodes.0.pixel_id" and refusal in refused.value.reason
    make_scenario(herald, graph({**goal, "pixel_id": anywhere}))  # a pixel of all databases will do
