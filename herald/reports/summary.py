"""The summary report ("Сводный отчёт"): every counter and rate of email, SMS and push, by a grouping.

Counts come from `message_rollup`, which the report sink keeps: message events per day and per every
dimension below (see `projections/message_rollup.py`), so a report sums a few thousand rows, not every
event. Counters are counted per channel; rates divide two counters of the same channel and are NULL
when the divisor is 0. Rates are fractions (0.25 = 25 %), not percentages, so clients format them.

Request:
- `group_by`: campaign, scenario, database, template, resource, domain_group, domain, vendor, sender,
  day, week, month; none gives one row for the whole period;
- `metrics`: any of `METRICS`; none means the preset's list;
- `filters` ("Что-то конкретное?"): one object per grouping name (campaign, scenario, database,
  template, resource, domain_group, domain, vendor, sender), by id or name;
- `include_tests`: count test sends; `params.include_deleted`: count deleted campaigns, templates,
  databases, resources and scenarios; `params.preset`: email (default), sms, push or all;
  `params.interval`: the chart's buckets, day (default), week or month.

The vendor ("Поставщик") of an event is the profile's `_vendor` when the event happened: a profile
whose vendor changes keeps its earlier messages under the earlier vendor.

The series is the chart: one row per bucket of the period (none missing), with the same metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    flag,
)

CHANNELS = ("email", "sms", "push", "telegram_bot")

# Counter → the message events it counts (within one channel). Bots (`domain/bots.py`) are left out
# of every tracked counter and counted on their own (bot_*); a "unique" action is one the delivery
# decider flagged `unique`: the first such action on the message, or the first after 24 hours since
# the last unique one (never a bot's). The guide's formulas (§ "Принцип расчёта относительных
# показателей") divide these counters; two choices make them hold where the guide is silent:
# - a message a DSN hard-bounced after the relay accepted it was not delivered: `delivered` leaves
#   it out (whenever the bounce came), so delivered + hard bounces never exceed what was sent; the
#   sink takes the delivery off the rollup's count when the bounce comes (projections/message_rollup.py);
# - a person's click with no open in the 24 hours before it records that open too (the decider's
#   implied open: images blocked or cached), so CTOR (unique clicks / unique opens) never counts a
#   clicker who never opened, and the open rate holds every clicker.
COUNTERS: Mapping[str, str] = {
    # queued: messages that passed the send gate and were rendered for the sender.
    "queued": "event_type = 'queued'",
    # suppressed: messages the send gate stopped (stop list, status, policy cap, duplicate...).
    "suppressed": "event_type = 'suppressed'",
    # failed: messages that could not be made (rendering or a remote fetch failed).
    "failed": "event_type = 'failed'",
    # sent ("отправлено"): messages the sender attempted at least once (the first attempt).
    "sent": "event_type = 'sent'",
    # delivered: messages the recipient's server accepted and did not hard-bounce later (by DSN).
    "delivered": "event_type = 'delivered'",
    # soft_bounces: temporary failures; every one counts (a message retried twice bounces twice).
    "soft_bounces": "event_type = 'soft_bounce'",
    # hard_bounces: permanent failures (unknown mailbox, bad domain...), at most one per message.
    "hard_bounces": "event_type = 'hard_bounce'",
    # not_delivered: messages given up on (retries expired, campaign stopped, sender error).
    "not_delivered": "event_type = 'not_delivered'",
    # opens: every open by a person (the open pixel, or a click with no open before it), bots left out.
    "opens": "event_type = 'open' AND is_bot = 0",
    # unique_opens ("уник. открытия"): opens flagged unique.
    "unique_opens": "event_type = 'open' AND is_unique = 1",
    # clicks: every tracked link click by a person.
    "clicks": "event_type = 'click' AND is_bot = 0",
    # unique_clicks ("уник. клики"): clicks flagged unique (per message, whichever link).
    "unique_clicks": "event_type = 'click' AND is_unique = 1",
    # reads: the read pixel fired (the message stayed open long enough), bots left out.
    "reads": "event_type = 'read' AND is_bot = 0",
    # unique_reads: reads flagged unique.
    "unique_reads": "event_type = 'read' AND is_unique = 1",
    # bot_opens, bot_clicks, bot_reads: the same hits from machines (mail scanners, link checkers,
    # HTTP clients, prefetches): recorded, and counted nowhere else.
    "bot_opens": "event_type = 'open' AND is_bot = 1",
    "bot_clicks": "event_type = 'click' AND is_bot = 1",
    "bot_reads": "event_type = 'read' AND is_bot = 1",
    # unsubscribes ("отписки"): unsubscribed through the message (link, one-click header, mailto).
    "unsubscribes": "event_type = 'unsubscribe'",
    # complaints ("жалобы"): spam reports (feedback loops, ARF).
    "complaints": "event_type = 'complaint'",
}

# Rate → (numerator, denominator), both counters of the same channel.
RATES: Mapping[str, tuple[str, str]] = {
    "delivery_rate": ("delivered", "sent"),  # % delivered
    "open_rate": ("unique_opens", "delivered"),  # OR: unique opens per delivered message
    "click_rate": ("unique_clicks", "delivered"),  # CTR: unique clicks per delivered message
    "click_to_open_rate": ("unique_clicks", "unique_opens"),  # CTOR: unique clicks per unique open
    "read_rate": ("unique_reads", "delivered"),
    "soft_bounce_rate": ("soft_bounces", "sent"),
    "hard_bounce_rate": ("hard_bounces", "sent"),
    "not_delivered_rate": ("not_delivered", "sent"),
    "unsubscribe_rate": ("unsubscribes", "delivered"),
    "complaint_rate": ("complaints", "delivered"),
}

METRICS: tuple[str, ...] = tuple(f"{channel}_{name}" for channel in CHANNELS for name in (*COUNTERS, *RATES))
"""Every metric: `<channel>_<counter or rate>` (email_sent, sms_delivery_rate, push_unique_opens...)."""

_EMAIL = tuple(f"email_{name}" for name in (*COUNTERS, *RATES))
_SENDING = ("queued", "suppressed", "failed", "sent", "delivered", "not_delivered")


def _preset(channel: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{channel}_{name}" for name in (*_SENDING, *names))


_SMS = _preset(
    "sms", "clicks", "unique_clicks", "bot_clicks", "delivery_rate", "click_rate", "not_delivered_rate"
)
_PUSH = _preset(
    "push",
    "opens",
    "unique_opens",
    "clicks",
    "unique_clicks",
    "delivery_rate",
    "open_rate",
    "click_rate",
    "click_to_open_rate",
)
# a Telegram message is delivered when the Bot API takes it; a chat that blocked the bot hard-bounces
_TELEGRAM = _preset(
    "telegram_bot",
    "soft_bounces",
    "hard_bounces",
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "delivery_rate",
    "click_rate",
    "hard_bounce_rate",
    "not_delivered_rate",
)
PRESETS: Mapping[str, tuple[str, ...]] = {
    "email": _EMAIL,
    "sms": _SMS,
    "push": _PUSH,
    "telegram_bot": _TELEGRAM,
    "all": METRICS,
}
"""Preset → the metrics it shows: what the channel's messages can have."""

GROUPS: Mapping[str, str] = {
    "campaign": "campaign_id",
    "scenario": "scenario_id",
    "database": "database_id",
    "template": "template_id",
    "resource": "resource_id",
    "domain_group": "domain_group",
    "domain": "recipient_domain",
    "vendor": "vendor",
    "sender": "sender_id",
    **INTERVALS,
}
"""group_by → the expression over the filtered rows that names a row of the report."""

FILTERS: Mapping[str, str] = {name: column for name, column in GROUPS.items() if name not in INTERVALS}
"""filter name → the column it must equal (the grouping names, without the time buckets)."""

PARAMS = ("preset", "interval", "include_deleted")

# The period's counts, tests and deleted objects left out unless asked for, narrowed by the filters
# (an empty filter value means "any"); marker rows (log_positions) are the sink's, not events.
_ROWS = """
    SELECT day, channel, event_type, is_unique, is_bot, campaign_id, scenario_id, database_id,
        template_id, resource_id, domain_group, recipient_domain, sender_id, vendor, events
    FROM message_rollup
    WHERE log_positions = 0 AND day >= {start:Date} AND day <= {end:Date}
        AND (is_test = 0 OR {include_tests:UInt8} = 1)
        AND ({include_deleted:UInt8} = 1 OR (
            campaign_id NOT IN (SELECT object_id FROM deleted_objects FINAL WHERE kind = 'campaign')
            AND template_id NOT IN (SELECT object_id FROM deleted_objects FINAL WHERE kind = 'template')
            AND database_id NOT IN (SELECT object_id FROM deleted_objects FINAL WHERE kind = 'database')
            AND resource_id NOT IN (SELECT object_id FROM deleted_objects FINAL WHERE kind = 'resource')
            AND scenario_id NOT IN (SELECT object_id FROM deleted_objects FINAL WHERE kind = 'scenario')))
        AND ({campaign:String} = '' OR campaign_id = {campaign:String})
        AND ({scenario:String} = '' OR scenario_id = {scenario:String})
        AND ({database:String} = '' OR database_id = {database:String})
        AND ({template:String} = '' OR template_id = {template:String})
        AND ({resource:String} = '' OR resource_id = {resource:String})
        AND ({domain_group:String} = '' OR domain_group = {domain_group:String})
        AND ({domain:String} = '' OR recipient_domain = {domain:String})
        AND ({vendor:String} = '' OR vendor = {vendor:String})
        AND ({sender:String} = '' OR sender_id = {sender:String})
"""

# The outer query turns the counters into rates; the inner one counts, per group key.
_SUMMARY = Template("""
SELECT $key_select $counter_names, $rates
FROM (
    SELECT $key_expression $counters
    FROM ($rows) AS m
    $group_by
)
$order_by
""")


def _counter_sql() -> str:
    return ",\n        ".join(
        f"sumIf(events, channel = '{channel}' AND {condition}) AS {channel}_{name}"
        for channel in CHANNELS
        for name, condition in COUNTERS.items()
    )


def _rate_sql() -> str:
    return ",\n    ".join(
        f"if({channel}_{den} = 0, NULL, {channel}_{num} / {channel}_{den}) AS {channel}_{name}"
        for channel in CHANNELS
        for name, (num, den) in RATES.items()
    )


_COUNTER_NAMES = tuple(f"{channel}_{name}" for channel in CHANNELS for name in COUNTERS)


def summary_sql(key: str | None) -> str:
    """The query for one grouping expression (None: one row for everything); the key is a constant."""
    return _SUMMARY.substitute(
        key_select="group_key," if key else "",
        key_expression=f"{key} AS group_key," if key else "",
        counter_names=", ".join(_COUNTER_NAMES),
        rates=_rate_sql(),
        counters=_counter_sql(),
        rows=_ROWS,
        group_by="GROUP BY group_key" if key else "",
        order_by="ORDER BY group_key" if key else "",
    )


class SummaryReport:
    name = "summary"

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        check_period(request.period)
        metrics = _metrics(request)
        check_keys(request.filters, FILTERS, "filters")
        check_keys(request.params, PARAMS, "params")
        interval = check_choice(str(request.params.get("interval", "day")), INTERVALS, "params.interval")
        group = check_choice(request.group_by, GROUPS, "group_by") if request.group_by else None
        values = _values(request)
        key = GROUPS[group] if group else None
        rows = ch.query(summary_sql(key), values)
        table = tuple(((row["group_key"],) if group else ()) + tuple(row[m] for m in metrics) for row in rows)
        chart = ch.query(summary_sql(INTERVALS[interval]), values)
        series = _filled(chart, metrics, buckets(request.period, interval))
        columns = ((group,) if group else ()) + metrics
        return ReportResult(columns=columns, rows=table, series=series)


def _metrics(request: ReportRequest) -> tuple[str, ...]:
    if request.metrics:
        check_metrics(request.metrics, METRICS)
        return request.metrics
    preset = check_choice(str(request.params.get("preset", "email")), PRESETS, "params.preset")
    return PRESETS[preset]


def _values(request: ReportRequest) -> dict[str, Any]:
    values: dict[str, Any] = {
        "start": request.period.start,
        "end": request.period.end,
        "include_tests": int(request.include_tests),
        "include_deleted": int(flag(request.params, "include_deleted")),
    }
    for name in FILTERS:
        values[name] = str(request.filters.get(name, ""))
    return values


def _filled(
    rows: list[dict[str, Any]], metrics: tuple[str, ...], wanted: list[Any]
) -> tuple[tuple[Any, ...], ...]:
    """One chart row per bucket: counters 0 and rates NULL where the bucket has no rows."""
    by_bucket = {row["group_key"]: row for row in rows}
    empty = {m: (None if _is_rate(m) else 0) for m in metrics}
    return tuple((bucket, *(by_bucket.get(bucket, empty)[m] for m in metrics)) for bucket in wanted)


def _is_rate(metric: str) -> bool:
    return metric.split("_", 1)[1] in RATES


SUMMARY = SummaryReport()
