"""A profile's runs through one scenario (stream `journey-<scenario_id>-<profile_id>`): every step an event.

The journey stream holds all of one profile's instances of one scenario, so everything needed to
move an instance is key-local: the profile's state, this stream and the scenario's published
version. An instance is (scenario, profile, `entry`); `visit` numbers its steps, so a loop
through one node makes distinct steps and a timer names the step it was set for. This module holds
the events and the state they fold into; `scenario_steps` decides them.

Events, in the order a run makes them:
- inputs: `ScenarioEntryRequested` (the special API call, manual entry, an audience run),
  `ScenarioWaitElapsed` (a durable timer fired), `ScenarioWebhookAnswered` (the webhook worker);
- entry: `ProfileEnteredScenario`, `ProfileRejectedByReentryRule` (with the rule and why),
  `ScenarioInstanceReset` (reset-to-start mode);
- steps: `ScenarioNodeEntered`, `ScenarioConditionEvaluated`, `ScenarioWaitScheduled`,
  `ScenarioNodeFailed`, `ScenarioNodeExited` (with the branch taken and the node's outcome);
- placement: `ScenarioInstanceMoved` (a version removed its node, or changed its type),
  `ScenarioInstanceAsleep`, `ScenarioInstanceWoke` (sleeping profiles);
- end: `ScenarioInstanceCompleted` (a path ended), `ScenarioInstanceTerminated` (with a reason).

What an instance waits for (`Awaiting.kind`): `effect` (the processor's action is due), `call`
(the webhook worker's), `timer` (a pause, or a retry), `condition` (a timed condition: true on an
event that can change it, or decided when its timer fires), `ready` (a timer fired: continue),
`answered` (the webhook answered: continue), `asleep` (sleeping profiles: it was due while the
scenario was off). `set_at` is the journey version whose event put it there: the processor acts on
the event at that version, so a redelivered event finds the instance moved on and does nothing.
A timer or an answer that no longer matches what the instance waits for (it moved on, the wait
was rescheduled) changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.events import Event, registry
from herald.domain.scenario_graph import CALL_TYPES, EFFECT_TYPES

JOURNEY_PREFIX = "journey-"


def journey_stream(scenario_id: str, profile_id: str) -> str:
    return f"{JOURNEY_PREFIX}{scenario_id}-{profile_id}"


def journey_key(stream: str) -> tuple[str, str]:
    """(scenario id, profile id) of a journey stream (scenario ids are numbers: no `-` in them)."""
    scenario_id, _, profile_id = stream[len(JOURNEY_PREFIX) :].partition("-")
    return scenario_id, profile_id


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EntryCause(_Value):
    """What asked for an entry: an event of the log (a capture) or a request on the journey."""

    kind: Literal["event", "request"]
    event_id: str
    event_type: str = ""
    position: int = 0  # the event's global position, or the request's journey version


# --- events ------------------------------------------------------------------------------------


class _JourneyEvent(Event):
    scenario_id: str
    profile_id: str
    at: datetime


class _StepEvent(_JourneyEvent):
    entry: int
    visit: int


@registry.register("ScenarioEntryRequested")
class ScenarioEntryRequested(_JourneyEvent):
    request_id: str
    source: Literal["api", "manual", "schedule"]
    content: dict[str, JsonValue] | None = None


@registry.register("ProfileEnteredScenario")
class ProfileEnteredScenario(_JourneyEvent):
    entry: int
    source: str
    cause: EntryCause
    content: dict[str, JsonValue] | None = None


@registry.register("ProfileRejectedByReentryRule")
class ProfileRejectedByReentryRule(_JourneyEvent):
    rule: str  # a re-entry mode, or `inactive` / `profile`
    reason: str
    source: str
    cause: EntryCause


@registry.register("ScenarioInstanceReset")
class ScenarioInstanceReset(_JourneyEvent):
    entry: int
    source: str
    cause: EntryCause
    content: dict[str, JsonValue] | None = None


@registry.register("ScenarioNodeEntered")
class ScenarioNodeEntered(_StepEvent):
    node_id: str
    node_type: str
    version: int


@registry.register("ScenarioNodeExited")
class ScenarioNodeExited(_StepEvent):
    node_id: str
    branch: str
    outcome: dict[str, JsonValue] = Field(default_factory=dict)


@registry.register("ScenarioConditionEvaluated")
class ScenarioConditionEvaluated(_StepEvent):
    node_id: str
    result: bool


@registry.register("ScenarioWaitScheduled")
class ScenarioWaitScheduled(_StepEvent):
    node_id: str
    due_at: datetime
    purpose: Literal["pause", "condition", "retry"]
    deadline: datetime | None = None  # a timed condition's timeout
    attempt: int = 0  # a retry: the attempt it is for


@registry.register("ScenarioWaitElapsed")
class ScenarioWaitElapsed(_StepEvent):
    due_at: datetime


@registry.register("ScenarioWebhookAnswered")
class ScenarioWebhookAnswered(_StepEvent):
    attempt: int
    method: str
    url: str
    status: int | None = None
    body: str = ""
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0


@registry.register("ScenarioNodeFailed")
class ScenarioNodeFailed(_StepEvent):
    node_id: str
    reason: str


@registry.register("ScenarioInstanceMoved")
class ScenarioInstanceMoved(_StepEvent):
    """Version `version` removed the instance's node (or changed its type): it goes to `to` (None: ends)."""

    node_id: str
    to: str | None
    version: int


@registry.register("ScenarioInstanceAsleep")
class ScenarioInstanceAsleep(_StepEvent):
    pass


@registry.register("ScenarioInstanceWoke")
class ScenarioInstanceWoke(_StepEvent):
    pass


@registry.register("ScenarioInstanceCompleted")
class ScenarioInstanceCompleted(_JourneyEvent):
    entry: int


@registry.register("ScenarioInstanceTerminated")
class ScenarioInstanceTerminated(_JourneyEvent):
    entry: int
    reason: str
    node_id: str | None = None


# --- state -------------------------------------------------------------------------------------

AwaitingKind = Literal["effect", "call", "timer", "condition", "ready", "answered", "asleep"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the webhook worker got back."""

    status: int | None
    body: str
    error: str | None
    retryable: bool

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Awaiting:
    kind: AwaitingKind
    visit: int
    set_at: int = 0  # the journey version whose event made it due to act on (0: nothing to act on)
    due_at: datetime | None = None
    purpose: str = ""
    deadline: datetime | None = None
    attempt: int = 1
    answer: Answer | None = None
    pending: Awaiting | None = None  # asleep: what it was about to do


@dataclass(frozen=True, slots=True)
class Instance:
    entry: int
    entered_at: datetime
    content: Mapping[str, Any] | None = None
    node_id: str | None = None
    node_type: str = ""
    version: int = 0  # the graph version the current node was entered at
    visit: int = 0
    awaiting: Awaiting | None = None
    outcome: Literal["", "completed", "terminated"] = ""

    @property
    def finished(self) -> bool:
        return bool(self.outcome)


@dataclass(frozen=True, slots=True)
class JourneyState:
    version: int = 0  # events folded: the stream's version
    entries: int = 0
    instances: Mapping[int, Instance] = field(default_factory=dict)
    decided_position: int = 0  # the latest capture event decided (global position)
    decided_request: int = 0  # the latest entry request decided (journey version)

    def running(self) -> list[Instance]:
        return [i for i in self.instances.values() if not i.finished]


def _changed(
    state: JourneyState,
    version: int,
    entry: int,
    change: Callable[[Instance], Instance],
    decided: tuple[int, int] | None = None,
) -> JourneyState:
    """The state at `version` with one instance changed (one copy of the state per event)."""
    position, request = decided or (state.decided_position, state.decided_request)
    instance = state.instances.get(entry)
    instances = state.instances if instance is None else {**state.instances, entry: change(instance)}
    return JourneyState(version, state.entries, instances, position, request)


# The fold runs for every journey event, several times over (decider, processor, read model):
# instances are rebuilt with their constructor, four times faster than `dataclasses.replace`.


def _waiting(instance: Instance, awaiting: Awaiting | None) -> Instance:
    i = instance
    return Instance(
        i.entry, i.entered_at, i.content, i.node_id, i.node_type, i.version, i.visit, awaiting, i.outcome
    )


def _at_node(instance: Instance, event: ScenarioNodeEntered, awaiting: Awaiting | None) -> Instance:
    i = instance
    return Instance(
        i.entry,
        i.entered_at,
        i.content,
        event.node_id,
        event.node_type,
        event.version,
        event.visit,
        awaiting,
        i.outcome,
    )


def _restarted(instance: Instance, content: Mapping[str, Any] | None) -> Instance:
    i = instance
    return Instance(i.entry, i.entered_at, content, None, "", i.version, i.visit, None, i.outcome)


def _ended(instance: Instance, outcome: Literal["completed", "terminated"]) -> Instance:
    i = instance
    return Instance(
        i.entry, i.entered_at, i.content, i.node_id, i.node_type, i.version, i.visit, None, outcome
    )


def evolve(state: JourneyState, event: Event) -> JourneyState:
    version = state.version + 1
    match event:
        case ProfileEnteredScenario():
            position, request = _decided(state, event.cause)
            instances = {**state.instances, event.entry: Instance(event.entry, event.at, event.content)}
            return JourneyState(version, event.entry, instances, position, request)
        case ProfileRejectedByReentryRule():
            position, request = _decided(state, event.cause)
            return JourneyState(version, state.entries, state.instances, position, request)
        case ScenarioInstanceReset():
            restart = partial(_restarted, content=event.content)
            return _changed(state, version, event.entry, restart, _decided(state, event.cause))
        case ScenarioNodeEntered():
            kind: AwaitingKind | None = (
                "effect"
                if event.node_type in EFFECT_TYPES
                else "call"
                if event.node_type in CALL_TYPES
                else None
            )
            awaiting = None if kind is None else Awaiting(kind, event.visit, set_at=version)
            return _changed(state, version, event.entry, partial(_at_node, event=event, awaiting=awaiting))
        case ScenarioNodeExited():
            return _changed(state, version, event.entry, partial(_waiting, awaiting=None))
        case ScenarioWaitScheduled():
            kind = "condition" if event.purpose == "condition" else "timer"
            waits = Awaiting(
                kind, event.visit, 0, event.due_at, event.purpose, event.deadline, event.attempt or 1
            )
            return _changed(state, version, event.entry, partial(_waiting, awaiting=waits))
        case ScenarioWaitElapsed():
            return _changed(state, version, event.entry, partial(_elapsed, event=event, version=version))
        case ScenarioWebhookAnswered():
            return _changed(state, version, event.entry, partial(_answered, event=event, version=version))
        case ScenarioInstanceAsleep():
            return _changed(state, version, event.entry, partial(_asleep, visit=event.visit))
        case ScenarioInstanceWoke():
            return _changed(state, version, event.entry, partial(_woke, version=version))
        case ScenarioInstanceCompleted():
            return _changed(state, version, event.entry, partial(_ended, outcome="completed"))
        case ScenarioInstanceTerminated():
            return _changed(state, version, event.entry, partial(_ended, outcome="terminated"))
    return JourneyState(
        version, state.entries, state.instances, state.decided_position, state.decided_request
    )


def _decided(state: JourneyState, cause: EntryCause) -> tuple[int, int]:
    """(the latest capture position decided, the latest request version decided) after `cause`."""
    if cause.kind == "request":
        return state.decided_position, max(state.decided_request, cause.position)
    return max(state.decided_position, cause.position), state.decided_request


def _asleep(instance: Instance, visit: int) -> Instance:
    return _waiting(instance, Awaiting("asleep", visit, pending=instance.awaiting))


def _elapsed(instance: Instance, event: ScenarioWaitElapsed, version: int) -> Instance:
    waits = instance.awaiting
    if waits is None or waits.kind not in ("timer", "condition"):
        return instance
    if waits.visit != event.visit or waits.due_at != event.due_at:
        return instance  # a stale timer: the instance moved on, or the wait was rescheduled
    if waits.purpose == "retry":
        return _waiting(instance, Awaiting("call", waits.visit, attempt=waits.attempt))
    return _waiting(instance, replace(waits, kind="ready", set_at=version))


def _answered(instance: Instance, event: ScenarioWebhookAnswered, version: int) -> Instance:
    waits = instance.awaiting
    if waits is None or waits.kind != "call" or (waits.visit, waits.attempt) != (event.visit, event.attempt):
        return instance
    answer = Answer(event.status, event.body, event.error, event.retryable)
    return _waiting(instance, replace(waits, kind="answered", set_at=version, answer=answer))


def _woke(instance: Instance, version: int) -> Instance:
    waits = instance.awaiting
    if waits is None or waits.kind != "asleep" or waits.pending is None:
        return instance
    return _waiting(instance, replace(waits.pending, set_at=version))


def wait_elapsed(
    scenario_id: str, profile_id: str, entry: int, visit: int, due_at: datetime, at: datetime
) -> ScenarioWaitElapsed:
    """The event a durable timer appends when a wait falls due."""
    return ScenarioWaitElapsed(
        scenario_id=scenario_id, profile_id=profile_id, entry=entry, visit=visit, due_at=due_at, at=at
    )
