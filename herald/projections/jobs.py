"""The jobs list ("Задания"): every import, export, mass update and clearing, with its progress."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from herald.infra.event_store import RecordedEvent
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection

_COLUMNS = (
    "job_id, kind, database_id, status, chunks, counts, errors, progress, result, reason, "
    "started_by, started_at, finished_at"
)


class JobsProjection(SqliteProjection):
    name = "jobs"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
        "database_id TEXT NOT NULL, status TEXT NOT NULL, chunks INTEGER NOT NULL DEFAULT 0, "
        "counts TEXT NOT NULL DEFAULT '{}', errors INTEGER NOT NULL DEFAULT 0, "
        "progress TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', "
        "reason TEXT NOT NULL DEFAULT '', started_by TEXT NOT NULL DEFAULT '', "
        "started_at TEXT NOT NULL, finished_at TEXT)",
        "CREATE INDEX IF NOT EXISTS jobs_by_database ON jobs (database_id, started_at)",
    )
    tables: ClassVar = {"jobs": "job_id"}
    merge: ClassVar = dict.fromkeys(tables, FIRST)  # global state: every partition folds all of it

    def handlers(self) -> dict[str, Handler]:
        return {
            "JobStarted": self._started,
            "JobChunkDone": self._chunk,
            "JobCompleted": self._completed,
            "JobFailed": self._failed,
            "JobCancelled": self._cancelled,
        }

    def _started(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR IGNORE INTO jobs (job_id, kind, database_id, status, started_by, started_at) "
            "VALUES (?, ?, ?, 'running', ?, ?)",
            (d["job_id"], d["kind"], d["database_id"], d.get("started_by", ""), d["at"]),
        )

    def _chunk(self, event: RecordedEvent) -> None:
        d = event.data
        # Counts add up per chunk; JSON patching in SQL keeps the row a single UPDATE.
        self.write(
            "UPDATE jobs SET chunks = ?, errors = errors + ?, progress = json_patch(progress, ?), "
            "counts = (SELECT json_group_object(key, total) FROM (SELECT key, SUM(value) AS total FROM "
            "(SELECT key, value FROM json_each(jobs.counts) UNION ALL SELECT key, value FROM json_each(?)) "
            "GROUP BY key)) WHERE job_id = ?",
            (
                d["chunk"],
                len(d.get("errors", ())),
                orjson.dumps(d.get("progress", {})).decode(),
                orjson.dumps(d["counts"]).decode(),
                d["job_id"],
            ),
        )

    def _completed(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE jobs SET status = 'completed', result = ?, finished_at = ? WHERE job_id = ?",
            (orjson.dumps(d.get("result", {})).decode(), d["at"], d["job_id"]),
        )

    def _failed(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE jobs SET status = 'failed', reason = ?, finished_at = ? WHERE job_id = ?",
            (d["reason"], d["at"], d["job_id"]),
        )

    def _cancelled(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE job_id = ?", (d["at"], d["job_id"])
        )

    def get(self, job_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list(self, database_id: str | None, kind: str | None, limit: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE (?1 IS NULL OR database_id = ?1) "
            "AND (?2 IS NULL OR kind = ?2) ORDER BY started_at DESC, job_id DESC LIMIT ?3",
            (database_id, kind, limit),
        )
        return [_job(r) for r in rows]


def _job(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "job_id": row[0],
        "kind": row[1],
        "database_id": row[2],
        "status": row[3],
        "chunks": row[4],
        "counts": orjson.loads(row[5]),
        "errors": row[6],
        "progress": orjson.loads(row[7]),
        "result": orjson.loads(row[8]),
        "reason": row[9] or None,
        "started_by": row[10],
        "started_at": row[11],
        "finished_at": row[12],
    }
