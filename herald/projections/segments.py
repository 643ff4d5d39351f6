"""Segment read models: the segments' cards, static segments' history, membership now and "as of".

- `segment_cards`: one row per segment, its state folded with the segment
  aggregate's own `evolve` (JSON document) plus the columns lists and the
  scheduler filter on (kind, name, next recalculation due, times, deleted);
- `segment_history`: a static segment's recalculations and edits, with counts;
- `segment_members`: who is in each segment now, since when, from the
  `ProfileEnteredSegment`/`ProfileLeftSegment` events of every segment;
- `segment_intervals`: every stay [entered_at, left_at) of a profile in a
  segment, so membership "as of" any instant is one indexed query.

Times are stored as fixed-width UTC text (`sortable_time`), so they compare as text.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any, ClassVar

from pydantic import TypeAdapter

from herald.domain import segment_definitions as sd
from herald.domain.events import registry
from herald.infra.event_store import RecordedEvent
from herald.infra.serialization import dumps, loads
from herald.projections.campaigns import sortable_time
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection

_STATE = TypeAdapter(sd.SegmentState)
_SEGMENT_EVENTS = (
    "SegmentCreated",
    "SegmentChanged",
    "SegmentDeleted",
    "StaticSegmentRecalculated",
    "StaticSegmentEdited",
    "StaticRecalculationScheduled",
)


class SegmentsProjection(SqliteProjection):
    name = "segments"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS segment_cards (segment_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
        "name TEXT NOT NULL, deleted INTEGER NOT NULL, next_recalculation_at TEXT, "
        "created_at TEXT NOT NULL, changed_at TEXT NOT NULL, doc BLOB NOT NULL)",
        "CREATE INDEX IF NOT EXISTS segment_cards_by_due ON segment_cards (next_recalculation_at)",
        "CREATE TABLE IF NOT EXISTS segment_history (segment_id TEXT NOT NULL, ref TEXT NOT NULL, "
        "position INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL, "
        "source_segment_id TEXT, entered INTEGER NOT NULL, left INTEGER NOT NULL, size INTEGER NOT NULL, "
        "at TEXT NOT NULL, PRIMARY KEY (segment_id, ref))",
        "CREATE TABLE IF NOT EXISTS segment_members (segment_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "since TEXT NOT NULL, PRIMARY KEY (segment_id, profile_id))",
        "CREATE INDEX IF NOT EXISTS segment_members_by_profile ON segment_members (profile_id)",
        "CREATE TABLE IF NOT EXISTS segment_intervals (segment_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "entered_at TEXT NOT NULL, left_at TEXT, PRIMARY KEY (segment_id, profile_id, entered_at))",
        "CREATE INDEX IF NOT EXISTS segment_intervals_by_profile ON segment_intervals (profile_id)",
    )
    tables: ClassVar = {
        "segment_cards": "segment_id",
        "segment_history": "segment_id, ref",
        "segment_members": "segment_id, profile_id",
        "segment_intervals": "segment_id, profile_id, entered_at",
    }
    merge: ClassVar = {"segment_cards": FIRST, "segment_history": FIRST}

    def __init__(self, conn: sqlite3.Connection) -> None:
        # Folded states by segment id: a batch may hold several events of one segment before its commit.
        self._cache: dict[str, tuple[sd.SegmentState, str, str]] = {}
        super().__init__(conn)

    def handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {name: self._fold for name in _SEGMENT_EVENTS}
        handlers["ProfileEnteredSegment"] = self._entered
        handlers["ProfileLeftSegment"] = self._left
        return handlers

    def discard(self) -> None:
        super().discard()
        self._cache.clear()

    # --- cards and history ---------------------------------------------------------------------

    def _fold(self, event: RecordedEvent) -> None:
        d = event.data
        segment_id = d["segment_id"]
        state, created_at, changed_at = self._state(segment_id)
        state = sd.evolve(state, registry.decode(event.type, event.schema_version, d))
        if event.type == "SegmentCreated":
            created_at = changed_at = sortable_time(d["at"])
        elif event.type in ("SegmentChanged", "SegmentDeleted"):
            changed_at = sortable_time(d["at"])
        self._cache[segment_id] = (state, created_at, changed_at)
        due = state.next_recalculation_at
        self.write(
            "INSERT OR REPLACE INTO segment_cards (segment_id, kind, name, deleted, next_recalculation_at, "
            "created_at, changed_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                segment_id,
                state.kind,
                state.settings.name if state.settings else "",
                int(state.deleted),
                sortable_time(due) if due is not None else None,
                created_at,
                changed_at,
                dumps(_STATE.dump_python(state, mode="json")),
            ),
        )
        if event.type in ("StaticSegmentRecalculated", "StaticSegmentEdited"):
            self._history(event)

    def _state(self, segment_id: str) -> tuple[sd.SegmentState, str, str]:
        if segment_id not in self._cache:
            row = self.conn.execute(
                "SELECT doc, created_at, changed_at FROM segment_cards WHERE segment_id = ?", (segment_id,)
            ).fetchone()
            if row is None:
                self._cache[segment_id] = (sd.SegmentState(), "", "")
            else:
                self._cache[segment_id] = (_STATE.validate_python(loads(row[0])), row[1], row[2])
        return self._cache[segment_id]

    def _history(self, event: RecordedEvent) -> None:
        d = event.data
        recalculated = event.type == "StaticSegmentRecalculated"
        row = (
            d["segment_id"],
            d["recalculation_id"] if recalculated else d["edit_id"],
            event.position,
            "recalculation" if recalculated else "edit",
            d["reason"] if recalculated else d["how"],
            None if recalculated else d.get("source_segment_id"),
            d["entered"] if recalculated else d["added"],
            d["left"] if recalculated else d["removed"],
            d["size"],
            sortable_time(d["at"]),
        )
        self.write(
            "INSERT OR IGNORE INTO segment_history (segment_id, ref, position, kind, reason, "
            "source_segment_id, entered, left, size, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    # --- membership ----------------------------------------------------------------------------

    def _entered(self, event: RecordedEvent) -> None:
        d = event.data
        at = sortable_time(d["at"])
        self.write(
            "INSERT OR IGNORE INTO segment_members (segment_id, profile_id, since) VALUES (?, ?, ?)",
            (d["segment_id"], d["profile_id"], at),
        )
        # A second entry without a leave (never written by Herald) keeps the open stay as it is.
        self.write(
            "INSERT OR IGNORE INTO segment_intervals (segment_id, profile_id, entered_at, left_at) "
            "SELECT ?, ?, ?, NULL WHERE NOT EXISTS (SELECT 1 FROM segment_intervals "
            "WHERE segment_id = ? AND profile_id = ? AND left_at IS NULL)",
            (d["segment_id"], d["profile_id"], at, d["segment_id"], d["profile_id"]),
        )

    def _left(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "DELETE FROM segment_members WHERE segment_id = ? AND profile_id = ?",
            (d["segment_id"], d["profile_id"]),
        )
        self.write(
            "UPDATE segment_intervals SET left_at = ? WHERE segment_id = ? AND profile_id = ? "
            "AND left_at IS NULL",
            (sortable_time(d["at"]), d["segment_id"], d["profile_id"]),
        )

    # --- queries -------------------------------------------------------------------------------

    def card(self, segment_id: str) -> dict[str, Any] | None:
        """The segment's card (None if unknown or deleted)."""
        row = self.conn.execute(
            f"SELECT {_CARD_COLUMNS} FROM segment_cards WHERE segment_id = ? AND deleted = 0", (segment_id,)
        ).fetchone()
        return self._card(row) if row else None

    def cards(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every segment's card, by id (numerically, as ids are short numbers)."""
        where = "" if include_deleted else " WHERE deleted = 0"
        rows = self.conn.execute(
            f"SELECT {_CARD_COLUMNS} FROM segment_cards{where} ORDER BY length(segment_id), segment_id"
        )
        return [self._card(row) for row in rows]

    def count_all(self) -> int:
        """How many segments were ever created, deleted ones included."""
        return int(self.conn.execute("SELECT count(*) FROM segment_cards").fetchone()[0])

    def _card(self, row: tuple[Any, ...]) -> dict[str, Any]:
        segment_id, deleted, created_at, changed_at, doc = row
        state: dict[str, Any] = loads(doc)
        settings = state["settings"] or {}
        static = state["kind"] == "static"
        return {
            "segment_id": segment_id,
            "name": settings.get("name", ""),
            "kind": state["kind"],
            "query": settings.get("query"),
            "timezone": state["timezone"],
            "recalculation": settings.get("recalculation"),
            "next_recalculation_at": state["next_recalculation_at"],
            "size": self.size(segment_id) if static else None,
            "recalculations": state["recalculations"],
            "created_at": created_at,
            "changed_at": changed_at,
            "deleted": bool(deleted),
        }

    def referencing(self, segment_id: str) -> list[str]:
        """The live segments whose query has a segment rule naming `segment_id`."""
        users = []
        for card in self.cards():
            query = card["query"] or {}
            for source in query.get("sources", []):
                rules = [*source.get("rules", []), *(r for g in source.get("groups", []) for r in g["rules"])]
                if any(r.get("kind") == "segment" and r.get("segment_id") == segment_id for r in rules):
                    users.append(card["segment_id"])
                    break
        return users

    def history(self, segment_id: str) -> list[dict[str, Any]]:
        """A static segment's recalculations and edits, oldest first."""
        rows = self.conn.execute(
            "SELECT ref, kind, reason, source_segment_id, entered, left, size, at FROM segment_history "
            "WHERE segment_id = ? ORDER BY position",
            (segment_id,),
        )
        found = []
        for ref, kind, reason, source, entered, left, size, at in rows:
            if kind == "recalculation":
                entry = {"recalculation_id": ref, "reason": reason, "entered": entered, "left": left}
            else:
                entry = {"edit_id": ref, "how": reason, "source_segment_id": source}
                entry |= {"added": entered, "removed": left}
            found.append({"kind": kind, **entry, "size": size, "at": at})
        return found

    def due_recalculations(self, now: datetime) -> list[tuple[str, datetime]]:
        """(segment id, due at) of every live static segment whose recalculation is due at or before `now`."""
        rows = self.conn.execute(
            "SELECT segment_id, next_recalculation_at FROM segment_cards WHERE deleted = 0 "
            "AND next_recalculation_at IS NOT NULL AND next_recalculation_at <= ? "
            "ORDER BY next_recalculation_at, segment_id",
            (sortable_time(now),),
        )
        return [(r[0], datetime.fromisoformat(r[1])) for r in rows]

    def size(self, segment_id: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM segment_members WHERE segment_id = ?", (segment_id,)
        ).fetchone()
        return int(row[0])

    def members(
        self, segment_id: str, as_of: datetime | None = None, offset: int = 0, limit: int = 100
    ) -> list[dict[str, str]]:
        """The segment's members (profile id, since) now or as of an instant, by profile id."""
        if as_of is None:
            rows = self.conn.execute(
                "SELECT profile_id, since FROM segment_members WHERE segment_id = ? "
                "ORDER BY profile_id LIMIT ? OFFSET ?",
                (segment_id, limit, offset),
            )
        else:
            rows = self.conn.execute(
                "SELECT profile_id, entered_at FROM segment_intervals WHERE segment_id = ? "
                "AND entered_at <= ? AND (left_at IS NULL OR left_at > ?) "
                "ORDER BY profile_id LIMIT ? OFFSET ?",
                (segment_id, *_twice(as_of), limit, offset),
            )
        return [{"profile_id": r[0], "since": r[1]} for r in rows]

    def segments_of(self, profile_id: str, as_of: datetime | None = None) -> list[dict[str, str]]:
        """The live segments a profile is in (segment id, since) now, or those it was in as of an instant."""
        if as_of is None:
            rows = self.conn.execute(
                "SELECT m.segment_id, m.since FROM segment_members m JOIN segment_cards c "
                "ON c.segment_id = m.segment_id AND c.deleted = 0 WHERE m.profile_id = ? "
                "ORDER BY length(m.segment_id), m.segment_id",
                (profile_id,),
            )
        else:
            rows = self.conn.execute(
                "SELECT segment_id, entered_at FROM segment_intervals WHERE profile_id = ? "
                "AND entered_at <= ? AND (left_at IS NULL OR left_at > ?) "
                "ORDER BY length(segment_id), segment_id",
                (profile_id, *_twice(as_of)),
            )
        return [{"segment_id": r[0], "since": r[1]} for r in rows]

    def intervals(self, segment_id: str, profile_id: str) -> list[dict[str, str | None]]:
        """Every stay of the profile in the segment, oldest first."""
        rows = self.conn.execute(
            "SELECT entered_at, left_at FROM segment_intervals WHERE segment_id = ? AND profile_id = ? "
            "ORDER BY entered_at",
            (segment_id, profile_id),
        )
        return [{"entered_at": r[0], "left_at": r[1]} for r in rows]


_CARD_COLUMNS = "segment_id, deleted, created_at, changed_at, doc"


def _twice(moment: datetime) -> tuple[str, str]:
    at = sortable_time(moment)
    return at, at
