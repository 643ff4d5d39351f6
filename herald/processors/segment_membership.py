"""Realtime segment membership: folds the log into who is in which dynamic segment, and appends the changes.

A consumer with the runtime's projection shape. It keeps, in its own tables of
the read-model file (`segmem_*`), committed with its checkpoint in one
transaction:
- the segments (`SegmentCreated`/`SegmentChanged`/`SegmentDeleted`): kind, query, time zone;
- each profile's facts: its message history (one row per action, `segment_eval`'s mapping,
  without test messages and bot hits), its goal events (tracked activity naming a `goal` or a
  `pixel_id`, read as the report sink reads it), and its memberships, dynamic (its own) and
  static (folded from the segment service's `ProfileEnteredSegment`/`ProfileLeftSegment`);
- the ids of the existing profiles of each database (to evaluate a newly saved segment);
- one timer per (segment, profile): the instant `segment_eval.next_change` says the result may
  next change with no new event.

On each event it finds the affected profile and the dynamic segments whose
result can depend on it (a profile event: every segment over its database; a
message action or goal: those with history or goal rules; a membership change
of segment A: those with a segment rule naming A), evaluates them with
`segment_eval.matches` as of the event's occurred time, and appends
`ProfileEnteredSegment`/`ProfileLeftSegment` on `membership_stream(segment)`
for every result that changed, naming the cause. A change cascades to the
segments whose rules name the segment. Saving a dynamic segment evaluates every
existing profile of its databases (and its current members) in steps, each step
ending with a `SegmentPopulationContinued` bookmark appended to the log, so other
consumers run between steps and a later save supersedes an unfinished
population; deleting one makes every member leave. Given the report store
(`bulk`), a step is decided there as of the step's log position
(`bulk_population`: profiles it cannot decide so are evaluated here one by one),
in steps of `BULK_CHUNK`; otherwise in steps of `POPULATION_CHUNK`. The bookmark
records the next step's size, so a rebuild takes the same steps and appends the
same ids whichever way it decides them.

Timers: `tick(now)` appends a `SegmentWindowElapsed` for every timer due at or
before `now` (its id derived from the segment, profile, instant and the event
that set the timer, so a double tick adds nothing); applying it evaluates that
profile as of `due_at` when the timer is still the current one.

Exactly-once: the state is written inside a transaction opened at the first
event of a batch and committed with the checkpoint; `discard` rolls it back.
Every emitted id derives from the cause and what the event is about, and every
decision depends only on the log up to the event applied (profiles are folded
from their streams, never read from read models that may be ahead; a bulk step
takes from the report store only what is bounded by, or checked to be the state
at, its log position), so a batch
applied again, or a processor rebuilt from the start, appends the same ids and
the store drops them. The processor's own membership events come back through
the log; they are skipped (its state changed when it emitted them).

Not in realtime, by design:
- count limits: a single profile cannot know its rank (`segment_eval.members` applies them when
  the list is used); percent limits are applied (`matches` does it);
- segments whose query has an external rule with a POST URL or CSV source: their sets are fetched
  when the segment is used, so they have no realtime membership (saving a segment into that shape
  makes its members leave); segment rules naming such a segment see no members;
- goals of anonymous visitors count for a profile once they are carried to it (`GoalAttributed`,
  `processors/goal_carry.py`), as the report sink counts them.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from herald.domain import deliveries as dl
from herald.domain.events import registry
from herald.domain.goals import GoalAttributed
from herald.domain.memberships import (
    MembershipCause,
    ProfileEnteredSegment,
    ProfileLeftSegment,
    SegmentPopulationContinued,
    SegmentWindowElapsed,
    membership_stream,
)
from herald.domain.segment_definitions import SegmentChanged, SegmentCreated, SegmentDeleted
from herald.domain.segment_eval import (
    GoalEvent,
    HistoryEvent,
    ProfileFacts,
    fact_change,
    matches,
    next_change,
)
from herald.domain.segments import (
    CsvSource,
    ExternalRule,
    GoalRule,
    MessageAction,
    MessageHistoryRule,
    PostUrlSource,
    SegmentQuery,
    iter_rules,
)
from herald.domain.tracking import GOAL_MARKS, ActivityTracked, goal_of
from herald.infra.event_store import (
    EventFilter,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    mentions_any,
)
from herald.infra.ids import deterministic_id
from herald.processors.bulk_population import (
    BULK_CHUNK,
    BulkMembers,
    bulk_evaluable,
    edge_seconds,
    has_goal_rules,
    history_actions,
)
from herald.projections.partitioned import FIRST
from herald.projections.profile_states import ProfileStates, profile_loader
from herald.projections.sqlite_projection import Handler, SqliteProjection
from herald.reports.segment_sql import Scope

NAME = "segment_membership"
ACTOR = f"processor:{NAME}"
PROFILE_CACHE_SIZE = 100_000
FACTS_CACHE_SIZE = 100_000
POPULATION_CHUNK = 1_000  # profiles evaluated per step when a dynamic segment is saved
_APPEND_CHUNK = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# segment_eval's mapping of message events to history actions ("sent": the first attempt, as the sink).
_ACTIONS: dict[str, MessageAction] = {
    "MessageSendAttempted": MessageAction.SENT,
    "MessageDelivered": MessageAction.DELIVERED,
    "MessageOpened": MessageAction.OPENED,
    "MessageRead": MessageAction.READ,
    "LinkClicked": MessageAction.CLICKED,
    "MessageUnsubscribed": MessageAction.UNSUBSCRIBED,
    "MessageHardBounced": MessageAction.BOUNCED,
    "ComplaintReceived": MessageAction.COMPLAINED,
}
_MESSAGE_EVENTS = (
    dl.MessageSendAttempted,
    dl.MessageDelivered,
    dl.MessageOpened,
    dl.MessageRead,
    dl.LinkClicked,
    dl.MessageUnsubscribed,
    dl.MessageHardBounced,
    dl.ComplaintReceived,
)


# The profile events after which a profile no longer exists (`ProfileState.exists`).
_GONE = frozenset({"ProfileDeleted", "ProfileMergedAway"})


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class Timer:
    """A due realtime-membership timer: evaluate `profile_id` for `segment_id` again at `due_at`."""

    segment_id: str
    profile_id: str
    due_at: datetime
    set_by: str  # the event that set it: part of the elapsed event's id


@dataclass(frozen=True, slots=True)
class Population:
    """A dynamic segment's realtime membership: `counting` (evaluated of candidates so far; candidates
    None until the save is folded), `ready` (its size), or `at_use` (fetched sets: counted when used)."""

    status: Literal["counting", "ready", "at_use"]
    size: int | None = None
    evaluated: int | None = None
    candidates: int | None = None


@dataclass(frozen=True, slots=True)
class _Segment:
    """A segment as evaluation needs it, with what its rules can depend on."""

    segment_id: str
    kind: str
    query: SegmentQuery
    timezone: str
    saved_by: str  # the id of the event that saved this version (a population bookmark names it)
    databases: frozenset[str]
    realtime: bool  # dynamic, and no external set fetched at use
    uses_history: bool
    uses_goals: bool
    depends_on: frozenset[str]

    @classmethod
    def of(cls, segment_id: str, kind: str, query: SegmentQuery, timezone: str, saved_by: str) -> _Segment:
        rules = [rule for _, rule in iter_rules(query)]
        fetched = any(
            isinstance(r, ExternalRule) and isinstance(r.source, PostUrlSource | CsvSource) for r in rules
        )
        return cls(
            segment_id,
            kind,
            query,
            timezone,
            saved_by,
            frozenset(source.database_id for source in query.sources),
            kind == "dynamic" and not fetched,
            any(isinstance(r, MessageHistoryRule) for r in rules),
            any(isinstance(r, GoalRule) for r in rules),
            query.segment_ids(),
        )


@dataclass(slots=True)
class _Facts:
    """One profile's facts and timers as of the event being applied (the tables hold the same)."""

    history: list[HistoryEvent] = field(default_factory=list)
    goals: list[GoalEvent] = field(default_factory=list)
    segments: set[str] = field(default_factory=set)
    timers: dict[str, tuple[int, str]] = field(default_factory=dict)  # segment → (due micros, set_by)
    _frozen: ProfileFacts | None = None

    def view(self) -> ProfileFacts:
        if self._frozen is None:
            self._frozen = ProfileFacts(tuple(self.history), tuple(self.goals), frozenset(self.segments))
        return self._frozen

    def changed(self) -> None:
        self._frozen = None


@dataclass(frozen=True, slots=True)
class _Cause:
    """What a round of evaluation answers to: the event applied, the cause to record, the instant."""

    event: RecordedEvent
    cause: MembershipCause
    at: datetime


class SegmentMembershipProcessor(SqliteProjection):
    """Keeps dynamic segments' membership in real time and appends its changes to the log."""

    name = NAME
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS segmem_segments (segment_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
        "timezone TEXT NOT NULL, query TEXT NOT NULL, saved_by TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS segmem_members (segment_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "PRIMARY KEY (segment_id, profile_id)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS segmem_members_by_profile ON segmem_members (profile_id)",
        "CREATE TABLE IF NOT EXISTS segmem_profiles (database_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "PRIMARY KEY (database_id, profile_id)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS segmem_history (profile_id TEXT NOT NULL, key TEXT NOT NULL, "
        "action TEXT NOT NULL, at INTEGER NOT NULL, campaign_id TEXT NOT NULL, template_id TEXT NOT NULL, "
        "resource_id TEXT NOT NULL, channel TEXT NOT NULL, link_name TEXT NOT NULL, "
        "PRIMARY KEY (profile_id, key)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS segmem_goals (profile_id TEXT NOT NULL, event_id TEXT NOT NULL, "
        "goal TEXT NOT NULL, value REAL NOT NULL, at INTEGER NOT NULL, pixel_id TEXT NOT NULL, "
        "referrer TEXT NOT NULL, PRIMARY KEY (profile_id, event_id)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS segmem_timers (segment_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "due_at INTEGER NOT NULL, set_by TEXT NOT NULL, PRIMARY KEY (segment_id, profile_id)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS segmem_timers_by_due ON segmem_timers (due_at)",
        "CREATE INDEX IF NOT EXISTS segmem_timers_by_profile ON segmem_timers (profile_id)",
        # each realtime segment's population since its last save: how far it got, and whether it is done
        "CREATE TABLE IF NOT EXISTS segmem_populations (segment_id TEXT PRIMARY KEY, saved_by TEXT NOT NULL, "
        "after_profile_id TEXT NOT NULL, done INTEGER NOT NULL)",
    )
    tables: ClassVar = {
        "segmem_segments": "segment_id",
        "segmem_members": "segment_id, profile_id",
        "segmem_profiles": "database_id, profile_id",
        "segmem_history": "profile_id, key",
        "segmem_goals": "profile_id, event_id",
        "segmem_timers": "segment_id, profile_id",
        "segmem_populations": "segment_id",
    }
    merge: ClassVar = {
        "segmem_segments": FIRST,
        # each partition populates its own profiles: a save's population is done when every one is
        "segmem_populations": "SELECT segment_id, saved_by, "
        "CASE WHEN count(*) = {partitions} AND min(done) = 1 THEN '' ELSE max(after_profile_id) END "
        "AS after_profile_id, count(*) = {partitions} AND min(done) = 1 AS done "
        "FROM {all} GROUP BY segment_id, saved_by",
    }

    def __init__(
        self,
        conn: sqlite3.Connection,
        store: EventStore,
        profile_cache_size: int = PROFILE_CACHE_SIZE,
        facts_cache_size: int = FACTS_CACHE_SIZE,
        population_chunk: int = POPULATION_CHUNK,
        bulk: BulkMembers | None = None,
        bulk_chunk: int = BULK_CHUNK,
    ) -> None:
        super().__init__(conn)
        self._store = store
        self._population_chunk = population_chunk
        self._bulk = bulk
        self._bulk_chunk = bulk_chunk
        self._facts_cache_size = facts_cache_size
        self._profiles = ProfileStates(profile_loader(store), profile_cache_size)
        self._facts: OrderedDict[str, _Facts] = OrderedDict()
        self._outgoing: list[tuple[str, NewEvent]] = []
        self._segments: dict[str, _Segment] = {}
        self._by_database: dict[str, list[_Segment]] = {}
        self._dependents: dict[str, list[str]] = {}
        self._load_segments()

    def handlers(self) -> dict[str, Handler]:
        return {
            "SegmentCreated": self._segment_saved,
            "SegmentChanged": self._segment_saved,
            "SegmentDeleted": self._segment_deleted,
            "ProfileEnteredSegment": self._membership_event,
            "ProfileLeftSegment": self._membership_event,
            "SegmentWindowElapsed": self._window_elapsed,
            "SegmentPopulationContinued": self._population_continued,
            "ActivityTracked": self._activity,
            "GoalAttributed": self._attributed,
            **dict.fromkeys(_ACTIONS, self._message_event),
        }

    # --- the Projection protocol -------------------------------------------------------------

    @property
    def consumes(self) -> EventFilter:
        # Of the tracked events, only goals count here.
        return EventFilter(frozenset(self._handlers), ("profile-",), {"ActivityTracked": GOAL_MARKS})

    def apply(self, event: RecordedEvent) -> None:
        if not self.conn.in_transaction:
            # Writes go straight to the tables inside one transaction per batch, so reads during the
            # batch see them; commit or discard ends it.
            self.conn.execute("BEGIN IMMEDIATE")
        if event.stream.startswith("profile-"):
            self._profile_event(event)
        else:
            super().apply(event)
        self._append_outgoing()

    def commit(self, position: int) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT INTO checkpoints (name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                (self.name, position),
            )
        except BaseException:
            self.discard()
            raise
        self.conn.execute("COMMIT")
        self._position = position
        self._evict()

    def discard(self) -> None:
        """Roll the batch back; caches may hold its changes, so they are dropped and reloaded."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._pending.clear()
        self._outgoing.clear()
        self._profiles.clear()
        self._facts.clear()
        self._load_segments()

    # --- timers ------------------------------------------------------------------------------

    def due_timers(self, now: datetime) -> list[Timer]:
        """The committed timers due at or before `now`, earliest first."""
        rows = self.conn.execute(
            "SELECT segment_id, profile_id, due_at, set_by FROM segmem_timers WHERE due_at <= ? "
            "ORDER BY due_at, segment_id, profile_id",
            (_micros(now),),
        )
        return [Timer(s, p, _moment(due), set_by) for s, p, due, set_by in rows]

    def tick(self, now: datetime) -> int:
        """Append a `SegmentWindowElapsed` for every timer due by `now`; how many were due."""
        appends = [
            StreamAppend(
                membership_stream(timer.segment_id),
                [
                    NewEvent(
                        event_id=deterministic_id(
                            NAME,
                            "elapsed",
                            timer.segment_id,
                            timer.profile_id,
                            _micros(timer.due_at),
                            timer.set_by,
                        ),
                        type="SegmentWindowElapsed",
                        data=SegmentWindowElapsed(
                            segment_id=timer.segment_id, profile_id=timer.profile_id, due_at=timer.due_at
                        ).to_data(),
                        occurred_at=timer.due_at,
                        metadata={"actor": ACTOR},
                    )
                ],
            )
            for timer in self.due_timers(now)
        ]
        for start in range(0, len(appends), _APPEND_CHUNK):
            self._store.append_many(appends[start : start + _APPEND_CHUNK])
        return len(appends)

    # --- reading committed rows --------------------------------------------------------------

    def segments_of(self, profile_id: str) -> list[str]:
        """The segments the profile is in now (dynamic and static), by id."""
        rows = self.conn.execute(
            "SELECT segment_id FROM segmem_members WHERE profile_id = ? ORDER BY segment_id", (profile_id,)
        )
        return [row[0] for row in rows]

    def members(self, segment_id: str) -> list[str]:
        """The segment's current members, by profile id."""
        rows = self.conn.execute(
            "SELECT profile_id FROM segmem_members WHERE segment_id = ? ORDER BY profile_id", (segment_id,)
        )
        return [row[0] for row in rows]

    def population(self, segment_id: str, saved_by: str) -> Population:
        """Where the realtime membership of the segment's save `saved_by` (an event id) stands."""
        segment = self._segments.get(segment_id)
        if segment is not None and segment.saved_by == saved_by and not segment.realtime:
            return Population("at_use")
        row = self.conn.execute(
            "SELECT after_profile_id, done FROM segmem_populations WHERE segment_id = ? AND saved_by = ?",
            (segment_id, saved_by),
        ).fetchone()
        if row is not None and row[1]:
            return Population("ready", size=self._count("segmem_members WHERE segment_id = ?", segment_id))
        databases = sorted(segment.databases) if segment is not None and segment.saved_by == saved_by else []
        if not databases:  # this save is not folded yet: nothing evaluated
            return Population("counting", evaluated=0)
        marks = ", ".join("?" * len(databases))
        candidates = f"segmem_profiles WHERE database_id IN ({marks})"
        after = row[0] if row is not None else ""
        return Population(
            "counting",
            evaluated=self._count(f"{candidates} AND profile_id <= ?", *databases, after) if after else 0,
            candidates=self._count(candidates, *databases),
        )

    def _count(self, where: str, *values: str) -> int:
        """`SELECT count(*) FROM <where>`; `where` is this module's text, never input."""
        return int(self.conn.execute(f"SELECT count(*) FROM {where}", values).fetchone()[0])

    def facts(self, profile_id: str) -> ProfileFacts:
        """What evaluation knows of the profile beyond its state (no external sets)."""
        return self._read_facts(profile_id).view()

    def profile_ids(self, database_id: str) -> list[str]:
        """The ids of the database's existing profiles."""
        rows = self.conn.execute(
            "SELECT profile_id FROM segmem_profiles WHERE database_id = ? ORDER BY profile_id", (database_id,)
        )
        return [row[0] for row in rows]

    # --- profiles ----------------------------------------------------------------------------

    def _profile_event(self, event: RecordedEvent) -> None:
        profile_id = event.stream[len("profile-") :]
        database_id = event.data.get("database_id")
        if isinstance(database_id, str) and database_id not in self._by_database:
            self._existence(event, profile_id, database_id)
            return
        before, after = self._profiles.fold(event)
        if after.exists != before.exists:
            sql = (
                "INSERT OR IGNORE INTO segmem_profiles VALUES (?, ?)"
                if after.exists
                else "DELETE FROM segmem_profiles WHERE database_id = ? AND profile_id = ?"
            )
            self.conn.execute(sql, (after.database_id, profile_id))
        if not after.created:
            return
        candidates = [s.segment_id for s in self._by_database.get(after.database_id, ())]
        self._evaluate(profile_id, candidates, self._event_cause(event))

    def _existence(self, event: RecordedEvent, profile_id: str, database_id: str) -> None:
        """A profile event of a database no segment evaluates: only whether the profile exists is kept.

        Its cached state is dropped, so a segment saved later folds the profile from its stream.
        """
        self._profiles.drop(profile_id)
        if event.type == "ProfileCreated":
            self.conn.execute(
                "INSERT OR IGNORE INTO segmem_profiles VALUES (?, ?)", (database_id, profile_id)
            )
        elif event.type in _GONE:
            self.conn.execute(
                "DELETE FROM segmem_profiles WHERE database_id = ? AND profile_id = ?",
                (database_id, profile_id),
            )

    # --- facts -------------------------------------------------------------------------------

    def _message_event(self, event: RecordedEvent) -> None:
        decoded = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(decoded, _MESSAGE_EVENTS)
        if decoded.is_test or decoded.__dict__.get("bot", False):
            return  # test messages and bot hits never count
        if isinstance(decoded, dl.MessageSendAttempted) and decoded.attempt != 1:
            return  # a retry of a message already sent
        action = _ACTIONS[event.type]
        # A message is sent once (a replayed first attempt keeps its key); other actions count each time.
        key = f"sent/{decoded.message_id}" if action is MessageAction.SENT else str(event.event_id)
        link_name = decoded.link_name if isinstance(decoded, dl.LinkClicked) else ""
        history = HistoryEvent(
            action,
            decoded.at,
            decoded.campaign_id,
            decoded.template_id,
            decoded.resource_id,
            decoded.channel,
            link_name,
        )
        facts = self._facts_of(decoded.profile_id)
        inserted = self.conn.execute(
            "INSERT OR IGNORE INTO segmem_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                decoded.profile_id,
                key,
                action.value,
                _micros(decoded.at),
                history.campaign_id,
                history.template_id,
                history.resource_id,
                history.channel,
                link_name,
            ),
        ).rowcount
        if not inserted:
            return
        facts.history.append(history)
        facts.changed()
        candidates = [s.segment_id for s in self._by_database.get(decoded.database_id, ()) if s.uses_history]
        if candidates:
            self._evaluate(decoded.profile_id, candidates, self._event_cause(event))

    def _activity(self, event: RecordedEvent) -> None:
        if not mentions_any(event, GOAL_MARKS):
            return  # most tracked events: decoding them only to find no goal was most of a replay
        tracked = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(tracked, ActivityTracked)
        goal = _goal_of(tracked)
        if goal is None or tracked.profile_id is None:
            return
        self._goal(event, tracked.profile_id, tracked.database_id, str(event.event_id), goal)

    def _attributed(self, event: RecordedEvent) -> None:
        """A goal carried to the profile (an anonymous visitor identified, a profile merged into it)."""
        carried = registry.decode(event.type, event.schema_version, event.data)
        assert isinstance(carried, GoalAttributed)
        goal = GoalEvent(carried.goal, carried.value, carried.reached_at, carried.pixel_id, carried.referrer)
        self._goal(event, carried.profile_id, carried.database_id, carried.goal_event_id, goal)

    def _goal(
        self, event: RecordedEvent, profile_id: str, database_id: str, goal_event_id: str, goal: GoalEvent
    ) -> None:
        facts = self._facts_of(profile_id)  # before the row is written, which it would read
        inserted = self.conn.execute(
            "INSERT OR IGNORE INTO segmem_goals VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                profile_id,
                goal_event_id,
                goal.goal,
                goal.value,
                _micros(goal.at),
                goal.pixel_id,
                goal.referrer,
            ),
        ).rowcount
        if not inserted:
            return
        facts.goals.append(goal)
        facts.changed()
        candidates = [s.segment_id for s in self._by_database.get(database_id, ()) if s.uses_goals]
        if candidates:
            self._evaluate(profile_id, candidates, self._event_cause(event))

    def _facts_of(self, profile_id: str) -> _Facts:
        facts = self._facts.pop(profile_id, None)
        if facts is None:
            facts = self._read_facts(profile_id)
        self._facts[profile_id] = facts
        return facts

    def _read_facts(self, profile_id: str) -> _Facts:
        conn = self.conn
        history = [
            _history_event(row)
            for row in conn.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM segmem_history WHERE profile_id = ? ORDER BY at, key",
                (profile_id,),
            )
        ]
        goals = [
            GoalEvent(goal, value, _moment(at), pixel, referrer)
            for goal, value, at, pixel, referrer in conn.execute(
                "SELECT goal, value, at, pixel_id, referrer FROM segmem_goals WHERE profile_id = ? "
                "ORDER BY at, event_id",
                (profile_id,),
            )
        ]
        segments = {
            row[0]
            for row in conn.execute(
                "SELECT segment_id FROM segmem_members WHERE profile_id = ?", (profile_id,)
            )
        }
        timers = {
            segment_id: (due, set_by)
            for segment_id, due, set_by in conn.execute(
                "SELECT segment_id, due_at, set_by FROM segmem_timers WHERE profile_id = ?", (profile_id,)
            )
        }
        return _Facts(history, goals, segments, timers)

    def _evict(self) -> None:
        """Drop the least recently used facts beyond the cache size (the tables hold them)."""
        while len(self._facts) > self._facts_cache_size:
            self._facts.popitem(last=False)

    # --- evaluation --------------------------------------------------------------------------

    def _event_cause(self, event: RecordedEvent) -> _Cause:
        cause = MembershipCause(
            kind="event", event_id=str(event.event_id), event_type=event.type, stream=event.stream
        )
        return _Cause(event, cause, event.occurred_at)

    def _evaluate(self, profile_id: str, candidates: Iterable[str], cause: _Cause) -> None:
        """Evaluate the profile for `candidates` (on a change, the segments naming it too) at `cause.at`."""
        profile = self._profiles.state(profile_id, cause.event.position)
        facts = self._facts_of(profile_id)
        pending = set(candidates)
        while pending:
            # Segments without segment rules first, so the ones naming them see their new membership.
            segment = min(
                (self._segments[s] for s in pending), key=lambda s: (bool(s.depends_on), s.segment_id)
            )
            pending.discard(segment.segment_id)
            if not segment.realtime:
                continue
            inside = matches(segment.query, profile, facts.view(), cause.at, segment.timezone)
            if inside != (segment.segment_id in facts.segments):
                self._change(segment.segment_id, profile_id, facts, inside, cause)
                pending.update(self._dependents.get(segment.segment_id, ()))
            due = next_change(segment.query, profile, facts.view(), cause.at, segment.timezone)
            self._set_timer(segment.segment_id, profile_id, facts, due, cause.event)

    def _change(self, segment_id: str, profile_id: str, facts: _Facts, inside: bool, cause: _Cause) -> None:
        """Record and emit the profile entering (`inside`) or leaving the segment."""
        self._set_member(segment_id, profile_id, facts, inside)
        changed = (ProfileEnteredSegment if inside else ProfileLeftSegment)(
            segment_id=segment_id, profile_id=profile_id, at=cause.at, cause=cause.cause
        )
        event = cause.event
        metadata = {
            "correlation_id": event.metadata.get("correlation_id", str(event.event_id)),
            "causation_id": str(event.event_id),
            "actor": ACTOR,
        }
        new = NewEvent(
            event_id=deterministic_id(NAME, event.event_id, segment_id, profile_id),
            type=type(changed).type_name,
            data=changed.to_data(),
            occurred_at=cause.at,
            metadata=metadata,
        )
        self._outgoing.append((membership_stream(segment_id), new))

    def _set_member(self, segment_id: str, profile_id: str, facts: _Facts, inside: bool) -> None:
        if inside:
            facts.segments.add(segment_id)
            self.conn.execute("INSERT OR IGNORE INTO segmem_members VALUES (?, ?)", (segment_id, profile_id))
        else:
            facts.segments.discard(segment_id)
            self.conn.execute(
                "DELETE FROM segmem_members WHERE segment_id = ? AND profile_id = ?", (segment_id, profile_id)
            )
        facts.changed()

    def _set_timer(
        self, segment_id: str, profile_id: str, facts: _Facts, due: datetime | None, cause: RecordedEvent
    ) -> None:
        current = facts.timers.get(segment_id)
        if due is None:
            if current is not None:
                del facts.timers[segment_id]
                self.conn.execute(
                    "DELETE FROM segmem_timers WHERE segment_id = ? AND profile_id = ?",
                    (segment_id, profile_id),
                )
            return
        micros = _micros(due)
        if current is not None and current[0] == micros:
            return  # the same instant keeps the event that set it, so its elapsed event keeps its id
        facts.timers[segment_id] = (micros, str(cause.event_id))
        self.conn.execute(
            "INSERT OR REPLACE INTO segmem_timers VALUES (?, ?, ?, ?)",
            (segment_id, profile_id, micros, str(cause.event_id)),
        )

    def _append_outgoing(self) -> None:
        if not self._outgoing:
            return
        outgoing, self._outgoing = self._outgoing, []
        for start in range(0, len(outgoing), _APPEND_CHUNK):
            by_stream: dict[str, list[NewEvent]] = {}
            for stream, new in outgoing[start : start + _APPEND_CHUNK]:
                by_stream.setdefault(stream, []).append(new)
            self._store.append_many([StreamAppend(stream, events) for stream, events in by_stream.items()])

    # --- membership events, timers -----------------------------------------------------------

    def _membership_event(self, event: RecordedEvent) -> None:
        if event.metadata.get("actor") == ACTOR:
            return  # one this processor emitted: its state changed when it did
        segment = self._segments.get(event.data["segment_id"])
        if segment is None or segment.kind != "static":
            return  # only the segment service's changes of static segments are folded
        profile_id = event.data["profile_id"]
        facts = self._facts_of(profile_id)
        inside = event.type == "ProfileEnteredSegment"
        if inside == (segment.segment_id in facts.segments):
            return
        self._set_member(segment.segment_id, profile_id, facts, inside)
        dependents = self._dependents.get(segment.segment_id, [])
        if dependents:
            self._evaluate(profile_id, dependents, self._event_cause(event))

    def _window_elapsed(self, event: RecordedEvent) -> None:
        elapsed = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(elapsed, SegmentWindowElapsed)
        facts = self._facts_of(elapsed.profile_id)
        current = facts.timers.get(elapsed.segment_id)
        if current is None or current[0] != _micros(elapsed.due_at):
            return  # a stale timer: an event since moved or cleared it
        cause = MembershipCause(
            kind="timer", event_id=str(event.event_id), event_type=event.type, stream=event.stream
        )
        self._evaluate(elapsed.profile_id, [elapsed.segment_id], _Cause(event, cause, elapsed.due_at))

    # --- segments ----------------------------------------------------------------------------

    def _segment_saved(self, event: RecordedEvent) -> None:
        saved = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(saved, SegmentCreated | SegmentChanged)
        previous = self._segments.get(saved.segment_id)
        kind = saved.kind if isinstance(saved, SegmentCreated) else (previous.kind if previous else "dynamic")
        segment = _Segment.of(
            saved.segment_id, kind, saved.settings.query, saved.timezone, str(event.event_id)
        )
        self.conn.execute(
            "INSERT OR REPLACE INTO segmem_segments VALUES (?, ?, ?, ?, ?)",
            (segment.segment_id, kind, segment.timezone, segment.query.model_dump_json(), segment.saved_by),
        )
        self._set_segments({**self._segments, segment.segment_id: segment})
        if kind != "dynamic":
            return
        cause = _Cause(
            event,
            MembershipCause(
                kind="segment_saved", event_id=str(event.event_id), event_type=event.type, stream=event.stream
            ),
            event.occurred_at,
        )
        if not segment.realtime:
            self._leave_all(segment.segment_id, cause)
            return
        self._populate(segment, cause, "", self._population_chunk)

    def _population_continued(self, event: RecordedEvent) -> None:
        bookmark = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(bookmark, SegmentPopulationContinued)
        segment = self._segments.get(bookmark.segment_id)
        if segment is None or segment.saved_by != bookmark.saved_event_id or not segment.realtime:
            return  # saved again or deleted since: that save's population took over
        saved = MembershipCause(
            kind="segment_saved",
            event_id=bookmark.saved_event_id,
            event_type=bookmark.saved_event_type,
            stream=bookmark.saved_stream,
        )
        cause = _Cause(event, saved, bookmark.saved_at)
        self._populate(segment, cause, bookmark.after_profile_id, bookmark.chunk)

    def _populate(self, segment: _Segment, cause: _Cause, after: str, size: int) -> None:
        """Evaluate the next `size` of the segment's candidates after `after`, then bookmark the rest.

        The candidates are its databases' profiles and its members (a member of a database the query
        no longer names leaves). The report store decides the step when it can (see bulk_population);
        the next step is sized for whichever way decided this one."""
        chunk = self._candidates(segment, after, size + 1)
        step = chunk[:size]
        in_bulk = bool(step) and self._in_bulk(segment, cause)
        if in_bulk:
            assert self._bulk is not None  # _in_bulk holds only with a bulk evaluator
            self._populate_in_bulk(self._bulk, segment, step, cause)
        else:
            for profile_id in step:
                self._evaluate(profile_id, [segment.segment_id], cause)
        more = len(chunk) > size
        last = step[-1] if more else ""
        self.conn.execute(
            "INSERT OR REPLACE INTO segmem_populations VALUES (?, ?, ?, ?)",
            (segment.segment_id, segment.saved_by, last, int(not more)),
        )
        if more:
            self._bookmark(segment, cause, last, self._bulk_chunk if in_bulk else self._population_chunk)

    def _in_bulk(self, segment: _Segment, cause: _Cause) -> bool:
        return (
            self._bulk is not None
            and bulk_evaluable(segment.query)
            and self._bulk.reached(cause.event.position)
        )

    def _populate_in_bulk(self, bulk: BulkMembers, segment: _Segment, step: list[str], cause: _Cause) -> None:
        """One population step decided by the report store as of the cause's log position; the profiles
        it cannot decide there are evaluated one by one, as `_evaluate` does for every other step."""
        scope = Scope(step[0], step[-1], cause.event.position)
        query, timezone = segment.query, segment.timezone
        stale = bulk.stale(scope, step)
        inside = bulk.members(query, cause.at, timezone, scope, self._named_members(segment, scope))
        databases = self._databases_in(segment, scope)
        history = self._history_in(scope, history_actions(query))
        goals = self._goals_in(scope) if has_goal_rules(query) else {}
        edges = edge_seconds(query, cause.at)
        members = set(self._members_in(segment.segment_id, scope))
        timers = self._timers_in(segment.segment_id, scope)
        dependents = self._dependents.get(segment.segment_id, [])
        for profile_id in step:
            events = history.get(profile_id)
            on_edge = events is not None and any(_epoch_second(e.at) in edges for e in events)
            if profile_id in stale or profile_id in goals or on_edge:
                self._evaluate(profile_id, [segment.segment_id], cause)
                continue
            entered, was = profile_id in inside, profile_id in members
            # Timers come from the facts alone (bulk_evaluable): a profile without them has none, nor
            # has one that is not an existing profile of the query's databases.
            database = databases.get(profile_id)
            due = None
            if database is not None and events is not None:
                due = fact_change(query, database, ProfileFacts(tuple(events)), cause.at, timezone)
            timer = timers.get(profile_id)
            if entered == was and due is None and timer is None:
                continue  # nothing to write
            self._facts.pop(profile_id, None)  # cached facts would miss what is written here
            current = _Facts(
                segments={segment.segment_id} if was else set(),
                timers={segment.segment_id: timer} if timer is not None else {},
            )
            if entered != was:
                self._change(segment.segment_id, profile_id, current, entered, cause)
            self._set_timer(segment.segment_id, profile_id, current, due, cause.event)
            if entered != was and dependents:
                self._evaluate(profile_id, dependents, cause)

    def _named_members(self, segment: _Segment, scope: Scope) -> dict[str, list[str]]:
        """The members within the scope of each segment the query names (this processor's, at the step)."""
        return {named: self._members_in(named, scope) for named in segment.depends_on}

    def _databases_in(self, segment: _Segment, scope: Scope) -> dict[str, str]:
        """The scope's existing profiles of the segment's databases, with their database."""
        databases = sorted(segment.databases)
        marks = ", ".join("?" * len(databases))
        rows = self.conn.execute(
            f"SELECT profile_id, database_id FROM segmem_profiles WHERE database_id IN ({marks})"
            " AND profile_id >= ? AND profile_id <= ?",
            (*databases, scope.first, scope.last),
        )
        return dict(rows.fetchall())

    def _members_in(self, segment_id: str, scope: Scope) -> list[str]:
        rows = self.conn.execute(
            "SELECT profile_id FROM segmem_members"
            " WHERE segment_id = ? AND profile_id >= ? AND profile_id <= ?",
            (segment_id, scope.first, scope.last),
        )
        return [row[0] for row in rows]

    def _timers_in(self, segment_id: str, scope: Scope) -> dict[str, tuple[int, str]]:
        rows = self.conn.execute(
            "SELECT profile_id, due_at, set_by FROM segmem_timers"
            " WHERE segment_id = ? AND profile_id >= ? AND profile_id <= ?",
            (segment_id, scope.first, scope.last),
        )
        return {profile_id: (due, set_by) for profile_id, due, set_by in rows}

    def _history_in(self, scope: Scope, actions: frozenset[MessageAction]) -> dict[str, list[HistoryEvent]]:
        """The history events of the scope's profiles with one of `actions`, by profile."""
        found: dict[str, list[HistoryEvent]] = {}
        if not actions:
            return found
        marks = ", ".join("?" * len(actions))
        rows = self.conn.execute(
            f"SELECT profile_id, {_HISTORY_COLUMNS} FROM segmem_history"
            f" WHERE profile_id >= ? AND profile_id <= ? AND action IN ({marks})",
            (scope.first, scope.last, *sorted(a.value for a in actions)),
        )
        for profile_id, *row in rows:
            found.setdefault(profile_id, []).append(_history_event(row))
        return found

    def _goals_in(self, scope: Scope) -> set[str]:
        """The scope's profiles with goal events."""
        rows = self.conn.execute(
            "SELECT DISTINCT profile_id FROM segmem_goals WHERE profile_id >= ? AND profile_id <= ?",
            (scope.first, scope.last),
        )
        return {row[0] for row in rows}

    def _candidates(self, segment: _Segment, after: str, limit: int) -> list[str]:
        databases = sorted(segment.databases)
        marks = ", ".join("?" * len(databases))
        rows = self.conn.execute(
            f"SELECT profile_id FROM segmem_profiles WHERE database_id IN ({marks}) AND profile_id > ? "
            "UNION SELECT profile_id FROM segmem_members WHERE segment_id = ? AND profile_id > ? "
            "ORDER BY profile_id LIMIT ?",
            (*databases, after, segment.segment_id, after, limit),
        )
        return [row[0] for row in rows]

    def _bookmark(self, segment: _Segment, cause: _Cause, last: str, size: int) -> None:
        saved = cause.cause
        bookmark = SegmentPopulationContinued(
            segment_id=segment.segment_id,
            saved_event_id=saved.event_id or "",
            saved_event_type=saved.event_type or "",
            saved_stream=saved.stream or "",
            saved_at=cause.at,
            after_profile_id=last,
            chunk=size,
        )
        new = NewEvent(
            event_id=deterministic_id(NAME, cause.event.event_id, "population", last),
            type=bookmark.type_name,
            data=bookmark.to_data(),
            occurred_at=cause.at,
            metadata={"causation_id": str(cause.event.event_id), "actor": ACTOR},
        )
        self._outgoing.append((membership_stream(segment.segment_id), new))

    def _segment_deleted(self, event: RecordedEvent) -> None:
        deleted = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(deleted, SegmentDeleted)
        segment = self._segments.get(deleted.segment_id)
        if segment is None:
            return
        cause = _Cause(
            event,
            MembershipCause(
                kind="segment_deleted",
                event_id=str(event.event_id),
                event_type=event.type,
                stream=event.stream,
            ),
            event.occurred_at,
        )
        self.conn.execute("DELETE FROM segmem_segments WHERE segment_id = ?", (segment.segment_id,))
        self.conn.execute("DELETE FROM segmem_populations WHERE segment_id = ?", (segment.segment_id,))
        remaining = dict(self._segments)
        del remaining[segment.segment_id]
        if segment.kind == "dynamic":
            self._leave_all(segment.segment_id, cause)
        else:
            # The service records a static segment's end itself: drop its rows, tell the segments naming it.
            for profile_id in self.members(segment.segment_id):
                self._set_member(segment.segment_id, profile_id, self._facts_of(profile_id), False)
                self._evaluate(profile_id, self._dependents.get(segment.segment_id, []), cause)
        self._set_segments(remaining)

    def _leave_all(self, segment_id: str, cause: _Cause) -> None:
        """Every member leaves the segment (deleted, or no longer kept in realtime); its timers go."""
        for profile_id in self.members(segment_id):
            facts = self._facts_of(profile_id)
            self._change(segment_id, profile_id, facts, False, cause)
            self._set_timer(segment_id, profile_id, facts, None, cause.event)
            self._evaluate(profile_id, self._dependents.get(segment_id, []), cause)
        self.conn.execute("DELETE FROM segmem_timers WHERE segment_id = ?", (segment_id,))
        for facts in self._facts.values():
            facts.timers.pop(segment_id, None)

    def _load_segments(self) -> None:
        rows = self.conn.execute("SELECT segment_id, kind, timezone, query, saved_by FROM segmem_segments")
        self._set_segments(
            {
                segment_id: _Segment.of(
                    segment_id, kind, SegmentQuery.model_validate_json(query), timezone, saved_by
                )
                for segment_id, kind, timezone, query, saved_by in rows
            }
        )

    def _set_segments(self, segments: dict[str, _Segment]) -> None:
        self._segments = segments
        by_database: dict[str, list[_Segment]] = {}
        dependents: dict[str, list[str]] = {}
        for segment in sorted(segments.values(), key=lambda s: s.segment_id):
            if not segment.realtime:
                continue
            for database_id in segment.databases:
                by_database.setdefault(database_id, []).append(segment)
            for named in segment.depends_on:
                dependents.setdefault(named, []).append(segment.segment_id)
        self._by_database = by_database
        self._dependents = dependents


_HISTORY_COLUMNS = "action, at, campaign_id, template_id, resource_id, channel, link_name"


def _history_event(row: Sequence[Any]) -> HistoryEvent:
    """A `segmem_history` row (`_HISTORY_COLUMNS`) as the evaluator's history event."""
    action, at, campaign, template, resource, channel, link = row
    return HistoryEvent(MessageAction(action), _moment(at), campaign, template, resource, channel, link)


def _epoch_second(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1)


def _goal_of(tracked: ActivityTracked) -> GoalEvent | None:
    """The goal a tracked event records, read as the report sink reads it (`tracking.goal_of`)."""
    goal = goal_of(tracked)
    if goal is None:
        return None
    return GoalEvent(goal.goal, goal.value, tracked.at, goal.pixel_id, goal.referrer)
