"""The audit log ("Журнал аудита"): who did what to which object, when and from where, from the log itself.

Every event's metadata names its actor (`user:<id>`, `token:<id>`, `admin`, `scheduler`,
`processor:<name>`, `cli`, …), its source and, for requests, the client's address and the token
used; this projection keeps one row per event on an account object's stream — databases,
resources, templates, fragments, campaigns, segments, stop lists, senders, policies, tokens,
users, roles, groups, objects' groups, jobs, scheduled imports, and whatever object streams come
— with the object read from the stream name (`campaign-7` → campaign 7). Profiles' own streams,
messages, tracked activity and other high-volume derived streams are not audit objects (the
guide's object types are the account's objects); a profile import shows as its job.

Rows are kept for the audit retention (the guide's `AUDIT_LOG_TTL`, 90 days by default): the
tick deletes older ones. Details hold ids, names and statuses and, for field changes, the
changed fields' names — never their values, so the audit log holds no personal data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

import orjson

from herald.domain.events import registry
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.projections.campaigns import sortable_time
from herald.projections.partitioned import DISTINCT
from herald.projections.sqlite_projection import SqliteProjection

_NOT_OBJECTS = (
    "profile-",
    "message-",
    "activity-",
    "anonymous-",
    "unique-",
    "segmentmembers-",
    "login-",
    "journey-",
    "inbound-",
)
# The domain modules whose events all live on streams of one kind above (profiles' data, messages,
# tracking, claims, memberships, inbound mail, scenario journeys): the runtime need not read them
# for the audit.
_DATA_MODULES = frozenset(
    f"herald.domain.{name}"
    for name in (
        "profiles",
        "subscriptions",
        "tracking",
        "deliveries",
        "messages",
        "claims",
        "memberships",
        "inbound_mail",
        "scenario_instances",
    )
)
_QUIET_TYPES = frozenset({"JobChunkDone"})  # a job's progress: its start and end are the actions
_DETAIL_KEYS = frozenset(
    {"name", "status", "to_status", "from_status", "kind", "run_number", "role", "reason"}
)


class AuditProjection(SqliteProjection):
    name = "audit"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS audit (position INTEGER PRIMARY KEY, at TEXT NOT NULL, "
        "actor TEXT NOT NULL, source TEXT NOT NULL, ip TEXT, action TEXT NOT NULL, "
        "object_kind TEXT NOT NULL, object_id TEXT NOT NULL, details TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, position)",
        "CREATE INDEX IF NOT EXISTS audit_by_object ON audit (object_kind, object_id, position)",
        "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at)",
    )
    tables: ClassVar = {"audit": "position"}
    # a global event's row is folded by every partition (the same row), a profile's event's by its own
    merge: ClassVar = {"audit": DISTINCT}

    def handlers(self) -> dict[str, Any]:
        return {}

    @property
    def consumes(self) -> EventFilter:
        """Every event type but the data's (a type registered later is audited by default); `apply`
        still drops an event on a stream that is no audit object."""
        types = (name for name, cls in registry.classes().items() if cls.__module__ not in _DATA_MODULES)
        return EventFilter(frozenset(types))

    def apply(self, event: RecordedEvent) -> None:
        if event.type in _QUIET_TYPES or event.stream.startswith(_NOT_OBJECTS):
            return
        kind, _, object_id = event.stream.partition("-")
        meta = event.metadata
        self.write(
            "INSERT OR REPLACE INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.position,
                sortable_time(event.occurred_at),  # the command's time (the clock the app injects)
                str(meta.get("actor", "")),
                str(meta.get("source", "")),
                meta.get("ip"),
                event.type,
                kind,
                object_id,
                orjson.dumps(_details(event.data, meta)).decode(),
            ),
        )

    def entries(
        self,
        actor: str | None = None,
        object_kind: str | None = None,
        object_id: str | None = None,
        action: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Entries by position, each filter applied when given (`end` is exclusive)."""
        rows = self.conn.execute(
            "SELECT position, at, actor, source, ip, action, object_kind, object_id, details FROM audit "
            "WHERE position > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR object_kind = ?3) "
            "AND (?4 IS NULL OR object_id = ?4) AND (?5 IS NULL OR action = ?5) AND (?6 IS NULL OR at >= ?6) "
            "AND (?7 IS NULL OR at < ?7) ORDER BY position LIMIT ?8",
            (
                after,
                actor,
                object_kind,
                object_id,
                action,
                sortable_time(start) if start else None,
                sortable_time(end) if end else None,
                limit,
            ),
        )
        return [
            {
                "position": r[0],
                "at": r[1],
                "actor": r[2],
                "source": r[3],
                "ip": r[4],
                "action": r[5],
                "object": {"kind": r[6], "id": r[7]},
                "details": orjson.loads(r[8]),
            }
            for r in rows
        ]

    def expire(self, now: datetime, retention_days: int) -> int:
        """Delete entries older than the retention; returns how many went."""
        cutoff = sortable_time(now - timedelta(days=retention_days))
        deleted = self.conn.execute("DELETE FROM audit WHERE at < ?", (cutoff,)).rowcount
        return int(deleted)


def _details(data: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    details = {k: v for k, v in data.items() if k in _DETAIL_KEYS and isinstance(v, str | int | bool)}
    if isinstance(data.get("changes"), dict):
        details["changed"] = sorted(data["changes"])
    for key in ("token_id", "job_id", "correlation_id"):
        if key in meta:
            details[key] = meta[key]
    return details
