"""The email bounce reports: soft bounces by response text, and non-deliveries by reason.

Rows come from `message_events` (email only). Both reports take filters `campaign` and `sender`, an
optional `group_by` (sender, campaign or domain_group: the guide's "Сгруппировано" column) and
`include_tests`; their only metric is the count, and rows come most frequent first.

- `soft_bounces` ("Отчёт о возвратах"): every soft bounce (temporary failure, 4xx: full mailbox,
  message too large, service unavailable, deferred for complaints) counts, including repeated
  bounces of one message to one recipient (a counter of attempts, not of messages), aggregated by
  the receiving server's response text exactly as given, and the recipient domain.
- `non_deliveries` ("Отчёт о недоставках"): messages finally not delivered, aggregated by reason,
  recipient domain and error text. Reasons: `hard_bounce` (the mailbox or domain does not exist, or
  the server refused the message for good; the text is the server's response) and the reasons the
  sender gave up on a message (`expired`: soft bounces until the retry deadline, `campaign_stopped`,
  `sender_error`...; the text is the sender's detail, e.g. the last response).
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template
from typing import Any

from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    ReportRequest,
    ReportResult,
    check_choice,
    check_keys,
    check_metrics,
    check_period,
)

GROUPS: Mapping[str, str] = {"sender": "sender_id", "campaign": "campaign_id", "domain_group": "domain_group"}
FILTERS = ("campaign", "sender")

_WHERE = """
    channel = 'email'
    AND day >= {start:Date} AND day <= {end:Date}
    AND (is_test = 0 OR {include_tests:UInt8} = 1)
    AND ({campaign:String} = '' OR campaign_id = {campaign:String})
    AND ({sender:String} = '' OR sender_id = {sender:String})
"""

# Events are counted by distinct log position, without FINAL: the copies of one event a retried batch
# may leave are alike.

# bounces: soft bounce events (attempts), per response text and recipient domain.
_SOFT_BOUNCES = Template("""
SELECT $key_select bounce_text AS bounce_text, recipient_domain AS recipient_domain,
    uniqExact(position) AS bounces
FROM message_events
WHERE event_type = 'soft_bounce' AND $where
GROUP BY $key_group bounce_text, recipient_domain
ORDER BY bounces DESC, $key_group bounce_text, recipient_domain
""")

# messages: non-delivered messages (a hard bounce, or given up), per reason, recipient domain and text.
_NON_DELIVERIES = Template("""
SELECT $key_select if(event_type = 'hard_bounce', 'hard_bounce', reason) AS non_delivery_reason,
    recipient_domain AS recipient_domain, bounce_text AS error_text, uniqExact(position) AS messages
FROM message_events
WHERE event_type IN ('hard_bounce', 'not_delivered') AND $where
GROUP BY $key_group non_delivery_reason, recipient_domain, error_text
ORDER BY messages DESC, $key_group non_delivery_reason, recipient_domain, error_text
""")


class _BounceReport:
    """A count of email failures per text and recipient domain, optionally under a grouping."""

    def __init__(
        self, name: str, sql: Template, columns: tuple[str, ...], aliases: tuple[str, ...], metric: str
    ) -> None:
        self.name = name
        self.sql = sql
        self.columns = columns  # the result's columns after the group
        self.aliases = aliases  # the SQL aliases they come from, in the same order
        self.metric = metric

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        check_period(request.period)
        check_metrics(request.metrics, (self.metric,))
        check_keys(request.filters, FILTERS, "filters")
        check_keys(request.params, (), "params")
        group = check_choice(request.group_by, GROUPS, "group_by") if request.group_by else None
        sql = self.sql.substitute(
            key_select=f"{GROUPS[group]} AS group_key," if group else "",
            key_group="group_key," if group else "",
            where=_WHERE,
        )
        values: dict[str, Any] = {
            "start": request.period.start,
            "end": request.period.end,
            "include_tests": int(request.include_tests),
            **{name: str(request.filters.get(name, "")) for name in FILTERS},
        }
        found = ch.query(sql, values)
        key = ("group_key",) if group else ()
        rows = tuple(tuple(row[a] for a in (*key, *self.aliases)) for row in found)
        return ReportResult(columns=((group,) if group else ()) + self.columns, rows=rows)


SOFT_BOUNCES = _BounceReport(
    name="soft_bounces",
    sql=_SOFT_BOUNCES,
    columns=("bounce_text", "recipient_domain", "bounces"),
    aliases=("bounce_text", "recipient_domain", "bounces"),
    metric="bounces",
)
NON_DELIVERIES = _BounceReport(
    name="non_deliveries",
    sql=_NON_DELIVERIES,
    columns=("reason", "recipient_domain", "error_text", "messages"),
    aliases=("non_delivery_reason", "recipient_domain", "error_text", "messages"),
    metric="messages",
)
