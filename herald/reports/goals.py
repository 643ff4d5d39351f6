"""The goals report ("Цели"): visits and value of goals reached (pixel hits, goal registrations), by
known profiles and by anonymous visitors, grouped by goal, pixel, place, referrer, browser, OS or time.

Request:
- `group_by`: "goal" (default), "pixel", "country", "city", "referrer", "browser", "os", "day",
  "week" or "month" (`GROUPS`); the grouping names the table's first column.
- `metrics`: any of `METRICS`, in the order wanted (default all).
- `filters`: "pixel", "goal" (one pixel or one goal: "Что-то конкретное?"), "database".
- `params`: "interval", the chart's buckets: "day" (default), "week" or "month".
- `include_tests` changes nothing: goal events carry no test flag.

Definitions (notes seed000-D §3.5). Every goal event counts, pixel visit or goal registration:
- visits ("Посещения"): the number of achievements; profile_visits by known profiles,
  anonymous_visits by visitors without a profile ("Посещений профилей", "Анонимные посещения");
- profit ("Прибыль"): the sum of values, positive and negative; income ("Доход") the sum of the
  positive values, costs ("Затраты") the sum of the negative ones (a negative number, so that
  profit = income + costs); each also split by profiles and anonymous visitors;
- share ("% от всех достижений"): the row's visits over all visits of the report, a fraction
  (0.25 = 25 %, as every rate), None when there are none.
A "database" filter narrows the known profiles to that database; anonymous visits have no database
and stay counted (the guide: "База данных" filters known profiles). The guide's "language" slice
has no column in `goal_events` yet.
Rows go from the most visited down (the most popular first), time groupings in time order; the last
row, "total", sums them all ("Итого"). The series has one row per bucket of the period,
`(bucket, visits, profit, income, costs)`, zeros where nothing was reached.
"""

from __future__ import annotations

from string import Template
from typing import Any

from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    INTERVALS,
    ReportRequest,
    ReportResult,
    buckets,
    check_choice,
    check_keys,
    check_metrics,
    check_period,
)

# The grouping's column or expression: names chosen from this table, never from the request's text.
GROUPS = {
    "goal": "goal",
    "pixel": "pixel_id",
    "country": "country",
    "city": "city",
    "referrer": "referrer",
    "browser": "browser",
    "os": "os",
    **INTERVALS,
}
METRICS = (
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
FILTERS = ("pixel", "goal", "database")
PARAMS = ("interval",)
SERIES = ("visits", "profit", "income", "costs")

# The goal events of the period that pass the filters ("" = any); a known profile has a profile id,
# an anonymous visitor only an anonymous (cookie) id.
_WHERE = """
WHERE day >= {start:Date} AND day <= {end:Date}
  AND ({pixel:String} = '' OR pixel_id = {pixel:String})
  AND ({goal:String} = '' OR goal = {goal:String})
  AND (profile_id = '' OR {database:String} = '' OR database_id = {database:String})
"""

# $key is an expression of GROUPS (or of INTERVALS for the chart). Metrics as in the module docstring;
# share is computed from the rows' visits and their total.
GOALS_SQL = Template(f"""
SELECT
    $key AS group_key,
    count() AS visits,
    countIf(profile_id != '') AS profile_visits,
    countIf(profile_id = '') AS anonymous_visits,
    sum(value) AS profit,
    sumIf(value, value > 0) AS income,
    sumIf(value, value < 0) AS costs,
    sumIf(value, value > 0 AND profile_id != '') AS income_profiles,
    sumIf(value, value > 0 AND profile_id = '') AS income_anonymous,
    sumIf(value, value < 0 AND profile_id != '') AS costs_profiles,
    sumIf(value, value < 0 AND profile_id = '') AS costs_anonymous
FROM goal_events FINAL
{_WHERE}
GROUP BY group_key
""")


class GoalsReport:
    """Goal visits, profit, income and costs, known profiles apart from anonymous visitors."""

    name = "goals"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        """The goals table (one row per group, then "total") and its chart series."""
        check_period(request.period)
        group = check_choice(request.group_by or "goal", GROUPS, "group_by")
        check_metrics(request.metrics, METRICS)
        metrics = request.metrics or METRICS
        check_keys(request.filters, FILTERS, "filters")
        check_keys(request.params, PARAMS, "params")
        interval = check_choice(str(request.params.get("interval", "day")), INTERVALS, "params.interval")
        values = {
            "start": request.period.start,
            "end": request.period.end,
            **{name: str(request.filters.get(name, "")) for name in FILTERS},
        }
        groups = ch.query(GOALS_SQL.substitute(key=GROUPS[group]), values)
        if group in INTERVALS:
            groups.sort(key=lambda row: row["group_key"])
        else:
            groups.sort(key=lambda row: (-row["visits"], row["group_key"]))
        total = with_shares(groups)
        rows = tuple((row["group_key"], *(row[metric] for metric in metrics)) for row in (*groups, total))
        chart = {
            row["group_key"]: row for row in ch.query(GOALS_SQL.substitute(key=INTERVALS[interval]), values)
        }
        empty = {"visits": 0, "profit": 0.0, "income": 0.0, "costs": 0.0}
        series = tuple(
            (bucket, *(chart.get(bucket, empty)[metric] for metric in SERIES))
            for bucket in buckets(request.period, interval)
        )
        return ReportResult((group, *metrics), rows, series)


def with_shares(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Set each row's share of all visits, and return the "total" row."""
    total: dict[str, Any] = {"group_key": "total"}
    for metric in METRICS[:-1]:
        total[metric] = sum(row[metric] for row in groups)
    for row in (*groups, total):
        row["share"] = row["visits"] / total["visits"] if total["visits"] else None
    return total


GOALS = GoalsReport()
