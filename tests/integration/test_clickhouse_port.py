"""The ClickHouse port's contract: both adapters (chDB, Debian's 18.16 server) pass it with one SQL text.

Each test gets a fresh store (a new chDB directory or a new server database).
Report SQL features used here are the ones DESIGN.md allows on both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from herald.infra.clickhouse import ChdbClickHouse, ClickHouse, ClickHouseError, ServerClickHouse
from herald.infra.clickhouse_migrations import (
    MIGRATIONS,
    Migration,
    MigrationError,
    applied_migrations,
    migrate,
)
from herald.infra.clock import ManualClock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

ALL_TYPES_DDL = """
CREATE TABLE every_type (
    id String,
    flag UInt8,
    small UInt16,
    medium UInt32,
    big UInt64,
    signed Int64,
    ratio Float64,
    day Date,
    at DateTime('UTC'),
    tags Array(String),
    note Nullable(String)
) ENGINE = MergeTree ORDER BY id
"""
ALL_TYPES_COLUMNS = ("id", "flag", "small", "medium", "big", "signed", "ratio", "day", "at", "tags", "note")
ALL_TYPES_ROWS = [
    (
        "a",
        1,
        65535,
        4294967295,
        18446744073709551615,
        -9223372036854775808,
        0.1,
        date(2026, 3, 2),
        T0,
        ["x", "y"],
        None,
    ),
    ("b", 0, 0, 0, 0, 9223372036854775807, -2.5, date(1970, 1, 2), T0 + timedelta(seconds=1), [], "n"),
]

# Strings that break naive quoting, and an injection attempt: all must stay data.
AWKWARD_STRINGS = [
    "it's",
    'say "hi"',
    "back\\slash",
    "tab\tand\nnewline\r",
    "\\N",
    "nul\0byte",
    "ünïcødé ✉",
    "{x:String}",
    "%(x)s %s %%",
    "x' OR '1'='1",
    "'; DROP TABLE awkward; --",
    "",
]


def events_table(ch: ClickHouse) -> None:
    """Message events as the report sink writes them: one row per event, deduplicated by event id."""
    ch.execute(
        """
        CREATE TABLE message_events (
            event_id String,
            profile_id String,
            campaign_id String,
            kind String,
            at DateTime('UTC'),
            is_unique UInt8,
            is_test UInt8,
            links Array(String),
            bounce_class Nullable(String),
            version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY event_id
        """
    )
    minute = timedelta(minutes=1)
    rows = [
        # p1: sent → opened → clicked within the hour
        ("e1", "p1", "c1", "sent", T0, 1, 0, [], None, 1),
        ("e2", "p1", "c1", "opened", T0 + 5 * minute, 1, 0, [], None, 1),
        ("e3", "p1", "c1", "opened", T0 + 6 * minute, 0, 0, [], None, 1),
        ("e4", "p1", "c1", "clicked", T0 + 7 * minute, 1, 0, ["l1", "l2"], None, 1),
        # p2: sent → opened, clicked only after the funnel window
        ("e5", "p2", "c1", "sent", T0, 1, 0, [], None, 1),
        ("e6", "p2", "c1", "opened", T0 + 10 * minute, 1, 0, [], None, 1),
        ("e7", "p2", "c1", "clicked", T0 + 2 * 60 * minute, 1, 0, ["l1"], None, 1),
        # p3: bounced, next week; a test send that reports leave out
        ("e8", "p3", "c1", "sent", T0 + timedelta(days=7), 1, 0, [], None, 1),
        ("e9", "p3", "c1", "bounced", T0 + timedelta(days=7, minutes=1), 1, 0, [], "hard", 1),
        ("e10", "p4", "c1", "sent", T0, 1, 1, [], None, 1),
        # another campaign, next month
        ("e11", "p1", "c2", "sent", datetime(2026, 4, 1, tzinfo=UTC), 1, 0, [], None, 1),
    ]
    ch.insert("message_events", [c.strip() for c in MESSAGE_EVENT_COLUMNS.split(",")], rows)


MESSAGE_EVENT_COLUMNS = (
    "event_id, profile_id, campaign_id, kind, at, is_unique, is_test, links, bounce_class, version"
)


# ------------------------------------------------------------------ DDL and types


def test_ddl_creates_and_drops_tables(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE scratch (id String) ENGINE = MergeTree ORDER BY id")
    tables = "SELECT name FROM system.tables WHERE database = currentDatabase() AND name = {t:String}"
    assert clickhouse.query(tables, {"t": "scratch"}) == [{"name": "scratch"}]
    clickhouse.execute("DROP TABLE scratch")
    assert clickhouse.query(tables, {"t": "scratch"}) == []


def test_every_report_column_type_round_trips_with_the_same_python_types(clickhouse: ClickHouse) -> None:
    clickhouse.execute(ALL_TYPES_DDL)
    clickhouse.insert("every_type", ALL_TYPES_COLUMNS, ALL_TYPES_ROWS)

    rows = clickhouse.query(f"SELECT {', '.join(ALL_TYPES_COLUMNS)} FROM every_type ORDER BY id")

    assert rows == [dict(zip(ALL_TYPES_COLUMNS, row, strict=True)) for row in ALL_TYPES_ROWS]
    first = rows[0]
    assert all(type(first[c]) is int for c in ("flag", "small", "medium", "big", "signed"))
    assert type(first["ratio"]) is float
    assert type(first["day"]) is date
    assert type(first["at"]) is datetime and first["at"].utcoffset() == timedelta(0)
    assert first["at"].tzinfo is UTC
    assert rows[1]["tags"] == [] and type(rows[0]["tags"]) is list
    assert rows[0]["note"] is None and rows[1]["note"] == "n"


def test_datetimes_in_any_zone_are_stored_as_the_same_instant(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE times (id String, at DateTime('UTC')) ENGINE = MergeTree ORDER BY id")
    tokyo = timezone(timedelta(hours=9))
    clickhouse.insert("times", ("id", "at"), [("t", datetime(2026, 3, 2, 18, 0, 59, 999999, tzinfo=tokyo))])

    assert clickhouse.query("SELECT at, toHour(at) AS hour FROM times") == [
        {"at": T0 + timedelta(seconds=59), "hour": 9}
    ]


def test_a_plain_datetime_column_comes_back_in_utc_too(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE plain_times (at DateTime) ENGINE = MergeTree ORDER BY at")
    clickhouse.insert("plain_times", ("at",), [(T0,)])

    assert clickhouse.query("SELECT at FROM plain_times") == [{"at": T0}]


@pytest.mark.parametrize(
    ("column_type", "value", "error"),
    [
        ("DateTime('UTC')", datetime(2026, 3, 2, 9, 0), ValueError),  # naive: which zone?
        ("DateTime('UTC')", "2026-03-02 09:00:00", TypeError),
        ("Date", T0, TypeError),  # a datetime is not a day
        ("UInt8", 256, ValueError),
        ("UInt64", -1, ValueError),
        ("UInt32", "1", TypeError),
        ("String", 1, TypeError),
        ("String", None, TypeError),
        ("Array(String)", "x", TypeError),
        ("Array(String)", [1], TypeError),
    ],
)
def test_values_that_do_not_fit_the_column_are_refused_before_sending(
    clickhouse: ClickHouse, column_type: str, value: Any, error: type[Exception]
) -> None:
    clickhouse.execute(f"CREATE TABLE strict (v {column_type}) ENGINE = MergeTree ORDER BY tuple()")

    with pytest.raises(error):
        clickhouse.insert("strict", ("v",), [(value,)])
    with pytest.raises(error):
        clickhouse.query(f"SELECT {{v:{column_type}}} AS v", {"v": value})
    assert clickhouse.query("SELECT count() AS n FROM strict") == [{"n": 0}]


def test_booleans_are_stored_as_uint8_flags(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE flags (id String, flag UInt8) ENGINE = MergeTree ORDER BY id")
    clickhouse.insert("flags", ("id", "flag"), [("yes", True), ("no", False)])

    assert clickhouse.query("SELECT id, flag FROM flags ORDER BY id") == [
        {"id": "no", "flag": 0},
        {"id": "yes", "flag": 1},
    ]
    assert clickhouse.query("SELECT countIf(flag = {f:UInt8}) AS n FROM flags", {"f": True}) == [{"n": 1}]


def test_inserting_nothing_is_a_no_op_and_unknown_columns_are_refused(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE few (id String) ENGINE = MergeTree ORDER BY id")
    clickhouse.insert("few", ("id",), [])

    with pytest.raises(ClickHouseError, match="no column"):
        clickhouse.insert("few", ("id", "missing"), [("a", "b")])
    with pytest.raises(ClickHouseError, match="no column"):
        clickhouse.insert("absent_table", ("id",), [("a",)])
    with pytest.raises(ValueError, match="identifier"):
        clickhouse.insert("few; DROP TABLE few", ("id",), [("a",)])
    with pytest.raises(ValueError, match="values for"):
        clickhouse.insert("few", ("id",), [("a", "extra")])
    assert clickhouse.query("SELECT count() AS n FROM few") == [{"n": 0}]


# ------------------------------------------------------------------ parameters


def test_awkward_strings_stay_data_when_inserted_and_when_bound(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE awkward (n UInt32, s String) ENGINE = MergeTree ORDER BY n")
    clickhouse.insert("awkward", ("n", "s"), list(enumerate(AWKWARD_STRINGS)))

    stored = clickhouse.query("SELECT s FROM awkward ORDER BY n")
    assert [row["s"] for row in stored] == AWKWARD_STRINGS
    for number, text in enumerate(AWKWARD_STRINGS):
        assert clickhouse.query("SELECT {s:String} AS s", {"s": text}) == [{"s": text}]
        assert clickhouse.query("SELECT n FROM awkward WHERE s = {s:String}", {"s": text}) == [{"n": number}]
    assert clickhouse.query("SELECT {a:Array(String)} AS a", {"a": AWKWARD_STRINGS}) == [
        {"a": AWKWARD_STRINGS}
    ]


def test_an_injection_attempt_matches_nothing_and_drops_nothing(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE victims (id String) ENGINE = MergeTree ORDER BY id")
    clickhouse.insert("victims", ("id",), [("a",), ("b",)])

    for attack in ("x' OR '1'='1", "x') OR 1 = 1 --", "'; DROP TABLE victims; --", "\\' OR 1 = 1 --"):
        assert clickhouse.query("SELECT id FROM victims WHERE id = {id:String}", {"id": attack}) == []
    assert clickhouse.query("SELECT count() AS n FROM victims") == [{"n": 2}]


def test_every_parameter_type_binds_with_its_declared_type(clickhouse: ClickHouse) -> None:
    paris = timezone(timedelta(hours=1))
    rows = clickhouse.query(
        """
        SELECT
            {at:DateTime('UTC')} AS at,
            toTypeName({at:DateTime('UTC')}) AS at_type,
            {day:Date} AS day,
            toTypeName({day:Date}) AS day_type,
            {tags:Array(String)} AS tags,
            {none:Array(String)} AS none,
            {maybe:Nullable(String)} AS maybe,
            {days:Array(Date)} AS days,
            {times:Array(DateTime('UTC'))} AS times,
            {ratio:Float64} AS ratio,
            {count:UInt64} AS count,
            {negative:Int64} AS negative
        """,
        {
            "at": datetime(2026, 3, 2, 10, 0, tzinfo=paris),
            "day": date(2026, 3, 2),
            "tags": ["a", "b'c"],
            "none": [],
            "maybe": None,
            "days": [date(2026, 1, 1)],
            "times": [T0],
            "ratio": 0.25,
            "count": 18446744073709551615,
            "negative": -3,
        },
    )
    assert rows == [
        {
            "at": T0,
            "at_type": "DateTime('UTC')",
            "day": date(2026, 3, 2),
            "day_type": "Date",
            "tags": ["a", "b'c"],
            "none": [],
            "maybe": None,
            "days": [date(2026, 1, 1)],
            "times": [T0],
            "ratio": 0.25,
            "count": 18446744073709551615,
            "negative": -3,
        }
    ]


def test_numbers_bind_where_clickhouse_wants_literals(clickhouse: ClickHouse) -> None:
    assert clickhouse.query("SELECT number AS n FROM system.numbers LIMIT {limit:UInt32}", {"limit": 3}) == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_percent_signs_and_placeholder_lookalikes_in_sql_text_are_left_alone(clickhouse: ClickHouse) -> None:
    rows = clickhouse.query(
        "SELECT 'a%b' LIKE 'a%' AS liked, '{s:String}' AS text, {s:String} AS bound -- {not:UInt8}",
        {"s": "%s"},
    )
    assert rows == [{"liked": 1, "text": "{s:String}", "bound": "%s"}]


def test_parameters_must_match_the_placeholders(clickhouse: ClickHouse) -> None:
    with pytest.raises(KeyError, match="no value"):
        clickhouse.query("SELECT {a:String} AS a", {})
    with pytest.raises(KeyError, match="not used"):
        clickhouse.query("SELECT {a:String} AS a", {"a": "x", "typo": "y"})
    with pytest.raises(ValueError, match="two different types"):
        clickhouse.query("SELECT {a:String} AS a, {a:UInt8} AS b", {"a": "x"})


def test_engine_errors_are_clickhouse_errors(clickhouse: ClickHouse) -> None:
    with pytest.raises(ClickHouseError):
        clickhouse.query("SELECT * FROM no_such_table")
    with pytest.raises(ClickHouseError):
        clickhouse.execute("CREATE TABLE broken (")


def test_rows_go_in_through_insert_not_inline_values(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE inline (n UInt32, s String) ENGINE = MergeTree ORDER BY n")

    for statement in (
        "INSERT INTO inline (n, s) VALUES (1, 'a')",
        "insert into inline values (1, 'a')",
        '/* note */ INSERT INTO inline FORMAT JSONEachRow {"n": 1}',
    ):
        with pytest.raises(ValueError, match="use insert"):
            clickhouse.execute(statement)
    clickhouse.execute("INSERT INTO inline (n, s) SELECT 2, 'values'")

    assert clickhouse.query("SELECT n, s FROM inline") == [{"n": 2, "s": "values"}]


def test_duplicate_column_names_must_be_aliased(clickhouse: ClickHouse) -> None:
    with pytest.raises(ValueError, match="alias"):
        clickhouse.query("SELECT x, x FROM (SELECT 1 AS x)")


# ------------------------------------------------------------------ report SQL


def test_replacing_merge_tree_keeps_the_latest_version_per_key(clickhouse: ClickHouse) -> None:
    clickhouse.execute(
        "CREATE TABLE subscriptions (profile_id String, state String, version UInt64)"
        " ENGINE = ReplacingMergeTree(version) ORDER BY profile_id"
    )
    # Separate inserts land in separate parts: duplicates stay until a merge.
    clickhouse.insert("subscriptions", ("profile_id", "state", "version"), [("p1", "subscribed", 1)])
    clickhouse.insert("subscriptions", ("profile_id", "state", "version"), [("p1", "unsubscribed", 2)])
    clickhouse.insert("subscriptions", ("profile_id", "state", "version"), [("p2", "subscribed", 1)])

    latest = [{"profile_id": "p1", "state": "unsubscribed"}, {"profile_id": "p2", "state": "subscribed"}]
    assert clickhouse.query("SELECT profile_id, state FROM subscriptions FINAL ORDER BY profile_id") == latest
    assert clickhouse.query("SELECT count() AS n FROM subscriptions") == [{"n": 3}]

    clickhouse.execute("OPTIMIZE TABLE subscriptions FINAL")
    assert clickhouse.query("SELECT profile_id, state FROM subscriptions ORDER BY profile_id") == latest


def test_a_replayed_batch_does_not_double_count(clickhouse: ClickHouse) -> None:
    events_table(clickhouse)
    first = clickhouse.query("SELECT count() AS n FROM message_events FINAL")
    events_table_replay = clickhouse.query(f"SELECT {MESSAGE_EVENT_COLUMNS} FROM message_events")
    columns = [c.strip() for c in MESSAGE_EVENT_COLUMNS.split(",")]
    clickhouse.insert(
        "message_events", columns, [tuple(row[c] for c in columns) for row in events_table_replay]
    )

    assert clickhouse.query("SELECT count() AS n FROM message_events FINAL") == first == [{"n": 11}]


def test_campaign_summary_with_counts_uniques_and_buckets(clickhouse: ClickHouse) -> None:
    events_table(clickhouse)

    rows = clickhouse.query(
        """
        SELECT
            toMonday(at) AS week,
            toStartOfMonth(at) AS month,
            countIf(kind = 'sent') AS sent,
            countIf(kind = 'opened') AS opens,
            -- unique open: the first open of a profile on a message, or again after 24 h
            countIf(kind = 'opened' AND is_unique = 1) AS unique_opens,
            uniqExact(profile_id) AS profiles,
            -- ifNull: over a Nullable condition 18.16 would answer NULL where nothing matched
            uniqExactIf(profile_id, ifNull(kind = 'bounced' AND bounce_class = 'hard', 0)) AS hard_bounced
        FROM message_events FINAL
        WHERE campaign_id = {campaign:String} AND is_test = 0 AND at >= {since:DateTime('UTC')}
        GROUP BY week, month
        ORDER BY week
        """,
        {"campaign": "c1", "since": T0},
    )

    assert rows == [
        {
            "week": date(2026, 3, 2),
            "month": date(2026, 3, 1),
            "sent": 2,
            "opens": 3,
            "unique_opens": 2,
            "profiles": 2,
            "hard_bounced": 0,
        },
        {
            "week": date(2026, 3, 9),
            "month": date(2026, 3, 1),
            "sent": 1,
            "opens": 0,
            "unique_opens": 0,
            "profiles": 1,
            "hard_bounced": 1,
        },
    ]


def test_window_funnel_counts_steps_reached_within_the_window(clickhouse: ClickHouse) -> None:
    events_table(clickhouse)

    rows = clickhouse.query(
        """
        SELECT level, count() AS profiles
        FROM (
            SELECT
                profile_id,
                windowFunnel({window:UInt64})(at, kind = 'sent', kind = 'opened', kind = 'clicked') AS level
            FROM message_events FINAL
            WHERE campaign_id = {campaign:String} AND is_test = 0
            GROUP BY profile_id
        )
        GROUP BY level
        ORDER BY level
        """,
        {"window": 3600, "campaign": "c1"},
    )

    assert rows == [{"level": 1, "profiles": 1}, {"level": 2, "profiles": 1}, {"level": 3, "profiles": 1}]


def test_array_join_spreads_clicks_over_links(clickhouse: ClickHouse) -> None:
    events_table(clickhouse)

    rows = clickhouse.query(
        """
        SELECT arrayJoin(links) AS link, count() AS clicks, uniqExact(profile_id) AS profiles
        FROM message_events FINAL
        WHERE kind = 'clicked' AND has({wanted:Array(String)}, campaign_id)
        GROUP BY link
        ORDER BY link
        """,
        {"wanted": ["c1"]},
    )

    assert rows == [{"link": "l1", "clicks": 2, "profiles": 2}, {"link": "l2", "clicks": 1, "profiles": 1}]


def test_per_profile_arrays_give_cohorts_without_self_joins(clickhouse: ClickHouse) -> None:
    events_table(clickhouse)

    rows = clickhouse.query(
        """
        SELECT profile_id, groupUniqArray(campaign_id) AS campaigns, min(at) AS first_seen
        FROM message_events FINAL
        WHERE is_test = 0
        GROUP BY profile_id
        HAVING length(campaigns) > 1
        """
    )

    assert len(rows) == 1
    assert rows[0]["profile_id"] == "p1"
    assert sorted(rows[0]["campaigns"]) == ["c1", "c2"]
    assert rows[0]["first_seen"] == T0


# ------------------------------------------------------------------ persistence and migrations


def test_data_survives_closing_and_reopening(open_clickhouse: Callable[[], ClickHouse]) -> None:
    first = open_clickhouse()
    first.execute("CREATE TABLE kept (id String) ENGINE = MergeTree ORDER BY id")
    first.insert("kept", ("id",), [("a",)])
    first.close()

    again = open_clickhouse()
    assert again.query("SELECT id FROM kept") == [{"id": "a"}]


def test_migrations_apply_in_order_once_and_are_recorded(open_clickhouse: Callable[[], ClickHouse]) -> None:
    clock = ManualClock(T0)
    steps = (
        MIGRATIONS[0],
        Migration(
            "9002_counter",
            (
                "CREATE TABLE IF NOT EXISTS counter (n UInt32) ENGINE = MergeTree ORDER BY n",
                # Not re-runnable on purpose: a second application would show as a second row.
                "INSERT INTO counter (n) SELECT 1",
            ),
        ),
    )
    ch = open_clickhouse()

    assert migrate(ch, steps, clock) == ["0001_herald_meta", "9002_counter"]
    assert migrate(ch, steps, clock) == []
    ch.close()
    assert migrate(open_clickhouse(), steps, clock) == []

    ch = open_clickhouse()
    assert ch.query("SELECT count() AS n FROM counter") == [{"n": 1}]
    assert ch.query("SELECT id, applied_at FROM schema_migrations FINAL ORDER BY id") == [
        {"id": "0001_herald_meta", "applied_at": T0},
        {"id": "9002_counter", "applied_at": T0},
    ]
    assert ch.query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name") == [
        {"name": "counter"},
        {"name": "herald_meta"},
        {"name": "schema_migrations"},
    ]


def test_a_new_migration_applies_on_the_next_start(clickhouse: ClickHouse) -> None:
    assert migrate(clickhouse) == [migration.id for migration in MIGRATIONS]
    later = Migration(
        "9002_extra", ("CREATE TABLE IF NOT EXISTS extra (id String) ENGINE = MergeTree ORDER BY id",)
    )

    assert migrate(clickhouse, (*MIGRATIONS, later)) == ["9002_extra"]
    assert set(applied_migrations(clickhouse)) == {m.id for m in MIGRATIONS} | {"9002_extra"}


def test_a_migration_edited_after_it_was_applied_is_refused(clickhouse: ClickHouse) -> None:
    original = Migration(
        "0001_a", ("CREATE TABLE IF NOT EXISTS a (id String) ENGINE = MergeTree ORDER BY id",)
    )
    reformatted = Migration(
        "0001_a", ("CREATE TABLE IF NOT EXISTS a (id String)\n    ENGINE = MergeTree ORDER BY id",)
    )
    edited = Migration("0001_a", ("CREATE TABLE IF NOT EXISTS a (id UInt64) ENGINE = MergeTree ORDER BY id",))
    migrate(clickhouse, [original])

    assert migrate(clickhouse, [reformatted]) == []
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(clickhouse, [edited])


def test_a_failed_migration_is_not_recorded_and_runs_again(clickhouse: ClickHouse) -> None:
    broken = Migration(
        "0001_broken", ("CREATE TABLE IF NOT EXISTS ok (id String) ENGINE = MergeTree ORDER BY id", "NOT SQL")
    )
    with pytest.raises(ClickHouseError):
        migrate(clickhouse, [broken])
    assert applied_migrations(clickhouse) == {}

    fixed = Migration(
        "0001_broken", ("CREATE TABLE IF NOT EXISTS ok (id String) ENGINE = MergeTree ORDER BY id",)
    )
    assert migrate(clickhouse, [fixed]) == ["0001_broken"]


@pytest.mark.parametrize(
    "migrations",
    [
        [Migration("0001_a", ("SELECT 1",)), Migration("0001_a", ("SELECT 2",))],
        [Migration("0002_b", ("SELECT 1",)), Migration("0001_a", ("SELECT 2",))],
        [Migration("0001_a", ())],
        [Migration("0001_a", ("  ",))],
    ],
    ids=["duplicate", "out-of-order", "no-statements", "blank-statement"],
)
def test_an_inconsistent_migration_list_is_refused_before_touching_the_store(
    clickhouse: ClickHouse, migrations: list[Migration]
) -> None:
    with pytest.raises(MigrationError):
        migrate(clickhouse, migrations)
    assert clickhouse.query("SELECT name FROM system.tables WHERE database = currentDatabase()") == []


# ------------------------------------------------------------------ both engines side by side

REPORT_QUERIES = [
    ("SELECT * FROM message_events FINAL ORDER BY event_id", {}),
    (
        "SELECT toMonday(at) AS week, campaign_id, countIf(kind = {k:String}) AS n,"
        " uniqExact(profile_id) AS p FROM message_events FINAL"
        " GROUP BY week, campaign_id ORDER BY week, campaign_id",
        {"k": "sent"},
    ),
    (
        "SELECT profile_id,"
        " windowFunnel(86400)(at, kind = 'sent', kind = 'opened', kind = 'clicked') AS level,"
        " arraySort(groupArray(kind)) AS kinds FROM message_events FINAL"
        " GROUP BY profile_id ORDER BY profile_id",
        {},
    ),
    (
        "SELECT toStartOfMonth(at) AS month, arrayJoin(links) AS link, count() AS clicks, max(at) AS last"
        " FROM message_events FINAL GROUP BY month, link ORDER BY month, link",
        {},
    ),
    (
        "SELECT bounce_class, count() AS n FROM message_events"
        " GROUP BY bounce_class ORDER BY n, bounce_class",
        {},
    ),
]


def test_both_adapters_return_identical_rows_and_python_types(
    tmp_path: Path, clickhouse_server: tuple[str, int]
) -> None:
    host, port = clickhouse_server
    embedded = ChdbClickHouse(tmp_path / "clickhouse")
    server = ServerClickHouse(host, port, "herald_side_by_side")
    try:
        for ch in (embedded, server):
            events_table(ch)
        for sql, params in REPORT_QUERIES:
            from_chdb, from_server = embedded.query(sql, params), server.query(sql, params)
            assert from_chdb == from_server, sql
            assert [_types(row) for row in from_chdb] == [_types(row) for row in from_server], sql
    finally:
        server.execute("DROP DATABASE IF EXISTS herald_side_by_side")
        server.close()
        embedded.close()


def _types(row: dict[str, Any]) -> dict[str, Any]:
    def kind(value: Any) -> Any:
        if isinstance(value, list):
            return [kind(item) for item in value]
        if isinstance(value, datetime):
            return (datetime, value.tzinfo)
        return type(value)

    return {name: kind(value) for name, value in row.items()}
