"""Reports over 10,000,000 message events and 1,000,000 profiles in chDB; the sink against raw inserts.

Data: the report tables are filled inside chDB with `INSERT ... SELECT` over
`numbers()` (a month of message events: queued, sent, delivered, opens, clicks,
bounces, unsubscribes for 1M profiles over 200 campaigns and 400 templates,
and DSN hard bounces of 2 % of the messages after their delivery;
1M profile creations; subscription changes; goal events), so generating them
costs seconds, not the benchmark's time. The summary's rollup is filled from
those events as the sink would (in 100 inserts by log position, left for
ClickHouse to merge). Each report then runs with a typical request and its
time is printed (best of 3); the funnel runs with 2, 4, 8, 16 and 32 steps.

Each report's CPU time (this process, chDB's threads included, the mean of the
runs) is printed too: on a machine other sessions share, it moves less than
the wall time.

Baselines, same run, same data: the summary, cohort, lifetime and 32-step
funnel written by hand as one query each over the event tables with FINAL
(what a first attempt reads: every row, de-duplicated by the engine), whose
numbers must equal the report's.

Sink: N synthetic message events (as the log holds them) go through the
ClickHouse sink (fold, batch insert, checkpoint) against a raw chDB insert of
the rows the sink produced, in the same run.

    python bench/bench_reports.py [--events 10000000] [--profiles 1000000] [--sink-events 200000]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from common import machine, report, run, temp_dir

from herald.domain.deliveries import LinkClicked, MessageDelivered, MessageOpened
from herald.domain.events import Event
from herald.domain.messages import MessageQueued
from herald.infra.clickhouse import ChdbClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.infra.event_store import RecordedEvent
from herald.projections.clickhouse_sink import TABLE_COLUMNS, ClickHouseSink
from herald.projections.message_rollup import DIMENSIONS, ROLLUP_COLUMNS, marker_row
from herald.reports import REPORTS
from herald.reports.base import Period, ReportRequest
from herald.reports.funnel import FunnelReport, funnel_sql
from herald.reports.lifetime import Lifetime
from herald.reports.summary import CHANNELS, COUNTERS

START = date(2026, 3, 1)
PERIOD = Period(START, START + timedelta(days=30))
TYPES = (
    "queued",
    "delivered",
    "open",
    "open",
    "click",
    "delivered",
    "sent",
    "soft_bounce",
    "unsubscribe",
    "read",
)
GOAL_SECONDS = 1.0
ROLLUP_INSERTS = 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--sink-events", type=int, default=200_000)
    args = parser.parse_args()
    print(machine(), f"; {args.events:,} message events, {args.profiles:,} profiles", flush=True)
    with temp_dir("bench-reports") as data:
        ch = ChdbClickHouse(data / "clickhouse")
        try:
            migrate(ch)
            filled = _timed(lambda: _fill(ch, args.events, args.profiles))
            print(f"data generated inside chDB in {filled:,.1f} s", flush=True)
            rollup = ch.query("SELECT count() AS n FROM message_rollup")[0]["n"]
            print(f"rollup rows (unmerged parts included): {rollup:,}", flush=True)
            for name, request in [*_requests(), *((f"funnel, {n} steps", _funnel(n)) for n in STEPS)]:
                report_name = name.split(",")[0]
                cpu = time.process_time()
                seconds = _best(lambda: REPORTS[report_name].run(ch, request))  # noqa: B023
                cpu = (time.process_time() - cpu) / 3
                line = f"report {name}: {seconds * 1000:,.0f} ms ({cpu * 1000:,.0f} ms of CPU a run)"
                if name in BASELINES:
                    check, baseline = _baseline(ch, name, request)
                    line += f" (baseline {baseline * 1000:,.0f} ms, ratio {seconds / baseline:.2f}; {check})"
                verdict = "within" if seconds <= GOAL_SECONDS else "OVER"
                print(f"{line}; {verdict} the {GOAL_SECONDS:g} s goal", flush=True)
            _sink(ch, args.sink_events)
        finally:
            ch.close()


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _best(work: Callable[[], object], runs: int = 3) -> float:
    return min(_timed(work) for _ in range(runs))


def _fill(ch: ChdbClickHouse, events: int, profiles: int) -> None:
    types = ", ".join(f"'{t}'" for t in TYPES)
    ch.execute(
        "INSERT INTO message_events SELECT"
        " toString(number) AS event_id, number AS position,"
        f" [{types}][number % {len(TYPES)} + 1] AS event_type,"
        " toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000) AS at,"
        " toDate(toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000)) AS day,"
        " toString(intDiv(number, 10)) AS message_id, toString(number % 200) AS campaign_id,"
        " '' AS run_id, '' AS scenario_id, toString(number % 400) AS template_id, 1 AS template_version,"
        " '1' AS database_id, toString(number % 5) AS resource_id, 'email' AS channel,"
        f" toString(number % {profiles}) AS profile_id,"
        " ['gmail.com', 'mail.ru', 'yandex.ru', 'outlook.com', 'example.org'][number % 5 + 1]"
        " AS recipient_domain,"
        " ['Google', 'Mail.ru', 'Yandex', 'Microsoft', 'Other'][number % 5 + 1] AS domain_group,"
        " 'main' AS sender_id, toString(number % 3) AS link_id, 'https://shop.example/' AS link_url,"
        " '' AS link_name, if(number % 10 = 7, 'soft', '') AS bounce_class,"
        " if(number % 10 = 7, '452 mailbox full', '') AS bounce_text, '' AS reason,"
        " toUInt8(number % 3 = 0) AS is_unique, toUInt8(0) AS is_test, toUInt8(0) AS is_bot"
        f" FROM numbers({events})"
    )
    # 2 % of the messages bounce by DSN a day after their delivery (what the summary's set holds)
    ch.execute(
        "INSERT INTO message_events SELECT"
        f" concat('hb-', toString(number)) AS event_id, {events} + number AS position,"
        " 'hard_bounce' AS event_type,"
        " toDateTime('2026-03-02 00:00:00', 'UTC') + (number * 500 % 2505600) AS at,"
        " toDate(toDateTime('2026-03-02 00:00:00', 'UTC') + (number * 500 % 2505600)) AS day,"
        " toString(number * 50) AS message_id, toString(number * 500 % 200) AS campaign_id,"
        " '' AS run_id, '' AS scenario_id, toString(number * 500 % 400) AS template_id,"
        " 1 AS template_version, '1' AS database_id, toString(number * 500 % 5) AS resource_id,"
        " 'email' AS channel, toString(number * 500 % 1000000) AS profile_id,"
        " 'gmail.com' AS recipient_domain, 'Google' AS domain_group, 'main' AS sender_id, '' AS link_id,"
        " '' AS link_url, '' AS link_name, 'hard' AS bounce_class, '5.1.1 user unknown' AS bounce_text,"
        " 'user_unknown' AS reason, toUInt8(0) AS is_unique, toUInt8(0) AS is_test, toUInt8(0) AS is_bot"
        f" FROM numbers({events // 500})"
    )
    _fill_rollup(ch, events + events // 500)
    ch.execute(
        "INSERT INTO profile_creations SELECT toString(number) AS event_id, number AS position,"
        " toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000) AS at,"
        " toDate(toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000)) AS day,"
        " toString(number) AS profile_id, '1' AS database_id,"
        " ['import', 'api', 'manual'][number % 3 + 1] AS source, toUInt8(0) AS is_test"
        f" FROM numbers({profiles})"
    )
    ch.execute(
        "INSERT INTO subscription_changes SELECT toString(number) AS event_id, number AS position,"
        " toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000) AS at,"
        " toDate(toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000)) AS day,"
        f" toString(number % {profiles}) AS profile_id, '1' AS database_id,"
        " toString(number % 5) AS resource_id, 'email' AS channel, '' AS contact,"
        " if(number % 4 = 0, 'subscribed', '') AS status_before,"
        " if(number % 4 = 0, 'unsubscribed', 'subscribed') AS status,"
        " ['import', 'api', 'unsubscribe_link', 'hard_bounce'][number % 4 + 1] AS cause,"
        " toUInt8(0) AS is_test"
        f" FROM numbers({profiles})"
    )
    ch.execute(
        "INSERT INTO goal_events SELECT toString(number) AS event_id, number AS position,"
        " toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000) AS at,"
        " toDate(toDateTime('2026-03-01 00:00:00', 'UTC') + (number % 2592000)) AS day,"
        f" toString(number % {profiles}) AS profile_id, '' AS anonymous_id, '1' AS database_id,"
        " toString(number % 4) AS pixel_id, ['visit', 'order', 'signup'][number % 3 + 1] AS goal,"
        " (number % 100) * 1.5 AS value, 'https://ref.example/' AS referrer, 'Chrome' AS browser,"
        " 'Linux' AS os, 'RU' AS country, 'Kazan' AS city"
        f" FROM numbers({profiles})"
    )


def _fill_rollup(ch: ChdbClickHouse, positions: int) -> None:
    """The rollup the sink would keep for these events, in inserts by log position: their counts, a
    delivery of a message that hard-bounced taken off (the sink does it when the bounce comes)."""
    kept = ", ".join(name for name in DIMENSIONS if name != "vendor")
    counted = (
        "countIf(NOT (event_type = 'delivered' AND message_id IN"
        " (SELECT message_id FROM message_events WHERE event_type = 'hard_bounce')))"
    )
    step = -(-positions // ROLLUP_INSERTS)
    for start in range(0, positions, step):
        ch.execute(
            f"INSERT INTO message_rollup SELECT {kept}, '' AS vendor, {counted} AS events, 0 AS log_positions"
            f" FROM message_events WHERE position >= {start} AND position < {start + step} GROUP BY {kept}"
        )
    ch.insert("message_rollup", ROLLUP_COLUMNS, [marker_row(positions)])


def _requests() -> list[tuple[str, ReportRequest]]:
    wanted = {
        "summary": ReportRequest(PERIOD, group_by="campaign"),
        "growth": ReportRequest(PERIOD),
        "click_map": ReportRequest(PERIOD, filters={"template": "7"}),
        "soft_bounces": ReportRequest(PERIOD),
        "non_deliveries": ReportRequest(PERIOD),
        "cohort": ReportRequest(PERIOD, params={"interval": "week"}),
        "lifetime": ReportRequest(PERIOD, params={"interval": "week"}),
        "goals": ReportRequest(PERIOD),
    }
    return [(name, request) for name, request in wanted.items() if name in REPORTS]


STEPS = (2, 4, 8, 16, 32)
ACTIONS = ("delivered", "open", "click")


def _funnel(steps: int) -> ReportRequest:
    kinds = [{"kind": "campaign_action", "action": a, "id": "7"} for a in ACTIONS]
    return ReportRequest(PERIOD, params={"steps": [kinds[i % 3] for i in range(steps)]})


# ----------------------------------------------------------------- baselines: by hand, with FINAL

PERIOD_PARAMS = {"start": PERIOD.start, "end": PERIOD.end}

# The summary's counters over every event row of the period, de-duplicated by FINAL.
SUMMARY_BY_HAND = (
    "SELECT {key} AS group_key, {counters} FROM message_events FINAL"
    " WHERE day >= {{start:Date}} AND day <= {{end:Date}} AND is_test = 0 GROUP BY group_key"
)

# Weekly cohorts: each profile's events per week, joined to its cohort (the report before the arrays).
COHORT_MEMBERS_BY_HAND = """
SELECT profile_id, toMonday(min(day)) AS cohort FROM profile_creations FINAL
WHERE day >= {start:Date} AND day <= {end:Date} AND is_test = 0 GROUP BY profile_id
"""
COHORT_BY_HAND = f"""
SELECT cohort, toRelativeWeekNum(bucket) - toRelativeWeekNum(cohort) + 1 AS interval_number,
    sum(clicks) AS unique_clicks
FROM (
    SELECT profile_id, toMonday(day) AS bucket, countIf(event_type = 'click' AND is_unique = 1) AS clicks
    FROM message_events FINAL
    WHERE day >= {{start:Date}} AND day <= {{end:Date}} AND is_test = 0
    GROUP BY profile_id, bucket
) AS events
ALL INNER JOIN ({COHORT_MEMBERS_BY_HAND}) AS members USING profile_id
WHERE bucket >= cohort
GROUP BY cohort, interval_number
"""
COHORT_SIZES_BY_HAND = f"SELECT cohort, count() AS profiles FROM ({COHORT_MEMBERS_BY_HAND}) GROUP BY cohort"
DAILY_CLICKS_BY_HAND = f"""
SELECT cohort, day, sum(clicks) AS clicks
FROM (
    SELECT profile_id, day, count() AS clicks FROM message_events FINAL
    WHERE event_type = 'click' AND is_unique = 1 AND day >= {{start:Date}} AND day <= {{end:Date}}
      AND is_test = 0
    GROUP BY profile_id, day
) AS events
ALL INNER JOIN ({COHORT_MEMBERS_BY_HAND}) AS members USING profile_id
WHERE day >= cohort
GROUP BY cohort, day
"""


def _summary_by_hand(ch: ChdbClickHouse, request: ReportRequest) -> list[tuple[Any, ...]]:
    # The rollup counts a delivery until its message hard-bounces; over the rows, that is a set.
    bounced = "SELECT message_id FROM message_events WHERE event_type = 'hard_bounce'"
    conditions = {**COUNTERS, "delivered": f"event_type = 'delivered' AND message_id NOT IN ({bounced})"}
    counters = ", ".join(
        f"countIf(channel = '{channel}' AND {condition}) AS {channel}_{name}"
        for channel in CHANNELS
        for name, condition in conditions.items()
    )
    emailed = [f"email_{name}" for name in COUNTERS]
    table = ch.query(SUMMARY_BY_HAND.format(key="campaign_id", counters=counters), PERIOD_PARAMS)
    ch.query(SUMMARY_BY_HAND.format(key="day", counters=counters), PERIOD_PARAMS)  # the chart
    return sorted((row["group_key"], *(row[name] for name in emailed)) for row in table)


def _summary_counters(rows: tuple[tuple[Any, ...], ...], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    picked = [columns.index(f"email_{name}") for name in COUNTERS]
    return sorted((row[0], *(row[index] for index in picked)) for row in rows)


def _cohort_by_hand(ch: ChdbClickHouse, request: ReportRequest) -> dict[tuple[date, int], int]:
    ch.query(COHORT_SIZES_BY_HAND, PERIOD_PARAMS)
    rows = ch.query(COHORT_BY_HAND, PERIOD_PARAMS)
    return {
        (row["cohort"], row["interval_number"]): row["unique_clicks"] for row in rows if row["unique_clicks"]
    }


def _cohort_cells(rows: tuple[tuple[Any, ...], ...]) -> dict[tuple[date, int], int]:
    return {(row[0], n): cell for row in rows[:-1] for n, cell in enumerate(row[2:], start=1) if cell}


def _lifetime_by_hand(ch: ChdbClickHouse, request: ReportRequest) -> dict[date, tuple[Any, ...]]:
    ch.query(COHORT_SIZES_BY_HAND, PERIOD_PARAMS)
    daily: dict[date, list[int]] = {}
    for row in ch.query(DAILY_CLICKS_BY_HAND, PERIOD_PARAMS):
        daily.setdefault(row["cohort"], []).append(row["clicks"])
    found = {cohort: Lifetime.of(clicks) for cohort, clicks in daily.items()}
    return {cohort: (f.peak_clicks, f.active_days, round(f.lifetime_days, 9)) for cohort, f in found.items()}


def _lifetimes(rows: tuple[tuple[Any, ...], ...]) -> dict[date, tuple[Any, ...]]:
    return {row[0]: (row[2], row[3], round(row[4], 9)) for row in rows if row[2]}


def _funnel_by_hand(ch: ChdbClickHouse, request: ReportRequest) -> list[int]:
    """The report's own funnel query, reading FINAL instead of keeping one row per log position."""
    steps = FunnelReport()._check(request)  # the report's own validation of the steps
    sql = funnel_sql(steps).replace("FROM message_events\n", "FROM message_events FINAL\n")
    sql = sql.replace("arraySort(arrayDistinct(groupArray((at, position, mask, amount))))",
                      "arraySort(groupArray((at, position, mask, amount)))")  # fmt: skip
    params: dict[str, Any] = {**PERIOD_PARAMS, "include_tests": 0}
    for step in steps:
        params.update({f"{step.prefix}{key}": value for key, value in step.fields.items()})
    reached = ch.query(sql, params)[0]
    return [reached[f"reached_{step.number}"] for step in steps]


def _funnel_counts(rows: tuple[tuple[Any, ...], ...], columns: tuple[str, ...]) -> list[int]:
    return [row[columns.index("profiles")] for row in rows]


# name → (the baseline's numbers, the report's same numbers from its result)
BASELINES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "summary": (_summary_by_hand, lambda result: _summary_counters(result.rows, result.columns)),
    "cohort": (_cohort_by_hand, lambda result: _cohort_cells(result.rows)),
    "lifetime": (_lifetime_by_hand, lambda result: _lifetimes(result.rows)),
    f"funnel, {STEPS[-1]} steps": (
        _funnel_by_hand,
        lambda result: _funnel_counts(result.rows, result.columns),
    ),
}


def _baseline(ch: ChdbClickHouse, name: str, request: ReportRequest) -> tuple[str, float]:
    """Whether the report's numbers equal the hand-written query's, and that query's best time."""
    by_hand, from_report = BASELINES[name]
    report_name = name.split(",")[0]
    same = from_report(REPORTS[report_name].run(ch, request)) == by_hand(ch, request)
    return ("same numbers" if same else "NUMBERS DIFFER"), _best(lambda: by_hand(ch, request))


def _sink(ch: ChdbClickHouse, count: int) -> None:
    """The sink folding `count` events into rows, against a raw insert of the same rows."""
    events = list(_events(count))
    for table in TABLE_COLUMNS:
        ch.execute(f"TRUNCATE TABLE {table}")
    sink = ClickHouseSink(ch)
    started = time.perf_counter()
    for event in events:
        sink.apply(event)
    sink.commit(events[-1].position)
    through_sink = time.perf_counter() - started
    rows = ch.query(f"SELECT {', '.join(TABLE_COLUMNS['message_events'])} FROM message_events FINAL")
    ch.execute("TRUNCATE TABLE message_events")
    columns = TABLE_COLUMNS["message_events"]
    raw = [tuple(row[c] for c in columns) for row in rows]
    started = time.perf_counter()
    ch.insert("message_events", columns, raw)
    raw_insert = time.perf_counter() - started
    report("sink, message events", len(raw) / through_sink, "rows", len(raw) / raw_insert)


def _events(count: int) -> list[RecordedEvent]:
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    common = {
        "campaign_id": "7",
        "template_id": "3",
        "template_version": 1,
        "profile_id": "p",
        "database_id": "1",
        "resource_id": "7",
        "channel": "email",
        "at": at,
    }
    found: list[RecordedEvent] = []
    for n in range(count):
        message_id = f"{n // 4:032x}"
        kind = n % 4
        event: Event
        if kind == 0:
            event = MessageQueued(
                message_id=message_id,
                run_id="7-1",
                contact=f"u{n}@gmail.com",
                due_at=at,
                local_day=at.date(),
                **common,
            )
        elif kind == 1:
            event = MessageDelivered(
                message_id=message_id,
                contact=f"u{n}@gmail.com",
                sender_id="main",
                code=250,
                response="ok",
                **common,
            )
        elif kind == 2:
            event = MessageOpened(message_id=message_id, contact=f"u{n}@gmail.com", unique=True, **common)
        else:
            event = LinkClicked(
                message_id=message_id,
                contact=f"u{n}@gmail.com",
                unique=True,
                link_id="html.1",
                url="https://shop.example/",
                **common,
            )
        found.append(
            RecordedEvent(
                uuid.uuid4(),
                f"message-{message_id}",
                1,
                n + 1,
                type(event).__name__,
                1,
                at,
                at,
                event.model_dump(mode="json"),
                {},
            )
        )
    return found


if __name__ == "__main__":
    run(main)
