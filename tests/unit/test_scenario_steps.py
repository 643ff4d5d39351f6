"""The journey decider as tables: each re-entry mode, each node type, waits driven to the exact instant.

Given a journey's events, when a command (with the scenario, the profile and the clock), then the
events: read through `trace`, which names each event by what it says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.domain import scenario_instances as si
from herald.domain import scenario_steps as st
from herald.domain import scenarios as sc
from herald.domain.events import Event
from herald.domain.profiles import ProfileCreated, ProfileState, profile_decider
from herald.domain.scenario_capture import ImportCapture
from herald.domain.scenario_graph import AnyNode, ScenarioGraph
from herald.domain.segment_eval import HistoryEvent, ProfileFacts, percent_bucket
from herald.domain.segments import MessageAction

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DB = "5"


def scenario(
    *nodes: dict[str, Any],
    reentry: sc.ReentryMode = sc.ReentryMode.ALLOW_PARALLEL,
    sleeping: bool = False,
    active: bool = True,
) -> sc.ScenarioState:
    settings = sc.ScenarioSettings(
        name="S", database_id=DB, reentry=reentry, sleeping_profiles=sleeping, capture=ImportCapture()
    )
    events: list[Event] = [
        sc.ScenarioCreated(scenario_id="1", settings=settings, at=T0),
        sc.ScenarioPublished(
            scenario_id="1", version=1, graph=ScenarioGraph.model_validate({"nodes": nodes}), at=T0
        ),
    ]
    if active:
        events.append(sc.ScenarioActivated(scenario_id="1", at=T0))
    return sc.scenario_decider.fold(events)


def republished(
    state: sc.ScenarioState, *nodes: dict[str, Any], removed: dict[str, str | None]
) -> sc.ScenarioState:
    event = sc.ScenarioPublished(
        scenario_id="1",
        version=state.version + 1,
        graph=ScenarioGraph.model_validate({"nodes": nodes}),
        removed=tuple(sc.RemovedNode(node_id=k, move_to=v) for k, v in removed.items()),
        at=T0,
    )
    return sc.evolve(state, event)


def profile(**fields: Any) -> ProfileState:
    created = ProfileCreated(
        profile_id="p1",
        database_id=DB,
        md5_id="m",
        xxh_id="x",
        fields={"email": "a@x.org", **fields},
        source="import",
        at=T0,
    )
    return profile_decider.fold([created])


def context(
    state: sc.ScenarioState,
    at: datetime = T0,
    who: ProfileState | None = None,
    facts: ProfileFacts | None = None,
) -> st.Context:
    return st.Context(state, who or profile(), facts or ProfileFacts(), "UTC", at)


def cause(position: int = 10, kind: str = "event") -> si.EntryCause:
    return si.EntryCause(kind=kind, event_id=f"e{position}", position=position)  # type: ignore[arg-type]


def enter(state: sc.ScenarioState, position: int = 10, at: datetime = T0, **kw: Any) -> st.Enter:
    return st.Enter(context(state, at, **kw), "import", cause(position))


def decided(given: Sequence[Event], command: st.JourneyCommand) -> tuple[list[Event], si.JourneyState]:
    before = st.journey_decider.fold(given)
    events = list(st.journey_decider.decide(command, before))
    return events, st.journey_decider.fold(events, before)


def trace(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    """Each event by what it says: ("node", id), ("exit", id, branch), ("wait", purpose, due)…"""
    named: list[tuple[Any, ...]] = []
    for e in events:
        match e:
            case si.ProfileEnteredScenario():
                named.append(("entered", e.entry))
            case si.ProfileRejectedByReentryRule():
                named.append(("rejected", e.rule))
            case si.ScenarioInstanceReset():
                named.append(("reset", e.entry))
            case si.ScenarioNodeEntered():
                named.append(("node", e.node_id))
            case si.ScenarioNodeExited():
                named.append(("exit", e.node_id, e.branch))
            case si.ScenarioConditionEvaluated():
                named.append(("evaluated", e.node_id, e.result))
            case si.ScenarioWaitScheduled():
                named.append(("wait", e.purpose, e.due_at))
            case si.ScenarioNodeFailed():
                named.append(("failed", e.node_id, e.reason))
            case si.ScenarioInstanceMoved():
                named.append(("moved", e.node_id, e.to))
            case si.ScenarioInstanceAsleep():
                named.append(("asleep",))
            case si.ScenarioInstanceWoke():
                named.append(("woke",))
            case si.ScenarioInstanceCompleted():
                named.append(("completed", e.entry))
            case si.ScenarioInstanceTerminated():
                named.append(("terminated", e.reason))
            case _:
                named.append((type(e).__name__,))
    return named


def pause(node_id: str, next_: str | None = None, **wait: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "pause", "wait": wait or {"kind": "relative", "days": 1}, "next": next_}


def campaign(node_id: str, next_: str | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": "campaign", "campaign_id": "9", "next": next_}


def field_is(name: str, value: Any, **wait: int) -> dict[str, Any]:
    """A condition node `c` on one string field."""
    rule = {"kind": "field", "field": name, "operator": "equal", "value": value, "type": "string"}
    return {"id": "c", "type": "condition", "rules": [rule], "true": "yes", "false": "no", **wait}


YES_NO = (campaign("yes"), campaign("no"))


def elapsed(events: Sequence[Event], at: datetime | None = None) -> si.ScenarioWaitElapsed:
    """The timer of the last wait in `events`, fired at its due time."""
    wait = [e for e in events if isinstance(e, si.ScenarioWaitScheduled)][-1]
    return si.wait_elapsed("1", "p1", wait.entry, wait.visit, wait.due_at, at or wait.due_at)


# --- re-entry -------------------------------------------------------------------------------------

ONE_PAUSE = (pause("w"),)


def first_entry(state: sc.ScenarioState) -> list[Event]:
    events, _ = decided([], enter(state))
    return events


@pytest.mark.parametrize(
    ("mode", "while_in", "after_exit"),
    [
        (sc.ReentryMode.ONCE_EVER, [("rejected", "once_ever")], [("rejected", "once_ever")]),
        (
            sc.ReentryMode.IGNORE_IF_ACTIVE,
            [("rejected", "ignore_if_active")],
            [("entered", 2), ("node", "w")],
        ),
        (
            sc.ReentryMode.RESET_TO_START,
            [("reset", 1), ("node", "w")],
            [("entered", 2), ("node", "w")],
        ),
        (sc.ReentryMode.ALLOW_PARALLEL, [("entered", 2), ("node", "w")], [("entered", 2), ("node", "w")]),
    ],
)
def test_each_reentry_mode(
    mode: sc.ReentryMode, while_in: list[tuple[Any, ...]], after_exit: list[tuple[Any, ...]]
) -> None:
    state = scenario(*ONE_PAUSE, reentry=mode)
    first = first_entry(state)
    assert trace(first) == [("entered", 1), ("node", "w"), ("wait", "pause", T0 + timedelta(days=1))]
    again, _ = decided(first, enter(state, position=11, at=T0 + timedelta(hours=1)))
    assert trace(again)[:2] == while_in
    done = [*first, elapsed(first)]
    finished, _ = decided(done, st.Continue(context(state, T0 + timedelta(days=1)), 1))
    assert trace(finished) == [("exit", "w", "next"), ("completed", 1)]
    later, _ = decided([*done, *finished], enter(state, position=12, at=T0 + timedelta(days=2)))
    assert trace(later)[:2] == after_exit


def test_a_reset_restarts_the_instance_and_its_old_timer_no_longer_counts() -> None:
    state = scenario(*ONE_PAUSE, reentry=sc.ReentryMode.RESET_TO_START)
    first = first_entry(state)
    reset, journey = decided(first, enter(state, position=11, at=T0 + timedelta(hours=5)))
    assert trace(reset)[-1] == ("wait", "pause", T0 + timedelta(days=1, hours=5))
    stale = elapsed(first)  # the first visit's timer fires
    after = st.journey_decider.evolve(journey, stale)
    assert after.instances[1].awaiting is not None and after.instances[1].awaiting.kind == "timer"


def test_a_capture_decided_already_decides_nothing() -> None:
    state = scenario(*ONE_PAUSE)
    first = first_entry(state)
    assert decided(first, enter(state, position=10))[0] == []
    assert decided(first, enter(state, position=9))[0] == []


@pytest.mark.parametrize(
    ("state", "who", "rule"),
    [
        (scenario(*ONE_PAUSE, active=False), profile(), "inactive"),
        (scenario(*ONE_PAUSE), replace(profile(), database_id="6"), "profile"),
        (scenario(*ONE_PAUSE), replace(profile(), deleted=True), "profile"),
    ],
)
def test_entry_is_refused_with_the_reason(state: sc.ScenarioState, who: ProfileState, rule: str) -> None:
    events, _ = decided([], st.Enter(context(state, who=who), "manual", cause(1, "request")))
    assert trace(events) == [("rejected", rule)]


# --- pauses, conditions, splits, filters ----------------------------------------------------------


def test_a_pause_is_driven_to_the_exact_instant_then_the_next_node_runs() -> None:
    state = scenario(pause("w", "t", kind="weekday", weekday="sunday", time="11:30"), campaign("t"))
    first = first_entry(state)
    due = datetime(2026, 3, 8, 11, 30, tzinfo=UTC)
    assert trace(first)[-1] == ("wait", "pause", due)
    events, journey = decided([*first, elapsed(first)], st.Continue(context(state, due), 1))
    assert trace(events) == [("exit", "w", "next"), ("node", "t")]
    assert journey.instances[1].awaiting == si.Awaiting("effect", 2, set_at=journey.version)


def test_a_pause_that_needs_no_wait_goes_straight_on() -> None:
    state = scenario(pause("w", "t", kind="window", start="08:00", end="20:00"), campaign("t"))
    assert trace(first_entry(state)) == [("entered", 1), ("node", "w"), ("exit", "w", "next"), ("node", "t")]


@pytest.mark.parametrize(
    ("use_profile", "pause_zone", "due"),
    [
        (True, None, datetime(2026, 3, 3, 1, 0, tzinfo=UTC)),  # 10:00 in Tokyo (UTC+9)
        (False, None, datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),  # the account's UTC
        (False, "Europe/Moscow", datetime(2026, 3, 3, 7, 0, tzinfo=UTC)),  # the pause's zone (UTC+3)
    ],
)
def test_a_pause_counts_in_the_profiles_time_zone_when_asked_else_its_own_or_the_accounts(
    use_profile: bool, pause_zone: str | None, due: datetime
) -> None:
    node = pause("w", "t", kind="time_of_day", time="10:00")
    state = scenario({**node, "use_profile_timezone": use_profile, "timezone": pause_zone}, campaign("t"))
    events, _ = decided([], enter(state, who=profile(_tz="Asia/Tokyo")))
    assert trace(events)[-1] == ("wait", "pause", due)


@pytest.mark.parametrize(("tier", "branch"), [("gold", "yes"), ("basic", "no")])
def test_a_condition_checked_once(tier: str, branch: str) -> None:
    state = scenario(field_is("tier", "gold"), *YES_NO)
    events, _ = decided([], enter(state, who=profile(tier=tier)))
    result = branch == "yes"
    exit_ = "true" if result else "false"
    assert trace(events) == [
        ("entered", 1),
        ("node", "c"),
        ("evaluated", "c", result),
        ("exit", "c", exit_),
        ("node", branch),
    ]


def test_a_timed_condition_goes_true_on_a_change_before_its_deadline() -> None:
    state = scenario(field_is("tier", "gold", wait_hours=1), *YES_NO)
    first, _ = decided([], enter(state, who=profile(tier="basic")))
    assert trace(first)[-2:] == [("evaluated", "c", False), ("wait", "condition", T0 + timedelta(hours=1))]
    nothing, _ = decided(
        first, st.Reevaluate(context(state, T0 + timedelta(minutes=5), profile(tier="basic")), 1)
    )
    assert nothing == []
    later = T0 + timedelta(minutes=20)
    events, _ = decided(first, st.Reevaluate(context(state, later, profile(tier="gold")), 1))
    assert trace(events) == [("evaluated", "c", True), ("exit", "c", "true"), ("node", "yes")]


def test_a_timed_condition_is_decided_false_at_its_deadline_by_the_timer() -> None:
    state = scenario(field_is("tier", "gold", wait_hours=1), *YES_NO)
    first, _ = decided([], enter(state, who=profile(tier="basic")))
    deadline = T0 + timedelta(hours=1)
    events, _ = decided(
        [*first, elapsed(first)], st.Continue(context(state, deadline, profile(tier="basic")), 1)
    )
    assert trace(events) == [("evaluated", "c", False), ("exit", "c", "false"), ("node", "no")]


def test_a_timed_condition_rechecks_when_a_history_window_closes_with_no_event() -> None:
    # "not opened in the last 1 day": true once the open of an hour ago is more than a day old
    rule = {
        "kind": "message_history",
        "action": "opened",
        "never": True,
        "period": {"kind": "last_days", "days": 1},
    }
    node = {"id": "c", "type": "condition", "rules": [rule], "true": "yes", "false": "no", "wait_days": 3}
    state = scenario(node, *YES_NO)
    opened = ProfileFacts(history=(HistoryEvent(MessageAction.OPENED, T0 - timedelta(hours=1)),))
    first, _ = decided([], enter(state, facts=opened))
    closes = T0 + timedelta(hours=23)
    assert trace(first)[-1] == ("wait", "condition", closes)
    events, _ = decided([*first, elapsed(first)], st.Continue(context(state, closes, facts=opened), 1))
    assert trace(events) == [("evaluated", "c", True), ("exit", "c", "true"), ("node", "yes")]


def test_a_percent_window_on_a_condition_uses_the_profiles_bucket() -> None:
    bucket = percent_bucket("p1")
    inside = {
        "id": "c",
        "type": "condition",
        "limit": {"kind": "percent", "from_pct": bucket, "to_pct": bucket},
        "true": "yes",
        "false": "no",
    }
    events, _ = decided([], enter(scenario(inside, *YES_NO)))
    assert ("exit", "c", "true") in trace(events)


def test_a_static_split_always_takes_the_profiles_percent_bucket_branch() -> None:
    bucket = percent_bucket("p1")
    split = {
        "id": "s",
        "type": "split",
        "mode": "static",
        "branches": [{"percent": bucket, "next": None}, {"percent": 100 - bucket, "next": None}],
    }
    if bucket == 100:
        split["branches"] = [{"percent": 99}, {"percent": 1}]
    state = scenario(split, reentry=sc.ReentryMode.ALLOW_PARALLEL)
    first = first_entry(state)
    again, _ = decided(first, enter(state, position=11))
    branch = "branch_2" if bucket == 100 else "branch_1"
    assert ("exit", "s", branch) in trace(first) and ("exit", "s", branch) in trace(again)


def test_a_random_split_draws_per_step_and_the_same_again_when_redecided() -> None:
    split = {"id": "s", "type": "split", "mode": "random", "branches": [{"percent": 50}, {"percent": 50}]}
    state = scenario(split)
    draws = {st.random_bucket("1", "p1", entry, 1) for entry in range(1, 41)}
    assert len(draws) > 10  # it varies by instance
    first = first_entry(state)
    assert first == first_entry(state)
    bucket = st.random_bucket("1", "p1", 1, 1)
    assert ("exit", "s", "branch_1" if bucket <= 50 else "branch_2") in trace(first)


def test_a_content_filter_reads_the_entrys_content() -> None:
    node = {
        "id": "f",
        "type": "content_filter",
        "true": "yes",
        "false": "no",
        "filter": {"rules": [{"field": "price", "type": "number", "operator": "gte", "value": 9000}]},
    }
    state = scenario(node, *YES_NO)
    rich = st.Enter(context(state), "api", cause(1, "request"), {"price": 9500})
    poor = st.Enter(context(state), "api", cause(1, "request"), {"price": 10})
    assert ("exit", "f", "true") in trace(decided([], rich)[0])
    assert ("exit", "f", "false") in trace(decided([], poor)[0])


# --- every node type -----------------------------------------------------------------------------

ACTIONS: dict[str, dict[str, Any]] = {
    "campaign": {"campaign_id": "9"},
    "copy_to_database": {"database_id": "2"},
    "update_data": {"operations": [{"field": "age", "op": "increment", "value": 1}]},
    "subscription": {"resource_id": "7", "channels": ["email"]},
    "goal": {"pixel_id": "3", "goals": ["Покупка"], "value": 9000},
    "promo_code": {"program_id": "4"},
    "stop_list": {"stop_list_id": "5", "resource_id": "7"},
    "static_segment": {"segment_id": "6"},
}
ALONE: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {
    "pause": ({"wait": {"kind": "relative", "hours": 2}}, [("wait", "pause", T0 + timedelta(hours=2))]),
    "condition": (
        {"rules": [], "true": "z"},
        [("evaluated", "n", True), ("exit", "n", "true"), ("node", "z")],
    ),
    "split": ({"branches": [{"percent": 100, "next": "z"}]}, [("exit", "n", "branch_1"), ("node", "z")]),
    "content_filter": ({"filter": {}, "true": "z"}, [("exit", "n", "true"), ("node", "z")]),
    "webhook": ({"url": "http://example.com"}, []),
}


def node_of(node_type: str, options: dict[str, Any]) -> dict[str, Any]:
    single = node_type not in ("condition", "split", "content_filter")
    return {"id": "n", "type": node_type, **({"next": "z"} if single else {}), **options}


def test_the_tables_cover_every_node_type() -> None:
    types = {member.model_fields["type"].default for member in AnyNode.__args__}  # type: ignore[attr-defined]
    assert types == set(ACTIONS) | set(ALONE)


@pytest.mark.parametrize("node_type", sorted(ALONE))
def test_a_node_the_decider_goes_through_alone(node_type: str) -> None:
    options, after = ALONE[node_type]
    state = scenario(node_of(node_type, options), campaign("z"))
    events, journey = decided([], enter(state))
    assert trace(events) == [("entered", 1), ("node", "n"), *after]
    waits = journey.instances[1].awaiting
    expected = {"pause": "timer", "webhook": "call"}.get(node_type, "effect")  # else it reached campaign z
    assert waits is not None and waits.kind == expected


@pytest.mark.parametrize("node_type", sorted(ACTIONS))
def test_an_action_node_stops_until_its_outcome_then_goes_on_or_fails_and_goes_on(node_type: str) -> None:
    state = scenario(node_of(node_type, ACTIONS[node_type]), campaign("z"))
    first = first_entry(state)
    assert trace(first) == [("entered", 1), ("node", "n")]
    journey = st.journey_decider.fold(first)
    pending = st.pending_action(journey, 1, context(state))
    assert pending is not None and (pending.id, pending.type) == ("n", node_type)
    assert st.pending_action(journey, 1, context(replace(state, active=False))) is None  # off: nothing acts
    done, _ = decided(first, st.FinishEffect(context(state), 1, st.EffectOutcome(detail={"k": 1})))
    assert trace(done) == [("exit", "n", "next"), ("node", "z")]
    assert done[0].outcome == {"k": 1}  # type: ignore[attr-defined]
    failed, _ = decided(first, st.FinishEffect(context(state), 1, st.EffectOutcome(error="bad")))
    assert trace(failed) == [("failed", "n", "bad"), ("exit", "n", "next"), ("node", "z")]


# --- actions and webhooks -----------------------------------------------------------------------


def test_an_action_node_waits_for_the_processor_which_reports_its_outcome() -> None:
    state = scenario(campaign("a", "b"), campaign("b"))
    first = first_entry(state)
    journey = st.journey_decider.fold(first)
    node = st.pending_action(journey, 1, context(state))
    assert node is not None and node.id == "a"
    ok = st.EffectOutcome(detail={"message_id": "m1", "status": "queued"})
    events, _ = decided(first, st.FinishEffect(context(state), 1, ok))
    assert trace(events) == [("exit", "a", "next"), ("node", "b")]
    exited = events[0]
    assert isinstance(exited, si.ScenarioNodeExited) and exited.outcome == {
        "message_id": "m1",
        "status": "queued",
    }


def test_a_failed_action_is_recorded_and_the_instance_goes_on() -> None:
    state = scenario(campaign("a"))
    first = first_entry(state)
    failed = st.EffectOutcome(error="campaign 9 is not active: nothing was sent")
    events, _ = decided(first, st.FinishEffect(context(state), 1, failed))
    assert trace(events) == [
        ("failed", "a", "campaign 9 is not active: nothing was sent"),
        ("exit", "a", "next"),
        ("completed", 1),
    ]


def test_a_promo_code_that_cannot_be_assigned_ends_the_instance_at_the_node() -> None:
    state = scenario({"id": "p", "type": "promo_code", "program_id": "7", "next": None})
    first = first_entry(state)
    events, _ = decided(
        first, st.FinishEffect(context(state), 1, st.EffectOutcome(end_reason="promo_unavailable"))
    )
    assert trace(events) == [("terminated", "promo_unavailable")]


def answered(
    first: Sequence[Event], attempt: int, status: int | None, error: str | None, retryable: bool
) -> Event:
    entered = [e for e in first if isinstance(e, si.ScenarioNodeEntered)][-1]
    return si.ScenarioWebhookAnswered(
        scenario_id="1",
        profile_id="p1",
        entry=1,
        visit=entered.visit,
        attempt=attempt,
        method="GET",
        url="http://example.com",
        status=status,
        error=error,
        retryable=retryable,
        at=T0,
    )


WEBHOOK = {"id": "h", "type": "webhook", "url": "http://example.com", "attempts": 2, "next": None}


def test_a_webhook_answer_is_recorded_on_the_exit() -> None:
    state = scenario(WEBHOOK)
    first = first_entry(state)
    assert st.journey_decider.fold(first).instances[1].awaiting == si.Awaiting("call", 1, set_at=2)
    events, _ = decided([*first, answered(first, 1, 200, None, False)], st.Continue(context(state), 1))
    assert trace(events) == [("exit", "h", "next"), ("completed", 1)]
    assert events[0].outcome == {"status": 200, "attempts": 1, "body": ""}  # type: ignore[attr-defined]


def test_a_failing_webhook_is_retried_after_a_backoff_then_fails_the_node() -> None:
    state = scenario(WEBHOOK)
    first = first_entry(state)
    retry, journey = decided(
        [*first, answered(first, 1, 503, "HTTP 503", True)], st.Continue(context(state), 1)
    )
    assert trace(retry) == [("wait", "retry", T0 + timedelta(minutes=1))]
    timer = elapsed(retry)
    journey = st.journey_decider.evolve(journey, timer)
    assert journey.instances[1].awaiting == si.Awaiting("call", 1, attempt=2)
    given = [
        *first,
        answered(first, 1, 503, "HTTP 503", True),
        *retry,
        timer,
        answered(first, 2, 503, "HTTP 503", True),
    ]
    events, _ = decided(given, st.Continue(context(state, T0 + timedelta(minutes=1)), 1))
    assert trace(events) == [("failed", "h", "HTTP 503"), ("exit", "h", "next"), ("completed", 1)]


def test_retries_back_off_doubling_up_to_an_hour() -> None:
    assert [st.retry_delay(n) for n in (1, 2, 3, 7, 12)] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


# --- the welcome scenario's loop ------------------------------------------------------------------


def test_the_welcome_loop_goes_back_to_node_4_and_the_second_time_calls_the_call_centre() -> None:
    sms_sent = {"kind": "message_history", "action": "sent", "channel": "sms", "at_least": 1}
    confirmed = {"kind": "field", "field": "confirmed", "operator": "equal", "value": "yes", "type": "string"}
    state = scenario(
        {"id": "4", "type": "condition", "rules": [confirmed], "wait_hours": 1, "true": "5", "false": "8"},
        campaign("5"),
        {"id": "8", "type": "condition", "rules": [sms_sent], "true": "9", "false": "10"},
        {"id": "9", "type": "webhook", "url": "http://example.com", "next": None},
        campaign("10", "11"),
        pause("11", "4", kind="relative", days=1),
    )
    first = first_entry(state)
    at = T0 + timedelta(hours=1)
    to_sms, _ = decided([*first, elapsed(first)], st.Continue(context(state, at), 1))
    assert trace(to_sms) == [
        ("evaluated", "4", False),
        ("exit", "4", "false"),
        ("node", "8"),
        ("evaluated", "8", False),
        ("exit", "8", "false"),
        ("node", "10"),
    ]
    given = [*first, elapsed(first), *to_sms]
    sent, _ = decided(
        given, st.FinishEffect(context(state, at), 1, st.EffectOutcome(detail={"status": "queued"}))
    )
    assert trace(sent) == [("exit", "10", "next"), ("node", "11"), ("wait", "pause", at + timedelta(days=1))]
    given += sent
    facts = ProfileFacts(history=(HistoryEvent(MessageAction.SENT, at, channel="sms"),))
    back = at + timedelta(days=1)
    looped, journey = decided([*given, elapsed(given)], st.Continue(context(state, back, facts=facts), 1))
    assert trace(looped) == [
        ("exit", "11", "next"),
        ("node", "4"),
        ("evaluated", "4", False),
        ("wait", "condition", back + timedelta(hours=1)),
    ]
    given += [elapsed(given), *looped]
    called, journey = decided(
        [*given, elapsed(given)], st.Continue(context(state, back + timedelta(hours=1), facts=facts), 1)
    )
    assert trace(called) == [
        ("evaluated", "4", False),
        ("exit", "4", "false"),
        ("node", "8"),
        ("evaluated", "8", True),
        ("exit", "8", "true"),
        ("node", "9"),
    ]
    assert journey.instances[1].visit == 7  # 4, 8, 10, 11, 4, 8, 9: each visit its own step


# --- live edits, deactivation, deletion -----------------------------------------------------------


def test_an_instance_at_a_removed_node_moves_to_the_chosen_node() -> None:
    state = scenario(pause("w", "t"), campaign("t"))
    first = first_entry(state)
    edited = republished(state, campaign("t"), campaign("u"), removed={"w": "u"})
    edited = sc.evolve(
        edited,
        sc.ScenarioPublished(  # the start moved: t is first now, u reachable from nowhere
            scenario_id="1",
            version=edited.version + 1,
            at=T0,
            graph=ScenarioGraph.model_validate({"nodes": [campaign("t", "u"), campaign("u")]}),
        ),
    )
    events, _ = decided(first, st.Adopt(context(edited)))
    assert trace(events) == [("moved", "w", "u"), ("node", "u")]


def test_an_instance_at_a_removed_node_ends_when_the_rule_says_end() -> None:
    state = scenario(pause("w", "t"), campaign("t"))
    first = first_entry(state)
    edited = republished(state, campaign("t"), removed={"w": None})
    events, _ = decided(first, st.Adopt(context(edited)))
    assert trace(events) == [("moved", "w", None), ("terminated", "node_removed")]


def test_instances_at_nodes_that_remain_go_on_and_keep_their_due_time() -> None:
    state = scenario(pause("w", "t"), campaign("t"))
    first = first_entry(state)
    edited = republished(state, pause("w", "t", kind="relative", hours=1), campaign("t"), removed={})
    assert decided(first, st.Adopt(context(edited)))[0] == []
    events, _ = decided([*first, elapsed(first)], st.Continue(context(edited, T0 + timedelta(days=1)), 1))
    assert trace(events) == [("exit", "w", "next"), ("node", "t")]


EDITS: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {
    "campaign": ({"campaign_id": "10"}, []),
    "copy_to_database": ({"database_id": "3", "update_existing": True}, []),
    "update_data": ({"operations": [{"field": "age", "op": "decrement", "value": 5}]}, []),
    "subscription": ({"resource_id": "7", "channels": ["sms"], "mode": "update"}, []),
    "goal": ({"pixel_id": "3", "goals": ["Оплата"], "value": 1}, []),
    "promo_code": ({"program_id": "8"}, []),
    "stop_list": ({"stop_list_id": "5", "resource_id": "7", "action": "remove"}, []),
    "static_segment": ({"segment_id": "6", "action": "remove"}, []),
    "webhook": ({"url": "http://example.org/v2", "method": "POST"}, []),
    "pause": (
        {"wait": {"kind": "relative", "hours": 3}},
        [("wait", "pause", T0 + timedelta(days=1, hours=3))],
    ),
    "condition": (
        {"rules": [], "true": None, "false": "z"},
        [("evaluated", "n", True), ("exit", "n", "true")],
    ),
    "split": (
        {"mode": "static", "branches": [{"percent": 50, "next": "z"}, {"percent": 50, "next": "z"}]},
        [("exit", "n", "branch_1" if percent_bucket("p1") <= 50 else "branch_2"), ("node", "z")],
    ),
    "content_filter": ({"filter": {}, "false": "z"}, [("exit", "n", "true")]),
}


@pytest.mark.parametrize("node_type", sorted(EDITS))
def test_every_node_type_may_be_edited_after_launch_and_waiting_profiles_reach_the_new_node(
    node_type: str,
) -> None:
    """Issue 17 item 5: an active scenario's node of any type is edited; a profile waiting before it runs
    the new version's node when its pause ends."""
    before = ACTIONS.get(node_type) or ALONE[node_type][0]
    v2_options, then = EDITS[node_type]
    v2 = ScenarioGraph.model_validate(
        {"nodes": [pause("w", "n"), node_of(node_type, v2_options), campaign("z")]}
    )
    state = scenario(pause("w", "n"), node_of(node_type, before), campaign("z"))
    assert state.settings is not None
    change = sc.ChangeScenario("1", state.settings, v2, (), sc.ScenarioChecks(), "UTC", T0)
    [published] = sc.decide(change, state)
    assert isinstance(published, sc.ScenarioPublished) and published.version == 2
    edited = sc.evolve(state, published)
    first = first_entry(state)
    assert decided(first, st.Adopt(context(edited)))[0] == []  # the profile at the pause stays there
    due = T0 + timedelta(days=1)
    events, journey = decided([*first, elapsed(first)], st.Continue(context(edited, due), 1))
    ended = [("completed", 1)] if node_type in ("condition", "content_filter") else []
    assert trace(events) == [("exit", "w", "next"), ("node", "n"), *then, *ended]
    entered = next(e for e in events if isinstance(e, si.ScenarioNodeEntered))
    assert entered.version == 2
    if node_type in ACTIONS:
        pending = st.pending_action(journey, 1, context(edited, due))
        assert pending == edited.node("n", 2) and pending != state.node("n", 1)


def test_a_node_whose_type_changed_is_entered_again() -> None:
    state = scenario(pause("w"))
    first = first_entry(state)
    edited = republished(state, campaign("w"), removed={})
    events, _ = decided(first, st.Adopt(context(edited)))
    assert trace(events) == [("moved", "w", "w"), ("node", "w")]


def test_an_action_in_flight_at_a_removed_node_is_not_done() -> None:
    state = scenario(campaign("a", "b"), campaign("b"))
    first = first_entry(state)
    edited = republished(state, campaign("b"), removed={"a": "b"})
    journey = st.journey_decider.fold(first)
    assert st.pending_action(journey, 1, context(edited)) is None
    events, _ = decided(first, st.Continue(context(edited), 1))
    assert trace(events) == [("moved", "a", "b"), ("node", "b")]


def inactive(state: sc.ScenarioState) -> sc.ScenarioState:
    return sc.evolve(state, sc.ScenarioDeactivated(scenario_id="1", at=T0))


@pytest.mark.parametrize(
    ("sleeping", "then_"), [(True, [("asleep",)]), (False, [("terminated", "woke_while_inactive")])]
)
def test_a_wait_ending_while_the_scenario_is_off_sleeps_or_ends(
    sleeping: bool, then_: list[tuple[Any, ...]]
) -> None:
    state = scenario(pause("w", "t"), campaign("t"), sleeping=sleeping)
    first = first_entry(state)
    due = T0 + timedelta(days=1)
    events, _ = decided([*first, elapsed(first)], st.Continue(context(inactive(state), due), 1))
    assert trace(events) == then_


def test_a_sleeping_instance_resumes_at_reactivation_where_it_was() -> None:
    state = scenario(pause("w", "t"), campaign("t"), sleeping=True)
    first = first_entry(state)
    slept, _ = decided(
        [*first, elapsed(first)], st.Continue(context(inactive(state), T0 + timedelta(days=1)), 1)
    )
    given = [*first, elapsed(first), *slept]
    back = T0 + timedelta(days=3)
    woke, journey = decided(given, st.Wake(context(state, back)))
    assert trace(woke) == [("woke",)]
    assert (
        journey.instances[1].awaiting is not None and journey.instances[1].awaiting.set_at == journey.version
    )
    events, _ = decided([*given, *woke], st.Continue(context(state, back), 1))
    assert trace(events) == [("exit", "w", "next"), ("node", "t")]


def test_deleting_the_scenario_or_the_profile_ends_its_instances() -> None:
    state = scenario(pause("w"))
    first = first_entry(state)
    deleted = sc.evolve(state, sc.ScenarioDeleted(scenario_id="1", at=T0))
    assert trace(decided(first, st.EndAll(context(deleted)))[0]) == [("terminated", "scenario_deleted")]
    gone = replace(profile(), deleted=True)
    events, _ = decided(
        [*first, elapsed(first)], st.Continue(context(state, T0 + timedelta(days=1), gone), 1)
    )
    assert trace(events) == [("terminated", "profile_gone")]


def test_a_redelivered_timer_or_answer_does_nothing() -> None:
    state = scenario(pause("w", "t"), campaign("t"))
    first = first_entry(state)
    timer = elapsed(first)
    moved, _ = decided([*first, timer], st.Continue(context(state, T0 + timedelta(days=1)), 1))
    again, _ = decided([*first, timer, *moved, timer], st.Continue(context(state, T0 + timedelta(days=1)), 1))
    assert again == []
