"""The cohort, lifetime, funnel and goals reports on both ClickHouse adapters (chDB, Debian's 18.16).

Each test loads a generated fixture (a few hundred rows per table, from a fixed seed; some rows
inserted twice, as a retried batch would) into a fresh store, runs a report, and compares every
number with the same figure computed here in plain Python from the fixture rows, following the
definitions in the reports' docstrings. The funnel's ordering rules also have small hand-written
cases with their answers written out.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from herald.infra.clickhouse import ClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.projections.clickhouse_sink import TABLE_COLUMNS
from herald.reports.base import Period, ReportError, ReportRequest
from herald.reports.cohort import CohortReport
from herald.reports.funnel import FunnelReport
from herald.reports.goals import GoalsReport
from herald.reports.lifetime import LifetimeReport

PERIOD = Period(date(2026, 1, 7), date(2026, 3, 18))  # Wednesday to Wednesday: partial first/last weeks
DATA_START = date(2025, 12, 22)  # data starts before the period and ends after it
DATA_DAYS = 100
CAMPAIGNS = {"c1": ("t1", "r1", "email"), "c2": ("t2", "r1", "email"), "c3": ("t1", "r2", "sms")}
GOAL_VALUES = (-40.0, -12.5, 0.0, 5.0, 25.5, 100.0, 250.0)  # exact in binary: sums are exact
SEGMENTS = {"vip": frozenset({f"p{n:02d}" for n in range(0, 48, 3)} | {"p99"})}  # p99 has no events

# The columns this fixture fills: all of some tables (as the sink writes them), a subset of others.
# The sink's own column lists: a row leaves out what its report does not read (`_default` fills it).
COLUMNS = {
    table: TABLE_COLUMNS[table]
    for table in ("profile_creations", "message_events", "goal_events", "subscription_changes")
}

Row = dict[str, Any]


@dataclass
class Dataset:
    """Rows per report table, as the sink would write them (one per event, positions increasing)."""

    tables: dict[str, list[Row]] = field(default_factory=lambda: {table: [] for table in COLUMNS})
    positions: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, table: str, at: datetime, **values: Any) -> Row:
        position = next(self.positions)
        row = {
            "event_id": f"{table[:2]}{position}",
            "position": position,
            "at": at,
            "day": at.date(),
            **values,
        }
        self.tables[table].append(row)
        return row

    def load(self, ch: ClickHouse, retried: int = 0) -> None:
        """Insert every table; then insert `retried` rows of each again, as a retried batch would."""
        migrate(ch)
        for table, rows in self.tables.items():
            columns = COLUMNS[table]
            for batch in (rows, rows[:: max(1, len(rows) // retried)] if retried else []):
                ch.insert(
                    table,
                    columns,
                    [tuple(row.get(column, _default(column)) for column in columns) for row in batch],
                )

    def __getitem__(self, table: str) -> list[Row]:
        return self.tables[table]


def _default(column: str) -> Any:
    if column == "value":
        return 0.0
    return 0 if column in ("is_unique", "is_test", "is_bot", "template_version") else ""


def at(day: date, second: int) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=second)


def generated_dataset() -> Dataset:
    """48 profiles in two databases with their messages, goal events and subscription changes."""
    rng = random.Random(6)
    data = Dataset()
    profiles = [f"p{n:02d}" for n in range(48)]
    databases = {profile: "db2" if n % 4 == 3 else "db1" for n, profile in enumerate(profiles)}
    for n, profile in enumerate(profiles):
        created = DATA_START + timedelta(days=rng.randrange(DATA_DAYS))
        is_test = int(n % 11 == 5)
        creation = {
            "profile_id": profile,
            "database_id": databases[profile],
            "source": "import",
            "is_test": is_test,
        }
        data.add("profile_creations", at(created, rng.randrange(86400)), **creation)
        if n == 7:  # imported again later: the first creation makes the cohort
            data.add("profile_creations", at(created + timedelta(days=9), 0), **creation)
        for _ in range(rng.randrange(6)):
            start = at(created + timedelta(days=rng.randrange(-3, 45)), rng.randrange(86400))
            _message(data, rng, profile, databases[profile], rng.choice(sorted(CAMPAIGNS)), start)
    # A profile created before the data starts: its events belong to no cohort.
    _message(data, rng, "p90", "db1", "c1", at(date(2026, 2, 2), 3600))
    for _ in range(320):
        _goal_event(data, rng, rng.choice([*profiles, "", "", ""]), databases)
    for _ in range(150):
        profile = rng.choice(profiles)
        before, status = rng.choice(
            [
                ("", "subscribed"),
                ("unsubscribed", "subscribed"),
                ("subscribed", "unsubscribed"),
                ("unconfirmed", "subscribed"),
            ]
        )
        day = DATA_START + timedelta(days=rng.randrange(DATA_DAYS))
        data.add(
            "subscription_changes",
            at(day, rng.randrange(86400)),
            profile_id=profile,
            database_id=databases[profile],
            resource_id=rng.choice(["r1", "r2"]),
            channel=rng.choice(["email", "sms"]),
            status_before=before,
            status=status,
            cause="api",
            is_test=int(rng.random() < 0.1),
        )
    return data


def _message(
    data: Dataset, rng: random.Random, profile: str, database: str, campaign: str, sent: datetime
) -> None:
    """One message's events: sent, maybe delivered, then opens and clicks, unique by the 24 h rule."""
    template, resource, channel = CAMPAIGNS[campaign]
    message = f"msg-{len(data['message_events'])}"
    common = {
        "message_id": message,
        "campaign_id": campaign,
        "template_id": template,
        "database_id": database,
        "resource_id": resource,
        "channel": channel,
        "profile_id": profile,
        "is_test": int(rng.random() < 0.1),
    }
    data.add("message_events", sent, event_type="sent", **common)
    if rng.random() < 0.15:
        return
    data.add("message_events", sent + timedelta(seconds=_delay(rng, 900)), event_type="delivered", **common)
    opens = sorted(sent + timedelta(seconds=rng.randrange(60, 12 * 86400)) for _ in range(rng.randrange(4)))
    last_unique: dict[str, datetime] = {}
    for opened in opens:
        actions = [("open", opened)]
        if rng.random() < 0.6:
            actions.append(("click", opened + timedelta(seconds=_delay(rng, 7200))))
        for action, time in actions:
            bot = rng.random() < 0.12
            unique = not bot and (
                action not in last_unique or time - last_unique[action] >= timedelta(hours=24)
            )
            if unique:
                last_unique[action] = time
            data.add(
                "message_events", time, event_type=action, is_unique=int(unique), is_bot=int(bot), **common
            )


def _delay(rng: random.Random, most: int) -> int:
    """Seconds to the next event of a message: often none, so the log position alone orders them."""
    return 0 if rng.random() < 0.3 else rng.randrange(1, most)


def _goal_event(data: Dataset, rng: random.Random, profile: str, databases: Mapping[str, str]) -> None:
    day = DATA_START + timedelta(days=rng.randrange(DATA_DAYS))
    data.add(
        "goal_events",
        at(day, rng.randrange(86400)),
        profile_id=profile,
        anonymous_id="" if profile else f"a{rng.randrange(30)}",
        database_id=databases.get(profile, ""),
        pixel_id=rng.choice(["px1", "px2", "px3"]),
        goal=rng.choice(["purchase", "signup", "view", "cart"]),
        value=rng.choice(GOAL_VALUES),
        referrer=rng.choice(["", "google.com", "mail.ru"]),
        browser=rng.choice(["Chrome", "Firefox", "Safari"]),
        os=rng.choice(["Windows", "Android", "iOS"]),
        country=rng.choice(["RU", "DE", "KZ"]),
        city=rng.choice(["Moscow", "Berlin", "Almaty", "Kazan"]),
    )


DATA = generated_dataset()


@pytest.fixture
def loaded(clickhouse: ClickHouse) -> ClickHouse:
    """A fresh store holding DATA, some rows of it twice (FINAL must count them once)."""
    DATA.load(clickhouse, retried=40)
    return clickhouse


def request(**fields: Any) -> ReportRequest:
    return ReportRequest(PERIOD, **fields)


def assert_rows(actual: Sequence[Sequence[Any]], expected: Sequence[Sequence[Any]]) -> None:
    """Rows equal cell by cell; floats up to rounding (the engines add in another order)."""
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        assert len(got) == len(want), (got, want)
        for cell, value in zip(got, want, strict=True):
            if isinstance(value, float) and value is not None:
                assert cell == pytest.approx(value, rel=1e-9, abs=1e-9), (got, want)
            else:
                assert cell == value and type(cell) is type(value), (got, want)


# ------------------------------------------------------------------ the Python side: calendar


def bucket(day: date, unit: str) -> date:
    if unit == "month":
        return date(day.year, day.month, 1)
    if unit == "week":
        return day - timedelta(days=day.weekday())
    return day


def buckets_between(first: date, second: date, unit: str) -> int:
    """How many buckets `second`'s bucket comes after `first`'s."""
    if unit == "month":
        return (second.year - first.year) * 12 + second.month - first.month
    days = (bucket(second, unit) - bucket(first, unit)).days
    return days // 7 if unit == "week" else days


def bucket_after(start: date, count: int, unit: str) -> date:
    if unit == "month":
        month = start.month - 1 + count
        return date(start.year + month // 12, month % 12 + 1, 1)
    return bucket(start, unit) + timedelta(days=count * (7 if unit == "week" else 1))


def in_period(row: Row) -> bool:
    day: date = row["day"]
    return PERIOD.start <= day <= PERIOD.end


# ------------------------------------------------------------------ cohort


def expected_cohorts(database: str = "", include_tests: bool = False, unit: str = "week") -> dict[str, date]:
    """profile → cohort start, for profiles created in the period (first creation)."""
    first: dict[str, date] = {}
    for row in DATA["profile_creations"]:
        if in_period(row) and database in ("", row["database_id"]) and (include_tests or not row["is_test"]):
            first[row["profile_id"]] = min(first.get(row["profile_id"], row["day"]), row["day"])
    return {profile: bucket(day, unit) for profile, day in first.items()}


def expected_cohort_table(
    unit: str,
    value: str,
    database: str = "",
    resource: str = "",
    channel: str = "",
    include_tests: bool = False,
) -> list[tuple[Any, ...]]:
    cohorts = expected_cohorts(database, include_tests, unit)
    sizes = Counter(cohorts.values())
    sums: dict[tuple[date, int], Counter[str]] = defaultdict(Counter)
    for row in DATA["message_events"]:
        if not in_period(row) or row["profile_id"] not in cohorts or (row["is_test"] and not include_tests):
            continue
        if resource not in ("", row["resource_id"]) or channel not in ("", row["channel"]):
            continue
        cohort = cohorts[row["profile_id"]]
        if bucket(row["day"], unit) < cohort:
            continue
        counted = sums[(cohort, buckets_between(cohort, row["day"], unit) + 1)]
        if row["event_type"] == "sent":
            counted["sent"] += 1
        elif row["event_type"] in ("open", "click") and row["is_unique"]:
            counted[row["event_type"]] += 1
    width = buckets_between(PERIOD.start, PERIOD.end, unit) + 1
    rows: list[tuple[Any, ...]] = []
    for cohort in sorted(sizes):
        cells: list[Any] = []
        for n in range(1, width + 1):
            counted = sums.get((cohort, n), Counter())
            cells.append(
                None if bucket_after(cohort, n - 1, unit) > PERIOD.end else cohort_value(value, counted)
            )
        rows.append((cohort, sizes[cohort], *cells))
    averages = []
    for column in range(2, width + 2):
        present = [row[column] for row in rows if row[column] is not None]
        averages.append(sum(present) / len(present) if present else None)
    rows.append(("average", sum(sizes.values()), *averages))
    return rows


def cohort_value(value: str, counted: Counter[str]) -> Any:
    sent, opens, clicks = counted["sent"], counted["open"], counted["click"]
    if value == "unique_clicks":
        return clicks
    if value == "unique_opens":
        return opens
    ratio = {
        "clicks_per_open": (clicks, opens),
        "opens_per_sent": (opens, sent),
        "clicks_per_sent": (clicks, sent),
    }[value]
    return ratio[0] / ratio[1] if ratio[1] else None


@pytest.mark.parametrize(
    ("unit", "value", "filters", "include_tests"),
    [
        ("week", "unique_clicks", {}, False),
        ("week", "unique_opens", {"database": "db1"}, False),
        ("week", "clicks_per_open", {}, True),
        ("month", "opens_per_sent", {"resource": "r1"}, False),
        ("month", "clicks_per_sent", {"channel": "email", "database": "db1"}, False),
        ("month", "unique_clicks", {"database": "db2"}, True),
    ],
)
def test_cohort_values_match_the_fixture(
    loaded: ClickHouse, unit: str, value: str, filters: dict[str, str], include_tests: bool
) -> None:
    result = CohortReport().run(
        loaded,
        request(params={"interval": unit}, metrics=(value,), filters=filters, include_tests=include_tests),
    )

    expected = expected_cohort_table(unit, value, **filters, include_tests=include_tests)
    width = buckets_between(PERIOD.start, PERIOD.end, unit) + 1
    assert result.columns == ("cohort", "profiles", *(f"{unit}_{n}" for n in range(1, width + 1)))
    assert_rows(result.rows, expected)
    assert len(result.rows) > 3  # the fixture makes several cohorts


def test_cohort_defaults_to_weekly_unique_clicks(loaded: ClickHouse) -> None:
    result = CohortReport().run(loaded, request())

    assert_rows(result.rows, expected_cohort_table("week", "unique_clicks"))


# ------------------------------------------------------------------ lifetime


def expected_lifetime_table(
    unit: str, activity_unit: str, database: str, resource: str = "", include_tests: bool = False
) -> list[tuple[Any, ...]]:
    cohorts = expected_cohorts(database, include_tests, unit)
    daily: dict[date, Counter[date]] = defaultdict(Counter)
    for row in DATA["message_events"]:
        if row["event_type"] != "click" or not row["is_unique"] or not in_period(row):
            continue
        if row["profile_id"] not in cohorts or resource not in ("", row["resource_id"]):
            continue
        if (row["is_test"] and not include_tests) or row["day"] < cohorts[row["profile_id"]]:
            continue
        daily[cohorts[row["profile_id"]]][row["day"]] += 1
    width = buckets_between(bucket(PERIOD.start, unit), PERIOD.end, activity_unit) + 1
    rows = []
    for cohort, size in sorted(Counter(cohorts.values()).items()):
        clicks = daily[cohort]
        peak = max(clicks.values(), default=0)
        kept = [count for count in clicks.values() if Fraction(count) >= Fraction(5, 100) * peak]
        lifetime = sum(count / peak for count in kept) if peak else 0.0
        per_interval: Counter[int] = Counter()
        for day, count in clicks.items():
            per_interval[buckets_between(cohort, day, activity_unit) + 1] += count
        busiest = max(per_interval.values(), default=0)
        cells = [
            None
            if not busiest or bucket_after(cohort, n - 1, activity_unit) > PERIOD.end
            else per_interval[n] / busiest
            for n in range(1, width + 1)
        ]
        rows.append((cohort, size, peak, len(kept) if peak else 0, lifetime, *cells))
    return rows


@pytest.mark.parametrize(
    ("unit", "activity_unit", "database", "resource", "include_tests"),
    [
        ("week", "week", "db1", "", False),
        ("week", "week", "", "", False),  # every database
        ("week", "day", "db1", "r1", False),
        ("month", "month", "db1", "", True),
        ("month", "week", "db2", "", False),
    ],
)
def test_lifetime_follows_the_guides_algorithm(
    loaded: ClickHouse, unit: str, activity_unit: str, database: str, resource: str, include_tests: bool
) -> None:
    filters = {name: value for name, value in (("database", database), ("resource", resource)) if value}
    result = LifetimeReport().run(
        loaded,
        request(
            filters=filters,
            include_tests=include_tests,
            params={"interval": unit, "activity_interval": activity_unit},
        ),
    )

    expected = expected_lifetime_table(unit, activity_unit, database, resource, include_tests)
    assert result.columns[:5] == ("cohort", "profiles", "peak_clicks", "active_days", "lifetime_days")
    assert result.columns[5:] == tuple(f"{activity_unit}_{n}" for n in range(1, len(expected[0]) - 4))
    assert_rows(result.rows, expected)
    assert any(row[4] > 1 for row in expected)  # some cohort is active on more than its peak day


def test_lifetime_of_a_hand_counted_cohort(clickhouse: ClickHouse) -> None:
    data = Dataset()
    monday = date(2026, 1, 12)
    data.add("profile_creations", at(monday, 0), profile_id="a", database_id="db1")
    data.add("profile_creations", at(monday + timedelta(days=1), 0), profile_id="b", database_id="db1")
    # unique clicks per day: 30 (peak), 5, 1 (under 5 % of 30: left out), 2; non-unique clicks don't count
    for day, clicks in ((0, 22), (1, 5), (2, 1), (9, 2)):
        for n in range(clicks):
            profile = "a" if n % 2 else "b"
            data.add(
                "message_events",
                at(monday + timedelta(days=day), n),
                event_type="click",
                profile_id=profile,
                is_unique=1,
            )
    for n in range(8):
        data.add("message_events", at(monday, 100 + n), event_type="click", profile_id="a", is_unique=1)
        data.add("message_events", at(monday, 200 + n), event_type="click", profile_id="a", is_unique=0)
    data.load(clickhouse)

    result = LifetimeReport().run(
        clickhouse, ReportRequest(Period(monday, monday + timedelta(days=20)), filters={"database": "db1"})
    )

    assert result.columns == (
        "cohort",
        "profiles",
        "peak_clicks",
        "active_days",
        "lifetime_days",
        "week_1",
        "week_2",
        "week_3",
    )
    # lifetime = 30/30 + 5/30 + 2/30 days; weeks: 36 clicks (the peak), 2, none
    assert_rows(result.rows, [(monday, 2, 30, 3, 37 / 30, 1.0, 2 / 36, 0.0)])


# ------------------------------------------------------------------ funnel


ACTION_EVENTS = {"sent": "sent", "delivered": "delivered", "open": "open", "click": "click"}


def step_matches(step: Mapping[str, Any], table: str, row: Row) -> bool:
    """Whether one fixture row is an event of `step` (the definitions of the funnel's docstring)."""
    kind = step["kind"]
    if kind in ("template_action", "campaign_action"):
        key = "template_id" if kind == "template_action" else "campaign_id"
        return (
            table == "message_events"
            and row[key] == step["id"]
            and row["event_type"] == ACTION_EVENTS[step["action"]]
            and step.get("channel", row["channel"]) == row["channel"]
        )
    if kind == "pixel_visit":
        return table == "goal_events" and row["pixel_id"] == step["id"]
    if kind == "goal":
        return (
            table == "goal_events"
            and row["goal"] == step["goal"]
            and step.get("id", row["pixel_id"]) == row["pixel_id"]
        )
    if kind == "subscription":
        return (
            table == "subscription_changes"
            and row["resource_id"] == step["id"]
            and step.get("channel", row["channel"]) == row["channel"]
            and row["status"] == "subscribed"
            and row["status_before"] != "subscribed"
        )
    return False


def expected_funnel(
    data: Dataset,
    steps: Sequence[Mapping[str, Any]],
    period: Period = PERIOD,
    include_tests: bool = False,
    segments: Mapping[str, frozenset[str]] = SEGMENTS,
) -> list[int]:
    """Profiles reaching each step: greedy earliest completion over each profile's ordered events."""
    events: dict[str, list[tuple[datetime, int, Row, str]]] = defaultdict(list)
    for table in ("message_events", "goal_events", "subscription_changes"):
        for row in data[table]:
            if not row["profile_id"] or not period.start <= row["day"] <= period.end:
                continue
            if (row.get("is_test") and not include_tests) or row.get("is_bot"):
                continue
            events[row["profile_id"]].append((row["at"], row["position"], row, table))
    profiles = set(events)
    if steps[0]["kind"] == "segment":
        profiles |= segments[steps[0]["id"]]
    reached = [0] * len(steps)
    for profile in profiles:
        ordered = sorted(events[profile], key=lambda event: (event[0], event[1]))
        completes = [completed_steps(steps, ordered, index) for index in range(len(ordered))]
        last = -1  # the index of the event that completed the previous step
        for number, step in enumerate(steps):
            if step["kind"] == "segment":
                if profile not in segments[step["id"]]:
                    break
            else:
                later = [index for index in range(last + 1, len(ordered)) if number in completes[index]]
                if not later:
                    break
                last = later[0]
            reached[number] += 1
    return reached


def completed_steps(
    steps: Sequence[Mapping[str, Any]], ordered: Sequence[tuple[datetime, int, Row, str]], index: int
) -> set[int]:
    """The steps the event at `index` can complete: it matches, and a minimum value is reached by then."""
    _, _, row, table = ordered[index]
    found = set()
    for number, step in enumerate(steps):
        if not step_matches(step, table, row):
            continue
        if "min_value" in step:
            matching = [event[2] for event in ordered[: index + 1] if step_matches(step, event[3], event[2])]
            if sum(event["value"] for event in matching) < step["min_value"]:
                continue
        found.add(number)
    return found


def funnel(segments: Mapping[str, frozenset[str]] = SEGMENTS) -> FunnelReport:
    return FunnelReport(lambda segment_id: segments[segment_id])


def funnel_rows(counts: Sequence[int], steps: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    def percent(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return [
        (n + 1, step["kind"], count, percent(count, counts[0]), percent(count, counts[n - 1]) if n else None)
        for n, (step, count) in enumerate(zip(steps, counts, strict=True))
    ]


FUNNELS: list[list[dict[str, Any]]] = [
    [
        {"kind": "campaign_action", "id": "c1", "action": "sent"},
        {"kind": "campaign_action", "id": "c1", "action": "delivered"},
        {"kind": "campaign_action", "id": "c1", "action": "open"},
        {"kind": "campaign_action", "id": "c1", "action": "click"},
    ],
    [
        {"kind": "subscription", "id": "r1"},
        {"kind": "template_action", "id": "t1", "action": "delivered"},
        {"kind": "goal", "goal": "purchase", "min_value": 100},
    ],
    [
        {"kind": "pixel_visit", "id": "px1"},
        {"kind": "goal", "goal": "signup", "id": "px2"},
        {"kind": "campaign_action", "id": "c2", "action": "delivered", "channel": "email"},
    ],
    [
        {"kind": "segment", "id": "vip"},
        {"kind": "template_action", "id": "t1", "action": "sent"},
        {"kind": "pixel_visit", "id": "px3", "min_value": 30},
    ],
    [
        {"kind": "template_action", "id": "t1", "action": "delivered"},
        {"kind": "segment", "id": "vip"},
        {"kind": "goal", "goal": "view"},
        {"kind": "subscription", "id": "r2", "channel": "sms"},
    ],
]


@pytest.mark.parametrize("steps", FUNNELS, ids=[f"funnel{n}" for n in range(len(FUNNELS))])
@pytest.mark.parametrize("include_tests", [False, True])
def test_funnel_counts_match_the_fixture(
    loaded: ClickHouse, steps: list[dict[str, Any]], include_tests: bool
) -> None:
    result = funnel().run(loaded, request(params={"steps": steps}, include_tests=include_tests))

    counts = expected_funnel(DATA, steps, include_tests=include_tests)
    assert result.columns == ("step", "kind", "profiles", "of_first", "of_previous")
    assert_rows(result.rows, funnel_rows(counts, steps))
    assert counts[0] > counts[-1] > 0  # the funnel narrows, and someone goes all the way


def test_a_funnel_of_32_steps_runs_and_matches(loaded: ClickHouse) -> None:
    kinds: list[dict[str, Any]] = [
        {"kind": "campaign_action", "id": "c1", "action": "sent"},
        {"kind": "goal", "goal": "view"},
        {"kind": "subscription", "id": "r1"},
        {"kind": "pixel_visit", "id": "px2", "min_value": 5},
    ]
    steps = [{"kind": "segment", "id": "vip"}, *(kinds * 8)][:32]

    result = funnel().run(loaded, request(params={"steps": steps}))

    assert_rows(result.rows, funnel_rows(expected_funnel(DATA, steps), steps))


# Hand-written cases: one profile's (or a few) events with the answer written out.

DAY = date(2026, 2, 10)
SHORT = Period(DAY, DAY + timedelta(days=6))
SENT = {"kind": "campaign_action", "id": "c1", "action": "sent"}
OPEN = {"kind": "campaign_action", "id": "c1", "action": "open"}
CLICK = {"kind": "campaign_action", "id": "c1", "action": "click"}
T1_CLICK = {"kind": "template_action", "id": "t1", "action": "click"}
BUY = {"kind": "goal", "goal": "buy"}


def message(data: Dataset, profile: str, action: str, second: int, day: date = DAY, **values: Any) -> None:
    data.add(
        "message_events",
        at(day, second),
        event_type=action,
        campaign_id="c1",
        template_id="t1",
        channel="email",
        profile_id=profile,
        **values,
    )


def goal(data: Dataset, profile: str, second: int, value: float = 0.0, name: str = "buy") -> None:
    data.add("goal_events", at(DAY, second), profile_id=profile, goal=name, pixel_id="px1", value=value)


def reached(
    ch: ClickHouse,
    data: Dataset,
    steps: Sequence[Mapping[str, Any]],
    segments: Mapping[str, frozenset[str]] = SEGMENTS,
    include_tests: bool = False,
) -> list[int]:
    data.load(ch)
    result = funnel(segments).run(
        ch, ReportRequest(SHORT, params={"steps": steps}, include_tests=include_tests)
    )
    counts = [row[2] for row in result.rows]
    assert counts == expected_funnel(data, steps, SHORT, include_tests, segments)  # the Python model agrees
    return counts


def test_steps_out_of_order_do_not_count(clickhouse: ClickHouse) -> None:
    data = Dataset()
    message(data, "in_order", "sent", 10)
    message(data, "in_order", "open", 20)
    message(data, "in_order", "click", 30)
    message(data, "reversed", "sent", 10)
    message(data, "reversed", "click", 20)  # clicked before the open that follows
    message(data, "reversed", "open", 30)
    message(data, "open_only_before", "open", 5)
    message(data, "open_only_before", "sent", 10)

    assert reached(clickhouse, data, [SENT, OPEN, CLICK]) == [3, 2, 1]


def test_a_later_repeat_of_a_step_can_complete_the_chain(clickhouse: ClickHouse) -> None:
    data = Dataset()
    message(data, "p", "click", 10)
    message(data, "p", "open", 20)
    message(data, "p", "click", 30)  # a click after the open: the funnel sent→open→click needs no sent here

    assert reached(clickhouse, data, [OPEN, CLICK]) == [1, 1]
    assert reached(clickhouse, data, [CLICK, OPEN, CLICK]) == [1, 1, 1]


def test_events_in_the_same_second_keep_their_log_order(clickhouse: ClickHouse) -> None:
    data = Dataset()
    message(data, "open_first", "open", 10)  # lower log position
    message(data, "open_first", "click", 10)
    message(data, "click_first", "click", 10)
    message(data, "click_first", "open", 10)

    assert reached(clickhouse, data, [OPEN, CLICK]) == [2, 1]


def test_one_event_completes_one_step_only(clickhouse: ClickHouse) -> None:
    data = Dataset()
    message(data, "one_click", "click", 10)  # matches both "c1 click" and "t1 click"
    message(data, "two_clicks", "click", 10)
    message(data, "two_clicks", "click", 50)

    assert reached(clickhouse, data, [CLICK, T1_CLICK]) == [2, 1]


def test_only_the_period_counts(clickhouse: ClickHouse) -> None:
    data = Dataset()
    message(data, "sent_before", "sent", 10, day=DAY - timedelta(days=1))
    message(data, "sent_before", "open", 10)
    message(data, "opened_after", "sent", 10)
    message(data, "opened_after", "open", 10, day=SHORT.end + timedelta(days=1))
    message(data, "last_day", "sent", 10)
    message(data, "last_day", "open", 86399, day=SHORT.end)

    assert reached(clickhouse, data, [SENT, OPEN]) == [2, 1]


def test_bots_tests_and_anonymous_visitors_are_not_in_funnels(clickhouse: ClickHouse) -> None:
    data = Dataset()
    message(data, "bot_click", "sent", 10)
    message(data, "bot_click", "click", 20, is_bot=1)
    message(data, "test_send", "sent", 10, is_test=1)
    message(data, "test_send", "click", 20, is_test=1)
    data.add("goal_events", at(DAY, 30), profile_id="", anonymous_id="a1", goal="buy", value=1.0)

    assert reached(clickhouse, data, [SENT, CLICK]) == [1, 0]
    assert reached(clickhouse, data, [SENT, CLICK], include_tests=True) == [2, 1]
    assert reached(clickhouse, data, [BUY]) == [0]


def test_a_minimum_value_is_a_running_total_over_the_period(clickhouse: ClickHouse) -> None:
    data = Dataset()
    goal(data, "early_value", 5, 400.0)  # before the open: counts towards the total, not as the step
    message(data, "early_value", "open", 10)
    goal(data, "early_value", 20, 100.0)  # 500 here, after the open
    message(data, "adds_up", "open", 10)
    goal(data, "adds_up", 20, 300.0)
    goal(data, "adds_up", 30, 200.0)  # 500: reached here
    message(data, "falls_back", "open", 10)
    goal(data, "falls_back", 20, 450.0)
    goal(data, "falls_back", 30, -100.0)
    goal(data, "falls_back", 40, 100.0)  # 450 at most: never 500
    message(data, "before_only", "open", 10)
    goal(data, "before_only", 5, 600.0)  # reached, but before the open
    goal(data, "before_only", 20, -150.0)  # after the open the total is 450: short again
    message(data, "exactly", "open", 10)
    goal(data, "exactly", 20, 500.0)
    goal(data, "other_goal", 20, 900.0, name="view")

    buy_500 = {"kind": "goal", "goal": "buy", "min_value": 500}
    assert reached(clickhouse, data, [OPEN, buy_500]) == [5, 3]
    assert reached(clickhouse, data, [buy_500]) == [4]  # early_value, adds_up, before_only, exactly
    # the event reaching the minimum is the step's: a click must come after it
    message(data, "adds_up", "click", 25)  # between the two values: too early
    message(data, "exactly", "click", 25)  # after the value reached at second 20
    assert reached(clickhouse, data, [OPEN, buy_500, CLICK]) == [5, 3, 1]


def test_a_segment_step_filters_without_consuming_an_event(clickhouse: ClickHouse) -> None:
    data = Dataset()
    for profile in ("member", "outsider"):
        message(data, profile, "sent", 10)
        message(data, profile, "open", 20)
    segments = {"s": frozenset({"member", "idle_member"})}
    segment = {"kind": "segment", "id": "s"}

    assert reached(clickhouse, data, [SENT, segment, OPEN], segments) == [2, 1, 1]
    # as the first step, every member is in the group, events or not
    assert reached(clickhouse, data, [segment, SENT, OPEN], segments) == [2, 1, 1]
    assert reached(clickhouse, data, [segment], {"s": frozenset()}) == [0]


def test_subscription_steps_count_subscriptions_that_became_active(clickhouse: ClickHouse) -> None:
    data = Dataset()
    for profile, before, status in (
        ("new", "", "subscribed"),
        ("back", "unsubscribed", "subscribed"),
        ("confirmed", "unconfirmed", "subscribed"),
        ("left", "subscribed", "unsubscribed"),
        ("unchanged", "subscribed", "subscribed"),
    ):
        data.add(
            "subscription_changes",
            at(DAY, 10),
            profile_id=profile,
            resource_id="r1",
            channel="email",
            status_before=before,
            status=status,
        )

    assert reached(clickhouse, data, [{"kind": "subscription", "id": "r1"}]) == [3]
    assert reached(clickhouse, data, [{"kind": "subscription", "id": "r1", "channel": "sms"}]) == [0]


# ------------------------------------------------------------------ goals


GOAL_KEYS: dict[str, Callable[[Row], Any]] = {
    "goal": lambda row: row["goal"],
    "pixel": lambda row: row["pixel_id"],
    "country": lambda row: row["country"],
    "city": lambda row: row["city"],
    "referrer": lambda row: row["referrer"],
    "browser": lambda row: row["browser"],
    "os": lambda row: row["os"],
    "day": lambda row: row["day"],
    "week": lambda row: bucket(row["day"], "week"),
    "month": lambda row: bucket(row["day"], "month"),
}
GOAL_METRICS = (
    "visits",
    "profile_visits",
    "anonymous_visits",
    "profit",
    "income",
    "costs",
    "income_profiles",
    "income_anonymous",
    "costs_profiles",
    "costs_anonymous",
    "share",
)


def goal_figures(rows: Sequence[Row]) -> dict[str, Any]:
    known = [row["value"] for row in rows if row["profile_id"]]
    anonymous = [row["value"] for row in rows if not row["profile_id"]]
    values = known + anonymous
    return {
        "visits": len(values),
        "profile_visits": len(known),
        "anonymous_visits": len(anonymous),
        "profit": float(sum(values)),
        "income": float(sum(v for v in values if v > 0)),
        "costs": float(sum(v for v in values if v < 0)),
        "income_profiles": float(sum(v for v in known if v > 0)),
        "income_anonymous": float(sum(v for v in anonymous if v > 0)),
        "costs_profiles": float(sum(v for v in known if v < 0)),
        "costs_anonymous": float(sum(v for v in anonymous if v < 0)),
    }


def expected_goals(
    grouping: str, metrics: Sequence[str], filters: Mapping[str, str]
) -> tuple[list[tuple[Any, ...]], list[Row]]:
    """The goals table, and the goal events it counts."""
    chosen = [
        row
        for row in DATA["goal_events"]
        if in_period(row)
        and filters.get("pixel", row["pixel_id"]) == row["pixel_id"]
        and filters.get("goal", row["goal"]) == row["goal"]
        and (not row["profile_id"] or filters.get("database", row["database_id"]) == row["database_id"])
    ]
    groups: dict[Any, list[Row]] = defaultdict(list)
    for row in chosen:
        groups[GOAL_KEYS[grouping](row)].append(row)
    figures = {key: goal_figures(rows) for key, rows in groups.items()}
    total = goal_figures(chosen)
    for figure in (*figures.values(), total):
        figure["share"] = figure["visits"] / total["visits"] if total["visits"] else None
    if grouping in ("day", "week", "month"):
        order = sorted(figures)
    else:
        order = sorted(figures, key=lambda key: (-figures[key]["visits"], key))
    table = [(key, *(figures[key][metric] for metric in metrics)) for key in order]
    table.append(("total", *(total[metric] for metric in metrics)))
    return table, chosen


def expected_goal_series(chosen: Sequence[Row], chart_by: str) -> list[tuple[Any, ...]]:
    first = bucket(PERIOD.start, chart_by)
    series = []
    for n in range(buckets_between(first, PERIOD.end, chart_by) + 1):
        start = bucket_after(first, n, chart_by)
        figures = goal_figures([row for row in chosen if bucket(row["day"], chart_by) == start])
        series.append((start, figures["visits"], figures["profit"], figures["income"], figures["costs"]))
    return series


@pytest.mark.parametrize(
    ("grouping", "metrics", "filters", "chart_by"),
    [
        ("goal", (), {}, "day"),
        ("pixel", ("visits", "share", "profit"), {}, "week"),
        ("country", (), {"goal": "purchase"}, "month"),
        ("city", ("anonymous_visits", "income_anonymous", "costs_anonymous"), {"pixel": "px2"}, "day"),
        ("referrer", (), {"database": "db2"}, "week"),
        ("browser", ("income", "costs"), {"pixel": "px1", "goal": "view"}, "day"),
        ("os", (), {}, "day"),
        ("week", ("visits", "profit"), {"database": "db1"}, "week"),
        ("month", (), {}, "month"),
        ("day", ("visits",), {"goal": "signup"}, "day"),
    ],
)
def test_goal_figures_match_the_fixture(
    loaded: ClickHouse, grouping: str, metrics: tuple[str, ...], filters: dict[str, str], chart_by: str
) -> None:
    result = GoalsReport().run(
        loaded, request(group_by=grouping, metrics=metrics, filters=filters, params={"interval": chart_by})
    )

    table, chosen = expected_goals(grouping, metrics or GOAL_METRICS, filters)
    assert result.columns == (grouping, *(metrics or GOAL_METRICS))
    assert_rows(result.rows, table)
    assert_rows(result.series, expected_goal_series(chosen, chart_by))
    assert len(chosen) > 5


def test_goals_default_to_goal_rows_and_a_daily_chart(loaded: ClickHouse) -> None:
    result = GoalsReport().run(loaded, request())

    table, chosen = expected_goals("goal", GOAL_METRICS, {})
    assert_rows(result.rows, table)
    assert_rows(result.series, expected_goal_series(chosen, "day"))
    assert len(result.series) == PERIOD.days
    total = dict(zip(result.columns, result.rows[-1], strict=True))
    assert total["profit"] == pytest.approx(total["income"] + total["costs"])
    assert total["visits"] == total["profile_visits"] + total["anonymous_visits"]


# ------------------------------------------------------------------ refused requests


class NoClickHouse:
    """A store that fails the test if a refused request reaches it."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        raise AssertionError(f"the report called ClickHouse.{name} for a request it should refuse")


STEP = {"kind": "campaign_action", "id": "c1", "action": "sent"}


@pytest.mark.parametrize(
    ("report", "fields", "path"),
    [
        (CohortReport(), {"group_by": "week"}, "group_by"),
        (CohortReport(), {"params": {"interval": "day"}}, "params.interval"),
        (CohortReport(), {"metrics": ("unique_opens", "opens_per_sent")}, "metrics.1"),
        (CohortReport(), {"metrics": ("opens",)}, "metrics.0"),
        (CohortReport(), {"filters": {"campaign": "c1"}}, "filters.campaign"),
        (CohortReport(), {"params": {"size": "week"}}, "params.size"),
        (LifetimeReport(), {"params": {"interval": "day"}}, "params.interval"),
        (LifetimeReport(), {"params": {"activity_interval": "year"}}, "params.activity_interval"),
        (LifetimeReport(), {"filters": {"database": "db1"}, "params": {"peak": 3}}, "params.peak"),
        (LifetimeReport(), {"filters": {"database": "db1"}, "metrics": ("unique_clicks",)}, "metrics.0"),
        (GoalsReport(), {"group_by": "language"}, "group_by"),
        (GoalsReport(), {"metrics": ("visits", "revenue")}, "metrics.1"),
        (GoalsReport(), {"filters": {"resource": "r1"}}, "filters.resource"),
        (GoalsReport(), {"params": {"interval": "hour"}}, "params.interval"),
        (funnel(), {}, "params.steps"),
        (funnel(), {"params": {"steps": []}}, "params.steps"),
        (funnel(), {"params": {"steps": [STEP] * 33}}, "params.steps"),
        (funnel(), {"params": {"steps": [STEP], "window": 3}}, "params.window"),
        (funnel(), {"params": {"steps": [STEP, {"kind": "visit"}]}}, "params.steps.1.kind"),
        (funnel(), {"params": {"steps": [STEP, "sent"]}}, "params.steps.1"),
        (funnel(), {"params": {"steps": [{**STEP, "action": "bounce"}]}}, "params.steps.0.action"),
        (funnel(), {"params": {"steps": [{**STEP, "channel": "fax"}]}}, "params.steps.0.channel"),
        (funnel(), {"params": {"steps": [{**STEP, "template_id": "t1"}]}}, "params.steps.0.template_id"),
        (funnel(), {"params": {"steps": [{**STEP, "id": 7}]}}, "params.steps.0.id"),
        (
            funnel(),
            {"params": {"steps": [{"kind": "campaign_action", "action": "sent"}]}},
            "params.steps.0.id",
        ),
        (
            funnel(),
            {"params": {"steps": [{"kind": "goal", "goal": "buy", "min_value": -1}]}},
            "params.steps.0.min_value",
        ),
        (
            funnel(),
            {"params": {"steps": [{"kind": "goal", "goal": "buy", "min_value": "9"}]}},
            "params.steps.0.min_value",
        ),
        (
            funnel(),
            {"params": {"steps": [{"kind": "pixel_visit", "id": ""}]}},
            "params.steps.0.id",
        ),
        (
            FunnelReport(),
            {"params": {"steps": [STEP, {"kind": "segment", "id": "s"}]}},
            "params.steps.1.kind",
        ),
        (funnel(), {"params": {"steps": [STEP]}, "group_by": "day"}, "group_by"),
        (funnel(), {"params": {"steps": [STEP]}, "filters": {"database": "db1"}}, "filters.database"),
    ],
)
def test_bad_requests_are_refused_naming_the_parameter(
    report: Any, fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(ReportError) as refused:
        report.run(NoClickHouse(), request(**fields))

    assert refused.value.path == path


@pytest.mark.parametrize("report", [CohortReport(), LifetimeReport(), GoalsReport(), funnel()])
def test_an_inverted_period_is_refused(report: Any) -> None:
    inverted = ReportRequest(
        Period(PERIOD.end, PERIOD.start),
        params={"steps": [STEP]} if report.name == "funnel" else {},
    )

    with pytest.raises(ReportError) as refused:
        report.run(NoClickHouse(), inverted)

    assert refused.value.path == "period.end"
