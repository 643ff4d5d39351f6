"""Recent sends per profile and per contact: what the sending policies count.

Each queued (non-test) message adds one to its profile's count for (local
day, resource, channel) and to its contact's; the send gate reads the last 16
days back as `SendHistory` values. Counts older than any policy window are
never read, so they are not pruned here (a replay rebuilds the same rows).
The processors' runtime applies a batch to every projection before any
reactor sees it, so a run's next chunk is gated on counts that include the
chunks before it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import ClassVar

from herald.domain.sending_policies import MAX_PERIOD_DAYS, SendCount, SendHistory, contact_key
from herald.infra.event_store import RecordedEvent
from herald.projections.partitioned import summed
from herald.projections.sqlite_projection import Handler, SqliteProjection


class SendHistoryProjection(SqliteProjection):
    name = "send_history"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS profile_sends (profile_id TEXT NOT NULL, day TEXT NOT NULL, "
        "resource_id TEXT NOT NULL, channel TEXT NOT NULL, count INTEGER NOT NULL, "
        "PRIMARY KEY (profile_id, day, resource_id, channel))",
        "CREATE TABLE IF NOT EXISTS contact_sends (contact TEXT NOT NULL, day TEXT NOT NULL, "
        "resource_id TEXT NOT NULL, channel TEXT NOT NULL, count INTEGER NOT NULL, "
        "PRIMARY KEY (contact, day, resource_id, channel))",
    )
    tables: ClassVar = {
        "profile_sends": "profile_id, day, resource_id, channel",
        "contact_sends": "contact, day, resource_id, channel",
    }
    # a contact may be a subscription of profiles in other partitions (other databases)
    merge: ClassVar = {"contact_sends": summed("contact, day, resource_id, channel", "count")}

    def handlers(self) -> dict[str, Handler]:
        return {"MessageQueued": self._queued}

    def _queued(self, event: RecordedEvent) -> None:
        d = event.data
        if d.get("is_test"):
            return
        day, resource, channel = d["local_day"], d["resource_id"], d["channel"]
        self.write(
            "INSERT INTO profile_sends VALUES (?, ?, ?, ?, 1) "
            "ON CONFLICT(profile_id, day, resource_id, channel) DO UPDATE SET count = count + 1",
            (d["profile_id"], day, resource, channel),
        )
        if channel != "push":  # a push token is no contact: the contact cap does not apply
            self.write(
                "INSERT INTO contact_sends VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT(contact, day, resource_id, channel) DO UPDATE SET count = count + 1",
                (contact_key(d["contact"]), day, resource, channel),
            )

    def profile_history(self, profile_id: str, today: date) -> SendHistory:
        return self._history("profile_sends", "profile_id", profile_id, today)

    def contact_history(self, contact: str, today: date) -> SendHistory:
        return self._history("contact_sends", "contact", contact_key(contact), today)

    def _history(self, table: str, column: str, key: str, today: date) -> SendHistory:
        since = (today - timedelta(days=MAX_PERIOD_DAYS - 1)).isoformat()
        # `table` and `column` are this module's constants, never input
        rows = self.conn.execute(
            f"SELECT day, resource_id, channel, count FROM {table} WHERE {column} = ? AND day >= ? "
            "ORDER BY day, resource_id, channel",
            (key, since),
        )
        entries = tuple(
            SendCount(day=date.fromisoformat(r[0]), resource_id=r[1], channel=r[2], count=r[3]) for r in rows
        )
        return SendHistory(entries=entries)
