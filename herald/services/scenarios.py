"""Scenarios: their commands with the checks they need, entries, the timers, statistics and traces.

Decisions where the guide is silent:
- Scenario ids are short sequential numbers, like campaigns'.
- What is checked at save and again at activation, with the path of the node at fault: a
  campaign node names a trigger campaign of the scenario's database; a condition's rules are
  valid segment rules over that database (stored coerced, as segments store theirs); an update
  names fields of the database with an operation their type takes (increment a number, add tags
  to a tags field) and a value they take; a copy names another database and maps fields to fields
  of the same type there; a subscription node names a resource with those channels that takes
  the database; a webhook's URL is an http(s) template; a stop list, a static segment, a loyalty
  program exist; a schedule capture's rules are valid and a tracked event's filter is.
- A webhook's credentials (a login or a `token=` in its URL, a custom parameter named like a
  credential) are sealed at save (`scenario_secrets`): the log holds them encrypted only.
- The special API call (`enter`) asks for up to 1,000 profiles by id or match key with one JSON
  `content`; manual entry ("Отправить профили в сценарий") takes up to 10,000 profile ids or a
  segment. Entries are requests on the profiles' journeys, decided by the processor (so the
  re-entry rule sees every entry in order); the same request id never asks twice.
- An audience run asks its members in before the run is recorded as started, with ids derived from
  the run, so a run interrupted half way asks the rest when its timer fires again.
- Statistics are per day in the account's time zone; "in process" is the instances running now.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from pydantic import JsonValue

from herald.domain import pixels as px
from herald.domain import scenarios as sc
from herald.domain.campaigns import CampaignType
from herald.domain.content_filter import check_filter
from herald.domain.databases import DatabaseState
from herald.domain.errors import DomainError, NotFound, RuleViolated, ValidationFailed
from herald.domain.fields import FieldType, coerce_value
from herald.domain.scenario_capture import EventCapture, ScheduleCapture, SubscriptionCapture
from herald.domain.scenario_graph import (
    AnyNode,
    CampaignNode,
    ConditionNode,
    CopyToDatabaseNode,
    GoalNode,
    PromoCodeNode,
    ResourceContacts,
    ScenarioGraph,
    StaticSegmentNode,
    StopListNode,
    SubscriptionNode,
    UpdateDataNode,
    WebhookNode,
)
from herald.domain.scenario_instances import JourneyState, journey_stream
from herald.domain.scenario_steps import EntrySource, RequestEntry, journey_decider
from herald.domain.schedules import next_runs
from herald.domain.segments import CountLimit, SegmentQuery, Source
from herald.domain.templating import TemplateSyntaxError, compile_template
from herald.infra.event_store import StreamAppend
from herald.infra.secret_box import SecretBox
from herald.projections.scenario_instances import ScenarioInstancesProjection
from herald.services.aggregates import CommandContext, Loaded, Outcome
from herald.services.campaigns import CampaignService
from herald.services.catalog import CatalogService
from herald.services.scenario_effects import PromoCodes
from herald.services.scenario_secrets import sealed_webhooks
from herald.services.scenario_timers import ScenarioTimers
from herald.services.segments import SegmentService

MAX_ENTERED = 1_000
MAX_SENT = 10_000
_CHUNK = 1_000
_NUMERIC = frozenset({FieldType.INT, FieldType.FLOAT})


class ScenarioService:
    def __init__(
        self,
        catalog: CatalogService,
        campaigns: CampaignService,
        segments: SegmentService,
        projection: ScenarioInstancesProjection,
        timers: ScenarioTimers,
        account_timezone: str,
        box: SecretBox,
        promo_codes: PromoCodes | None = None,
    ) -> None:
        self.catalog = catalog
        self.aggregates = catalog.aggregates
        self.campaigns = campaigns
        self.segments = segments
        self.projection = projection
        self.timers = timers
        self.account_timezone = account_timezone
        self.box = box  # seals the credentials in webhook URLs and parameters
        self.promo_codes = promo_codes

    # --- reading -------------------------------------------------------------------------------

    def loaded(self, scenario_id: str, path: str = "scenario_id") -> Loaded[sc.ScenarioState]:
        loaded = self.aggregates.load(sc.scenario_decider, sc.scenario_stream(scenario_id))
        if not loaded.state.exists:
            raise NotFound(f"no scenario {scenario_id!r}", path)
        return loaded

    def scenario(self, scenario_id: str) -> sc.ScenarioState:
        """The scenario as it is now, existing or not (the processor's port)."""
        return self.aggregates.load(sc.scenario_decider, sc.scenario_stream(scenario_id)).state

    def upcoming_runs(self, scenario_id: str, count: int) -> list[datetime]:
        """An audience scenario's next `count` runs ("Следующие запуски"); none for other captures."""
        state = self.loaded(scenario_id).state
        assert state.settings is not None
        capture = state.settings.capture
        if not isinstance(capture, ScheduleCapture):
            return []
        return next_runs(
            capture.schedule, after=self._now(), count=count, account_timezone=self.account_timezone
        )

    def statistics(self, scenario_id: str, start: date, end: date) -> dict[str, Any]:
        """Entered, completed, in process and errors over a period, and each node's entered and exited."""
        self.loaded(scenario_id)
        counters = self.projection.counters(scenario_id, start.isoformat(), end.isoformat())
        nodes = self.projection.node_counters(scenario_id, start.isoformat(), end.isoformat())
        return {
            "scenario_id": scenario_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "entered": counters.get("entered", 0),
            "completed": counters.get("completed", 0),
            "terminated": counters.get("terminated", 0),
            "rejected": counters.get("rejected", 0),
            "errors": counters.get("errors", 0),
            "in_process": self.projection.in_process(scenario_id),
            "nodes": [
                {
                    "node_id": node_id,
                    "entered": counts.get("entered", 0),
                    "failed": counts.get("failed", 0),
                    "exited": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("exited:")},
                }
                for node_id, counts in nodes.items()
            ],
        }

    # --- commands ------------------------------------------------------------------------------

    def create(
        self, settings: sc.ScenarioSettings, graph: ScenarioGraph, context: CommandContext
    ) -> tuple[str, Outcome]:
        checked_settings, checked, checks = self.checked(settings, graph)
        checked = sealed_webhooks(self.box, checked, None)
        now = self._now()
        seen = len(self.projection.cards())
        return self.catalog.create_numbered(
            sc.scenario_decider,
            sc.scenario_stream,
            seen,
            lambda i: sc.CreateScenario(i, checked_settings, checked, checks, now),
            context,
        )

    def change(
        self,
        scenario_id: str,
        settings: sc.ScenarioSettings,
        graph: ScenarioGraph,
        removed: Sequence[sc.RemovedNode],
        context: CommandContext,
        expected: int | None = None,
    ) -> Outcome:
        checked_settings, checked, checks = self.checked(settings, graph)
        current = self.loaded(scenario_id).state.current
        checked = sealed_webhooks(self.box, checked, current.graph if current else None)
        command = sc.ChangeScenario(
            scenario_id, checked_settings, checked, tuple(removed), checks, self.account_timezone, self._now()
        )
        return self.execute(scenario_id, command, context, expected)

    def activate(self, scenario_id: str, context: CommandContext) -> Outcome:
        state = self.loaded(scenario_id).state
        assert state.settings is not None and state.current is not None
        _, _, checks = self.checked(state.settings, state.current.graph)
        command = sc.ActivateScenario(scenario_id, checks, self.account_timezone, self._now())
        return self.execute(scenario_id, command, context)

    def deactivate(self, scenario_id: str, context: CommandContext) -> Outcome:
        return self.execute(scenario_id, sc.DeactivateScenario(scenario_id, self._now()), context)

    def delete(self, scenario_id: str, context: CommandContext, expected: int | None = None) -> Outcome:
        return self.execute(scenario_id, sc.DeleteScenario(scenario_id, self._now()), context, expected)

    def execute(
        self,
        scenario_id: str,
        command: sc.ScenarioCommand,
        context: CommandContext,
        expected: int | None = None,
    ) -> Outcome:
        self.loaded(scenario_id)
        return self.aggregates.execute(
            sc.scenario_decider, sc.scenario_stream(scenario_id), command, context, expected
        )

    # --- entries -------------------------------------------------------------------------------

    def enter(
        self,
        scenario_id: str,
        selectors: Sequence[Mapping[str, Any]],
        content: Mapping[str, JsonValue] | None,
        request_id: str | None,
        context: CommandContext,
    ) -> list[dict[str, Any]]:
        """The special API call: ask for each profile (by id or match key) to enter, with `content`."""
        state = self._active(scenario_id)
        assert state.settings is not None
        if state.settings.capture.kind != "api":
            raise RuleViolated(
                "this scenario does not capture profiles by the API call: send profiles to it instead",
                "scenario_id",
            )
        if not 1 <= len(selectors) <= MAX_ENTERED:
            raise ValidationFailed(f"name 1 to {MAX_ENTERED} profiles", "profiles")
        profile_ids = [
            self.campaigns.resolve(state.settings.database_id, selector, f"profiles.{i}")
            for i, selector in enumerate(selectors)
        ]
        request = request_id or uuid.uuid4().hex
        self._request(scenario_id, profile_ids, request, "api", content, context)
        return [{"profile_id": profile_id, "status": "requested"} for profile_id in profile_ids]

    def send_profiles(
        self,
        scenario_id: str,
        profile_ids: Sequence[str] | None,
        segment_id: str | None,
        request_id: str | None,
        context: CommandContext,
    ) -> int:
        """Manual entry ("Отправить профили в сценарий"): the listed profiles, or a segment's members now."""
        state = self._active(scenario_id)
        assert state.settings is not None
        if (profile_ids is None) == (segment_id is None):
            raise ValidationFailed("give profile_ids or a segment_id", "profile_ids")
        if profile_ids is not None:
            if not 1 <= len(profile_ids) <= MAX_SENT:
                raise ValidationFailed(f"name 1 to {MAX_SENT} profiles", "profile_ids")
            for i, profile_id in enumerate(profile_ids):
                profile = self.campaigns.profile(profile_id)
                if not profile.exists or profile.database_id != state.settings.database_id:
                    raise NotFound(
                        f"no profile {profile_id!r} in database {state.settings.database_id}",
                        f"profile_ids.{i}",
                    )
            wanted = list(dict.fromkeys(profile_ids))
        else:
            assert segment_id is not None
            members = self.segments.members_now(segment_id)
            wanted = sorted(
                p for p in members if self.campaigns.profile(p).database_id == state.settings.database_id
            )
        self._request(scenario_id, wanted, request_id or uuid.uuid4().hex, "manual", None, context)
        return len(wanted)

    def _active(self, scenario_id: str) -> sc.ScenarioState:
        state = self.loaded(scenario_id).state
        if not state.active:
            raise RuleViolated("the scenario is not active: activate it first", "scenario_id")
        return state

    def _request(
        self,
        scenario_id: str,
        profile_ids: Iterable[str],
        request_id: str,
        source: EntrySource,
        content: Mapping[str, JsonValue] | None,
        context: CommandContext,
    ) -> None:
        """Append an entry request to each profile's journey, in chunks; the same request id never twice."""
        now = self._now()
        appends = []
        for profile_id in profile_ids:
            stream = journey_stream(scenario_id, profile_id)
            command = RequestEntry(
                scenario_id, profile_id, f"{request_id}/{profile_id}", source, now, content
            )
            keyed = replace(context, request_id=command.request_id)
            requested = journey_decider.decide(command, JourneyState())
            appends.append(StreamAppend(stream, self.aggregates.new_events(stream, requested, keyed)))
        for start in range(0, len(appends), _CHUNK):
            self.aggregates.store.append_many(appends[start : start + _CHUNK])

    # --- timers --------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """Start the audience runs that fell due and fire the due waits; how many of each, summed."""
        now = now or self._now()
        started = 0
        for scenario_id, run_number in self.projection.due_runs(now):
            started += self._run(scenario_id, run_number, now)
        return started + self.timers.fire_due(now)

    def _run(self, scenario_id: str, run_number: int, now: datetime) -> int:
        state = self.scenario(scenario_id)
        timer = state.next_run
        if timer is None or timer.run_number != run_number or not state.active or state.settings is None:
            return 0
        capture = state.settings.capture
        assert isinstance(capture, ScheduleCapture)
        query = SegmentQuery(sources=(self._source(state.settings.database_id, capture),))
        members = self.segments.evaluator.members(query, now, self.account_timezone)
        context = CommandContext(actor="scheduler", source="timer")
        self._request(scenario_id, members, f"{scenario_id}-run-{run_number}", "schedule", None, context)
        command = sc.StartScheduledRun(scenario_id, run_number, self.account_timezone, now)
        timer_context = CommandContext(
            actor="scheduler", source="timer", request_id=f"scenario-timer-{scenario_id}-{run_number}"
        )
        self.aggregates.execute(sc.scenario_decider, sc.scenario_stream(scenario_id), command, timer_context)
        return 1

    @staticmethod
    def _source(database_id: str, capture: ScheduleCapture) -> Source:
        return Source(
            database_id=database_id,
            condition=capture.condition,
            rules=capture.rules,
            groups=capture.groups,
            limit=capture.limit or CountLimit(),
        )

    # --- checks --------------------------------------------------------------------------------

    def checked(
        self, settings: sc.ScenarioSettings, graph: ScenarioGraph
    ) -> tuple[sc.ScenarioSettings, ScenarioGraph, sc.ScenarioChecks]:
        """The settings and the graph with their values in stored form, and what is wrong with what they name.

        Refuses at once what makes the rest meaningless (the database does not exist)."""
        database = self.catalog.database(settings.database_id, "settings.database_id")
        problems: list[tuple[str, str]] = []
        settings = self._checked_capture(settings, database, problems)
        nodes = []
        for i, node in enumerate(graph.nodes):
            path = f"graph.nodes.{i}"
            try:
                nodes.append(self._checked_node(node, database, path))
            except DomainError as error:
                problems.append((error.path or path, error.reason))
                nodes.append(node)
        return settings, graph.model_copy(update={"nodes": tuple(nodes)}), sc.ScenarioChecks(tuple(problems))

    def _checked_capture(
        self, settings: sc.ScenarioSettings, database: DatabaseState, problems: list[tuple[str, str]]
    ) -> sc.ScenarioSettings:
        capture, path = settings.capture, "settings.capture"
        try:
            if isinstance(capture, ScheduleCapture):
                source = self._checked_source(database.database_id, capture, path)
                capture = capture.model_copy(
                    update={"rules": source.rules, "groups": source.groups, "condition": source.condition}
                )
            elif isinstance(capture, EventCapture):
                capture = capture.model_copy(
                    update={"filter": check_filter(capture.filter, f"{path}.filter")}
                )
            elif isinstance(capture, SubscriptionCapture) and capture.resource_id is not None:
                self.catalog.resource(capture.resource_id, f"{path}.resource_id")
        except DomainError as error:
            problems.append((error.path or path, error.reason))
        return settings.model_copy(update={"capture": capture})

    def _checked_source(self, database_id: str, rules: ScheduleCapture | ConditionNode, path: str) -> Source:
        """Segment rules over the scenario's database, checked as a segment's (paths under `path`)."""
        limit = rules.limit or CountLimit()
        source = Source(
            database_id=database_id,
            condition=rules.condition,
            rules=rules.rules,
            groups=rules.groups,
            limit=limit,
        )
        try:
            checked = self.segments.check(SegmentQuery(sources=(source,)), path=path)
        except DomainError as error:
            raise type(error)(error.reason, error.path.replace(f"{path}.sources.0", path, 1)) from None
        return checked.sources[0]

    def _checked_node(self, node: AnyNode, database: DatabaseState, path: str) -> AnyNode:
        match node:
            case CampaignNode():
                self._check_campaign(node, database.database_id, path)
            case ConditionNode():
                source = self._checked_source(database.database_id, node, path)
                return node.model_copy(update={"rules": source.rules, "groups": source.groups})
            case UpdateDataNode():
                return node.model_copy(update={"operations": _checked_operations(node, database, path)})
            case CopyToDatabaseNode():
                self._check_copy(node, database, path)
            case SubscriptionNode():
                self._check_subscription(node, database.database_id, path)
            case WebhookNode():
                _check_webhook(node, path)
            case GoalNode():
                self._check_pixel(node.pixel_id, database.database_id, f"{path}.pixel_id")
            case PromoCodeNode():
                if self.promo_codes is None or not self.promo_codes.program_exists(node.program_id):
                    raise NotFound(f"no loyalty program {node.program_id!r}", f"{path}.program_id")
            case StopListNode():
                self.catalog.listed_stop_list(node.stop_list_id, f"{path}.stop_list_id")
                self.catalog.resource(node.resource_id, f"{path}.resource_id")
            case StaticSegmentNode():
                segment = self.segments.loaded(node.segment_id, f"{path}.segment_id").state
                if segment.kind != "static":
                    raise RuleViolated(
                        f"segment {node.segment_id} is dynamic: name a static one", f"{path}.segment_id"
                    )
        return node

    def _check_pixel(self, pixel_id: str, database_id: str, path: str) -> None:
        """A goal node's pixel exists and counts goals of the scenario's database (its own, or all)."""
        pixel = self.aggregates.load(px.pixel_decider, px.pixel_stream(pixel_id)).state
        if not pixel.exists:
            raise NotFound(f"no pixel {pixel_id!r}", path)
        own = pixel.settings.database_id if pixel.settings is not None else None
        if own not in (None, database_id):
            raise RuleViolated(
                f"pixel {pixel_id} is of database {own}, not the scenario's {database_id}", path
            )

    def _check_campaign(self, node: CampaignNode, database_id: str, path: str) -> None:
        at = f"{path}.campaign_id"
        settings = self.campaigns.loaded(node.campaign_id, at).state.settings
        assert settings is not None
        if settings.type is not CampaignType.TRIGGER:
            raise RuleViolated(
                f"campaign {node.campaign_id} is a {settings.type} campaign: name a trigger", at
            )
        if settings.database_id != database_id:
            raise RuleViolated(
                f"trigger {node.campaign_id} fires for database {settings.database_id}, not {database_id}", at
            )

    def _check_copy(self, node: CopyToDatabaseNode, database: DatabaseState, path: str) -> None:
        if node.database_id == database.database_id:
            raise ValidationFailed("copy to another database than the scenario's", f"{path}.database_id")
        target = self.catalog.database(node.database_id, f"{path}.database_id")
        for i, mapping in enumerate(node.fields):
            held = database.field(mapping.source)
            if held is None:
                raise ValidationFailed(
                    f"the scenario's database has no field {mapping.source!r}", f"{path}.fields.{i}.source"
                )
            if mapping.target is None:
                continue
            wanted = target.field(mapping.target)
            if wanted is None or wanted.type is not held.type:
                raise ValidationFailed(
                    f"database {node.database_id} has no {held.type} field {mapping.target!r}",
                    f"{path}.fields.{i}.target",
                )

    def _check_subscription(self, node: SubscriptionNode, database_id: str, path: str) -> None:
        resource = self.catalog.resource(node.resource_id, f"{path}.resource_id")
        if not resource.accepts_database(database_id):
            raise RuleViolated(
                f"resource {node.resource_id} does not take database {database_id}", f"{path}.resource_id"
            )
        for i, channel in enumerate(node.channels):
            if not resource.channel_enabled(channel):
                raise RuleViolated(
                    f"resource {node.resource_id} has no {channel} channel", f"{path}.channels.{i}"
                )
        if isinstance(node.source, ResourceContacts):
            self.catalog.resource(node.source.resource_id, f"{path}.source.resource_id")

    def _now(self) -> datetime:
        return self.aggregates.clock.now()


def _checked_operations(node: UpdateDataNode, database: DatabaseState, path: str) -> tuple[Any, ...]:
    operations = []
    for i, operation in enumerate(node.operations):
        at = f"{path}.operations.{i}"
        definition = database.field(operation.field)
        if definition is None:
            raise ValidationFailed(f"the database has no field {operation.field!r}", f"{at}.field")
        kind = definition.type
        if operation.op in ("increment", "decrement") and kind not in _NUMERIC:
            raise ValidationFailed(f"{operation.op} applies to number fields, not {kind}", f"{at}.op")
        if operation.op == "add_tags" and kind is not FieldType.TAGS:
            raise ValidationFailed(f"add_tags applies to tags fields, not {kind}", f"{at}.op")
        if operation.op == "clear" and definition.required:
            raise ValidationFailed(f"{definition.label} is required: it cannot be cleared", f"{at}.op")
        value = operation.value
        if operation.op != "clear":
            value = coerce_value(definition, value, f"{at}.value")
            if value is None:
                raise ValidationFailed("a value is required", f"{at}.value")
        operations.append(operation.model_copy(update={"field": definition.name, "value": value}))
    return tuple(operations)


def _check_webhook(node: WebhookNode, path: str) -> None:
    if not node.url.strip().lower().startswith(("http://", "https://")):
        raise ValidationFailed("the URL must start with http:// or https://", f"{path}.url")
    texts = [(f"{path}.url", node.url)] + [
        (f"{path}.params.{i}.value", p.value) for i, p in enumerate(node.params) if p.source == "custom"
    ]
    for at, text in texts:
        try:
            compile_template(text)
        except TemplateSyntaxError as error:
            raise ValidationFailed(error.message, at) from None
