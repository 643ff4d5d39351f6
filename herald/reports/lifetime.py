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

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    Period,
    ReportError,
    ReportRequest,
    ReportResult,
    buckets,
    check_choice,
    check_keys,
    interval_number,
)
from herald.reports.cohort import (
    PROFILE_EVENTS_SQL,
    cohort_params,
    cohort_size,
    cohort_sizes,
    intervals_seen,
)

ACTIVITY_UNITS = ("day", "week", "month")
PARAMS = ("interval", "activity_interval")

# clicks: the unique clicks of each cohort's profiles on each day of the period, from the cohort's
# start on (kind 1: the only events read); profiles: the cohort's profiles (kind 0, on its first day).
# One query; the lifetime and the activity table both come from its rows.
COHORT_DAILY_CLICKS_SQL = f"""
SELECT cohort, day, countIf(kind = 0) AS profiles, countIf(kind = 1) AS clicks
FROM ({PROFILE_EVENTS_SQL.substitute(kind="1", counted="event_type = 'click' AND is_unique = 1")})
GROUP BY cohort, day
ORDER BY cohort, day
"""


@dataclass(frozen=True)
class Lifetime:
    """One cohort's figures (notes seed000-D §3.3): its peak, the days kept, and the lifetime in days."""

    peak_clicks: int  # M: the most unique clicks the cohort made in one day
    active_days: int  # the days with at least 5 % of M (20 * clicks >= M, exact in integers)
    lifetime_days: float  # the sum of clicks_d / M over those days (the guide's weighted day count)

    @classmethod
    def of(cls, daily_clicks: Sequence[int]) -> Lifetime:
        peak = max(daily_clicks, default=0)
        if not peak:
            return cls(0, 0, 0.0)
        kept = [clicks for clicks in daily_clicks if clicks * 20 >= peak]
        return cls(peak, len(kept), sum(clicks / peak for clicks in kept))


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
        rows = ch.query(COHORT_DAILY_CLICKS_SQL, cohort_params(request, unit))
        sizes = cohort_sizes(rows)
        daily: dict[date, dict[date, int]] = defaultdict(dict)
        for row in rows:
            if row["clicks"]:
                daily[row["cohort"]][row["day"]] = row["clicks"]
        # The oldest possible cohort starts the period's first cohort bucket: it has the most intervals.
        first_cohort = buckets(request.period, unit)[0]
        width = len(buckets(Period(first_cohort, request.period.end), activity_unit))
        table = []
        for cohort, profiles in sizes.items():
            clicks = daily.get(cohort, {})
            lifetime = Lifetime.of(list(clicks.values()))
            shares = _activity(cohort, clicks, activity_unit)
            seen = intervals_seen(cohort, activity_unit, request.period)
            cells = [None if shares is None or n > seen else shares.get(n, 0.0) for n in range(1, width + 1)]
            figures = (lifetime.peak_clicks, lifetime.active_days, lifetime.lifetime_days)
            table.append((cohort, profiles, *figures, *cells))
        columns = (
            "cohort",
            "profiles",
            "peak_clicks",
            "active_days",
            "lifetime_days",
            *(f"{activity_unit}_{n}" for n in range(1, width + 1)),
        )
        return ReportResult(columns, tuple(table))


def _activity(cohort: date, daily_clicks: Mapping[date, int], unit: str) -> dict[int, float] | None:
    """Interval n (the n-th day, week or month from the cohort's) → its clicks over the busiest
    interval's (1.0: the peak); None for a cohort without clicks."""
    per_interval: Counter[int] = Counter()
    for day, clicks in daily_clicks.items():
        per_interval[interval_number(cohort, day, unit)] += clicks
    busiest = max(per_interval.values(), default=0)
    if not busiest:
        return None
    return {n: clicks / busiest for n, clicks in per_interval.items()}


LIFETIME = LifetimeReport()
