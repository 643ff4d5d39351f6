"""The report interface: a request (period, grouping, metrics, filters), a result table, and the errors.

Every report is a module with one `Report` object whose `run(ch, request)` executes readable SQL on the
ClickHouse port (`herald.infra.clickhouse`) and returns a `ReportResult`. The registry of report names
lives in `herald.reports.__init__` as an explicit list. Bad input raises `ReportError`, a 422 whose
`path` names the parameter ("group_by", "metrics.2", "period.end").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from herald.domain.errors import ValidationFailed
from herald.infra.clickhouse import ClickHouse

# How far back the report store keeps data; a longer period cannot be answered truthfully.
DEFAULT_RETENTION_DAYS = 731

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Period:
    """Inclusive days; the account time zone is UTC for now."""

    start: date
    end: date

    @property
    def days(self) -> int:
        """Number of days covered, both ends included."""
        return (self.end - self.start).days + 1

    @property
    def end_exclusive(self) -> date:
        """The day after `end`, for half-open `day < end` comparisons."""
        return self.end + timedelta(days=1)


@dataclass(frozen=True)
class ReportRequest:
    """What a caller asks of a report; each report validates the parts it uses."""

    period: Period
    group_by: str | None = None
    metrics: tuple[str, ...] = ()
    filters: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    include_tests: bool = False
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class ReportResult:
    """A table (`columns`, `rows`), plus chart rows `(bucket, metric...)` when the report has a series."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    series: tuple[tuple[Any, ...], ...] = ()


class Report(Protocol):
    """One report: a name in the registry and a query over the report tables."""

    name: str

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        """Validate `request` (raising ReportError) and compute the report."""
        ...


class ReportError(ValidationFailed):
    """A report parameter is unknown or out of range (HTTP 422); `path` names the parameter."""


def check_period(period: Period, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
    """Refuse an inverted period, or one longer than the data retention."""
    if period.end < period.start:
        raise ReportError(
            f"the period ends ({period.end.isoformat()}) before it starts ({period.start.isoformat()})",
            "period.end",
        )
    if period.days > retention_days:
        raise ReportError(
            f"the period covers {period.days} days; data is kept for {retention_days} days", "period.start"
        )


def check_choice(value: str, allowed: Sequence[str] | Mapping[str, Any], path: str) -> str:
    """Return `value` if it is one of `allowed`, else raise ReportError naming the choices."""
    if value not in allowed:
        raise ReportError(f"unknown value {value!r}; expected one of: {', '.join(allowed)}", path)
    return value


def check_metrics(metrics: Sequence[str], allowed: Sequence[str] | Mapping[str, Any]) -> None:
    """Raise ReportError at "metrics.<index>" for the first metric not in `allowed`."""
    for index, metric in enumerate(metrics):
        check_choice(metric, allowed, f"metrics.{index}")


def check_keys(given: Mapping[str, Any], allowed: Sequence[str] | Mapping[str, Any], prefix: str) -> None:
    """Raise ReportError at "<prefix>.<key>" for the first key of `given` not in `allowed`."""
    for key in given:
        if key not in allowed:
            choices = ", ".join(allowed) or "none"
            raise ReportError(f"unknown parameter {key!r}; this report takes: {choices}", f"{prefix}.{key}")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def flag(params: Mapping[str, Any], name: str, default: bool = False) -> bool:
    """A yes/no parameter given as a bool or as text ("true", "1", "false", "0")."""
    value = params.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ReportError(f"{value!r} is not a yes/no value (true or false)", f"params.{name}")


INTERVALS: Mapping[str, str] = {
    "day": "day",
    "week": "toMonday(day)",  # weeks start on Monday; toStartOfWeek differs by engine version
    "month": "toStartOfMonth(day)",
}
"""Chart bucket → the ClickHouse expression over a `day Date` column that names it."""


def bucket_start(day: date, interval: str) -> date:
    """The first day of the bucket `day` falls in (what the INTERVALS expression returns)."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def interval_number(start: date, day: date, interval: str) -> int:
    """Which bucket of `interval` `day` falls in, counting the bucket of `start` as 1 (0 or less: before)."""
    if interval == "month":
        return (day.year - start.year) * 12 + day.month - start.month + 1
    days = (bucket_start(day, interval) - bucket_start(start, interval)).days
    return (days // 7 if interval == "week" else days) + 1


def buckets(period: Period, interval: str) -> list[date]:
    """Every bucket of the period, in order, so a chart has no holes."""
    found: list[date] = []
    day = period.start
    while day <= period.end:
        start = bucket_start(day, interval)
        if not found or found[-1] != start:
            found.append(start)
        day += timedelta(days=1)
    return found
