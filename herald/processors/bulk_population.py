"""Populating a saved dynamic segment in bulk: the report store's evaluator, decided as of a log position.

The membership processor evaluates a newly saved segment's profiles in steps (bookmarks in the
log), each step as of its own log position P (the save, or the bookmark it is applying). Profile by
profile that means folding every profile's stream; over a million profiles, minutes. A step can
instead ask the report store (`reports/segment_sql.py`), whose evaluator agrees with
`segment_eval.matches` (a property test holds the two together on both engines), and the decision
is still the log's as of P, never a later state:
- the store must hold every event before P (`BulkMembers.reached`, which brings the embedded sink up);
- history and goal events are read before P (the `Scope`);
- a profile's snapshot is its state at P only if the snapshot's last event is before P: every other
  profile of the step (changed at or after P, or without a snapshot: `stale`) is evaluated profile by
  profile, from its stream folded up to P, as before;
- memberships of segments a rule names come from the processor's own tables, which are at P.
What the two evaluators read differently is also left to the per-profile path: the store keeps event
times to the second, so a profile with a history event in the second of a window's edge (now, or now
less a `last_days` period) is evaluated profile by profile; so is every profile with goal events when
the query has goal rules (sums are Kahan's in SQL, exact in Python; referrers lower-case differently).

A segment is populated in bulk only when its durable timers need no profile state
(`segment_eval.changes_need_state`): then `segment_eval.fact_change` sets them from the facts alone.
Calendar operators on datetime fields read ClickHouse dates, valid from 1970 only: such queries go
profile by profile too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from herald.domain.fields import FieldType
from herald.domain.segment_eval import changes_need_state
from herald.domain.segments import (
    CALENDAR,
    Condition,
    FieldRule,
    GoalRule,
    LastDays,
    MessageAction,
    MessageHistoryRule,
    SegmentQuery,
    SubscriptionRule,
    iter_rules,
)
from herald.reports.segment_sql import Scope

BULK_CHUNK = 50_000
"""Profiles per population step when the report store decides them (the per-profile path takes 1,000)."""


class BulkMembers(Protocol):
    """The report store as the membership processor's bulk evaluator."""

    def reached(self, position: int) -> bool:
        """Whether the store holds every event before `position` (brought there if it can be)."""
        ...

    def members(
        self,
        query: SegmentQuery,
        now: datetime,
        timezone: str,
        scope: Scope,
        segments: Mapping[str, Collection[str]],
    ) -> set[str]:
        """The scope's profiles in the query (count limits aside); `segments`: named segments' members."""
        ...

    def stale(self, scope: Scope, profile_ids: Collection[str]) -> set[str]:
        """Those of `profile_ids` whose snapshot is not their state at the scope's position, or is none."""
        ...


def bulk_evaluable(query: SegmentQuery) -> bool:
    """Whether a population step may take the store's decisions for this query (see the module doc)."""
    if changes_need_state(query):
        return False
    conditions = _conditions(query)
    return not any(c.operator in CALENDAR and c.type is FieldType.DATETIME for c in conditions)


def history_actions(query: SegmentQuery) -> frozenset[MessageAction]:
    """The message actions the query's history rules read."""
    return frozenset(rule.action for _, rule in iter_rules(query) if isinstance(rule, MessageHistoryRule))


def has_goal_rules(query: SegmentQuery) -> bool:
    return any(isinstance(rule, GoalRule) for _, rule in iter_rules(query))


def edge_seconds(query: SegmentQuery, now: datetime) -> frozenset[int]:
    """The epoch seconds in which a history event's time decides a window differently at second and at
    microsecond precision: now's, and now less each `last_days` period's."""
    moments = [now] + [
        now - timedelta(days=rule.period.days)
        for _, rule in iter_rules(query)
        if isinstance(rule, MessageHistoryRule) and isinstance(rule.period, LastDays)
    ]
    return frozenset(_epoch_second(moment) for moment in moments)


def _epoch_second(moment: datetime) -> int:
    return int((moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1))


def _conditions(query: SegmentQuery) -> list[Condition]:
    """Every condition of the query: field rules, and the conditions of subscription rules."""
    found: list[Condition] = []
    for _, rule in iter_rules(query):
        if isinstance(rule, FieldRule):
            found.append(rule)
        elif isinstance(rule, SubscriptionRule):
            found.extend(rule.conditions)
    return found
