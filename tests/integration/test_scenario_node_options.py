"""Each option of the action nodes over the real services (issue 17, item 3), one test per node:

- campaign: a trigger of 16 templates sends each profile one of them at random, and all get used;
  a trigger that is not active sends nothing, the node fails and the profile goes on;
- update data: set and clear, increase and decrease, add tags, a list (enum) and a yes/no field; a
  value the field cannot take is refused at save with the operation's path;
- copy to database: fields mapped, an existing profile updated only with the upsert option, and
  no history copied;
- subscriptions: copied from another resource (its unsafe statuses only when asked), and updated;
- stop lists: the highest-priority contact or all, filtered by status, added and removed;
- static segments: added, then removed;
- webhook: an answer slower than the node's timeout is a failed attempt, retried after its backoff.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from herald.api.wiring import Herald
from herald.domain.errors import DomainError
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.segment_definitions import SegmentSettings
from herald.domain.statuses import Status
from herald.domain.stop_lists import CreateStopList
from herald.infra.clock import ManualClock
from herald.services.profiles import ImportOptions
from tests.builders import DB, RESOURCE, create_database, create_resource, email_subscription
from tests.integration.test_scenario_nodes import _Receiver, open_herald, receiver  # noqa: F401 (fixtures)
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


def exits(herald: Herald, scenario_id: str, profile_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(node, branch, outcome) of each node the profile left, in order."""
    stream = f"journey-{scenario_id}-{profile_id}"
    return [
        (e.data["node_id"], e.data["branch"], e.data["outcome"])
        for e in herald.store.read_stream(stream)
        if e.type == "ScenarioNodeExited"
    ]


def failures(herald: Herald, scenario_id: str, profile_id: str) -> list[tuple[str, str]]:
    stream = f"journey-{scenario_id}-{profile_id}"
    return [
        (e.data["node_id"], e.data["reason"])
        for e in herald.store.read_stream(stream)
        if e.type == "ScenarioNodeFailed"
    ]


def import_one(herald: Herald, row: dict[str, Any], database_id: str = DB) -> str:
    [result] = herald.profiles.import_rows(database_id, [row], ImportOptions(), CTX)
    assert result.profile_id is not None, result.error
    herald.runtime.drain()
    herald.runtime.drain()
    return result.profile_id


def test_a_campaign_node_sends_one_of_its_16_templates_at_random_and_nothing_while_its_trigger_is_off(
    herald: Herald,
) -> None:
    ready(herald)
    many = trigger(herald, "Sixteen", templates=16)
    off = trigger(herald, "Off", active=False)
    sid = scenario(herald, graph(campaign_node("1", off, "2"), campaign_node("2", many)))
    herald.runtime.drain()
    pids = imported(herald, *(f"r{i}@mail.example" for i in range(160)))
    herald.runtime.drain()

    sent = messages_of(herald, many)
    assert sorted(sent) == sorted(pids) and all(len(m) == 1 for m in sent.values())
    used = Counter(
        e.data["template_id"]
        for e in herald.store.read_all(1)
        if e.type == "MessageQueued" and e.data["campaign_id"] == many
    )
    assert len(used) == 16 and max(used.values()) <= 25  # each of the 16, none far above its 10
    assert messages_of(herald, off) == {}
    [(node, reason)] = failures(herald, sid, pids[0])
    assert node == "1" and "not active" in reason
    assert journey_types(herald, sid, pids[0])[-1] == "ScenarioInstanceCompleted"

    herald.campaigns.activate(off, CTX)
    [late] = imported(herald, "late@mail.example")
    herald.runtime.drain()
    assert list(messages_of(herald, off)) == [late]  # active again: it sends


def with_fields(herald: Herald) -> None:
    create_database(
        herald,
        DB,
        custom_fields=(
            FieldDefinition(name="age", type=FieldType.INT),
            FieldDefinition(name="score", type=FieldType.FLOAT),
            FieldDefinition(name="interests", type=FieldType.TAGS),
            FieldDefinition(name="tier", type=FieldType.LIST, options=("basic", "gold")),
            FieldDefinition(name="vip", type=FieldType.BOOL),
            FieldDefinition(name="note", type=FieldType.STRING),
        ),
    )
    create_resource(herald)


def test_update_data_sets_clears_increases_decreases_adds_tags_and_sets_lists_and_yes_no(
    herald: Herald,
) -> None:
    with_fields(herald)
    operations = [
        {"field": "age", "op": "decrement", "value": 3},
        {"field": "score", "op": "increment", "value": 1.5},  # no value yet: from 0
        {"field": "interests", "op": "add_tags", "value": "firewall, antivirus"},
        {"field": "tier", "op": "set", "value": "gold"},
        {"field": "vip", "op": "set", "value": True},
        {"field": "note", "op": "clear"},
    ]
    sid = scenario(herald, graph({"id": "1", "type": "update_data", "operations": operations}))
    herald.runtime.drain()
    email = "up@mail.example"
    row = {"email": email, "subscriptions": [email_subscription(email)]}
    pid = import_one(herald, {**row, "age": 10, "interests": ["antivirus", "a"], "vip": False, "note": "x"})
    fields = herald.campaigns.profile(pid).fields
    assert (fields["age"], fields["score"], fields["tier"], fields["vip"]) == (7, 1.5, "gold", True)
    assert sorted(fields["interests"]) == ["a", "antivirus", "firewall"]
    assert fields.get("note") is None
    assert exits(herald, sid, pid)[0][2]["fields"] == ["age", "interests", "note", "score", "tier", "vip"]


@pytest.mark.parametrize(
    ("operation", "path"),
    [
        ({"field": "tier", "op": "set", "value": "platinum"}, "graph.nodes.0.operations.0.value"),
        ({"field": "vip", "op": "set", "value": "perhaps"}, "graph.nodes.0.operations.0.value"),
        ({"field": "note", "op": "add_tags", "value": "x"}, "graph.nodes.0.operations.0.op"),
        ({"field": "nope", "op": "set", "value": 1}, "graph.nodes.0.operations.0.field"),
    ],
)
def test_update_data_refuses_a_value_its_field_cannot_take_with_the_path(
    herald: Herald, operation: dict[str, Any], path: str
) -> None:
    with_fields(herald)
    with pytest.raises(DomainError) as refused:
        scenario(herald, graph({"id": "1", "type": "update_data", "operations": [operation]}))
    assert refused.value.path == path


@pytest.mark.parametrize("upsert", [False, True])
def test_copy_to_database_maps_fields_updates_an_existing_profile_only_with_upsert_and_copies_no_history(
    herald: Herald, upsert: bool
) -> None:
    ready(herald)
    create_database(herald, "2", custom_fields=(FieldDefinition(name="points", type=FieldType.INT),))
    existing = [{"email": "old@mail.example", "points": 1}]
    [held] = herald.profiles.import_rows("2", existing, ImportOptions(), CTX)
    hello = trigger(herald, "Hello")
    copy = {
        "id": "2",
        "type": "copy_to_database",
        "database_id": "2",
        "update_existing": upsert,
        "fields": [{"source": "age", "target": "points"}],
    }
    scenario(herald, graph(campaign_node("1", hello, "2"), copy))
    herald.runtime.drain()
    old, new = (
        import_one(herald, {"email": e, "age": age, "subscriptions": [email_subscription(e)]})
        for e, age in (("old@mail.example", 5), ("new@mail.example", 6))
    )
    copies = {p["fields"]["email"]: p for p in herald.projections.profiles.list_profiles("2", "", 10, None)}
    assert copies["new@mail.example"]["fields"]["points"] == 6
    assert copies["old@mail.example"]["fields"]["points"] == (5 if upsert else 1)
    assert copies["old@mail.example"]["profile_id"] == held.profile_id  # matched, not made twice
    copied = copies["new@mail.example"]["profile_id"]
    assert new in messages_of(herald, hello) and old != copied  # the source got the welcome…
    history = [e for e in herald.store.read_all(1) if e.stream.startswith(("message-", "activity-"))]
    assert [e for e in history if e.data.get("profile_id") == copied] == []  # …its copy has no history


@pytest.mark.parametrize("unsafe", [False, True])
def test_a_subscription_node_copies_another_resources_subscriptions_unsafe_only_when_asked_then_updates(
    herald: Herald, unsafe: bool
) -> None:
    ready(herald)
    create_resource(herald, "8")
    copy = {
        "id": "1",
        "type": "subscription",
        "mode": "add",
        "resource_id": RESOURCE,
        "channels": ["email"],
        "source": {"kind": "resource", "resource_id": "8"},
        "include_unsafe": unsafe,
        "next": "2",
    }
    update = {
        "id": "2",
        "type": "subscription",
        "mode": "update",
        "resource_id": "8",
        "channels": ["email"],
        "status": "suspended",
    }
    sid = scenario(herald, graph(copy, update))
    herald.runtime.drain()
    subscriptions = [
        email_subscription("a@mail.example", "8"),
        email_subscription("b@mail.example", "8", status="unsubscribed"),
    ]
    pid = import_one(herald, {"email": "a@mail.example", "subscriptions": subscriptions})
    profile = herald.campaigns.profile(pid)
    copied = {s.key.contact: s.status for s in profile.subscriptions.of_resource(RESOURCE, "email")}
    expected = {"a@mail.example": Status.SUBSCRIBED}
    assert copied == ({**expected, "b@mail.example": Status.SUBSCRIBED} if unsafe else expected)
    assert {s.status for s in profile.subscriptions.of_resource("8", "email")} == {Status.SUSPENDED}
    assert [outcome["subscriptions"] for _, _, outcome in exits(herald, sid, pid)] == [2 if unsafe else 1, 2]


def test_stop_list_nodes_add_the_highest_priority_or_every_contact_by_status_and_remove_them(
    herald: Herald, clock: ManualClock
) -> None:
    ready(herald)
    list_id, _ = herald.catalog.create_stop_list(
        lambda i: CreateStopList(i, "Calls", herald.clock.now()), CTX
    )
    herald.runtime.drain()

    def node(node_id: str, next_: str | None, **options: Any) -> dict[str, Any]:
        return {"id": node_id, "type": "stop_list", "stop_list_id": list_id, "resource_id": RESOURCE,
                "next": next_, **options}  # fmt: skip

    nodes = [
        node("1", "2", contacts="highest_priority"),
        node("2", "3", statuses=["unsubscribed"]),
        node("3", "4", statuses=["subscribed"]),
        pause_node("4", "5"),
        node("5", None, action="remove", contacts="highest_priority"),
    ]
    sid = scenario(herald, graph(*nodes))
    herald.runtime.drain()
    subscriptions = [
        email_subscription("second@mail.example", priority=1),
        email_subscription("first@mail.example", priority=0),
    ]
    pid = import_one(herald, {"email": "first@mail.example", "subscriptions": subscriptions})
    listed = [e["value"] for e in herald.catalog.projection.entries(list_id)]
    assert sorted(listed) == ["first@mail.example", "second@mail.example"]
    clock.advance(timedelta(days=1))
    herald.tick()
    herald.runtime.drain()
    herald.runtime.drain()
    assert [e["value"] for e in herald.catalog.projection.entries(list_id)] == ["second@mail.example"]
    listed_by_node = [o.get("contacts") for node_id, _, o in exits(herald, sid, pid) if node_id != "4"]
    assert listed_by_node == [1, 0, 2, 1]


def test_a_static_segment_node_adds_then_another_removes(herald: Herald, clock: ManualClock) -> None:
    ready(herald)
    segment_id = herald.segments.create("static", SegmentSettings(name="Picks"), CTX).segment_id
    nodes = [
        {"id": "1", "type": "static_segment", "segment_id": segment_id, "next": "2"},
        pause_node("2", "3"),
        {"id": "3", "type": "static_segment", "action": "remove", "segment_id": segment_id},
    ]
    scenario(herald, graph(*nodes))
    herald.runtime.drain()
    [pid] = imported(herald, "seg@mail.example")
    herald.runtime.drain()
    assert pid in herald.segments.current_members(segment_id)
    clock.advance(timedelta(days=1))
    herald.tick()
    herald.runtime.drain()
    herald.runtime.drain()
    assert pid not in herald.segments.current_members(segment_id)


def test_a_webhook_slower_than_its_timeout_is_a_failed_attempt_and_is_retried(
    open_herald: Herald,  # noqa: F811
    receiver: str,  # noqa: F811
    clock: ManualClock,
) -> None:
    herald = open_herald
    ready(herald)
    hook = {"id": "h", "type": "webhook", "method": "POST", "url": receiver + "/slow", "timeout_seconds": 0.3}
    sid = scenario(herald, graph(hook))
    herald.runtime.drain()
    _Receiver.delays = [1.0]
    [pid] = imported(herald, "slow@mail.example")
    assert herald.webhooks.call_due() == 1
    herald.runtime.drain()
    journey = herald.store.read_stream(f"journey-{sid}-{pid}")
    answered = [e.data for e in journey if e.type == "ScenarioWebhookAnswered"]
    assert answered[0]["retryable"] and "tim" in (answered[0]["error"] or "").lower()
    assert journey_types(herald, sid, pid)[-1] == "ScenarioWaitScheduled"
    clock.advance(timedelta(minutes=1))
    herald.tick()
    herald.runtime.drain()
    assert herald.webhooks.call_due() == 1
    herald.runtime.drain()
    [(_, _, outcome)] = exits(herald, sid, pid)
    assert (outcome["status"], outcome["attempts"], outcome["body"]) == (200, 2, '{"ok": true}')
    assert [c["path"] for c in _Receiver.calls] == ["/slow", "/slow"]
