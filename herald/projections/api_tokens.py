"""API tokens by hash: what authentication looks up on every request."""

from __future__ import annotations

from typing import ClassVar

from herald.infra.event_store import RecordedEvent
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection


class ApiTokensProjection(SqliteProjection):
    name = "api_tokens"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS api_tokens (token_hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, "
        "name TEXT NOT NULL, role TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, "
        "issued_at TEXT NOT NULL)",
    )
    tables: ClassVar = {"api_tokens": "token_hash"}
    merge: ClassVar = {"api_tokens": FIRST}

    def handlers(self) -> dict[str, Handler]:
        return {"ApiTokenIssued": self._issued, "ApiTokenRevoked": self._revoked}

    def _issued(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO api_tokens (token_hash, token_id, name, role, revoked, issued_at) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            (d["token_hash"], d["token_id"], d["name"], d["role"], d["at"]),
        )

    def _revoked(self, event: RecordedEvent) -> None:
        self.write("UPDATE api_tokens SET revoked = 1 WHERE token_hash = ?", (event.data["token_hash"],))

    def role_of(self, token_hash: str) -> tuple[str, str] | None:
        """(token id, role) of a live token, or None."""
        row = self.conn.execute(
            "SELECT token_id, role FROM api_tokens WHERE token_hash = ? AND revoked = 0", (token_hash,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def list(self) -> list[dict[str, object]]:
        rows = self.conn.execute(
            "SELECT token_id, name, role, revoked, issued_at FROM api_tokens ORDER BY issued_at, token_id"
        )
        return [
            {"token_id": r[0], "name": r[1], "role": r[2], "revoked": bool(r[3]), "issued_at": r[4]}
            for r in rows
        ]
