"""The audience growth report ("Прирост аудитории"): new profiles, subscription gains and losses by cause.

Rows come from `profile_creations` and `subscription_changes` (see the report sink).

Metric definitions:
- new_profiles ("Подписчики"): profiles created in the period; `new_profiles_<source>` splits them by
  how they were created (import: a file or batch import, api: the API upsert, manual: created one by
  one, segment: the Segment-compatible tracker's identify; other: any other source);
- a *gain* is a subscription that became subscribed: added as subscribed, or changed to subscribed
  from another status; `gain_<cause>` splits gains by the change's cause (import, api, form...);
- a *loss* is a subscribed subscription changed to another status; `loss_<cause>` splits losses
  (unsubscribe_link and list_unsubscribe: the subscriber's own unsubscribes, api and manual: an
  operator's, complaint: a spam report, hard_bounce: the mailbox does not exist...);
- gains, losses: all gains, all losses; growth ("Прирост"): gains − losses.

Request: `group_by` day (default), week, month or database; filters database, resource, channel
(resource and channel narrow subscription changes only: a profile belongs to a database, not to a
resource); params `interval` (the chart: day, week, month). `metrics`: any of `METRICS`, default all.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template
from typing import Any

from herald.domain.subscriptions import Cause
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

PROFILE_SOURCES = ("import", "api", "manual", "segment")
CAUSES = tuple(cause.value for cause in Cause)

METRICS: tuple[str, ...] = (
    "new_profiles",
    *(f"new_profiles_{source}" for source in (*PROFILE_SOURCES, "other")),
    "gains",
    "losses",
    "growth",
    *(f"gain_{cause}" for cause in CAUSES),
    *(f"loss_{cause}" for cause in CAUSES),
)

GROUPS: Mapping[str, str] = {**INTERVALS, "database": "database_id"}
FILTERS = ("database", "resource", "channel")
PARAMS = ("interval",)

# Both kinds of change as one stream of rows: a created profile, or a subscription change marked as a
# gain, a loss, or neither (e.g. subscribed → subscribed under a new cause never happens; unsubscribed
# → suspended changes nothing for the audience).
_CHANGES = """
    SELECT day, database_id, 'profile' AS kind, source, '' AS cause, 0 AS gain, 0 AS loss
    FROM profile_creations FINAL
    WHERE day >= {start:Date} AND day <= {end:Date}
        AND (is_test = 0 OR {include_tests:UInt8} = 1)
        AND ({database:String} = '' OR database_id = {database:String})
    UNION ALL
    SELECT day, database_id, 'subscription' AS kind, '' AS source, cause,
        status = 'subscribed' AND status_before != 'subscribed' AS gain,
        status_before = 'subscribed' AND status != 'subscribed' AS loss
    FROM subscription_changes FINAL
    WHERE day >= {start:Date} AND day <= {end:Date}
        AND (is_test = 0 OR {include_tests:UInt8} = 1)
        AND ({database:String} = '' OR database_id = {database:String})
        AND ({resource:String} = '' OR resource_id = {resource:String})
        AND ({channel:String} = '' OR channel = {channel:String})
"""

_GROWTH = Template("""
SELECT $key AS group_key,
    countIf(kind = 'profile') AS new_profiles,
    $sources,
    countIf(kind = 'profile' AND source NOT IN ($known_sources)) AS new_profiles_other,
    countIf(gain = 1) AS gains,
    countIf(loss = 1) AS losses,
    toInt64(countIf(gain = 1)) - toInt64(countIf(loss = 1)) AS growth,
    $causes
FROM ($changes)
GROUP BY group_key
ORDER BY group_key
""")


def growth_sql(key: str) -> str:
    """The query for one grouping expression (a constant from GROUPS)."""
    return _GROWTH.substitute(
        key=key,
        sources=",\n    ".join(
            f"countIf(kind = 'profile' AND source = '{source}') AS new_profiles_{source}"
            for source in PROFILE_SOURCES
        ),
        known_sources=", ".join(f"'{source}'" for source in PROFILE_SOURCES),
        causes=",\n    ".join(
            f"countIf({kind} = 1 AND cause = '{cause}') AS {kind}_{cause}"
            for kind in ("gain", "loss")
            for cause in CAUSES
        ),
        changes=_CHANGES,
    )


class GrowthReport:
    name = "growth"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        check_period(request.period)
        check_metrics(request.metrics, METRICS)
        metrics = request.metrics or METRICS
        check_keys(request.filters, FILTERS, "filters")
        check_keys(request.params, PARAMS, "params")
        group = check_choice(request.group_by or "day", GROUPS, "group_by")
        interval = check_choice(str(request.params.get("interval", "day")), INTERVALS, "params.interval")
        values: dict[str, Any] = {
            "start": request.period.start,
            "end": request.period.end,
            "include_tests": int(request.include_tests),
            **{name: str(request.filters.get(name, "")) for name in FILTERS},
        }
        rows = ch.query(growth_sql(GROUPS[group]), values)
        table = tuple((row["group_key"], *(row[m] for m in metrics)) for row in rows)
        chart = {row["group_key"]: row for row in ch.query(growth_sql(INTERVALS[interval]), values)}
        series = tuple(
            (bucket, *(chart[bucket][m] if bucket in chart else 0 for m in metrics))
            for bucket in buckets(request.period, interval)
        )
        return ReportResult(columns=(group, *metrics), rows=table, series=series)


GROWTH = GrowthReport()
