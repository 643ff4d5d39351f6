"""Campaign read models: who each campaign reached, its progress counters, pending timers, launches.

- `campaign_recipients`: one row per (campaign, profile, run) decision, with
  the contact a sent (or failed) message used, so a broadcast's next run skips
  profiles it already reached, "why didn't X get it" is one look-up, and a run
  chunk tried again knows the contacts the run already used;
- `campaign_counters`: the progress counters the campaign card shows (sent,
  delivered, undelivered, policy blocks, stop-listed, errors, ... by reason),
  tests apart; `message_outcomes` keeps each message's delivery outcome, so a
  late report that delivers a message counted undelivered (or a DSN that
  bounces one counted delivered) moves it from one counter to the other;
- `campaign_timers`: the next due run of each active campaign (the
  scheduler's work list);
- `campaign_launches`: every run that started, for the calendar;
- `segment_triggers`: trigger campaigns fired by entries into a segment, with
  the instant each became live (activated or resumed; NULL while it is not),
  so a segment entry finds its triggers with one indexed look-up.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any, ClassVar

from herald.infra.event_store import RecordedEvent
from herald.projections.partitioned import FIRST, summed
from herald.projections.sqlite_projection import Handler, SqliteProjection

# Counters the card shows: each message decision, then its delivery outcome (any channel).
QUEUED = "queued"
SUPPRESSED = "suppressed"
FAILED = "errors"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"


class CampaignsProjection(SqliteProjection):
    name = "campaigns"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS campaign_recipients (campaign_id TEXT NOT NULL, "
        "profile_id TEXT NOT NULL, run_id TEXT NOT NULL, message_id TEXT NOT NULL, "
        "outcome TEXT NOT NULL, reason TEXT NOT NULL, "
        "template_id TEXT NOT NULL, is_test INTEGER NOT NULL, at TEXT NOT NULL, "
        "contact TEXT NOT NULL DEFAULT '', PRIMARY KEY (campaign_id, profile_id, run_id))",
        "CREATE INDEX IF NOT EXISTS campaign_recipients_by_profile ON campaign_recipients (profile_id)",
        "CREATE TABLE IF NOT EXISTS campaign_counters (campaign_id TEXT NOT NULL, is_test INTEGER NOT NULL, "
        "counter TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (campaign_id, is_test, counter))",
        "CREATE TABLE IF NOT EXISTS campaign_timers (campaign_id TEXT PRIMARY KEY, "
        "run_number INTEGER NOT NULL, due_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS campaign_timers_by_due ON campaign_timers (due_at)",
        "CREATE TABLE IF NOT EXISTS template_counters (campaign_id TEXT NOT NULL, template_id TEXT NOT NULL, "
        "counter TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (campaign_id, template_id, counter))",
        "CREATE TABLE IF NOT EXISTS campaign_launches (campaign_id TEXT NOT NULL, run_id TEXT NOT NULL, "
        "phase TEXT NOT NULL, started_at TEXT NOT NULL, PRIMARY KEY (campaign_id, run_id))",
        "CREATE TABLE IF NOT EXISTS segment_triggers (campaign_id TEXT PRIMARY KEY, "
        "segment_id TEXT NOT NULL, live_since TEXT)",
        "CREATE INDEX IF NOT EXISTS segment_triggers_by_segment ON segment_triggers (segment_id)",
        "CREATE TABLE IF NOT EXISTS message_outcomes (message_id TEXT PRIMARY KEY, outcome TEXT NOT NULL)",
    )
    tables: ClassVar = {
        "campaign_recipients": "campaign_id, profile_id, run_id",
        "campaign_counters": "campaign_id, is_test, counter",
        "campaign_timers": "campaign_id",
        "campaign_launches": "campaign_id, run_id",
        "template_counters": "campaign_id, template_id, counter",
        "segment_triggers": "campaign_id",
        "message_outcomes": "message_id",
    }
    merge: ClassVar = {
        "campaign_counters": summed("campaign_id, is_test, counter", "value"),
        "template_counters": summed("campaign_id, template_id, counter", "value"),
        "campaign_timers": FIRST,
        "campaign_launches": FIRST,
        "segment_triggers": FIRST,
    }

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._outcomes: dict[str, str] = {}  # message → outcome, written in the batch not yet flushed
        super().__init__(conn)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(campaign_recipients)")}
        if "contact" not in columns:  # a read-model file from before the column: rebuilt rows fill it
            conn.execute("ALTER TABLE campaign_recipients ADD COLUMN contact TEXT NOT NULL DEFAULT ''")

    def handlers(self) -> dict[str, Handler]:
        return {
            "MessageQueued": self._queued,
            "MessageSuppressed": self._suppressed,
            "MessageFailed": self._failed,
            "CampaignRunScheduled": self._scheduled,
            "CampaignRunStarted": self._started,
            "CampaignRunDropped": self._unscheduled,
            "CampaignDeactivated": self._stopped,
            "CampaignCompleted": self._stopped,
            "CampaignDeleted": self._deleted,
            "CampaignCreated": self._saved,
            "CampaignUpdated": self._saved,
            "CampaignActivated": self._live,
            "CampaignResumed": self._live,
            "CampaignPaused": self._not_live,
            # what a split test's winner is chosen by (the email channel records these)
            "MessageDelivered": self._delivered,
            "MessageNotDelivered": self._settled(UNDELIVERED),
            "MessageHardBounced": self._settled(UNDELIVERED),
            "MessageOpened": self._engaged("opens"),
            "LinkClicked": self._engaged("clicks"),
        }

    # --- message decisions -------------------------------------------------------------------

    def _queued(self, event: RecordedEvent) -> None:
        self._decided(event, QUEUED, "", event.data["template_id"], event.data["contact"])
        if not event.data.get("is_test"):
            self._count_template(event.data, QUEUED)

    def _engaged(self, counter: str) -> Handler:
        def handle(event: RecordedEvent) -> None:
            d = event.data
            # a mail scanner opening every variant must not choose the winner (bots count nowhere)
            if d.get("campaign_id") and not d.get("is_test") and not d.get("bot"):
                self._count_template(d, counter)

        return handle

    def _delivered(self, event: RecordedEvent) -> None:
        self._engaged(DELIVERED)(event)
        self._settled(DELIVERED)(event)

    def _settled(self, outcome: str) -> Handler:
        """A message's delivery outcome on the card: counted once, moved when a later one replaces it."""

        def handle(event: RecordedEvent) -> None:
            d = event.data
            if not d.get("campaign_id"):
                return
            before = self._outcome(d["message_id"])
            if before == outcome:
                return
            self._outcomes[d["message_id"]] = outcome
            self.write(
                "INSERT OR REPLACE INTO message_outcomes (message_id, outcome) VALUES (?, ?)",
                (d["message_id"], outcome),
            )
            test = int(d.get("is_test", False))
            self._count(d["campaign_id"], test, outcome, 1)
            if before is not None:
                self._count(d["campaign_id"], test, before, -1)

        return handle

    def _outcome(self, message_id: str) -> str | None:
        """The message's outcome so far: written in this batch, else stored."""
        if message_id in self._outcomes:
            return self._outcomes[message_id]
        row = self.conn.execute("SELECT outcome FROM message_outcomes WHERE message_id = ?", (message_id,))
        found = row.fetchone()
        return str(found[0]) if found else None

    def flush(self) -> None:
        super().flush()
        self._outcomes.clear()

    def _count(self, campaign_id: str, test: int, counter: str, by: int) -> None:
        self.write(
            "INSERT INTO campaign_counters (campaign_id, is_test, counter, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(campaign_id, is_test, counter) DO UPDATE SET value = value + excluded.value",
            (campaign_id, test, counter, by),
        )

    def _count_template(self, d: dict[str, Any], counter: str) -> None:
        self.write(
            "INSERT INTO template_counters (campaign_id, template_id, counter, value) VALUES (?, ?, ?, 1) "
            "ON CONFLICT(campaign_id, template_id, counter) DO UPDATE SET value = value + 1",
            (d["campaign_id"], d["template_id"], counter),
        )

    def _suppressed(self, event: RecordedEvent) -> None:
        self._decided(event, SUPPRESSED, event.data["reason"], "")

    def _failed(self, event: RecordedEvent) -> None:
        # a failed message passed the gate: its contact counts as used by the run, as a queued one's
        self._decided(event, FAILED, event.data["reason"], event.data["template_id"], event.data["contact"])

    def _decided(
        self, event: RecordedEvent, outcome: str, reason: str, template_id: str, contact: str = ""
    ) -> None:
        d = event.data
        test = int(d.get("is_test", False))
        keys = (d["campaign_id"], d["profile_id"], d["run_id"], d["message_id"])
        self.write(
            "INSERT OR IGNORE INTO campaign_recipients (campaign_id, profile_id, run_id, message_id, "
            "outcome, reason, template_id, is_test, at, contact) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*keys, outcome, reason, template_id, test, d["at"], contact),
        )
        counters = [outcome] + ([f"{SUPPRESSED}.{reason}"] if outcome == SUPPRESSED else [])
        for counter in counters:
            self._count(d["campaign_id"], test, counter, 1)

    # --- timers and launches -----------------------------------------------------------------

    def _scheduled(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO campaign_timers (campaign_id, run_number, due_at) VALUES (?, ?, ?)",
            (d["campaign_id"], d["run_number"], sortable_time(d["due_at"])),
        )

    def _started(self, event: RecordedEvent) -> None:
        d = event.data
        self._unscheduled(event)
        self.write(
            "INSERT OR IGNORE INTO campaign_launches (campaign_id, run_id, phase, started_at) "
            "VALUES (?, ?, ?, ?)",
            (d["campaign_id"], d["run_id"], d["phase"], sortable_time(d["at"])),
        )

    def _unscheduled(self, event: RecordedEvent) -> None:
        self.write("DELETE FROM campaign_timers WHERE campaign_id = ?", (event.data["campaign_id"],))

    # --- segment triggers --------------------------------------------------------------------

    def _saved(self, event: RecordedEvent) -> None:
        d = event.data
        settings = d["settings"]
        segment_id = (settings.get("trigger") or {}).get("segment_id")
        if settings["type"] == "trigger" and segment_id:
            self.write(
                "INSERT INTO segment_triggers (campaign_id, segment_id, live_since) VALUES (?, ?, NULL) "
                "ON CONFLICT(campaign_id) DO UPDATE SET segment_id = excluded.segment_id",
                (d["campaign_id"], segment_id),
            )
        else:
            self.write("DELETE FROM segment_triggers WHERE campaign_id = ?", (d["campaign_id"],))

    def _live(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE segment_triggers SET live_since = ? WHERE campaign_id = ?",
            (sortable_time(d["at"]), d["campaign_id"]),
        )

    def _not_live(self, event: RecordedEvent) -> None:
        self.write(
            "UPDATE segment_triggers SET live_since = NULL WHERE campaign_id = ?",
            (event.data["campaign_id"],),
        )

    def _stopped(self, event: RecordedEvent) -> None:
        self._unscheduled(event)
        self._not_live(event)

    def _deleted(self, event: RecordedEvent) -> None:
        self._unscheduled(event)
        self.write("DELETE FROM segment_triggers WHERE campaign_id = ?", (event.data["campaign_id"],))

    # --- queries -----------------------------------------------------------------------------

    def due_timers(self, now: datetime) -> list[tuple[str, int]]:
        """(campaign id, run number) of every timer due at or before `now`."""
        now_iso = sortable_time(now)
        rows = self.conn.execute(
            "SELECT campaign_id, run_number FROM campaign_timers WHERE due_at <= ? "
            "ORDER BY due_at, campaign_id",
            (now_iso,),
        )
        return [(r[0], int(r[1])) for r in rows]

    def segment_triggers(self, segment_id: str, entered_at: datetime) -> list[str]:
        """Trigger campaigns on `segment_id` that were live at `entered_at` and still are."""
        rows = self.conn.execute(
            "SELECT campaign_id FROM segment_triggers WHERE segment_id = ? AND live_since <= ? "
            "ORDER BY campaign_id",
            (segment_id, sortable_time(entered_at)),
        )
        return [r[0] for r in rows]

    def reached(self, campaign_id: str) -> set[str]:
        """Profiles a campaign has decided a (non-test) message for, in any run."""
        rows = self.conn.execute(
            "SELECT DISTINCT profile_id FROM campaign_recipients WHERE campaign_id = ? AND is_test = 0",
            (campaign_id,),
        )
        return {r[0] for r in rows}

    def run_contacts(self, campaign_id: str, run_id: str) -> set[str]:
        """The contacts a run's sent (or failed) messages used: the gate's memory of the run."""
        rows = self.conn.execute(
            "SELECT contact FROM campaign_recipients WHERE campaign_id = ? AND run_id = ? AND contact != ''",
            (campaign_id, run_id),
        )
        return {r[0] for r in rows}

    def counters(self, campaign_id: str, is_test: bool = False) -> dict[str, int]:
        """The card's counters that are not 0."""
        rows = self.conn.execute(
            "SELECT counter, value FROM campaign_counters WHERE campaign_id = ? AND is_test = ?",
            (campaign_id, int(is_test)),
        )
        return {r[0]: int(r[1]) for r in rows if r[1]}

    def recipient(self, campaign_id: str, profile_id: str) -> list[dict[str, Any]]:
        """Every decision a campaign made for a profile: the answer to "why didn't X get it"."""
        rows = self.conn.execute(
            "SELECT run_id, message_id, outcome, reason, template_id, is_test, at, contact "
            "FROM campaign_recipients WHERE campaign_id = ? AND profile_id = ? ORDER BY at, run_id",
            (campaign_id, profile_id),
        )
        keys = ("run_id", "message_id", "outcome", "reason", "template_id", "is_test", "at", "contact")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def messages_of(self, profile_id: str) -> list[str]:
        """The ids of every message any campaign decided for the profile (queued, suppressed or failed)."""
        rows = self.conn.execute(
            "SELECT message_id FROM campaign_recipients WHERE profile_id = ? ORDER BY at, message_id",
            (profile_id,),
        )
        return [r[0] for r in rows]

    def template_counters(self, campaign_id: str) -> dict[str, dict[str, int]]:
        """Per template: queued, delivered, opens (total) and clicks (total)."""
        rows = self.conn.execute(
            "SELECT template_id, counter, value FROM template_counters WHERE campaign_id = ?", (campaign_id,)
        )
        found: dict[str, dict[str, int]] = {}
        for template_id, counter, value in rows:
            found.setdefault(template_id, {})[counter] = int(value)
        return found

    def runs(self, campaign_id: str) -> list[dict[str, Any]]:
        """The campaign's runs that started, oldest first (the state keeps only the current one)."""
        rows = self.conn.execute(
            "SELECT run_id, phase, started_at FROM campaign_launches WHERE campaign_id = ? "
            "ORDER BY started_at, run_id",
            (campaign_id,),
        )
        return [dict(zip(("run_id", "phase", "started_at"), r, strict=True)) for r in rows]

    def launches(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Runs started in [start, end), for the calendar."""
        start_iso, end_iso = sortable_time(start), sortable_time(end)
        rows = self.conn.execute(
            "SELECT campaign_id, run_id, phase, started_at FROM campaign_launches "
            "WHERE started_at >= ? AND started_at < ? ORDER BY started_at, campaign_id",
            (start_iso, end_iso),
        )
        keys = ("campaign_id", "run_id", "phase", "started_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def sortable_time(moment: datetime | str) -> str:
    """A time as UTC text of fixed width, so times compare correctly as text."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
