"""Evaluating a segment query in bulk: SQL over ClickHouse that agrees with `domain.segment_eval`.

`members_sql` lists a query's members, limits applied, from `profile_snapshots`
(each profile's current state) with `message_events` and `goal_events` for
history and goal rules; `compile_source` is one source's WHERE clause. Every
semantic choice is the per-profile evaluator's (its docstring is the
contract, and a property test holds the two together); this module only
says how each is written in SQL that Debian's ClickHouse 18.16 and chDB both
run. Every value travels as a `{name:Type}` parameter, never in the SQL text.

The snapshot (`snapshot_row`, migration `0004_profile_snapshots`):
- `profile_id`, `database_id`, `status`, `exists` (created, not deleted or
  merged away);
- field entries, parallel arrays with one element per value: `field_owners`
  (0 for the profile's own fields, k for its k-th subscription's),
  `field_names`, `field_strings` (`str(value)`; JSON text for objects),
  `field_lowers` (that text lower-cased by Python, so the case-blind
  operators lower exactly as the domain does, Unicode included),
  `field_ints` (an int; a date as days since 1970-01-01; a datetime as epoch
  milliseconds; an IPv4 address as its number; a bool as 0/1), `field_floats`
  (a number as Float64) and `field_empties` (1: the field is held with an
  empty value, so it exists and is empty). A list of texts (phones, tags)
  has one entry per item, which gives "any phone satisfies" for free; other
  lists (JSON arrays) are one entry of JSON text. The snapshot does not know
  field types: a value gets every numeric form its shape allows, and the
  condition's type picks the one it compares. `profile_id` and `status` are
  entries too (field rules name them as system fields), and a subscription's
  `contact`, `priority` and `registered_at` are entries of its owner number;
  a placeholder email is no entry, as it is no email;
- subscriptions as parallel arrays: `sub_resource_ids`, `sub_channels`,
  `sub_providers` ('' for none), `sub_contacts`, `sub_statuses`,
  `sub_priorities`, `sub_registered_at`; `category_owners`/`category_names`
  list the categories a subscription unsubscribed from (any other category
  is subscribed).

How the semantics are written:
- "today" and every date a calendar operator or a period needs are computed
  here in Python from `now` and the time zone, and bound as day numbers or
  instants: a date field compares its day number; a datetime field compares
  its epoch milliseconds with the first millisecond of each local day
  (found with `zoneinfo`, so any year and any daylight-saving gap agree).
  Month and day-of-month of a datetime come from ClickHouse's `toDate(t, tz)`,
  valid for instants within DateTime's range (1970–2105); of a date, from
  its text.
- Goal aggregates are rounded to 3 decimals exactly as Python's `round`
  (correct rounding of the double's exact value, ties to even): the
  product `x × 1000` and its exact error (Dekker's two-product) decide the
  ties. Sums use `sumKahan`; the domain's `math.fsum` is exact, so the two
  can differ in the last bit for long sums of inexact values, which matters
  only when that bit decides a rounding at the 3rd decimal.
- History events are read without `FINAL`: the rows of one event id are copies of one event, so
  membership needs no deduplication and counts count distinct event ids (`uniqExact(event_id)`).
- History and goal events are read at second precision (the tables'
  `DateTime`); a sub-second part of `now` is floored, which for whole-second
  events changes no comparison.
- The percent bucket is SHA-256 in SQL: the first 8 bytes, big-endian, × 100
  // 2⁶⁴ + 1, computed in 64-bit halves so that nothing overflows.
- A goal's referrer is matched with `lowerUTF8`, which lowers as Python does
  except for the few letters whose two cases differ in UTF-8 length.
- Segment and external rules (a POST URL's or CSV's set) take their member
  profile ids as parameters: `segments` maps a segment id to its members,
  `external` an `ExternalRule.key` to the profiles whose value its fetched
  set holds (the same facts the per-profile evaluator is given).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import JsonValue

from herald.domain.errors import ValidationFailed
from herald.domain.fields import FieldType, format_datetime, is_empty, parse_datetime
from herald.domain.profiles import ProfileState, is_placeholder_email
from herald.domain.segments import (
    CALENDAR,
    NEGATIONS,
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
)
from herald.domain.subscriptions import CategoryStatus, Subscription
from herald.infra.clickhouse import ClickHouse

SNAPSHOT_COLUMNS = (
    "profile_id",
    "database_id",
    "status",
    "exists",
    "field_owners",
    "field_names",
    "field_strings",
    "field_lowers",
    "field_ints",
    "field_floats",
    "field_empties",
    "sub_resource_ids",
    "sub_channels",
    "sub_providers",
    "sub_contacts",
    "sub_statuses",
    "sub_priorities",
    "sub_registered_at",
    "category_owners",
    "category_names",
    "position",
)
"""The columns of `profile_snapshots`, in the order `snapshot_row` fills them."""

HISTORY_EVENT_TYPES: Mapping[MessageAction, str] = {
    MessageAction.SENT: "sent",
    MessageAction.DELIVERED: "delivered",
    MessageAction.OPENED: "open",
    MessageAction.READ: "read",
    MessageAction.CLICKED: "click",
    MessageAction.UNSUBSCRIBED: "unsubscribe",
    MessageAction.BOUNCED: "hard_bounce",
    MessageAction.COMPLAINED: "complaint",
}
"""The `message_events.event_type` each history action counts (bot hits and test messages never count)."""

SUBSCRIPTION_BUILTINS = ("contact", "priority", "registered_at")
"""A subscription's own values that conditions name like fields (they shadow custom fields so named)."""

_NO_SETS: Mapping[str, Collection[str]] = MappingProxyType({})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_INT64 = (-(2**63), 2**63 - 1)
_DATETIME_MAX = 2**32 - 1  # the last second a ClickHouse DateTime holds
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T")
_IPV4_TEXT = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")

# The arrays an entry lambda may walk, by the names its body sees them by. A lambda takes only those
# its body names: every array passed is a column read for every profile.
_ENTRY_ARRAYS = (
    ("xo", "field_owners"),
    ("xn", "field_names"),
    ("xe", "field_empties"),
    ("xs", "field_strings"),
    ("xl", "field_lowers"),
    ("xi", "field_ints"),
    ("xf", "field_floats"),
)
_ENTRY_NAMES = {arg: re.compile(rf"\b{arg}\b") for arg, _ in _ENTRY_ARRAYS}

# A subscription rule's rows: one per subscription, numbered from 1 as the entries' owners are.
_SUBSCRIPTION_ARRAYS = (
    "arrayEnumerate(sub_channels) AS sk, sub_channels AS s_channel, sub_resource_ids AS s_resource,"
    " sub_providers AS s_provider, sub_statuses AS s_status"
)

# A profile's percent bucket (segment_eval.percent_bucket) from the first 8 bytes of its SHA-256,
# read big-endian: floor(h × 100 / 2⁶⁴) + 1 in two 32-bit halves, so no product passes 2⁶⁴.
_HASH = "reinterpretAsUInt64(reverse(substring(SHA256(concat('segment/', profile_id)), 1, 8)))"
_HIGH_TIMES_100 = f"bitShiftRight({_HASH}, 32) * 100"
_LOW_TIMES_100 = f"bitAnd({_HASH}, 4294967295) * 100"
_BUCKET = f"(intDiv({_HIGH_TIMES_100} + intDiv({_LOW_TIMES_100}, 4294967296), 4294967296) + 1)"

# The goal aggregate `raw` rounded to 3 decimals as Python's round() does: nearest, ties to even,
# judged on the double's exact value. `scaled` is raw × 1000 rounded; Dekker's two-product gives its
# exact `error`, whose sign breaks a tie that rounding to `scaled` made look exact.
_ROUNDED = """SELECT profile_id AS profile_id,
    multiIf(fraction > 0.5, whole + 1, fraction < 0.5, whole, error > 0, whole + 1, error < 0, whole,
            whole - 2 * floor(whole / 2) = 0, whole, whole + 1) / 1000 AS measured
FROM (
    SELECT profile_id AS profile_id,
        raw * 1000 AS scaled, floor(scaled) AS whole, scaled - whole AS fraction,
        raw * 134217729 AS spread, spread - (spread - raw) AS raw_high, raw - raw_high AS raw_low,
        (raw_high * 1000 - scaled) + raw_low * 1000 AS error
    FROM ({aggregated})
)"""

_AGGREGATES = {
    "count": "toFloat64(count())",
    "sum": "sumKahan(value)",
    "avg": "sumKahan(value) / count()",
}
_COMPARISONS = {"equal": "=", "not_equal": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_ORDER = {Op.EQUAL: "=", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_SIGNS = {
    Op.DAY_OF_MONTH_EQUAL: "=",
    Op.DAY_OF_MONTH_GT: ">",
    Op.DAY_OF_MONTH_LT: "<",
    Op.DAY_MONTH_EQUAL: "=",
    Op.DAY_MONTH_GT: ">",
    Op.DAY_MONTH_LT: "<",
}
# Calendar operators that accept a range of local days (the rest look at the month and the day).
_DAY_RANGES = frozenset(
    {Op.TODAY, Op.RELATIVE_EQUAL, Op.RELATIVE_BEFORE, Op.RELATIVE_AFTER, Op.RELATIVE_BETWEEN}
    | {Op.IN_LAST_DAYS, Op.IN_NEXT_DAYS}
)


# --- the snapshot ------------------------------------------------------------------------------


@dataclass
class _Entries:
    """The field entries of one snapshot row, as parallel lists."""

    owners: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    lowers: list[str] = field(default_factory=list)
    ints: list[int] = field(default_factory=list)
    floats: list[float] = field(default_factory=list)
    empties: list[int] = field(default_factory=list)

    def add(self, owner: int, name: str, value: JsonValue) -> None:
        """One entry per text of a list of texts, one entry otherwise; a held empty value is marked."""
        if is_empty(value):
            self._append(owner, name, "", 0, 0.0, empty=1)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            for item in value:
                self._item(owner, name, item)
        else:
            self._item(owner, name, value)

    def _item(self, owner: int, name: str, value: JsonValue) -> None:
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
        self._append(owner, name, text, _number(value), _float(value), empty=0)

    def _append(self, owner: int, name: str, text: str, number: int, real: float, empty: int) -> None:
        self.owners.append(owner)
        self.names.append(name)
        self.strings.append(text)
        self.lowers.append(text.lower())
        self.ints.append(number if _INT64[0] <= number <= _INT64[1] else 0)
        self.floats.append(real)
        self.empties.append(empty)


def _number(value: JsonValue) -> int:
    """The integer form of a value: the int itself, a day number, epoch ms, an IPv4 address; else 0."""
    if isinstance(value, bool | int):
        return int(value)
    if not isinstance(value, str):
        return 0
    try:
        if _DATE_TEXT.match(value):
            return (date.fromisoformat(value) - _EPOCH_DAY).days
        if _DATETIME_TEXT.match(value):
            return _epoch_ms(parse_datetime(value, "value"))
        if _IPV4_TEXT.match(value):
            return int(ipaddress.IPv4Address(value))
    except (ValueError, ValidationFailed):
        return 0  # text shaped like a date that is none: a string field's value
    return 0


def _float(value: JsonValue) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def snapshot_row(profile: ProfileState, position: int) -> tuple[Any, ...]:
    """The `profile_snapshots` row of a profile's state, in `SNAPSHOT_COLUMNS` order."""
    entries = _Entries()
    entries.add(0, "profile_id", profile.profile_id)
    entries.add(0, "status", profile.status.value)
    for name, value in profile.fields.items():
        if name in ("profile_id", "status"):
            continue  # reserved names: a rule on them means the system field
        if name == "email" and isinstance(value, str) and is_placeholder_email(value):
            continue
        entries.add(0, name, value)
    subscriptions = list(profile.subscriptions)
    categories: list[tuple[int, str]] = []
    for owner, subscription in enumerate(subscriptions, start=1):
        _subscription_entries(entries, owner, subscription)
        categories.extend(
            (owner, name)
            for name, status in subscription.categories.items()
            if status == CategoryStatus.UNSUBSCRIBED
        )
    return (
        profile.profile_id,
        profile.database_id,
        profile.status.value,
        int(profile.exists),
        entries.owners,
        entries.names,
        entries.strings,
        entries.lowers,
        entries.ints,
        entries.floats,
        entries.empties,
        [s.key.resource_id for s in subscriptions],
        [s.key.channel for s in subscriptions],
        [s.key.provider or "" for s in subscriptions],
        [s.key.contact for s in subscriptions],
        [s.status.value for s in subscriptions],
        [s.priority for s in subscriptions],
        [_in_datetime_range(s.registered_at) for s in subscriptions],
        [owner for owner, _ in categories],
        [name for _, name in categories],
        position,
    )


def _subscription_entries(entries: _Entries, owner: int, subscription: Subscription) -> None:
    entries.add(owner, "contact", subscription.key.contact)
    entries.add(owner, "priority", subscription.priority)
    entries.add(owner, "registered_at", format_datetime(subscription.registered_at))
    for name, value in subscription.fields.items():
        if name not in SUBSCRIPTION_BUILTINS:
            entries.add(owner, name, value)


def _in_datetime_range(moment: datetime) -> datetime:
    """The instant clamped to ClickHouse DateTime's range (the column is for reading; rules use entries)."""
    seconds = min(max(_epoch_ms(moment) // 1000, 0), _DATETIME_MAX)
    return _EPOCH + timedelta(seconds=seconds)


def write_snapshots(ch: ClickHouse, profiles: Iterable[ProfileState], position: int = 1) -> None:
    """Insert the snapshot rows of `profiles`, all at log position `position`."""
    ch.insert("profile_snapshots", SNAPSHOT_COLUMNS, [snapshot_row(p, position) for p in profiles])


# --- the public API ----------------------------------------------------------------------------


def members_sql(
    ch: ClickHouse,
    query: SegmentQuery,
    now: datetime,
    timezone: str,
    *,
    segments: Mapping[str, Collection[str]] = _NO_SETS,
    external: Mapping[str, Collection[str]] = _NO_SETS,
    limit: int | None = None,
) -> tuple[str, ...]:
    """The ids of the query's members, limits applied, in profile id order (as `segment_eval.members`).

    `limit` keeps only the first so many (a sample); the query's own limits apply first.
    """
    union, params = _union(query, now, timezone, segments, external)
    if not union:
        return ()
    if limit is not None:
        params["sample_limit"] = limit
        ordered = f"SELECT DISTINCT profile_id AS profile_id FROM ({union}) ORDER BY profile_id"
        return tuple(
            row["profile_id"] for row in ch.query(f"{ordered} LIMIT {{sample_limit:UInt64}}", params)
        )
    # De-duplicated and sorted here, not by DISTINCT and ORDER BY around the union: those cost chDB
    # more than the selection itself (bench/bench_segments.py). Python orders str by code point,
    # which is the byte order of UTF-8 that ClickHouse sorts by.
    return tuple(sorted({row["profile_id"] for row in ch.query(union, params)}))


def count_sql(
    ch: ClickHouse,
    query: SegmentQuery,
    now: datetime,
    timezone: str,
    *,
    segments: Mapping[str, Collection[str]] = _NO_SETS,
    external: Mapping[str, Collection[str]] = _NO_SETS,
) -> int:
    """How many members the query has, limits applied (`len(members_sql(...))` without moving the ids)."""
    union, params = _union(query, now, timezone, segments, external)
    if not union:
        return 0
    # One source lists a profile once (FINAL keeps one row per profile); several may list it again.
    counted = "count()" if len(query.sources) == 1 else "uniqExact(profile_id)"
    rows = ch.query(f"SELECT {counted} AS members FROM ({union})", params)
    return int(rows[0]["members"])


def _union(
    query: SegmentQuery,
    now: datetime,
    timezone: str,
    segments: Mapping[str, Collection[str]],
    external: Mapping[str, Collection[str]],
) -> tuple[str, dict[str, Any]]:
    """A SELECT of `profile_id` over every source (a profile may come more than once), and its parameters."""
    selects: list[str] = []
    params: dict[str, Any] = {}
    for index, source in enumerate(query.sources):
        prefix = f"s{index}_"
        where, bound = compile_source(
            source, now, timezone, segments=segments, external=external, prefix=prefix
        )
        params.update(bound)
        limit = ""
        if isinstance(source.limit, CountLimit) and source.limit.count:
            # The first profiles by profile id: String order is byte order, which for UTF-8 is the
            # code point order Python sorts by.
            limit = f" ORDER BY profile_id LIMIT {{{prefix}limit:UInt64}}"
            params[f"{prefix}limit"] = source.limit.count
        selects.append(f"SELECT profile_id AS profile_id FROM profile_snapshots FINAL WHERE {where}{limit}")
    return " UNION ALL ".join(selects), params


def compile_source(
    source: Source,
    now: datetime,
    timezone: str,
    *,
    segments: Mapping[str, Collection[str]] = _NO_SETS,
    external: Mapping[str, Collection[str]] = _NO_SETS,
    prefix: str = "p",
    scope: Scope | None = None,
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause over `profile_snapshots FINAL` selecting the source's profiles (count limit aside).

    Parameter names start with `prefix`. A segment or external rule whose set is not given raises KeyError.
    """
    compiler = _Compiler(_clock(now, timezone), prefix, segments, external, scope)
    return compiler.source(source), compiler.params


@dataclass(frozen=True, slots=True)
class Scope:
    """A part of the profiles and of the log: ids from `first` to `last` (inclusive), and the history
    and goal events before the log position `before` (the membership processor evaluates as of it)."""

    first: str
    last: str
    before: int


def members_in_scope(
    ch: ClickHouse,
    query: SegmentQuery,
    now: datetime,
    timezone: str,
    scope: Scope,
    *,
    segments: Mapping[str, Collection[str]] = _NO_SETS,
) -> set[str]:
    """The profiles of the scope the query holds with the scope's events, limits but count limits applied
    (realtime membership has none); profiles are their latest snapshots (see `fresh_snapshots`)."""
    selects: list[str] = []
    params: dict[str, Any] = {}
    for index, source in enumerate(query.sources):
        where, bound = compile_source(
            source, now, timezone, segments=segments, prefix=f"s{index}_", scope=scope
        )
        params.update(bound)
        selects.append(f"SELECT profile_id AS profile_id FROM profile_snapshots FINAL WHERE {where}")
    return {row["profile_id"] for row in ch.query(" UNION ALL ".join(selects), params)}


def stale_snapshots(ch: ClickHouse, scope: Scope, profile_ids: Collection[str]) -> set[str]:
    """Those of `profile_ids` (within the scope) whose latest snapshot is not their state at the scope's
    log position: written at or after it, or not at all.

    The query names only the scope's bounds and the difference is taken here: with a step's 50,000 ids
    sent as a parameter, this took 2.8 of a 200k-profile population's 7.8 s under cProfile, half of it
    quoting the ids."""
    rows = ch.query(
        # the latest snapshot first (FINAL), then its position
        "SELECT groupArray(profile_id) AS current FROM ("
        " SELECT profile_id, position FROM profile_snapshots FINAL"
        " WHERE profile_id >= {first:String} AND profile_id <= {last:String})"
        " WHERE position < {before:UInt64}",
        {"first": scope.first, "last": scope.last, "before": scope.before},
    )
    return set(profile_ids).difference(rows[0]["current"] if rows else ())


# --- compiling ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Clock:
    now: datetime
    zone: ZoneInfo
    today: date

    def midnight(self, day: date) -> datetime:
        """As segment_eval's: `day`'s midnight in the zone (fold 0), the bound of a period's date range."""
        return datetime.combine(day, time(), tzinfo=self.zone).astimezone(UTC)

    def first_ms(self, day: date) -> int:
        """The first epoch millisecond whose local date is `day` or later (local dates never go back)."""
        low = _epoch_ms(self.midnight(day)) - 2 * 86_400_000  # zone offsets stay within ±26 hours
        high = low + 4 * 86_400_000
        while high - low > 1:
            middle = (low + high) // 2
            if (_EPOCH + middle * _MS).astimezone(self.zone).date() >= day:
                high = middle
            else:
                low = middle
        return high


def _clock(now: datetime, timezone: str) -> _Clock:
    moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    zone = ZoneInfo(timezone)
    return _Clock(moment, zone, moment.astimezone(zone).date())


class _Compiler:
    """Turns one source into SQL, collecting its parameters."""

    def __init__(
        self,
        clock: _Clock,
        prefix: str,
        segments: Mapping[str, Collection[str]],
        external: Mapping[str, Collection[str]],
        scope: Scope | None = None,
    ) -> None:
        self.clock = clock
        self.prefix = prefix
        self.segments = segments
        self.external = external
        self.scope = scope
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, type_text: str) -> str:
        """A placeholder for `value`; the value goes to the parameters."""
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_text}}}"

    # -- sources and rules

    def in_scope(self) -> list[str]:
        """Conditions keeping the scope's profiles (none without a scope)."""
        if self.scope is None:
            return []
        first, last = self.bind(self.scope.first, "String"), self.bind(self.scope.last, "String")
        return [f"profile_id >= {first}", f"profile_id <= {last}"]

    def before(self) -> list[str]:
        """Conditions keeping the scope's events, those before its log position (none without a scope)."""
        return [] if self.scope is None else [f"position < {self.bind(self.scope.before, 'UInt64')}"]

    def source(self, source: Source) -> str:
        parts = [
            f"database_id = {self.bind(source.database_id, 'String')}",
            "`exists` = 1",
            *self.in_scope(),
        ]
        limit = source.limit
        if isinstance(limit, PercentLimit):
            low, high = self.bind(limit.from_pct, "UInt8"), self.bind(limit.to_pct, "UInt8")
            parts.append(f"{_BUCKET} BETWEEN {low} AND {high}")
        results = [self.rule(rule) for rule in source.rules]
        results += [
            _combine(group.condition, [self.rule(rule) for rule in group.rules]) for group in source.groups
        ]
        if results:
            parts.append(_combine(source.condition, results))
        return " AND ".join(parts)

    def rule(self, rule: AnyRule) -> str:
        match rule:
            case FieldRule():
                return self.condition(rule, "0")
            case SubscriptionRule():
                return self.subscription(rule)
            case MessageHistoryRule():
                return self.history(rule)
            case GoalRule():
                return self.goal(rule)
            case SegmentRule():
                members = self.segments[rule.segment_id]
                return self.member_of(members, rule.operator == "in")
            case ExternalRule():
                return self.external_rule(rule)
        raise TypeError(f"not a segment rule: {rule!r}")  # pragma: no cover

    def member_of(self, profile_ids: Collection[str], inside: bool) -> str:
        # IN over a subquery builds one hash set, where has() would scan the array for every row.
        ids = self.bind(sorted(profile_ids), "Array(String)")
        return f"profile_id {'IN' if inside else 'NOT IN'} (SELECT arrayJoin({ids}) AS member_id)"

    def external_rule(self, rule: ExternalRule) -> str:
        if isinstance(rule.source, ListSource):
            listed = Condition(
                field=rule.field, operator=Op.IN, value=list(rule.source.values), type=rule.type
            )
            inside = self.condition(listed, "0")
            return inside if rule.operator == "in" else f"NOT ({inside})"
        return self.member_of(self.external[rule.key], rule.operator == "in")

    # -- subscriptions

    def subscription(self, rule: SubscriptionRule) -> str:
        """Some subscription (number `sk`) satisfies every condition, or (not_exists) none does."""
        checks = [f"s_channel = {self.bind(rule.channel, 'String')}"]
        if rule.resource_id is not None:
            checks.append(f"s_resource = {self.bind(rule.resource_id, 'String')}")
        if rule.provider is not None:
            checks.append(f"s_provider = {self.bind(rule.provider, 'String')}")
        if rule.status_in:
            checks.append(f"has({self.bind([s.value for s in rule.status_in], 'Array(String)')}, s_status)")
        if rule.status_not_in:
            statuses = self.bind([s.value for s in rule.status_not_in], "Array(String)")
            checks.append(f"NOT has({statuses}, s_status)")
        for category in rule.categories:
            left = (
                "arrayExists((co, cn) -> co = sk AND cn = "
                f"{self.bind(category.category, 'String')}, category_owners, category_names)"
            )
            checks.append(left if category.status is CategoryStatus.UNSUBSCRIBED else f"NOT {left}")
        if not rule.categories and not rule.conditions:
            # Only the subscription's own arrays: one lambda over the row, no second pass over the table.
            found = (
                f"arrayExists((s_channel, s_resource, s_provider, s_status) -> {' AND '.join(checks)},"
                " sub_channels, sub_resource_ids, sub_providers, sub_statuses)"
            )
            return found if rule.operator == "exists" else f"NOT {found}"
        checks += [self.condition(condition, "sk") for condition in rule.conditions]
        # One row per subscription (ARRAY JOIN), not a lambda over them: 18.16 reads no column that
        # only a lambda nested in a lambda names (the entries' arrays here).
        found = (
            f"SELECT profile_id FROM profile_snapshots FINAL ARRAY JOIN {_SUBSCRIPTION_ARRAYS}"
            f" WHERE {' AND '.join([*checks, *self.in_scope()])}"
        )
        return f"profile_id {'IN' if rule.operator == 'exists' else 'NOT IN'} ({found})"

    # -- history and goals

    def history(self, rule: MessageHistoryRule) -> str:
        filters = [
            f"event_type = {self.bind(HISTORY_EVENT_TYPES[rule.action], 'String')}",
            "is_bot = 0",
            "is_test = 0",
            *self.period(rule.period),
            *self.in_scope(),
            *self.before(),
        ]
        for column, wanted in (
            ("channel", rule.channel),
            ("resource_id", rule.resource_id),
            ("link_name", rule.link_name),
        ):
            if wanted is not None:
                filters.append(f"{column} = {self.bind(wanted, 'String')}")
        for column, ids in (("campaign_id", rule.campaign_ids), ("template_id", rule.template_ids)):
            if ids:
                filters.append(f"has({self.bind(list(ids), 'Array(String)')}, {column})")
        # No FINAL (it costs more than the rest of a query together): the rows of one event id are
        # copies of one event (a retried or replayed batch), alike in every column filtered on here,
        # so "has one" needs no deduplication, and a count counts distinct event ids.
        events = f"SELECT profile_id FROM message_events WHERE {' AND '.join(filters)}"
        if rule.never:
            return f"profile_id NOT IN ({events})"
        if (rule.at_least or 1) == 1:
            return f"profile_id IN ({events})"
        at_least = self.bind(rule.at_least, "UInt64")
        return f"profile_id IN ({events} GROUP BY profile_id HAVING uniqExact(event_id) >= {at_least})"

    def goal(self, rule: GoalRule) -> str:
        filters = ["profile_id != ''", *self.period(rule.period), *self.in_scope(), *self.before()]
        if rule.goal is not None:
            filters.append(f"goal = {self.bind(rule.goal, 'String')}")
        if rule.pixel_id is not None:
            filters.append(f"pixel_id = {self.bind(rule.pixel_id, 'String')}")
        if rule.referrer is not None:
            filters.append(f"position(lowerUTF8(referrer), {self.bind(rule.referrer.lower(), 'String')}) > 0")
        where = " AND ".join(filters)
        aggregated = (
            f"SELECT profile_id AS profile_id, {_AGGREGATES[rule.aggregate]} AS raw"
            f" FROM goal_events FINAL WHERE {where} GROUP BY profile_id"
        )
        compared = f"measured {_COMPARISONS[rule.operator]} {self.bind(rule.value, 'Float64')}"
        rounded = _ROUNDED.format(aggregated=aggregated)
        holding = f"profile_id IN (SELECT profile_id FROM ({rounded}) WHERE {compared})"
        if not _holds_without_events(rule):
            return holding
        # Profiles without a matching event: a count or sum of 0, an average of nothing.
        return f"({holding} OR profile_id NOT IN (SELECT profile_id FROM goal_events FINAL WHERE {where}))"

    def period(self, period: LastDays | DateRange | None) -> list[str]:
        """Conditions on `at` keeping events at or before now and inside the period."""
        bounds = [_at("<=", self.clock.now, self.bind)]
        if isinstance(period, LastDays):
            bounds.append(_at(">", self.clock.now - timedelta(days=period.days), self.bind))
        elif isinstance(period, DateRange):
            bounds.append(_at(">=", self.clock.midnight(period.date_from), self.bind))
            bounds.append(_at("<", self.clock.midnight(period.date_to + timedelta(days=1)), self.bind))
        return bounds

    # -- conditions

    def condition(self, condition: Condition, owner: str) -> str:
        """A condition on the entries named `condition.field` of `owner` (0: the profile)."""
        positive = NEGATIONS.get(condition.operator)
        operator = positive or condition.operator
        sql = self.positive(
            operator, condition.type, condition.value, owner, self.bind(condition.field, "String")
        )
        return f"NOT ({sql})" if positive is not None else sql

    def positive(
        self, operator: Operator, field_type: FieldType | None, target: JsonValue, owner: str, name: str
    ) -> str:
        held = f"xo = {owner} AND xn = {name}"
        if operator is Op.EXISTS:
            return f"arrayExists((xo, xn) -> {held}, field_owners, field_names)"
        if operator is Op.EMPTY:
            held_value = (
                f"arrayExists((xo, xn, xe) -> {held} AND xe = 0, field_owners, field_names, field_empties)"
            )
            return f"NOT {held_value}"
        if field_type is None:
            raise ValueError("the condition has no field type: check the query with segments.check_query")
        if operator is Op.HAS_ALL:
            tags = (
                f"arrayFilter((xs, xo, xn, xe) -> {held} AND xe = 0,"
                " field_strings, field_owners, field_names, field_empties)"
            )
            return f"hasAll({tags}, {self.bind(_texts(target), 'Array(String)')})"
        if operator is Op.HAS_ANY:
            test = f"has({self.bind(_texts(target), 'Array(String)')}, xs)"
        elif operator in CALENDAR:
            test = self.calendar(operator, field_type, target)
        else:
            test = self.compare(operator, field_type, target)
        return _entry_lambda(f"{held} AND xe = 0 AND ({test})")

    def compare(self, operator: Operator, field_type: FieldType, target: JsonValue) -> str:
        """One held value (the entry's xs, xl, xi, xf) against the operator's value."""
        if operator is Op.IN_CIDR:
            network = ipaddress.IPv4Network(str(target))
            mask, base = int(network.netmask), int(network.network_address)
            return f"bitAnd(xi, {self.bind(mask, 'Int64')}) = {self.bind(base, 'Int64')}"
        if operator in (Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH):
            part = self.bind(str(target).lower(), "String")
            if operator is Op.CONTAINS:
                return f"position(xl, {part}) > 0"
            return f"{'startsWith' if operator is Op.STARTS_WITH else 'endsWith'}(xl, {part})"
        if operator in (Op.DOMAIN_EQUAL, Op.DOMAIN_CONTAINS):
            domain, wanted = "splitByChar('@', xl)[-1]", self.bind(str(target), "String")
            return (
                f"{domain} = {wanted}" if operator is Op.DOMAIN_EQUAL else f"position({domain}, {wanted}) > 0"
            )
        column, type_text, convert = _held_form(field_type)
        if operator is Op.IN:
            listed = [convert(one) for one in _items(target)]
            if type_text == "Int64":
                # As text: 18.16 types an array literal before casting it, and finds no common type
                # for a negative number and one past 2³² (UInt64).
                texts = self.bind([str(one) for one in listed], "Array(String)")
                return f"has(arrayMap(v -> toInt64(v), {texts}), {column})"
            return f"has({self.bind(listed, f'Array({type_text})')}, {column})"
        if operator is Op.BETWEEN:
            low, high = (self.bind(convert(one), type_text) for one in _items(target))
            return f"{column} >= {low} AND {column} <= {high}"
        return f"{column} {_ORDER[operator]} {self.bind(convert(target), type_text)}"

    def calendar(self, operator: Operator, field_type: FieldType, target: JsonValue) -> str:
        """A calendar operator on the entry's local day, with today's dates computed here."""
        today = self.clock.today
        if operator in _DAY_RANGES:
            low, high = _day_range(operator, target, today)
            return self.day_range(field_type, low, high)
        if field_type is FieldType.DATETIME:
            local = f"toDate(toDateTime(intDiv(xi, 1000)), {self.bind(self.clock.zone.key, 'String')})"
            month, day = f"toMonth({local})", f"toDayOfMonth({local})"
        else:
            # OrZero: 18.16 evaluates the lambda on every entry, dates or not (AND does not short-circuit).
            month, day = "toUInt8OrZero(substring(xs, 6, 2))", "toUInt8OrZero(substring(xs, 9, 2))"
        month_day = f"({month} * 100 + {day})"
        match operator:
            case Op.MONTH_IS_CURRENT:
                return f"{month} = {self.bind(today.month, 'UInt8')}"
            case Op.DAY_OF_MONTH_IS_CURRENT:
                return f"{day} = {self.bind(today.day, 'UInt8')}"
            case Op.MONTH_EQUAL:
                return f"{month} = {self.bind(_int(target), 'UInt8')}"
            case Op.DAY_OF_MONTH_EQUAL | Op.DAY_OF_MONTH_GT | Op.DAY_OF_MONTH_LT:
                return f"{day} {_SIGNS[operator]} {self.bind(_int(target), 'UInt8')}"
            case Op.DAY_MONTH_EQUAL | Op.DAY_MONTH_GT | Op.DAY_MONTH_LT:
                wanted_month, wanted_day = (int(part) for part in str(target).split("-"))
                return (
                    f"{month_day} {_SIGNS[operator]} {self.bind(wanted_month * 100 + wanted_day, 'UInt16')}"
                )
        shifted = today + timedelta(days=_int(target))  # anniversary N: the day and month of today + N
        return f"has({self.bind(_anniversaries(shifted), 'Array(UInt16)')}, {month_day})"

    def day_range(self, field_type: FieldType, low: date | None, high: date | None) -> str:
        """The entry's local day is within [low, high] (None: unbounded)."""
        bounds = ["1"]
        if field_type is FieldType.DATETIME:
            if low is not None:
                bounds.append(f"xi >= {self.bind(self.clock.first_ms(low), 'Int64')}")
            if high is not None:
                bounds.append(f"xi < {self.bind(self.clock.first_ms(high + timedelta(days=1)), 'Int64')}")
        else:
            if low is not None:
                bounds.append(f"xi >= {self.bind((low - _EPOCH_DAY).days, 'Int64')}")
            if high is not None:
                bounds.append(f"xi <= {self.bind((high - _EPOCH_DAY).days, 'Int64')}")
        return " AND ".join(bounds)


def _entry_lambda(body: str) -> str:
    """`arrayExists` of `body` over the entries, given only the arrays the body names."""
    used = [(arg, array) for arg, array in _ENTRY_ARRAYS if _ENTRY_NAMES[arg].search(body)]
    args = ", ".join(arg for arg, _ in used)
    arrays = ", ".join(array for _, array in used)
    return f"arrayExists(({args}) -> {body}, {arrays})"


def _combine(condition: str, results: list[str]) -> str:
    joiner = " AND " if condition == "and" else " OR "
    return "(" + joiner.join(f"({result})" for result in results) + ")"


def _at(operator: str, moment: datetime, bind: Callable[[Any, str], str]) -> str:
    """`at` (whole seconds) against an instant, with the instant brought into DateTime's range."""
    seconds = _epoch_ms(moment) // 1000  # floored: for whole-second `at`, the same comparisons hold
    if seconds < 0:
        return "1" if operator in (">", ">=") else "0"
    if seconds > _DATETIME_MAX:
        return "1" if operator in ("<", "<=") else "0"
    return f"at {operator} {bind(_EPOCH + timedelta(seconds=seconds), 'DateTime')}"


def _holds_without_events(rule: GoalRule) -> bool:
    """Whether a profile with no matching goal event satisfies the rule (count and sum are 0)."""
    if rule.aggregate == "avg":
        return rule.operator == "not_equal"
    zero, value = 0.0, rule.value
    return {
        "equal": zero == value,
        "not_equal": zero != value,
        "gt": zero > value,
        "gte": zero >= value,
        "lt": zero < value,
        "lte": zero <= value,
    }[rule.operator]


def _held_form(field_type: FieldType) -> tuple[str, str, Callable[[JsonValue], Any]]:
    """The entry column a type compares by, its ClickHouse type, and the target in that form."""
    if field_type is FieldType.INT:
        return "xi", "Int64", lambda value: int(_number_value(value))
    if field_type is FieldType.FLOAT:
        return "xf", "Float64", lambda value: float(_number_value(value))
    if field_type is FieldType.BOOL:
        return "xi", "Int64", lambda value: int(value is True)
    if field_type is FieldType.DATE:
        return "xi", "Int64", lambda value: (date.fromisoformat(str(value)) - _EPOCH_DAY).days
    if field_type is FieldType.DATETIME:
        return "xi", "Int64", lambda value: _epoch_ms(parse_datetime(value, "value"))
    if field_type is FieldType.EMAIL:
        return "xl", "String", str  # check_query lower-cases the targets
    return "xs", "String", str


def _number_value(value: JsonValue) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, not {value!r}: check the query with segments.check_query")
    return value


def _day_range(operator: Operator, target: JsonValue, today: date) -> tuple[date | None, date | None]:
    """The local days (inclusive; None: unbounded) a relative calendar operator accepts."""
    if operator is Op.TODAY:
        return today, today
    if operator is Op.RELATIVE_BETWEEN:
        low, high = (_int(one) for one in _items(target))
        return today + timedelta(days=low), today + timedelta(days=high)
    number = _int(target)
    shifted = today + timedelta(days=number)
    ranges: dict[Operator, tuple[date | None, date | None]] = {
        Op.RELATIVE_EQUAL: (shifted, shifted),
        Op.RELATIVE_BEFORE: (None, shifted - timedelta(days=1)),
        Op.RELATIVE_AFTER: (shifted + timedelta(days=1), None),
        Op.IN_LAST_DAYS: (today - timedelta(days=number), today),
        Op.IN_NEXT_DAYS: (today, shifted),
    }
    return ranges[operator]


def _anniversaries(day: date) -> list[int]:
    """The month × 100 + day values whose anniversary falls on `day` (29 February on a common 28th)."""
    found = [day.month * 100 + day.day]
    if (day.month, day.day) == (2, 28) and not _is_leap(day.year):
        found.append(229)
    return found


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _items(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else [value]


def _texts(value: JsonValue) -> list[str]:
    return [str(item) for item in _items(value)]


def _int(value: JsonValue) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, not {value!r}: check the query with segments.check_query")
    return value
