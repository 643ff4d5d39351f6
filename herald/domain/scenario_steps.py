"""The decider that moves a scenario's instances: entry by re-entry mode, and a decider per node type.

Running (`_advance`): from a node, the decider goes on through every node it can decide alone —
pauses that need no wait, conditions checked once, splits, content filters — and stops at a wait
(`ScenarioWaitScheduled`), at a node whose action changes other objects (the processor does it and
reports back with `FinishEffect`), at a webhook (the webhook worker calls and its answer comes
back as an event), or at the end of the path.

Exactly-once: each decision is appended with ids derived from its cause; a cause already decided
(`EntryCause.position` at or below what the journey has decided) decides nothing; an action's
effect carries an id derived from the step, so doing it again adds nothing.

Decisions where the guide is silent:
- Conditions are evaluated with the segment evaluator in the account's time zone; a timed
  condition's timer is due at its deadline or when `segment_eval.next_change` says the result
  may change with no event (a history window closing), whichever is first; at the timer it is
  evaluated as of the timer's instant.
- A node that fails (a trigger campaign that is not active, a field that cannot take the value,
  a webhook that keeps failing) records `ScenarioNodeFailed` and the instance goes on along its
  output; an assign-promo-code node that cannot assign ends the instance (the guide).
- Webhooks are retried on a timeout, a connection failure or a 5xx/429 answer, `attempts` times in
  all, after 1, 2, 4… minutes (at most an hour).
- In reset mode a capture resets the newest running instance; older ones (left from a mode edit)
  end with the reason `reset`.
- An instance at a node whose type an edit changed enters that node again (it now does something
  else); a wait already running at a node that still exists keeps its due time.
- While the scenario is off nothing acts: an instance due to act sleeps or ends (`_held`); an
  event that makes a timed condition true counts as waking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import JsonValue

from herald.domain.content_filter import holds
from herald.domain.decider import Decider
from herald.domain.events import Event
from herald.domain.profiles import ProfileState
from herald.domain.scenario_graph import (
    AnyNode,
    ConditionNode,
    ContentFilterNode,
    PauseNode,
    SplitNode,
    WebhookNode,
    output,
)
from herald.domain.scenario_instances import (
    Awaiting,
    EntryCause,
    Instance,
    JourneyState,
    ProfileEnteredScenario,
    ProfileRejectedByReentryRule,
    ScenarioConditionEvaluated,
    ScenarioEntryRequested,
    ScenarioInstanceAsleep,
    ScenarioInstanceCompleted,
    ScenarioInstanceMoved,
    ScenarioInstanceReset,
    ScenarioInstanceTerminated,
    ScenarioInstanceWoke,
    ScenarioNodeEntered,
    ScenarioNodeExited,
    ScenarioNodeFailed,
    ScenarioWaitScheduled,
    evolve,
)
from herald.domain.scenario_waits import wait_until, wait_zone
from herald.domain.scenarios import ReentryMode, ScenarioState
from herald.domain.segment_eval import ProfileFacts, matches, next_change, percent_bucket
from herald.domain.segments import CountLimit, Source

RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)


# --- what the decider is told ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """Everything impure a decision needs: the scenario now, the profile and its facts, the time."""

    scenario: ScenarioState
    profile: ProfileState
    facts: ProfileFacts
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class EffectOutcome:
    """What the processor's action did: the detail to record, or why it failed, or why the run ends."""

    detail: Mapping[str, JsonValue] = field(default_factory=dict)
    error: str | None = None
    end_reason: str | None = None


# --- commands ----------------------------------------------------------------------------------


EntrySource = Literal["api", "manual", "schedule"]


@dataclass(frozen=True, slots=True)
class RequestEntry:
    scenario_id: str
    profile_id: str
    request_id: str
    source: EntrySource
    at: datetime
    content: Mapping[str, JsonValue] | None = None


@dataclass(frozen=True, slots=True)
class Enter:
    context: Context
    source: str
    cause: EntryCause
    content: Mapping[str, JsonValue] | None = None


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on with an instance whose timer fired, whose webhook answered, or that woke."""

    context: Context
    entry: int


@dataclass(frozen=True, slots=True)
class FinishEffect:
    context: Context
    entry: int
    outcome: EffectOutcome


@dataclass(frozen=True, slots=True)
class Reevaluate:
    """An event that can change a timed condition's result arrived: check it again."""

    context: Context
    entry: int


@dataclass(frozen=True, slots=True)
class Adopt:
    """A version was published: place the instances at nodes it removed or changed."""

    context: Context


@dataclass(frozen=True, slots=True)
class Wake:
    """The scenario is active again: its sleeping instances wake."""

    context: Context


@dataclass(frozen=True, slots=True)
class EndAll:
    """The scenario was deleted: every running instance ends."""

    context: Context


JourneyCommand = RequestEntry | Enter | Continue | FinishEffect | Reevaluate | Adopt | Wake | EndAll


# --- the run ----------------------------------------------------------------------------------


class _Run:
    """The events of one decision, each folded as it is made so the next step sees it."""

    def __init__(self, state: JourneyState, context: Context) -> None:
        self.state = state
        self.context = context
        self.events: list[Event] = []

    @property
    def scenario(self) -> ScenarioState:
        return self.context.scenario

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self.state = evolve(self.state, event)

    def instance(self, entry: int) -> Instance:
        return self.state.instances[entry]

    def ids(self, entry: int) -> dict[str, Any]:
        return {
            "scenario_id": self.scenario.scenario_id,
            "profile_id": self.context.profile.profile_id,
            "entry": entry,
            "at": self.context.at,
        }

    def step(self, entry: int) -> dict[str, Any]:
        return {**self.ids(entry), "visit": self.instance(entry).visit}


@dataclass(frozen=True, slots=True)
class _Exit:
    branch: str
    outcome: Mapping[str, JsonValue] = field(default_factory=dict)


def _advance(run: _Run, entry: int, target: str | None) -> None:
    """Run from `target` until a wait, an action, or the end of the path."""
    while True:
        if target is None:
            run.emit(ScenarioInstanceCompleted(**run.ids(entry)))
            return
        node = run.scenario.node(target)
        assert node is not None, "a published graph's outputs name its nodes"
        visit = run.instance(entry).visit + 1
        run.emit(
            ScenarioNodeEntered(
                **run.ids(entry),
                visit=visit,
                node_id=node.id,
                node_type=node.type,
                version=run.scenario.version,
            )
        )
        step = _STEPS.get(type(node))
        exit_ = step(run, entry, node) if step is not None else None
        if exit_ is None:
            return
        target = _leave(run, entry, node, exit_)


def _leave(run: _Run, entry: int, node: AnyNode, exit_: _Exit) -> str | None:
    run.emit(
        ScenarioNodeExited(
            **run.step(entry), node_id=node.id, branch=exit_.branch, outcome=dict(exit_.outcome)
        )
    )
    return output(node, exit_.branch)


# --- a decider per node type ------------------------------------------------------------------


def _pause(run: _Run, entry: int, node: AnyNode) -> _Exit | None:
    assert isinstance(node, PauseNode)
    context = run.context
    zone = wait_zone(
        node.timezone, node.use_profile_timezone, context.profile.timezone, context.account_timezone
    )
    due = wait_until(node.wait, context.at, zone)
    if due <= context.at:
        return _Exit("next")
    run.emit(ScenarioWaitScheduled(**run.step(entry), node_id=node.id, due_at=due, purpose="pause"))
    return None


def _condition(run: _Run, entry: int, node: AnyNode) -> _Exit | None:
    assert isinstance(node, ConditionNode)
    at = run.context.at
    if _evaluated(run, entry, node, at):
        return _Exit("true")
    if node.wait is None:
        return _Exit("false")
    deadline = at + node.wait
    _wait_for_condition(run, entry, node, at, deadline)
    return None


def _evaluated(run: _Run, entry: int, node: ConditionNode, when: datetime) -> bool:
    result = condition_holds(node, run.context, when)
    run.emit(ScenarioConditionEvaluated(**run.step(entry), node_id=node.id, result=result))
    return result


def _wait_for_condition(
    run: _Run, entry: int, node: ConditionNode, when: datetime, deadline: datetime
) -> None:
    due = _recheck_at(node, run.context, when, deadline)
    run.emit(
        ScenarioWaitScheduled(
            **run.step(entry), node_id=node.id, due_at=due, purpose="condition", deadline=deadline
        )
    )


def _recheck_at(node: ConditionNode, context: Context, when: datetime, deadline: datetime) -> datetime:
    change = next_change(
        _source(node, context), context.profile, context.facts, when, context.account_timezone
    )
    return deadline if change is None else min(change, deadline)


def condition_holds(node: ConditionNode, context: Context, when: datetime) -> bool:
    """The condition node's rules and percent window for the profile, as of `when`."""
    return matches(_source(node, context), context.profile, context.facts, when, context.account_timezone)


def _source(node: ConditionNode, context: Context) -> Source:
    settings = context.scenario.settings
    assert settings is not None
    return Source(
        database_id=settings.database_id,
        condition=node.condition,
        rules=node.rules,
        groups=node.groups,
        limit=node.limit or CountLimit(),
    )


def _split(run: _Run, entry: int, node: AnyNode) -> _Exit | None:
    assert isinstance(node, SplitNode)
    profile_id = run.context.profile.profile_id
    if node.mode == "static":
        bucket = percent_bucket(profile_id)  # the percent windows' bucket: a profile's branch never changes
    else:
        bucket = random_bucket(run.scenario.scenario_id, profile_id, entry, run.instance(entry).visit)
    reached = 0
    for i, branch in enumerate(node.branches):
        reached += branch.percent
        if bucket <= reached:
            return _Exit(f"branch_{i + 1}", {"bucket": bucket})
    raise AssertionError("the branches add up to 100")  # pragma: no cover - checked at save


def random_bucket(scenario_id: str, profile_id: str, entry: int, visit: int) -> int:
    """A bucket 1–100 drawn anew for every step of every instance, the same when the step is decided again."""
    digest = hashlib.sha256(f"scenario-split/{scenario_id}/{profile_id}/{entry}/{visit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100 // 2**64 + 1


def _content_filter(run: _Run, entry: int, node: AnyNode) -> _Exit | None:
    assert isinstance(node, ContentFilterNode)
    return _Exit("true" if holds(node.filter, run.instance(entry).content) else "false")


_STEPS: Mapping[type, Callable[[_Run, int, AnyNode], _Exit | None]] = {
    PauseNode: _pause,
    ConditionNode: _condition,
    SplitNode: _split,
    ContentFilterNode: _content_filter,
}
"""Nodes the decider goes through alone; any other node stops the run until its action is done."""


# --- decide ------------------------------------------------------------------------------------


def decide(command: JourneyCommand, state: JourneyState) -> list[Event]:
    return decided(command, state)[0]


def decided(command: JourneyCommand, state: JourneyState) -> tuple[list[Event], JourneyState]:
    """The events `command` decides and the state they leave (folded as they were made, once)."""
    if isinstance(command, RequestEntry):
        requested = ScenarioEntryRequested(
            scenario_id=command.scenario_id,
            profile_id=command.profile_id,
            request_id=command.request_id,
            source=command.source,
            content=dict(command.content) if command.content is not None else None,
            at=command.at,
        )
        return [requested], evolve(state, requested)
    run = _Run(state, command.context)
    _HANDLERS[type(command)](run, command)
    return run.events, run.state


def _enter(run: _Run, command: Enter) -> None:
    cause = command.cause
    decided = run.state.decided_request if cause.kind == "request" else run.state.decided_position
    if cause.position <= decided:
        return  # decided before: a redelivered cause
    common = {
        "scenario_id": run.scenario.scenario_id,
        "profile_id": run.context.profile.profile_id,
        "at": run.context.at,
        "source": command.source,
        "cause": cause,
    }
    refusal = _refusal(run)
    if refusal is not None:
        rule, reason = refusal
        run.emit(ProfileRejectedByReentryRule(**common, rule=rule, reason=reason))
        return
    content = dict(command.content) if command.content is not None else None
    settings = run.scenario.settings
    assert settings is not None and run.scenario.current is not None
    running = run.state.running()
    if settings.reentry is ReentryMode.RESET_TO_START and running:
        newest, older = running[-1], running[:-1]
        for instance in older:
            run.emit(
                ScenarioInstanceTerminated(
                    **run.ids(instance.entry), reason="reset", node_id=instance.node_id
                )
            )
        run.emit(ScenarioInstanceReset(**common, entry=newest.entry, content=content))
        _advance(run, newest.entry, run.scenario.current.graph.first)
        return
    entry = run.state.entries + 1
    run.emit(ProfileEnteredScenario(**common, entry=entry, content=content))
    _advance(run, entry, run.scenario.current.graph.first)


def _refusal(run: _Run) -> tuple[str, str] | None:
    scenario, profile = run.scenario, run.context.profile
    settings = scenario.settings
    if settings is None or not scenario.exists or not scenario.active:
        return "inactive", "the scenario is not active"
    if not profile.exists or profile.database_id != settings.database_id:
        return "profile", f"the profile is not one of database {settings.database_id}'s"
    mode = settings.reentry
    if mode is ReentryMode.ONCE_EVER and run.state.entries:
        return mode.value, "the profile was in this scenario before, and may enter it only once"
    if mode is ReentryMode.IGNORE_IF_ACTIVE and run.state.running():
        return mode.value, "the profile is in this scenario now"
    return None


def _held(run: _Run, instance: Instance) -> bool:
    """End or put to sleep an instance that would act now but may not; True if it did."""
    scenario, entry = run.scenario, instance.entry
    if not scenario.exists:
        run.emit(
            ScenarioInstanceTerminated(**run.ids(entry), reason="scenario_deleted", node_id=instance.node_id)
        )
        return True
    if not run.context.profile.exists:
        run.emit(
            ScenarioInstanceTerminated(**run.ids(entry), reason="profile_gone", node_id=instance.node_id)
        )
        return True
    if scenario.active:
        return False
    assert scenario.settings is not None
    if scenario.settings.sleeping_profiles:
        run.emit(ScenarioInstanceAsleep(**run.step(entry)))
    else:
        run.emit(
            ScenarioInstanceTerminated(
                **run.ids(entry), reason="woke_while_inactive", node_id=instance.node_id
            )
        )
    return True


def _relocated(run: _Run, instance: Instance) -> bool:
    """Place an instance whose node the current version removed or changed; True if it did."""
    assert instance.node_id is not None
    node = run.scenario.node(instance.node_id)
    if node is not None and node.type == instance.node_type:
        return False
    to = instance.node_id if node is not None else run.scenario.removed.get(instance.node_id)
    run.emit(
        ScenarioInstanceMoved(
            **run.step(instance.entry), node_id=instance.node_id, to=to, version=run.scenario.version
        )
    )
    if to is None:
        run.emit(
            ScenarioInstanceTerminated(
                **run.ids(instance.entry), reason="node_removed", node_id=instance.node_id
            )
        )
    else:
        _advance(run, instance.entry, to)
    return True


def _continue(run: _Run, command: Continue) -> None:
    instance = run.state.instances.get(command.entry)
    if instance is None or instance.finished or instance.awaiting is None:
        return
    waits = instance.awaiting
    if waits.kind not in ("ready", "answered", "effect") or _held(run, instance) or _relocated(run, instance):
        return
    node = run.scenario.node(instance.node_id or "")
    assert node is not None
    if waits.kind == "ready" and isinstance(node, ConditionNode):
        _recheck(run, instance, node, waits)
    elif waits.kind == "ready":
        _advance(run, instance.entry, _leave(run, instance.entry, node, _Exit("next")))
    elif waits.kind == "answered" and isinstance(node, WebhookNode):
        _after_call(run, instance, node, waits)


def _recheck(run: _Run, instance: Instance, node: ConditionNode, waits: Awaiting) -> None:
    """A timed condition's timer fired: true, false at the deadline, or wait on."""
    assert waits.due_at is not None and waits.deadline is not None
    entry = instance.entry
    if _evaluated(run, entry, node, waits.due_at):
        _advance(run, entry, _leave(run, entry, node, _Exit("true")))
    elif waits.due_at >= waits.deadline:
        _advance(run, entry, _leave(run, entry, node, _Exit("false")))
    else:
        _wait_for_condition(run, entry, node, waits.due_at, waits.deadline)


def _after_call(run: _Run, instance: Instance, node: WebhookNode, waits: Awaiting) -> None:
    answer = waits.answer
    assert answer is not None
    entry = instance.entry
    detail: dict[str, JsonValue] = {"status": answer.status, "attempts": waits.attempt}
    if answer.ok:
        _advance(run, entry, _leave(run, entry, node, _Exit("next", {**detail, "body": answer.body})))
        return
    if answer.retryable and waits.attempt < node.attempts:
        due = run.context.at + retry_delay(waits.attempt)
        run.emit(
            ScenarioWaitScheduled(
                **run.step(entry), node_id=node.id, due_at=due, purpose="retry", attempt=waits.attempt + 1
            )
        )
        return
    run.emit(ScenarioNodeFailed(**run.step(entry), node_id=node.id, reason=answer.error or "failed"))
    _advance(run, entry, _leave(run, entry, node, _Exit("next", {**detail, "error": answer.error})))


def retry_delay(attempt: int) -> timedelta:
    """How long after the `attempt`-th failed call the next one is made: 1, 2, 4… minutes, at most an hour."""
    delay: timedelta = RETRY_BASE * 2 ** (attempt - 1)
    return min(delay, RETRY_CAP)


def _finish_effect(run: _Run, command: FinishEffect) -> None:
    instance = run.state.instances.get(command.entry)
    if instance is None or instance.awaiting is None or instance.awaiting.kind != "effect":
        return
    assert instance.node_id is not None
    entry, outcome = instance.entry, command.outcome
    if outcome.end_reason is not None:
        run.emit(
            ScenarioInstanceTerminated(**run.ids(entry), reason=outcome.end_reason, node_id=instance.node_id)
        )
        return
    node = run.scenario.node(instance.node_id) or run.scenario.node(instance.node_id, instance.version)
    assert node is not None
    detail = dict(outcome.detail)
    if outcome.error is not None:
        run.emit(ScenarioNodeFailed(**run.step(entry), node_id=node.id, reason=outcome.error))
        detail["error"] = outcome.error
    _advance(run, entry, _leave(run, entry, node, _Exit("next", detail)))


def _reevaluate(run: _Run, command: Reevaluate) -> None:
    instance = run.state.instances.get(command.entry)
    if instance is None or instance.awaiting is None or instance.awaiting.kind != "condition":
        return
    node = run.scenario.node(instance.node_id or "")
    if not isinstance(node, ConditionNode):
        return  # removed or changed: placed when the version is adopted
    waits, at = instance.awaiting, run.context.at
    if condition_holds(node, run.context, at):
        if _held(run, instance):
            return
        run.emit(ScenarioConditionEvaluated(**run.step(instance.entry), node_id=node.id, result=True))
        _advance(run, instance.entry, _leave(run, instance.entry, node, _Exit("true")))
        return
    assert waits.deadline is not None and waits.due_at is not None
    due = _recheck_at(node, run.context, at, waits.deadline)
    if due < waits.due_at:  # a new event brought the next possible change closer
        run.emit(
            ScenarioWaitScheduled(
                **run.step(instance.entry),
                node_id=node.id,
                due_at=due,
                purpose="condition",
                deadline=waits.deadline,
            )
        )


def _adopt(run: _Run, command: Adopt) -> None:
    if not run.scenario.active:
        return  # the instances are placed when they wake
    for instance in run.state.running():
        asleep = instance.awaiting is not None and instance.awaiting.kind == "asleep"
        if instance.node_id is not None and not asleep:
            _relocated(run, run.instance(instance.entry))


def _wake(run: _Run, command: Wake) -> None:
    if not run.scenario.active:
        return
    for instance in run.state.running():
        if instance.awaiting is not None and instance.awaiting.kind == "asleep":
            run.emit(ScenarioInstanceWoke(**run.ids(instance.entry), visit=instance.awaiting.visit))


def _end_all(run: _Run, command: EndAll) -> None:
    for instance in run.state.running():
        run.emit(
            ScenarioInstanceTerminated(
                **run.ids(instance.entry), reason="scenario_deleted", node_id=instance.node_id
            )
        )


_HANDLERS: Mapping[type, Callable[[_Run, Any], None]] = {
    Enter: _enter,
    Continue: _continue,
    FinishEffect: _finish_effect,
    Reevaluate: _reevaluate,
    Adopt: _adopt,
    Wake: _wake,
    EndAll: _end_all,
}


# --- what is due to act on ----------------------------------------------------------------------


def pending_action(state: JourneyState, entry: int, context: Context) -> AnyNode | None:
    """The node whose action the processor should do now for this instance, as it was entered; None if
    it may not act (the scenario is off or gone, the profile is gone, the node was removed or changed:
    `Continue` then ends, sleeps or places the instance)."""
    instance = state.instances.get(entry)
    if instance is None or instance.awaiting is None or instance.awaiting.kind != "effect":
        return None
    scenario = context.scenario
    if not scenario.exists or not scenario.active or not context.profile.exists or instance.node_id is None:
        return None
    current = scenario.node(instance.node_id)
    if current is None or current.type != instance.node_type:
        return None
    return scenario.node(instance.node_id, instance.version) or current


journey_decider: Decider[JourneyCommand, JourneyState] = Decider(JourneyState(), decide, evolve)
