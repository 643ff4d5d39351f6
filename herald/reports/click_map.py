"""The email click map ("Карта кликов"): unique clicks per link of one template version, with CTR.

Stats sum over every campaign that sent the template. Rows come from `message_events` (email only).

Metric definitions (per link of the chosen version):
- unique_clicks: clicks flagged unique that hit this link. A click is unique per message (the first
  click, or the first 24 hours after the last unique one), credited to the link it hit, so the links'
  unique clicks add up to the version's; unsubscribe links count like any other link;
- clicks: every click on the link by a person (bots left out);
- click_share ("% от всех кликов"): the link's unique clicks / the version's unique clicks;
- ctr: the link's unique clicks / the version's unique opens (NULL when nobody opened).

The series is one row per template version seen in the period: (template_version, unique_opens,
unique_clicks, unsubscribes), the side panel's numbers for each version.

Request: filters `template` (required) and `template_version` (default: the latest version seen in
the period); `metrics`: any of `METRICS` (default all); no grouping (rows are links).
"""

from __future__ import annotations

from typing import Any

from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    ReportError,
    ReportRequest,
    ReportResult,
    check_keys,
    check_metrics,
    check_period,
)

METRICS = ("unique_clicks", "clicks", "click_share", "ctr")
FILTERS = ("template", "template_version")
LINK_COLUMNS = ("link_id", "link_url", "link_name")
SERIES_COLUMNS = ("template_version", "unique_opens", "unique_clicks", "unsubscribes")

# The template's versions in the period, with the side panel's numbers. Events are counted by distinct
# log position, without FINAL: the copies of one event a retried batch may leave are alike.
_VERSIONS = """
SELECT template_version AS template_version,
    uniqExactIf(position, event_type = 'open' AND is_unique = 1) AS unique_opens,
    uniqExactIf(position, event_type = 'click' AND is_unique = 1) AS unique_clicks,
    uniqExactIf(position, event_type = 'unsubscribe') AS unsubscribes
FROM message_events
WHERE channel = 'email' AND template_id = {template:String}
    AND day >= {start:Date} AND day <= {end:Date}
    AND (is_test = 0 OR {include_tests:UInt8} = 1)
GROUP BY template_version
ORDER BY template_version
"""

# One row per link of the version. A link's URL may carry per-recipient parts; min() shows one of
# them, the same one on every engine (of those an erasure left: an erased profile's clicks keep no URL).
_LINKS = """
SELECT link_id AS link_id,
    minIf(link_url, link_url != '') AS link_url,
    min(link_name) AS link_name,
    uniqExactIf(position, is_unique = 1) AS unique_clicks,
    uniqExactIf(position, is_bot = 0) AS clicks
FROM message_events
WHERE channel = 'email' AND event_type = 'click'
    AND template_id = {template:String} AND template_version = {version:UInt32}
    AND day >= {start:Date} AND day <= {end:Date}
    AND (is_test = 0 OR {include_tests:UInt8} = 1)
GROUP BY link_id
ORDER BY unique_clicks DESC, link_id
"""


class ClickMapReport:
    name = "click_map"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        check_period(request.period)
        check_metrics(request.metrics, METRICS)
        metrics = request.metrics or METRICS
        check_keys(request.filters, FILTERS, "filters")
        check_keys(request.params, (), "params")
        if request.group_by not in (None, "link"):
            raise ReportError("the click map's rows are the template's links: no grouping", "group_by")
        template = request.filters.get("template", "")
        if not template:
            raise ReportError("name the template whose links to map", "filters.template")
        values: dict[str, Any] = {
            "template": template,
            "start": request.period.start,
            "end": request.period.end,
            "include_tests": int(request.include_tests),
        }
        versions = ch.query(_VERSIONS, values)
        series = tuple(
            (v["template_version"], v["unique_opens"], v["unique_clicks"], v["unsubscribes"])
            for v in versions
        )
        columns = (*LINK_COLUMNS, *metrics)
        version = _version(request, versions)
        if version is None:
            return ReportResult(columns=columns, rows=(), series=series)
        totals = next((v for v in versions if v["template_version"] == version), None)
        opens = totals["unique_opens"] if totals else 0
        clicks = totals["unique_clicks"] if totals else 0
        links = ch.query(_LINKS, {**values, "version": version})
        rows = tuple(
            (
                *(link[c] for c in LINK_COLUMNS),
                *(_metric(m, link, opens, clicks) for m in metrics),
            )
            for link in links
        )
        return ReportResult(columns=columns, rows=rows, series=series)


def _version(request: ReportRequest, versions: list[dict[str, Any]]) -> int | None:
    text = request.filters.get("template_version", "")
    if not text:
        return max((v["template_version"] for v in versions), default=None)
    try:
        version = int(text)
    except ValueError:
        version = -1
    if version < 1:
        raise ReportError(f"{text!r} is not a template version (1, 2, ...)", "filters.template_version")
    return version


def _metric(name: str, link: dict[str, Any], unique_opens: int, unique_clicks: int) -> Any:
    if name == "click_share":
        return link["unique_clicks"] / unique_clicks if unique_clicks else None
    if name == "ctr":
        return link["unique_clicks"] / unique_opens if unique_opens else None
    return link[name]


CLICK_MAP = ClickMapReport()
