"""Loyalty read models: programs, their promo codes, who holds which, generation jobs, the codes report.

- `loyalty_programs`: one row per program, its state folded with the program
  aggregate's own `evolve` (JSON document), the short name and the last
  "running low" report;
- `promo_codes`: one row per code (program, number): the code, when it was
  issued and expires, its source and fields, how many profiles hold it now
  (`holders`: at most 1 for a personal code), when it was first handed out,
  whether it was withdrawn (deleted), and how many activations it has;
- `promo_holdings`: who holds which code now (program, profile), since when,
  by what cause, and its activation (who reported it, when);
- `promo_jobs`: background generations with their progress.

Bindings are read from the pool's `PromoCodesBound` (one event per chunk of a
broadcast, many bindings each), so a broadcast's codes cost the read model a
few statements per chunk.
Times are fixed-width UTC text (`sortable_time`), so they compare as text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import TypeAdapter

from herald.domain import loyalty as ly
from herald.domain.events import registry
from herald.infra.event_store import RecordedEvent
from herald.infra.serialization import dumps, loads
from herald.projections.campaigns import sortable_time
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection

_STATE = TypeAdapter(ly.ProgramState)
_PROGRAM_EVENTS = (
    "LoyaltyProgramCreated",
    "LoyaltyProgramChanged",
    "LoyaltyProgramActivated",
    "LoyaltyProgramStopped",
    "LoyaltyProgramDeleted",
)
CODE_COLUMNS = (
    "seq",
    "code",
    "issued_at",
    "expires_at",
    "source",
    "fields",
    "holders",
    "first_bound_at",
    "withdrawn",
    "activations",
)


def _time(value: str | None) -> str | None:
    return sortable_time(value) if value else None


class LoyaltyProjection(SqliteProjection):
    name = "loyalty"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS loyalty_programs (program_id TEXT PRIMARY KEY, shortcode TEXT NOT NULL, "
        "name TEXT NOT NULL, deleted INTEGER NOT NULL, low_stock BLOB, doc BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS promo_codes (program_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "code TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT, source TEXT NOT NULL, fields BLOB, "
        "holders INTEGER NOT NULL DEFAULT 0, first_bound_at TEXT, withdrawn INTEGER NOT NULL DEFAULT 0, "
        "activations INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (program_id, seq))",
        "CREATE INDEX IF NOT EXISTS promo_codes_by_code ON promo_codes (program_id, code)",
        "CREATE TABLE IF NOT EXISTS promo_holdings (program_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "seq INTEGER NOT NULL, code TEXT NOT NULL, held_at TEXT NOT NULL, expires_at TEXT, "
        "cause_kind TEXT NOT NULL, cause_id TEXT NOT NULL, message_id TEXT NOT NULL, activated_at TEXT, "
        "activated_by TEXT, PRIMARY KEY (program_id, profile_id))",
        "CREATE INDEX IF NOT EXISTS promo_holdings_by_code ON promo_holdings (program_id, seq)",
        "CREATE TABLE IF NOT EXISTS promo_jobs (job_id TEXT PRIMARY KEY, program_id TEXT NOT NULL, "
        "requested INTEGER NOT NULL, done INTEGER NOT NULL, duplicates INTEGER NOT NULL, "
        "status TEXT NOT NULL, reason TEXT, started_at TEXT NOT NULL, finished_at TEXT)",
    )
    tables: ClassVar = {
        "loyalty_programs": "program_id",
        "promo_codes": "program_id, seq",
        "promo_holdings": "program_id, profile_id",
        "promo_jobs": "job_id",
    }
    merge: ClassVar = dict.fromkeys(tables, FIRST)  # global state: every partition folds all of it

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._programs: dict[str, ly.ProgramState] = {}  # folded this batch, before the commit
        super().__init__(conn)

    def handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {name: self._program for name in _PROGRAM_EVENTS}
        handlers |= {
            "PromoCodesIssued": self._issued,
            "PromoCodesBound": self._bound,
            "PromoCodeWithdrawn": self._withdrawn,
            "PromoCodesRunningLow": self._running_low,
            "PromoCodeActivated": self._activated,
            "PromoCodesReleased": self._released,
            "PromoCodeJobStarted": self._job_started,
            "PromoCodeJobProgressed": self._job_progressed,
            "PromoCodeJobEnded": self._job_ended,
        }
        return handlers

    def discard(self) -> None:
        super().discard()
        self._programs.clear()

    def flush(self) -> None:
        for sql, params in self._pending:
            if isinstance(params, _Rows):
                self.conn.executemany(sql, params)
            else:
                self.conn.execute(sql, params)
        self._pending.clear()
        self._programs.clear()

    def _write_rows(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Queue one statement for many rows (a chunk's bindings: one `executemany`)."""
        self._pending.append((sql, _Rows(rows)))

    # --- programs --------------------------------------------------------------------------------

    def _program(self, event: RecordedEvent) -> None:
        program_id = event.data["program_id"]
        state = self._programs.get(program_id) or self.program(program_id) or ly.ProgramState()
        state = ly.evolve(state, registry.decode(event.type, event.schema_version, event.data))
        self._programs[program_id] = state
        assert state.settings is not None
        self.write(
            "INSERT INTO loyalty_programs (program_id, shortcode, name, deleted, doc) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(program_id) DO UPDATE SET shortcode = excluded.shortcode, name = excluded.name, "
            "deleted = excluded.deleted, doc = excluded.doc",
            (
                program_id,
                state.settings.shortcode,
                state.settings.name,
                int(state.deleted),
                dumps(_STATE.dump_python(state, mode="json")),
            ),
        )

    def _running_low(self, event: RecordedEvent) -> None:
        d = event.data
        report = {"free": d["free"], "threshold": d["threshold"], "at": d["at"]}
        self.write(
            "UPDATE loyalty_programs SET low_stock = ? WHERE program_id = ?", (dumps(report), d["program_id"])
        )

    # --- codes -------------------------------------------------------------------------------------

    def _issued(self, event: RecordedEvent) -> None:
        d = event.data
        expires = _time(d.get("expires_at"))
        issued = sortable_time(d["at"])
        fields = d.get("fields")
        rows = [
            (d["program_id"], d["first_seq"] + i, code, issued, expires, d["source"],
             dumps(fields[i]) if fields else None)
            for i, code in enumerate(d["codes"])
        ]  # fmt: skip
        self._write_rows(
            "INSERT OR REPLACE INTO promo_codes "
            "(program_id, seq, code, issued_at, expires_at, source, fields) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _bound(self, event: RecordedEvent) -> None:
        d = event.data
        program_id, held_at = d["program_id"], sortable_time(d["at"])
        cause = d["cause"]
        seqs, profiles = d["seqs"], d["profile_ids"]
        messages = d.get("message_ids") or [None] * len(seqs)
        # A profile given a new code (its old one expired or was released) stops holding the old one.
        self._write_rows(
            "UPDATE promo_codes SET holders = holders - 1 WHERE program_id = ? AND seq = "
            "(SELECT seq FROM promo_holdings WHERE program_id = ? AND profile_id = ?)",
            [(program_id, program_id, p) for p in profiles],
        )
        self._write_rows(
            "INSERT OR REPLACE INTO promo_holdings (program_id, profile_id, seq, code, held_at, expires_at, "
            "cause_kind, cause_id, message_id) SELECT program_id, ?, seq, code, ?, expires_at, ?, ?, ? "
            "FROM promo_codes WHERE program_id = ? AND seq = ?",
            [
                (p, held_at, cause["kind"], cause.get("id", ""), m or "", program_id, s)
                for s, p, m in zip(seqs, profiles, messages, strict=True)
            ],
        )
        self._write_rows(
            "UPDATE promo_codes SET holders = holders + 1, first_bound_at = coalesce(first_bound_at, ?) "
            "WHERE program_id = ? AND seq = ?",
            [(held_at, program_id, s) for s in seqs],
        )

    def _withdrawn(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE promo_codes SET withdrawn = 1 WHERE program_id = ? AND seq = ?",
            (d["program_id"], d["seq"]),
        )
        self._released(event)

    def _activated(self, event: RecordedEvent) -> None:
        d = event.data
        key = (d["program_id"], d["profile_id"])
        self.write(
            "UPDATE promo_holdings SET activated_at = ?, activated_by = ? "
            "WHERE program_id = ? AND profile_id = ?",
            (sortable_time(d["at"]), d.get("by", ""), *key),
        )
        self.write(
            "UPDATE promo_codes SET activations = activations + 1 WHERE program_id = ? AND seq = ?",
            (d["program_id"], d["seq"]),
        )

    def _released(self, event: RecordedEvent) -> None:
        d = event.data
        program_id, released = d["program_id"], d.get("released", [])
        self._write_rows(
            "UPDATE promo_codes SET holders = holders - 1 WHERE program_id = ? AND seq = ?",
            [(program_id, r["seq"]) for r in released],
        )
        self._write_rows(
            "DELETE FROM promo_holdings WHERE program_id = ? AND profile_id = ?",
            [(program_id, r["profile_id"]) for r in released],
        )

    # --- jobs --------------------------------------------------------------------------------------

    def _job_started(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO promo_jobs VALUES (?, ?, ?, 0, 0, 'running', NULL, ?, NULL)",
            (d["job_id"], d["program_id"], d["count"], sortable_time(d["at"])),
        )

    def _job_progressed(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE promo_jobs SET done = ?, duplicates = ? WHERE job_id = ?",
            (d["done"], d["duplicates"], d["job_id"]),
        )

    def _job_ended(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE promo_jobs SET status = ?, reason = ?, finished_at = ? WHERE job_id = ?",
            (d["status"], d.get("reason"), sortable_time(d["at"]), d["job_id"]),
        )

    # --- queries -----------------------------------------------------------------------------------

    def program(self, program_id: str) -> ly.ProgramState | None:
        row = self.conn.execute(
            "SELECT doc FROM loyalty_programs WHERE program_id = ?", (program_id,)
        ).fetchone()
        return _STATE.validate_python(loads(row[0])) if row else None

    def programs(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every program's document with its last "running low" report, by id."""
        rows = self.conn.execute(
            "SELECT doc, low_stock FROM loyalty_programs WHERE deleted = 0 OR ? "
            "ORDER BY length(program_id), program_id",
            (int(include_deleted),),
        ).fetchall()
        return [{**loads(doc), "low_stock": loads(low) if low else None} for doc, low in rows]

    def count_programs(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM loyalty_programs").fetchone()[0])

    def codes_between(self, program_id: str, first: int, end: int) -> dict[int, str]:
        """The codes numbered `first` ..< `end` the read model has."""
        rows = self.conn.execute(
            "SELECT seq, code FROM promo_codes WHERE program_id = ? AND seq >= ? AND seq < ?",
            (program_id, first, end),
        )
        return dict(rows.fetchall())

    def code_rows(
        self, program_id: str, offset: int, limit: int, order: str = "seq", bound: bool | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many, one page) of the program's codes that are not withdrawn, in `order`."""
        orders = {"seq": "seq", "-seq": "seq DESC", "code": "code", "-code": "code DESC"}
        where = "program_id = ? AND withdrawn = 0" + (
            "" if bound is None else (" AND holders > 0" if bound else " AND holders = 0")
        )
        total = self.conn.execute(
            f"SELECT count(*) FROM promo_codes WHERE {where}", (program_id,)
        ).fetchone()[0]
        rows = self.conn.execute(
            f"SELECT {', '.join(CODE_COLUMNS)} FROM promo_codes WHERE {where} ORDER BY {orders[order]} "
            "LIMIT ? OFFSET ?",
            (program_id, limit, offset),
        ).fetchall()
        return int(total), [_code_row(row) for row in rows]

    def code_row(self, program_id: str, code: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {', '.join(CODE_COLUMNS)} FROM promo_codes WHERE program_id = ? AND code = ? "
            "AND withdrawn = 0",
            (program_id, code),
        ).fetchone()
        return _code_row(row) if row else None

    def holders_of(self, program_id: str, seq: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT profile_id FROM promo_holdings WHERE program_id = ? AND seq = ? ORDER BY profile_id",
            (program_id, seq),
        )
        return [row[0] for row in rows]

    def holding(self, program_id: str, profile_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT profile_id, seq, code, held_at, expires_at, cause_kind, cause_id, message_id, "
            "activated_at, activated_by FROM promo_holdings WHERE program_id = ? AND profile_id = ?",
            (program_id, profile_id),
        ).fetchone()
        return _holding(row) if row else None

    def export_rows(self, program_id: str) -> list[tuple[Any, ...]]:
        """Every code not withdrawn, once per profile holding it (once, empty, when nobody does)."""
        return self.conn.execute(
            "SELECT c.code, c.issued_at, c.expires_at, c.source, c.fields, h.profile_id, h.held_at, "
            "h.activated_at, h.activated_by FROM promo_codes c LEFT JOIN promo_holdings h "
            "ON h.program_id = c.program_id AND h.seq = c.seq WHERE c.program_id = ? AND c.withdrawn = 0 "
            "ORDER BY c.seq, h.profile_id",
            (program_id,),
        ).fetchall()

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT job_id, program_id, requested, done, duplicates, status, reason, started_at, finished_at "
            "FROM promo_jobs WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("job_id", "program_id", "requested", "done", "duplicates", "status", "reason", "started_at",
                "finished_at")  # fmt: skip
        return dict(zip(keys, row, strict=True))

    def report(self, now: datetime, program_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per program: codes issued, bound, activated, expired and free at `now` (see `CODES_REPORT`)."""
        found: dict[str, dict[str, int]] = {}
        for program_id in program_ids:
            universal = int(self._universal(program_id))
            row = self.conn.execute(CODES_REPORT, {"program": program_id, "now": sortable_time(now),
                                                   "universal": universal}).fetchone()  # fmt: skip
            found[program_id] = dict(
                zip(("issued", "bound", "activated", "expired", "free"), row, strict=True)
            )
        return found

    def _universal(self, program_id: str) -> bool:
        state = self.program(program_id)
        return bool(state and state.settings and state.settings.universal)


# The codes report, per program, over the codes not withdrawn (deleted):
# - issued: every such code;
# - bound: codes handed out at least once (a personal code to its profile, a universal one to anyone);
# - activated: codes with at least one activation (a universal code counts once);
# - expired: codes whose lifetime has run out;
# - free: codes that can still be given out: not expired, and, in a personal program, never handed out.
CODES_REPORT = """
SELECT
    count(*),
    coalesce(sum(first_bound_at IS NOT NULL), 0),
    coalesce(sum(activations > 0), 0),
    coalesce(sum(expires_at IS NOT NULL AND expires_at <= :now), 0),
    coalesce(sum((expires_at IS NULL OR expires_at > :now) AND (:universal OR first_bound_at IS NULL)), 0)
FROM promo_codes WHERE program_id = :program AND withdrawn = 0
"""


class _Rows(list[tuple[Any, ...]]):
    """Parameters of one statement run for many rows."""


def _code_row(row: Sequence[Any]) -> dict[str, Any]:
    item = dict(zip(CODE_COLUMNS, row, strict=True))
    item["fields"] = loads(item["fields"]) if item["fields"] else {}
    item["withdrawn"] = bool(item["withdrawn"])
    return item


def _holding(row: Sequence[Any]) -> dict[str, Any]:
    keys = ("profile_id", "seq", "code", "held_at", "expires_at", "cause_kind", "cause_id", "message_id",
            "activated_at", "activated_by")  # fmt: skip
    return dict(zip(keys, row, strict=True))
