"""Evaluating a segment query profile by profile: membership, member lists under limits, next change.

`matches` says whether one profile is in a query (or one source) at an
instant, `members` lists a query's members with its limits applied, and
`next_change` says when a profile's result can next change with no new event
(a history window expiring, a relative date crossing midnight), so the
realtime-membership processor can set a durable timer for it. The query must
have passed `segments.check_query` (field types filled in, values coerced).

What a profile's state lacks comes in `ProfileFacts`: its message actions,
goal events, the segments it is a member of, and the external rules whose
fetched sets hold its value (`ExternalRule.key`); the caller feeds them from
projections, so evaluation stays pure. `HistoryEvent`s are one per recorded
action (the first `MessageSendAttempted` → sent, as the report sink counts it, `MessageDelivered` → delivered,
`MessageOpened` → opened, `MessageRead` → read, `LinkClicked` → clicked,
`MessageUnsubscribed` → unsubscribed, `MessageHardBounced` → bounced,
`ComplaintReceived` → complained), without bot hits and test messages.

Semantics (the SQL evaluator must agree with every line):
- Time zone: today, the calendar operators and history/goal date ranges use
  the `timezone` argument (the account's time zone); a datetime field's day is
  its day in that zone. The profile's own time zone is not used: a segment is
  one list at one instant.
- Case: `equal`, `not_equal`, `in`, `not_in` on text are case-sensitive (the
  guide); emails compare case-insensitively (addresses match profiles that
  way); `contains`, `starts_with`, `ends_with` and the domain operators
  ignore case (both sides lower-cased); tags are case-sensitive.
- Missing values: `exists` holds when the profile holds the field (a
  placeholder `…@localhost` email is no email); `empty` when it is missing or
  empty. Every other positive operator is false on a missing or empty value,
  and every negative operator (`segments.NEGATIONS`) is the exact complement
  of its positive one, so `not_equal X` includes profiles without the field.
  Profiles never store empty values, so for them `empty` ≡ `not_exists`.
- Phones (several per profile): a positive operator holds when any phone
  satisfies it; its negative when none does.
- Bounds: `between`, `relative_between`, `in_last_days`, `in_next_days` and
  date ranges are inclusive; `gt`, `lt`, `relative_before`, `relative_after`,
  `day_of_month_gt/lt`, `day_month_gt/lt` are strict.
- `anniversary N`: the date's day and month fall N days from today; 29
  February falls on the 28th in common years.
- History and goals: only events at or before `now` count. `last_days N` is
  (now − N×24h, now], so an event leaves the window exactly N days after it
  happened; a date range is [local midnight of `date_from`, local midnight
  after `date_to`). `never` with a period: no matching event in the period
  (events outside it do not matter). Counts count every recorded action.
- Goals: the count and sum of no events are 0; the average of none has no
  value, so no comparison holds but `not_equal`. Sums are exact
  (`math.fsum`), and aggregates are rounded to 3 decimals before comparing.
- Limits: a percent range keeps the profiles whose `percent_bucket` (a hash
  of the profile id alone, 1–100) is in it, so ranges over one database are
  disjoint across segments and stable across runs; `matches` applies it. A
  count keeps the first profiles by profile id; only `members` applies it,
  since a single profile cannot know its rank.
- A source matches only existing profiles of its database; a source with no
  rules and no groups matches all of them; sources combine as a union.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, islice
from zoneinfo import ZoneInfo

from pydantic import JsonValue

from herald.domain.fields import FieldType, format_datetime, is_empty, parse_datetime
from herald.domain.profiles import ProfileState, is_placeholder_email
from herald.domain.segments import (
    CALENDAR,
    GOAL_DECIMALS,
    NEGATIONS,
    TAG_SETS,
    TIME_DEPENDENT,
    AnyRule,
    Condition,
    CountLimit,
    DateRange,
    ExternalRule,
    FieldRule,
    GoalRule,
    LastDays,
    ListSource,
    MessageAction,
    MessageHistoryRule,
    Op,
    Operator,
    PercentLimit,
    SegmentQuery,
    SegmentRule,
    Source,
    SubscriptionRule,
    comparable,
    iter_rules,
)
from herald.domain.subscriptions import Subscription


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One action on one of the profile's messages."""

    action: MessageAction
    at: datetime
    campaign_id: str = ""
    template_id: str = ""
    resource_id: str = ""
    channel: str = ""
    link_name: str = ""


@dataclass(frozen=True, slots=True)
class GoalEvent:
    """A goal the profile reached, with its value."""

    goal: str
    value: float
    at: datetime
    pixel_id: str = ""
    referrer: str = ""


@dataclass(frozen=True, slots=True)
class ProfileFacts:
    """What evaluation needs beyond the profile's own state."""

    history: tuple[HistoryEvent, ...] = ()
    goals: tuple[GoalEvent, ...] = ()
    segments: frozenset[str] = frozenset()  # the segments the profile is a member of
    external: frozenset[str] = frozenset()  # `ExternalRule.key`s whose fetched sets hold its value


class _Missing:
    """The profile holds no such field (distinct from a held empty value)."""


_MISSING = _Missing()
_Value = JsonValue | _Missing


@dataclass(frozen=True, slots=True)
class _Clock:
    now: datetime
    zone: ZoneInfo
    today: date

    def midnight(self, day: date) -> datetime:
        """The instant `day` starts in the zone (the first instant after a gap, if midnight is skipped)."""
        return datetime.combine(day, time(), tzinfo=self.zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Subject:
    profile: ProfileState
    facts: ProfileFacts
    clock: _Clock


def _clock(now: datetime, timezone: str) -> _Clock:
    moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    zone = ZoneInfo(timezone)
    return _Clock(moment, zone, moment.astimezone(zone).date())


def _sources(query_or_source: SegmentQuery | Source) -> tuple[Source, ...]:
    return query_or_source.sources if isinstance(query_or_source, SegmentQuery) else (query_or_source,)


# --- the public API ----------------------------------------------------------------------------


def matches(
    query_or_source: SegmentQuery | Source,
    profile: ProfileState,
    facts: ProfileFacts,
    now: datetime,
    timezone: str,
) -> bool:
    """Whether `profile` is in the query (or source) at `now`; count limits are not applied."""
    subject = _Subject(profile, facts, _clock(now, timezone))
    return any(_source_holds(source, subject) for source in _sources(query_or_source))


def members(
    query: SegmentQuery,
    profiles: Iterable[ProfileState],
    facts_of: Callable[[str], ProfileFacts],
    now: datetime,
    timezone: str,
) -> tuple[str, ...]:
    """The ids of the query's members among `profiles`, limits applied, in profile id order."""
    clock = _clock(now, timezone)
    ordered = sorted((p for p in profiles if p.exists), key=lambda p: p.profile_id)
    facts: dict[str, ProfileFacts] = {}

    def subject(profile: ProfileState) -> _Subject:
        if profile.profile_id not in facts:
            facts[profile.profile_id] = facts_of(profile.profile_id)
        return _Subject(profile, facts[profile.profile_id], clock)

    chosen: set[str] = set()
    for source in query.sources:
        found: Iterator[str] = (p.profile_id for p in ordered if _source_holds(source, subject(p)))
        if isinstance(source.limit, CountLimit) and source.limit.count:
            found = islice(found, source.limit.count)
        chosen.update(found)
    return tuple(sorted(chosen))


def next_change(
    query_or_source: SegmentQuery | Source,
    profile: ProfileState,
    facts: ProfileFacts,
    now: datetime,
    timezone: str,
) -> datetime | None:
    """The earliest instant after `now` at which the profile's result may change with no new event.

    Conservative: at that instant some time-dependent rule may flip; evaluate again then and ask
    again. None when nothing in the query depends on time for this profile.
    """
    if not profile.exists:
        return None
    clock = _clock(now, timezone)
    return _earliest(
        query_or_source,
        profile.database_id,
        clock,
        lambda rule: chain(_state_changes(rule, profile, clock), _fact_changes(rule, facts, clock)),
    )


def changes_need_state(query_or_source: SegmentQuery | Source) -> bool:
    """Whether `next_change` reads a profile's values: a time-dependent condition on a field or on a
    subscription. Otherwise it needs only that the profile exists, its database and its facts."""
    return any(_reads_state(rule) for _, rule in iter_rules(query_or_source))


def fact_change(
    query_or_source: SegmentQuery | Source,
    database_id: str,
    facts: ProfileFacts,
    now: datetime,
    timezone: str,
) -> datetime | None:
    """`next_change` of an existing profile of `database_id`, for a query whose changes need no state
    (`changes_need_state` is false): the same instant, from the facts alone."""
    clock = _clock(now, timezone)
    return _earliest(query_or_source, database_id, clock, lambda rule: _fact_changes(rule, facts, clock))


def percent_bucket(profile_id: str) -> int:
    """A profile's percent bucket, 1–100: the first 8 bytes of SHA-256("segment/<id>") × 100 // 2⁶⁴ + 1."""
    digest = hashlib.sha256(f"segment/{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100 // 2**64 + 1


# --- sources and rules -------------------------------------------------------------------------


def _rules_of(source: Source) -> Iterator[AnyRule]:
    return chain(source.rules, (rule for group in source.groups for rule in group.rules))


def _source_holds(source: Source, subject: _Subject) -> bool:
    profile = subject.profile
    if not profile.exists or profile.database_id != source.database_id:
        return False
    limit = source.limit
    if (
        isinstance(limit, PercentLimit)
        and not limit.from_pct <= percent_bucket(profile.profile_id) <= limit.to_pct
    ):
        return False
    if not source.rules and not source.groups:
        return True
    results = chain(
        (_rule_holds(rule, subject) for rule in source.rules),
        (
            _combine(group.condition, (_rule_holds(rule, subject) for rule in group.rules))
            for group in source.groups
        ),
    )
    return _combine(source.condition, results)


def _combine(condition: str, results: Iterator[bool]) -> bool:
    return all(results) if condition == "and" else any(results)


def _rule_holds(rule: AnyRule, subject: _Subject) -> bool:
    match rule:
        case FieldRule():
            return _condition(rule, _profile_value(subject.profile, rule.field), subject.clock)
        case SubscriptionRule():
            found = any(_subscription_matches(rule, s, subject.clock) for s in subject.profile.subscriptions)
            return found if rule.operator == "exists" else not found
        case MessageHistoryRule():
            count = sum(
                1
                for e in _history_events(rule, subject.facts)
                if _in_period(rule.period, e.at, subject.clock)
            )
            return count == 0 if rule.never else count >= (rule.at_least or 1)
        case GoalRule():
            return _goal_holds(rule, subject)
        case SegmentRule():
            return (rule.segment_id in subject.facts.segments) == (rule.operator == "in")
        case ExternalRule():
            return _external_holds(rule, subject)
    raise TypeError(f"not a segment rule: {rule!r}")  # pragma: no cover


def _profile_value(profile: ProfileState, name: str) -> _Value:
    """The value a field rule on `name` sees: a field, `profile_id` or `status`; _MISSING if none"""
    if name == "profile_id":
        return profile.profile_id
    if name == "status":
        return profile.status.value
    if name not in profile.fields:
        return _MISSING
    value = profile.fields[name]
    if name == "email" and isinstance(value, str) and is_placeholder_email(value):
        return _MISSING
    return value


def _subscription_value(subscription: Subscription, name: str) -> _Value:
    """The value a subscription condition on `name` sees; _MISSING if none"""
    if name == "contact":
        return subscription.key.contact
    if name == "priority":
        return subscription.priority
    if name == "registered_at":
        return format_datetime(subscription.registered_at)
    return subscription.fields.get(name, _MISSING)


def _subscription_matches(rule: SubscriptionRule, subscription: Subscription, clock: _Clock) -> bool:
    key = subscription.key
    if rule.resource_id is not None and key.resource_id != rule.resource_id:
        return False
    if key.channel != rule.channel or (rule.provider is not None and key.provider != rule.provider):
        return False
    if rule.status_in and subscription.status not in rule.status_in:
        return False
    if subscription.status in rule.status_not_in:
        return False
    if any(subscription.category_status(c.category) is not c.status for c in rule.categories):
        return False
    return all(_condition(c, _subscription_value(subscription, c.field), clock) for c in rule.conditions)


def _external_holds(rule: ExternalRule, subject: _Subject) -> bool:
    if isinstance(rule.source, ListSource):
        value = _profile_value(subject.profile, rule.field)
        inside = _positive(Op.IN, rule.type, list(rule.source.values), value, subject.clock)
    else:
        inside = rule.key in subject.facts.external
    return inside if rule.operator == "in" else not inside


# --- history and goals -------------------------------------------------------------------------


def _history_events(rule: MessageHistoryRule, facts: ProfileFacts) -> Iterator[HistoryEvent]:
    """The profile's events the rule's filters select, at any time."""
    for event in facts.history:
        if event.action != rule.action:
            continue
        if rule.channel is not None and event.channel != rule.channel:
            continue
        if rule.resource_id is not None and event.resource_id != rule.resource_id:
            continue
        if rule.campaign_ids and event.campaign_id not in rule.campaign_ids:
            continue
        if rule.template_ids and event.template_id not in rule.template_ids:
            continue
        if rule.link_name is not None and event.link_name != rule.link_name:
            continue
        yield event


def _goal_events(rule: GoalRule, facts: ProfileFacts) -> Iterator[GoalEvent]:
    for event in facts.goals:
        if rule.goal is not None and event.goal != rule.goal:
            continue
        if rule.pixel_id is not None and event.pixel_id != rule.pixel_id:
            continue
        if rule.referrer is not None and rule.referrer.lower() not in event.referrer.lower():
            continue
        yield event


def _goal_holds(rule: GoalRule, subject: _Subject) -> bool:
    values = [
        g.value for g in _goal_events(rule, subject.facts) if _in_period(rule.period, g.at, subject.clock)
    ]
    measured: float | None
    if rule.aggregate == "count":
        measured = float(len(values))
    elif rule.aggregate == "sum":
        measured = round(math.fsum(values), GOAL_DECIMALS)
    else:
        measured = round(math.fsum(values) / len(values), GOAL_DECIMALS) if values else None
    if rule.operator == "not_equal":
        return measured != rule.value
    if measured is None:
        return False
    return {
        "equal": measured == rule.value,
        "gt": measured > rule.value,
        "gte": measured >= rule.value,
        "lt": measured < rule.value,
        "lte": measured <= rule.value,
    }[rule.operator]


def _in_period(period: LastDays | DateRange | None, moment: datetime, clock: _Clock) -> bool:
    if moment > clock.now:
        return False
    if period is None:
        return True
    if isinstance(period, LastDays):
        return moment > clock.now - timedelta(days=period.days)
    return _in_range(period, moment, clock)


def _in_range(period: DateRange, moment: datetime, clock: _Clock) -> bool:
    return clock.midnight(period.date_from) <= moment < clock.midnight(period.date_to + timedelta(days=1))


# --- conditions --------------------------------------------------------------------------------


def _condition(condition: Condition, value: _Value, clock: _Clock) -> bool:
    positive = NEGATIONS.get(condition.operator)
    if positive is not None:
        return not _positive(positive, condition.type, condition.value, value, clock)
    return _positive(condition.operator, condition.type, condition.value, value, clock)


def _positive(
    operator: Operator, field_type: FieldType | None, target: JsonValue, value: _Value, clock: _Clock
) -> bool:
    """Whether a positive operator holds for the profile's `value` (_MISSING: no such field)."""
    if operator is Op.EXISTS:
        return not isinstance(value, _Missing)
    if isinstance(value, _Missing) or is_empty(value):
        return operator is Op.EMPTY
    if operator is Op.EMPTY:
        return False
    if field_type is None:
        raise ValueError("the condition has no field type: check the query with segments.check_query")
    if operator in TAG_SETS:
        held, wanted = set(_texts(value)), set(_texts(target))
        return bool(held & wanted) if operator is Op.HAS_ANY else wanted <= held
    if operator in CALENDAR:
        return _calendar(operator, _local_date(field_type, value, clock.zone), target, clock.today)
    items = value if isinstance(value, list) else [value]
    return any(_compare(operator, field_type, item, target) for item in items)


def _compare(operator: Operator, field_type: FieldType, item: JsonValue, target: JsonValue) -> bool:
    """One held value (one phone of several) against the operator's value."""
    if operator is Op.IN_CIDR:
        return ipaddress.ip_address(str(item)) in ipaddress.ip_network(str(target))
    if operator in (Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH):
        text, part = str(item).lower(), str(target).lower()
        if operator is Op.CONTAINS:
            return part in text
        return text.startswith(part) if operator is Op.STARTS_WITH else text.endswith(part)
    if operator in (Op.DOMAIN_EQUAL, Op.DOMAIN_CONTAINS):
        domain = str(item).rsplit("@", 1)[-1].lower()
        return domain == target if operator is Op.DOMAIN_EQUAL else str(target) in domain
    if field_type is FieldType.EMAIL:
        item = str(item).lower()  # stored targets are lower-cased by check_query
    held = comparable(field_type, item)
    if operator is Op.IN:
        return any(held == comparable(field_type, one) for one in _items(target))
    if operator is Op.BETWEEN:
        low, high = _items(target)
        return bool(comparable(field_type, low) <= held <= comparable(field_type, high))
    wanted = comparable(field_type, target)
    return bool(
        {
            Op.EQUAL: lambda: held == wanted,
            Op.GT: lambda: held > wanted,
            Op.GTE: lambda: held >= wanted,
            Op.LT: lambda: held < wanted,
            Op.LTE: lambda: held <= wanted,
        }[operator]()
    )


def _calendar(operator: Operator, day: date, target: JsonValue, today: date) -> bool:
    """A calendar operator on the profile's local `day`."""
    if operator is Op.TODAY:
        return day == today
    if operator is Op.MONTH_IS_CURRENT:
        return day.month == today.month
    if operator is Op.DAY_OF_MONTH_IS_CURRENT:
        return day.day == today.day
    if operator in (Op.DAY_MONTH_EQUAL, Op.DAY_MONTH_GT, Op.DAY_MONTH_LT):
        month, day_of_month = (int(part) for part in str(target).split("-"))
        held, wanted = (day.month, day.day), (month, day_of_month)
        if operator is Op.DAY_MONTH_EQUAL:
            return held == wanted
        return held > wanted if operator is Op.DAY_MONTH_GT else held < wanted
    if operator is Op.RELATIVE_BETWEEN:
        low, high = (_int(one) for one in _items(target))
        return today + timedelta(days=low) <= day <= today + timedelta(days=high)
    number = _int(target)
    shifted = today + timedelta(days=number)
    checks: dict[Operator, Callable[[], bool]] = {
        Op.RELATIVE_EQUAL: lambda: day == shifted,
        Op.RELATIVE_BEFORE: lambda: day < shifted,
        Op.RELATIVE_AFTER: lambda: day > shifted,
        Op.IN_LAST_DAYS: lambda: today - timedelta(days=number) <= day <= today,
        Op.IN_NEXT_DAYS: lambda: today <= day <= shifted,
        Op.ANNIVERSARY: lambda: _anniversary(day, shifted.year) == shifted,
        Op.MONTH_EQUAL: lambda: day.month == number,
        Op.DAY_OF_MONTH_EQUAL: lambda: day.day == number,
        Op.DAY_OF_MONTH_GT: lambda: day.day > number,
        Op.DAY_OF_MONTH_LT: lambda: day.day < number,
    }
    return checks[operator]()


def _anniversary(day: date, year: int) -> date:
    """`day`'s anniversary in `year`; 29 February falls on the 28th in common years."""
    if day.month == 2 and day.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return day.replace(year=year)


def _local_date(field_type: FieldType, value: JsonValue, zone: ZoneInfo) -> date:
    """The calendar day of a stored date, or of a stored datetime in `zone`."""
    if field_type is FieldType.DATETIME:
        return parse_datetime(value, "value").astimezone(zone).date()
    return date.fromisoformat(str(value))


def _items(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else [value]


def _texts(value: JsonValue) -> list[str]:
    return [str(item) for item in _items(value)]


def _int(value: JsonValue) -> int:
    if not isinstance(value, int):
        raise ValueError(f"expected a whole number, not {value!r}: check the query with segments.check_query")
    return value


# --- next change -------------------------------------------------------------------------------


def _earliest(
    query_or_source: SegmentQuery | Source,
    database_id: str,
    clock: _Clock,
    changes: Callable[[AnyRule], Iterator[datetime]],
) -> datetime | None:
    """The first of the instants after now that `changes` gives for the rules of the database's sources."""
    moments = (
        moment
        for source in _sources(query_or_source)
        if source.database_id == database_id
        for rule in _rules_of(source)
        for moment in changes(rule)
    )
    return min((moment for moment in moments if moment > clock.now), default=None)


def _reads_state(rule: AnyRule) -> bool:
    """Whether `_state_changes` can give the rule an instant (it looks at the profile's values)."""
    if isinstance(rule, FieldRule):
        return rule.operator in TIME_DEPENDENT
    if isinstance(rule, SubscriptionRule):
        return any(c.operator in TIME_DEPENDENT for c in rule.conditions)
    return False


def _state_changes(rule: AnyRule, profile: ProfileState, clock: _Clock) -> Iterator[datetime]:
    """Instants at which a rule on the profile's values may flip with no new event: a time-dependent
    condition on a field or a subscription crosses midnight."""
    if not _reads_state(rule):
        return
    if isinstance(rule, FieldRule):
        value = _profile_value(profile, rule.field)
        if not isinstance(value, _Missing) and not is_empty(value):
            yield clock.midnight(clock.today + timedelta(days=1))
    elif len(profile.subscriptions):
        yield clock.midnight(clock.today + timedelta(days=1))


def _fact_changes(rule: AnyRule, facts: ProfileFacts, clock: _Clock) -> Iterator[datetime]:
    """Instants at which a history or goal rule may flip with no new event (some may be past)."""
    if isinstance(rule, MessageHistoryRule):
        yield from _window_changes(rule.period, (e.at for e in _history_events(rule, facts)), clock)
    elif isinstance(rule, GoalRule):
        yield from _window_changes(rule.period, (g.at for g in _goal_events(rule, facts)), clock)


def _window_changes(
    period: LastDays | DateRange | None, moments: Iterable[datetime], clock: _Clock
) -> Iterator[datetime]:
    """When events enter a rule's window (later events, as time reaches them) or leave it (last N days)."""
    for moment in moments:
        if moment > clock.now:
            if not isinstance(period, DateRange) or _in_range(period, moment, clock):
                yield moment
        elif isinstance(period, LastDays):
            yield moment + timedelta(days=period.days)
