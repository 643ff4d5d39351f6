"""The report registry: every report the API serves, by name, from an explicit list."""

from __future__ import annotations

from herald.reports.base import Report
from herald.reports.bounces import NON_DELIVERIES, SOFT_BOUNCES
from herald.reports.click_map import CLICK_MAP
from herald.reports.cohort import COHORT
from herald.reports.funnel import FunnelReport, SegmentMembers
from herald.reports.goals import GOALS
from herald.reports.growth import GROWTH
from herald.reports.lifetime import LIFETIME
from herald.reports.summary import SUMMARY


def report_registry(segment_members: SegmentMembers | None = None) -> dict[str, Report]:
    """Every report by name; the funnel's segment steps read `segment_members` (None: refused)."""
    reports = (
        SUMMARY,
        GROWTH,
        CLICK_MAP,
        SOFT_BOUNCES,
        NON_DELIVERIES,
        COHORT,
        LIFETIME,
        FunnelReport(segment_members),
        GOALS,
    )
    return {report.name: report for report in reports}


REPORTS = report_registry()
"""The reports of a server without segments (scripts and tests that need no segment steps)."""
