"""Reports over 10,000,000 message events and 1,000,000 profiles in chDB; the sink against raw inserts.

Data: the report tables are filled inside chDB with `INSERT ... SELECT` over
`numbers()` (a month of message events: queued, delivered, opens, clicks,
bounces, unsubscribes for 1M profiles over 200 campaigns and 400 templates,
and DSN hard bounces of 2 % of the messages after their delivery;
1M profile creations; subscription changes; goal events), so generating them
costs seconds, not the benchmark's time. Each report then runs with a typical
request and its time is printed (best of 3); the funnel runs with 2, 4, 8 and
16 steps to show how its time grows.

Sink: N synthetic message events (as the log holds them) go through the
ClickHouse sink (fold, batch insert, checkpoint) against a raw chDB insert of
the rows the sink produced, in the same run.

    python bench/bench_reports.py [--events 10000000] [--profiles 1000000] [--sink-events 200000]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from common import machine, report, run, temp_dir

from herald.domain.deliveries import LinkClicked, MessageDelivered, MessageOpened
from herald.domain.events import Event
from herald.domain.messages import MessageQueued
from herald.infra.clickhouse import ChdbClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.infra.event_store import RecordedEvent
from herald.projections.clickhouse_sink import TABLE_COLUMNS, ClickHouseSink
from herald.reports import REPORTS
from herald.reports.base import Period, ReportRequest

START = date(2026, 3, 1)
PERIOD = Period(START, START + timedelta(days=30))
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
            for name, request in _requests():
                seconds = min(_timed(lambda: REPORTS[name].run(ch, request)) for _ in range(3))  # noqa: B023
                print(f"report {name}: {seconds * 1000:,.0f} ms", flush=True)
            if "funnel" in REPORTS:
                for steps in (2, 4, 8, 16):
                    request = _funnel(steps)
                    seconds = min(_timed(lambda: REPORTS["funnel"].run(ch, request)) for _ in range(3))  # noqa: B023
                    print(f"report funnel, {steps} steps: {seconds * 1000:,.0f} ms", flush=True)
            _sink(ch, args.sink_events)
        finally:
            ch.close()


def _timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


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


def _funnel(steps: int) -> ReportRequest:
    kinds = [{"kind": "campaign_action", "action": a, "id": "7"} for a in ("delivered", "open", "click")]
    return ReportRequest(PERIOD, params={"steps": [kinds[i % 3] for i in range(steps)]})


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
