"""The catalog: databases, resources, templates, fragments, campaigns, pixels, scoring rules and stop
lists as listed objects.

Databases, resources, templates and fragments are folded with their own deciders' `evolve` (one
piece of code per rule) and stored as JSON documents for listing. Stop lists
are summarised from their events, and their entries kept one row each so the
send-time check (`SqliteStopListLookup`) and the bulk membership check are
indexed look-ups rather than folds of a possibly huge list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import TypeAdapter

from herald.domain import campaigns, databases, fragments, pixels, resources, scoring, templates
from herald.domain.events import Event, registry
from herald.domain.stop_lists import EntryNamer, StopListItem
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.infra.serialization import dumps, loads
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection

DATABASE = "database"
RESOURCE = "resource"
STOP_LIST = "stop_list"
TEMPLATE = "template"
FRAGMENT = "fragment"
CAMPAIGN = "campaign"
PIXEL = "pixel"
SCORING_RULE = "scoring_rule"


class _Folded:
    """Objects of one kind folded by their decider, cached in memory, stored as JSON."""

    def __init__(
        self, kind: str, state_type: type, evolve: Callable[[Any, Event], Any], initial: Any
    ) -> None:
        self.kind = kind
        self.adapter: TypeAdapter[Any] = TypeAdapter(state_type)
        self.evolve = evolve
        self.initial = initial
        self.cache: dict[str, Any] = {}


class CatalogProjection(SqliteProjection):
    name = "catalog"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS catalog_objects (kind TEXT NOT NULL, id TEXT NOT NULL, "
        "name TEXT NOT NULL, deleted INTEGER NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (kind, id))",
        "CREATE TABLE IF NOT EXISTS stop_list_entries (list_id TEXT NOT NULL, kind TEXT NOT NULL, "
        "entry_key TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL, added_at TEXT NOT NULL, "
        "PRIMARY KEY (list_id, kind, entry_key))",
    )
    tables: ClassVar = {"catalog_objects": "kind, id", "stop_list_entries": "list_id, kind, entry_key"}
    merge: ClassVar = dict.fromkeys(tables, FIRST)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._folded = {
            "database-": _Folded(
                DATABASE, databases.DatabaseState, databases.evolve, databases.DatabaseState()
            ),
            "resource-": _Folded(
                RESOURCE, resources.ResourceState, resources.evolve_resource, resources.ResourceState()
            ),
            "template-": _Folded(
                TEMPLATE, templates.TemplateState, templates.evolve, templates.TemplateState()
            ),
            "fragment-": _Folded(
                FRAGMENT, fragments.FragmentState, fragments.evolve, fragments.FragmentState()
            ),
            "campaign-": _Folded(
                CAMPAIGN, campaigns.CampaignState, campaigns.evolve, campaigns.CampaignState()
            ),
            "pixel-": _Folded(PIXEL, pixels.PixelState, pixels.evolve, pixels.PixelState()),
            "scoringrule-": _Folded(
                SCORING_RULE, scoring.RuleState, scoring.evolve_rule, scoring.RuleState()
            ),
        }
        super().__init__(conn)

    def handlers(self) -> dict[str, Handler]:
        return {
            "StopListCreated": self._stop_list_created,
            "StopListUpdated": self._stop_list_updated,
            "StopListDeleted": self._stop_list_deleted,
            "StopListEntriesAdded": self._entries_added,
            "StopListEntriesRemoved": self._entries_removed,
            "StopListCleared": self._entries_cleared,
        }

    # --- databases and resources: folded by their deciders -----------------------------------

    @property
    def consumes(self) -> EventFilter:
        return EventFilter(frozenset(self._handlers), tuple(self._folded))

    def apply(self, event: RecordedEvent) -> None:
        prefix, _, object_id = event.stream.partition("-")
        folded = self._folded.get(prefix + "-")
        if folded is None:
            super().apply(event)
        else:
            self._fold(folded, object_id, event)

    def _fold(self, folded: _Folded, object_id: str, event: RecordedEvent) -> None:
        state = self._state(folded, object_id)
        state = folded.evolve(state, registry.decode(event.type, event.schema_version, event.payload))
        folded.cache[object_id] = state
        doc = folded.adapter.dump_python(state, mode="json")
        self.write(
            "INSERT OR REPLACE INTO catalog_objects (kind, id, name, deleted, doc) VALUES (?, ?, ?, ?, ?)",
            (folded.kind, object_id, _name_of(doc), int(doc.get("deleted", False)), dumps(doc)),
        )

    def _state(self, folded: _Folded, object_id: str) -> Any:
        if object_id not in folded.cache:
            row = self.conn.execute(
                "SELECT doc FROM catalog_objects WHERE kind = ? AND id = ?", (folded.kind, object_id)
            ).fetchone()
            folded.cache[object_id] = folded.adapter.validate_python(loads(row[0])) if row else folded.initial
        return folded.cache[object_id]

    def discard(self) -> None:
        super().discard()
        for folded in self._folded.values():
            folded.cache.clear()

    # --- stop lists: summaries and entry rows ------------------------------------------------

    def _stop_list_created(self, event: RecordedEvent) -> None:
        d = event.data
        doc = {
            "list_id": d["list_id"],
            "kind": d["kind"],
            "name": d["name"],
            "description": d.get("description", ""),
            "tags": d.get("tags", []),
            "deleted": False,
        }
        self.write(
            "INSERT OR REPLACE INTO catalog_objects (kind, id, name, deleted, doc) VALUES (?, ?, ?, 0, ?)",
            (STOP_LIST, d["list_id"], d["name"], dumps(doc)),
        )

    def _stop_list_updated(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE catalog_objects SET name = ?, doc = json_set(doc, '$.name', ?, '$.description', ?, "
            "'$.tags', json(?)) WHERE kind = ? AND id = ?",
            (d["name"], d["name"], d["description"], dumps(d["tags"]), STOP_LIST, d["list_id"]),
        )

    def _stop_list_deleted(self, event: RecordedEvent) -> None:
        list_id = event.data["list_id"]
        self.write(
            "UPDATE catalog_objects SET deleted = 1, doc = json_set(doc, '$.deleted', json('true')) "
            "WHERE kind = ? AND id = ?",
            (STOP_LIST, list_id),
        )
        self.write("DELETE FROM stop_list_entries WHERE list_id = ?", (list_id,))

    def _entries_added(self, event: RecordedEvent) -> None:
        d = event.data
        for item in d["items"]:
            key = StopListItem.model_validate(item).key[1]
            self.write(
                "INSERT OR IGNORE INTO stop_list_entries (list_id, kind, entry_key, value, reason, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (d["list_id"], item["kind"], key, item["value"], d["reason"], d["at"]),
            )

    def _entries_removed(self, event: RecordedEvent) -> None:
        d = event.data
        for item in d["items"]:
            key = StopListItem.model_validate(item).key[1]
            self.write(
                "DELETE FROM stop_list_entries WHERE list_id = ? AND kind = ? AND entry_key = ?",
                (d["list_id"], item["kind"], key),
            )

    def _entries_cleared(self, event: RecordedEvent) -> None:
        self.write("DELETE FROM stop_list_entries WHERE list_id = ?", (event.data["list_id"],))

    # --- queries ---------------------------------------------------------------------------

    def objects(self, kind: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every object of `kind` as its JSON document, by id."""
        sql = "SELECT doc FROM catalog_objects WHERE kind = ?" + (
            "" if include_deleted else " AND deleted = 0"
        )
        return [loads(row[0]) for row in self.conn.execute(sql + " ORDER BY id", (kind,))]

    def entry_count(self, list_id: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM stop_list_entries WHERE list_id = ?", (list_id,)
        ).fetchone()
        return int(row[0])

    def entries(self, list_id: str, after: str = "", limit: int = 1000) -> list[dict[str, str]]:
        rows = self.conn.execute(
            "SELECT kind, value, reason, added_at, entry_key FROM stop_list_entries "
            "WHERE list_id = ? AND kind || ':' || entry_key > ? ORDER BY kind || ':' || entry_key LIMIT ?",
            (list_id, after, limit),
        )
        return [
            {"kind": r[0], "value": r[1], "reason": r[2], "added_at": r[3], "cursor": f"{r[0]}:{r[4]}"}
            for r in rows
        ]


def _name_of(doc: dict[str, Any]) -> str:
    for holder in ("settings", "card", "fragment"):  # databases, resources, campaigns; templates; fragments
        settings = doc.get(holder)
        if isinstance(settings, dict):
            return str(settings.get("name", ""))
    return str(doc.get("name", ""))


class SqliteStopListLookup:
    """The send-time stop-list look-up (`stop_lists.StopListLookup`) over the catalog tables."""

    def __init__(self, conn: sqlite3.Connection, name_entry: EntryNamer) -> None:
        self._conn = conn
        # entries are keyed by name, so an erased one still matches; a send checks the same contact
        # against up to five lists, so each name is computed once
        self._name = lru_cache(maxsize=65_536)(name_entry)

    def has_entry(self, list_id: str, item: StopListItem) -> bool:
        kind = item.kind
        key = item.digest or self._name(kind, item.match_key)
        row = self._conn.execute(
            "SELECT 1 FROM stop_list_entries WHERE list_id = ? AND kind = ? AND entry_key = ?",
            (list_id, str(kind), key),
        ).fetchone()
        return row is not None

    def database_list(self, database_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT json_extract(doc, '$.stop_list_id') FROM catalog_objects "
            "WHERE kind = ? AND id = ? AND deleted = 0",
            (DATABASE, database_id),
        ).fetchone()
        return row[0] if row else None

    def template_list(self, template_id: str) -> str | None:
        row = self._conn.execute(
            "SELECT json_extract(doc, '$.content.stop_list_id') FROM catalog_objects "
            "WHERE kind = ? AND id = ? AND deleted = 0",
            (TEMPLATE, template_id),
        ).fetchone()
        return row[0] if row else None
