"""Report retention: report rows older than the setting go (HERALD_REPORT_RETENTION_DAYS; unset: kept).

The event tables (messages, subscription changes, profile creations, goals) drop the rows of days
before the cut-off, by `ALTER TABLE … DELETE` (a mutation: both engines run it; 18.16 has no TTL).
Profile snapshots are the profiles' current state, not history, and stay. The tick runs it at most
once a day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from herald.infra.clickhouse import ClickHouse

TABLES = ("message_events", "subscription_changes", "profile_creations", "goal_events")


class ReportRetention:
    def __init__(self, clickhouse: ClickHouse, days: int) -> None:
        self.clickhouse = clickhouse
        self.days = days
        self._done: date | None = None

    def apply(self, now: datetime) -> bool:
        """Delete what is past the retention, once per day; True when it ran."""
        today = now.date()
        if self._done == today:
            return False
        cutoff = today - timedelta(days=self.days)
        for table in TABLES:  # the names are this module's constants
            self.clickhouse.execute(
                f"ALTER TABLE {table} DELETE WHERE day < {{cutoff:Date}}", {"cutoff": cutoff}
            )
        self._done = today
        return True
