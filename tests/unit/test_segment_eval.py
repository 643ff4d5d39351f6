"""Segment evaluation: every condition kind and operator, limits, and when a result next changes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.domain.databases import DatabaseState
from herald.domain.fields import FieldType
from herald.domain.profiles import CreateProfile, DeleteProfile, ProfileState, profile_decider
from herald.domain.segment_eval import (
    GoalEvent,
    HistoryEvent,
    ProfileFacts,
    changes_need_state,
    fact_change,
    matches,
    members,
    next_change,
    percent_bucket,
)
from herald.domain.segments import (
    NEGATIONS,
    OPERATORS_BY_TYPE,
    ExternalRule,
    MessageAction,
    Op,
    Operator,
    SegmentQuery,
)
from herald.domain.statuses import Status
from herald.domain.subscriptions import AddSubscription, CategoryStatus
from tests.unit.test_segments import (
    DB,
    OTHER_DB,
    RESOURCE,
    T0,
    check,
    external,
    field,
    goal,
    history,
    query,
    segment,
    subscription,
)

TZ = "Europe/Moscow"  # UTC+3 all year
NOW = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)  # 13:00 on 15 March in Moscow
DAY = timedelta(days=1)
NO_FACTS = ProfileFacts()


def make_profile(
    fields: dict[str, Any],
    *subscriptions: AddSubscription,
    profile_id: str = "p1",
    database: DatabaseState = DB,
) -> ProfileState:
    """A profile built through the commands users send."""
    command = CreateProfile(
        profile_id,
        f"md5-{profile_id}",
        f"xxh-{profile_id}",
        database,
        fields,
        T0,
        subscriptions=subscriptions,
    )
    return profile_decider.fold(profile_decider.decide(command, ProfileState()))


def holds(
    rule: dict[str, Any], profile: ProfileState, facts: ProfileFacts = NO_FACTS, now: datetime = NOW
) -> bool:
    return matches(check(query(rule)), profile, facts, now, TZ)


# --- field rules -------------------------------------------------------------------------------

PHONES = {"phones": ["+79123456789", "+79991234567"]}
F = field
FIELD_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # text: equal and in are case-sensitive, the text operators are not
    ("equal", {"_fname": "Ann"}, F("_fname", "equal", "Ann"), True),
    ("equal is case-sensitive", {"_fname": "ann"}, F("_fname", "equal", "Ann"), False),
    ("not_equal", {"_fname": "Bob"}, F("_fname", "not_equal", "Ann"), True),
    ("not_equal same", {"_fname": "Ann"}, F("_fname", "not_equal", "Ann"), False),
    ("not_equal holds without the field", {}, F("_fname", "not_equal", "Ann"), True),
    ("contains ignores case", {"_fname": "Joanna"}, F("_fname", "contains", "ANN"), True),
    ("contains", {"_fname": "Bob"}, F("_fname", "contains", "ann"), False),
    ("contains without the field", {}, F("_fname", "contains", "ann"), False),
    ("not_contains", {"_fname": "Bob"}, F("_fname", "not_contains", "ann"), True),
    ("not_contains holding", {"_fname": "Joanna"}, F("_fname", "not_contains", "ann"), False),
    ("not_contains without the field", {}, F("_fname", "not_contains", "ann"), True),
    ("starts_with", {"_fname": "Annette"}, F("_fname", "starts_with", "an"), True),
    ("starts_with other", {"_fname": "Joanna"}, F("_fname", "starts_with", "an"), False),
    ("ends_with", {"_fname": "Joanna"}, F("_fname", "ends_with", "NA"), True),
    ("ends_with other", {"_fname": "Annette"}, F("_fname", "ends_with", "na"), False),
    ("in", {"_fname": "Bob"}, F("_fname", "in", ["Ann", "Bob"]), True),
    ("in is case-sensitive", {"_fname": "bob"}, F("_fname", "in", ["Ann", "Bob"]), False),
    ("not_in", {"_fname": "Eve"}, F("_fname", "not_in", ["Ann", "Bob"]), True),
    ("not_in listed", {"_fname": "Ann"}, F("_fname", "not_in", ["Ann", "Bob"]), False),
    ("exists", {"_fname": "Ann"}, F("_fname", "exists"), True),
    ("exists without the field", {}, F("_fname", "exists"), False),
    ("not_exists", {}, F("_fname", "not_exists"), True),
    ("not_exists with the field", {"_fname": "Ann"}, F("_fname", "not_exists"), False),
    ("empty", {}, F("_fname", "empty"), True),
    ("empty with a value", {"_fname": "Ann"}, F("_fname", "empty"), False),
    ("not_empty", {"_fname": "Ann"}, F("_fname", "not_empty"), True),
    ("not_empty without the field", {}, F("_fname", "not_empty"), False),
    ("timezone equal", {"_tz": "Europe/Moscow"}, F("_tz", "equal", "Europe/Moscow"), True),
    ("timezone starts_with", {"_tz": "UTC"}, F("_tz", "starts_with", "europe/"), False),
    # email: equality ignores case; a placeholder address is no email
    ("email equal ignores case", {"email": "Ann@Example.com"}, F("email", "equal", "ANN@example.COM"), True),
    ("email equal other", {"email": "bob@example.com"}, F("email", "equal", "ann@example.com"), False),
    ("email in ignores case", {"email": "Ann@example.com"}, F("email", "in", ["ann@example.com"]), True),
    ("placeholder is no email", {}, F("email", "exists"), False),
    ("real email exists", {"email": "ann@example.com"}, F("email", "exists"), True),
    ("placeholder is not equal", {}, F("email", "not_equal", "ann@example.com"), True),
    ("domain_equal", {"email": "ann@Mail.ru"}, F("email", "domain_equal", "mail.ru"), True),
    ("domain_equal other", {"email": "ann@bk.ru"}, F("email", "domain_equal", "mail.ru"), False),
    ("domain_not_equal", {"email": "ann@bk.ru"}, F("email", "domain_not_equal", "mail.ru"), True),
    ("domain_not_equal same", {"email": "ann@mail.ru"}, F("email", "domain_not_equal", "mail.ru"), False),
    ("domain_not_equal without email", {}, F("email", "domain_not_equal", "mail.ru"), True),
    ("domain_contains", {"email": "ann@yandex.com.tr"}, F("email", "domain_contains", "Yandex"), True),
    ("domain_contains other", {"email": "ann@mail.ru"}, F("email", "domain_contains", "yandex"), False),
    ("contains the local part", {"email": "Ann@mail.ru"}, F("email", "contains", "ANN@"), True),
    # phones: a positive operator holds when any phone does
    ("any phone equal", PHONES, F("phones", "equal", "+7 999 123-45-67"), True),
    ("no phone equal", PHONES, F("phones", "equal", "+79161234567"), False),
    ("not_equal when one phone is", PHONES, F("phones", "not_equal", "+79991234567"), False),
    ("not_equal when none is", PHONES, F("phones", "not_equal", "+79161234567"), True),
    ("a phone contains", PHONES, F("phones", "contains", "9912"), True),
    ("no phone contains", PHONES, F("phones", "contains", "0000"), False),
    ("a phone in", PHONES, F("phones", "in", ["+79161234567", "+79123456789"]), True),
    ("no phone in", PHONES, F("phones", "in", ["+79161234567"]), False),
    # numbers
    ("int equal", {"score": 5}, F("score", "equal", "5"), True),
    ("int equal other", {"score": 5}, F("score", "equal", 6), False),
    ("gt", {"score": 5}, F("score", "gt", 4), True),
    ("gt is strict", {"score": 5}, F("score", "gt", 5), False),
    ("gte", {"score": 5}, F("score", "gte", 5), True),
    ("gte above", {"score": 5}, F("score", "gte", 6), False),
    ("lt", {"score": 5}, F("score", "lt", 6), True),
    ("lt is strict", {"score": 5}, F("score", "lt", 5), False),
    ("lte", {"score": 5}, F("score", "lte", 5), True),
    ("lte below", {"score": 5}, F("score", "lte", 4), False),
    ("between from inclusive", {"score": 5}, F("score", "between", [5, 9]), True),
    ("between to inclusive", {"score": 5}, F("score", "between", [1, 5]), True),
    ("between outside", {"score": 5}, F("score", "between", [6, 9]), False),
    ("int in", {"score": 5}, F("score", "in", [1, 5]), True),
    ("int not_in", {"score": 5}, F("score", "not_in", [1, 2]), True),
    ("gt without the field", {}, F("score", "gt", -100), False),
    ("float gt", {"ratio": 0.5}, F("ratio", "gt", 0.25), True),
    ("float lt", {"ratio": 0.5}, F("ratio", "lt", "0.5"), False),
    # booleans, lists, system fields
    ("bool equal", {"vip": True}, F("vip", "equal", "yes"), True),
    ("bool equal other", {"vip": False}, F("vip", "equal", True), False),
    ("bool not_equal without the field", {}, F("vip", "not_equal", True), True),
    ("option equal", {"plan": "Pro"}, F("plan", "equal", "pro"), True),
    ("option equal other", {"plan": "Basic"}, F("plan", "equal", "Pro"), False),
    ("option in", {"plan": "Basic"}, F("plan", "in", ["Basic", "Pro"]), True),
    ("status equal", {}, F("status", "equal", "subscribed"), True),
    ("status in", {}, F("status", "in", ["unsubscribed", "complainer"]), False),
    ("profile id", {}, F("profile_id", "equal", "p1"), True),
    ("profile id not_in", {}, F("profile_id", "not_in", ["p1", "p2"]), False),
    # IP addresses
    ("ip equal", {"_ip": "10.1.2.3"}, F("_ip", "equal", "10.1.2.3"), True),
    ("in_cidr", {"_ip": "10.1.2.3"}, F("_ip", "in_cidr", "10.0.0.0/8"), True),
    ("in_cidr outside", {"_ip": "10.1.2.3"}, F("_ip", "in_cidr", "192.168.0.0/16"), False),
    ("in_cidr a bare address", {"_regip": "10.1.2.3"}, F("_regip", "in_cidr", "10.1.2.3"), True),
    ("not_in_cidr", {"_ip": "10.1.2.3"}, F("_ip", "not_in_cidr", "192.168.0.0/16"), True),
    ("not_in_cidr inside", {"_ip": "10.1.2.3"}, F("_ip", "not_in_cidr", "10.0.0.0/8"), False),
    ("not_in_cidr without the field", {}, F("_ip", "not_in_cidr", "10.0.0.0/8"), True),
    # tags
    ("has_any", {"labels": ["a", "b"]}, F("labels", "has_any", ["b", "c"]), True),
    ("has_any none shared", {"labels": ["a", "b"]}, F("labels", "has_any", ["c"]), False),
    ("tags are case-sensitive", {"labels": ["a", "b"]}, F("labels", "has_any", ["A"]), False),
    ("has_all", {"labels": ["a", "b"]}, F("labels", "has_all", "a,b"), True),
    ("has_all one missing", {"labels": ["a", "b"]}, F("labels", "has_all", ["a", "c"]), False),
    ("has_none", {"labels": ["a", "b"]}, F("labels", "has_none", ["c"]), True),
    ("has_none one shared", {"labels": ["a", "b"]}, F("labels", "has_none", ["a", "c"]), False),
    ("has_none without tags", {}, F("labels", "has_none", ["a"]), True),
    ("has_not_all", {"labels": ["a", "b"]}, F("labels", "has_not_all", ["a", "c"]), True),
    ("has_not_all all held", {"labels": ["a", "b"]}, F("labels", "has_not_all", ["a", "b"]), False),
    # JSON
    ("json exists", {"extra": {"k": 1}}, F("extra", "exists"), True),
    ("json empty", {"extra": {"k": 1}}, F("extra", "empty"), False),
    # dates (today is 2026-03-15 in Moscow)
    ("date equal", {"_bdate": "1990-03-15"}, F("_bdate", "equal", "15.03.1990"), True),
    ("date gt", {"_bdate": "1990-03-15"}, F("_bdate", "gt", "1990-03-14"), True),
    ("date gt is strict", {"_bdate": "1990-03-15"}, F("_bdate", "gt", "1990-03-15"), False),
    ("date between", {"_bdate": "1990-03-15"}, F("_bdate", "between", ["1990-01-01", "1990-03-15"]), True),
    ("today", {"renewal": "2026-03-15"}, F("renewal", "today"), True),
    ("today yesterday", {"renewal": "2026-03-14"}, F("renewal", "today"), False),
    ("relative_equal yesterday", {"renewal": "2026-03-14"}, F("renewal", "relative_equal", -1), True),
    ("relative_equal today", {"renewal": "2026-03-15"}, F("renewal", "relative_equal", -1), False),
    ("relative_equal in 14 days", {"renewal": "2026-03-29"}, F("renewal", "relative_equal", 14), True),
    ("relative_before", {"renewal": "2026-03-07"}, F("renewal", "relative_before", -7), True),
    ("relative_before is strict", {"renewal": "2026-03-08"}, F("renewal", "relative_before", -7), False),
    ("relative_after", {"renewal": "2026-03-09"}, F("renewal", "relative_after", -7), True),
    ("relative_after is strict", {"renewal": "2026-03-08"}, F("renewal", "relative_after", -7), False),
    ("relative_between from", {"renewal": "2026-01-29"}, F("renewal", "relative_between", [-45, -7]), True),
    ("relative_between to", {"renewal": "2026-03-08"}, F("renewal", "relative_between", [-45, -7]), True),
    ("relative_between after", {"renewal": "2026-03-09"}, F("renewal", "relative_between", [-45, -7]), False),
    (
        "relative_between before",
        {"renewal": "2026-01-28"},
        F("renewal", "relative_between", [-45, -7]),
        False,
    ),
    ("in_last_days first", {"renewal": "2026-03-08"}, F("renewal", "in_last_days", 7), True),
    ("in_last_days today", {"renewal": "2026-03-15"}, F("renewal", "in_last_days", 7), True),
    ("in_last_days too old", {"renewal": "2026-03-07"}, F("renewal", "in_last_days", 7), False),
    ("in_last_days tomorrow", {"renewal": "2026-03-16"}, F("renewal", "in_last_days", 7), False),
    ("in_next_days last", {"renewal": "2026-03-18"}, F("renewal", "in_next_days", 3), True),
    ("in_next_days too far", {"renewal": "2026-03-19"}, F("renewal", "in_next_days", 3), False),
    ("in_next_days yesterday", {"renewal": "2026-03-14"}, F("renewal", "in_next_days", 3), False),
    ("birthday today", {"_bdate": "1990-03-15"}, F("_bdate", "anniversary", 0), True),
    ("birthday tomorrow", {"_bdate": "1990-03-16"}, F("_bdate", "anniversary", 0), False),
    ("birthday in 2 days", {"_bdate": "1985-03-17"}, F("_bdate", "anniversary", 2), True),
    ("month_equal", {"_bdate": "1990-03-01"}, F("_bdate", "month_equal", 3), True),
    ("month_equal other", {"_bdate": "1990-03-01"}, F("_bdate", "month_equal", 4), False),
    ("month_not_equal", {"_bdate": "1990-03-01"}, F("_bdate", "month_not_equal", 4), True),
    ("month_not_equal same", {"_bdate": "1990-03-01"}, F("_bdate", "month_not_equal", 3), False),
    ("month_is_current", {"_bdate": "1990-03-31"}, F("_bdate", "month_is_current"), True),
    ("month_is_current other", {"_bdate": "1990-04-15"}, F("_bdate", "month_is_current"), False),
    ("day_of_month_equal", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_equal", 15), True),
    ("day_of_month_equal other", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_equal", 16), False),
    ("day_of_month_not_equal", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_not_equal", 16), True),
    (
        "day_of_month_not_equal same",
        {"_bdate": "1990-04-15"},
        F("_bdate", "day_of_month_not_equal", 15),
        False,
    ),
    ("day_of_month_gt", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_gt", 14), True),
    ("day_of_month_gt is strict", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_gt", 15), False),
    ("day_of_month_lt", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_lt", 16), True),
    ("day_of_month_lt is strict", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_lt", 15), False),
    ("day_of_month_is_current", {"_bdate": "1990-04-15"}, F("_bdate", "day_of_month_is_current"), True),
    (
        "day_of_month_is_current other",
        {"_bdate": "1990-04-16"},
        F("_bdate", "day_of_month_is_current"),
        False,
    ),
    ("day_month_equal", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_equal", "03-15"), True),
    ("day_month_equal other", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_equal", "03-16"), False),
    ("day_month_not_equal", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_not_equal", "03-16"), True),
    (
        "day_month_not_equal same",
        {"_bdate": "1990-03-15"},
        F("_bdate", "day_month_not_equal", "03-15"),
        False,
    ),
    ("day_month_gt", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_gt", "03-14"), True),
    ("day_month_gt is strict", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_gt", "03-15"), False),
    ("day_month_lt", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_lt", "03-16"), True),
    ("day_month_lt is strict", {"_bdate": "1990-03-15"}, F("_bdate", "day_month_lt", "03-15"), False),
    # datetimes: compared as instants; their calendar day is the account zone's
    (
        "datetime gt",
        {"_regdate": "2026-03-15T09:00:00Z"},
        F("_regdate", "gt", "2026-03-15T08:59:59.999Z"),
        True,
    ),
    (
        "datetime gt is strict",
        {"_regdate": "2026-03-15T09:00:00Z"},
        F("_regdate", "gt", "2026-03-15T12:00+03:00"),
        False,
    ),
    (
        "datetime equal",
        {"_regdate": "2026-03-15T09:00:00Z"},
        F("_regdate", "equal", "2026-03-15T12:00+03:00"),
        True,
    ),
    ("22:30 UTC is tomorrow in Moscow", {"_regdate": "2026-03-15T22:30:00Z"}, F("_regdate", "today"), False),
    ("so it is today + 1", {"_regdate": "2026-03-15T22:30:00Z"}, F("_regdate", "relative_equal", 1), True),
    ("datetime in_last_days", {"_regdate": "2026-03-08T21:00:00Z"}, F("_regdate", "in_last_days", 6), True),
]


@pytest.mark.parametrize(
    ("fields", "rule", "expected"), [pytest.param(f, r, e, id=i) for i, f, r, e in FIELD_CASES]
)
def test_field_rules(fields: dict[str, Any], rule: dict[str, Any], expected: bool) -> None:
    assert holds(rule, make_profile(fields)) is expected


def test_every_field_operator_has_a_matching_and_a_non_matching_case() -> None:
    seen: dict[str, set[bool]] = {}
    for _, _, rule, expected in FIELD_CASES:
        seen.setdefault(rule["operator"], set()).add(expected)
    assert {op: outcomes for op, outcomes in seen.items() if outcomes != {True, False}} == {}
    assert set(seen) == {op.value for op in Operator}


TODAY_AT: list[tuple[str, datetime, str, dict[str, Any], bool]] = [
    (
        "29 Feb falls on 28 Feb in a common year",
        datetime(2027, 2, 28, 10, tzinfo=UTC),
        "2000-02-29",
        {},
        True,
    ),
    ("but not in a leap year", datetime(2028, 2, 28, 10, tzinfo=UTC), "2000-02-29", {}, False),
    ("where it has its own day", datetime(2028, 2, 29, 10, tzinfo=UTC), "2000-02-29", {}, True),
    ("across the year's end", datetime(2026, 12, 30, 10, tzinfo=UTC), "1990-01-02", {"value": 3}, True),
    ("today starts at the zone's midnight", datetime(2026, 3, 15, 21, tzinfo=UTC), "1990-03-16", {}, True),
    ("not a second earlier", datetime(2026, 3, 15, 20, 59, 59, tzinfo=UTC), "1990-03-16", {}, False),
]


@pytest.mark.parametrize(
    ("now", "birthday", "extra", "expected"), [pytest.param(n, b, x, e, id=i) for i, n, b, x, e in TODAY_AT]
)
def test_anniversaries_and_the_time_zone_of_today(
    now: datetime, birthday: str, extra: dict[str, Any], expected: bool
) -> None:
    rule = F("_bdate", "anniversary", extra.get("value", 0))
    assert holds(rule, make_profile({"_bdate": birthday}), now=now) is expected


def test_missing_is_not_empty_for_a_value_held_empty() -> None:
    held_empty = replace(make_profile({}), fields={"_fname": ""})
    assert holds(F("_fname", "exists"), held_empty)
    assert holds(F("_fname", "empty"), held_empty)
    assert not holds(F("_fname", "not_empty"), held_empty)
    assert holds(F("_fname", "not_equal", "Ann"), held_empty)


# --- subscription rules ------------------------------------------------------------------------


def subscribe(channel: str, contact: str, **kw: Any) -> AddSubscription:
    return AddSubscription(resource_id="r1", channel=channel, contact=contact, at=T0, resource=RESOURCE, **kw)


SUBSCRIBED = make_profile(
    {},
    subscribe(
        "email", "ann@example.com", fields={"level": 3}, categories={"news": CategoryStatus.UNSUBSCRIBED}
    ),
    subscribe("sms", "+79123456789", status=Status.UNSUBSCRIBED),
)
S = subscription


def on(name: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": name, "operator": operator, **({} if value is None else {"value": value})}


SUBSCRIPTION_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("has an email subscription", S(), True),
    ("has no push subscription", S(channel="push"), False),
    ("not_exists on push", S(operator="not_exists", channel="push"), True),
    ("not_exists on email", S(operator="not_exists"), False),
    ("on the resource", S(resource_id="r1"), True),
    ("status in", S(status_in=["subscribed"]), True),
    ("sms status in", S(channel="sms", status_in=["subscribed"]), False),
    ("sms unsubscribed", S(channel="sms", status_in=["unsubscribed", "complainer"]), True),
    ("not subscribed (status not in)", S(status_not_in=["subscribed"]), False),
    ("sms not subscribed", S(channel="sms", status_not_in=["subscribed"]), True),
    ("contact equal", S(conditions=[on("contact", "equal", "ANN@example.com")]), True),
    ("contact domain", S(conditions=[on("contact", "domain_equal", "example.com")]), True),
    ("contact other domain", S(conditions=[on("contact", "domain_equal", "mail.ru")]), False),
    ("sms contact", S(channel="sms", conditions=[on("contact", "starts_with", "+7912")]), True),
    ("priority", S(conditions=[on("priority", "equal", 0)]), True),
    ("priority gt", S(conditions=[on("priority", "gt", 0)]), False),
    ("registered in the last 90 days", S(conditions=[on("registered_at", "in_last_days", 90)]), True),
    ("registered in the last 30 days", S(conditions=[on("registered_at", "in_last_days", 30)]), False),
    ("custom field", S(resource_id="r1", conditions=[on("level", "gt", 2)]), True),
    ("custom field other", S(resource_id="r1", conditions=[on("level", "equal", 1)]), False),
    ("category unsubscribed", S(resource_id="r1", categories=[{"category": "news"}]), False),
    (
        "so unsubscribed holds",
        S(resource_id="r1", categories=[{"category": "news", "status": "unsubscribed"}]),
        True,
    ),
    ("other categories are subscribed", S(resource_id="r1", categories=[{"category": "promo"}]), True),
    (
        "every condition on one subscription",
        S(conditions=[on("contact", "equal", "ann@example.com")], status_in=["unsubscribed"]),
        False,
    ),
    ("no unsubscribed email", S(operator="not_exists", status_in=["unsubscribed"]), True),
]


@pytest.mark.parametrize(("rule", "expected"), [pytest.param(r, e, id=i) for i, r, e in SUBSCRIPTION_CASES])
def test_subscription_rules(rule: dict[str, Any], expected: bool) -> None:
    assert holds(rule, SUBSCRIBED) is expected


# --- message history ---------------------------------------------------------------------------

A = MessageAction
OPENS = (
    HistoryEvent(A.OPENED, NOW - 2 * DAY, "c1", "t1", "r1", "email"),
    HistoryEvent(A.OPENED, NOW - 10 * DAY, "c2", "t2", "r1", "email"),
)
HISTORY = ProfileFacts(
    history=(
        *OPENS,
        HistoryEvent(A.CLICKED, NOW - DAY, "c1", "t1", "r1", "email", link_name="buy"),
        *(HistoryEvent(A.DELIVERED, NOW - 40 * DAY + i * DAY, "c3", "t3", "r1", "sms") for i in range(3)),
        HistoryEvent(A.READ, NOW - 3 * DAY, "c1", "t1"),
        HistoryEvent(A.UNSUBSCRIBED, NOW - 3 * DAY, "c1", "t1"),
        HistoryEvent(A.COMPLAINED, NOW - 3 * DAY, "c1", "t1"),
        HistoryEvent(
            A.SENT, datetime(2026, 3, 4, 21, 30, tzinfo=UTC), "c5", "t5"
        ),  # 00:30 on 5 March in Moscow
        HistoryEvent(A.SENT, NOW + timedelta(hours=1), "c4", "t4"),  # not yet
    )
)
H = history


def days(n: int) -> dict[str, Any]:
    return {"kind": "last_days", "days": n}


def dates(start: str, end: str) -> dict[str, Any]:
    return {"kind": "between", "date_from": start, "date_to": end}


HISTORY_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("opened at least twice", H(at_least=2), True),
    ("opened at least 3 times", H(at_least=3), False),
    ("opened never", H(at_least=None, never=True), False),
    ("bounced never", H(action="bounced", at_least=None, never=True), True),
    ("in a campaign", H(campaign_ids=["c2"]), True),
    ("in another campaign", H(campaign_ids=["c9"]), False),
    ("in any of the campaigns", H(campaign_ids=["c9", "c2"], at_least=1), True),
    ("with a template", H(template_ids=["t1"]), True),
    ("with another template", H(template_ids=["t3"]), False),
    ("in the last 7 days", H(period=days(7)), True),
    ("twice in the last 7 days", H(at_least=2, period=days(7)), False),
    ("never with a period ignores events outside it", H(at_least=None, never=True, period=days(1)), True),
    ("clicked a link", H(action="clicked", link_name="buy"), True),
    ("clicked another link", H(action="clicked", link_name="sale"), False),
    ("delivered 3 times in 30 days", H(action="delivered", at_least=3, period=days(30)), False),
    ("delivered 3 times in 45 days", H(action="delivered", at_least=3, period=days(45)), True),
    ("on a channel", H(action="delivered", channel="sms"), True),
    ("on another channel", H(channel="sms"), False),
    ("through another resource", H(resource_id="r2"), False),
    ("on a day", H(period=dates("2026-03-05", "2026-03-05")), True),
    ("on days without opens", H(period=dates("2026-03-06", "2026-03-12")), False),
    ("a day is the zone's day", H(action="sent", period=dates("2026-03-05", "2026-03-05")), True),
    ("not the UTC day", H(action="sent", period=dates("2026-03-04", "2026-03-04")), False),
    ("later events do not count yet", H(action="sent", campaign_ids=["c4"], at_least=None, never=True), True),
]


@pytest.mark.parametrize(("rule", "expected"), [pytest.param(r, e, id=i) for i, r, e in HISTORY_CASES])
def test_message_history_rules(rule: dict[str, Any], expected: bool) -> None:
    assert holds(rule, make_profile({}), HISTORY) is expected


@pytest.mark.parametrize("action", list(MessageAction))
def test_every_action_is_counted_by_its_own_kind(action: MessageAction) -> None:
    facts = ProfileFacts(history=(HistoryEvent(action, NOW - DAY),))
    for other in MessageAction:
        assert holds(H(action=other.value), make_profile({}), facts) is (other is action)


# --- goals ---------------------------------------------------------------------------------------

GOALS = ProfileFacts(
    goals=(
        GoalEvent("purchase", 100.5, NOW - DAY, "px1", "https://Shop.example.com/cart"),
        GoalEvent("purchase", 200.0, NOW - 20 * DAY, "px2"),
        GoalEvent("signup", 0.0, NOW - 5 * DAY),
        GoalEvent("tip", 0.1, NOW - DAY),
        GoalEvent("tip", 0.2, NOW - DAY),
        GoalEvent("purchase", 999.0, NOW + DAY),  # not yet
    )
)


def g(aggregate: str, operator: str, value: float, **kw: Any) -> dict[str, Any]:
    return goal(aggregate=aggregate, operator=operator, value=value, **kw)


GOAL_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("count equal", g("count", "equal", 2), True),
    ("count gte", g("count", "gte", 3), False),
    ("sum equal", g("sum", "equal", 300.5), True),
    ("sum gt is strict", g("sum", "gt", 300.5), False),
    ("sum gte", g("sum", "gte", 300.5), True),
    ("sum lt", g("sum", "lt", 301), True),
    ("sum lte", g("sum", "lte", 300), False),
    ("sum not_equal", g("sum", "not_equal", 300.5), False),
    ("avg equal", g("avg", "equal", 150.25), True),
    ("sum in the last 7 days", g("sum", "equal", 100.5, period=days(7)), True),
    ("count in a date range", g("count", "equal", 1, period=dates("2026-02-20", "2026-02-25")), True),
    ("count of none is 0", g("count", "equal", 0, goal="refund"), True),
    ("sum of none is 0", g("sum", "lt", 1, goal="refund"), True),
    ("avg of none has no value", g("avg", "equal", 0, goal="refund"), False),
    ("avg of none is below nothing", g("avg", "lt", 1, goal="refund"), False),
    ("avg of none is not equal", g("avg", "not_equal", 0, goal="refund"), True),
    ("by pixel", g("count", "equal", 1, pixel_id="px1"), True),
    ("by a part of the referrer, any case", g("count", "equal", 1, referrer="SHOP.example"), True),
    ("by another referrer", g("count", "equal", 0, referrer="other.example"), True),
    ("any goal", g("count", "equal", 5, goal=None), True),
    ("to 3 decimals", g("sum", "equal", 0.3, goal="tip"), True),
]


@pytest.mark.parametrize(("rule", "expected"), [pytest.param(r, e, id=i) for i, r, e in GOAL_CASES])
def test_goal_rules(rule: dict[str, Any], expected: bool) -> None:
    assert holds(rule, make_profile({}), GOALS) is expected


# --- segment and external rules ----------------------------------------------------------------

IN_PLAIN = ProfileFacts(segments=frozenset({"plain"}))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        pytest.param(segment("plain"), True, id="in"),
        pytest.param(segment("plain", "not_in"), False, id="not_in"),
        pytest.param(segment("static"), False, id="in another"),
        pytest.param(segment("static", "not_in"), True, id="not_in another"),
    ],
)
def test_segment_rules(rule: dict[str, Any], expected: bool) -> None:
    assert holds(rule, make_profile({}), IN_PLAIN) is expected


EMAILS = {"kind": "list", "values": ["ANN@example.com", "bob@example.com"]}
CSV = {"kind": "csv", "file_id": "f1", "column": 1}
POST = {"kind": "post_url", "url": "https://crm.example.com/segment", "path": "segment.emails"}


def fetched(rule: dict[str, Any]) -> ProfileFacts:
    checked = check(query(rule)).sources[0].rules[0]
    assert isinstance(checked, ExternalRule)
    return ProfileFacts(external=frozenset({checked.key}))


EXTERNAL_CASES: list[tuple[str, dict[str, Any], dict[str, Any], ProfileFacts, bool]] = [
    ("in a pasted list, any case", external(EMAILS), {"email": "Ann@example.com"}, NO_FACTS, True),
    ("not in a pasted list", external(EMAILS), {"email": "eve@example.com"}, NO_FACTS, False),
    (
        "not_in a pasted list",
        {**external(EMAILS), "operator": "not_in"},
        {"email": "eve@example.com"},
        NO_FACTS,
        True,
    ),
    (
        "a list of numbers",
        external({"kind": "list", "values": ["5", 7]}, "score"),
        {"score": 5},
        NO_FACTS,
        True,
    ),
    ("a list without the field", external({"kind": "list", "values": [5]}, "score"), {}, NO_FACTS, False),
    ("in a fetched CSV", external(CSV), {}, fetched(external(CSV)), True),
    ("not in a fetched CSV", external(CSV), {}, NO_FACTS, False),
    ("not_in a fetched CSV", {**external(CSV), "operator": "not_in"}, {}, fetched(external(CSV)), False),
    ("in a POST URL's answer", external(POST), {}, fetched(external(POST)), True),
    ("another source's set", external(POST), {}, fetched(external(CSV)), False),
]


@pytest.mark.parametrize(
    ("rule", "fields", "facts", "expected"),
    [pytest.param(r, f, x, e, id=i) for i, r, f, x, e in EXTERNAL_CASES],
)
def test_external_rules(
    rule: dict[str, Any], fields: dict[str, Any], facts: ProfileFacts, expected: bool
) -> None:
    assert holds(rule, make_profile(fields), facts) is expected


# --- sources, groups, limits -------------------------------------------------------------------

ANN = make_profile({"_fname": "Ann", "score": 5})
YES, NO = F("score", "equal", 5), F("score", "equal", 6)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(query(YES, NO), False, id="and"),
        pytest.param(query(YES, NO, condition="or"), True, id="or"),
        pytest.param(
            query(YES, groups=({"condition": "or", "rules": [NO, YES]},)), True, id="and with an or group"
        ),
        pytest.param(query(YES, groups=({"rules": [NO, YES]},)), False, id="and with an and group"),
        pytest.param(query(NO, groups=({"rules": [YES]},), condition="or"), True, id="or with a group"),
        pytest.param(query(), True, id="no rules: the whole database"),
        pytest.param(query(condition="or"), True, id="no rules under or: the whole database"),
        pytest.param({"sources": [{"database_id": "db2"}]}, False, id="another database"),
        pytest.param({"sources": [{"database_id": "db2"}, {"database_id": "db1"}]}, True, id="a union"),
    ],
)
def test_sources_and_groups_combine_rules(data: dict[str, Any], expected: bool) -> None:
    assert matches(check(data), ANN, NO_FACTS, NOW, TZ) is expected


def test_a_source_alone_and_a_deleted_profile() -> None:
    checked = check(query(YES))
    assert matches(checked.sources[0], ANN, NO_FACTS, NOW, TZ)
    deleted = profile_decider.fold(profile_decider.decide(DeleteProfile("p1", NOW), ANN), ANN)
    assert not matches(checked, deleted, NO_FACTS, NOW, TZ)
    assert not members(checked, [deleted], lambda _: NO_FACTS, NOW, TZ)
    assert next_change(check(query(F("_bdate", "today"))), deleted, NO_FACTS, NOW, TZ) is None


PEOPLE = [make_profile({"score": i % 3}, profile_id=f"p{i:02d}") for i in range(30)]
EVEN = [p.profile_id for p in PEOPLE if p.fields.get("score") == 0]  # profiles where score is 0


def percent(low: int, high: int) -> dict[str, Any]:
    return {"kind": "percent", "from_pct": low, "to_pct": high}


def test_percent_buckets_are_stable_hashes_of_the_profile_id() -> None:
    assert [percent_bucket(p) for p in ("p1", "p2", "5e8a7f9de7d8b9372bb0de5c")] == [92, 7, 82]
    assert {percent_bucket(p.profile_id) for p in PEOPLE} <= set(range(1, 101))


def test_members_apply_limits_by_profile_id_and_percent_bucket() -> None:
    def listed(**source: Any) -> tuple[str, ...]:
        return members(check(query(F("score", "equal", 0), **source)), PEOPLE, lambda _: NO_FACTS, NOW, TZ)

    assert listed() == tuple(EVEN)
    assert listed(limit={"kind": "count", "count": 0}) == tuple(EVEN)
    assert listed(limit={"kind": "count", "count": 3}) == tuple(EVEN[:3])
    low, high = listed(limit=percent(1, 50)), listed(limit=percent(51, 100))
    assert set(low) | set(high) == set(EVEN) and not set(low) & set(high)
    assert low == tuple(p for p in EVEN if percent_bucket(p) <= 50)
    for profile in PEOPLE:
        checked = check(query(limit=percent(1, 50)))
        assert matches(checked, profile, NO_FACTS, NOW, TZ) is (percent_bucket(profile.profile_id) <= 50)


def test_members_unite_sources_each_with_its_own_limit_and_read_facts_once() -> None:
    others = [make_profile({}, profile_id=f"q{i}", database=OTHER_DB) for i in range(3)]
    data = {
        "sources": [
            {"database_id": "db1", "rules": [segment("plain")], "limit": {"kind": "count", "count": 2}},
            {"database_id": "db2", "limit": {"kind": "count", "count": 1}},
            {"database_id": "db1", "rules": [F("profile_id", "in", ["p29", "p01"])]},
        ]
    }
    asked: list[str] = []

    def facts_of(profile_id: str) -> ProfileFacts:
        asked.append(profile_id)
        return IN_PLAIN if profile_id in ("p05", "p07", "p09") else NO_FACTS

    assert members(check(data), [*reversed(PEOPLE), *others], facts_of, NOW, TZ) == (
        "p01",
        "p05",
        "p07",
        "p29",
        "q0",
    )
    assert sorted(asked) == sorted(p.profile_id for p in [*PEOPLE, *others])  # once each


# --- next change -------------------------------------------------------------------------------

MICRO = timedelta(microseconds=1)


def flips_at(
    rule: dict[str, Any], profile: ProfileState, facts: ProfileFacts, expected: datetime | None
) -> None:
    """next_change names `expected`, and the result is steady until then and different at it."""
    checked = check(query(rule))
    assert next_change(checked, profile, facts, NOW, TZ) == expected
    if expected is not None:
        before = matches(checked, profile, facts, expected - MICRO, TZ)
        assert matches(checked, profile, facts, NOW, TZ) is before
        assert matches(checked, profile, facts, expected, TZ) is not before


def test_a_history_window_expires_exactly_n_days_after_the_event() -> None:
    flips_at(H(at_least=2, period=days(30)), make_profile({}), ProfileFacts(history=OPENS), NOW + 20 * DAY)
    flips_at(H(period=days(7)), make_profile({}), ProfileFacts(history=OPENS[:1]), NOW + 5 * DAY)


def test_a_later_event_counts_from_its_instant() -> None:
    later = ProfileFacts(history=(HistoryEvent(A.SENT, NOW + timedelta(hours=1)),))
    flips_at(H(action="sent", at_least=None, never=True), make_profile({}), later, NOW + timedelta(hours=1))
    in_range = H(action="sent", period=dates("2026-03-15", "2026-03-15"))
    flips_at(in_range, make_profile({}), later, NOW + timedelta(hours=1))
    after_range = H(action="sent", period=dates("2026-03-01", "2026-03-14"))
    flips_at(after_range, make_profile({}), later, None)


def test_a_goal_window_expires_too() -> None:
    rule = g("sum", "gte", 300, period=days(30))
    past = ProfileFacts(goals=GOALS.goals[:-1])
    flips_at(rule, make_profile({}), past, NOW - 20 * DAY + 30 * DAY)
    flips_at(g("sum", "gte", 1000), make_profile({}), GOALS, NOW + DAY)  # the later purchase, as it arrives


def test_a_relative_date_turns_at_the_zones_midnight() -> None:
    midnight = datetime(2026, 3, 15, 21, tzinfo=UTC)
    flips_at(F("renewal", "today"), make_profile({"renewal": "2026-03-15"}), NO_FACTS, midnight)
    flips_at(F("_bdate", "anniversary", 0), make_profile({"_bdate": "1990-03-15"}), NO_FACTS, midnight)
    registered = S(conditions=[on("registered_at", "in_last_days", 73)])
    flips_at(registered, SUBSCRIBED, NO_FACTS, midnight)


def test_a_midnight_skipped_by_daylight_saving_turns_when_the_day_starts() -> None:
    """Chile moves 00:00 to 01:00 on 6 September 2026: the 6th starts at 04:00 UTC."""
    now = datetime(2026, 9, 5, 16, tzinfo=UTC)
    checked = check(query(F("renewal", "today")))
    profile = make_profile({"renewal": "2026-09-06"})
    start = next_change(checked, profile, NO_FACTS, now, "America/Santiago")
    assert start == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert not matches(checked, profile, NO_FACTS, start - MICRO, "America/Santiago")
    assert matches(checked, profile, NO_FACTS, start, "America/Santiago")


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        pytest.param(F("renewal", "equal", "2026-03-15"), {"renewal": "2026-03-15"}, id="an absolute date"),
        pytest.param(F("renewal", "month_equal", 3), {"renewal": "2026-03-15"}, id="a fixed month"),
        pytest.param(F("renewal", "today"), {}, id="a relative date on a missing field"),
        pytest.param(H(period=days(30)), {}, id="a window with no events"),
        pytest.param(H(period=dates("2026-01-01", "2026-12-31")), {}, id="a date range with no events"),
        pytest.param(segment("plain"), {}, id="a segment"),
    ],
)
def test_nothing_changes_without_a_time_dependent_rule(rule: dict[str, Any], fields: dict[str, Any]) -> None:
    flips_at(rule, make_profile(fields), NO_FACTS, None)


def test_only_the_profiles_own_database_sources_count_for_next_change() -> None:
    data = {"sources": [{"database_id": "db2", "rules": [F("_bdate", "today")]}]}
    assert next_change(check(data), make_profile({"_bdate": "2026-03-15"}), NO_FACTS, NOW, TZ) is None


# --- self-consistency over random profiles and rules -------------------------------------------
# The property test against the SQL evaluator waits for that evaluator; these check the algebra.

POOLS: dict[str, list[Any]] = {
    "_fname": ["Ann", "ann", "Bob", "Joanna", "Анна"],
    "email": ["ann@example.com", "Ann@Mail.ru", "bob@yandex.ru"],
    "phones": [["+79123456789"], ["+79161234567", "+79991234567"]],
    "score": [-3, 0, 5, 7],
    "ratio": [0.0, 0.5, 2.25],
    "vip": [True, False],
    "plan": ["Basic", "Pro"],
    "labels": [["a"], ["a", "b"], ["b", "c"]],
    "_ip": ["10.1.2.3", "192.168.1.1"],
    "_tz": ["Europe/Moscow", "UTC"],
    "_bdate": ["1990-03-15", "2000-02-29", "2026-03-14", "2026-03-16", "2026-01-29", "1985-12-31"],
    "_regdate": ["2026-03-15T22:30:00Z", "2026-03-14T00:00:00Z", "2020-01-01T12:00:00Z"],
    "extra": [{"k": 1}],
}


def random_profile(rng: random.Random, profile_id: str) -> ProfileState:
    fields = {name: rng.choice(pool) for name, pool in POOLS.items() if rng.random() < 0.75}
    return make_profile(fields, profile_id=profile_id)


def random_value(rng: random.Random, name: str, operator: Operator) -> Any:
    """A value of the operator's shape, drawn so that it often hits the profiles' values."""
    pool = [item for value in POOLS[name] for item in (value if isinstance(value, list) else [value])]
    op = Op
    shapes: dict[frozenset[Operator], Any] = {
        frozenset({op.IN, op.NOT_IN}): lambda: rng.sample(pool, rng.randint(1, len(pool))),
        frozenset({op.BETWEEN}): lambda: sorted(rng.choices(pool, k=2), key=str),
        frozenset({op.CONTAINS, op.NOT_CONTAINS, op.STARTS_WITH, op.ENDS_WITH}): lambda: _part(rng, pool),
        frozenset({op.DOMAIN_EQUAL, op.DOMAIN_NOT_EQUAL}): lambda: rng.choice(["example.com", "mail.ru"]),
        frozenset({op.DOMAIN_CONTAINS}): lambda: rng.choice(["mail", "ya", "x"]),
        frozenset({op.IN_CIDR, op.NOT_IN_CIDR}): lambda: rng.choice(["10.0.0.0/8", "10.1.2.3", "0.0.0.0/0"]),
        frozenset(TAGS_OPS): lambda: rng.sample(["a", "b", "c"], rng.randint(1, 3)),
        frozenset({op.RELATIVE_EQUAL, op.RELATIVE_BEFORE, op.RELATIVE_AFTER}): lambda: rng.randint(-60, 60),
        frozenset({op.RELATIVE_BETWEEN}): lambda: sorted([rng.randint(-60, 60), rng.randint(-60, 60)]),
        frozenset({op.IN_LAST_DAYS, op.IN_NEXT_DAYS, op.ANNIVERSARY}): lambda: rng.randint(0, 60),
        frozenset({op.MONTH_EQUAL, op.MONTH_NOT_EQUAL}): lambda: rng.randint(1, 12),
        frozenset(DAY_OPS): lambda: rng.randint(1, 31),
        frozenset(DAY_MONTH_OPS): lambda: rng.choice(["03-15", "02-29", "03-16", "12-31", "01-01"]),
    }
    for operators, make in shapes.items():
        if operator in operators:
            return make()
    return None if operator in NO_VALUE_OPS else rng.choice(pool)


def _part(rng: random.Random, pool: list[Any]) -> str:
    text = str(rng.choice(pool))
    start = rng.randrange(len(text))
    return text[start : start + rng.randint(1, 4)].strip() or "a"


TAGS_OPS = {Op.HAS_ANY, Op.HAS_ALL, Op.HAS_NONE, Op.HAS_NOT_ALL}
DAY_OPS = {Op.DAY_OF_MONTH_EQUAL, Op.DAY_OF_MONTH_NOT_EQUAL, Op.DAY_OF_MONTH_GT, Op.DAY_OF_MONTH_LT}
DAY_MONTH_OPS = {Op.DAY_MONTH_EQUAL, Op.DAY_MONTH_NOT_EQUAL, Op.DAY_MONTH_GT, Op.DAY_MONTH_LT}
NO_VALUE_OPS = {
    Op.EXISTS,
    Op.NOT_EXISTS,
    Op.EMPTY,
    Op.NOT_EMPTY,
    Op.TODAY,
    Op.MONTH_IS_CURRENT,
    Op.DAY_OF_MONTH_IS_CURRENT,
}
TYPES = {name: DB.field(name).type for name in POOLS}  # type: ignore[union-attr]


def results(rule: dict[str, Any], profiles: list[ProfileState], now: datetime = NOW) -> list[bool]:
    checked = check(query(rule))
    return [matches(checked, p, NO_FACTS, now, TZ) for p in profiles]


@pytest.mark.parametrize("seed", range(12))
def test_negative_operators_are_exact_complements_and_shortcuts_agree(seed: int) -> None:
    rng = random.Random(seed)
    profiles = [random_profile(rng, f"r{seed}-{i}") for i in range(8)]
    for name in POOLS:
        for operator in sorted(OPERATORS_BY_TYPE[TYPES[name]]):
            value = random_value(rng, name, operator)
            got = results(F(name, operator, value), profiles)
            positive = NEGATIONS.get(operator)
            if positive is not None:
                assert got == [not r for r in results(F(name, positive, value), profiles)], (
                    name,
                    operator,
                    value,
                )
            for other, equivalent in _equivalents(operator, value):
                if _spelled_for(TYPES[name], equivalent):
                    assert got == _apply(equivalent, name, profiles), (name, operator, other, value)


def _equivalents(operator: Operator, value: Any) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Other spellings of the same condition: a list of (operator, value) whose conjunction is equivalent."""
    match operator:
        case Op.EQUAL:
            return [("in", [("in", [value])])]
        case Op.GTE:
            return [("gt or equal", [("gt|equal", value)])]
        case Op.TODAY:
            return [("relative_equal 0", [("relative_equal", 0)])]
        case Op.RELATIVE_EQUAL:
            return [("relative_between", [("relative_between", [value, value])])]
        case Op.IN_LAST_DAYS:
            return [("relative_between", [("relative_between", [-value, 0])])]
        case Op.IN_NEXT_DAYS:
            return [("relative_between", [("relative_between", [0, value])])]
        case Op.RELATIVE_BEFORE:
            return [("not after", [("not_empty", None), ("!relative_after", value - 1)])]
        case Op.EXISTS:
            return [("not empty (nothing is held empty)", [("not_empty", None)])]
    return []


def _spelled_for(field_type: FieldType, conjunction: list[tuple[str, Any]]) -> bool:
    """Whether every operator the equivalent spells applies to the field's type."""
    spelled = {op for name, _ in conjunction for op in name.lstrip("!").split("|")}
    return spelled <= set(OPERATORS_BY_TYPE[field_type])


def _apply(conjunction: list[tuple[str, Any]], name: str, profiles: list[ProfileState]) -> list[bool]:
    combined = [True] * len(profiles)
    for spelled, value in conjunction:
        negate, spelled = spelled.startswith("!"), spelled.lstrip("!")
        alternatives = [results(F(name, op, value), profiles) for op in spelled.split("|")]
        part = [any(column) for column in zip(*alternatives, strict=True)]
        combined = [c and (p is not negate) for c, p in zip(combined, part, strict=True)]
    return combined


@pytest.mark.parametrize("seed", range(12))
def test_sources_groups_members_and_percent_ranges_agree_with_single_rules(seed: int) -> None:
    rng = random.Random(1000 + seed)
    profiles = [random_profile(rng, f"s{seed}-{i}") for i in range(12)]
    names = rng.sample(list(POOLS), 4)
    rules = []
    for name in names:
        operator = rng.choice(sorted(OPERATORS_BY_TYPE[TYPES[name]]))
        rules.append(F(name, operator, random_value(rng, name, operator)))
    single = [results(rule, profiles) for rule in rules]
    every = [all(column) for column in zip(*single, strict=True)]
    some = [any(column) for column in zip(*single, strict=True)]
    assert [matches(check(query(*rules)), p, NO_FACTS, NOW, TZ) for p in profiles] == every
    assert [matches(check(query(*rules, condition="or")), p, NO_FACTS, NOW, TZ) for p in profiles] == some
    grouped = check(query(groups=({"condition": "or", "rules": rules},)))
    assert [matches(grouped, p, NO_FACTS, NOW, TZ) for p in profiles] == some
    everyone = members(check(query(*rules, condition="or")), profiles, lambda _: NO_FACTS, NOW, TZ)
    assert everyone == tuple(sorted(p.profile_id for p, hit in zip(profiles, some, strict=True) if hit))
    cut = rng.randint(1, 99)
    low = members(
        check(query(*rules, condition="or", limit=percent(1, cut))), profiles, lambda _: NO_FACTS, NOW, TZ
    )
    high = members(
        check(query(*rules, condition="or", limit=percent(cut + 1, 100))),
        profiles,
        lambda _: NO_FACTS,
        NOW,
        TZ,
    )
    assert sorted(low + high) == list(everyone)


def random_facts(rng: random.Random) -> ProfileFacts:
    """Opens, clicks and goals from 60 days before NOW to 5 days after it."""

    def moment() -> datetime:
        return NOW + timedelta(hours=rng.randint(-24 * 60, 24 * 5))

    return ProfileFacts(
        history=tuple(
            HistoryEvent(rng.choice([A.OPENED, A.CLICKED]), moment()) for _ in range(rng.randint(0, 6))
        ),
        goals=tuple(
            GoalEvent("purchase", rng.choice([1.0, 2.5]), moment()) for _ in range(rng.randint(0, 4))
        ),
    )


@pytest.mark.parametrize("seed", range(12))
def test_results_hold_steady_until_next_change(seed: int) -> None:
    rng = random.Random(2000 + seed)
    facts = random_facts(rng)
    profile = random_profile(rng, f"t{seed}")
    rules = [
        H(
            action=rng.choice(["opened", "clicked"]),
            at_least=rng.randint(1, 3),
            period=days(rng.randint(1, 30)),
        ),
        H(action="opened", at_least=None, never=True, period=dates("2026-03-10", "2026-03-17")),
        g("sum", "gte", rng.choice([1.0, 3.5]), period=days(rng.randint(1, 30))),
        rng.choice([F("_bdate", "today"), F("_bdate", "anniversary", 2), F("_bdate", "in_last_days", 3)]),
    ]
    checked = check(query(*rng.sample(rules, rng.randint(1, 4)), condition=rng.choice(["and", "or"])))
    moment = NOW
    for _ in range(20):  # walk forward from change to change
        result = matches(checked, profile, facts, moment, TZ)
        upcoming = next_change(checked, profile, facts, moment, TZ)
        horizon = upcoming or moment + 400 * DAY
        assert upcoming is None or upcoming > moment
        for _ in range(5):
            probe = moment + (horizon - moment) * rng.random()
            assert matches(checked, profile, facts, probe, TZ) is result, (moment, probe, upcoming)
        assert matches(checked, profile, facts, horizon - MICRO, TZ) is result
        if upcoming is None:
            break
        moment = upcoming


@pytest.mark.parametrize("seed", range(8))
def test_fact_change_is_next_change_when_no_rule_reads_the_profile_for_it(seed: int) -> None:
    """The bulk population sets timers from facts alone, for queries whose changes need no state."""
    rng = random.Random(3000 + seed)
    facts = random_facts(rng)
    stateless = [
        H(action=rng.choice(["opened", "clicked"]), period=days(rng.randint(1, 30))),
        H(action="clicked", at_least=None, never=True, period=dates("2026-03-10", "2026-03-17")),
        g("count", "gte", 2.0, period=days(rng.randint(1, 30))),
        F("_bdate", "month_equal", 3),  # a calendar operator, but no "today" in it: it needs no timer
        F("_fname", "equal", "Ann"),
    ]
    checked = check(query(*rng.sample(stateless, rng.randint(1, 4)), condition=rng.choice(["and", "or"])))
    assert not changes_need_state(checked)
    profile = random_profile(rng, f"f{seed}")
    expected = next_change(checked, profile, facts, NOW, TZ)
    assert fact_change(checked, profile.database_id, facts, NOW, TZ) == expected
    assert changes_need_state(check(query(F("_bdate", "today"))))
    assert changes_need_state(check(query(S(conditions=[on("registered_at", "in_last_days", 3)]))))


def test_never_is_the_complement_of_at_least_once_and_not_equal_of_equal() -> None:
    rng = random.Random(7)
    for _ in range(50):
        facts = ProfileFacts(
            history=tuple(
                HistoryEvent(A.OPENED, NOW - rng.randint(0, 60) * DAY) for _ in range(rng.randint(0, 3))
            ),
            goals=tuple(
                GoalEvent("purchase", rng.choice([1.0, 2.0]), NOW - DAY) for _ in range(rng.randint(0, 2))
            ),
        )
        period = days(rng.randint(1, 60))
        never = holds(H(at_least=None, never=True, period=period), make_profile({}), facts)
        assert never is not holds(H(at_least=1, period=period), make_profile({}), facts)
        aggregate, value = rng.choice(["count", "sum", "avg"]), rng.choice([0, 1, 2, 1.5])
        equal = holds(g(aggregate, "equal", value), make_profile({}), facts)
        assert equal is not holds(g(aggregate, "not_equal", value), make_profile({}), facts)


def test_the_query_type_is_explicit_data() -> None:
    """No callables inside: a checked query is plain JSON the SQL evaluator can compile."""
    checked = check(query(YES, groups=({"rules": [NO]},)))
    assert isinstance(checked, SegmentQuery)
    assert SegmentQuery.model_validate_json(checked.model_dump_json()) == checked
