"""The report registry: every report the API serves, by name, from an explicit list."""

from __future__ import annotations

from herald.reports.base import Report
from herald.reports.bounces import NON_DELIVERIES, SOFT_BOUNCES
from herald.reports.click_map import CLICK_MAP
from herald.reports.cohort import COHORT
from herald.reports.funnel import FUNNEL
from herald.reports.goals import GOALS
from herald.reports.growth import GROWTH
from herald.reports.lifetime import LIFETIME
from herald.reports.summary import SUMMARY

_ALL: tuple[Report, ...] = (
    SUMMARY,
    GROWTH,
    CLICK_MAP,
    SOFT_BOUNCES,
    NON_DELIVERIES,
    COHORT,
    LIFETIME,
    FUNNEL,
    GOALS,
)

REPORTS: dict[str, Report] = {report.name: report for report in _ALL}
