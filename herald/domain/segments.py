"""Segment queries: the model of a segment's conditions, and its validation (`check_query`).

A query is a list of database sources (guide §2.7). Each source names a
profile database, combines its rules and groups with `and` or `or`, and
limits its result to a count or a percent range. A group combines rules only:
the guide allows two levels of nesting (source → group → rule). Deeper logic
goes through a segment rule (`in` / `not_in` another segment), one level deep.

Rule kinds (`kind` is the discriminator):
- `field`: a profile field, standard, custom or system (`profile_id`,
  `status`), compared with an operator valid for the field's type
  (`OPERATORS_BY_TYPE`); the value's shape depends on the operator (below);
- `subscription`: the profile has (or has no) subscription on a resource's
  channel whose status, contact, priority, registration date, custom fields
  and categories satisfy every condition given;
- `message_history`: the profile's message actions (sent, delivered, opened,
  read, clicked, unsubscribed, bounced, complained), at least N times or
  never, optionally by channel, resource, campaigns or templates (a match in
  any counts), link name (clicks), and period;
- `goal`: the count, sum or average of the profile's goal values, compared
  with a number, optionally by goal, pixel, referrer and period;
- `segment`: membership of another segment;
- `external`: a profile field's value is (or is not) in a set that comes from
  outside: a POST URL's answer (JSON path, XML path or lines), an uploaded
  CSV's column, or a pasted list.

Field operators and their values (stored form after `check_query`):

| operators | value |
|---|---|
| exists, not_exists, empty, not_empty, today, month_is_current, day_of_month_is_current | none |
| equal, not_equal, gt, gte, lt, lte | one value in the field's stored form |
| in, not_in | a list of such values (1 to `MAX_LIST_VALUES`) |
| between | `[low, high]`, inclusive, low ≤ high |
| contains, not_contains, starts_with, ends_with, domain_contains | text |
| domain_equal, domain_not_equal | a mail domain (`mail.ru`) |
| in_cidr, not_in_cidr | an IPv4 network (`10.0.0.0/8`; a bare address is a /32) |
| has_any, has_all, has_none, has_not_all | a list of tags |
| relative_equal, relative_before, relative_after | days from today: `-7` a week ago, `14` in two weeks |
| relative_between | `[from, to]` days from today, inclusive: `[-45, -7]` |
| in_last_days, in_next_days | N ≥ 0: today − N … today, today … today + N |
| anniversary | N ≥ 0: the date's day and month fall N days from today (birthdays) |
| month_equal, month_not_equal | 1–12 |
| day_of_month_equal, day_of_month_not_equal, day_of_month_gt, day_of_month_lt | 1–31 |
| day_month_equal, day_month_not_equal, day_month_gt, day_month_lt | `MM-DD` |

The guide's names map onto these: `greater_than`/`less_than` → gt/lt,
`in_range` → between, `relative` → relative_between, "равно дате [сегодня +
x дней]" → relative_equal, `one_of`/`all_of`/`none_of`/`not_all_of` →
has_any/has_all/has_none/has_not_all, `day_month_is_current` → anniversary 0,
IP `equal`/`not_equal` with a network → in_cidr/not_in_cidr, boolean
`true`/`false` → equal true/false, subscription statuses → `status_in`.

The stored JSON is this model's own (`model_dump(mode="json")`, read back
with `parse_query`). The guide shows one fragment of its "Raw JSON" editor
(§5.1): a group `{type: group, condition, child: [...]}` and a rule `{name,
type, compo, operator, value: {compo: v}}`. This model keeps its words
(`condition`, `operator`, `value`, and `type` = the field's type on field
rules) but makes the two levels structural (`rules` and `groups` instead of a
mixed `child` list) and folds `compo` into the operator (`domain_equal`). No
adapter reads the guide's shape: nothing stores it, and its only example
rule (domain group) needs the domain-group table that lives in projections.

`check_query` turns a parsed query into its stored form: field names
canonical, each condition's field `type` filled in (so evaluators need no
database), values coerced (`fields.coerce_value`), lists de-duplicated. It
refuses, with the rule's dotted path (`query.sources.0.groups.1.rules.2.value`):
an unknown database (404), resource or segment (404); an unknown field, an
operator the field's type lacks, a value of the wrong type or shape, an empty
group, a percent range out of order, more than `MAX_RULES` rules or
`MAX_SOURCES` sources, a segment rule naming a segment that has segment rules
itself (one level only), the segment itself, or a segment that refers back (a
cycle). `parse_query` refuses unknown keys, unknown operators and kinds, and
a group nested in a group, with the same paths.

Decisions where the guide is silent:
- Sources combine as a union; a source with no rules and no groups selects
  every profile of its database (limits still apply); a group needs a rule.
- Conditions on a subscription's own fields and categories need a named
  resource (fields differ per resource); history rules do not check that the
  campaigns, templates or resources they name still exist, since history
  outlives them.
- A list source's values are coerced like an `in` list and compared the same
  way; POST URL and CSV sources are fetched outside the domain, and a rule is
  known to evaluators by `ExternalRule.key`, a hash of its field and source.
- Goal values and the value compared are rounded to 3 decimals (the guide's
  precision).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic import ValidationError as PydanticValidationError

from herald.domain.contacts import email_key, normalize_domain
from herald.domain.databases import DatabaseState
from herald.domain.errors import NotFound, ValidationFailed
from herald.domain.fields import FieldDefinition, FieldType, coerce_value, parse_datetime
from herald.domain.resources import PHONE_CHANNELS, ResourceState
from herald.domain.secrets import SealedSecret
from herald.domain.statuses import Status
from herald.domain.subscriptions import CategoryStatus

MAX_SOURCES = 20
MAX_RULES = 200  # across the whole query, groups included
MAX_LIST_VALUES = 10_000  # an `in` list or a pasted list; larger sets belong in a CSV
MAX_IDS = 1_000  # campaigns or templates one history rule names
MAX_DAYS = 36_600  # a hundred years: the widest relative date or history window
GOAL_DECIMALS = 3

_NO_RESOURCES: Mapping[str, ResourceState] = MappingProxyType({})


class Operator(StrEnum):
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    EMPTY = "empty"
    NOT_EMPTY = "not_empty"
    EQUAL = "equal"
    NOT_EQUAL = "not_equal"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    DOMAIN_EQUAL = "domain_equal"
    DOMAIN_NOT_EQUAL = "domain_not_equal"
    DOMAIN_CONTAINS = "domain_contains"
    IN_CIDR = "in_cidr"
    NOT_IN_CIDR = "not_in_cidr"
    HAS_ANY = "has_any"
    HAS_ALL = "has_all"
    HAS_NONE = "has_none"
    HAS_NOT_ALL = "has_not_all"
    TODAY = "today"
    RELATIVE_EQUAL = "relative_equal"
    RELATIVE_BEFORE = "relative_before"
    RELATIVE_AFTER = "relative_after"
    RELATIVE_BETWEEN = "relative_between"
    IN_LAST_DAYS = "in_last_days"
    IN_NEXT_DAYS = "in_next_days"
    ANNIVERSARY = "anniversary"
    MONTH_EQUAL = "month_equal"
    MONTH_NOT_EQUAL = "month_not_equal"
    MONTH_IS_CURRENT = "month_is_current"
    DAY_OF_MONTH_EQUAL = "day_of_month_equal"
    DAY_OF_MONTH_NOT_EQUAL = "day_of_month_not_equal"
    DAY_OF_MONTH_GT = "day_of_month_gt"
    DAY_OF_MONTH_LT = "day_of_month_lt"
    DAY_OF_MONTH_IS_CURRENT = "day_of_month_is_current"
    DAY_MONTH_EQUAL = "day_month_equal"
    DAY_MONTH_NOT_EQUAL = "day_month_not_equal"
    DAY_MONTH_GT = "day_month_gt"
    DAY_MONTH_LT = "day_month_lt"


Op = Operator  # short, for the tables below

NEGATIONS: Mapping[Operator, Operator] = {
    Op.NOT_EXISTS: Op.EXISTS,
    Op.NOT_EMPTY: Op.EMPTY,
    Op.NOT_EQUAL: Op.EQUAL,
    Op.NOT_IN: Op.IN,
    Op.NOT_CONTAINS: Op.CONTAINS,
    Op.DOMAIN_NOT_EQUAL: Op.DOMAIN_EQUAL,
    Op.NOT_IN_CIDR: Op.IN_CIDR,
    Op.HAS_NONE: Op.HAS_ANY,
    Op.HAS_NOT_ALL: Op.HAS_ALL,
    Op.MONTH_NOT_EQUAL: Op.MONTH_EQUAL,
    Op.DAY_OF_MONTH_NOT_EQUAL: Op.DAY_OF_MONTH_EQUAL,
    Op.DAY_MONTH_NOT_EQUAL: Op.DAY_MONTH_EQUAL,
}
"""Each negative operator and the positive one it is the exact complement of (missing values included)."""

NO_VALUE = frozenset(
    {
        Op.EXISTS,
        Op.NOT_EXISTS,
        Op.EMPTY,
        Op.NOT_EMPTY,
        Op.TODAY,
        Op.MONTH_IS_CURRENT,
        Op.DAY_OF_MONTH_IS_CURRENT,
    }
)
SCALAR = frozenset({Op.EQUAL, Op.NOT_EQUAL, Op.GT, Op.GTE, Op.LT, Op.LTE})
LISTED = frozenset({Op.IN, Op.NOT_IN})
TEXT = frozenset({Op.CONTAINS, Op.NOT_CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH, Op.DOMAIN_CONTAINS})
DOMAIN = frozenset({Op.DOMAIN_EQUAL, Op.DOMAIN_NOT_EQUAL})
CIDR = frozenset({Op.IN_CIDR, Op.NOT_IN_CIDR})
TAG_SETS = frozenset({Op.HAS_ANY, Op.HAS_ALL, Op.HAS_NONE, Op.HAS_NOT_ALL})
DAY_OFFSET = frozenset({Op.RELATIVE_EQUAL, Op.RELATIVE_BEFORE, Op.RELATIVE_AFTER})
DAY_COUNT = frozenset({Op.IN_LAST_DAYS, Op.IN_NEXT_DAYS, Op.ANNIVERSARY})
MONTH = frozenset({Op.MONTH_EQUAL, Op.MONTH_NOT_EQUAL})
DAY = frozenset({Op.DAY_OF_MONTH_EQUAL, Op.DAY_OF_MONTH_NOT_EQUAL, Op.DAY_OF_MONTH_GT, Op.DAY_OF_MONTH_LT})
DAY_MONTH = frozenset({Op.DAY_MONTH_EQUAL, Op.DAY_MONTH_NOT_EQUAL, Op.DAY_MONTH_GT, Op.DAY_MONTH_LT})
CALENDAR = (
    DAY_OFFSET
    | DAY_COUNT
    | MONTH
    | DAY
    | DAY_MONTH
    | {Op.TODAY, Op.RELATIVE_BETWEEN, Op.MONTH_IS_CURRENT, Op.DAY_OF_MONTH_IS_CURRENT}
)
"""Operators on a date's local calendar day (a datetime's day in the evaluation's time zone)."""

TIME_DEPENDENT = (
    DAY_OFFSET | DAY_COUNT | {Op.TODAY, Op.RELATIVE_BETWEEN, Op.MONTH_IS_CURRENT, Op.DAY_OF_MONTH_IS_CURRENT}
)
"""Operators whose result moves with today's date, with no change to the profile."""

_COMMON = frozenset({Op.EXISTS, Op.NOT_EXISTS, Op.EMPTY, Op.NOT_EMPTY})
_EQUALITY = frozenset({Op.EQUAL, Op.NOT_EQUAL, Op.IN, Op.NOT_IN})
_TEXTUAL = frozenset({Op.CONTAINS, Op.NOT_CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH})
_ORDER = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN})
_STRING = _COMMON | _EQUALITY | _TEXTUAL
_DATES = _COMMON | _EQUALITY | _ORDER | CALENDAR

OPERATORS_BY_TYPE: Mapping[FieldType, frozenset[Operator]] = {
    FieldType.STRING: _STRING,
    FieldType.TIMEZONE: _STRING,
    FieldType.EMAIL: _STRING | DOMAIN | {Op.DOMAIN_CONTAINS},
    FieldType.PHONES: _STRING,
    FieldType.INT: _COMMON | _EQUALITY | _ORDER,
    FieldType.FLOAT: _COMMON | _EQUALITY | _ORDER,
    FieldType.DATE: _DATES,
    FieldType.DATETIME: _DATES,
    FieldType.BOOL: _COMMON | {Op.EQUAL, Op.NOT_EQUAL},
    FieldType.LIST: _COMMON | _EQUALITY,
    FieldType.IP: _COMMON | _EQUALITY | CIDR,
    FieldType.TAGS: _COMMON | TAG_SETS,
    FieldType.JSON: _COMMON,
}
"""The operators each field type accepts."""

SYSTEM_FIELDS: Mapping[str, FieldDefinition] = {
    "profile_id": FieldDefinition(name="profile_id", title="Profile id", type=FieldType.STRING),
    "status": FieldDefinition(
        name="status", title="Status", type=FieldType.LIST, options=tuple(s.value for s in Status)
    ),
}
"""Profile properties a field rule can name besides the database's fields (the guide's "Системные поля")."""


T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- rules -------------------------------------------------------------------------------------


class Condition(_Model):
    """One comparison of a value: a profile field (as `FieldRule`) or a subscription's field."""

    field: str
    operator: Operator
    value: JsonValue = None
    type: FieldType | None = Field(None, description="the field's type; check_query fills it in")


C = TypeVar("C", bound=Condition)


class FieldRule(Condition):
    kind: Literal["field"] = "field"


class CategoryCondition(_Model):
    """The subscription is subscribed (or unsubscribed) to one of its resource's categories."""

    category: str
    status: CategoryStatus = CategoryStatus.SUBSCRIBED


class SubscriptionRule(_Model):
    """The profile has (`exists`) or has no (`not_exists`) subscription satisfying every condition."""

    kind: Literal["subscription"] = "subscription"
    operator: Literal["exists", "not_exists"] = "exists"
    resource_id: str | None = Field(None, description="None: any resource")
    channel: str
    provider: str | None = Field(None, description="push only; None: any provider")
    status_in: tuple[Status, ...] = ()
    status_not_in: tuple[Status, ...] = ()
    conditions: tuple[Condition, ...] = Field(
        (), description="on `contact`, `priority`, `registered_at` or the resource's subscription fields"
    )
    categories: tuple[CategoryCondition, ...] = ()


class LastDays(_Model):
    """The last `days` × 24 hours before the evaluation instant."""

    kind: Literal["last_days"] = "last_days"
    days: int = Field(ge=1, le=MAX_DAYS)


class DateRange(_Model):
    """Calendar days from `date_from` to `date_to`, inclusive, in the evaluation's time zone."""

    kind: Literal["between"] = "between"
    date_from: date
    date_to: date


Period = Annotated[LastDays | DateRange, Field(discriminator="kind")]


class MessageAction(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    READ = "read"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class MessageHistoryRule(_Model):
    """The profile did `action` on its messages at least `at_least` times, or `never`."""

    kind: Literal["message_history"] = "message_history"
    action: MessageAction
    channel: str | None = None
    resource_id: str | None = None
    campaign_ids: tuple[str, ...] = Field((), description="a match in any counts; empty: any campaign")
    template_ids: tuple[str, ...] = Field((), description="a match in any counts; empty: any template")
    link_name: str | None = Field(None, description="clicked only: the link's name")
    at_least: int | None = Field(None, ge=1)
    never: bool = False
    period: Period | None = Field(None, description="None: all time")


Comparison = Literal["equal", "not_equal", "gt", "gte", "lt", "lte"]


class GoalRule(_Model):
    """The count, sum or average of the profile's goal values compares with `value`."""

    kind: Literal["goal"] = "goal"
    goal: str | None = Field(None, description="the goal's name; None: any goal")
    pixel_id: str | None = None
    referrer: str | None = Field(None, description="a part of the referrer, any case")
    aggregate: Literal["count", "sum", "avg"] = "count"
    operator: Comparison
    value: float
    period: Period | None = Field(None, description="None: all time")


class SegmentRule(_Model):
    kind: Literal["segment"] = "segment"
    segment_id: str
    operator: Literal["in", "not_in"] = "in"


class PostUrlSource(_Model):
    """A URL the platform POSTs to; `path` picks the values (JSON `segment.emails`, XML `names/name`).

    A URL with credentials in it (a login, a `token=` parameter) is stored with them masked in `url`
    and whole in `sealed_url` (`domain/secrets.py`), which only the fetch opens."""

    kind: Literal["post_url"] = "post_url"
    url: str
    path: str = Field("", description="empty: the whole answer (a JSON array, or one value per line)")
    sealed_url: SealedSecret | None = Field(None, description="set by Herald: the URL with its credentials")


class CsvSource(_Model):
    """A column of an uploaded CSV file, numbered from 1."""

    kind: Literal["csv"] = "csv"
    file_id: str
    column: int = Field(ge=1)
    header: bool = True


class ListSource(_Model):
    """Values pasted into the rule, one per line."""

    kind: Literal["list"] = "list"
    values: tuple[str | int | float, ...]


ExternalSource = Annotated[PostUrlSource | CsvSource | ListSource, Field(discriminator="kind")]


class ExternalRule(_Model):
    """A profile field's value is (or is not) in a set of values from outside."""

    kind: Literal["external"] = "external"
    field: str
    operator: Literal["in", "not_in"] = "in"
    source: ExternalSource
    type: FieldType | None = Field(None, description="the field's type; check_query fills it in")

    @property
    def key(self) -> str:
        """What evaluators know this rule's fetched set by: a hash of its field and source."""
        identity = self.model_dump(
            mode="json", include={"field", "source"}, exclude={"source": {"sealed_url"}}
        )
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


Rule = Annotated[
    FieldRule | SubscriptionRule | MessageHistoryRule | GoalRule | SegmentRule | ExternalRule,
    Field(discriminator="kind"),
]


# --- the query ---------------------------------------------------------------------------------


class Group(_Model):
    """Rules combined with `and` or `or`; a group holds rules only (the guide's second level)."""

    condition: Literal["and", "or"] = "and"
    rules: tuple[Rule, ...] = ()


class CountLimit(_Model):
    """At most `count` profiles, the first by profile id; 0: no limit."""

    kind: Literal["count"] = "count"
    count: int = Field(0, ge=0)


class PercentLimit(_Model):
    """The profiles whose percent bucket (1–100, a hash of the profile id) is in `from_pct`…`to_pct`."""

    kind: Literal["percent"] = "percent"
    from_pct: int = Field(1, ge=1, le=100)
    to_pct: int = Field(100, ge=1, le=100)


Limit = Annotated[CountLimit | PercentLimit, Field(discriminator="kind")]


class Source(_Model):
    database_id: str
    condition: Literal["and", "or"] = "and"
    rules: tuple[Rule, ...] = ()
    groups: tuple[Group, ...] = ()
    limit: Limit = CountLimit()


class SegmentQuery(_Model):
    """A segment's query: the union of its sources."""

    sources: tuple[Source, ...] = ()

    def segment_ids(self) -> frozenset[str]:
        """The segments this query's segment rules name."""
        return frozenset(rule.segment_id for _, rule in iter_rules(self) if isinstance(rule, SegmentRule))


AnyRule = FieldRule | SubscriptionRule | MessageHistoryRule | GoalRule | SegmentRule | ExternalRule


def iter_rules(query: SegmentQuery | Source, path: str = "") -> Iterator[tuple[str, AnyRule]]:
    """Every rule with its dotted path under `path`: a source's own rules first, then its groups'."""
    if isinstance(query, SegmentQuery):
        for index, source in enumerate(query.sources):
            yield from iter_rules(source, _join(path, f"sources.{index}"))
        return
    for index, rule in enumerate(query.rules):
        yield _join(path, f"rules.{index}"), rule
    for group_index, group in enumerate(query.groups):
        for index, rule in enumerate(group.rules):
            yield _join(path, f"groups.{group_index}.rules.{index}"), rule


def with_post_urls(query: SegmentQuery, change: Callable[[PostUrlSource], PostUrlSource]) -> SegmentQuery:
    """The query with every `post_url` source replaced by `change(source)`."""

    def rule(r: AnyRule) -> AnyRule:
        if isinstance(r, ExternalRule) and isinstance(r.source, PostUrlSource):
            return r.model_copy(update={"source": change(r.source)})
        return r

    def source(s: Source) -> Source:
        groups = tuple(g.model_copy(update={"rules": tuple(map(rule, g.rules))}) for g in s.groups)
        return s.model_copy(update={"rules": tuple(map(rule, s.rules)), "groups": groups})

    return query.model_copy(update={"sources": tuple(map(source, query.sources))})


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else prefix or path


# --- parsing -----------------------------------------------------------------------------------

_NESTING = "groups nest one level: a source holds rules and groups, a group holds rules only"
_UNION_KEYS = frozenset({"source", "limit", "period"})  # attributes holding a tagged union
_TAGS = frozenset(
    {"field", "subscription", "message_history", "goal", "segment", "external"}
    | {"post_url", "csv", "list", "count", "percent", "last_days", "between"}
)


def parse_query(data: object, path: str = "query") -> SegmentQuery:
    """A query from its JSON form; refuses unknown keys, kinds and operators with the dotted path."""
    if isinstance(data, SegmentQuery):
        return data
    try:
        return SegmentQuery.model_validate(data)
    except PydanticValidationError as error:
        problem = error.errors(include_url=False)[0]
        raise ValidationFailed(_reason(problem), _join(path, _loc_path(problem["loc"]))) from None


def _loc_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location without the tags it inserts after a tagged union (`rules.0.field.value`)."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        before = loc[index - 1] if index else None
        after_union = (isinstance(before, int) and index >= 2 and loc[index - 2] == "rules") or (
            before in _UNION_KEYS
        )
        if after_union and part in _TAGS:
            continue
        parts.append(str(part))
    return ".".join(parts)


def _reason(problem: Mapping[str, Any]) -> str:
    kind, given = problem["type"], problem.get("input")
    loc = problem["loc"]
    nested = isinstance(given, Mapping) and ("rules" in given or given.get("kind") == "group")
    if kind in ("union_tag_invalid", "union_tag_not_found") and nested:
        return _NESTING
    if kind == "extra_forbidden":
        return f"{loc[-1]!r} is not a known key here"
    if kind == "enum" and loc and loc[-1] == "operator":
        return f"unknown operator {given!r}"
    if kind == "missing":
        return "required"
    return str(problem["msg"])


# --- checking ----------------------------------------------------------------------------------


def check_query(
    query: SegmentQuery | Mapping[str, Any],
    databases: Mapping[str, DatabaseState],
    segment_queries: Callable[[str], SegmentQuery | None],
    path: str = "query",
    *,
    resources: Mapping[str, ResourceState] = _NO_RESOURCES,
    segment_id: str | None = None,
    referenced_by: Collection[str] = (),
) -> SegmentQuery:
    """`query` in stored form (canonical fields, types filled in, values coerced); refuses a bad one.

    `segment_queries` returns the query of the segment an id names (None: no such segment);
    `resources` holds the resources subscription rules may name; `segment_id` is the segment being
    saved and `referenced_by` the segments whose rules name it (for the one-level and cycle rules).
    """
    query = parse_query(query, path)
    if not query.sources:
        raise ValidationFailed("a segment query needs at least one database source", _join(path, "sources"))
    if len(query.sources) > MAX_SOURCES:
        raise ValidationFailed(
            f"a segment query has at most {MAX_SOURCES} sources", _join(path, f"sources.{MAX_SOURCES}")
        )
    _check_size_and_nesting(query, path, segment_queries, segment_id, referenced_by)
    context = _Checking(databases, resources)
    sources = tuple(
        context.source(source, _join(path, f"sources.{index}")) for index, source in enumerate(query.sources)
    )
    return query.model_copy(update={"sources": sources})


def _check_size_and_nesting(
    query: SegmentQuery,
    path: str,
    segment_queries: Callable[[str], SegmentQuery | None],
    own_id: str | None,
    referenced_by: Collection[str],
) -> None:
    for count, (rule_path, rule) in enumerate(iter_rules(query, path), start=1):
        if count > MAX_RULES:
            raise ValidationFailed(f"a segment query has at most {MAX_RULES} rules", rule_path)
        if isinstance(rule, SegmentRule):
            _check_segment_rule(rule, rule_path, segment_queries, own_id, referenced_by)


def _check_segment_rule(
    rule: SegmentRule,
    path: str,
    segment_queries: Callable[[str], SegmentQuery | None],
    own_id: str | None,
    referenced_by: Collection[str],
) -> None:
    at = f"{path}.segment_id"
    if own_id is not None and rule.segment_id == own_id:
        raise ValidationFailed("a segment cannot contain itself (a cycle)", at)
    if referenced_by:
        users = ", ".join(sorted(referenced_by))
        raise ValidationFailed(
            f"segments {users} use this segment, so it cannot have segment rules (one level only)", at
        )
    nested = segment_queries(rule.segment_id)
    if nested is None:
        raise NotFound(f"there is no segment {rule.segment_id!r}", at)
    inner = nested.segment_ids()
    if own_id is not None and own_id in inner:
        raise ValidationFailed(f"segment {rule.segment_id!r} refers back to this segment (a cycle)", at)
    if inner:
        raise ValidationFailed(
            f"segment {rule.segment_id!r} has segment rules itself; segments nest one level only", at
        )


class _Checking:
    """check_query's lookups, so the per-rule checks take only the rule, its database and its path."""

    def __init__(self, databases: Mapping[str, DatabaseState], resources: Mapping[str, ResourceState]):
        self.databases = databases
        self.resources = resources

    def source(self, source: Source, path: str) -> Source:
        database = self.databases.get(source.database_id)
        if database is None or not database.exists:
            raise NotFound(f"there is no database {source.database_id!r}", f"{path}.database_id")
        limit = source.limit
        if isinstance(limit, PercentLimit) and limit.from_pct > limit.to_pct:
            raise ValidationFailed("the percent range's start must not be after its end", f"{path}.limit")
        rules = tuple(self.rule(rule, database, f"{path}.rules.{i}") for i, rule in enumerate(source.rules))
        groups = tuple(
            self.group(group, database, f"{path}.groups.{i}") for i, group in enumerate(source.groups)
        )
        return source.model_copy(update={"rules": rules, "groups": groups})

    def group(self, group: Group, database: DatabaseState, path: str) -> Group:
        if not group.rules:
            raise ValidationFailed("a group needs at least one rule", f"{path}.rules")
        rules = tuple(self.rule(rule, database, f"{path}.rules.{i}") for i, rule in enumerate(group.rules))
        return group.model_copy(update={"rules": rules})

    def rule(self, rule: AnyRule, database: DatabaseState, path: str) -> AnyRule:
        match rule:
            case FieldRule():
                return check_condition(rule, _profile_field(database, rule.field, f"{path}.field"), path)
            case SubscriptionRule():
                return self.subscription(rule, database, path)
            case MessageHistoryRule():
                return _check_history(rule, path)
            case GoalRule():
                return _check_goal(rule, path)
            case ExternalRule():
                return _check_external(rule, _profile_field(database, rule.field, f"{path}.field"), path)
        return rule  # a segment rule, checked with the query's nesting

    def subscription(self, rule: SubscriptionRule, database: DatabaseState, path: str) -> SubscriptionRule:
        resource = None
        if rule.resource_id is not None:
            resource = self.resources.get(rule.resource_id)
            if resource is None or not resource.exists:
                raise NotFound(f"there is no resource {rule.resource_id!r}", f"{path}.resource_id")
            if not resource.accepts_database(database.database_id):
                raise ValidationFailed(
                    f"resource {rule.resource_id!r} does not take profiles of database "
                    f"{database.database_id!r}",
                    f"{path}.resource_id",
                )
        channel = _text(rule.channel, f"{path}.channel")
        if rule.provider is not None and channel != "push":
            raise ValidationFailed("only push subscriptions have a provider", f"{path}.provider")
        if set(rule.status_in) & set(rule.status_not_in):
            raise ValidationFailed("a status cannot be both in and not in", f"{path}.status_not_in")
        conditions = tuple(
            check_condition(
                condition,
                _subscription_field(channel, condition.field, resource, f"{path}.conditions.{i}.field"),
                f"{path}.conditions.{i}",
            )
            for i, condition in enumerate(rule.conditions)
        )
        for i, category in enumerate(rule.categories):
            at = f"{path}.categories.{i}.category"
            if resource is None:
                raise ValidationFailed("a category condition needs a resource", at)
            if resource.category(category.category) is None:
                raise ValidationFailed(
                    f"resource {rule.resource_id!r} has no category {category.category!r}", at
                )
        return rule.model_copy(update={"channel": channel, "conditions": conditions})


def _profile_field(database: DatabaseState, name: str, path: str) -> FieldDefinition:
    definition = SYSTEM_FIELDS.get(name) or database.field(name)
    if definition is None:
        raise ValidationFailed(f"database {database.database_id!r} has no field {name!r}", path)
    return definition


def _contact_type(channel: str) -> FieldType:
    """How a subscription's contact compares: an email, a phone, or an opaque token."""
    if channel == "email":
        return FieldType.EMAIL
    return FieldType.PHONES if channel in PHONE_CHANNELS else FieldType.STRING


def _subscription_field(
    channel: str, name: str, resource: ResourceState | None, path: str
) -> FieldDefinition:
    builtin = {
        "contact": _contact_type(channel),
        "priority": FieldType.INT,
        "registered_at": FieldType.DATETIME,
    }
    if name in builtin:
        return FieldDefinition(name=name, type=builtin[name])
    if resource is None:
        raise ValidationFailed("a condition on a subscription field needs a resource", path)
    definition = resource.subscription_fields(channel).get(name)
    if definition is None:
        raise ValidationFailed(f"{channel} subscriptions of this resource have no field {name!r}", path)
    return definition


def _check_history(rule: MessageHistoryRule, path: str) -> MessageHistoryRule:
    if rule.never and rule.at_least is not None:
        raise ValidationFailed("say at_least or never, not both", f"{path}.never")
    if not rule.never and rule.at_least is None:
        raise ValidationFailed("say how often: at_least N times, or never", f"{path}.at_least")
    if rule.link_name is not None and rule.action is not MessageAction.CLICKED:
        raise ValidationFailed("only a click rule names a link", f"{path}.link_name")
    _check_period(rule.period, f"{path}.period")
    return rule.model_copy(
        update={
            "campaign_ids": _ids(rule.campaign_ids, f"{path}.campaign_ids"),
            "template_ids": _ids(rule.template_ids, f"{path}.template_ids"),
            "channel": _optional_text(rule.channel, f"{path}.channel"),
            "resource_id": _optional_text(rule.resource_id, f"{path}.resource_id"),
            "link_name": _optional_text(rule.link_name, f"{path}.link_name"),
        }
    )


def _check_goal(rule: GoalRule, path: str) -> GoalRule:
    if not math.isfinite(rule.value):
        raise ValidationFailed("the value must be a finite number", f"{path}.value")
    _check_period(rule.period, f"{path}.period")
    return rule.model_copy(
        update={
            "value": round(rule.value, GOAL_DECIMALS),
            "goal": _optional_text(rule.goal, f"{path}.goal"),
            "pixel_id": _optional_text(rule.pixel_id, f"{path}.pixel_id"),
            "referrer": _optional_text(rule.referrer, f"{path}.referrer"),
        }
    )


def _check_period(period: LastDays | DateRange | None, path: str) -> None:
    if isinstance(period, DateRange) and period.date_from > period.date_to:
        raise ValidationFailed("the period's start must not be after its end", f"{path}.date_to")


def _check_external(rule: ExternalRule, definition: FieldDefinition, path: str) -> ExternalRule:
    if Op.IN not in OPERATORS_BY_TYPE[definition.type]:
        raise ValidationFailed(f"{definition.type} fields cannot be matched against a list", f"{path}.field")
    _check_declared_type(rule.type, definition, path)
    source = rule.source
    at = f"{path}.source"
    match source:
        case PostUrlSource():
            parts = urlsplit(source.url.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValidationFailed("the URL must be an http or https address", f"{at}.url")
            source = source.model_copy(update={"url": source.url.strip(), "path": source.path.strip()})
        case CsvSource():
            source = source.model_copy(update={"file_id": _text(source.file_id, f"{at}.file_id")})
        case ListSource():
            values = _listed(definition, list(source.values), f"{at}.values")
            source = source.model_copy(update={"values": tuple(values)})
    return rule.model_copy(update={"field": definition.name, "type": definition.type, "source": source})


# --- conditions --------------------------------------------------------------------------------


def check_condition(condition: C, definition: FieldDefinition, path: str) -> C:
    """`condition` on a field of `definition`, with the field's name and type and its value in stored form."""
    _check_declared_type(condition.type, definition, path)
    allowed = OPERATORS_BY_TYPE[definition.type]
    if condition.operator not in allowed:
        names = ", ".join(sorted(allowed))
        raise ValidationFailed(
            f"{condition.operator} does not apply to {definition.type} fields; use one of {names}",
            f"{path}.operator",
        )
    value = _value(condition.operator, definition, condition.value, f"{path}.value")
    return condition.model_copy(update={"field": definition.name, "type": definition.type, "value": value})


def _check_declared_type(declared: FieldType | None, definition: FieldDefinition, path: str) -> None:
    if declared is not None and declared is not definition.type:
        raise ValidationFailed(
            f"{definition.label} is a {definition.type} field, not {declared}", f"{path}.type"
        )


def _value(operator: Operator, definition: FieldDefinition, value: JsonValue, path: str) -> JsonValue:
    if operator in NO_VALUE:
        if value is not None:
            raise ValidationFailed(f"{operator} takes no value", path)
        return None
    if operator in SCALAR:
        return list_item(definition, value, path)
    if operator in LISTED:
        return _listed(definition, value, path)
    if operator is Op.BETWEEN:
        low, high = _pair(value, path, lambda item, at: list_item(definition, item, at))
        if comparable(definition.type, low) > comparable(definition.type, high):
            raise ValidationFailed("the range's start must not be after its end", path)
        return [low, high]
    return _special_value(operator, value, path)


def _special_value(operator: Operator, value: JsonValue, path: str) -> JsonValue:
    if operator in TEXT:
        text = _text(value, path)
        return text.lower() if operator is Op.DOMAIN_CONTAINS else text
    if operator in DOMAIN:
        return normalize_domain(_text(value, path), path)
    if operator in CIDR:
        return _network(value, path)
    if operator in TAG_SETS:
        tags = coerce_value(FieldDefinition(name="tags", type=FieldType.TAGS), value, path)
        if tags is None:
            raise ValidationFailed("give at least one tag", path)
        return tags
    if operator in DAY_OFFSET:
        return _whole(value, -MAX_DAYS, MAX_DAYS, path)
    if operator is Op.RELATIVE_BETWEEN:
        low, high = _pair(value, path, lambda item, at: _whole(item, -MAX_DAYS, MAX_DAYS, at))
        if low > high:
            raise ValidationFailed("the range's start must not be after its end", path)
        return [low, high]
    if operator in DAY_COUNT:
        return _whole(value, 0, 366 if operator is Op.ANNIVERSARY else MAX_DAYS, path)
    if operator in MONTH:
        return _whole(value, 1, 12, path)
    if operator in DAY:
        return _whole(value, 1, 31, path)
    return _day_month(value, path)


def list_item(definition: FieldDefinition, value: JsonValue, path: str) -> JsonValue:
    """One value of a list rule (`in`, a pasted or fetched list) in the form evaluators compare."""
    if isinstance(value, list | dict):
        raise ValidationFailed("expected one value, not a list or an object", path)
    stored = coerce_value(definition, value, path)
    if stored is None:
        raise ValidationFailed("a value is required", path)
    if definition.type is FieldType.PHONES:
        assert isinstance(stored, list)
        if len(stored) != 1:
            raise ValidationFailed("expected one phone", path)
        return stored[0]
    if definition.type is FieldType.EMAIL:
        # Addresses compare case-insensitively, as profiles are matched by them.
        return email_key(str(stored))
    return stored


def _listed(definition: FieldDefinition, value: JsonValue, path: str) -> list[JsonValue]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed("expected a non-empty list of values", path)
    if len(value) > MAX_LIST_VALUES:
        raise ValidationFailed(f"a list holds at most {MAX_LIST_VALUES} values; upload a CSV instead", path)
    stored: list[JsonValue] = []
    for index, item in enumerate(value):
        one = list_item(definition, item, f"{path}.{index}")
        if one not in stored:
            stored.append(one)
    return stored


def _pair(value: JsonValue, path: str, item: Callable[[JsonValue, str], T]) -> tuple[T, T]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValidationFailed("expected [from, to]", path)
    return item(value[0], f"{path}.0"), item(value[1], f"{path}.1")


def _whole(value: JsonValue, low: int, high: int, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"expected a whole number from {low} to {high}", path)
    if not low <= value <= high:
        raise ValidationFailed(f"expected a whole number from {low} to {high}", path)
    return value


def _day_month(value: JsonValue, path: str) -> str:
    try:
        assert isinstance(value, str) and len(value.strip()) == 5
        month, day = (int(part) for part in value.strip().split("-"))
        date(2000, month, day)  # a leap year, so 02-29 is a day
    except (AssertionError, ValueError):
        raise ValidationFailed("expected a day of the year as MM-DD, e.g. 02-29", path) from None
    return f"{month:02d}-{day:02d}"


def _network(value: JsonValue, path: str) -> str:
    try:
        assert isinstance(value, str)
        network = ipaddress.ip_network(value.strip(), strict=False)
    except (AssertionError, ValueError):
        raise ValidationFailed("expected an IPv4 network, e.g. 10.0.0.0/8", path) from None
    if network.version != 4:
        raise ValidationFailed("IP fields hold IPv4 addresses only", path)
    return str(network)


def _text(value: object, path: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("expected non-blank text", path)
    return value.strip()


def _optional_text(value: str | None, path: str) -> str | None:
    return None if value is None else _text(value, path)


def _ids(ids: tuple[str, ...], path: str) -> tuple[str, ...]:
    if len(ids) > MAX_IDS:
        raise ValidationFailed(f"name at most {MAX_IDS}", path)
    return tuple(dict.fromkeys(_text(one, f"{path}.{i}") for i, one in enumerate(ids)))


def comparable(field_type: FieldType, value: JsonValue) -> Any:
    """A stored value as it orders: numbers, dates, aware datetimes, or text."""
    if field_type is FieldType.DATE:
        return date.fromisoformat(str(value))
    if field_type is FieldType.DATETIME:
        return parse_datetime(value, "value")
    if field_type in (FieldType.INT, FieldType.FLOAT):
        return value
    return str(value)
