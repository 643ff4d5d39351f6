"""The bulk segment evaluator (SQL on chDB and Debian's 18.16) agrees with the per-profile one.

The table tests run the per-profile evaluator's own case tables (`tests/unit/test_segment_eval.py`)
through SQL: the same profile, facts, rule, instant and time zone must give the same answer. The
property test draws profiles (fields of every type, subscriptions, message history, goals) and
queries (every rule kind, operators, groups, AND/OR, limits) from a seed, writes the profiles and
their facts to ClickHouse as the report sink would, and asks both evaluators for the members. The
calendar test puts datetimes on both sides of every local midnight, in zones with odd offsets and
daylight saving, and asks every calendar operator.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from herald.domain.errors import ValidationFailed
from herald.domain.events import Event
from herald.domain.fields import FieldType, format_datetime
from herald.domain.profiles import ChangeGlobalStatus, DeleteProfile, ProfileState, profile_decider
from herald.domain.segment_eval import GoalEvent, HistoryEvent, ProfileFacts, matches, members
from herald.domain.segments import (
    CALENDAR,
    NO_VALUE,
    OPERATORS_BY_TYPE,
    ExternalRule,
    MessageAction,
    Op,
    SegmentQuery,
)
from herald.domain.statuses import Status
from herald.domain.subscriptions import AddSubscription, CategoryStatus
from herald.infra.clickhouse import ClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.reports.segment_sql import HISTORY_EVENT_TYPES, members_sql, write_snapshots
from tests.unit.test_segment_eval import (
    EXTERNAL_CASES,
    FIELD_CASES,
    GOAL_CASES,
    GOALS,
    HISTORY,
    HISTORY_CASES,
    IN_PLAIN,
    NO_FACTS,
    NOW,
    SUBSCRIBED,
    SUBSCRIPTION_CASES,
    TODAY_AT,
    TZ,
    make_profile,
)
from tests.unit.test_segments import DB, OTHER_DB, RESOURCE, T0, check, field, query, segment

_positions = iter(range(1, 10**9))


@pytest.fixture
def store(clickhouse: ClickHouse) -> ClickHouse:
    migrate(clickhouse)
    return clickhouse


# --- writing facts as the report sink does -----------------------------------------------------

MESSAGE_DEFAULTS: dict[str, Any] = {
    "message_id": "m",
    "campaign_id": "",
    "run_id": "",
    "scenario_id": "",
    "template_id": "",
    "template_version": 1,
    "database_id": "db1",
    "resource_id": "",
    "channel": "",
    "profile_id": "",
    "recipient_domain": "",
    "domain_group": "",
    "sender_id": "",
    "link_id": "",
    "link_url": "",
    "link_name": "",
    "bounce_class": "",
    "bounce_text": "",
    "reason": "",
    "is_unique": 0,
    "is_test": 0,
    "is_bot": 0,
}


def message_row(event_type: str, at: datetime, **values: Any) -> dict[str, Any]:
    row = {**MESSAGE_DEFAULTS, **values}
    return {**row, "event_id": str(uuid.uuid4()), "position": next(_positions), "event_type": event_type,
            "at": at, "day": at.date()}  # fmt: skip


def history_row(profile_id: str, event: HistoryEvent) -> dict[str, Any]:
    return message_row(
        HISTORY_EVENT_TYPES[event.action],
        event.at,
        profile_id=profile_id,
        campaign_id=event.campaign_id,
        template_id=event.template_id,
        resource_id=event.resource_id,
        channel=event.channel,
        link_name=event.link_name,
    )


def goal_row(profile_id: str, event: GoalEvent) -> dict[str, Any]:
    at = event.at
    return {"event_id": str(uuid.uuid4()), "position": next(_positions), "at": at, "day": at.date(),
            "profile_id": profile_id, "anonymous_id": "", "database_id": "db1", "pixel_id": event.pixel_id,
            "goal": event.goal, "value": event.value, "referrer": event.referrer, "browser": "", "os": "",
            "country": "", "city": ""}  # fmt: skip


def not_facts(profile_id: str, event: HistoryEvent) -> list[dict[str, Any]]:
    """Rows the facts leave out: the same action by a bot or on a test message, and other event types."""
    same = history_row(profile_id, event)
    return [
        {**same, "event_id": str(uuid.uuid4()), "is_bot": 1},
        {**same, "event_id": str(uuid.uuid4()), "is_test": 1},
        {**same, "event_id": str(uuid.uuid4()), "event_type": "soft_bounce"},
        {**same, "event_id": str(uuid.uuid4()), "event_type": "queued"},
    ]


def insert(ch: ClickHouse, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        columns = tuple(rows[0])
        ch.insert(table, columns, [tuple(row[c] for c in columns) for row in rows])


def write_facts(ch: ClickHouse, facts_of: Mapping[str, ProfileFacts], noise: bool = True) -> None:
    """The profiles' history and goals as report rows, plus rows the facts leave out (and a retried batch)."""
    messages, goals = [], []
    for profile_id, facts in facts_of.items():
        for event in facts.history:
            messages.append(history_row(profile_id, event))
            if noise:
                messages += not_facts(profile_id, event)
        goals += [goal_row(profile_id, event) for event in facts.goals]
    if noise and goals:
        goals.append({**goals[0], "event_id": str(uuid.uuid4()), "profile_id": "", "anonymous_id": "a1"})
    insert(ch, "message_events", messages)
    insert(ch, "goal_events", goals)
    if noise:  # a retried batch: the same event ids again, replaced rather than counted twice
        insert(ch, "message_events", messages[:3])
        insert(ch, "goal_events", goals[:2])


def sets_of(
    facts_of: Mapping[str, ProfileFacts], query: SegmentQuery
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The segment and external member sets the SQL evaluator takes, from the profiles' facts."""
    segments: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for source in query.sources:
        for rule in (*source.rules, *(r for g in source.groups for r in g.rules)):
            if isinstance(rule, ExternalRule):
                external[rule.key] = {p for p, f in facts_of.items() if rule.key in f.external}
    for segment_id in query.segment_ids():
        segments[segment_id] = {p for p, f in facts_of.items() if segment_id in f.segments}
    return segments, external


def agree(
    ch: ClickHouse,
    checked: SegmentQuery,
    profiles: list[ProfileState],
    facts_of: Mapping[str, ProfileFacts],
    now: datetime = NOW,
    timezone: str = TZ,
) -> tuple[str, ...]:
    """Both evaluators' members, asserted equal; the members."""
    segments, external = sets_of(facts_of, checked)
    expected = members(checked, profiles, lambda p: facts_of.get(p, NO_FACTS), now, timezone)
    found = members_sql(ch, checked, now, timezone, segments=segments, external=external)
    assert found == expected, checked.model_dump(mode="json", exclude_defaults=True)
    return found


# --- the per-profile evaluator's tables, through SQL -------------------------------------------


def one_profile_answers(
    ch: ClickHouse,
    profile: ProfileState,
    facts: ProfileFacts,
    cases: Iterable[tuple[str, dict[str, Any], bool]],
    now: datetime = NOW,
) -> list[str]:
    """The names of the cases where SQL does not give the per-profile evaluator's answer for the profile."""
    write_snapshots(ch, [profile], position=next(_positions))  # replaces the case before
    wrong = []
    for name, rule, expected in cases:
        checked = check(query(rule))
        assert matches(checked, profile, facts, now, TZ) is expected, name  # the table still holds
        segments, external = sets_of({profile.profile_id: facts}, checked)
        found = members_sql(ch, checked, now, TZ, segments=segments, external=external)
        if found != ((profile.profile_id,) if expected else ()):
            wrong.append(name)
    return wrong


def test_field_rules(store: ClickHouse) -> None:
    wrong = []
    for name, fields, rule, expected in FIELD_CASES:
        wrong += one_profile_answers(store, make_profile(fields), NO_FACTS, [(name, rule, expected)])
    assert wrong == []


def test_a_value_held_empty_exists_and_is_empty(store: ClickHouse) -> None:
    held_empty = replace(make_profile({}), fields={"_fname": "", "labels": []})
    cases = [
        ("exists", field("_fname", "exists"), True),
        ("empty", field("_fname", "empty"), True),
        ("not_empty", field("_fname", "not_empty"), False),
        ("not_equal", field("_fname", "not_equal", "Ann"), True),
        ("contains", field("_fname", "contains", "a"), False),
        ("tags exist", field("labels", "exists"), True),
        ("has_none", field("labels", "has_none", ["a"]), True),
    ]
    assert one_profile_answers(store, held_empty, NO_FACTS, cases) == []


def test_anniversaries_and_the_time_zone_of_today(store: ClickHouse) -> None:
    wrong = []
    for name, now, birthday, extra, expected in TODAY_AT:
        rule = field("_bdate", "anniversary", extra.get("value", 0))
        wrong += one_profile_answers(
            store, make_profile({"_bdate": birthday}), NO_FACTS, [(name, rule, expected)], now
        )
    assert wrong == []


def test_subscription_rules(store: ClickHouse) -> None:
    assert one_profile_answers(store, SUBSCRIBED, NO_FACTS, SUBSCRIPTION_CASES) == []


def test_message_history_rules(store: ClickHouse) -> None:
    write_facts(store, {"p1": HISTORY})
    assert one_profile_answers(store, make_profile({}), HISTORY, HISTORY_CASES) == []


def test_goal_rules(store: ClickHouse) -> None:
    write_facts(store, {"p1": GOALS})
    assert one_profile_answers(store, make_profile({}), GOALS, GOAL_CASES) == []


def test_segment_and_external_rules(store: ClickHouse) -> None:
    cases = [("in", segment("plain"), True), ("not_in", segment("plain", "not_in"), False)]
    cases += [("in another", segment("static"), False), ("not_in another", segment("static", "not_in"), True)]
    wrong = one_profile_answers(store, make_profile({}), IN_PLAIN, cases)
    for name, rule, fields, facts, expected in EXTERNAL_CASES:
        wrong += one_profile_answers(store, make_profile(fields), facts, [(name, rule, expected)])
    assert wrong == []


def test_a_missing_member_set_is_an_error(store: ClickHouse) -> None:
    with pytest.raises(KeyError):
        members_sql(store, check(query(segment("plain"))), NOW, TZ)


GOAL_VALUES = [0.0625, -0.0625, 0.1875, 2.675, -2.675, 0.0025, 1.0005, 0.0005, 1.2345, 123.4565, 0.3, 1e-4]


def test_goal_values_round_to_3_decimals_as_python_does(store: ClickHouse) -> None:
    """Ties go to even on the exact binary value: 0.0625 → 0.062, 2.675 (2.67499…) → 2.67, 0.0025 → 0.003."""
    rng = random.Random(5)
    values = (
        GOAL_VALUES
        + [rng.uniform(-5, 5) for _ in range(40)]
        + [rng.randint(-999, 999) / 16 for _ in range(20)]
    )
    profiles = [make_profile({}, profile_id=f"g{i:03d}") for i in range(len(values))]
    facts = {
        p.profile_id: ProfileFacts(goals=(GoalEvent("buy", v, NOW - timedelta(days=1)),))
        for p, v in zip(profiles, values, strict=True)
    }
    write_snapshots(store, profiles)
    write_facts(store, facts, noise=False)
    for value in sorted({round(v, 3) for v in values}):
        for operator in ("equal", "gt"):
            rule = {"kind": "goal", "goal": "buy", "aggregate": "sum", "operator": operator, "value": value}
            agree(store, check(query(rule)), profiles, facts)
    assert round(0.0625, 3) == 0.062 and round(2.675, 2) == 2.67 and round(0.0025, 3) == 0.003


# --- sources, groups and limits ----------------------------------------------------------------

PEOPLE = [make_profile({"score": i % 3, "_fname": f"N{i}"}, profile_id=f"p{i:02d}") for i in range(40)]
ELSEWHERE = [make_profile({}, profile_id=f"q{i}", database=OTHER_DB) for i in range(3)]


def test_sources_unite_each_with_its_own_limit(store: ClickHouse) -> None:
    write_snapshots(store, [*PEOPLE, *ELSEWHERE])
    facts = {p: IN_PLAIN for p in ("p05", "p07", "p09", "p30")}
    zero = field("score", "equal", 0)
    data = {
        "sources": [
            {"database_id": "db1", "rules": [segment("plain")], "limit": {"kind": "count", "count": 2}},
            {"database_id": "db2", "limit": {"kind": "count", "count": 1}},
            {"database_id": "db1", "rules": [field("profile_id", "in", ["p29", "p01"])]},
            {
                "database_id": "db1",
                "rules": [zero],
                "limit": {"kind": "percent", "from_pct": 1, "to_pct": 50},
            },
        ]
    }
    found = agree(store, check(data), [*PEOPLE, *ELSEWHERE], facts)
    assert {"p01", "p05", "p07", "p29", "q0"} <= set(found)
    for low, high in ((1, 50), (51, 100), (1, 1), (1, 100), (37, 63)):
        limit = {"kind": "percent", "from_pct": low, "to_pct": high}
        agree(store, check(query(zero, limit=limit)), PEOPLE, {})
    for count in (0, 1, 5, 14, 100):
        agree(store, check(query(zero, limit={"kind": "count", "count": count})), PEOPLE, {})


def test_deleted_profiles_and_later_snapshots(store: ClickHouse) -> None:
    ann = make_profile({"_fname": "Ann"}, profile_id="ann")
    write_snapshots(store, [ann], position=1)
    everyone = check(query())
    assert members_sql(store, everyone, NOW, TZ) == ("ann",)
    write_snapshots(store, [replace(ann, deleted=True)], position=2)
    write_snapshots(store, [replace(ann, fields={"_fname": "Old"})], position=1)  # an older row loses
    assert members_sql(store, everyone, NOW, TZ) == ()


def test_a_member_set_of_100000_ids(store: ClickHouse) -> None:
    """A large segment travels as one Array parameter: past 18.16's default max_query_size of 256 KiB."""
    profiles = [make_profile({}, profile_id=f"p{i:06d}") for i in range(0, 100_000, 997)]
    write_snapshots(store, profiles)
    big = {f"p{i:06d}" for i in range(100_000) if i % 2 == 0}
    held = tuple(p.profile_id for p in profiles if p.profile_id in big)
    found = members_sql(store, check(query(segment("plain"))), NOW, TZ, segments={"plain": big})
    assert found == held and len(held) > 40
    others = members_sql(store, check(query(segment("plain", "not_in"))), NOW, TZ, segments={"plain": big})
    assert set(others) == {p.profile_id for p in profiles} - set(held)


# --- the property: random profiles and queries -------------------------------------------------

DAY = timedelta(days=1)
TODAY = date(2026, 3, 15)  # NOW's day in Moscow


def near(days: int) -> str:
    return (TODAY + timedelta(days=days)).isoformat()


POOLS: dict[str, list[Any]] = {
    "_fname": ["Ann", "ann", "Bob", "Joanna", "Анна", "ΟΔΟΣ", "İlkay", "Straße"],
    "_city": ["Moscow", "moscow", "Санкт-Петербург", "Omsk"],
    "email": ["ann@example.com", "Ann@Mail.ru", "bob@yandex.ru", "Eve@Example.COM"],
    "phones": [["+79123456789"], ["+79161234567", "+79991234567"], ["+14155552671"]],
    "score": [-3, 0, 5, 7, 2**62, -(2**62)],
    "ratio": [0.0, 0.1, 0.5, 2.25, -1e-3],
    "vip": [True, False],
    "plan": ["Basic", "Pro"],
    "_sex": ["male", "female"],
    "labels": [["a"], ["a", "b"], ["b", "c"], ["A", "ц"]],
    "_ip": ["10.1.2.3", "192.168.1.1", "8.8.8.8"],
    "_regip": ["10.200.0.1", "172.16.5.4"],
    "_tz": ["Europe/Moscow", "UTC", "Asia/Kathmandu"],
    "_bdate": ["1990-03-15", "2000-02-29", "1960-02-29", "1955-03-16", "1985-12-31", "1970-01-01",
               "1969-12-31", near(-1), near(1), "0001-01-01"],
    "renewal": [near(days) for days in (-46, -45, -8, -7, -1, 0, 1, 3, 14, 60)],
    # Moscow's day starts (21:00 UTC) and the millisecond before them, Santiago's skipped midnight.
    "_regdate": [f"2026-03-{day:02d}T{time}Z" for day in (7, 8, 13, 14, 15, 16)
                 for time in ("20:59:59.999", "21:00:00.000")]
                + ["2020-01-01T12:00:00.000Z", "1999-12-31T23:59:59.000Z", "2026-09-06T03:59:59.999Z",
                   "2026-09-06T04:00:00.000Z", "2027-02-28T12:00:00.000Z"],
    "extra": [{"k": 1}, [1, 2]],
}  # fmt: skip
CALENDAR_FIELDS = frozenset({"_bdate", "renewal", "_regdate"})
CONTACTS = {
    "email": ["ann@example.com", "Bob@Mail.RU", "eve@yandex.ru"],
    "sms": ["+79123456789", "+79161234567"],
}
CIDRS = ["10.0.0.0/8", "10.1.2.3", "0.0.0.0/0", "192.168.0.0/16", "172.16.0.0/12"]
DAY_MONTHS = ["03-15", "02-29", "02-28", "03-16", "12-31", "01-01", "09-06"]
GOAL_VALUES_POOL = [1.0, 2.5, 0.0625, 0.01, 0.1, 0.2, -3.0, 100.5, 0.0025, 0.3]
REFERRERS = ["", "https://Shop.example.com/cart", "https://ПОИСК.рф/q", "http://other.example/"]
ACTIONS = list(MessageAction)
# (now, time zone) pairs the queries are asked at: zones with odd offsets and daylight saving, a
# sub-second instant, and days where 29 February and a skipped midnight matter.
MOMENTS = [
    (NOW, "Europe/Moscow"),
    (NOW, "America/Santiago"),
    (NOW + timedelta(hours=11, microseconds=500_000), "Asia/Kathmandu"),
    (NOW - 3 * DAY, "UTC"),
    (datetime(2026, 9, 5, 16, tzinfo=UTC), "America/Santiago"),
    (datetime(2027, 2, 28, 10, tzinfo=UTC), "Europe/Moscow"),
]
CSV_RULE = {"kind": "external", "field": "email", "source": {"kind": "csv", "file_id": "f1", "column": 1}}
POST_RULE = {
    "kind": "external",
    "field": "score",
    "source": {"kind": "post_url", "url": "https://crm.example.com/s"},
}
EXTERNAL_KEYS = [check(query(rule)).sources[0].rules[0].key for rule in (CSV_RULE, POST_RULE)]  # type: ignore[union-attr]


def flat(name: str) -> list[Any]:
    return [item for value in POOLS[name] for item in (value if isinstance(value, list) else [value])]


def random_profile(rng: random.Random, profile_id: str) -> ProfileState:
    """A profile made through the commands users send: fields, subscriptions, a status, maybe deleted."""
    fields = {name: rng.choice(pool) for name, pool in POOLS.items() if rng.random() < 0.6}
    subscriptions = []
    for channel in rng.sample(["email", "sms"], rng.randint(0, 2)):
        extra: dict[str, Any] = {}
        if channel == "email" and rng.random() < 0.6:
            extra["fields"] = {"level": rng.randint(0, 4)}
        if channel == "email" and rng.random() < 0.5:
            extra["categories"] = {rng.choice(["news", "promo"]): CategoryStatus.UNSUBSCRIBED}
        subscriptions.append(
            AddSubscription(
                resource_id="r1", channel=channel, contact=rng.choice(CONTACTS[channel]),
                at=NOW - timedelta(seconds=rng.randint(0, 200 * 86400)), resource=RESOURCE,
                status=rng.choice(list(Status)), priority=rng.randint(0, 3), **extra,
            )
        )  # fmt: skip
    profile = make_profile(fields, *subscriptions, profile_id=profile_id)
    events: list[Event] = []
    if rng.random() < 0.3:
        events += profile_decider.decide(
            ChangeGlobalStatus(profile_id, rng.choice(list(Status)), T0), profile
        )
    if rng.random() < 0.05:
        events += profile_decider.decide(DeleteProfile(profile_id, T0), profile)
    return profile_decider.fold(events, profile) if events else profile


def random_facts(rng: random.Random) -> ProfileFacts:
    def moment() -> datetime:
        if rng.random() < 0.3:  # exactly on a window's edge for some query
            return NOW - rng.choice([1, 7, 30]) * DAY
        return NOW + timedelta(seconds=rng.randint(-50 * 86400, 86400))

    history = tuple(
        HistoryEvent(rng.choice(ACTIONS), moment(), rng.choice(["c1", "c2", "c3"]), rng.choice(["t1", "t2"]),
                     rng.choice(["r1", "r2"]), rng.choice(["email", "sms"]), rng.choice(["", "buy", "sale"]))
        for _ in range(rng.randint(0, 6))
    )  # fmt: skip
    goals = tuple(
        GoalEvent(rng.choice(["purchase", "signup", ""]), rng.choice(GOAL_VALUES_POOL), moment(),
                  rng.choice(["", "px1", "px2"]), rng.choice(REFERRERS))
        for _ in range(rng.randint(0, 4))
    )  # fmt: skip
    segments = frozenset(s for s in ("plain", "static") if rng.random() < 0.4)
    external = frozenset(k for k in EXTERNAL_KEYS if rng.random() < 0.4)
    return ProfileFacts(history, goals, segments, external)


def random_value(rng: random.Random, field_type: FieldType, pool: list[Any], operator: Op) -> Any:
    """A value of the operator's shape, drawn so that it often hits the profiles' values."""
    if operator in (Op.IN, Op.NOT_IN):
        return rng.sample(pool, rng.randint(1, min(3, len(pool))))
    if operator is Op.BETWEEN:
        return sorted(rng.choices(pool, k=2))
    if operator in (Op.CONTAINS, Op.NOT_CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH):
        text = str(rng.choice(pool))
        start = rng.randrange(len(text)) if rng.random() < 0.5 else 0
        part = text[start : start + rng.randint(1, 4)]
        return (part.upper() if rng.random() < 0.3 else part).strip() or "a"
    choices: dict[Op, Any] = {
        Op.DOMAIN_EQUAL: ["example.com", "mail.ru", "yandex.ru"],
        Op.DOMAIN_NOT_EQUAL: ["example.com", "mail.ru"],
        Op.DOMAIN_CONTAINS: ["mail", "ya", "EX", "ru"],
        Op.IN_CIDR: CIDRS,
        Op.NOT_IN_CIDR: CIDRS,
    }
    if operator in choices:
        return rng.choice(choices[operator])
    if operator in (Op.HAS_ANY, Op.HAS_ALL, Op.HAS_NONE, Op.HAS_NOT_ALL):
        return rng.sample(["a", "b", "c", "A", "ц"], rng.randint(1, 3))
    if operator in (Op.RELATIVE_EQUAL, Op.RELATIVE_BEFORE, Op.RELATIVE_AFTER):
        return rng.choice([-46, -45, -7, -1, 0, 1, 14, rng.randint(-60, 60)])
    if operator is Op.RELATIVE_BETWEEN:
        return sorted([rng.randint(-60, 20), rng.randint(-60, 20)])
    if operator in (Op.IN_LAST_DAYS, Op.IN_NEXT_DAYS, Op.ANNIVERSARY):
        return rng.choice([0, 1, 3, 7, 45, rng.randint(0, 60)])
    if operator in (Op.MONTH_EQUAL, Op.MONTH_NOT_EQUAL):
        return rng.choice([2, 3, 9, 12, rng.randint(1, 12)])
    if operator in (Op.DAY_OF_MONTH_EQUAL, Op.DAY_OF_MONTH_NOT_EQUAL, Op.DAY_OF_MONTH_GT, Op.DAY_OF_MONTH_LT):
        return rng.choice([1, 14, 15, 16, 29, 31])
    if operator in (Op.DAY_MONTH_EQUAL, Op.DAY_MONTH_NOT_EQUAL, Op.DAY_MONTH_GT, Op.DAY_MONTH_LT):
        return rng.choice(DAY_MONTHS)
    if operator in NO_VALUE:
        return None
    return rng.choice(pool)


def random_condition(rng: random.Random, name: str, field_type: FieldType, pool: list[Any]) -> dict[str, Any]:
    operator = rng.choice(sorted(OPERATORS_BY_TYPE[field_type]))
    return field(name, operator, random_value(rng, field_type, pool, operator))


def random_field_rule(rng: random.Random, profile_ids: list[str]) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.05:
        return random_condition(rng, "profile_id", FieldType.STRING, rng.sample(profile_ids, 5))
    if roll < 0.1:
        return random_condition(rng, "status", FieldType.LIST, [s.value for s in Status])
    # Dates weigh more: their operators are many, and their edges (today, a local midnight) are thin.
    name = rng.choices(list(POOLS), [4 if name in CALENDAR_FIELDS else 1 for name in POOLS])[0]
    definition = DB.field(name)
    assert definition is not None
    return random_condition(rng, name, definition.type, flat(name))


def random_subscription_rule(rng: random.Random) -> dict[str, Any]:
    channel = rng.choice(["email", "sms"])
    rule: dict[str, Any] = {"kind": "subscription", "channel": channel}
    if rng.random() < 0.2:
        rule["operator"] = "not_exists"
    with_resource = rng.random() < 0.5
    if with_resource:
        rule["resource_id"] = "r1"
    statuses = [s.value for s in Status]
    if rng.random() < 0.4:
        rule["status_in"] = rng.sample(statuses, rng.randint(1, 3))
    elif rng.random() < 0.3:
        rule["status_not_in"] = rng.sample(statuses, rng.randint(1, 2))
    conditions = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        which = rng.choice(["contact", "priority", "registered_at", "level"])
        if which == "contact":
            contact_type = FieldType.EMAIL if channel == "email" else FieldType.PHONES
            conditions.append(random_condition(rng, "contact", contact_type, CONTACTS[channel]))
        elif which == "priority":
            conditions.append(random_condition(rng, "priority", FieldType.INT, [0, 1, 2, 3]))
        elif which == "registered_at":
            pool = [(NOW - timedelta(days=d)).isoformat() for d in (0, 30, 90, 200)]
            conditions.append(random_condition(rng, "registered_at", FieldType.DATETIME, pool))
        elif with_resource and channel == "email":
            conditions.append(random_condition(rng, "level", FieldType.INT, [0, 1, 2, 3, 4]))
    rule["conditions"] = [{k: v for k, v in c.items() if k != "kind"} for c in conditions]
    if with_resource and rng.random() < 0.3:
        rule["categories"] = [
            {"category": rng.choice(["news", "promo"]), "status": rng.choice(["subscribed", "unsubscribed"])}
        ]
    return rule


def random_period(rng: random.Random) -> dict[str, Any] | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.75:
        return {"kind": "last_days", "days": rng.choice([1, 7, 30, rng.randint(1, 45)])}
    start = rng.randint(-50, 0)
    return {"kind": "between", "date_from": near(start), "date_to": near(start + rng.randint(0, 20))}


def random_history_rule(rng: random.Random) -> dict[str, Any]:
    action = rng.choice(ACTIONS)
    rule: dict[str, Any] = {"kind": "message_history", "action": action.value, "period": random_period(rng)}
    if rng.random() < 0.25:
        rule["never"] = True
    else:
        rule["at_least"] = rng.choice([1, 1, 2, 3])
    for key, pool in (("channel", ["email", "sms"]), ("resource_id", ["r1", "r2"])):
        if rng.random() < 0.2:
            rule[key] = rng.choice(pool)
    for key, pool in (("campaign_ids", ["c1", "c2", "c3", "c9"]), ("template_ids", ["t1", "t2"])):
        if rng.random() < 0.2:
            rule[key] = rng.sample(pool, rng.randint(1, 2))
    if action is MessageAction.CLICKED and rng.random() < 0.4:
        rule["link_name"] = rng.choice(["buy", "sale"])
    return rule


def random_goal_rule(rng: random.Random) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "kind": "goal",
        "aggregate": rng.choice(["count", "sum", "avg"]),
        "operator": rng.choice(["equal", "not_equal", "gt", "gte", "lt", "lte"]),
        "value": rng.choice([0, 1, 2, 2.5, 100.5, 0.063, 0.062, 0.3, 3.5, 0.01, 0.002, 0.003, 102.5]),
        "goal": rng.choice(["purchase", "signup", None]),
        "period": random_period(rng),
    }
    if rng.random() < 0.2:
        rule["pixel_id"] = rng.choice(["px1", "px2"])
    if rng.random() < 0.2:
        rule["referrer"] = rng.choice(["shop", "ПОИСК", "SHOP.example", "поиск.РФ"])
    return rule


def random_rule(rng: random.Random, profile_ids: list[str]) -> dict[str, Any]:
    kind = rng.choices(
        ["field", "subscription", "history", "goal", "segment", "external"], [8, 3, 3, 3, 1, 1.5]
    )[0]
    if kind == "field":
        return random_field_rule(rng, profile_ids)
    if kind == "subscription":
        return random_subscription_rule(rng)
    if kind == "history":
        return random_history_rule(rng)
    if kind == "goal":
        return random_goal_rule(rng)
    if kind == "segment":
        return segment(rng.choice(["plain", "static"]), rng.choice(["in", "not_in"]))
    operator = rng.choice(["in", "not_in"])
    if rng.random() < 0.5:
        return {**rng.choice([CSV_RULE, POST_RULE]), "operator": operator}
    name = rng.choice(["email", "score", "_fname"])
    values = rng.sample(flat(name), rng.randint(1, 3))
    return {
        "kind": "external",
        "field": name,
        "operator": operator,
        "source": {"kind": "list", "values": values},
    }


def random_source(rng: random.Random, profile_ids: list[str]) -> dict[str, Any]:
    source: dict[str, Any] = {
        "database_id": "db1" if rng.random() < 0.9 else "db2",
        "condition": rng.choice(["and", "or"]),
        "rules": [random_rule(rng, profile_ids) for _ in range(rng.choice([0, 1, 1, 2, 2, 3]))],
        "groups": [
            {
                "condition": rng.choice(["and", "or"]),
                "rules": [random_rule(rng, profile_ids) for _ in range(rng.randint(1, 3))],
            }
            for _ in range(rng.choice([0, 0, 1, 2]))
        ],
    }
    roll = rng.random()
    if roll < 0.2:
        source["limit"] = {"kind": "count", "count": rng.choice([0, 1, 5, 20, rng.randint(1, 60)])}
    elif roll < 0.4:
        low = rng.randint(1, 100)
        source["limit"] = {"kind": "percent", "from_pct": low, "to_pct": rng.randint(low, 100)}
    return source


def random_query(rng: random.Random, profile_ids: list[str]) -> SegmentQuery:
    while True:
        data = {"sources": [random_source(rng, profile_ids) for _ in range(rng.choice([1, 1, 1, 2, 3]))]}
        try:
            return check(data)
        except ValidationFailed:
            continue  # a drawn value the field refuses (a range out of order...): draw again


QUERIES_PER_ADAPTER = 320


@functools.cache
def world() -> tuple[
    list[ProfileState], dict[str, ProfileFacts], list[tuple[SegmentQuery, datetime, str, tuple[str, ...]]]
]:
    """The seeded profiles, their facts, and each query with the per-profile evaluator's members (once)."""
    rng = random.Random(20260315)
    profiles = [random_profile(rng, f"x{i:03d}") for i in range(150)]
    profiles += [make_profile({"_fname": "Ann"}, profile_id=f"y{i}", database=OTHER_DB) for i in range(6)]
    facts = {p.profile_id: random_facts(rng) for p in profiles}
    ids = [p.profile_id for p in profiles]
    cases = []
    for _ in range(QUERIES_PER_ADAPTER):
        checked = random_query(rng, ids)
        now, timezone = rng.choice(MOMENTS)
        expected = members(checked, profiles, facts.__getitem__, now, timezone)
        cases.append((checked, now, timezone, expected))
    return profiles, facts, cases


def test_random_profiles_and_queries_agree(store: ClickHouse) -> None:
    profiles, facts, cases = world()
    write_snapshots(store, profiles)
    write_facts(store, facts)
    wrong = []
    for checked, now, timezone, expected in cases:
        segments, external = sets_of(facts, checked)
        found = members_sql(store, checked, now, timezone, segments=segments, external=external)
        if found != expected:
            extra, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
            wrong.append(
                (checked.model_dump(mode="json", exclude_defaults=True), now, timezone, extra, missing)
            )
    assert not wrong, (len(wrong), wrong[:3])
    hits = [len(expected) for *_, expected in cases]
    assert sum(1 for n in hits if n == 0) < len(cases) / 2  # the draws mostly select someone
    assert sum(1 for n in hits if n == len(profiles)) < len(cases) / 10


def day_edges(now: datetime, timezone: str) -> list[str]:
    """The first millisecond of each local day around `now` in the zone, and the millisecond before it."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    edges = []
    for offset in range(-9, 16):
        day = today + timedelta(days=offset)
        # Zones change offsets on whole minutes: walk minutes from well before midnight.
        early = datetime.combine(day, datetime.min.time(), tzinfo=zone).astimezone(UTC) - timedelta(hours=3)
        minutes = (early + timedelta(minutes=m) for m in range(6 * 60))
        start = next(moment for moment in minutes if moment.astimezone(zone).date() >= day)
        edges += [start, start - timedelta(milliseconds=1)]
    return [format_datetime(edge) for edge in edges]


# São Paulo moved its clocks at midnight in 2018: back on 18 February (00:00 → 23:00 of the 17th, which
# came twice) and forward on 4 November (00:00 → 01:00, a day without its midnight).
CALENDAR_MOMENTS = [*MOMENTS, (datetime(2018, 2, 17, 12, tzinfo=UTC), "America/Sao_Paulo"),
                    (datetime(2018, 11, 3, 12, tzinfo=UTC), "America/Sao_Paulo")]  # fmt: skip


@functools.cache
def calendar_world() -> tuple[list[ProfileState], list[tuple[SegmentQuery, datetime, str, tuple[str, ...]]]]:
    """Profiles whose dates sit on every local day's edge at every moment, and one-rule calendar queries."""
    rng = random.Random(315)
    datetimes = sorted({edge for now, timezone in CALENDAR_MOMENTS for edge in day_edges(now, timezone)})
    days = [near(offset) for offset in range(-50, 64)] + [
        "2000-02-29",
        "1960-02-29",
        "1955-02-28",
        "0001-01-01",
    ]
    size = max(len(datetimes), len(days))
    profiles = [
        make_profile({"_regdate": datetimes[i % len(datetimes)], "renewal": days[i % len(days)],
                      "_bdate": days[(i * 7) % len(days)]} if i % 17 else {}, profile_id=f"c{i:03d}")
        for i in range(size)
    ]  # fmt: skip
    calendar_ops = sorted(op for op in OPERATORS_BY_TYPE[FieldType.DATE] if op in CALENDAR)
    cases = []
    for now, timezone in CALENDAR_MOMENTS:
        for name, field_type in (
            ("_regdate", FieldType.DATETIME),
            ("renewal", FieldType.DATE),
            ("_bdate", FieldType.DATE),
        ):
            for operator in calendar_ops:
                checked = check(query(field(name, operator, random_value(rng, field_type, [], operator))))
                expected = members(checked, profiles, lambda _: NO_FACTS, now, timezone)
                cases.append((checked, now, timezone, expected))
    return profiles, cases


def test_calendar_operators_agree_on_every_local_days_edge(store: ClickHouse) -> None:
    profiles, cases = calendar_world()
    write_snapshots(store, profiles)
    wrong = [
        (checked.sources[0].rules[0], now, timezone)
        for checked, now, timezone, expected in cases
        if members_sql(store, checked, now, timezone) != expected
    ]
    assert wrong == []
