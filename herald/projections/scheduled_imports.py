"""Scheduled imports: the list, their due timers (what the tick fires) and their last runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import orjson

from herald.infra.event_store import RecordedEvent
from herald.projections.campaigns import sortable_time
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection

RUNS_KEPT = 10  # the guide's report shows the last 10 runs


class ScheduledImportsProjection(SqliteProjection):
    name = "scheduled_imports"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS scheduled_imports (import_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "database_id TEXT NOT NULL, settings TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 0, "
        "next_run INTEGER, next_due_at TEXT, updated_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS scheduled_imports_due ON scheduled_imports (next_due_at)",
        "CREATE TABLE IF NOT EXISTS scheduled_import_runs (import_id TEXT NOT NULL, "
        "run_number INTEGER NOT NULL, job_id TEXT, failed TEXT, at TEXT NOT NULL, "
        "PRIMARY KEY (import_id, run_number))",
    )
    tables: ClassVar = {"scheduled_imports": "import_id", "scheduled_import_runs": "import_id, run_number"}
    merge: ClassVar = dict.fromkeys(tables, FIRST)  # global state: every partition folds all of it

    def handlers(self) -> dict[str, Handler]:
        return {
            "ScheduledImportSaved": self._saved,
            "ScheduledImportActivated": self._activated,
            "ScheduledImportDeactivated": self._deactivated,
            "ScheduledImportRunScheduled": self._timer,
            "ScheduledImportRunStarted": self._run,
            "ScheduledImportRunFailed": self._run,
            "ScheduledImportDeleted": self._deleted,
        }

    def _saved(self, event: RecordedEvent) -> None:
        d = event.data
        settings = d["settings"]
        self.write(
            "INSERT INTO scheduled_imports (import_id, name, database_id, settings, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(import_id) DO UPDATE SET name = excluded.name, "
            "database_id = excluded.database_id, settings = excluded.settings, "
            "updated_at = excluded.updated_at",
            (
                d["import_id"],
                settings["name"],
                settings["database_id"],
                orjson.dumps(settings).decode(),
                d["at"],
            ),
        )

    def _activated(self, event: RecordedEvent) -> None:
        self.write("UPDATE scheduled_imports SET active = 1 WHERE import_id = ?", (event.data["import_id"],))

    def _deactivated(self, event: RecordedEvent) -> None:
        self.write(
            "UPDATE scheduled_imports SET active = 0, next_run = NULL, next_due_at = NULL "
            "WHERE import_id = ?",
            (event.data["import_id"],),
        )

    def _timer(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE scheduled_imports SET next_run = ?, next_due_at = ? WHERE import_id = ?",
            (d["run_number"], sortable_time(d["due_at"]), d["import_id"]),
        )

    def _run(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE scheduled_imports SET next_run = NULL, next_due_at = NULL "
            "WHERE import_id = ? AND next_run = ?",
            (d["import_id"], d["run_number"]),
        )
        self.write(
            "INSERT OR REPLACE INTO scheduled_import_runs (import_id, run_number, job_id, failed, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (d["import_id"], d["run_number"], d.get("job_id"), d.get("reason"), d["at"]),
        )
        self.write(
            "DELETE FROM scheduled_import_runs WHERE import_id = ? AND run_number <= ?",
            (d["import_id"], d["run_number"] - RUNS_KEPT),
        )

    def _deleted(self, event: RecordedEvent) -> None:
        import_id = event.data["import_id"]
        self.write("DELETE FROM scheduled_imports WHERE import_id = ?", (import_id,))
        self.write("DELETE FROM scheduled_import_runs WHERE import_id = ?", (import_id,))

    def due(self, now: datetime) -> list[tuple[str, int]]:
        """(import id, run number) of every timer due at `now`."""
        rows = self.conn.execute(
            "SELECT import_id, next_run FROM scheduled_imports WHERE next_due_at <= ? ORDER BY next_due_at",
            (sortable_time(now),),
        )
        return [(r[0], r[1]) for r in rows]

    def list(self, database_id: str | None) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT import_id, name, database_id, active, next_due_at FROM scheduled_imports "
            "WHERE ?1 IS NULL OR database_id = ?1 ORDER BY CAST(import_id AS INTEGER), import_id",
            (database_id,),
        )
        return [
            {"import_id": r[0], "name": r[1], "database_id": r[2], "active": bool(r[3]), "next_run_at": r[4]}
            for r in rows
        ]

    def runs(self, import_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT run_number, job_id, failed, at FROM scheduled_import_runs WHERE import_id = ? "
            "ORDER BY run_number DESC",
            (import_id,),
        )
        return [{"run_number": r[0], "job_id": r[1], "failed": r[2], "at": r[3]} for r in rows]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM scheduled_imports").fetchone()[0])
