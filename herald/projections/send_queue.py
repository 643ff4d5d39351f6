"""The sender queue: messages waiting to be sent, when each is due, which are mid-attempt, which
await their delivery reports (until when), the provider ids those reports name, and the timers of
delayed unsubscribes.

A queued message enters at its due time (triggers' priority lanes first); a
soft bounce moves it to its retry time; a final outcome removes it. An
attempt in progress is marked, so a sender that restarts finds what it left
(`interrupted`) and settles it before sending anything else.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from herald.infra.event_store import RecordedEvent
from herald.projections.campaigns import sortable_time
from herald.projections.sqlite_projection import Handler, SqliteProjection

_LANE_RANK = {"trigger_high": 0, "trigger": 1, "bulk": 2}


class SendQueueProjection(SqliteProjection):
    name = "send_queue"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS send_queue (message_id TEXT PRIMARY KEY, due_at TEXT NOT NULL, "
        "lane INTEGER NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS send_queue_by_due ON send_queue (state, channel, lane, due_at)",
        "CREATE TABLE IF NOT EXISTS unsubscribe_timers (message_id TEXT PRIMARY KEY, apply_at TEXT NOT NULL)",
        # provider ids are the provider's own numbering: unique per sender only
        "CREATE TABLE IF NOT EXISTS provider_messages (sender_id TEXT NOT NULL, provider_id TEXT NOT NULL, "
        "message_id TEXT NOT NULL, PRIMARY KEY (sender_id, provider_id))",
    )
    tables: ClassVar = {
        "send_queue": "message_id",
        "unsubscribe_timers": "message_id",
        "provider_messages": "sender_id, provider_id",
    }

    def handlers(self) -> dict[str, Handler]:
        return {
            "MessageQueued": self._queued,
            "MessageSendAttempted": self._state("attempting"),
            "MessageCommitting": self._state("committing"),
            "MessageSoftBounced": self._retry,
            "MessageAccepted": self._accepted,
            "MessageDelivered": self._done,
            "MessageHardBounced": self._done,
            "MessageNotDelivered": self._done,
            "MessageUnsubscribeScheduled": self._unsubscribe_scheduled,
            "MessageUnsubscribeCancelled": self._unsubscribe_settled,
            "MessageUnsubscribed": self._unsubscribe_settled,
        }

    def _queued(self, event: RecordedEvent) -> None:
        d = event.data
        lane = _LANE_RANK.get(d.get("lane", "bulk"), 2)
        self.write(
            "INSERT OR IGNORE INTO send_queue (message_id, due_at, lane, channel, state) "
            "VALUES (?, ?, ?, ?, 'waiting')",
            (d["message_id"], sortable_time(d["due_at"]), lane, d["channel"]),
        )

    def _state(self, state: str) -> Handler:
        def handle(event: RecordedEvent) -> None:
            self.write(
                "UPDATE send_queue SET state = ? WHERE message_id = ?", (state, event.data["message_id"])
            )

        return handle

    def _retry(self, event: RecordedEvent) -> None:
        retry_at = event.data.get("retry_at")
        if retry_at is None:
            return  # a delay notice in a DSN: the relay keeps trying, nothing to send again
        self.write(
            "UPDATE send_queue SET state = 'waiting', due_at = ? WHERE message_id = ?",
            (sortable_time(retry_at), event.data["message_id"]),
        )

    def _accepted(self, event: RecordedEvent) -> None:
        d = event.data
        for provider_id in d["provider_ids"]:
            self.write(
                "INSERT OR REPLACE INTO provider_messages VALUES (?, ?, ?)",
                (d["sender_id"], provider_id, d["message_id"]),
            )
        if d.get("await_until") is None:
            self._done(event)
            return
        self.write(
            "UPDATE send_queue SET state = 'awaiting_report', due_at = ? WHERE message_id = ?",
            (sortable_time(d["await_until"]), d["message_id"]),
        )

    def _done(self, event: RecordedEvent) -> None:
        self.write("DELETE FROM send_queue WHERE message_id = ?", (event.data["message_id"],))

    def _unsubscribe_scheduled(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO unsubscribe_timers (message_id, apply_at) VALUES (?, ?)",
            (d["message_id"], sortable_time(d["apply_at"])),
        )

    def _unsubscribe_settled(self, event: RecordedEvent) -> None:
        self.write("DELETE FROM unsubscribe_timers WHERE message_id = ?", (event.data["message_id"],))

    def due_unsubscribes(self, now: datetime) -> list[str]:
        """Messages whose delayed unsubscribe falls due at `now`."""
        rows = self.conn.execute(
            "SELECT message_id FROM unsubscribe_timers WHERE apply_at <= ? ORDER BY apply_at, message_id",
            (sortable_time(now),),
        )
        return [r[0] for r in rows]

    def due(self, channel: str, now: datetime, limit: int) -> list[str]:
        """Messages of `channel` waiting and due at `now`: priority lanes first, then by due time."""
        rows = self.conn.execute(
            "SELECT message_id FROM send_queue WHERE state = 'waiting' AND channel = ? AND due_at <= ? "
            "ORDER BY lane, due_at, message_id LIMIT ?",
            (channel, sortable_time(now), limit),
        )
        return [r[0] for r in rows]

    def interrupted(self, channel: str) -> list[str]:
        """Messages an attempt was started for and not settled (the sender stopped mid-way)."""
        rows = self.conn.execute(
            "SELECT message_id FROM send_queue WHERE state IN ('attempting', 'committing') AND channel = ? "
            "ORDER BY message_id",
            (channel,),
        )
        return [r[0] for r in rows]

    def due_delivery_waits(self, now: datetime) -> list[str]:
        """Accepted messages whose "await delivery" ended at `now` with a report still missing."""
        rows = self.conn.execute(
            "SELECT message_id FROM send_queue WHERE state = 'awaiting_report' AND due_at <= ? "
            "ORDER BY due_at, message_id",
            (sortable_time(now),),
        )
        return [r[0] for r in rows]

    def message_of(self, sender_id: str, provider_id: str) -> str | None:
        """Our message a sender's provider id names (a delivery report's reference)."""
        row = self.conn.execute(
            "SELECT message_id FROM provider_messages WHERE sender_id = ? AND provider_id = ?",
            (sender_id, provider_id),
        ).fetchone()
        return str(row[0]) if row else None

    def waiting(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM send_queue").fetchone()
        return int(row[0])
