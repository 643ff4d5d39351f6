"""The cohort report ("Когортный отчёт"): profiles grouped by the week or month they were created in,
and one of five engagement values for each cohort in each week (month) since its start.

Request:
- `group_by`: the cohort size, "week" (default) or "month". A week cohort starts on Monday.
- `metrics`: at most one cohort value (default "unique_clicks"), see `VALUES` below.
- `filters`: "database_id" (the profile database the cohort was created in), "resource_id" and
  "channel" (which messages count); each optional, absent meaning all.
- `include_tests`: count test profiles and test sends too (left out by default).

Definitions (the guide's, notes seed000-D §3.2, with the choices it leaves open):
- A profile's cohort is the Monday (or the 1st) of the day its profile was created (imported or
  otherwise), for profiles created within the period; creations before the period make no cohort.
- Interval n (columns "week_1", "week_2", ... or "month_1", ...) is the n-th week (month) of the
  cohort, the cohort's own week (month) being the first. A message event counts in the interval of
  its day; only events within the period count, so the first and last intervals of the period may
  be partial.
- A cell is None where the interval starts after the period ends (the cohort has not reached it
  yet), and None for a ratio whose denominator is 0 there; counts are 0 when nothing happened.
- The last row, "average", is the plain mean of the cells above it that are not None (each cohort
  weighs the same, as the guide's "Усреднённый результат"), and its "profiles" the sum of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    Period,
    ReportError,
    ReportRequest,
    ReportResult,
    check_choice,
    check_metrics,
    check_period,
)

COHORT_SIZES = ("week", "month")

# The five cohort values ("Значение когорты"). Counts are of events, not of people: a unique open is
# an open flagged unique by the stream (the same profile's open of the same message at least 24 h
# after the last one counted), so one person may count more than once (the guide's uniqueness rule).
VALUES = {
    "unique_clicks": "number of unique clicks",
    "unique_opens": "number of unique opens",
    "click_to_open": "unique clicks / unique opens, in %",
    "open_rate": "unique opens / sent messages, in %",
    "click_rate": "unique clicks / sent messages, in %",
}
COUNT_VALUES = frozenset({"unique_clicks", "unique_opens"})
FILTERS = ("database_id", "resource_id", "channel")

# Every profile created within the period, with its cohort: the Monday (or first day of the month)
# of its creation day. `monthly` picks the cohort size; both sizes are computed, one is kept.
COHORT_MEMBERS_SQL = """
SELECT
    profile_id,
    if({monthly:UInt8} = 1, toStartOfMonth(min(day)), toMonday(min(day))) AS cohort
FROM profile_creations FINAL
WHERE day >= {start:Date} AND day <= {end:Date}
  AND ({database_id:String} = '' OR database_id = {database_id:String})
  AND ({include_tests:UInt8} = 1 OR is_test = 0)
GROUP BY profile_id
"""

# Cohort size: the number of profiles created in the cohort's week (month) within the period.
COHORT_SIZES_SQL = f"""
SELECT cohort, count() AS profiles
FROM ({COHORT_MEMBERS_SQL})
GROUP BY cohort
ORDER BY cohort
"""

# Per cohort and interval:
# - sent: messages queued for delivery to the cohort's profiles ("Отправлено": a MessageQueued event;
#   suppressed and failed messages were never sent);
# - unique_opens / unique_clicks: open / click events flagged unique by the stream (bots never are);
# - click_to_open = 100 * unique_clicks / unique_opens; open_rate = 100 * unique_opens / sent;
#   click_rate = 100 * unique_clicks / sent; NULL where the denominator is 0.
# Events are summed per (profile, bucket) first, so the join meets one row per profile and bucket.
COHORT_VALUES_SQL = f"""
SELECT
    cohort,
    if({{monthly:UInt8}} = 1,
       toRelativeMonthNum(bucket) - toRelativeMonthNum(cohort),
       toRelativeWeekNum(bucket) - toRelativeWeekNum(cohort)) + 1 AS interval_number,
    sum(profile_sent) AS sent,
    sum(profile_unique_opens) AS unique_opens,
    sum(profile_unique_clicks) AS unique_clicks,
    if(unique_opens = 0, NULL, 100 * unique_clicks / unique_opens) AS click_to_open,
    if(sent = 0, NULL, 100 * unique_opens / sent) AS open_rate,
    if(sent = 0, NULL, 100 * unique_clicks / sent) AS click_rate
FROM (
    SELECT
        profile_id,
        if({{monthly:UInt8}} = 1, toStartOfMonth(day), toMonday(day)) AS bucket,
        countIf(event_type = 'queued') AS profile_sent,
        countIf(event_type = 'open' AND is_unique = 1) AS profile_unique_opens,
        countIf(event_type = 'click' AND is_unique = 1) AS profile_unique_clicks
    FROM message_events FINAL
    WHERE day >= {{start:Date}} AND day <= {{end:Date}}
      AND ({{resource_id:String}} = '' OR resource_id = {{resource_id:String}})
      AND ({{channel:String}} = '' OR channel = {{channel:String}})
      AND ({{include_tests:UInt8}} = 1 OR is_test = 0)
    GROUP BY profile_id, bucket
) AS events
ALL INNER JOIN ({COHORT_MEMBERS_SQL}) AS members USING profile_id
WHERE bucket >= cohort
GROUP BY cohort, interval_number
ORDER BY cohort, interval_number
"""


class CohortReport:
    """Cohorts by creation week or month, and one engagement value per interval since."""

    name = "cohort"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        """The cohort table: one row per cohort, one column per interval, and the average row."""
        monthly = cohort_size(request) == "month"
        value = self._value(request)
        check_filters(request.filters, FILTERS)
        if request.params:
            raise ReportError("the cohort report takes no params", f"params.{next(iter(request.params))}")
        params = {
            **cohort_params(request, monthly),
            "resource_id": request.filters.get("resource_id", ""),
            "channel": request.filters.get("channel", ""),
        }
        sizes = {row["cohort"]: row["profiles"] for row in ch.query(COHORT_SIZES_SQL, cohort_params(request, monthly))}
        cells = {(row["cohort"], row["interval_number"]): row[value] for row in ch.query(COHORT_VALUES_SQL, params)}
        unit = "month" if monthly else "week"
        # The oldest possible cohort is the period's first bucket; it has the most intervals.
        count = interval_count(request.period.start, request.period.end, unit)
        empty = 0 if value in COUNT_VALUES else None
        rows = [
            (
                cohort,
                profiles,
                *(
                    cells.get((cohort, n), empty) if reached(cohort, n, unit, request.period) else None
                    for n in range(1, count + 1)
                ),
            )
            for cohort, profiles in sizes.items()
        ]
        columns = ("cohort", "profiles", *(f"{unit}_{n}" for n in range(1, count + 1)))
        return ReportResult(columns, (*rows, average_row(rows, len(columns))))

    @staticmethod
    def _value(request: ReportRequest) -> str:
        check_metrics(request.metrics, VALUES)
        if len(request.metrics) > 1:
            raise ReportError("the cohort table shows one value at a time", "metrics.1")
        return request.metrics[0] if request.metrics else "unique_clicks"


# ------------------------------------------------------------ shared with the lifetime report


def cohort_size(request: ReportRequest) -> str:
    """The cohort size asked for in `group_by` ("week" unless given), after checking the period."""
    check_period(request.period)
    return check_choice(request.group_by or "week", COHORT_SIZES, "group_by")


def check_filters(filters: Mapping[str, str], allowed: Sequence[str]) -> None:
    """Refuse a filter the report does not know, or one that is not a string."""
    for key, value in filters.items():
        check_choice(key, allowed, f"filters.{key}")
        if not isinstance(value, str):
            raise ReportError("a filter is an id, given as a string", f"filters.{key}")


def cohort_params(request: ReportRequest, monthly: bool) -> dict[str, Any]:
    """The bound parameters of `COHORT_MEMBERS_SQL`."""
    return {
        "start": request.period.start,
        "end": request.period.end,
        "monthly": int(monthly),
        "database_id": request.filters.get("database_id", ""),
        "include_tests": int(request.include_tests),
    }


def bucket_start(day: date, unit: str) -> date:
    """The first day of `day`'s bucket: itself, its Monday, or the first of its month (as in the SQL)."""
    if unit == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday()) if unit == "week" else day


def add_buckets(start: date, count: int, unit: str) -> date:
    """The first day of the bucket `count` days (weeks, months) after the one starting on `start`."""
    if unit == "day":
        return start + timedelta(days=count)
    if unit == "week":
        return start + timedelta(weeks=count)
    months = start.year * 12 + start.month - 1 + count
    return date(months // 12, months % 12 + 1, 1)


def interval_count(first: date, last: date, unit: str) -> int:
    """How many buckets of `unit` there are from the one holding `first` to the one holding `last`."""
    first, last = bucket_start(first, unit), bucket_start(last, unit)
    if unit == "month":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return (last - first).days // (7 if unit == "week" else 1) + 1


def reached(cohort: date, n: int, unit: str, period: Period) -> bool:
    """Whether interval `n` (1 = the bucket holding the cohort's start) begins within the period."""
    return add_buckets(bucket_start(cohort, unit), n - 1, unit) <= period.end


def average_row(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[Any, ...]:
    """("average", total profiles, then per column the mean of the cohorts' values that are not None)."""
    means: list[float | None] = []
    for column in range(2, width):
        values = [row[column] for row in rows if row[column] is not None]
        means.append(sum(values) / len(values) if values else None)
    return ("average", sum(row[1] for row in rows), *means)
