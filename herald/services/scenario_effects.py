"""The actions of a scenario's nodes: each a command on another aggregate, with ids derived from the step.

`ScenarioEffects.act` is the scenario processor's port for the nodes whose action changes other
objects. Every command carries the request id `scenario-step:<step>` (a step is one visit of one
instance to one node), so doing a step again — a redelivered event, a restart after a crash —
appends nothing new; a failure that belongs to the node (a trigger that is not active, a value the
field cannot take) is its outcome, recorded on the journey, not an error of the processor.

| node | does | through |
|---|---|---|
| campaign | the trigger campaign's message, its content the entry's | `CampaignService.scenario_message` |
| update_data | set / clear / increment / decrement / add tags | `ProfileService.update_fields` |
| copy_to_database | the profile's fields into another database, matched by email | `import_rows` |
| subscription | add or update subscriptions on the target resource's channels | profile commands |
| goal | one goal event per goal, with the node's value, bound to its pixel | the activity stream |
| promo_code | binds a code of the loyalty program (`PromoCodes`) | the loyalty service |
| stop_list | adds the profile's contacts to a stop list, or removes them | `change_stop_list` |
| static_segment | adds the profile to a static segment, or removes it | `SegmentService.add_profiles` |

Decisions where the guide is silent:
- Update data: incrementing a field with no value starts from 0; decrementing is incrementing by
  the negative; adding tags keeps the ones there.
- Copy to database: standard fields are copied when the target holds them, custom fields as
  mapped (unmapped ones to a same-named field of the same type); a profile without an email cannot
  be matched in the target and the node fails.
- Subscriptions from the profile: Email from `email`, SMS from the first of `phones`; from another
  resource: its subscriptions on that channel, the unsafe statuses only when asked for.
- Stop lists take email addresses and phones; a subscription status filter picks whose contacts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import JsonValue

from herald.domain import profiles as pr
from herald.domain import subscriptions as subs
from herald.domain.databases import DatabaseState
from herald.domain.errors import DomainError
from herald.domain.fields import STANDARD_FIELDS
from herald.domain.goals import goal_properties
from herald.domain.messages import message_stream
from herald.domain.profiles import ProfileState, is_placeholder_email
from herald.domain.scenario_graph import (
    AnyNode,
    CampaignNode,
    CopyToDatabaseNode,
    GoalNode,
    PromoCodeNode,
    ResourceContacts,
    StaticSegmentNode,
    StopListNode,
    SubscriptionNode,
    UpdateDataNode,
)
from herald.domain.scenario_instances import Instance
from herald.domain.scenario_steps import EffectOutcome
from herald.domain.scenarios import ScenarioState
from herald.domain.stop_lists import AddStopListEntries, EntryReason, RemoveStopListEntries
from herald.domain.tracking import activity_payload, activity_stream
from herald.infra.event_store import NewEvent, StreamAppend
from herald.infra.ids import deterministic_id
from herald.services.aggregates import CommandContext
from herald.services.campaigns import CampaignService, Lookups, decision_json
from herald.services.profiles import ImportOptions, ProfileService
from herald.services.segments import SegmentService

GOAL_EVENT = "scenario_goal"


@dataclass(frozen=True, slots=True)
class PromoAssignment:
    """What the loyalty service did: the profile's code of the program, or why it has none."""

    code: str | None
    reason: str | None = None  # `program_inactive`, `no_free_codes`, … when no code could be bound


class PromoCodes(Protocol):
    """The loyalty service's port: bind a program's promo code to a profile, once per request id."""

    def program_exists(self, program_id: str) -> bool: ...

    def assign(
        self,
        program_id: str,
        profile_id: str,
        request_id: str,
        scenario_id: str = "",
        scenario_name: str = "",
    ) -> PromoAssignment:
        """The profile's code of the program: the one it has, a free one, or one made if allowed (an
        external code service is told the scenario)."""
        ...


class ScenarioEffects:
    """Does a node's action for one profile; the scenario processor's `act` port."""

    def __init__(
        self,
        campaigns: CampaignService,
        profiles: ProfileService,
        segments: SegmentService,
        promo_codes: PromoCodes | None = None,
    ) -> None:
        self._campaigns = campaigns
        self._profiles = profiles
        self._segments = segments
        self._catalog = profiles.catalog
        self._aggregates = profiles.aggregates
        self.promo_codes = promo_codes
        self._lookups: Lookups | None = (
            None  # what a batch of steps reads once (triggers, templates, policies)
        )
        self._handlers: Mapping[type, Callable[[Any, _Step], EffectOutcome]] = {
            CampaignNode: self._campaign,
            UpdateDataNode: self._update_data,
            CopyToDatabaseNode: self._copy,
            SubscriptionNode: self._subscriptions,
            GoalNode: self._goals,
            PromoCodeNode: self._promo_code,
            StopListNode: self._stop_list,
            StaticSegmentNode: self._static_segment,
        }

    def act(
        self, node: AnyNode, scenario: ScenarioState, profile: ProfileState, instance: Instance, step_id: str
    ) -> tuple[EffectOutcome, list[StreamAppend]]:
        """The node's outcome, and what to append with the journey's decision (a message, once).

        Most actions are commands appended at once (each idempotent by the step's request id); a
        campaign node's message is returned to be appended atomically with the step's exit."""
        name = scenario.settings.name if scenario.settings is not None else ""
        step = _Step(scenario.scenario_id, profile, instance, step_id, self._aggregates.clock.now(), name)
        try:
            return self._handlers[type(node)](node, step), step.appends
        except DomainError as error:
            return EffectOutcome(error=_reason(error)), []

    def settled(self) -> None:
        """A batch of steps is done: read triggers, templates and policies afresh for the next."""
        self._lookups = None

    # --- the nodes ---------------------------------------------------------------------------

    def _campaign(self, node: CampaignNode, step: _Step) -> EffectOutcome:
        if self._lookups is None:
            self._lookups = self._campaigns.lookups(chunk=False)
        decision = self._campaigns.scenario_message(
            node.campaign_id,
            step.profile,
            step.step_id,
            step.instance.content,
            step.scenario_id,
            self._lookups,
        )
        stream = message_stream(decision.message_id)
        new = self._aggregates.new_events(stream, [decision], step.context())
        step.appends.append(StreamAppend(stream, new, 0))
        return EffectOutcome(detail={"campaign_id": node.campaign_id, **_json(decision_json(decision))})

    def _update_data(self, node: UpdateDataNode, step: _Step) -> EffectOutcome:
        profile = step.profile
        values = {
            op.field: _new_value(profile.fields.get(op.field), op.op, op.value) for op in node.operations
        }
        self._profiles.update_fields(profile.profile_id, values, step.context())
        changed: list[JsonValue] = [*sorted(values)]
        return EffectOutcome(detail={"fields": changed})

    def _copy(self, node: CopyToDatabaseNode, step: _Step) -> EffectOutcome:
        profile = step.profile
        email = profile.fields.get("email")
        if not isinstance(email, str) or is_placeholder_email(email):
            return EffectOutcome(error="the profile has no email to match it by in the target database")
        source = self._catalog.database(profile.database_id)
        target = self._catalog.database(node.database_id)
        row = dict(_copied_fields(profile, source, target, {m.source: m.target for m in node.fields}))
        mode = pr.ImportMode.ADD_AND_UPDATE if node.update_existing else pr.ImportMode.ADD_ONLY
        options = ImportOptions(mode=mode, source="scenario", cause=subs.Cause.SCENARIO)
        result = self._profiles.import_rows(node.database_id, [row], options, step.context())[0]
        if result.error is not None:
            return EffectOutcome(error=_reason(result.error))
        return EffectOutcome(
            detail={"database_id": node.database_id, "profile_id": result.profile_id, "status": result.status}
        )

    def _subscriptions(self, node: SubscriptionNode, step: _Step) -> EffectOutcome:
        resource = self._catalog.resource(node.resource_id)
        commands = list(self._subscription_commands(node, step, resource))
        for i, command in enumerate(commands):
            self._profiles.execute(step.profile.profile_id, command, step.context(i))
        return EffectOutcome(detail={"resource_id": node.resource_id, "subscriptions": len(commands)})

    def _subscription_commands(
        self, node: SubscriptionNode, step: _Step, resource: Any
    ) -> Iterator[subs.SubscriptionCommand]:
        profile = step.profile
        for channel in node.channels:
            if node.mode == "update":
                for held in profile.subscriptions.of_resource(node.resource_id, channel):
                    key = held.key
                    yield subs.ChangeSubscriptionStatus(
                        resource_id=key.resource_id,
                        channel=channel,
                        contact=key.contact,
                        provider=key.provider,
                        at=step.at,
                        status=node.status,
                        cause=subs.Cause.SCENARIO,
                    )
                continue
            for contact, provider in _contacts(node, profile, channel):
                yield subs.AddSubscription(
                    resource_id=node.resource_id,
                    channel=channel,
                    contact=contact,
                    provider=provider,
                    at=step.at,
                    resource=resource,
                    status=node.status,
                    cause=subs.Cause.SCENARIO,
                )

    def _goals(self, node: GoalNode, step: _Step) -> EffectOutcome:
        profile = step.profile
        stream = activity_stream(profile.profile_id)
        events = [
            NewEvent(
                event_id=deterministic_id("scenario-goal", step.step_id, goal),
                type="ActivityTracked",
                data=activity_payload(
                    database_id=profile.database_id,
                    name=GOAL_EVENT,
                    at=step.at.isoformat(),
                    profile_id=profile.profile_id,
                    properties=goal_properties(goal, node.pixel_id, node.value, "scenario_node"),
                    context={"source": "scenario", "scenario_id": step.scenario_id},
                ),
                occurred_at=step.at,
                metadata=step.context().metadata(),
            )
            for goal in node.goals
        ]
        self._aggregates.store.append(stream, events)
        return EffectOutcome(
            detail={"pixel_id": node.pixel_id, "goals": list(node.goals), "value": node.value}
        )

    def _promo_code(self, node: PromoCodeNode, step: _Step) -> EffectOutcome:
        if self.promo_codes is None:
            return EffectOutcome(end_reason="promo_unavailable: this server has no loyalty programs")
        assigned = self.promo_codes.assign(
            node.program_id,
            step.profile.profile_id,
            f"scenario-step:{step.step_id}",
            step.scenario_id,
            step.scenario_name,
        )
        if assigned.code is None:
            return EffectOutcome(end_reason=f"promo_unavailable: {assigned.reason or 'no code'}")
        return EffectOutcome(detail={"program_id": node.program_id, "code": assigned.code})

    def _stop_list(self, node: StopListNode, step: _Step) -> EffectOutcome:
        held = [
            s
            for s in step.profile.subscriptions.of_resource(node.resource_id, node.channel)
            if not node.statuses or s.status in node.statuses
        ]
        chosen = held[:1] if node.contacts == "highest_priority" else held
        items = tuple(dict.fromkeys(s.key.contact for s in chosen))
        if items:
            command = (
                AddStopListEntries(node.stop_list_id, items, EntryReason.SCENARIO, step.at)
                if node.action == "add"
                else RemoveStopListEntries(node.stop_list_id, items, step.at)
            )
            self._catalog.change_stop_list(command, step.context())
        return EffectOutcome(
            detail={"stop_list_id": node.stop_list_id, "action": node.action, "contacts": len(items)}
        )

    def _static_segment(self, node: StaticSegmentNode, step: _Step) -> EffectOutcome:
        change = self._segments.add_profiles if node.action == "add" else self._segments.remove_profiles
        change(node.segment_id, [step.profile.profile_id], f"scenario-step:{step.step_id}", step.context())
        return EffectOutcome(detail={"segment_id": node.segment_id, "action": node.action})


@dataclass(frozen=True, slots=True)
class _Step:
    scenario_id: str
    profile: ProfileState
    instance: Instance
    step_id: str
    at: datetime
    scenario_name: str = ""
    appends: list[StreamAppend] = field(default_factory=list)

    def context(self, part: int = 0) -> CommandContext:
        """The command context of the step's `part`-th command: its request id makes a retry a no-op."""
        request = f"scenario-step:{self.step_id}" + (f"/{part}" if part else "")
        return CommandContext(actor=f"scenario:{self.scenario_id}", source="scenario", request_id=request)


def _new_value(current: JsonValue, op: str, value: JsonValue) -> JsonValue:
    """A field's value after an update-data operation (the field's type was checked at save)."""
    if op == "clear":
        return None
    if op in ("increment", "decrement"):
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        step = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
        return base + step if op == "increment" else base - step
    if op == "add_tags":
        held = current if isinstance(current, list) else []
        added = value if isinstance(value, list) else [value]
        tags: list[JsonValue] = [*sorted({str(tag) for tag in [*held, *added]})]
        return tags
    return value


def _copied_fields(
    profile: ProfileState, source: DatabaseState, target: DatabaseState, mapping: Mapping[str, str | None]
) -> Iterator[tuple[str, JsonValue]]:
    """The profile's fields as the target database takes them: standard ones as they are, custom as mapped."""
    for name, value in profile.fields.items():
        if name in STANDARD_FIELDS:
            yield name, value  # every database has the standard fields
        elif name in mapping:
            mapped = mapping[name]
            if mapped is not None:
                yield mapped, value
        else:
            held, wanted = source.field(name), target.field(name)
            if held is not None and wanted is not None and held.type is wanted.type:
                yield name, value


def _contacts(
    node: SubscriptionNode, profile: ProfileState, channel: str
) -> Iterator[tuple[str, str | None]]:
    if isinstance(node.source, ResourceContacts):
        for held in profile.subscriptions.of_resource(node.source.resource_id, channel):
            if node.include_unsafe or not held.status.is_unsafe:
                yield held.key.contact, held.key.provider
        return
    if channel == "email" and not is_placeholder_email(profile.email):
        yield profile.email, None
    elif channel == "sms" and profile.phones:
        yield profile.phones[0], None


def _json(result: Mapping[str, Any]) -> dict[str, JsonValue]:
    return {
        key: value
        for key, value in result.items()
        if isinstance(value, str | int | float | bool | type(None))
    }


def _reason(error: DomainError) -> str:
    return f"{error.path}: {error.reason}" if error.path else error.reason
