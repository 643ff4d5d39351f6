"""SMS short links: `/s/<code>` → the message and the click token the code stands for."""

from __future__ import annotations

from typing import ClassVar

from herald.infra.event_store import RecordedEvent
from herald.projections.sqlite_projection import Handler, SqliteProjection


class ShortLinksProjection(SqliteProjection):
    name = "short_links"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS short_links (code TEXT PRIMARY KEY, message_id TEXT NOT NULL, "
        "token TEXT NOT NULL)",
    )
    tables: ClassVar = {"short_links": "code"}

    def handlers(self) -> dict[str, Handler]:
        return {"MessageLinksShortened": self._shortened}

    def _shortened(self, event: RecordedEvent) -> None:
        message_id = event.data["message_id"]
        for code, token in event.data["links"].items():
            self.write("INSERT OR IGNORE INTO short_links VALUES (?, ?, ?)", (code, message_id, token))

    def token(self, code: str) -> str | None:
        """The click token a short code stands for; None for a code no message was sent with."""
        row = self.conn.execute("SELECT token FROM short_links WHERE code = ?", (code,)).fetchone()
        return str(row[0]) if row else None
