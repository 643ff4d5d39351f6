"""Scenario nodes over the real services: webhooks on a loopback server, every action node, live edits,
sleeping profiles, audience runs and manual entry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import sleep
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from herald.api.wiring import Herald, build
from herald.domain import scenarios as sc
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.goals import goal_properties
from herald.domain.pixels import PixelSettings
from herald.domain.scenario_capture import ApiCapture, ScheduleCapture
from herald.domain.schedules import DailySchedule
from herald.domain.segment_definitions import SegmentSettings
from herald.domain.segment_eval import percent_bucket
from herald.domain.statuses import Status
from herald.domain.stop_lists import CreateStopList
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.services.profiles import ImportOptions
from tests.builders import DB, RESOURCE, create_database, create_resource, enable_telegram_bot
from tests.conftest import ADMIN_TOKEN, START
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


class _Receiver(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, Any]]] = []
    statuses: ClassVar[list[int]] = []
    delays: ClassVar[list[float]] = []  # seconds to take over each answer, in turn

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        _Receiver.calls.append(
            {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query, keep_blank_values=True),
                "json": orjson.loads(body) if body else None,
                "request_id": self.headers.get("x-herald-request-id"),
            }
        )
        status = _Receiver.statuses.pop(0) if _Receiver.statuses else 200
        sleep(_Receiver.delays.pop(0) if _Receiver.delays else 0)
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')
        except BrokenPipeError:
            pass  # the caller timed out and hung up

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.calls, _Receiver.statuses, _Receiver.delays = [], [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def open_herald(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    """A Herald whose remote-content policy lets calls reach loopback (the receiver)."""
    settings = Settings(
        data_dir=tmp_path / "open",
        admin_token=ADMIN_TOKEN,
        reports_engine="off",
        remote_allowed_networks=("127.0.0.0/8",),
    )
    app = build(settings, clock=clock, ids=IdSource(7))
    yield app
    app.close()


def test_a_webhook_node_calls_with_its_templated_url_and_profile_params_and_records_the_answer(
    open_herald: Herald, receiver: str
) -> None:
    herald = open_herald
    ready(herald)
    hook = {
        "id": "h",
        "type": "webhook",
        "method": "GET",
        "url": receiver + "/call?email={lead.email}",
        "params": [
            {"name": "phone", "source": "profile", "value": "phones"},
            {"name": "manager", "source": "custom", "value": "Max {json.team}"},
            {"name": "code", "source": "custom", "value": "{loyalty.black-friday.promocode}"},
        ],
    }
    sid = scenario(herald, graph(hook))  # captured by the import
    herald.runtime.drain()
    [pid] = imported(herald, "ann@mail.example", phones="+49 30 1234567")
    assert herald.webhooks.call_due() == 1
    assert herald.webhooks.call_due() == 0  # the call being answered is not made twice
    herald.runtime.drain()
    [call] = _Receiver.calls
    assert call["method"] == "GET" and call["query"]["email"] == ["ann@mail.example"]
    assert call["query"]["phone"] == ["+49301234567"]
    assert call["query"]["manager"] == ["Max "] and call["query"]["code"] == [""]  # an absent code is empty
    assert call["request_id"] == f"journey-{sid}-{pid}-1-1"
    exited = [e for e in herald.store.read_stream(f"journey-{sid}-{pid}") if e.type == "ScenarioNodeExited"]
    assert exited[0].data["outcome"]["status"] == 200
    assert journey_types(herald, sid, pid)[-1] == "ScenarioInstanceCompleted"


def test_a_failing_webhook_is_retried_after_its_backoff_by_the_timer(
    open_herald: Herald, receiver: str, clock: ManualClock
) -> None:
    herald = open_herald
    ready(herald)
    hook = {
        "id": "h",
        "type": "webhook",
        "method": "POST",
        "url": receiver + "/x",
        "params": [{"name": "email", "source": "profile", "value": "email"}],
        "attempts": 2,
    }
    sid = scenario(herald, graph(hook))
    herald.runtime.drain()
    _Receiver.statuses = [503]
    [pid] = imported(herald, "bo@mail.example")
    herald.webhooks.call_due()
    herald.runtime.drain()
    assert journey_types(herald, sid, pid)[-1] == "ScenarioWaitScheduled"
    clock.advance(timedelta(minutes=1))
    herald.tick()
    herald.runtime.drain()
    assert herald.webhooks.call_due() == 1
    herald.runtime.drain()
    assert [c["json"] for c in _Receiver.calls] == [{"email": "bo@mail.example"}] * 2
    assert len({c["request_id"] for c in _Receiver.calls}) == 1  # one step: the receiver can drop a repeat
    assert journey_types(herald, sid, pid)[-2:] == ["ScenarioNodeExited", "ScenarioInstanceCompleted"]


def test_a_webhook_to_a_private_address_is_refused_by_the_policy(herald: Herald, receiver: str) -> None:
    ready(herald)
    sid = scenario(herald, graph({"id": "h", "type": "webhook", "url": receiver + "/x"}))
    herald.runtime.drain()
    [pid] = imported(herald, "cy@mail.example")
    herald.webhooks.call_due()
    herald.runtime.drain()
    failed = [e for e in herald.store.read_stream(f"journey-{sid}-{pid}") if e.type == "ScenarioNodeFailed"]
    assert "loopback" in failed[0].data["reason"]
    assert _Receiver.calls == []


def test_action_nodes_change_the_profile_other_databases_subscriptions_stop_lists_segments_and_goals(
    herald: Herald,
) -> None:
    ready(herald)
    create_database(herald, "2", custom_fields=(FieldDefinition(name="points", type=FieldType.INT),))
    list_id, _ = herald.catalog.create_stop_list(lambda i: CreateStopList(i, "VIP", herald.clock.now()), CTX)
    herald.runtime.drain()
    segment = herald.segments.create("static", SegmentSettings(name="Scenario picks"), CTX)
    segment_id = segment.segment_id
    pixel_id, _ = herald.pixels.create(PixelSettings(name="Shop", database_id=DB), 0, CTX)
    nodes = [
        {
            "id": "1",
            "type": "update_data",
            "next": "2",
            "operations": [
                {"field": "age", "op": "increment", "value": 200},
                {"field": "tier", "op": "set", "value": "gold"},
            ],
        },
        {
            "id": "2",
            "type": "copy_to_database",
            "database_id": "2",
            "next": "3",
            "fields": [{"source": "age", "target": "points"}],
        },
        {"id": "3", "type": "subscription", "resource_id": "7", "channels": ["sms"], "next": "4"},
        {"id": "4", "type": "stop_list", "stop_list_id": list_id, "resource_id": "7", "next": "5"},
        {"id": "5", "type": "static_segment", "segment_id": segment_id, "next": "6"},
        {"id": "6", "type": "goal", "pixel_id": pixel_id, "goals": ["Покупка товара #1"], "value": 9000},
    ]
    sid = scenario(herald, graph(*nodes))
    herald.runtime.drain()
    [pid] = imported(herald, "dan@mail.example", phones="+49 30 7654321", age=1)
    herald.runtime.drain()
    herald.runtime.drain()
    assert journey_types(herald, sid, pid)[-1] == "ScenarioInstanceCompleted"
    profile = herald.campaigns.profile(pid)
    assert profile.fields["age"] == 201 and profile.fields["tier"] == "gold"
    assert [s.key.contact for s in profile.subscriptions.of_resource("7", "sms")] == ["+49307654321"]
    [copy] = herald.projections.profiles.list_profiles("2", "", 10, None)
    assert copy["fields"]["points"] == 201
    assert herald.catalog.projection.entry_count(list_id) == 1
    assert pid in herald.segments.current_members(segment_id)
    goals = [e for e in herald.store.read_stream(f"activity-{pid}")]
    assert goals[0].data["properties"] == goal_properties(
        "Покупка товара #1", pixel_id, 9000.0, "scenario_node"
    )
    assert herald.aggregates.decode(goals[0]).at == goals[0].occurred_at  # the payload's time is its own


def test_the_subscription_node_copies_telegram_chats_to_another_bot_and_updates_the_held_ones(
    herald: Herald,
) -> None:
    ready(herald)
    enable_telegram_bot(herald, RESOURCE)
    create_resource(herald, "8")
    enable_telegram_bot(herald, "8", "outlet_bot")
    nodes = [
        {
            "id": "1",
            "type": "subscription",
            "resource_id": "8",
            "channels": ["telegram_bot"],
            "source": {"kind": "resource", "resource_id": RESOURCE},
            "next": "2",
        },
        {
            "id": "2",
            "type": "subscription",
            "mode": "update",
            "resource_id": RESOURCE,
            "channels": ["telegram_bot"],
            "status": "unsubscribed",
        },
    ]
    sid = scenario(herald, graph(*nodes))
    herald.runtime.drain()
    chat = {"resource_id": RESOURCE, "channel": "telegram_bot", "chat_id": "555001"}
    [result] = herald.profiles.import_rows(
        DB, [{"email": "tg@mail.example", "subscriptions": [chat]}], ImportOptions(), CTX
    )
    pid = result.profile_id or ""
    herald.runtime.drain()
    herald.runtime.drain()
    assert journey_types(herald, sid, pid)[-1] == "ScenarioInstanceCompleted"
    profile = herald.campaigns.profile(pid)
    [copied] = profile.subscriptions.of_resource("8", "telegram_bot")
    assert (copied.key.contact, copied.status) == ("555001", Status.SUBSCRIBED)
    [held] = profile.subscriptions.of_resource(RESOURCE, "telegram_bot")
    assert (held.key.contact, held.status) == ("555001", Status.UNSUBSCRIBED)


def test_a_live_edit_moves_instances_at_a_removed_node_and_sends_nothing_twice(
    herald: Herald, clock: ManualClock
) -> None:
    ready(herald)
    first, old, new = trigger(herald, "First"), trigger(herald, "Old"), trigger(herald, "New")
    old_graph = graph(campaign_node("1", first, "2"), pause_node("2", "3"), campaign_node("3", old))
    sid = scenario(herald, old_graph)
    herald.runtime.drain()
    waiting = imported(herald, "w1@mail.example", "w2@mail.example")
    new_graph = graph(campaign_node("1", first, "4"), campaign_node("4", new))
    herald.scenarios.change(
        sid,
        herald.scenarios.scenario(sid).settings,
        new_graph,  # type: ignore[arg-type]
        [sc.RemovedNode(node_id="2", move_to="4")],
        CTX,
    )
    herald.runtime.drain()
    later = imported(herald, "l1@mail.example")
    clock.advance(timedelta(days=2))
    herald.tick()
    herald.runtime.drain()
    assert sorted(messages_of(herald, first)) == sorted(waiting + later)
    assert sorted(messages_of(herald, new)) == sorted(waiting + later)
    assert messages_of(herald, old) == {}
    assert all(len(m) == 1 for campaign in (first, new) for m in messages_of(herald, campaign).values())


@pytest.mark.parametrize("sleeping", [True, False])
def test_deactivation_keeps_or_drops_the_profiles_that_wake_while_it_is_off(
    herald: Herald, clock: ManualClock, sleeping: bool
) -> None:
    """`early`'s hour ends while the scenario is off: it sleeps (and goes on at reactivation) or ends.
    `late`'s ends after reactivation: it goes on at its own due time either way."""
    ready(herald)
    after = trigger(herald, "After")
    sid = scenario(
        herald,
        graph(pause_node("1", "2", kind="relative", hours=1), campaign_node("2", after)),
        sleeping=sleeping,
    )
    herald.runtime.drain()

    def at(minutes: int) -> None:
        clock.set(START + timedelta(minutes=minutes))
        herald.tick()
        herald.runtime.drain()
        herald.runtime.drain()

    [early] = imported(herald, "e@mail.example")
    at(30)
    [late] = imported(herald, "l@mail.example")
    at(40)
    herald.scenarios.deactivate(sid, CTX)
    at(70)  # early's hour ended at 60, while off
    assert messages_of(herald, after) == {}
    herald.scenarios.activate(sid, CTX)
    herald.runtime.drain()
    herald.runtime.drain()
    assert set(messages_of(herald, after)) == ({early} if sleeping else set())
    at(89)
    assert late not in messages_of(herald, after)  # a minute short of its hour: still waiting
    at(90)
    assert set(messages_of(herald, after)) == ({early, late} if sleeping else {late})
    ended = "ScenarioInstanceCompleted" if sleeping else "ScenarioInstanceTerminated"
    assert journey_types(herald, sid, early)[-1] == ended


def test_an_audience_scenario_runs_on_its_schedule_for_the_segment_with_its_percent_window(
    herald: Herald, clock: ManualClock
) -> None:
    ready(herald)
    hello = trigger(herald, "Hello")
    pids = imported(herald, *(f"s{i}@mail.example" for i in range(30)), tier="gold")
    imported(herald, "basic@mail.example", tier="basic")
    capture = ScheduleCapture(
        schedule=DailySchedule(time=time(19, 30), timezone="UTC"),
        rules=({"kind": "field", "field": "tier", "operator": "equal", "value": "gold"},),  # type: ignore[arg-type]
        limit={"kind": "percent", "from_pct": 1, "to_pct": 50},  # type: ignore[arg-type]
    )
    sid = scenario(
        herald, graph(campaign_node("1", hello)), capture=capture, reentry=sc.ReentryMode.ONCE_EVER
    )
    assert herald.scenarios.upcoming_runs(sid, 12)[:2] == [
        datetime(2026, 3, 2, 19, 30, tzinfo=UTC),
        datetime(2026, 3, 3, 19, 30, tzinfo=UTC),
    ]
    herald.runtime.drain()
    clock.set(datetime(2026, 3, 2, 19, 30, tzinfo=UTC))
    herald.tick()
    herald.runtime.drain()
    expected = sorted(p for p in pids if percent_bucket(p) <= 50)
    assert sorted(messages_of(herald, hello)) == expected and expected
    joined = imported(herald, *(f"j{i}@mail.example" for i in range(30)), tier="gold")  # between the runs
    clock.set(datetime(2026, 3, 3, 19, 30, tzinfo=UTC))
    herald.tick()
    herald.runtime.drain()
    newcomers = sorted(p for p in joined if percent_bucket(p) <= 50)
    assert newcomers  # the segment is evaluated anew at each run; once ever keeps the first ones out
    assert sorted(messages_of(herald, hello)) == sorted(expected + newcomers)
    assert all(len(m) == 1 for m in messages_of(herald, hello).values())
    assert herald.scenarios.scenario(sid).runs_started == 2


def test_manual_entry_by_ids_or_by_segment_and_the_statistics(herald: Herald) -> None:
    ready(herald)
    hello = trigger(herald, "Hello")
    sid = scenario(
        herald, graph(campaign_node("1", hello)), capture=ApiCapture(), reentry=sc.ReentryMode.ONCE_EVER
    )
    pids = imported(herald, "m1@mail.example", "m2@mail.example", "m3@mail.example")
    segment = herald.segments.create("static", SegmentSettings(name="Two"), CTX)
    herald.segments.add_profiles(segment.segment_id, pids[:2], "e1", CTX)
    herald.runtime.drain()
    assert herald.scenarios.send_profiles(sid, [pids[2]], None, "by-ids", CTX) == 1
    assert herald.scenarios.send_profiles(sid, None, segment.segment_id, "by-segment", CTX) == 2
    herald.scenarios.send_profiles(sid, pids, None, "again", CTX)
    herald.runtime.drain()
    assert sorted(messages_of(herald, hello)) == sorted(pids)
    today = START.date()
    stats = herald.scenarios.statistics(sid, today, today)
    assert (stats["entered"], stats["completed"], stats["rejected"], stats["in_process"]) == (3, 3, 3, 0)
    assert stats["nodes"] == [{"node_id": "1", "entered": 3, "failed": 0, "exited": {"next": 3}}]


def test_a_webhooks_credentials_are_sealed_in_the_log_kept_across_an_edit_and_sent_in_clear(
    open_herald: Herald, receiver: str
) -> None:
    herald = open_herald
    ready(herald)
    hook = {
        "id": "h",
        "type": "webhook",
        "url": receiver + "/call?api_key=s3cret-key&list=7",
        "params": [{"name": "token", "source": "custom", "value": "t0ken-value"},
                   {"name": "who", "source": "custom", "value": "{lead.email}"}],
    }  # fmt: skip
    sid = scenario(herald, graph(hook))
    state = herald.scenarios.scenario(sid)
    assert state.settings is not None and state.current is not None
    shown = state.current.graph.model_dump(mode="json")
    assert shown["nodes"][0]["url"].endswith("/call?api_key=***&list=7")
    assert shown["nodes"][0]["params"][0]["value"] == "***"
    again = graph(*shown["nodes"], {"id": "z", "type": "pause", "wait": {"kind": "relative", "days": 1}})
    again = again.model_copy(
        update={"nodes": (again.nodes[0].model_copy(update={"next": "z"}), again.nodes[1])}
    )
    herald.scenarios.change(sid, state.settings, again, [], CTX)  # sent back masked: the sealed values stay
    herald.runtime.drain()
    imported(herald, "sec@mail.example")
    herald.webhooks.call_due()
    [call] = _Receiver.calls
    assert call["query"]["api_key"] == ["s3cret-key"] and call["query"]["token"] == ["t0ken-value"]
    assert call["query"]["who"] == ["sec@mail.example"]
    stored = b"".join(orjson.dumps(e.data) for e in herald.store.read_all(1))
    assert b"s3cret-key" not in stored and b"t0ken-value" not in stored
