"""Reports: `GET /api/v1/reports/{name}` as JSON, or exported as CSV or XLSX.

Query parameters: `start`, `end` (inclusive days, UTC), `group_by`, `metrics` (comma-separated),
`include_tests`, `format` (json, csv, xlsx); `filter.<name>=<value>` narrows the rows to one object
(e.g. `filter.campaign=c1`); every other parameter is the report's own option (e.g. `preset=sms`,
`interval=week`); an option that starts with `[` or `{` is JSON (the funnel's
`steps=[{"kind": "sent"}, {"kind": "segment", "id": "3"}]`). Each report checks its groupings,
metrics, filters and options and answers 422 naming the parameter (`group_by`, `metrics.2`,
`filters.campaign`, `params.preset`, `period.end`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.infra.clickhouse import ClickHouse
from herald.reports import REPORTS
from herald.reports.base import Period, Report, ReportError, ReportRequest, ReportResult
from herald.reports.export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, to_csv, to_xlsx

FILTER_PREFIX = "filter."


class ReportQuery(BaseModel):
    """The common parameters; extra ones are filters (`filter.<name>`) or the report's options."""

    model_config = ConfigDict(extra="allow")

    start: date = Field(description="the period's first day (UTC)")
    end: date = Field(description="the period's last day, included")
    group_by: str | None = Field(None, description="the grouping (which ones depends on the report)")
    metrics: str = Field("", description="comma-separated metric names; empty: the report's default")
    include_tests: bool = Field(False, description="count test sends")
    format: Literal["json", "csv", "xlsx"] = "json"


def report_request(query: ReportQuery) -> ReportRequest:
    """The report's request from the query string."""
    extra = {key: str(value) for key, value in (query.model_extra or {}).items()}
    return ReportRequest(
        period=Period(query.start, query.end),
        group_by=query.group_by or None,
        metrics=tuple(metric.strip() for metric in query.metrics.split(",")) if query.metrics else (),
        filters={k.removeprefix(FILTER_PREFIX): v for k, v in extra.items() if k.startswith(FILTER_PREFIX)},
        include_tests=query.include_tests,
        params={k: _option(k, v) for k, v in extra.items() if not k.startswith(FILTER_PREFIX)},
    )


def _option(key: str, text: str) -> Any:
    """A report option's value; one that starts like a JSON list or object (the funnel's steps) is JSON."""
    if not text.lstrip().startswith(("[", "{")):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ReportError(f"the value is not valid JSON: {error}", f"params.{key}") from error


def run_report(
    ch: ClickHouse, name: str, request: ReportRequest, reports: Mapping[str, Report] = REPORTS
) -> ReportResult:
    """Run the named report; an unknown name is a 422 at `name`."""
    report = reports.get(name)
    if report is None:
        raise ReportError(f"unknown report {name!r}; reports: {', '.join(sorted(reports))}", "name")
    return report.run(ch, request)


def report_response(name: str, request: ReportRequest, result: ReportResult, fmt: str) -> Any:
    """The JSON body, or the exported file with a download name."""
    if fmt == "json":
        return {
            "report": name,
            "period": {"start": request.period.start, "end": request.period.end},
            "columns": list(result.columns),
            "rows": [list(row) for row in result.rows],
            "series": [list(row) for row in result.series],
        }
    filename = f"{name}-{request.period.start.isoformat()}-{request.period.end.isoformat()}.{fmt}"
    body, media_type = (
        (to_csv(result), CSV_MEDIA_TYPE) if fmt == "csv" else (to_xlsx(result, name), XLSX_MEDIA_TYPE)
    )
    return Response(
        body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


async def get_report(call: Call) -> Any:
    query: ReportQuery = call.query
    name = call.path_param("name")
    request = report_request(query)
    # Wired by api/wiring.py (the adapter chosen there); None where the server runs without analytics.
    ch: ClickHouse | None = call.herald.clickhouse
    if ch is None:
        raise HttpError(503, "reports need the analytics store, and this server runs without one")
    result = run_report(ch, name, request, call.herald.reports)
    return report_response(name, request, result, query.format)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/reports/{name}",
        get_report,
        "A report (summary, growth, click_map, soft_bounces, non_deliveries, ...) as JSON, CSV or XLSX",
        "reports",
        query=ReportQuery,
        role="read",
    ),
]
