"""Campaigns: their commands with the checks they need, the ports a run reads, timers, triggers, tests.

Decisions where the guide is silent:
- Campaign ids are short sequential numbers, like other catalog objects.
- The checks the guide asks for at save and at activation: the resource
  exists and has the channel; every template exists, is not deleted, has
  content for the channel and (at activation) is not a draft; the audience's
  database exists and is one of the resource's; a named sending policy exists;
  a broadcast to start after another names an existing broadcast.
- Due timers are fired by `tick(now)`: the server calls it every few
  seconds, tests call it after moving the clock. Each firing is an
  idempotent command (its request id is the timer), so two ticks that race
  start one run.
- Triggers: `fire` sends one message per named profile; a client request id
  makes a retried call a no-op (the message ids derive from it). Without a
  request id every call sends again, as the guide describes; sending
  policies are then the only limiter.
- A test send goes to listed contacts with the campaign's templates (all of
  them, one message each), personalised with a chosen profile or with none;
  it is marked a test everywhere, bypasses policies and is not counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Protocol

from herald.domain import campaigns as cp
from herald.domain import messages as ms
from herald.domain import sending_policies as sp
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.messages import MessageDraft
from herald.domain.profiles import ProfileState, profile_decider, profile_stream
from herald.domain.schedules import next_runs
from herald.domain.send_gate import SendGate
from herald.domain.templates import (
    Channel,
    TemplateState,
    template_decider,
    template_stream,
)
from herald.infra.failures import Unavailable
from herald.infra.signing import TokenSigner
from herald.messages import decisions
from herald.messages.decisions import MessageDecisions
from herald.messages.gate import SendGates
from herald.messages.rendering import MessageRenderer
from herald.processors.runtime import Emission
from herald.projections.campaigns import CampaignsProjection
from herald.projections.catalog import CAMPAIGN
from herald.projections.profiles import ProfilesProjection
from herald.projections.send_history import SendHistoryProjection
from herald.services.aggregates import CommandContext, Loaded, Outcome
from herald.services.catalog import CatalogService
from herald.services.profile_lookup import ProfileLookup
from herald.services.promo_rendering import CampaignPromoCodes


class ReadModelBehind(Unavailable):
    """A read model a decision needs has not caught up with the log yet: try again in a moment."""


class SegmentAudiences(Protocol):
    """The segments port: what a campaign whose audience is a segment needs to know of it."""

    def databases(self, segment_id: str) -> Sequence[str]:
        """The databases the segment's sources read (raises NotFound for an unknown segment)."""
        ...

    def members_now(self, segment_id: str) -> Collection[str]:
        """The segment's members now: a dynamic one evaluated (limits applied), a static one's list."""
        ...


class CampaignService:
    def __init__(
        self,
        catalog: CatalogService,
        profile_reads: ProfilesProjection,
        campaigns: CampaignsProjection,
        history: SendHistoryProjection,
        renderer: MessageRenderer,
        signer: TokenSigner,
        account_timezone: str,
        segments: SegmentAudiences | None = None,
        promo: CampaignPromoCodes | None = None,
    ) -> None:
        self.segments = segments
        self.promo = promo
        self.catalog = catalog
        self.aggregates = catalog.aggregates
        self.profile_reads = profile_reads
        self.projection = campaigns
        self.history = history
        self.renderer = renderer
        self.signer = signer
        self.account_timezone = account_timezone
        self.gates = SendGates(self.aggregates, catalog, history, account_timezone)
        self.decisions = MessageDecisions(self.aggregates, catalog, renderer, signer, self.gates, promo)

    # --- reading -------------------------------------------------------------------------------

    def loaded(self, campaign_id: str, path: str = "campaign_id") -> Loaded[cp.CampaignState]:
        loaded = self.aggregates.load(cp.campaign_decider, cp.campaign_stream(campaign_id))
        if not loaded.state.exists:
            raise NotFound(f"no campaign {campaign_id!r}", path)
        return loaded

    def campaign(self, campaign_id: str) -> cp.CampaignState:
        """The campaign's state now (the run processor's port)."""
        return self.aggregates.load(cp.campaign_decider, cp.campaign_stream(campaign_id)).state

    def listed(self) -> list[dict[str, Any]]:
        return self.catalog.projection.objects(CAMPAIGN)

    def recipient(self, campaign_id: str, profile_id: str) -> dict[str, Any]:
        """ "Why didn't X get it": every decision the campaign made for the profile; with none, whether
        the profile is in the campaign's audience at all and why (or why not). 404 for a profile that
        never existed."""
        state = self.loaded(campaign_id).state
        settings = cp.existing_settings(state)
        decisions = self.projection.recipient(campaign_id, profile_id)
        profile = self.profile(profile_id)
        if not decisions and not profile.created:
            raise NotFound(f"no profile {profile_id!r}", "profile_id")
        found: dict[str, Any] = {"profile_id": profile_id, "decisions": decisions}
        if not decisions:
            in_audience, reason = self._audience_verdict(state, settings, profile)
            found["audience"] = {"in_audience": in_audience, "reason": reason}
        return found

    def _audience_verdict(
        self, state: cp.CampaignState, settings: cp.CampaignSettings, profile: ProfileState
    ) -> tuple[bool, str]:
        """Whether a profile the campaign decided nothing for is in its audience, and what that means."""
        if not profile.exists:
            return False, "the profile was deleted (or merged into another) before any run reached it"
        databases = self._audience_databases(settings)
        if profile.database_id not in databases:
            where = ", ".join(databases) or "none"
            return False, f"the profile is in database {profile.database_id}; the audience is in {where}"
        if settings.type is cp.CampaignType.TRIGGER:
            return True, "the trigger has not been fired for this profile"
        audience = settings.audience
        segment = audience.id if audience is not None and audience.kind == "segment" else None
        if segment is not None and profile.profile_id not in self._members(segment):
            return False, f"the profile is not a member of segment {segment}"
        if not profile.subscriptions.of_resource(settings.resource_id, settings.channel):
            missing = f"no {settings.channel} subscription on resource {settings.resource_id}"
            return False, f"the profile has {missing}, so it is not in the audience"
        if not self.projection.runs(state.campaign_id):
            return True, "the campaign has not run yet"
        return True, "no run has reached the profile yet: it joined the audience after the last run began"

    # --- commands ------------------------------------------------------------------------------

    def create(self, settings: cp.CampaignSettings, context: CommandContext) -> tuple[str, Outcome]:
        checks = self.checks(settings, at_activation=False)
        now = self.aggregates.clock.now()
        seen = len(self.catalog.projection.objects(CAMPAIGN, include_deleted=True))
        return self.catalog.create_numbered(
            cp.campaign_decider,
            cp.campaign_stream,
            seen,
            lambda i: cp.CreateCampaign(i, settings, checks, now),
            context,
        )

    def execute(
        self,
        campaign_id: str,
        command: cp.CampaignCommand,
        context: CommandContext,
        expected: int | None = None,
    ) -> Outcome:
        stream = cp.campaign_stream(campaign_id)
        return self.aggregates.execute(cp.campaign_decider, stream, command, context, expected)

    def update(
        self,
        campaign_id: str,
        settings: cp.CampaignSettings,
        context: CommandContext,
        expected: int | None = None,
    ) -> Outcome:
        command = cp.UpdateCampaign(
            campaign_id, settings, self.checks(settings, at_activation=False), self._now()
        )
        return self.execute(campaign_id, command, context, expected)

    def activate(self, campaign_id: str, context: CommandContext) -> Outcome:
        return self.execute(campaign_id, self.activation(campaign_id, self._now()), context)

    def activation(self, campaign_id: str, at: datetime) -> cp.ActivateCampaign:
        """The activation command, with the checks of the objects the campaign names done now."""
        checks = self.checks(self._settings(campaign_id), at_activation=True)
        return cp.ActivateCampaign(campaign_id, checks, self.account_timezone, at)

    def followers(self, campaign_id: str) -> list[str]:
        """Inactive broadcasts set to start when `campaign_id` completes."""
        return [
            doc["campaign_id"]
            for doc in self.listed()
            if doc["settings"]["start_after_campaign_id"] == campaign_id
            and doc["status"] == cp.CampaignStatus.INACTIVE
        ]

    def segment_triggers(self, segment_id: str, entered_at: datetime) -> list[str]:
        """Trigger campaigns that fire when a profile enters `segment_id`, live since `entered_at` or
        earlier: an entry handled again after a trigger was activated or resumed does not fire it."""
        return self.projection.segment_triggers(segment_id, entered_at)

    def launch_now(self, campaign_id: str, context: CommandContext) -> Outcome:
        settings = self._settings(campaign_id)
        command = cp.LaunchCampaignNow(campaign_id, self.checks(settings, at_activation=True), self._now())
        return self.execute(campaign_id, command, context)

    def select_winner(self, campaign_id: str, template_id: str, context: CommandContext) -> Outcome:
        command = cp.SelectWinner(campaign_id, template_id, "manual", {}, self.account_timezone, self._now())
        return self.execute(campaign_id, command, context)

    def _settings(self, campaign_id: str) -> cp.CampaignSettings:
        return cp.existing_settings(self.loaded(campaign_id).state)

    def _now(self) -> datetime:
        return self.aggregates.clock.now()

    # --- checks --------------------------------------------------------------------------------

    def checks(self, settings: cp.CampaignSettings, at_activation: bool) -> cp.CampaignChecks:
        """What is wrong with the objects `settings` names, as (path, reason) pairs."""
        problems: list[tuple[str, str]] = []
        problems += self._resource_problems(settings)
        problems += self._template_problems(settings, at_activation)
        problems += self._reference_problems(settings)
        return cp.CampaignChecks(tuple(problems))

    def _resource_problems(self, settings: cp.CampaignSettings) -> list[tuple[str, str]]:
        try:
            resource = self.catalog.resource(settings.resource_id)
        except NotFound as error:
            return [("resource_id", error.reason)]
        problems = []
        if not resource.channel_enabled(settings.channel):
            problems.append(("channel", f"resource {settings.resource_id} has no {settings.channel} channel"))
        at = "audience.id" if settings.audience is not None else "database_id"
        try:
            database_ids = self._audience_databases(settings)
        except NotFound as error:
            return [*problems, (at, error.reason)]
        for database_id in database_ids:
            try:
                self.catalog.database(database_id, at)
            except NotFound as error:
                problems.append((at, error.reason))
            else:
                if not resource.accepts_database(database_id):
                    problems.append(
                        (at, f"database {database_id} is not one of resource {settings.resource_id}'s")
                    )
        return problems

    def _audience_databases(self, settings: cp.CampaignSettings) -> Sequence[str]:
        """The databases a campaign's recipients come from (raises NotFound for an unknown segment)."""
        audience = settings.audience
        if audience is None:
            return [settings.database_id] if settings.database_id is not None else []
        if audience.kind == "database":
            return [audience.id]
        if self.segments is None:
            raise NotFound("this server keeps no segments", "audience.id")
        return self.segments.databases(audience.id)

    def _template_problems(self, settings: cp.CampaignSettings, at_activation: bool) -> list[tuple[str, str]]:
        problems = []
        for i, template_id in enumerate(settings.template_ids):
            state = self.template_state(template_id)
            path = f"template_ids.{i}"
            if not state.exists or state.content is None:
                problems.append((path, f"no template {template_id!r}"))
            elif state.content.channel(Channel(settings.channel)) is None:
                problems.append((path, f"template {template_id} has no {settings.channel} content"))
            elif at_activation and state.draft:
                problems.append((path, f"template {template_id} is a draft: publish it before sending"))
        return problems

    def _reference_problems(self, settings: cp.CampaignSettings) -> list[tuple[str, str]]:
        problems = []
        if settings.sending_policy_id is not None:
            state = self.aggregates.load(
                sp.sending_policy_decider, sp.sending_policy_stream(settings.sending_policy_id)
            ).state
            if not state.exists:
                problems.append(("sending_policy_id", f"no sending policy {settings.sending_policy_id!r}"))
        entered = settings.trigger.segment_id if settings.trigger is not None else None
        if entered is not None:
            problems += self._segment_trigger_problems(entered, settings.database_id)
        after = settings.start_after_campaign_id
        if after is not None:
            other = self.campaign(after)
            if (
                not other.exists
                or other.settings is None
                or other.settings.type is not cp.CampaignType.BROADCAST
            ):
                problems.append(("start_after_campaign_id", f"no broadcast campaign {after!r}"))
        return problems

    def _segment_trigger_problems(self, segment_id: str, database_id: str | None) -> list[tuple[str, str]]:
        at = "trigger.segment_id"
        if self.segments is None:
            return [(at, "this server keeps no segments")]
        try:
            databases = self.segments.databases(segment_id)
        except NotFound as error:
            return [(at, error.reason)]
        if database_id not in databases:
            return [(at, f"segment {segment_id} has no profiles of database {database_id}")]
        return []

    def template_state(self, template_id: str) -> TemplateState:
        return self.aggregates.load(template_decider, template_stream(template_id)).state

    # --- the run processor's ports -------------------------------------------------------------

    def audience(self, state: cp.CampaignState, phase: str) -> Iterable[str]:
        settings = cp.existing_settings(state)
        if settings.audience is None:
            raise RuleViolated(f"a {settings.type} campaign has no audience to run through", "audience")
        ids = self._subscribers(settings, settings.audience)
        if settings.type in (cp.CampaignType.BROADCAST, cp.CampaignType.SPLIT_TEST):
            reached = self.projection.reached(state.campaign_id)
            return [p for p in ids if p not in reached]
        if state.cursor is not None and state.current_limit is not None:
            after = [p for p in ids if p > state.cursor]
            return after + [p for p in ids if p <= state.cursor]  # a regular campaign's portions wrap
        return ids

    def _subscribers(self, settings: cp.CampaignSettings, audience: cp.Audience) -> list[str]:
        """The audience's profiles with a subscription on the campaign's resource and channel, by id."""
        if audience.kind == "database":
            return self.profile_reads.audience(audience.id, settings.resource_id, settings.channel)
        members = set(self._members(audience.id))
        return sorted(
            profile_id
            for database_id in self._audience_databases(settings)
            for profile_id in self.profile_reads.audience(database_id, settings.resource_id, settings.channel)
            if profile_id in members
        )

    def _members(self, segment_id: str) -> Collection[str]:
        if self.segments is None:  # the checks refuse a segment audience without segments
            raise NotFound("this server keeps no segments", "audience.id")
        return self.segments.members_now(segment_id)

    def profile(self, profile_id: str) -> ProfileState:
        return self.aggregates.load(profile_decider, profile_stream(profile_id)).state

    def run_contacts(self, campaign_id: str, run_id: str, seen_at: int) -> set[str]:
        """The contacts the run's recorded messages used, read once the read model has seen `seen_at`
        (the progress event that follows them); before that, `ReadModelBehind` (retried)."""
        if self.projection.checkpoint() < seen_at:
            raise ReadModelBehind(f"the campaigns read model has not reached position {seen_at} yet")
        return self.projection.run_contacts(campaign_id, run_id)

    # the message pipeline's (herald/messages/), the run processor's ports
    def gate(
        self,
        settings: cp.CampaignSettings,
        at: datetime,
        is_test: bool = False,
        policy: sp.SendingPolicy | None = None,
    ) -> SendGate:
        return self.gates.gate(settings, at, is_test, policy)

    def policy_of(self, settings: cp.CampaignSettings) -> sp.SendingPolicy:
        return self.gates.policy(settings)

    def lookups(self, chunk: bool = True) -> Lookups:
        """A cache of templates, resources, database names, policies and triggers for one chunk of a
        run's decisions, and the promo codes the chunk gives out (appended with its decisions:
        `chunk_effects`). Without `chunk` (a scenario processor's batch, whose messages are appended by
        their steps) each message's promo codes are given out at once, as a trigger's are."""
        return Lookups(self, chunk=chunk)

    def chunk_effects(self, lookups: object, seed: str) -> list[Emission]:
        """The promo codes a run's chunk gave out, as emissions appended with the chunk's decisions."""
        if not isinstance(lookups, Lookups) or lookups.promo is None:
            return []
        emissions: list[Emission] = lookups.promo.emissions(seed)
        return emissions

    def local_day(self, profile: ProfileState, at: datetime) -> date:
        return self.gates.local_day(profile, at)

    # --- timers --------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """Fire every timer due at `now` (default: the clock's now); returns how many fired."""
        now = now or self._now()
        fired = 0
        for campaign_id, run_number in self.projection.due_timers(now):
            self._pick_winner_if_due(campaign_id, now)
            context = CommandContext(
                actor="scheduler", source="timer", request_id=f"timer-{campaign_id}-{run_number}"
            )
            self.execute(
                campaign_id,
                cp.StartScheduledRun(campaign_id, run_number, self.account_timezone, now),
                context,
            )
            fired += 1
        return fired

    def _pick_winner_if_due(self, campaign_id: str, now: datetime) -> None:
        """Before a split test's winner run: choose the winner by its metric, if the test is automatic."""
        state = self.campaign(campaign_id)
        settings, timer = state.settings, state.next_run
        if settings is None or settings.split_test is None or timer is None or timer.phase != "winner":
            return
        metric = settings.split_test.winner_by
        if metric == "manual" or state.winner_template_id is not None:
            return
        values = winner_values(settings.template_ids, self.projection.template_counters(campaign_id), metric)
        winner = min(settings.template_ids, key=lambda t: (-values[t], len(t), t))  # ties: the lowest id
        command = cp.SelectWinner(campaign_id, winner, metric, values, self.account_timezone, now)
        context = CommandContext(actor="scheduler", source="timer", request_id=f"winner-{campaign_id}")
        self.execute(campaign_id, command, context)

    def upcoming_runs(self, campaign_id: str, count: int) -> list[datetime]:
        """The campaign's next `count` scheduled runs."""
        state = self.loaded(campaign_id).state
        settings = cp.existing_settings(state)
        if settings.schedule is None:
            return [state.next_run.due_at] if state.next_run else []
        return next_runs(
            settings.schedule, after=self._now(), count=count, account_timezone=self.account_timezone
        )

    # --- triggers and tests --------------------------------------------------------------------

    def fire(
        self,
        campaign_id: str,
        recipients: Sequence[Mapping[str, Any]],
        content: Mapping[str, Any] | None,
        request_id: str | None,
        context: CommandContext,
    ) -> list[dict[str, Any]]:
        """Fire a trigger for profiles (ids or match keys): one message each, queued or refused with why."""
        state = self.active_trigger(campaign_id)
        settings = cp.existing_settings(state)
        now = self._now()
        run_id = f"api:{request_id}" if request_id else f"api:{uuid.uuid4().hex}"
        gate = self.gate(settings, now)
        results = []
        for i, recipient in enumerate(recipients):
            results.append(self._fire_one(state, settings, gate, recipient, run_id, i, content, now, context))
        return results

    def active_trigger(self, campaign_id: str) -> cp.CampaignState:
        state = self.loaded(campaign_id).state
        settings = cp.existing_settings(state)
        if settings.type is not cp.CampaignType.TRIGGER:
            raise RuleViolated("only a trigger campaign is fired", "campaign_id")
        if not state.active or state.status is cp.CampaignStatus.PAUSED:
            raise RuleViolated(
                f"trigger campaign {campaign_id} is not active: activate it first", "campaign_id"
            )
        return state

    def fire_for_segment_entry(self, campaign_id: str, profile_id: str, entry_event_id: str) -> None:
        """Fire a trigger for a profile that entered its segment; the entry's id is the request id."""
        context = CommandContext(
            actor="processor:segment-triggers", source="segment", correlation_id=entry_event_id
        )
        request_id = f"segment-entry:{entry_event_id}"
        self.fire(campaign_id, [{"profile_id": profile_id}], None, request_id, context)

    def scenario_message(
        self,
        campaign_id: str,
        profile: ProfileState,
        step_id: str,
        content: Mapping[str, Any] | None,
        scenario_id: str,
        lookups: Lookups | None = None,
    ) -> ms.MessageDecision:
        """A scenario campaign node's message for the profile, decided, not appended.

        The scenario processor appends it atomically with the step's exit, so a step is either
        decided with its message or not at all; its id derives from the step, so the same step
        makes the same message. A trigger that is not active (or paused), or that fires for
        another database, sends nothing and says so (RuleViolated). `lookups`: what a batch of
        steps reads once (the trigger, its sending policy, templates, resources)."""
        found = lookups or self.lookups(chunk=False)
        state = found.trigger(campaign_id)
        settings = state.settings
        assert settings is not None
        if settings.database_id != profile.database_id:
            raise RuleViolated(
                f"trigger {campaign_id} fires for database {settings.database_id}, "
                f"not the profile's {profile.database_id}",
                "campaign_id",
            )
        now = self._now()
        gate = self.gate(settings, now, policy=found.policy(settings))
        draft = self._draft(state, settings, profile, f"scenario:{step_id}", now, scenario_id)
        return self.decide(
            replace(draft, lookups=found), gate, profile, content, *self._trigger_timing(settings, now)
        )

    def _fire_one(
        self,
        state: cp.CampaignState,
        settings: cp.CampaignSettings,
        gate: SendGate,
        recipient: Mapping[str, Any],
        run_id: str,
        place: int,
        content: Mapping[str, Any] | None,
        now: datetime,
        context: CommandContext,
    ) -> dict[str, Any]:
        if settings.database_id is None:  # refused when the trigger was saved
            raise RuleViolated("a trigger names the database whose profiles it fires for", "database_id")
        profile_id = self.resolve(settings.database_id, recipient, f"profiles.{place}")
        message_id = ms.message_id(state.campaign_id, run_id, profile_id)
        fired = self.aggregates.load(ms.message_decider, ms.message_stream(message_id)).state.decided
        if fired is not None:  # the same request id again: nothing is sent, the first answer is shown
            return _duplicate(fired, run_id)
        decision = self._decision(state, settings, gate, self.profile(profile_id), run_id, content, now)
        self.aggregates.execute(
            ms.message_decider, ms.message_stream(decision.message_id), ms.DecideMessage(decision), context
        )
        return decision_json(decision)

    def _decision(
        self,
        state: cp.CampaignState,
        settings: cp.CampaignSettings,
        gate: SendGate,
        profile: ProfileState,
        run_id: str,
        content: Mapping[str, Any] | None,
        now: datetime,
    ) -> ms.MessageDecision:
        draft = self._draft(state, settings, profile, run_id, now)
        return self.decide(draft, gate, profile, content, *self._trigger_timing(settings, now))

    def _draft(
        self,
        state: cp.CampaignState,
        settings: cp.CampaignSettings,
        profile: ProfileState,
        run_id: str,
        now: datetime,
        scenario_id: str | None = None,
    ) -> MessageDraft:
        """A trigger's message for the profile: one of its templates at random (the same on a retry)."""
        message_id = ms.message_id(state.campaign_id, run_id, profile.profile_id)
        templates = settings.template_ids
        template_id = templates[int(message_id, 16) % len(templates)]
        return MessageDraft(
            state.campaign_id, settings, run_id, message_id, template_id, now, scenario_id=scenario_id
        )

    @staticmethod
    def _trigger_timing(settings: cp.CampaignSettings, now: datetime) -> tuple[ms.Lane, datetime]:
        """A trigger's lane (high priority or not) and when its message is due (after its delay)."""
        trigger = settings.trigger or cp.TriggerOptions()
        lane = ms.Lane.TRIGGER_HIGH if trigger.high_priority else ms.Lane.TRIGGER
        return lane, now + trigger.delay

    def resolve(self, database_id: str, selector: Mapping[str, Any], path: str) -> str:
        """The profile a selector (`{"profile_id": ...}`, `{"email": ...}`, a unique field) names."""
        return ProfileLookup(self.catalog, self.profile_reads).resolve(database_id, selector, path)

    def decide(
        self,
        draft: MessageDraft,
        gate: SendGate,
        profile: ProfileState,
        content: Mapping[str, Any] | None = None,
        lane: ms.Lane = ms.Lane.BULK,
        due_at: datetime | None = None,
    ) -> ms.MessageDecision:
        """Gate, render and record what becomes of one message (`messages/decisions.py`)."""
        return self.decisions.decide(draft, gate, profile, content, lane, due_at)

    def send_test(
        self, campaign_id: str, profile_ids: Sequence[str], context: CommandContext
    ) -> list[dict[str, Any]]:
        """Send every template of the campaign to test profiles, marked as tests (no policy, no counting)."""
        state = self.loaded(campaign_id).state
        settings = cp.existing_settings(state)
        now = self._now()
        run_id = f"test:{uuid.uuid4().hex}"
        results = []
        for i, profile_id in enumerate(profile_ids):
            profile = self.profile(profile_id)
            if not profile.exists:
                raise NotFound(f"no profile {profile_id!r}", f"profile_ids.{i}")
            for template_id in settings.template_ids:
                gate = self.gate(settings, now, is_test=True)
                message_id = ms.message_id(campaign_id, f"{run_id}/{template_id}", profile_id)
                draft = MessageDraft(campaign_id, settings, run_id, message_id, template_id, now)
                decision = self.decide(draft, gate, profile)
                self.aggregates.execute(
                    ms.message_decider, ms.message_stream(message_id), ms.DecideMessage(decision), context
                )
                results.append(decision_json(decision))
        return results


class Lookups(decisions.Lookups):
    """The message pipeline's lookups for a batch, and the trigger campaigns a scenario's batch
    sends through."""

    def __init__(self, service: CampaignService, chunk: bool = False) -> None:
        super().__init__(service.aggregates, service.catalog, service.gates, chunk)
        self._service = service
        self._triggers: dict[str, cp.CampaignState] = {}

    def trigger(self, campaign_id: str) -> cp.CampaignState:
        """An active trigger campaign (else RuleViolated, not kept: it is asked again)."""
        if campaign_id not in self._triggers:
            self._triggers[campaign_id] = self._service.active_trigger(campaign_id)
        return self._triggers[campaign_id]


def winner_values(
    template_ids: Sequence[str], counters: Mapping[str, Mapping[str, int]], metric: str
) -> dict[str, float]:
    """Total opens (or clicks) per delivered message of each template (per queued one before delivery)."""
    values = {}
    for template_id in template_ids:
        counts = counters.get(template_id, {})
        base = counts.get("delivered") or counts.get("queued") or 1
        values[template_id] = round(counts.get(metric, 0) / base, 6)
    return values


def _duplicate(first: ms.MessageDecision, run_id: str) -> dict[str, Any]:
    """A fire repeated with a request id already used for this profile: said so, with the first answer."""
    request_id = run_id.removeprefix("api:")
    return {
        "message_id": first.message_id,
        "profile_id": first.profile_id,
        "status": "duplicate",
        "reason": f"request {request_id!r} already fired the trigger for this profile: nothing sent again",
        "first": decision_json(first),
    }


def decision_json(decision: ms.MessageDecision) -> dict[str, Any]:
    """What became of a message, as the API shows it."""
    result: dict[str, Any] = {"message_id": decision.message_id, "profile_id": decision.profile_id}
    if isinstance(decision, ms.MessageQueued):
        return {
            **result,
            "status": "queued",
            "template_id": decision.template_id,
            "due_at": decision.due_at.isoformat(),
        }
    if isinstance(decision, ms.MessageSuppressed):
        return {**result, "status": "suppressed", "reason": str(decision.reason), "detail": decision.detail}
    return {**result, "status": "failed", "reason": decision.reason}
