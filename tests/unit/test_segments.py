"""Segment queries: the stored form `check_query` makes, and every refusal with its path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain.databases import (
    AddCustomField,
    CreateDatabase,
    DatabaseState,
    DeleteDatabase,
    database_decider,
)
from herald.domain.errors import DomainError, NotFound, ValidationFailed
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.resources import (
    AddCategory,
    Category,
    CreateResource,
    DefineSubscriptionField,
    EmailSettings,
    ResourceSettings,
    ResourceState,
    SmsSettings,
    resource_decider,
)
from herald.domain.segments import (
    MAX_RULES,
    MAX_SOURCES,
    Condition,
    CountLimit,
    CsvSource,
    ExternalRule,
    FieldRule,
    GoalRule,
    Group,
    ListSource,
    MessageHistoryRule,
    Operator,
    PercentLimit,
    SegmentQuery,
    SegmentRule,
    Source,
    SubscriptionRule,
    check_query,
    iter_rules,
    parse_query,
)
from herald.domain.statuses import Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build_database(database_id: str, *commands: Any) -> DatabaseState:
    """A database snapshot built through the commands users send."""
    state = database_decider.initial
    for command in (CreateDatabase(database_id, "Clients", T0), *commands):
        state = database_decider.fold(database_decider.decide(command, state), state)
    return state


def custom(name: str, type_: FieldType, *options: str) -> AddCustomField:
    return AddCustomField("db1", FieldDefinition(name=name, type=type_, options=options), T0)


DB = build_database(
    "db1",
    custom("score", FieldType.INT),
    custom("ratio", FieldType.FLOAT),
    custom("vip", FieldType.BOOL),
    custom("plan", FieldType.LIST, "Basic", "Pro"),
    custom("labels", FieldType.TAGS),
    custom("extra", FieldType.JSON),
    custom("renewal", FieldType.DATE),
)
OTHER_DB = build_database("db2")
GONE_DB = build_database("db3", DeleteDatabase("db3", T0))
DATABASES = {"db1": DB, "db2": OTHER_DB, "db3": GONE_DB}


def build_resource(resource_id: str, database_id: str, *commands: Any) -> ResourceState:
    settings = ResourceSettings(
        name="Shop",
        database_ids=(database_id,),
        source_urls=("https://shop.example.com",),
        default_tracking_domain="trk.example.com",
    )
    channels = (
        EmailSettings(from_name="Shop", from_email="news@example.com", list_id="promo.example.com"),
        SmsSettings(caller_id="Shop"),
    )
    state = resource_decider.initial
    for command in (CreateResource(resource_id, "token", settings, channels), *commands):
        state = resource_decider.fold(resource_decider.decide(command, state), state)
    return state


RESOURCE = build_resource(
    "r1",
    "db1",
    DefineSubscriptionField("r1", "email", FieldDefinition(name="level", type=FieldType.INT)),
    AddCategory("r1", Category(api_name="news", title="News")),
    AddCategory("r1", Category(api_name="promo", title="Promo")),
)
RESOURCES = {"r1": RESOURCE, "r2": build_resource("r2", "db2")}


def query(*rules: dict[str, Any], groups: tuple[dict[str, Any], ...] = (), **source: Any) -> dict[str, Any]:
    """A one-source query on db1 in its JSON form."""
    return {"sources": [{"database_id": "db1", "rules": list(rules), "groups": list(groups), **source}]}


def field(name: str, operator: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    rule = {"kind": "field", "field": name, "operator": operator, **extra}
    return rule if value is None else {**rule, "value": value}


def subscription(**kw: Any) -> dict[str, Any]:
    return {"kind": "subscription", "channel": "email", **kw}


def history(**kw: Any) -> dict[str, Any]:
    return {"kind": "message_history", "action": "opened", "at_least": 1, **kw}


def goal(**kw: Any) -> dict[str, Any]:
    return {"kind": "goal", "goal": "purchase", "aggregate": "sum", "operator": "gt", "value": 10, **kw}


def external(source: dict[str, Any], name: str = "email") -> dict[str, Any]:
    return {"kind": "external", "field": name, "operator": "in", "source": source}


def segment(segment_id: str, operator: str = "in") -> dict[str, Any]:
    return {"kind": "segment", "segment_id": segment_id, "operator": operator}


PLAIN = SegmentQuery(sources=(Source(database_id="db1"),))
SEGMENTS: dict[str, SegmentQuery] = {
    "plain": PLAIN,
    "static": SegmentQuery(),  # a static segment: its members are stored, it has no rules to nest
    "nesting": SegmentQuery(sources=(Source(database_id="db1", rules=(SegmentRule(segment_id="plain"),)),)),
    "back": SegmentQuery(sources=(Source(database_id="db1", rules=(SegmentRule(segment_id="me"),)),)),
}


def check(data: Any, **kw: Any) -> SegmentQuery:
    return check_query(data, DATABASES, SEGMENTS.get, resources=RESOURCES, **kw)


def first_rule(checked: SegmentQuery) -> Any:
    return checked.sources[0].rules[0]


# --- the stored form ---------------------------------------------------------------------------


STORED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "alias made canonical, type filled in",
        field("Birthday", "equal", "22.08.1990"),
        {"field": "_bdate", "type": "date", "value": "1990-08-22"},
    ),
    ("custom field any case", field("SCORE", "gt", "12"), {"field": "score", "type": "int", "value": 12}),
    ("declared type agrees", field("score", "lt", 3, type="int"), {"type": "int", "value": 3}),
    ("email lower-cased", field("email", "equal", " Ann@Example.COM "), {"value": "ann@example.com"}),
    ("phone to E.164", field("phones", "equal", "79123456789"), {"value": "+79123456789"}),
    ("option spelled as defined", field("plan", "equal", "pro"), {"value": "Pro"}),
    (
        "status is a system field",
        field("status", "in", ["Subscribed"]),
        {"type": "list", "value": ["subscribed"]},
    ),
    ("profile id is a system field", field("profile_id", "equal", "p1"), {"type": "string", "value": "p1"}),
    ("in list de-duplicated", field("score", "in", [1, "1", 2]), {"value": [1, 2]}),
    ("between coerced", field("ratio", "between", ["0.5", 2]), {"value": [0.5, 2.0]}),
    (
        "datetime between",
        field("_regdate", "between", ["2026-01-01", "2026-01-02T03:00:00+03:00"]),
        {"value": ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"]},
    ),
    ("tags sorted", field("labels", "has_any", "b, a"), {"value": ["a", "b"]}),
    ("network normalised", field("_ip", "in_cidr", "10.1.2.3/8"), {"value": "10.0.0.0/8"}),
    ("bare address is a /32", field("_regip", "not_in_cidr", "10.1.2.3"), {"value": "10.1.2.3/32"}),
    ("domain lower-cased", field("email", "domain_equal", "@Mail.RU"), {"value": "mail.ru"}),
    ("domain part lower-cased", field("email", "domain_contains", "Yandex"), {"value": "yandex"}),
    ("text kept as typed", field("_fname", "contains", " Ann "), {"value": "Ann"}),
    ("relative range", field("_regdate", "relative_between", [-45, -7]), {"value": [-45, -7]}),
    ("day and month", field("_bdate", "day_month_equal", "02-29"), {"value": "02-29"}),
    ("no value", field("vip", "exists"), {"value": None, "type": "bool"}),
]


@pytest.mark.parametrize(("rule", "expected"), [pytest.param(r, e, id=i) for i, r, e in STORED])
def test_check_query_stores_canonical_fields_types_and_coerced_values(
    rule: dict[str, Any], expected: dict[str, Any]
) -> None:
    stored = first_rule(check(query(rule))).model_dump(mode="json")
    assert {key: stored[key] for key in expected} == expected


def test_a_checked_query_round_trips_through_json_and_checks_again_to_itself() -> None:
    data = query(
        field("Email", "equal", "Ann@example.com"),
        subscription(
            resource_id="r1",
            status_in=["subscribed"],
            conditions=[{"field": "level", "operator": "gt", "value": "2"}],
        ),
        history(
            action="clicked",
            link_name=" buy ",
            campaign_ids=["c1", "c1"],
            period={"kind": "last_days", "days": 30},
        ),
        goal(
            value=9000.12345, period={"kind": "between", "date_from": "2026-01-01", "date_to": "2026-01-31"}
        ),
        segment("plain", "not_in"),
        external({"kind": "list", "values": ["Bob@example.com", "bob@example.com"]}),
        groups=({"condition": "or", "rules": [field("score", "gte", 1), field("vip", "equal", "yes")]},),
        condition="or",
        limit={"kind": "percent", "from_pct": 10, "to_pct": 20},
    )
    checked = check(data)
    assert parse_query(checked.model_dump(mode="json")) == checked
    assert check(checked) == checked
    rules = checked.sources[0].rules
    assert isinstance(rules[1], SubscriptionRule) and rules[1].conditions[0].value == 2
    assert isinstance(rules[2], MessageHistoryRule)
    assert (rules[2].link_name, rules[2].campaign_ids) == ("buy", ("c1",))
    assert isinstance(rules[3], GoalRule) and rules[3].value == 9000.123
    assert isinstance(rules[5], ExternalRule) and rules[5].source == ListSource(values=("bob@example.com",))
    assert checked.sources[0].limit == PercentLimit(from_pct=10, to_pct=20)


def test_the_model_builds_in_python_with_the_same_defaults() -> None:
    built = SegmentQuery(
        sources=(
            Source(
                database_id="db1",
                rules=(FieldRule(field="score", operator=Operator.EQUAL, value=1),),
                groups=(Group(condition="or", rules=(SegmentRule(segment_id="plain"),)),),
            ),
        )
    )
    assert built.sources[0].limit == CountLimit(count=0)
    assert built.sources[0].condition == "and"
    assert check(built).sources[0].rules[0] == FieldRule(
        field="score", operator=Operator.EQUAL, value=1, type=FieldType.INT
    )


def test_iter_rules_names_every_rule_by_its_path_and_segment_ids_collects_segment_rules() -> None:
    checked = check(
        query(field("score", "exists"), groups=({"rules": [segment("plain"), segment("static", "not_in")]},))
    )
    assert [path for path, _ in iter_rules(checked, "query")] == [
        "query.sources.0.rules.0",
        "query.sources.0.groups.0.rules.0",
        "query.sources.0.groups.0.rules.1",
    ]
    assert checked.segment_ids() == frozenset({"plain", "static"})


def test_an_external_rule_is_known_by_a_hash_of_its_field_and_source() -> None:
    csv = check(query(external({"kind": "csv", "file_id": " f1 ", "column": 2})))
    rule = first_rule(csv)
    assert rule.source == CsvSource(file_id="f1", column=2)
    same = ExternalRule(field="email", operator="not_in", source=CsvSource(file_id="f1", column=2))
    other = ExternalRule(field="email", source=CsvSource(file_id="f1", column=3))
    assert rule.key == same.key != other.key
    assert len(rule.key) == 64


def test_a_subscription_condition_on_the_contact_takes_the_channels_type() -> None:
    checked = check(
        query(
            subscription(conditions=[{"field": "contact", "operator": "domain_equal", "value": "Mail.ru"}]),
            subscription(
                channel="sms", conditions=[{"field": "contact", "operator": "equal", "value": "79123456789"}]
            ),
        )
    )
    email_rule, sms_rule = checked.sources[0].rules
    assert isinstance(email_rule, SubscriptionRule) and isinstance(sms_rule, SubscriptionRule)
    assert email_rule.conditions[0] == Condition(
        field="contact", operator=Operator.DOMAIN_EQUAL, value="mail.ru", type=FieldType.EMAIL
    )
    assert sms_rule.conditions[0].type is FieldType.PHONES and sms_rule.conditions[0].value == "+79123456789"


def test_a_source_without_rules_and_a_static_segment_without_a_query_are_accepted() -> None:
    assert check(query(segment("static"))).sources[0].rules == (SegmentRule(segment_id="static"),)
    assert check({"sources": [{"database_id": "db2"}]}).sources[0].rules == ()


# --- refusals ----------------------------------------------------------------------------------

S = "query.sources.0"
R = f"{S}.rules.0"
MANY_RULES = [field("score", "exists")] * 150
TOO_MANY = query(*MANY_RULES, groups=({"rules": [field("vip", "exists")] * (MAX_RULES + 1 - 150)},))

REFUSED: list[tuple[str, Any, type[DomainError], str, str]] = [
    # shape (parse_query)
    ("not an object", [1], ValidationFailed, "query", "valid dictionary"),
    (
        "unknown key",
        query(field("score", "equal", 1, q=1)),
        ValidationFailed,
        f"{R}.q",
        "'q' is not a known key",
    ),
    (
        "unknown operator",
        query(field("score", "matches", 1)),
        ValidationFailed,
        f"{R}.operator",
        "unknown operator",
    ),
    ("unknown rule kind", query({"kind": "scenario"}), ValidationFailed, R, "'scenario'"),
    ("rule without kind", query({"field": "score"}), ValidationFailed, R, "discriminator"),
    (
        "group inside a group",
        query(groups=({"rules": [{"condition": "or", "rules": [field("score", "exists")]}]},)),
        ValidationFailed,
        f"{S}.groups.0.rules.0",
        "groups nest one level",
    ),
    (
        "group among rules",
        query({"kind": "group", "rules": []}),
        ValidationFailed,
        R,
        "groups nest one level",
    ),
    ("bad condition", query(condition="xor"), ValidationFailed, f"{S}.condition", "'and' or 'or'"),
    (
        "percent below 1",
        query(limit={"kind": "percent", "from_pct": 0}),
        ValidationFailed,
        f"{S}.limit.from_pct",
        "",
    ),
    (
        "percent above 100",
        query(limit={"kind": "percent", "to_pct": 101}),
        ValidationFailed,
        f"{S}.limit.to_pct",
        "",
    ),
    ("negative count", query(limit={"kind": "count", "count": -1}), ValidationFailed, f"{S}.limit.count", ""),
    ("unknown limit kind", query(limit={"kind": "top"}), ValidationFailed, f"{S}.limit", ""),
    (
        "subscription without channel",
        query({"kind": "subscription"}),
        ValidationFailed,
        f"{R}.channel",
        "required",
    ),
    ("bad status", query(subscription(status_in=["gone"])), ValidationFailed, f"{R}.status_in.0", ""),
    (
        "zero-day window",
        query(history(period={"kind": "last_days", "days": 0})),
        ValidationFailed,
        f"{R}.period.days",
        "",
    ),
    ("bad action", query(history(action="replied")), ValidationFailed, f"{R}.action", ""),
    ("bad aggregate", query(goal(aggregate="max")), ValidationFailed, f"{R}.aggregate", ""),
    (
        "bad csv column",
        query(external({"kind": "csv", "file_id": "f", "column": 0})),
        ValidationFailed,
        f"{R}.source.column",
        "",
    ),
    # the query
    ("no sources", {"sources": []}, ValidationFailed, "query.sources", "at least one"),
    (
        "too many sources",
        {"sources": [{"database_id": "db1"}] * (MAX_SOURCES + 1)},
        ValidationFailed,
        f"query.sources.{MAX_SOURCES}",
        f"at most {MAX_SOURCES}",
    ),
    ("unknown database", {"sources": [{"database_id": "nope"}]}, NotFound, f"{S}.database_id", "no database"),
    ("deleted database", {"sources": [{"database_id": "db3"}]}, NotFound, f"{S}.database_id", "no database"),
    (
        "too many rules",
        TOO_MANY,
        ValidationFailed,
        f"{S}.groups.0.rules.{MAX_RULES - 150}",
        f"at most {MAX_RULES}",
    ),
    (
        "empty group",
        query(groups=({"rules": []},)),
        ValidationFailed,
        f"{S}.groups.0.rules",
        "at least one rule",
    ),
    (
        "percent range reversed",
        query(limit={"kind": "percent", "from_pct": 60, "to_pct": 40}),
        ValidationFailed,
        f"{S}.limit",
        "start",
    ),
    # field rules
    (
        "unknown field",
        query(field("shoe_size", "exists")),
        ValidationFailed,
        f"{R}.field",
        "no field 'shoe_size'",
    ),
    (
        "other database's field",
        {"sources": [{"database_id": "db2", "rules": [field("score", "exists")]}]},
        ValidationFailed,
        f"{R}.field",
        "db2",
    ),
    (
        "operator not for the type",
        query(field("score", "contains", "1")),
        ValidationFailed,
        f"{R}.operator",
        "int fields",
    ),
    ("cidr on text", query(field("_fname", "in_cidr", "10.0.0.0/8")), ValidationFailed, f"{R}.operator", ""),
    ("order on text", query(field("_fname", "gt", "a")), ValidationFailed, f"{R}.operator", ""),
    ("calendar on a number", query(field("score", "today")), ValidationFailed, f"{R}.operator", ""),
    (
        "tags operator on a list",
        query(field("plan", "has_any", ["Pro"])),
        ValidationFailed,
        f"{R}.operator",
        "",
    ),
    (
        "declared type differs",
        query(field("score", "equal", 1, type="string")),
        ValidationFailed,
        f"{R}.type",
        "int field",
    ),
    (
        "wrong value type",
        query(field("score", "equal", "many")),
        ValidationFailed,
        f"{R}.value",
        "whole number",
    ),
    ("fraction in an int field", query(field("score", "gt", 1.5)), ValidationFailed, f"{R}.value", ""),
    ("bad date", query(field("_bdate", "lt", "yesterday")), ValidationFailed, f"{R}.value", "date"),
    ("bad email", query(field("email", "equal", "ann")), ValidationFailed, f"{R}.value", "email"),
    ("unknown option", query(field("plan", "equal", "Gold")), ValidationFailed, f"{R}.value", "options"),
    ("unknown status", query(field("status", "equal", "gone")), ValidationFailed, f"{R}.value", ""),
    ("list for one value", query(field("score", "equal", [1])), ValidationFailed, f"{R}.value", "one value"),
    ("missing value", query(field("score", "equal")), ValidationFailed, f"{R}.value", "required"),
    ("blank value", query(field("_fname", "equal", " ")), ValidationFailed, f"{R}.value", "required"),
    (
        "value where none is taken",
        query(field("score", "exists", 1)),
        ValidationFailed,
        f"{R}.value",
        "no value",
    ),
    ("empty in list", query(field("score", "in", [])), ValidationFailed, f"{R}.value", "non-empty list"),
    ("in needs a list", query(field("score", "in", 1)), ValidationFailed, f"{R}.value", "list"),
    ("bad item in a list", query(field("score", "in", [1, "x"])), ValidationFailed, f"{R}.value.1", ""),
    (
        "two phones for one",
        query(field("phones", "equal", "+79123456789,+79161234567")),
        ValidationFailed,
        f"{R}.value",
        "one phone",
    ),
    (
        "between needs a pair",
        query(field("score", "between", [1])),
        ValidationFailed,
        f"{R}.value",
        "[from, to]",
    ),
    (
        "between reversed",
        query(field("_bdate", "between", ["2020-02-01", "2020-01-01"])),
        ValidationFailed,
        f"{R}.value",
        "start",
    ),
    ("between bad end", query(field("score", "between", [1, "x"])), ValidationFailed, f"{R}.value.1", ""),
    ("blank text", query(field("_fname", "contains", "")), ValidationFailed, f"{R}.value", "non-blank"),
    (
        "bad domain",
        query(field("email", "domain_equal", "not a domain")),
        ValidationFailed,
        f"{R}.value",
        "domain",
    ),
    (
        "bad network",
        query(field("_ip", "in_cidr", "10.0.0.0/33")),
        ValidationFailed,
        f"{R}.value",
        "IPv4 network",
    ),
    ("IPv6 network", query(field("_ip", "in_cidr", "2001:db8::/32")), ValidationFailed, f"{R}.value", "IPv4"),
    ("no tags", query(field("labels", "has_all", [])), ValidationFailed, f"{R}.value", "at least one tag"),
    (
        "days not whole",
        query(field("_bdate", "relative_equal", 1.5)),
        ValidationFailed,
        f"{R}.value",
        "whole number",
    ),
    ("days as bool", query(field("_bdate", "relative_before", True)), ValidationFailed, f"{R}.value", ""),
    ("days out of range", query(field("_bdate", "in_last_days", -1)), ValidationFailed, f"{R}.value", ""),
    ("anniversary too far", query(field("_bdate", "anniversary", 367)), ValidationFailed, f"{R}.value", ""),
    (
        "relative range reversed",
        query(field("_bdate", "relative_between", [-7, -45])),
        ValidationFailed,
        f"{R}.value",
        "start",
    ),
    ("month 13", query(field("_bdate", "month_equal", 13)), ValidationFailed, f"{R}.value", "1 to 12"),
    ("day 32", query(field("_bdate", "day_of_month_gt", 32)), ValidationFailed, f"{R}.value", "1 to 31"),
    ("no such day", query(field("_bdate", "day_month_lt", "02-30")), ValidationFailed, f"{R}.value", "MM-DD"),
    # subscription rules
    ("unknown resource", query(subscription(resource_id="r9")), NotFound, f"{R}.resource_id", "no resource"),
    (
        "resource of another database",
        query(subscription(resource_id="r2")),
        ValidationFailed,
        f"{R}.resource_id",
        "db1",
    ),
    ("blank channel", query(subscription(channel=" ")), ValidationFailed, f"{R}.channel", ""),
    ("provider off push", query(subscription(provider="fcm")), ValidationFailed, f"{R}.provider", "push"),
    (
        "status in and not in",
        query(subscription(status_in=["subscribed"], status_not_in=["subscribed"])),
        ValidationFailed,
        f"{R}.status_not_in",
        "both",
    ),
    (
        "unknown subscription field",
        query(subscription(resource_id="r1", conditions=[{"field": "size", "operator": "exists"}])),
        ValidationFailed,
        f"{R}.conditions.0.field",
        "no field 'size'",
    ),
    (
        "custom subscription field without a resource",
        query(subscription(conditions=[{"field": "level", "operator": "exists"}])),
        ValidationFailed,
        f"{R}.conditions.0.field",
        "needs a resource",
    ),
    (
        "bad subscription field value",
        query(
            subscription(resource_id="r1", conditions=[{"field": "level", "operator": "gt", "value": "high"}])
        ),
        ValidationFailed,
        f"{R}.conditions.0.value",
        "",
    ),
    (
        "operator not for the contact",
        query(
            subscription(
                channel="sms", conditions=[{"field": "contact", "operator": "domain_equal", "value": "a.ru"}]
            )
        ),
        ValidationFailed,
        f"{R}.conditions.0.operator",
        "",
    ),
    (
        "category without a resource",
        query(subscription(categories=[{"category": "news"}])),
        ValidationFailed,
        f"{R}.categories.0.category",
        "needs a resource",
    ),
    (
        "unknown category",
        query(subscription(resource_id="r1", categories=[{"category": "sport"}])),
        ValidationFailed,
        f"{R}.categories.0.category",
        "no category",
    ),
    # history and goals
    ("at least and never", query(history(never=True)), ValidationFailed, f"{R}.never", "not both"),
    (
        "neither at least nor never",
        query(history(at_least=None)),
        ValidationFailed,
        f"{R}.at_least",
        "how often",
    ),
    ("zero times", query(history(at_least=0)), ValidationFailed, f"{R}.at_least", ""),
    ("link on an open", query(history(link_name="buy")), ValidationFailed, f"{R}.link_name", "click"),
    (
        "period reversed",
        query(history(period={"kind": "between", "date_from": "2026-02-01", "date_to": "2026-01-01"})),
        ValidationFailed,
        f"{R}.period.date_to",
        "start",
    ),
    ("blank campaign", query(history(campaign_ids=["c1", ""])), ValidationFailed, f"{R}.campaign_ids.1", ""),
    (
        "too many campaigns",
        query(history(campaign_ids=[str(i) for i in range(1001)])),
        ValidationFailed,
        f"{R}.campaign_ids",
        "",
    ),
    ("goal value not finite", query(goal(value="NaN")), ValidationFailed, f"{R}.value", "finite"),
    ("blank goal", query(goal(goal=" ")), ValidationFailed, f"{R}.goal", ""),
    ("goal operator", query(goal(operator="between")), ValidationFailed, f"{R}.operator", ""),
    # segment rules
    ("unknown segment", query(segment("nope")), NotFound, f"{R}.segment_id", "no segment"),
    (
        "nested segment with segment rules",
        query(segment("nesting")),
        ValidationFailed,
        f"{R}.segment_id",
        "one level",
    ),
    # external rules
    (
        "external on json",
        query(external({"kind": "list", "values": ["a"]}, "extra")),
        ValidationFailed,
        f"{R}.field",
        "json",
    ),
    (
        "external unknown field",
        query(external({"kind": "list", "values": ["a"]}, "nope")),
        ValidationFailed,
        f"{R}.field",
        "",
    ),
    (
        "bad list value",
        query(external({"kind": "list", "values": ["a@b.cd", "x"]})),
        ValidationFailed,
        f"{R}.source.values.1",
        "email",
    ),
    (
        "empty list",
        query(external({"kind": "list", "values": []})),
        ValidationFailed,
        f"{R}.source.values",
        "non-empty",
    ),
    (
        "not a web url",
        query(external({"kind": "post_url", "url": "ftp://x.example"})),
        ValidationFailed,
        f"{R}.source.url",
        "http",
    ),
    (
        "blank file",
        query(external({"kind": "csv", "file_id": " ", "column": 1})),
        ValidationFailed,
        f"{R}.source.file_id",
        "",
    ),
]


@pytest.mark.parametrize(
    ("data", "error", "path", "reason"), [pytest.param(d, e, p, r, id=i) for i, d, e, p, r in REFUSED]
)
def test_check_query_refuses_with_the_rules_path(
    data: Any, error: type[DomainError], path: str, reason: str
) -> None:
    with pytest.raises(error) as caught:
        check(data)
    assert type(caught.value) is error
    assert caught.value.path == path, caught.value
    assert reason in caught.value.reason


def test_the_path_prefix_is_the_callers() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_query(query(field("nope", "exists")), DATABASES, SEGMENTS.get, path="segment.query")
    assert caught.value.path == "segment.query.sources.0.rules.0.field"
    with pytest.raises(ValidationFailed) as caught:
        parse_query({"sources": [{"database_id": "db1", "q": 1}]}, path="")
    assert caught.value.path == "sources.0.q"


NESTING: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("itself", query(segment("me")), {"segment_id": "me"}, "cycle"),
    ("a segment that refers back", query(segment("back")), {"segment_id": "me"}, "refers back"),
    (
        "used by others, so no segment rules",
        query(segment("plain")),
        {"segment_id": "me", "referenced_by": ["b", "a"]},
        "segments a, b use this segment",
    ),
]


@pytest.mark.parametrize(("data", "kw", "reason"), [pytest.param(d, k, r, id=i) for i, d, k, r in NESTING])
def test_segment_rules_nest_one_level_without_cycles(
    data: dict[str, Any], kw: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check(data, **kw)
    assert caught.value.path == f"{R}.segment_id"
    assert reason in caught.value.reason


def test_a_segment_used_by_others_may_change_its_other_rules() -> None:
    checked = check(query(field("score", "exists")), segment_id="me", referenced_by=["a"])
    assert checked.segment_ids() == frozenset()


def test_a_subscription_rule_without_a_resource_needs_no_resources() -> None:
    checked = check_query(query(subscription(status_in=["unsubscribed"])), DATABASES, SEGMENTS.get)
    assert first_rule(checked) == SubscriptionRule(channel="email", status_in=(Status.UNSUBSCRIBED,))


def test_history_rules_may_name_campaigns_that_no_longer_exist() -> None:
    rule = first_rule(
        check(query(history(never=True, at_least=None, campaign_ids=["gone"], resource_id="r9")))
    )
    assert isinstance(rule, MessageHistoryRule) and rule.never and rule.campaign_ids == ("gone",)
