"""The lifetime report ("Время жизни"): how many days a cohort's profiles stay active, by the guide's
algorithm, and the cohort's activity in each day (week, month) since its start.

Request:
- `params`: "interval", the cohort size, "week" (default) or "month" (cohorts as in the cohort
  report); "activity_interval", the unit of the activity table's columns: "day", "week" or "month"
  (default: the cohort size).
- `filters`: "database" (the profile database the cohorts were created in; the guide always asks
  for one, absent here means every database), "resource" and "channel" (which messages count).
- `include_tests`: count test profiles and test sends too (left out by default).

Definitions (notes seed000-D §3.3). "A subscriber counts as active while they click links in
messages"; a click here is a unique click (the guide leaves which clicks; unique ones leave bots and
repeated clicks out, as the other reports do):
1. clicks_d: the cohort's unique clicks on day d of the period (from the cohort's start on);
2. M (peak_clicks): the most clicks the cohort made in one day;
3. days with clicks_d < 5 % of M are left out (compared as 20 * clicks_d < M, exact in integers);
4. lifetime (days) = the sum of clicks_d / M over the days kept (active_days counts them).
A cohort without clicks lives 0 days. The activity table ("Динамика активности") gives, for interval
n, the cohort's unique clicks in it over those of its busiest interval (1.0 = the peak; fractions, as
every rate). Interval n is the n-th calendar day (week, month) counting the one the cohort starts in
as 1; None where it starts after the period, and None for a cohort without clicks.
"""

from __future__ import annotations

from collections.abc import Mapping
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
)
from herald.reports.cohort import (
    COHORT_MEMBERS_SQL,
    COHORT_SIZES_SQL,
    cohort_params,
    cohort_size,
    intervals_seen,
    message_filters,
)

ACTIVITY_UNITS = ("day", "week", "month")
PARAMS = ("interval", "activity_interval")
NO_CLICKS: Mapping[str, Any] = {"peak_clicks": 0, "active_days": 0, "lifetime_days": 0.0}

# clicks: the unique clicks of each cohort's profiles on each day of the period, from the cohort's
# start on. Clicks are counted per (profile, day) first, so the join meets one row per profile and day.
COHORT_DAILY_CLICKS_SQL = f"""
SELECT cohort, day, sum(profile_clicks) AS clicks
FROM (
    SELECT profile_id, day, count() AS profile_clicks
    FROM message_events FINAL
    WHERE event_type = 'click' AND is_unique = 1
      AND day >= {{start:Date}} AND day <= {{end:Date}}
      AND ({{resource:String}} = '' OR resource_id = {{resource:String}})
      AND ({{channel:String}} = '' OR channel = {{channel:String}})
      AND ({{include_tests:UInt8}} = 1 OR is_test = 0)
    GROUP BY profile_id, day
) AS events
ALL INNER JOIN ({COHORT_MEMBERS_SQL}) AS members USING profile_id
WHERE day >= cohort
GROUP BY cohort, day
"""

# peak_clicks: M, the most unique clicks the cohort made in one day;
# active_days: the days with at least 5 % of M (20 * clicks >= M);
# lifetime_days: the sum of clicks_d / M over those days (the guide's weighted day count).
LIFETIME_SQL = f"""
SELECT
    cohort,
    arrayReduce('max', daily_clicks) AS peak_clicks,
    arrayFilter(clicks -> clicks * 20 >= peak_clicks, daily_clicks) AS active_day_clicks,
    length(active_day_clicks) AS active_days,
    arraySum(arrayMap(clicks -> clicks / peak_clicks, active_day_clicks)) AS lifetime_days
FROM (
    SELECT cohort, groupArray(clicks) AS daily_clicks
    FROM ({COHORT_DAILY_CLICKS_SQL})
    GROUP BY cohort
)
"""

# activity: per cohort, its unique clicks in each interval (calendar day, week or month since the
# cohort's start, the first being 1) over the clicks of its busiest interval.
ACTIVITY_SQL = f"""
SELECT
    cohort,
    intervals,
    arrayReduce('max', interval_clicks) AS peak_interval_clicks,
    arrayMap(clicks -> clicks / peak_interval_clicks, interval_clicks) AS activity
FROM (
    SELECT cohort, groupArray(interval_number) AS intervals, groupArray(clicks_in_interval) AS interval_clicks
    FROM (
        SELECT
            cohort,
            multiIf(
                {{activity_unit:String}} = 'day', toRelativeDayNum(day) - toRelativeDayNum(cohort),
                {{activity_unit:String}} = 'week', toRelativeWeekNum(day) - toRelativeWeekNum(cohort),
                toRelativeMonthNum(day) - toRelativeMonthNum(cohort)
            ) + 1 AS interval_number,
            sum(clicks) AS clicks_in_interval
        FROM ({COHORT_DAILY_CLICKS_SQL})
        GROUP BY cohort, interval_number
    )
    GROUP BY cohort
)
"""


class LifetimeReport:
    """Each cohort's lifetime in days (the guide's weighted count of active days) and its activity."""

    name = "lifetime"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        """One row per cohort: profiles, peak clicks, active days, lifetime, then the activity table."""
        check_keys(request.params, PARAMS, "params")
        unit = cohort_size(request)
        if request.metrics:
            raise ReportError("the lifetime report has no metrics to choose", "metrics.0")
        activity_unit = check_choice(
            str(request.params.get("activity_interval", unit)), ACTIVITY_UNITS, "params.activity_interval"
        )
        members = cohort_params(request, unit)
        clicks = {**members, **message_filters(request)}
        sizes = {row["cohort"]: row["profiles"] for row in ch.query(COHORT_SIZES_SQL, members)}
        lifetimes = {row["cohort"]: row for row in ch.query(LIFETIME_SQL, clicks)}
        activity = {
            row["cohort"]: dict(zip(row["intervals"], row["activity"], strict=True))
            for row in ch.query(ACTIVITY_SQL, {**clicks, "activity_unit": activity_unit})
        }
        # The oldest possible cohort starts the period's first cohort bucket: it has the most intervals.
        first_cohort = buckets(request.period, unit)[0]
        width = len(buckets(Period(first_cohort, request.period.end), activity_unit))
        rows = []
        for cohort, profiles in sizes.items():
            lifetime = lifetimes.get(cohort, NO_CLICKS)
            shares = activity.get(cohort)
            seen = intervals_seen(cohort, activity_unit, request.period)
            cells = [None if shares is None or n > seen else shares.get(n, 0.0) for n in range(1, width + 1)]
            figures = (lifetime["peak_clicks"], lifetime["active_days"], lifetime["lifetime_days"])
            rows.append((cohort, profiles, *figures, *cells))
        columns = (
            "cohort",
            "profiles",
            "peak_clicks",
            "active_days",
            "lifetime_days",
            *(f"{activity_unit}_{n}" for n in range(1, width + 1)),
        )
        return ReportResult(columns, tuple(rows))


LIFETIME = LifetimeReport()
