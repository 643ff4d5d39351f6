"""The scenario aggregate (stream `scenario-<id>`): settings, published graph versions, state, run timers.

A scenario ("Сценарий", guide "Работа со Сценариями") has a name, a description, tags, the
profile database it watches, the capture condition (`scenario_capture`), one of the four re-entry
modes ("При неоднократном попадании"), the "sleeping profiles" option, an active flag, and its
graph (`scenario_graph`). Each profile's run through it is an instance, recorded on the profile's
journey stream (`scenario_instances`).

Live edits are versions: saving a changed graph publishes version N+1 (`ScenarioPublished`).
Instances at a node that still exists go on from it; those at a node the new version removes
follow the rule chosen at publish (`RemovedNode`: move to a node of the new version, or end).
Every node type may be edited after launch. Removed nodes and their rules accumulate, so an
instance that was at a node removed some versions ago is still placed by its rule.

Re-entry modes:
- `once_ever` ("Всегда игнорировать профиль, даже если он не в сценарии"): one entry, ever;
- `ignore_if_active` ("Игнорировать профиль, если он сейчас в сценарии"): refused while in it;
- `reset_to_start` ("Сбросить положение профиля в сценарии на начало"): a new capture moves the
  profile back to the start;
- `allow_parallel` ("Профиль будет неоднократно попадать в сценарий"): every capture is a new
  instance, all processed in full.

"Sleeping profiles" ("Сохранять в сценарии профили которые проснутся, пока он выключен"): an
instance that would act while the scenario is inactive (its pause ends, its condition comes
true, its action is due) is kept asleep at that point and resumes when the scenario is activated
again; without the option it is ended there. Instances whose waits end after reactivation are
not affected either way.

The audience mode (`ScheduleCapture`) keeps its timer here like a regular campaign's:
`ScenarioRunScheduled` is the durable timer, `ScenarioRunStarted` the run, whose segment is
evaluated at that instant and whose members are asked into the scenario.

Decisions where the guide is silent:
- Validation runs at save and again at activation; what it needs of other objects (campaigns,
  databases, fields, segments, stop lists, resources, loyalty programs) the caller looks up and
  passes as `ScenarioChecks` (path, reason) pairs, with the graph's values in stored form.
- The database cannot change once the scenario has been active (its instances belong to it).
- Activation needs the graph to be publishable; a schedule needs a run left.
- A schedule run whose timer fires while the scenario is inactive does not happen; activation
  schedules the next run from then.
- Deleting deactivates; the instances end with the reason `scenario_deleted`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.scenario_capture import Capture, ScheduleCapture
from herald.domain.scenario_graph import AnyNode, ScenarioGraph, check_graph
from herald.domain.schedules import check_schedule, pending_runs

MAX_TAGS = 50


class ReentryMode(StrEnum):
    ONCE_EVER = "once_ever"
    IGNORE_IF_ACTIVE = "ignore_if_active"
    RESET_TO_START = "reset_to_start"
    ALLOW_PARALLEL = "allow_parallel"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScenarioSettings(_Value):
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    database_id: str = Field(description="the profile database the scenario watches (Из базы данных)")
    reentry: ReentryMode
    sleeping_profiles: bool = False
    capture: Capture


class RemovedNode(_Value):
    """Where instances at a node the new version removes go: `move_to` a node of it, or (None) end."""

    node_id: str
    move_to: str | None = None


# --- events ------------------------------------------------------------------------------------


@registry.register("ScenarioCreated")
class ScenarioCreated(Event):
    scenario_id: str
    settings: ScenarioSettings
    at: datetime


@registry.register("ScenarioSettingsChanged")
class ScenarioSettingsChanged(Event):
    scenario_id: str
    settings: ScenarioSettings
    at: datetime


@registry.register("ScenarioPublished")
class ScenarioPublished(Event):
    """Version `version` of the graph; `removed` places the instances at nodes it no longer has."""

    scenario_id: str
    version: int
    graph: ScenarioGraph
    removed: tuple[RemovedNode, ...] = ()
    at: datetime


@registry.register("ScenarioActivated")
class ScenarioActivated(Event):
    scenario_id: str
    at: datetime


@registry.register("ScenarioDeactivated")
class ScenarioDeactivated(Event):
    scenario_id: str
    at: datetime


@registry.register("ScenarioRunScheduled")
class ScenarioRunScheduled(Event):
    """A durable timer: the audience run `run_number` is due at `due_at`."""

    scenario_id: str
    run_number: int
    due_at: datetime


@registry.register("ScenarioRunStarted")
class ScenarioRunStarted(Event):
    scenario_id: str
    run_number: int
    due_at: datetime
    at: datetime

    @property
    def run_id(self) -> str:
        return f"{self.scenario_id}-run-{self.run_number}"


@registry.register("ScenarioDeleted")
class ScenarioDeleted(Event):
    scenario_id: str
    at: datetime


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    """One published version of the graph, with its nodes by id."""

    version: int
    graph: ScenarioGraph
    nodes: Mapping[str, AnyNode]
    at: datetime


@dataclass(frozen=True, slots=True)
class ScenarioState:
    scenario_id: str = ""
    settings: ScenarioSettings | None = None
    versions: Mapping[int, Published] = field(default_factory=dict)
    version: int = 0
    removed: Mapping[str, str | None] = field(default_factory=dict)  # node → where its instances go
    active: bool = False
    ever_active: bool = False
    deleted: bool = False
    next_run: ScenarioRunScheduled | None = None
    runs_started: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.settings is not None and not self.deleted

    @property
    def current(self) -> Published | None:
        return self.versions.get(self.version)

    def node(self, node_id: str, version: int | None = None) -> AnyNode | None:
        """A node of the current version (or of `version`)."""
        published = self.versions.get(self.version if version is None else version)
        return None if published is None else published.nodes.get(node_id)


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScenarioChecks:
    """What the caller found wrong with the objects the scenario names, as (path, reason) pairs."""

    problems: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CreateScenario:
    scenario_id: str
    settings: ScenarioSettings
    graph: ScenarioGraph
    checks: ScenarioChecks
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeScenario:
    """Save the settings and the graph; a changed graph is published as the next version."""

    scenario_id: str
    settings: ScenarioSettings
    graph: ScenarioGraph
    removed: tuple[RemovedNode, ...]
    checks: ScenarioChecks
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ActivateScenario:
    scenario_id: str
    checks: ScenarioChecks
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeactivateScenario:
    scenario_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class StartScheduledRun:
    """The scheduler's call when the audience run's timer is due."""

    scenario_id: str
    run_number: int
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteScenario:
    scenario_id: str
    at: datetime


ScenarioCommand = (
    CreateScenario
    | ChangeScenario
    | ActivateScenario
    | DeactivateScenario
    | StartScheduledRun
    | DeleteScenario
)


# --- validation --------------------------------------------------------------------------------


def check_settings(settings: ScenarioSettings, path: str = "settings") -> None:
    """Refuse settings a scenario cannot have (what needs other objects is the caller's)."""
    if not settings.name.strip():
        raise ValidationFailed("a scenario needs a name", f"{path}.name")
    if len(settings.tags) > MAX_TAGS:
        raise ValidationFailed(f"a scenario has at most {MAX_TAGS} tags", f"{path}.tags")
    for i, tag in enumerate(settings.tags):
        if not tag.strip():
            raise ValidationFailed("a tag is non-blank text", f"{path}.tags.{i}")
    if isinstance(settings.capture, ScheduleCapture):
        check_schedule(settings.capture.schedule, f"{path}.capture.schedule")


def _check(settings: ScenarioSettings, graph: ScenarioGraph, checks: ScenarioChecks) -> ScenarioGraph:
    check_settings(settings)
    checked = check_graph(graph)
    for path, reason in checks.problems:
        raise RuleViolated(reason, path)
    return checked


# --- decide ------------------------------------------------------------------------------------


def decide(command: ScenarioCommand, state: ScenarioState) -> list[Event]:
    if isinstance(command, CreateScenario):
        if state.settings is not None:
            raise AlreadyExists(f"scenario {command.scenario_id!r} exists already", "scenario_id")
        graph = _check(command.settings, command.graph, command.checks)
        return [
            ScenarioCreated(scenario_id=command.scenario_id, settings=command.settings, at=command.at),
            ScenarioPublished(scenario_id=command.scenario_id, version=1, graph=graph, at=command.at),
        ]
    if not state.exists:
        raise NotFound(f"there is no scenario {command.scenario_id!r}", "scenario_id")
    return _HANDLERS[type(command)](command, state)


def _change(command: ChangeScenario, state: ScenarioState) -> list[Event]:
    assert state.settings is not None and state.current is not None
    if state.ever_active and command.settings.database_id != state.settings.database_id:
        raise RuleViolated(
            "the database cannot change once the scenario has run: clone it instead", "settings.database_id"
        )
    graph = _check(command.settings, command.graph, command.checks)
    events: list[Event] = []
    if command.settings != state.settings:
        events.append(
            ScenarioSettingsChanged(scenario_id=state.scenario_id, settings=command.settings, at=command.at)
        )
        if state.active:
            timer = _rescheduled(state, command.settings, command.account_timezone, command.at)
            events += [timer] if timer is not None else []
    removed = _removed(state.current.graph, graph, command.removed)
    if graph != state.current.graph:
        events.append(
            ScenarioPublished(
                scenario_id=state.scenario_id,
                version=state.version + 1,
                graph=graph,
                removed=removed,
                at=command.at,
            )
        )
    return events


def _rescheduled(
    state: ScenarioState, settings: ScenarioSettings, timezone: str, now: datetime
) -> ScenarioRunScheduled | None:
    """An active scenario whose schedule changed: its next run by the new schedule."""
    assert state.settings is not None
    if settings.capture == state.settings.capture:
        return None
    return _next_timer(state, settings, now, timezone)


def _removed(
    old: ScenarioGraph, new: ScenarioGraph, rules: tuple[RemovedNode, ...]
) -> tuple[RemovedNode, ...]:
    """A rule for every node the new graph drops: the ones given, `end` for the rest."""
    gone = [node.id for node in old.nodes if node.id not in new.ids]
    given: dict[str, RemovedNode] = {}
    for i, rule in enumerate(rules):
        if rule.node_id not in gone:
            raise ValidationFailed(
                f"node {rule.node_id!r} is not one the new graph removes", f"removed.{i}.node_id"
            )
        if rule.move_to is not None and rule.move_to not in new.ids:
            raise ValidationFailed(f"node {rule.move_to!r} is not in the new graph", f"removed.{i}.move_to")
        given[rule.node_id] = rule
    return tuple(given.get(node_id, RemovedNode(node_id=node_id)) for node_id in gone)


def _activate(command: ActivateScenario, state: ScenarioState) -> list[Event]:
    assert state.settings is not None and state.current is not None
    if state.active:
        return []
    _check(state.settings, state.current.graph, command.checks)
    capture = state.settings.capture
    if isinstance(capture, ScheduleCapture):
        check_schedule(
            capture.schedule,
            "settings.capture.schedule",
            now=command.at,
            account_timezone=command.account_timezone,
        )
    events: list[Event] = [ScenarioActivated(scenario_id=state.scenario_id, at=command.at)]
    timer = _next_timer(state, state.settings, command.at, command.account_timezone)
    return events if timer is None else [*events, timer]


def _next_timer(
    state: ScenarioState, settings: ScenarioSettings, after: datetime, timezone: str
) -> ScenarioRunScheduled | None:
    capture = settings.capture
    if not isinstance(capture, ScheduleCapture):
        return None
    upcoming = pending_runs(capture.schedule, after=after, count=1, account_timezone=timezone)
    if not upcoming:
        return None
    return ScenarioRunScheduled(
        scenario_id=state.scenario_id, run_number=state.runs_started + 1, due_at=upcoming[0].at
    )


def _deactivate(command: DeactivateScenario, state: ScenarioState) -> list[Event]:
    if not state.active:
        return []
    return [ScenarioDeactivated(scenario_id=state.scenario_id, at=command.at)]


def _start_run(command: StartScheduledRun, state: ScenarioState) -> list[Event]:
    timer = state.next_run
    if timer is None or timer.run_number != command.run_number or not state.active:
        return []  # fired twice, or the scenario moved on
    assert state.settings is not None
    started = ScenarioRunStarted(
        scenario_id=state.scenario_id, run_number=timer.run_number, due_at=timer.due_at, at=command.at
    )
    after = evolve(state, started)
    following = _next_timer(after, state.settings, max(command.at, timer.due_at), command.account_timezone)
    return [started] if following is None else [started, following]


def _delete(command: DeleteScenario, state: ScenarioState) -> list[Event]:
    events = _deactivate(DeactivateScenario(state.scenario_id, command.at), state)
    return [*events, ScenarioDeleted(scenario_id=state.scenario_id, at=command.at)]


_HANDLERS: Mapping[type, Callable[[Any, ScenarioState], list[Event]]] = {
    ChangeScenario: _change,
    ActivateScenario: _activate,
    DeactivateScenario: _deactivate,
    StartScheduledRun: _start_run,
    DeleteScenario: _delete,
}


# --- evolve ------------------------------------------------------------------------------------


def evolve(state: ScenarioState, event: Event) -> ScenarioState:
    if isinstance(event, ScenarioCreated):
        return ScenarioState(
            scenario_id=event.scenario_id, settings=event.settings, created_at=event.at, updated_at=event.at
        )
    if isinstance(event, ScenarioSettingsChanged):
        keeps_timer = isinstance(event.settings.capture, ScheduleCapture)
        return replace(
            state,
            settings=event.settings,
            next_run=state.next_run if keeps_timer else None,
            updated_at=event.at,
        )
    if isinstance(event, ScenarioPublished):
        published = Published(event.version, event.graph, event.graph.index(), event.at)
        removed = {**state.removed, **{rule.node_id: rule.move_to for rule in event.removed}}
        for node_id in event.graph.ids:
            removed.pop(node_id, None)  # an id that is back is a node again
        return replace(
            state,
            versions={**state.versions, event.version: published},
            version=event.version,
            removed=removed,
            updated_at=event.at,
        )
    if isinstance(event, ScenarioActivated):
        return replace(state, active=True, ever_active=True)
    if isinstance(event, ScenarioDeactivated):
        return replace(state, active=False, next_run=None)
    if isinstance(event, ScenarioRunScheduled):
        return replace(state, next_run=event)
    if isinstance(event, ScenarioRunStarted):
        return replace(state, next_run=None, runs_started=event.run_number)
    if isinstance(event, ScenarioDeleted):
        return replace(state, deleted=True, active=False, next_run=None)
    return state


scenario_decider: Decider[ScenarioCommand, ScenarioState] = Decider(ScenarioState(), decide, evolve)


def scenario_stream(scenario_id: str) -> str:
    return f"scenario-{scenario_id}"
