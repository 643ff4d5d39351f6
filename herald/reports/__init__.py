"""The report registry: every report the API serves, by name, from an explicit list."""

from __future__ import annotations

from herald.reports.base import Report

_ALL: tuple[Report, ...] = ()

REPORTS: dict[str, Report] = {report.name: report for report in _ALL}
