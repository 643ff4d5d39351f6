"""A dynamic segment over 1,000,000 profile snapshots and 10,000,000 message events in chDB.

Data: `profile_snapshots` and `message_events` are filled inside chDB with `INSERT ... SELECT` over
`numbers()`, in the encoding `reports.segment_sql.snapshot_row` writes (entries for `profile_id`,
`status`, `email`, `plan`, `points`; one email subscription, every fifth unsubscribed), and a month
of message events spread over the profiles and the days of March by a hash (a tenth of them clicks,
one in fifty by a bot).

The segment has three conditions: `plan` equal `pro` (a profile field), subscribed on the email
channel of resource 7 (a subscription status), clicked at least once in the last 30 days (history).
`members_sql` and `count_sql` are timed (best of 5, results in Python, sorted) against the baseline:
the same selection written by hand as one chDB query in the same process, through the same adapter
(the same tables, `FINAL` on the snapshots, the same window), whose ids must be the same; the
hand-written query with `FINAL` on the events as well is printed too.

    python bench/bench_segments.py [--profiles 1000000] [--events 10000000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common import machine, run, temp_dir

from herald.domain.fields import FieldType
from herald.domain.segments import (
    FieldRule,
    LastDays,
    MessageAction,
    MessageHistoryRule,
    Op,
    SegmentQuery,
    Source,
    SubscriptionRule,
)
from herald.domain.statuses import Status
from herald.infra.clickhouse import ChdbClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.reports.segment_sql import SNAPSHOT_COLUMNS, count_sql, members_sql

NOW = datetime(2026, 4, 15, 12, tzinfo=UTC)  # the events span March: the window holds half of them
TZ = "Europe/Moscow"
GOAL_SECONDS = 1.0
TYPES = (
    "queued",
    "delivered",
    "open",
    "open",
    "click",
    "delivered",
    "queued",
    "soft_bounce",
    "unsubscribe",
    "read",
)

QUERY = SegmentQuery(
    sources=(
        Source(
            database_id="1",
            rules=(
                FieldRule(field="plan", operator=Op.EQUAL, value="pro", type=FieldType.STRING),
                SubscriptionRule(channel="email", resource_id="7", status_in=(Status.SUBSCRIBED,)),
                MessageHistoryRule(action=MessageAction.CLICKED, period=LastDays(days=30)),
            ),
        ),
    )
)

# The same selection by hand: what a person who knows the tables would write for this one segment.
BASELINE = """
SELECT profile_id FROM profile_snapshots FINAL
WHERE database_id = '1' AND `exists` = 1
  AND arrayExists((o, n, s) -> o = 0 AND n = 'plan' AND s = 'pro', field_owners, field_names, field_strings)
  AND arrayExists((c, r, st) -> c = 'email' AND r = '7' AND st = 'subscribed',
                  sub_channels, sub_resource_ids, sub_statuses)
  AND profile_id IN (
      SELECT profile_id FROM message_events {final}
      WHERE event_type = 'click' AND is_bot = 0 AND is_test = 0
        AND at > toDateTime('{start}', 'UTC') AND at <= toDateTime('{end}', 'UTC'))
ORDER BY profile_id
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine(), f"; {args.profiles:,} profile snapshots, {args.events:,} message events", flush=True)
    with temp_dir("bench-segments") as data:
        ch = ChdbClickHouse(data / "clickhouse")
        try:
            migrate(ch)
            filled = _seconds(lambda: _fill(ch, args.profiles, args.events))
            print(f"data generated inside chDB in {filled:,.1f} s", flush=True)
            _measure(ch, args.runs)
        finally:
            ch.close()


def _measure(ch: ChdbClickHouse, runs: int) -> None:
    start = NOW.timestamp() - 30 * 86_400
    bounds = {
        "start": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "end": NOW.strftime("%Y-%m-%d %H:%M:%S"),
    }
    # The hand-written query with FINAL on the events too, as a first attempt would read them; and
    # without, as segment_sql reads them (one event's copies are alike, so membership needs no FINAL).
    final_sql = BASELINE.format(final="FINAL", **bounds)
    baseline_sql = BASELINE.format(final="", **bounds)
    if ch.query(final_sql) != ch.query(baseline_sql):
        raise AssertionError("the events' copies changed the hand-written selection")
    expected = tuple(row["profile_id"] for row in ch.query(baseline_sql))
    found = members_sql(ch, QUERY, NOW, TZ)
    if found != expected:
        raise AssertionError(f"members_sql found {len(found):,} members, the baseline {len(expected):,}")
    counted = count_sql(ch, QUERY, NOW, TZ)
    if counted != len(expected):
        raise AssertionError(f"count_sql counted {counted:,}, the baseline found {len(expected):,}")
    print(f"segment members: {len(found):,}", flush=True)
    timings = {
        "members_sql": _best(runs, lambda: members_sql(ch, QUERY, NOW, TZ)),
        "count_sql": _best(runs, lambda: count_sql(ch, QUERY, NOW, TZ)),
    }
    baseline = _best(runs, lambda: ch.query(baseline_sql))
    baseline_count = _best(runs, lambda: ch.query(f"SELECT count() AS n FROM ({baseline_sql})"))
    final = _best(runs, lambda: ch.query(final_sql))
    print(f"baseline with FINAL on message_events: {final * 1000:,.0f} ms", flush=True)
    for name, seconds in timings.items():
        against = baseline if name == "members_sql" else baseline_count
        verdict = "within" if seconds <= GOAL_SECONDS else "OVER"
        ratio = seconds / against
        print(
            f"{name}: {seconds * 1000:,.0f} ms (baseline {against * 1000:,.0f} ms, ratio {ratio:.2f};"
            f" {verdict} the {GOAL_SECONDS:g} s goal)",
            flush=True,
        )


def _best(runs: int, work: Callable[[], Any]) -> float:
    return min(_seconds(work) for _ in range(runs))


def _seconds(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _fill(ch: ChdbClickHouse, profiles: int, events: int) -> None:
    email = "concat('user', toString(number), '@example.org')"
    plan = "['basic', 'plus', 'pro'][number % 3 + 1]"
    points = "toInt64(number % 1000)"
    ch.execute(
        f"INSERT INTO profile_snapshots ({', '.join(f'`{column}`' for column in SNAPSHOT_COLUMNS)})"
        " SELECT toString(number), '1', 'active', toUInt8(1),"
        " CAST([0, 0, 0, 0, 0] AS Array(UInt32)),"
        " ['profile_id', 'status', 'email', 'plan', 'points'],"
        f" [toString(number), 'active', {email}, {plan}, toString({points})],"
        f" [toString(number), 'active', {email}, {plan}, toString({points})],"
        f" [toInt64(0), 0, 0, 0, {points}],"
        f" [toFloat64(0), 0, 0, 0, toFloat64({points})],"
        " CAST([0, 0, 0, 0, 0] AS Array(UInt8)),"
        f" ['7'], ['email'], [''], [{email}],"
        " [if(number % 5 = 0, 'unsubscribed', 'subscribed')],"
        " [toInt64(0)], [toDateTime('2026-01-01 00:00:00', 'UTC')],"
        " CAST([] AS Array(UInt32)), CAST([] AS Array(String)), number + 1"
        f" FROM numbers({profiles})"
    )
    types = ", ".join(f"'{t}'" for t in TYPES)
    ch.execute(
        "INSERT INTO message_events SELECT"
        " toString(number) AS event_id, number AS position,"
        f" [{types}][number % {len(TYPES)} + 1] AS event_type,"
        " toDateTime('2026-03-01 00:00:00', 'UTC') + (intHash64(number) % 2592000) AS at,"
        " toDate(at) AS day, toString(intDiv(number, 10)) AS message_id,"
        " toString(number % 200) AS campaign_id,"
        " '' AS run_id, '' AS scenario_id, toString(number % 400) AS template_id, 1 AS template_version,"
        " '1' AS database_id, '7' AS resource_id, 'email' AS channel,"
        f" toString(intHash32(number) % {profiles}) AS profile_id,"
        " 'example.org' AS recipient_domain, 'Other' AS domain_group,"
        " 'main' AS sender_id, toString(number % 3) AS link_id, 'https://shop.example/' AS link_url,"
        " '' AS link_name, '' AS bounce_class, '' AS bounce_text, '' AS reason,"
        " toUInt8(number % 3 = 0) AS is_unique, toUInt8(0) AS is_test, toUInt8(number % 50 = 0) AS is_bot"
        f" FROM numbers({events})"
    )


if __name__ == "__main__":
    run(main)
