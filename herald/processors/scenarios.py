"""The scenario processor: captures profiles, moves instances through their nodes, does the nodes' actions.

A consumer with the runtime's projection shape, run after every projection of a pass. What it reads
for one profile is key-local: the profile's state and facts, its journey stream in the scenario
(`journey-<scenario>-<profile>`), and the scenario's published version. It handles:
- capture events (`scenario_capture.facts_of`: imports, field changes, subscriptions, message
  actions, tracked events, goals): every active scenario of the profile's database whose capture
  matches decides an entry (its re-entry rule applied);
- journey events that make an instance due to act, i.e. that set its `Awaiting.set_at`: an entry
  request (the special API call, manual entry, an audience run), a node with an action entered,
  a timer fired (`ScenarioWaitElapsed`), a webhook answered, an instance woken;
- events that can change a timed condition's result (anything about the profile: its fields and
  subscriptions, its message actions, its goals, its segment memberships): the profile's waiting
  conditions are checked again (`Reevaluate`), not polled;
- scenario events: activation wakes the sleeping instances, a published version places the
  instances at nodes it removed or changed, deletion ends every instance.

Exactly-once: decisions are buffered per journey and appended at commit, one atomic `append_many`
checked against each journey's version, before the checkpoint is saved; each event's id is
`uuid5(processor, cause, journey, ordinal)`. A batch applied again after a crash reads the journeys
from the log and finds its causes decided (the journey decider's guards), so it appends nothing
twice. An action that changes another aggregate (update data, subscriptions, copy, stop lists,
segments, goals) runs on the journey event that made it due, once that event is in the log, and its
commands' ids derive from the step (`step_id`), so running it again adds nothing. A campaign node's
message is decided in the same decision that reaches the node and appended in the same
`append_many` as the step (`_act_inline`): never one without the other. A capture event decides an
entry once (its position is recorded on the journey).

Which journeys wait on conditions comes from the `scenario_instances` projection (which has
processed the pass's batch before this processor) and, for decisions of the batch itself, from the
journeys this batch touched. Decisions read the current state (the processor runs at the log's
head), not the state as of the causing event.

Decisions where the guide is silent:
- An event a scenario's own action caused (its actor is `scenario:<id>`) never captures a profile
  for that same scenario, so an update-data node cannot re-enter its own scenario in a loop; other
  scenarios may be captured by it (chains).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Protocol
from uuid import UUID

from herald.domain import scenario_steps as st
from herald.domain.events import Event, registry
from herald.domain.profiles import ProfileState
from herald.domain.scenario_capture import FACT_EVENT_TYPES, Capture, CaptureFact, captures, facts_of
from herald.domain.scenario_graph import EFFECT_TYPES, AnyNode, ConditionNode
from herald.domain.scenario_instances import (
    JOURNEY_PREFIX,
    EntryCause,
    Instance,
    JourneyState,
    ScenarioEntryRequested,
    evolve,
    journey_key,
    journey_stream,
)
from herald.domain.scenarios import ScenarioState
from herald.domain.segment_eval import ProfileFacts
from herald.domain.segments import ExternalRule, GoalRule, MessageHistoryRule, SegmentRule, Source, iter_rules
from herald.infra.event_store import EventFilter, EventStore, NewEvent, RecordedEvent, StreamAppend
from herald.infra.ids import deterministic_id
from herald.processors.runtime import CheckpointStore
from herald.projections.scenario_instances import ScenarioInstancesProjection

NAME = "scenarios"
ACTOR = f"processor:{NAME}"
JOURNEY_CACHE_SIZE = 100_000
_APPEND_CHUNK = 1_000
_SCENARIO_PREFIX = "scenario-"
_PROFILE_PREFIXES = ("profile-", "activity-")
_PROFILE_IN_DATA = ("message-", "segmentmembers-")  # streams whose events name their profile in the data
_INLINE = frozenset({"campaign"})  # actions whose only effect is appended with the journey (`_act_inline`)
_ACTING = frozenset(
    {"ScenarioNodeEntered", "ScenarioWaitElapsed", "ScenarioWebhookAnswered", "ScenarioInstanceWoke"}
)
_FACT_RULES = (MessageHistoryRule, GoalRule, SegmentRule, ExternalRule)
CommandFor = Callable[[st.Context], st.JourneyCommand]


class ScenarioPorts(Protocol):
    """What the processor reads from, and does to, the rest of Herald (wired in `api/wiring.py`)."""

    account_timezone: str

    def now(self) -> datetime: ...

    def scenario(self, scenario_id: str) -> ScenarioState: ...

    def profile(self, profile_id: str) -> ProfileState: ...

    def facts(self, profile_id: str) -> ProfileFacts: ...

    def act(
        self, node: AnyNode, scenario: ScenarioState, profile: ProfileState, instance: Instance, step_id: str
    ) -> tuple[st.EffectOutcome, Sequence[StreamAppend]]:
        """Do the node's action for the profile (`step_id` makes doing it again a no-op): its outcome, and
        what to append atomically with the journey's next events (a campaign node's message)."""
        ...

    def settled(self) -> None:
        """The batch is committed or dropped: what the actions read once a batch is read again."""
        ...


@dataclass(slots=True)
class _Journey:
    state: JourneyState
    logged: int  # the stream's version in the log
    pending: list[NewEvent] = field(default_factory=list)


class ScenarioProcessor:
    name = NAME
    # what `apply` reads: journeys, scenarios, and events about a profile (`_profile_of`); a campaign's
    # run, the catalog, promo pools and jobs change no capture and no condition
    consumes = EventFilter(
        stream_prefixes=(JOURNEY_PREFIX, _SCENARIO_PREFIX, *_PROFILE_PREFIXES, *_PROFILE_IN_DATA)
    )

    def __init__(
        self,
        store: EventStore,
        checkpoints: CheckpointStore,
        ports: ScenarioPorts,
        instances: ScenarioInstancesProjection,
        cache_size: int = JOURNEY_CACHE_SIZE,
    ) -> None:
        self._store = store
        self._checkpoints = checkpoints
        self._ports = ports
        self._instances = instances
        self._cache_size = cache_size
        self._position = checkpoints.load(NAME)
        self._journeys: OrderedDict[str, _Journey] = OrderedDict()
        self._also: list[tuple[str, StreamAppend]] = []  # actions' appends, by the journey they go with
        self._emitted: dict[tuple[UUID, str], int] = defaultdict(int)
        self._touched: dict[str, set[str]] = defaultdict(set)  # profile → scenarios waiting on a condition
        self._capturing: dict[str, list[tuple[str, Capture]]] = {}
        self._timed: set[str] = set()  # active scenarios with a timed condition
        self._batch_scenarios: dict[str, ScenarioState] = {}  # read once a batch: scenarios change rarely
        self._needs_facts: dict[tuple[str, int], bool] = {}
        for scenario_id in instances.scenario_ids():
            self._index_captures(scenario_id, ports.scenario(scenario_id))

    # --- the Projection protocol -------------------------------------------------------------

    def checkpoint(self) -> int:
        return self._position

    def apply(self, event: RecordedEvent) -> None:
        if event.stream.startswith(JOURNEY_PREFIX):
            self._journey_event(event)
        elif event.stream.startswith(_SCENARIO_PREFIX):
            self._scenario_event(event)
        else:
            self._profile_event(event)

    def commit(self, position: int) -> None:
        self._flush()
        self._checkpoints.save(NAME, position)
        self._position = position
        self._emitted.clear()
        self._touched.clear()
        self._batch_scenarios.clear()
        self._ports.settled()

    def discard(self) -> None:
        """Forget the batch: its buffered decisions, and every journey state (re-read from the log)."""
        self._journeys.clear()
        self._also.clear()
        self._emitted.clear()
        self._touched.clear()
        self._batch_scenarios.clear()
        self._ports.settled()

    # --- journeys ----------------------------------------------------------------------------

    def _journey_event(self, event: RecordedEvent) -> None:
        if event.type == "ScenarioEntryRequested":
            self._requested(event)
            return
        if event.type not in _ACTING:
            return  # a step the decider made: nothing waits on it
        if event.type == "ScenarioNodeEntered" and event.data["node_type"] not in EFFECT_TYPES:
            return
        journey = self._journey(event.stream, event.version)
        for instance in journey.state.running():
            waits = instance.awaiting
            if waits is None or waits.set_at != event.version:
                continue
            if waits.kind == "effect":
                self._act(event, event.stream, instance, event.version)
            elif waits.kind in ("ready", "answered"):
                self._decide(event, event.stream, partial(st.Continue, entry=instance.entry), event.version)
            elif waits.kind == "condition":
                self._decide(event, event.stream, partial(st.Reevaluate, entry=instance.entry), event.version)

    def _requested(self, event: RecordedEvent) -> None:
        request = registry.decode(event.type, event.schema_version, event.data)
        assert isinstance(request, ScenarioEntryRequested)
        cause = EntryCause(
            kind="request", event_id=str(event.event_id), event_type=event.type, position=event.version
        )
        enter = partial(st.Enter, source=request.source, cause=cause, content=request.content)
        self._decide(event, event.stream, enter, event.version)

    def _act(
        self,
        cause: RecordedEvent,
        stream: str,
        instance: Instance,
        known: int = 0,
        context: st.Context | None = None,
    ) -> None:
        scenario_id, profile_id = journey_key(stream)
        journey = self._journey(stream, known)
        context = context or self._context(scenario_id, profile_id)
        node = st.pending_action(journey.state, instance.entry, context)
        if node is None:
            self._decide(cause, stream, partial(st.Continue, entry=instance.entry), known, context)
            return
        step_id = f"{scenario_id}-{profile_id}-{instance.entry}-{instance.visit}"
        outcome, appends = self._ports.act(node, context.scenario, context.profile, instance, step_id)
        self._also.extend((stream, append) for append in appends)
        # an action other than sending may have changed the profile: decide on what it is now
        after = context if node.type in _INLINE else None
        finish = partial(st.FinishEffect, entry=instance.entry, outcome=outcome)
        self._decide(cause, stream, finish, known, after)

    def _act_inline(self, cause: RecordedEvent, stream: str, journey: _Journey, context: st.Context) -> None:
        """Send a campaign node's message in the decision that reached the node, not a pass later.

        Safe only for it: its one effect, the message, is appended in the same atomic `append_many`
        as the journey's events, so a crash before the flush leaves neither (and the step is decided
        again from the log); other actions change other aggregates at once and wait for their node's
        entry to be in the log."""
        for instance in journey.state.running():
            waits = instance.awaiting
            if (
                waits is not None
                and waits.kind == "effect"
                and waits.set_at > journey.logged
                and instance.node_type in _INLINE
            ):
                self._act(cause, stream, instance, context=context)

    def _decide(
        self,
        cause: RecordedEvent,
        stream: str,
        command_for: CommandFor,
        known: int = 0,
        context: st.Context | None = None,
    ) -> None:
        """Decide a journey command (made from the context now) on the journey, buffering its events.

        `known`: a journey version the caller knows is in the log (no need to read the journey again);
        `context`: one the caller has just read (the profile unchanged since)."""
        scenario_id, profile_id = journey_key(stream)
        journey = self._journey(stream, known)
        context = context or self._context(scenario_id, profile_id)
        events, journey.state = st.decided(command_for(context), journey.state)
        journey.pending += [self._envelope(cause, stream, decided) for decided in events]
        self._touch(stream, journey)
        if events:
            self._act_inline(cause, stream, journey, context)

    def _envelope(self, cause: RecordedEvent, stream: str, decided: Event) -> NewEvent:
        key = (cause.event_id, stream)
        ordinal = self._emitted[key]
        self._emitted[key] = ordinal + 1
        return NewEvent(
            event_id=deterministic_id(NAME, cause.event_id, stream, ordinal),
            type=decided.type_name,
            data=decided.to_data(),
            occurred_at=decided.at,  # type: ignore[attr-defined]
            metadata={
                "correlation_id": cause.metadata.get("correlation_id", str(cause.event_id)),
                "causation_id": str(cause.event_id),
                "actor": ACTOR,
            },
        )

    def _journey(self, stream: str, known: int = 0) -> _Journey:
        """The journey as the log (and this batch's decisions) leave it; read again only if it grew."""
        journey = self._journeys.pop(stream, None)
        if journey is None:
            events = self._store.read_stream(stream)
            journey = _Journey(_fold(events, JourneyState()), events[-1].version if events else 0)
        elif not journey.pending and (known == 0 or known > journey.logged):
            newer = self._store.read_stream(stream, journey.logged + 1)
            if newer:
                journey.state = _fold(newer, journey.state)
                journey.logged = newer[-1].version
        self._journeys[stream] = journey
        self._evict()
        return journey

    def _evict(self) -> None:
        for _ in range(len(self._journeys) - self._cache_size):
            stream, oldest = next(iter(self._journeys.items()))
            self._journeys.move_to_end(stream)
            if not oldest.pending:
                del self._journeys[stream]

    def _touch(self, stream: str, journey: _Journey) -> None:
        if any(i.awaiting is not None and i.awaiting.kind == "condition" for i in journey.state.running()):
            scenario_id, profile_id = journey_key(stream)
            self._touched[profile_id].add(scenario_id)

    def _flush(self) -> None:
        """Append the batch's decisions, each journey checked against the version it was read at.

        An action's appends go in the same `append_many` as the journey events of the step (the
        chunks hold whole steps: a journey's events and the messages its steps made)."""
        dirty = [(stream, journey) for stream, journey in self._journeys.items() if journey.pending]
        also: dict[str, list[StreamAppend]] = defaultdict(list)
        for stream, append in self._also:
            also[stream].append(append)
        for start in range(0, len(dirty), _APPEND_CHUNK):
            chunk = dirty[start : start + _APPEND_CHUNK]
            appends = [StreamAppend(s, j.pending, j.logged) for s, j in chunk]
            appends += [made for s, _ in chunk for made in also.pop(s, [])]
            self._store.append_many(appends)
            for _, journey in chunk:
                journey.logged += len(journey.pending)
                journey.pending = []
        left = [append for appends in also.values() for append in appends]
        if left:  # an action whose journey decided nothing more (it was re-read meanwhile)
            self._store.append_many(left)
        self._also.clear()

    # --- the context of a decision -------------------------------------------------------------

    def _context(self, scenario_id: str, profile_id: str) -> st.Context:
        scenario = self._batch_scenarios.get(scenario_id)
        if scenario is None:
            scenario = self._batch_scenarios[scenario_id] = self._ports.scenario(scenario_id)
        profile = self._ports.profile(profile_id)
        facts = self._ports.facts(profile_id) if self._uses_facts(scenario) else ProfileFacts()
        return st.Context(scenario, profile, facts, self._ports.account_timezone, self._ports.now())

    def _uses_facts(self, scenario: ScenarioState) -> bool:
        """Whether a condition of the scenario reads message history, goals, segments or external sets."""
        key = (scenario.scenario_id, scenario.version)
        if key not in self._needs_facts:
            self._needs_facts[key] = any(
                isinstance(rule, _FACT_RULES)
                for published in scenario.versions.values()
                for node in published.graph.nodes
                if isinstance(node, ConditionNode)
                for _, rule in iter_rules(Source(database_id="", rules=node.rules, groups=node.groups))
            )
        return self._needs_facts[key]

    # --- captures and conditions ---------------------------------------------------------------

    def _profile_event(self, event: RecordedEvent) -> None:
        profile_id = _profile_of(event)
        if profile_id is None:
            return
        if event.type in FACT_EVENT_TYPES and self._capturing:
            for fact in facts_of(registry.decode(event.type, event.schema_version, event.data)):
                self._capture(event, fact)
        self._recheck(event, profile_id)

    def _capture(self, event: RecordedEvent, fact: CaptureFact) -> None:
        cause = EntryCause(
            kind="event", event_id=str(event.event_id), event_type=event.type, position=event.position
        )
        actor = event.metadata.get("actor", "")
        for scenario_id, capture in self._capturing.get(fact.database_id, ()):
            if actor == f"scenario:{scenario_id}" or not captures(capture, fact):
                continue
            stream = journey_stream(scenario_id, fact.profile_id)
            self._decide(event, stream, partial(st.Enter, source=fact.kind, cause=cause))

    def _recheck(self, event: RecordedEvent, profile_id: str) -> None:
        waiting = set(self._instances.waiting_on_conditions(profile_id)) | self._touched.get(
            profile_id, set()
        )
        for scenario_id in sorted(waiting):
            stream = journey_stream(scenario_id, profile_id)
            for instance in self._journey(stream).state.running():
                if instance.awaiting is not None and instance.awaiting.kind == "condition":
                    self._decide(event, stream, partial(st.Reevaluate, entry=instance.entry))

    # --- scenario events -----------------------------------------------------------------------

    def _scenario_event(self, event: RecordedEvent) -> None:
        scenario_id = event.stream[len(_SCENARIO_PREFIX) :]
        scenario = self._batch_scenarios[scenario_id] = self._ports.scenario(scenario_id)
        self._index_captures(scenario_id, scenario)
        if event.type == "ScenarioActivated":
            self._fan_out(
                event, scenario_id, self._instances.running_profiles(scenario_id, "asleep"), st.Wake
            )
        elif event.type == "ScenarioPublished" and event.data["version"] > 1 and scenario.current is not None:
            nodes = {node.id: node.type for node in scenario.current.graph.nodes}
            self._fan_out(event, scenario_id, self._instances.misplaced(scenario_id, nodes), st.Adopt)
        elif event.type == "ScenarioDeleted":
            self._fan_out(event, scenario_id, self._instances.running_profiles(scenario_id), st.EndAll)

    def _fan_out(
        self, event: RecordedEvent, scenario_id: str, profiles: Iterable[str], command: CommandFor
    ) -> None:
        """One command for every running journey of the scenario: the projection's and this batch's."""
        batch = {
            journey_key(stream)[1]
            for stream, journey in self._journeys.items()
            if journey_key(stream)[0] == scenario_id and journey.state.running()
        }
        for profile_id in sorted(set(profiles) | batch):
            self._decide(event, journey_stream(scenario_id, profile_id), command)

    def _index_captures(self, scenario_id: str, scenario: ScenarioState) -> None:
        """Keep the active scenarios whose capture comes from events, by database, and those with timed
        conditions."""
        timed = scenario.active and any(
            isinstance(node, ConditionNode) and node.wait is not None
            for published in scenario.versions.values()
            for node in published.graph.nodes
        )
        if timed:
            self._timed.add(scenario_id)
        else:
            self._timed.discard(scenario_id)
        for database_id, entries in list(self._capturing.items()):
            kept = [(s, c) for s, c in entries if s != scenario_id]
            if kept:
                self._capturing[database_id] = kept
            else:
                del self._capturing[database_id]
        settings = scenario.settings
        if settings is None or not scenario.active or settings.capture.kind in ("api", "schedule"):
            return
        entries = self._capturing.setdefault(settings.database_id, [])
        entries.append((scenario_id, settings.capture))
        entries.sort(key=lambda entry: int(entry[0]) if entry[0].isdigit() else 0)


def _fold(events: Iterable[RecordedEvent], state: JourneyState) -> JourneyState:
    for recorded in events:
        state = evolve(state, registry.decode(recorded.type, recorded.schema_version, recorded.data))
    return state


def _profile_of(event: RecordedEvent) -> str | None:
    """The profile an event is about: its profile or activity stream's, or the one its data names."""
    for prefix in _PROFILE_PREFIXES:
        if event.stream.startswith(prefix):
            return event.stream[len(prefix) :]
    profile_id = event.data.get("profile_id") if event.stream.startswith(_PROFILE_IN_DATA) else None
    return profile_id if isinstance(profile_id, str) else None
