"""The cohort report ("Когортный отчёт"): profiles grouped by the week or month they were created in,
and one of five engagement values for each cohort in each week (month) since its start.

Request:
- `params`: "interval", the cohort size: "week" (default) or "month". A week cohort starts on Monday.
  Rows are always cohorts, so there is no `group_by`.
- `metrics`: at most one cohort value (default "unique_clicks"), one of `VALUES`.
- `filters`: "database" (the profile database the cohort was created in), "resource" and "channel"
  (which messages count); each optional, absent or "" meaning all.
- `include_tests`: count test profiles and test sends too (left out by default).

Definitions (notes seed000-D §3.2, with the choices the guide leaves open):
- A profile's cohort is the week (Monday) or month (the 1st) of the day the profile was created
  (imported or otherwise), for profiles created within the period; the first creation counts.
- Interval n (columns "week_1", "week_2", ... or "month_1", ...) is the n-th calendar week (month)
  of the cohort, its own week (month) being the first. A message event counts in the interval of its
  day, from the cohort's start on; only events within the period count, so the first and last
  intervals may be partial.
- A cell is None where the interval starts after the period (the cohort has not reached it yet), and
  None for a ratio whose divisor is 0 there; counts are 0 when nothing happened.
- The last row, "average", is the plain mean of the cells above it that are not None (each cohort
  weighs the same, as the guide's "Усреднённый результат"), with the sum of the cohorts' profiles.
Ratios are fractions (0.25 = 25 %), as in every report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from string import Template
from typing import Any

from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    Period,
    ReportError,
    ReportRequest,
    ReportResult,
    buckets,
    check_choice,
    check_keys,
    check_metrics,
    check_period,
    interval_number,
)

COHORT_SIZES = ("week", "month")
PARAMS = ("interval",)

# The five cohort values ("Значение когорты"), columns of COHORT_VALUES_SQL. Counts are of events,
# not of people: a unique open is an open the stream flagged unique (the profile's first open of the
# message, or the first 24 h after the last unique one; never a bot's), as in the summary report.
VALUES: Mapping[str, str] = {
    "unique_clicks": "количество уникальных кликов",
    "unique_opens": "количество уникальных открытий",
    "clicks_per_open": "отношение уникальных кликов к открытиям",
    "opens_per_sent": "отношение уникальных открытий к отправленным сообщениям",
    "clicks_per_sent": "отношение уникальных кликов к отправленным сообщениям",
}
COUNT_VALUES = frozenset({"unique_clicks", "unique_opens"})
FILTERS = ("database", "resource", "channel")

# Per profile, built once: its cohort and its message events in the period that $counted keeps.
# - The cohort: every profile created within the period (the first creation counts) is in the cohort
#   of the Monday (or the 1st, `monthly`) of that day.
# - Its events as (log position, day, kind), kind = $kind (1, 2...), and one (0, cohort, 0) that
#   stands for the profile itself, so the same rows count the cohort's profiles (kind 0).
# One GROUP BY over the profile's creations and events together, not a join; the copies of one event a
# retried batch may leave are alike, so the array de-duplicated by position counts each event once,
# without FINAL. Then one row per (cohort, event day, kind), events before the cohort's start left out.
PROFILE_EVENTS_SQL = Template("""
SELECT cohort, tupleElement(event, 2) AS day, tupleElement(event, 3) AS kind
FROM (
    SELECT
        if({monthly:UInt8} = 1, toStartOfMonth(minIf(day, kind = 0)), toMonday(minIf(day, kind = 0)))
            AS cohort,
        arrayJoin(arrayPushFront(
            arrayDistinct(groupArrayIf((position, day, kind), kind != 0)), (toUInt64(0), cohort, toUInt8(0))
        )) AS event
    FROM (
        SELECT profile_id, day, position, toUInt8(0) AS kind
        FROM profile_creations
        WHERE day >= {start:Date} AND day <= {end:Date}
          AND ({database:String} = '' OR database_id = {database:String})
          AND ({include_tests:UInt8} = 1 OR is_test = 0)
        UNION ALL
        SELECT profile_id, day, position, toUInt8($kind) AS kind
        FROM message_events
        WHERE day >= {start:Date} AND day <= {end:Date} AND ($counted)
          AND ({resource:String} = '' OR resource_id = {resource:String})
          AND ({channel:String} = '' OR channel = {channel:String})
          AND ({include_tests:UInt8} = 1 OR is_test = 0)
    )
    GROUP BY profile_id
    HAVING countIf(kind = 0) > 0
)
WHERE day >= cohort
""")

# Per cohort and interval:
# - profiles ("Размер когорты", kind 0, in the first interval): how many profiles the cohort holds;
# - sent ("отправлено", kind 1): the cohort's messages the sender attempted (the first attempt), as
#   the summary report's `sent`;
# - unique_opens (kind 2), unique_clicks (kind 3): opens and clicks flagged unique;
# - clicks_per_open = unique_clicks / unique_opens; opens_per_sent = unique_opens / sent;
#   clicks_per_sent = unique_clicks / sent; NULL where the divisor is 0.
COHORT_VALUES_SQL = f"""
SELECT
    cohort,
    if({{monthly:UInt8}} = 1,
       toRelativeMonthNum(day) - toRelativeMonthNum(cohort),
       toRelativeWeekNum(day) - toRelativeWeekNum(cohort)) + 1 AS interval_number,
    countIf(kind = 0) AS profiles,
    countIf(kind = 1) AS sent,
    countIf(kind = 2) AS unique_opens,
    countIf(kind = 3) AS unique_clicks,
    if(unique_opens = 0, NULL, unique_clicks / unique_opens) AS clicks_per_open,
    if(sent = 0, NULL, unique_opens / sent) AS opens_per_sent,
    if(sent = 0, NULL, unique_clicks / sent) AS clicks_per_sent
FROM ({
    PROFILE_EVENTS_SQL.substitute(
        kind="multiIf(event_type = 'sent', 1, event_type = 'open', 2, 3)",
        counted="event_type = 'sent' OR (event_type IN ('open', 'click') AND is_unique = 1)",
    )
})
GROUP BY cohort, interval_number
ORDER BY cohort, interval_number
"""


class CohortReport:
    """Cohorts by creation week or month, and one engagement value per interval since."""

    name = "cohort"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        """The cohort table: one row per cohort, one column per interval, then the average row."""
        check_keys(request.params, PARAMS, "params")
        unit = cohort_size(request)
        value = _value(request)
        values = ch.query(COHORT_VALUES_SQL, cohort_params(request, unit))
        cells = {(row["cohort"], row["interval_number"]): row[value] for row in values}
        sizes = cohort_sizes(values)
        # The oldest possible cohort starts the period's first bucket: it has the most intervals.
        width = len(buckets(request.period, unit))
        empty = 0 if value in COUNT_VALUES else None
        rows = []
        for cohort, profiles in sizes.items():
            seen = intervals_seen(cohort, unit, request.period)
            row = [cells.get((cohort, n), empty) if n <= seen else None for n in range(1, width + 1)]
            rows.append((cohort, profiles, *row))
        columns = ("cohort", "profiles", *(f"{unit}_{n}" for n in range(1, width + 1)))
        return ReportResult(columns, (*rows, average_row(rows, len(columns))))


def _value(request: ReportRequest) -> str:
    check_metrics(request.metrics, VALUES)
    if len(request.metrics) > 1:
        raise ReportError("the cohort table shows one value at a time", "metrics.1")
    return request.metrics[0] if request.metrics else "unique_clicks"


def average_row(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[Any, ...]:
    """("average", all the cohorts' profiles, then per column the mean of the values that are not None)."""
    means: list[float | None] = []
    for column in range(2, width):
        values = [row[column] for row in rows if row[column] is not None]
        means.append(sum(values) / len(values) if values else None)
    return ("average", sum(row[1] for row in rows), *means)


# ------------------------------------------------------------ shared with the lifetime report


def cohort_size(request: ReportRequest) -> str:
    """The cohort size, `params.interval` ("week" unless given), after checking period, grouping, filters."""
    check_period(request.period)
    if request.group_by is not None:
        raise ReportError("rows are cohorts: give the cohort size as params.interval", "group_by")
    check_keys(request.filters, FILTERS, "filters")
    return check_choice(str(request.params.get("interval", "week")), COHORT_SIZES, "params.interval")


def cohort_params(request: ReportRequest, unit: str) -> dict[str, Any]:
    """The bound parameters of `PROFILE_EVENTS_SQL` for cohorts of `unit` ("week" or "month"): the
    period, the cohorts' database, and which messages count (one resource and channel, or all: "")."""
    return {
        "start": request.period.start,
        "end": request.period.end,
        "monthly": int(unit == "month"),
        "database": str(request.filters.get("database", "")),
        "include_tests": int(request.include_tests),
        **{name: str(request.filters.get(name, "")) for name in ("resource", "channel")},
    }


def cohort_sizes(rows: Sequence[Mapping[str, Any]]) -> dict[date, int]:
    """Cohort → its profiles, in cohort order, from rows giving some of them (`cohort`, `profiles`)."""
    sizes: Counter[date] = Counter()
    for row in rows:
        sizes[row["cohort"]] += row["profiles"]
    return dict(sorted(sizes.items()))


def intervals_seen(cohort: date, unit: str, period: Period) -> int:
    """How many intervals of `unit` of a cohort starting on `cohort` begin within the period."""
    return interval_number(cohort, period.end, unit)


COHORT = CohortReport()
