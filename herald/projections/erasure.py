"""Erasure in the read models: on `ProfileErased`, every row about the profile goes, and no copy stays.

It runs after every other projection over the same batch (it is last in the list, on the
same connection), so nothing re-adds a row it removed. It drops the rows of every read-model
table with a `profile_id` column for that profile, and the send-history rows of the contacts the
profile's subscriptions and card held (read before they go). The stop-list entries of its
addresses stay, so they keep suppressing, but read as erased from the lists' own
`StopListEntriesErased`: those are global events, so under the scale engine they reach the
partition holding the lists, whichever holds the profile. The connection deletes securely
(`secure_delete`, set where the file is opened, zeroes freed bytes) and after the commit the WAL
is checkpointed and truncated, so the file holds no copy of the erased rows or values.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from herald.infra.event_store import RecordedEvent
from herald.projections.sqlite_projection import Handler, SqliteProjection


class ErasureProjection(SqliteProjection):
    name = "erasure"
    ddl: ClassVar = ()
    tables: ClassVar = {}

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self._erased = False

    def handlers(self) -> dict[str, Handler]:
        return {"ProfileErased": self._erase, "StopListEntriesErased": self._entries_erased}

    def _erase(self, event: RecordedEvent) -> None:
        profile_id = event.data["profile_id"]
        for contact in self._contacts(profile_id):
            self.write("DELETE FROM contact_sends WHERE contact = ?", (contact,))
        for table in self._tables_with_profiles():
            self.write(f"DELETE FROM {table} WHERE profile_id = ?", (profile_id,))
        self._erased = True

    def _entries_erased(self, event: RecordedEvent) -> None:
        list_id = event.data["list_id"]
        for item in event.data["items"]:  # they stay, and keep matching
            self.write(
                "UPDATE stop_list_entries SET value = ? WHERE list_id = ? AND kind = ? AND entry_key = ?",
                (item["value"], list_id, item["kind"], item["digest"]),
            )
        self._erased = True

    def _contacts(self, profile_id: str) -> set[str]:
        contacts = {
            r[0]
            for r in self.conn.execute(
                "SELECT contact FROM subscriptions WHERE profile_id = ?", (profile_id,)
            )
        }
        row = self.conn.execute(
            "SELECT card FROM profile_cards WHERE profile_id = ?", (profile_id,)
        ).fetchone()
        if row is not None:
            card = orjson.loads(row[0])
            contacts.add(str(card.get("email", "")))
            contacts.update(str(p) for p in card.get("fields", {}).get("phones") or [])
        return {c for c in contacts if c}

    def _tables_with_profiles(self) -> list[str]:
        tables = [
            r[0]
            for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return [
            t
            for t in tables
            if any(c[1] == "profile_id" for c in self.conn.execute(f"PRAGMA table_info({t})"))
        ]

    def commit(self, position: int) -> None:
        super().commit(position)
        if self._erased:
            self._erased = False
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
