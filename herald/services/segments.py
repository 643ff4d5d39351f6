"""Segments: save checked queries, count and preview, build, recalculate and edit static segments.

A static segment's membership lives on its membership stream
(`segmentmembers-<id>`); every change of it (a build, a recalculation, a hand
edit, a deletion) is ONE atomic `append_many` of the membership events and the
segment's own record of it (`StaticSegmentRecalculated`/`StaticSegmentEdited`),
both streams version-checked, so nothing is ever half-applied and two
concurrent edits are decided one after the other. The members a change is
decided against are folded from the membership stream itself (cached per
segment), not from the lagging read model.

Every change has an id (`ref`: the recalculation's or edit's id) from which all
its event ids derive; a change whose id the segment already recorded is not
decided again, so a retried request (same Idempotency-Key or `request_id`)
adds nothing and answers with the first attempt's counts.

Bulk evaluation (a query's members, count and sample) goes through the
`BulkEvaluator` port; dynamic segments' realtime membership is the membership
processor's job, not this service's.

Decisions where the brief is silent:
- Segment ids are short sequential numbers, like the catalog's objects.
- Saving a static segment's query with a change recalculates it at once
  (reason "changed"), in the same append as the change.
- A segment that other segments' rules name cannot be deleted (their queries would dangle).
- Adding or removing "by another segment" takes a dynamic segment's members
  from its query (the evaluator) and a static segment's from its list.
- Deleting a static segment makes its members leave (cause `segment_deleted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from herald.domain import segment_definitions as sd
from herald.domain.databases import DatabaseState, database_stream
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event
from herald.domain.memberships import (
    MembershipCause,
    ProfileEnteredSegment,
    ProfileLeftSegment,
    membership_stream,
)
from herald.domain.profiles import ProfileState, profile_decider, profile_stream
from herald.domain.resources import ResourceState, resource_stream
from herald.domain.schedules import Schedule, check_schedule
from herald.domain.segment_eval import ProfileFacts
from herald.domain.segments import SegmentQuery, SubscriptionRule, check_query, iter_rules, parse_query
from herald.infra.event_store import ANY, NewEvent, StreamAppend, WrongExpectedVersion
from herald.infra.ids import deterministic_id
from herald.infra.secret_box import SecretBox
from herald.projections.profiles import ProfilesProjection
from herald.projections.segments import SegmentsProjection
from herald.services.aggregates import Aggregates, CommandContext, Loaded
from herald.services.catalog import DATABASES, RESOURCES
from herald.services.segment_urls import sealed_urls

log = logging.getLogger(__name__)
MAX_PROFILE_IDS = 10_000  # one hand edit; larger lists belong in a segment or an import
_ATTEMPTS = 5


class BulkEvaluator(Protocol):
    """A query's members evaluated in bulk (segment and external rules resolved by the evaluator)."""

    def members(self, query: SegmentQuery, now: datetime, timezone: str) -> tuple[str, ...]: ...

    def count(self, query: SegmentQuery, now: datetime, timezone: str) -> int: ...

    def sample(self, query: SegmentQuery, now: datetime, timezone: str, limit: int) -> Sequence[str]: ...

    def of_segment(self, segment_id: str, now: datetime) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Change:
    """What a save, recalculation or edit did to a static segment's membership."""

    segment_id: str
    ref: str | None
    entered: int
    left: int
    size: int
    stream_version: int

    def to_json(self, entered: str = "entered", left: str = "left") -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "ref": self.ref,
            entered: self.entered,
            left: self.left,
            "size": self.size,
            "stream_version": self.stream_version,
        }


@dataclass(slots=True)
class _Decision:
    """The commands for the segment and the membership changes that go with them, in one append."""

    commands: list[sd.SegmentCommand]
    entering: Sequence[str] = ()
    leaving: Sequence[str] = ()
    cause: str = "recalculation"


@dataclass(slots=True)
class _Log:
    """A segment's recorded changes (ref → counts) and its members, folded from its two streams."""

    segment_version: int = 0
    changes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    members_version: int = 0
    members: set[str] = field(default_factory=set)


Plan = Callable[[sd.SegmentState, frozenset[str]], _Decision]


class StoredSegments:
    """Segments as their streams say now: the bulk evaluator's catalog port, and static lists' members."""

    def __init__(self, aggregates: Aggregates) -> None:
        self.aggregates = aggregates
        self._logs: dict[str, _Log] = {}

    def segment(self, segment_id: str) -> tuple[sd.SegmentKind, SegmentQuery, str]:
        """The segment's kind, checked query and time zone; NotFound for an unknown or deleted one."""
        state = self.aggregates.load(sd.segment_decider, sd.segment_stream(segment_id)).state
        if not state.exists:
            raise NotFound(f"there is no segment {segment_id!r}", "segment_id")
        return state.kind, state.query, state.timezone

    def static_members(self, segment_id: str) -> frozenset[str]:
        """A static segment's current members (strongly consistent: folded from its membership stream)."""
        return frozenset(self.log(segment_id).members)

    def log(self, segment_id: str, members: bool = True) -> _Log:
        """The segment's recorded changes (and with `members` its members), brought up to date."""
        known = self._logs.setdefault(segment_id, _Log())
        store = self.aggregates.store
        for recorded in store.read_stream(sd.segment_stream(segment_id), known.segment_version + 1):
            d = recorded.data
            if recorded.type == "StaticSegmentRecalculated":
                known.changes[d["recalculation_id"]] = (d["entered"], d["left"], d["size"])
            elif recorded.type == "StaticSegmentEdited":
                known.changes[d["edit_id"]] = (d["added"], d["removed"], d["size"])
            known.segment_version = recorded.version
        if not members:
            return known
        for recorded in store.read_stream(membership_stream(segment_id), known.members_version + 1):
            profile_id = recorded.data["profile_id"]
            if recorded.type == "ProfileEnteredSegment":
                known.members.add(profile_id)
            elif recorded.type == "ProfileLeftSegment":
                known.members.discard(profile_id)
            known.members_version = recorded.version
        return known


class SegmentService:
    def __init__(
        self,
        aggregates: Aggregates,
        stored: StoredSegments,
        projection: SegmentsProjection,
        profiles: ProfilesProjection,
        evaluator: BulkEvaluator,
        account_timezone: str,
        box: SecretBox,
    ) -> None:
        self.box = box  # seals the credentials in external URLs
        self.aggregates = aggregates
        self.stored = stored
        self.projection = projection
        self.profiles = profiles
        self.evaluator = evaluator
        self.account_timezone = account_timezone

    # --- reads ---------------------------------------------------------------------------------

    def loaded(self, segment_id: str, path: str = "segment_id") -> Loaded[sd.SegmentState]:
        """The segment and its stream version; NotFound unless it exists."""
        loaded = self.aggregates.load(sd.segment_decider, sd.segment_stream(segment_id))
        if not loaded.state.exists:
            raise NotFound(f"there is no segment {segment_id!r}", path)
        return loaded

    def current_members(self, segment_id: str) -> frozenset[str]:
        """A segment's members as its membership stream says now (strongly consistent)."""
        return self.stored.static_members(segment_id)

    def members_now(self, segment_id: str) -> frozenset[str]:
        """Who a campaign launch or a funnel step takes: a dynamic segment evaluated now (limits
        applied, as at use), a static one's list; NotFound for an unknown segment."""
        return frozenset(self.evaluator.of_segment(segment_id, self._now()))

    def databases(self, segment_id: str) -> list[str]:
        """The databases the segment's profiles come from: its sources', or (built by hand) its members'."""
        state = self.loaded(segment_id).state
        if state.query.sources:
            return sorted({source.database_id for source in state.query.sources})
        cards = (self.profiles.card(profile_id) for profile_id in self.stored.log(segment_id).members)
        return sorted({card["database_id"] for card in cards if card is not None})

    def last_saved_by(self, segment_id: str) -> str:
        """The id of the event that last saved the segment's settings (created or changed it)."""
        saves = ("SegmentCreated", "SegmentChanged")
        events = self.aggregates.store.read_stream(sd.segment_stream(segment_id))
        return next((str(e.event_id) for e in reversed(events) if e.type in saves), "")

    def count(self, segment_id: str) -> int:
        """How many profiles the segment holds: a static one's list, a dynamic one's query now."""
        state = self.loaded(segment_id).state
        if state.kind == "static":
            return len(self.stored.log(segment_id).members)
        return self.evaluator.count(state.query, self._now(), state.timezone)

    def preview(self, segment_id: str, limit: int) -> list[dict[str, Any]]:
        """A sample of the segment's profiles with their cards."""
        state = self.loaded(segment_id).state
        if state.kind == "static":
            ids: Sequence[str] = sorted(self.stored.log(segment_id).members)[:limit]
        else:
            ids = self.evaluator.sample(state.query, self._now(), state.timezone, limit=limit)
        cards = ((profile_id, self.profiles.card(profile_id)) for profile_id in ids)
        return [card or {"profile_id": profile_id} for profile_id, card in cards]

    # --- checking ------------------------------------------------------------------------------

    def check(
        self, query: SegmentQuery | Mapping[str, Any], segment_id: str | None = None, path: str = "query"
    ) -> SegmentQuery:
        """The query in stored form, checked against the catalog and other segments; errors name the path."""
        parsed = parse_query(query, path)
        databases: dict[str, DatabaseState] = {}
        for source in parsed.sources:
            databases[source.database_id] = self.aggregates.load(
                DATABASES, database_stream(source.database_id)
            ).state
        resources: dict[str, ResourceState] = {}
        for _, rule in iter_rules(parsed):
            if isinstance(rule, SubscriptionRule) and rule.resource_id is not None:
                resources[rule.resource_id] = self.aggregates.load(
                    RESOURCES, resource_stream(rule.resource_id)
                ).state
        referenced_by = (
            [s for s in self.projection.referencing(segment_id) if s != segment_id] if segment_id else []
        )
        return check_query(
            parsed,
            databases,
            self._segment_query,
            path,
            resources=resources,
            segment_id=segment_id,
            referenced_by=referenced_by,
        )

    def _segment_query(self, segment_id: str) -> SegmentQuery | None:
        state = self.aggregates.load(sd.segment_decider, sd.segment_stream(segment_id)).state
        return state.query if state.exists else None

    def settings(
        self,
        name: str,
        query: Mapping[str, Any] | None,
        recalculation: Schedule | None,
        segment_id: str | None = None,
    ) -> sd.SegmentSettings:
        """Settings as saved: the query checked (none: a hand-built list), the schedule checked."""
        checked = SegmentQuery() if query is None else self.check(query, segment_id)
        stored = self._segment_query(segment_id) if segment_id else None
        checked = sealed_urls(self.box, checked, stored)
        schedule = None
        if recalculation is not None:
            schedule = check_schedule(
                recalculation, "recalculation", now=self._now(), account_timezone=self.account_timezone
            )
        return sd.SegmentSettings(name=name, query=checked, recalculation=schedule)

    # --- saving --------------------------------------------------------------------------------

    def create(self, kind: sd.SegmentKind, settings: sd.SegmentSettings, context: CommandContext) -> Change:
        """Create a segment under the next free id; a static one with a query is built from it at once."""
        number = self.projection.count_all()
        while True:
            number += 1
            segment_id = str(number)
            if self.aggregates.store.stream_version(sd.segment_stream(segment_id)) != 0:
                continue
            try:
                plan = self._creation(segment_id, kind, settings)
                return self._commit(segment_id, plan, context, f"created-{segment_id}", 0)
            except WrongExpectedVersion as conflict:
                if conflict.stream != sd.segment_stream(segment_id):
                    raise
                continue  # another request took this id between the probe and the append

    def _creation(self, segment_id: str, kind: sd.SegmentKind, settings: sd.SegmentSettings) -> Plan:
        now = self._now()
        create = sd.CreateSegment(segment_id, kind, settings, self.account_timezone, now)

        def plan(state: sd.SegmentState, members: frozenset[str]) -> _Decision:
            if kind == "dynamic" or not settings.query.sources:
                return _Decision([create])
            ref = f"created-{segment_id}"
            return self._recalculation([create], segment_id, settings.query, ref, "created", members, now)

        return plan

    def update(
        self,
        segment_id: str,
        settings: sd.SegmentSettings,
        context: CommandContext,
        expected_version: int | None = None,
    ) -> Change:
        """Save new settings; a static segment whose query changed is recalculated in the same append."""
        now = self._now()
        change = sd.ChangeSegment(segment_id, settings, self.account_timezone, now)
        ref = f"changed-{context.request_id or self.aggregates.ids.uuid()}"

        def plan(state: sd.SegmentState, members: frozenset[str]) -> _Decision:
            if state.kind == "dynamic" or not settings.query.sources or settings.query == state.query:
                return _Decision([change])
            return self._recalculation([change], segment_id, settings.query, ref, "changed", members, now)

        return self._commit(segment_id, plan, context, ref, expected_version)

    def delete(self, segment_id: str, context: CommandContext, expected_version: int | None = None) -> Change:
        """Delete a segment no other segment uses; a static segment's members leave with it."""
        self.loaded(segment_id)
        users = [s for s in self.projection.referencing(segment_id) if s != segment_id]
        if users:
            raise RuleViolated(
                f"segments {', '.join(users)} use this segment in their rules; change them first",
                "segment_id",
            )
        delete = sd.DeleteSegment(segment_id, self._now())

        def plan(state: sd.SegmentState, members: frozenset[str]) -> _Decision:
            leaving = sorted(members) if state.kind == "static" else []
            return _Decision([delete], leaving=leaving, cause="segment_deleted")

        return self._commit(segment_id, plan, context, "deleted", expected_version)

    # --- static segments -----------------------------------------------------------------------

    def recalculate(
        self, segment_id: str, reason: sd.RecalculationReason, recalculation_id: str, context: CommandContext
    ) -> Change:
        """Set a static segment's members to its query's members now."""
        now = self._now()

        def plan(state: sd.SegmentState, members: frozenset[str]) -> _Decision:
            if state.kind != "static" or not state.query.sources:
                # decided without evaluating: the domain refuses it with its own reason
                command = sd.RecordRecalculation(segment_id, recalculation_id, reason, 0, 0, 0, now)
                return _Decision([command])
            return self._recalculation([], segment_id, state.query, recalculation_id, reason, members, now)

        self.loaded(segment_id)
        return self._commit(segment_id, plan, context, recalculation_id)

    def _recalculation(
        self,
        before: list[sd.SegmentCommand],
        segment_id: str,
        query: SegmentQuery,
        ref: str,
        reason: sd.RecalculationReason,
        members: frozenset[str],
        now: datetime,
    ) -> _Decision:
        target = set(self.evaluator.members(query, now, self.account_timezone))
        entering, leaving = sorted(target - members), sorted(members - target)
        record = sd.RecordRecalculation(
            segment_id, ref, reason, len(entering), len(leaving), len(target), now
        )
        return _Decision([*before, record], entering, leaving, "recalculation")

    def tick(self, now: datetime | None = None) -> int:
        """Recalculate every static segment whose schedule fell due; returns how many ran."""
        now = now or self._now()
        ran = 0
        for segment_id, _ in self.projection.due_recalculations(now):
            # The read model may lag a recalculation just made; the stream decides whether it is due.
            state = self.aggregates.load(sd.segment_decider, sd.segment_stream(segment_id)).state
            due = state.next_recalculation_at
            if not state.exists or due is None or due > now:
                continue
            context = CommandContext(actor="scheduler", source="timer")
            try:
                self.recalculate(segment_id, "schedule", f"schedule-{due.isoformat()}", context)
            except Exception:  # one failing segment must not stop the others; the next tick retries it
                log.exception("recalculating segment %s failed", segment_id)
                continue
            ran += 1
        return ran

    def add_profiles(
        self, segment_id: str, profile_ids: Sequence[str], edit_id: str, context: CommandContext
    ) -> Change:
        """Add profiles to a static segment by hand; unknown profile ids are refused, naming them."""
        wanted = self._known_profiles(profile_ids)
        return self._edit(segment_id, edit_id, "hand", None, lambda: wanted, adding=True, context=context)

    def remove_profiles(
        self, segment_id: str, profile_ids: Sequence[str], edit_id: str, context: CommandContext
    ) -> Change:
        """Remove profiles from a static segment by hand; unknown profile ids are refused, naming them."""
        wanted = self._known_profiles(profile_ids)
        return self._edit(segment_id, edit_id, "hand", None, lambda: wanted, adding=False, context=context)

    def add_from_segment(
        self, segment_id: str, source_segment_id: str, edit_id: str, context: CommandContext
    ) -> Change:
        """Add another segment's current members to a static segment."""
        members = self._source_members(segment_id, source_segment_id)
        return self._edit(segment_id, edit_id, "segment", source_segment_id, members, True, context)

    def remove_from_segment(
        self, segment_id: str, source_segment_id: str, edit_id: str, context: CommandContext
    ) -> Change:
        """Remove another segment's current members from a static segment."""
        members = self._source_members(segment_id, source_segment_id)
        return self._edit(segment_id, edit_id, "segment", source_segment_id, members, False, context)

    def _source_members(self, segment_id: str, source_segment_id: str) -> Callable[[], Iterable[str]]:
        if source_segment_id == segment_id:
            raise ValidationFailed("name another segment", "segment_id")
        source = self.loaded(source_segment_id).state
        if source.kind == "static":
            return lambda: self.stored.log(source_segment_id).members
        return lambda: self.evaluator.members(source.query, self._now(), source.timezone)

    def _edit(
        self,
        segment_id: str,
        edit_id: str,
        how: sd.EditHow,
        source_segment_id: str | None,
        profiles: Callable[[], Iterable[str]],
        adding: bool,
        context: CommandContext,
    ) -> Change:
        now = self._now()

        def plan(state: sd.SegmentState, members: frozenset[str]) -> _Decision:
            chosen = set(profiles()) if state.kind == "static" else set()
            entering = sorted(chosen - members) if adding else []
            leaving = sorted(chosen & members) if not adding else []
            size = len(members) + len(entering) - len(leaving)
            command = sd.RecordEdit(
                segment_id, edit_id, how, len(entering), len(leaving), size, now, source_segment_id
            )
            return _Decision([command], entering, leaving, "added" if adding else "removed")

        self.loaded(segment_id)
        return self._commit(segment_id, plan, context, edit_id)

    def _known_profiles(self, profile_ids: Sequence[str]) -> list[str]:
        if not profile_ids:
            raise ValidationFailed("name at least one profile", "profile_ids")
        if len(profile_ids) > MAX_PROFILE_IDS:
            raise ValidationFailed(f"name at most {MAX_PROFILE_IDS} profiles at once", "profile_ids")
        unknown = [
            (index, profile_id)
            for index, profile_id in enumerate(profile_ids)
            if not self.aggregates.load(profile_decider, profile_stream(profile_id)).state.exists
        ]
        if unknown:
            names = ", ".join(repr(p) for _, p in unknown[:20]) + (" …" if len(unknown) > 20 else "")
            raise ValidationFailed(f"no such profiles: {names}", f"profile_ids.{unknown[0][0]}")
        return list(dict.fromkeys(profile_ids))

    # --- the atomic append ---------------------------------------------------------------------

    def _commit(
        self,
        segment_id: str,
        plan: Plan,
        context: CommandContext,
        ref: str | None,
        expected_version: int | None = None,
    ) -> Change:
        """Decide `plan` on the segment and its members, append both streams at once; on a race, again.

        `ref` is the change's id: every event id derives from it, and a change the segment has
        recorded already is answered with its counts, not decided again.
        """
        stream, members_stream = sd.segment_stream(segment_id), membership_stream(segment_id)
        for _ in range(_ATTEMPTS):
            loaded = self.aggregates.load(sd.segment_decider, stream)
            if expected_version is not None and loaded.version != expected_version:
                raise WrongExpectedVersion(stream, expected_version, loaded.version)
            # A dynamic segment's members are the processor's; only a static list is folded here.
            known = self.stored.log(segment_id, members=loaded.state.kind == "static")
            if ref is not None and ref in known.changes:
                entered, left, size = known.changes[ref]
                return Change(segment_id, ref, entered, left, size, loaded.version)
            decision = plan(loaded.state, frozenset(known.members))
            events = _decided(decision.commands, loaded.state)
            size = len(known.members) + len(decision.entering) - len(decision.leaving)
            entered, left = len(decision.entering), len(decision.leaving)
            if not events and not entered and not left:
                return Change(segment_id, ref, 0, 0, size, loaded.version)
            appends = [StreamAppend(stream, self._envelopes(stream, events, ref, context), loaded.version)]
            changes = self._membership(segment_id, decision, ref, context)
            if changes:
                appends.append(StreamAppend(members_stream, changes, known.members_version))
            try:
                results = self.aggregates.store.append_many(appends)
            except WrongExpectedVersion:
                if expected_version is not None:
                    raise
                continue
            return Change(segment_id, ref, entered, left, size, results[0].stream_version)
        raise WrongExpectedVersion(stream, ANY, self.aggregates.store.stream_version(stream))

    def _envelopes(
        self, stream: str, events: Sequence[Event], ref: str | None, context: CommandContext
    ) -> list[NewEvent]:
        envelopes = self.aggregates.new_events(stream, events, context)
        if ref is None:
            return envelopes
        # Ids from the change's id: a retry that slips past the check above still appends nothing.
        return [
            NewEvent(
                deterministic_id("segment", stream, ref, i),
                e.type,
                e.data,
                e.occurred_at,
                e.schema_version,
                e.metadata,
            )
            for i, e in enumerate(envelopes)
        ]

    def _membership(
        self, segment_id: str, decision: _Decision, ref: str | None, context: CommandContext
    ) -> list[NewEvent]:
        cause = MembershipCause.model_validate({"kind": decision.cause, "ref": ref})
        at = decision.commands[-1].at if decision.commands else self._now()
        changes: list[ProfileEnteredSegment | ProfileLeftSegment] = [
            *(
                ProfileLeftSegment(segment_id=segment_id, profile_id=p, at=at, cause=cause)
                for p in decision.leaving
            ),
            *(
                ProfileEnteredSegment(segment_id=segment_id, profile_id=p, at=at, cause=cause)
                for p in decision.entering
            ),
        ]
        meta = context.metadata()
        return [
            NewEvent(
                deterministic_id("segment-membership", segment_id, ref, e.profile_id, e.type_name),
                e.type_name,
                e.to_data(),
                at,
                e.schema_version,
                meta,
            )
            for e in changes
        ]

    def _now(self) -> datetime:
        return self.aggregates.clock.now()


class ProfilesForEvaluation:
    """Profiles as in-process bulk evaluation reads them (reports off): ids from the profiles read
    model, states from their streams, facts (message history, goals, memberships) from `facts`
    (the membership processor's)."""

    def __init__(
        self, aggregates: Aggregates, profiles: ProfilesProjection, facts: Callable[[str], ProfileFacts]
    ) -> None:
        self.aggregates = aggregates
        self.profiles = profiles
        self.facts = facts

    def profile_ids(self, database_id: str) -> Iterable[str]:
        after = ""
        while page := self.profiles.list_profiles(database_id, after, 1000):
            yield from (card["profile_id"] for card in page)
            after = page[-1]["profile_id"]

    def profile(self, profile_id: str) -> ProfileState:
        return self.aggregates.load(profile_decider, profile_stream(profile_id)).state


def _decided(commands: Sequence[sd.SegmentCommand], state: sd.SegmentState) -> list[Event]:
    """The commands decided one after another, each on the state the ones before it left."""
    events: list[Event] = []
    for command in commands:
        new = list(sd.segment_decider.decide(command, state))
        state = sd.segment_decider.fold(new, state)
        events.extend(new)
    return events
