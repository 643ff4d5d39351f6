"""Profiles: the profile card, lookups by match key, subscriber lists, anonymous-id links.

Profile events are folded with the profile decider's own `evolve` (one piece
of code per rule), cached in memory and written behind: each commit writes
the card, the lookup keys and the subscription rows of the profiles that
changed, with the checkpoint, in one transaction. A profile the cache no
longer holds is re-folded from its stream up to the event being applied
(`load_profile`), so the result never depends on batch sizes — which is what
makes a replay's checksums equal the live ones.

Lookup keys depend on which custom fields are unique; this projection folds
that from database events itself, so keys are computed with the schema as of
each event, not as of whenever a batch happens to be flushed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any, ClassVar

from pydantic import TypeAdapter

from herald.domain import profiles
from herald.domain.events import registry
from herald.domain.matching import LookupKey, lookup_key_inputs, profile_lookup_keys
from herald.domain.profiles import ProfileState
from herald.domain.subscriptions import Subscription, SubscriptionsState
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.infra.serialization import dumps, loads
from herald.projections.partitioned import FIRST
from herald.projections.profile_states import LoadProfile
from herald.projections.sqlite_projection import Handler, SqliteProjection

_CACHE_LIMIT = 200_000
_NO_FIELDS: frozenset[str] = frozenset()
_SUBSCRIPTION = TypeAdapter(Subscription)
_CHUNK = 400

SubscriberCursor = tuple[str, str, str, str]
"""Where a page of subscribers ended: (profile id, channel, contact, provider or "")."""


def card(state: ProfileState, subscriptions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The customer card: fields, statuses, ids, registration and tracked data, subscriptions.

    `subscriptions` is `subscription_docs(state.subscriptions)` when the caller has it already.
    """
    registration = state.registration
    return {
        "profile_id": state.profile_id,
        "database_id": state.database_id,
        "md5_id": state.md5_id,
        "xxh_id": state.xxh_id,
        "email": state.email,
        "fields": dict(state.fields),
        "global_status": str(state.status),
        "is_test": state.is_test,
        "timezone": state.timezone,
        "registration": {
            "date": registration.date,
            "ip": registration.ip,
            "city": registration.city,
            "country": registration.country,
            "url": registration.url,
            "vendor": registration.vendor,
        },
        "tracked": state.tracked.model_dump(mode="json") if state.tracked else None,
        "subscriptions": subscription_docs(state.subscriptions) if subscriptions is None else subscriptions,
        "source": state.source,
        "created_at": state.created_at.isoformat() if state.created_at else None,
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
        "deleted": state.deleted,
        "merged_into": state.merged_into,
    }


def subscription_docs(subscriptions: SubscriptionsState) -> list[dict[str, Any]]:
    """The card's subscriptions, in card order."""
    return [_subscription_json(s) for s in _ordered(subscriptions.items.values())]


def _ordered(subscriptions: Iterable[Subscription]) -> list[Subscription]:
    return sorted(
        subscriptions,
        key=lambda s: (s.key.resource_id, s.key.channel, s.priority, s.key.contact, s.key.provider or ""),
    )


def _subscription_json(subscription: Subscription) -> dict[str, Any]:
    doc = _SUBSCRIPTION.dump_python(subscription, mode="json", exclude_none=True)
    key = doc.pop("key")
    doc["device"] = {k: v for k, v in doc.get("device", {}).items() if v is not None}
    return {**key, **doc}


class ProfilesProjection(SqliteProjection):
    name = "profiles"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS profile_cards (profile_id TEXT PRIMARY KEY, database_id TEXT NOT NULL, "
        "email TEXT NOT NULL, global_status TEXT NOT NULL, is_test INTEGER NOT NULL, live INTEGER NOT NULL, "
        "card BLOB NOT NULL)",
        "CREATE INDEX IF NOT EXISTS profile_cards_by_database "
        "ON profile_cards (database_id, live, profile_id)",
        "CREATE TABLE IF NOT EXISTS profile_lookups (database_id TEXT NOT NULL, kind TEXT NOT NULL, "
        "value TEXT NOT NULL, profile_id TEXT NOT NULL, PRIMARY KEY (database_id, kind, value, profile_id))",
        "CREATE INDEX IF NOT EXISTS profile_lookups_by_profile ON profile_lookups (profile_id)",
        "CREATE TABLE IF NOT EXISTS subscriptions (profile_id TEXT NOT NULL, resource_id TEXT NOT NULL, "
        "channel TEXT NOT NULL, contact TEXT NOT NULL, provider TEXT NOT NULL, database_id TEXT NOT NULL, "
        "status TEXT NOT NULL, priority INTEGER NOT NULL, registered_at TEXT NOT NULL, "
        "PRIMARY KEY (profile_id, resource_id, channel, contact, provider))",
        "CREATE INDEX IF NOT EXISTS subscriptions_by_resource "
        "ON subscriptions (resource_id, channel, status, profile_id)",
        "CREATE TABLE IF NOT EXISTS anonymous_links (anonymous_id TEXT NOT NULL, database_id TEXT NOT NULL, "
        "profile_id TEXT NOT NULL, PRIMARY KEY (database_id, anonymous_id))",
        "CREATE TABLE IF NOT EXISTS profile_unique_fields (database_id TEXT NOT NULL, field TEXT NOT NULL, "
        "PRIMARY KEY (database_id, field))",
    )
    tables: ClassVar = {
        "profile_cards": "profile_id",
        "profile_lookups": "database_id, kind, value, profile_id",
        "subscriptions": "profile_id, resource_id, channel, contact, provider",
        "anonymous_links": "database_id, anonymous_id",
        "profile_unique_fields": "database_id, field",
    }
    merge: ClassVar = {"profile_unique_fields": FIRST}

    def __init__(self, conn: sqlite3.Connection, load_profile: LoadProfile | None = None) -> None:
        super().__init__(conn)
        self._load_profile = load_profile
        self._states: dict[str, ProfileState] = {}
        self._unique_at: dict[str, frozenset[str]] = {}
        self._stored_keys: dict[str, frozenset[LookupKey]] = {}
        # The card's subscriptions of the subscriptions object they were made from: most events
        # leave a profile's subscriptions as they were (the same object), so they are made again
        # only when it changed.
        self._subscription_docs: dict[str, tuple[SubscriptionsState, list[dict[str, Any]]]] = {}
        self._key_inputs: dict[str, tuple[Any, ...]] = {}  # what the stored keys were made from
        self._dirty: set[str] = set()
        # The stream version each card shows, so a client's expected_version matches what it read.
        self._versions: dict[str, int] = {}
        self._unique: dict[str, frozenset[str]] = {}
        for database_id, field in conn.execute("SELECT database_id, field FROM profile_unique_fields"):
            self._unique[database_id] = self._unique.get(database_id, frozenset()) | {field}

    def handlers(self) -> dict[str, Handler]:
        return {
            "DatabaseCreated": self._database_created,
            "CustomFieldAdded": self._custom_field_set,
            "CustomFieldUpdated": self._custom_field_set,
            "CustomFieldRemoved": self._custom_field_removed,
            "AnonymousIdLinked": self._anonymous_linked,
        }

    @property
    def consumes(self) -> EventFilter:
        return EventFilter(frozenset(self._handlers), ("profile-",))

    def apply(self, event: RecordedEvent) -> None:
        if event.stream.startswith("profile-"):
            self._fold(event)
        else:
            super().apply(event)

    # --- profiles ----------------------------------------------------------------------------

    def _fold(self, event: RecordedEvent) -> None:
        profile_id = event.stream[len("profile-") :]
        typed = registry.decode(event.type, event.schema_version, event.payload)
        state = self._states.pop(profile_id, None)  # re-inserted last: the cache is least-recently-used first
        if state is None:
            state = self._load(profile_id, event)
        state = profiles.evolve(state, typed)
        self._states[profile_id] = state
        self._versions[profile_id] = event.version
        # The keys depend on the schema as of this event; they are computed once, at flush.
        self._unique_at[profile_id] = self._unique.get(state.database_id, _NO_FIELDS)
        self._dirty.add(profile_id)

    def _load(self, profile_id: str, event: RecordedEvent) -> ProfileState:
        if event.version == 1:
            return profiles.profile_decider.initial
        if self._load_profile is None:
            raise RuntimeError("the profiles projection needs a profile loader to resume a partial fold")
        self._stored_keys.setdefault(profile_id, self._keys_in_db(profile_id))
        return self._load_profile(profile_id, event.position)

    def _keys_in_db(self, profile_id: str) -> frozenset[LookupKey]:
        rows = self.conn.execute(
            "SELECT kind, value FROM profile_lookups WHERE profile_id = ?", (profile_id,)
        )
        return frozenset(LookupKey(kind, value) for kind, value in rows)

    def flush(self) -> None:
        super().flush()
        cards, key_deletes, key_inserts, sub_rows = [], [], [], []
        for profile_id in sorted(self._dirty):
            state = self._states[profile_id]
            version = self._versions[profile_id]
            cards.append(
                (
                    profile_id,
                    state.database_id,
                    state.email,
                    str(state.status),
                    int(state.is_test),
                    int(state.exists),
                    dumps({**card(state, self._docs(profile_id, state)), "version": version}),
                )
            )
            inputs = lookup_key_inputs(state, self._unique_at[profile_id])
            if profile_id not in self._stored_keys or self._key_inputs.get(profile_id) != inputs:
                new_keys = profile_lookup_keys(state, self._unique_at[profile_id])
                old_keys = self._stored_keys.get(profile_id, frozenset())
                key_deletes += [(state.database_id, k.kind, k.value, profile_id) for k in old_keys - new_keys]
                key_inserts += [(state.database_id, k.kind, k.value, profile_id) for k in new_keys - old_keys]
                self._stored_keys[profile_id] = new_keys
                self._key_inputs[profile_id] = inputs
            sub_rows += (
                [
                    (
                        profile_id,
                        s.key.resource_id,
                        s.key.channel,
                        s.key.contact,
                        s.key.provider or "",
                        state.database_id,
                        str(s.status),
                        s.priority,
                        s.registered_at.isoformat(),
                    )
                    for s in state.subscriptions.items.values()
                ]
                if state.exists
                else []
            )
        execute = self.conn.executemany
        execute("INSERT OR REPLACE INTO profile_cards VALUES (?, ?, ?, ?, ?, ?, ?)", cards)
        execute(
            "DELETE FROM profile_lookups WHERE database_id = ? AND kind = ? AND value = ? AND profile_id = ?",
            key_deletes,
        )
        execute("INSERT OR IGNORE INTO profile_lookups VALUES (?, ?, ?, ?)", key_inserts)
        execute("DELETE FROM subscriptions WHERE profile_id = ?", [(p,) for p in sorted(self._dirty)])
        execute("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", sub_rows)
        self._dirty.clear()
        self._evict()

    def _docs(self, profile_id: str, state: ProfileState) -> list[dict[str, Any]]:
        held = self._subscription_docs.get(profile_id)
        if held is None or held[0] is not state.subscriptions:
            held = self._subscription_docs[profile_id] = (
                state.subscriptions,
                subscription_docs(state.subscriptions),
            )
        return held[1]

    def _evict(self) -> None:
        """Drop the least recently folded profiles beyond the cache limit (they reload from the log)."""
        excess = len(self._states) - _CACHE_LIMIT
        if excess <= 0:
            return
        for profile_id in list(islice(self._states, excess + _CACHE_LIMIT // 10)):
            del self._states[profile_id]
            self._versions.pop(profile_id, None)
            self._unique_at.pop(profile_id, None)
            self._stored_keys.pop(profile_id, None)
            self._subscription_docs.pop(profile_id, None)
            self._key_inputs.pop(profile_id, None)

    def discard(self) -> None:
        super().discard()
        self._forget()
        self._unique = {}
        for database_id, field in self.conn.execute("SELECT database_id, field FROM profile_unique_fields"):
            self._unique[database_id] = self._unique.get(database_id, frozenset()) | {field}

    def _forget(self) -> None:
        self._states.clear()
        self._versions.clear()
        self._unique_at.clear()
        self._stored_keys.clear()
        self._subscription_docs.clear()
        self._key_inputs.clear()
        self._dirty.clear()

    # --- the schema's unique fields, as of each event ----------------------------------------

    def _database_created(self, event: RecordedEvent) -> None:
        database_id = event.data["database_id"]
        for field in event.data.get("custom_fields", []):
            if field.get("unique"):
                self._set_unique(database_id, field["name"], True)

    def _custom_field_set(self, event: RecordedEvent) -> None:
        field = event.data["field"]
        self._set_unique(event.data["database_id"], field["name"], bool(field.get("unique")))

    def _custom_field_removed(self, event: RecordedEvent) -> None:
        self._set_unique(event.data["database_id"], event.data["name"], False)

    def _set_unique(self, database_id: str, name: str, unique: bool) -> None:
        current = self._unique.get(database_id, frozenset())
        self._unique[database_id] = current | {name} if unique else current - {name}
        if unique:
            self.write("INSERT OR IGNORE INTO profile_unique_fields VALUES (?, ?)", (database_id, name))
        else:
            self.write(
                "DELETE FROM profile_unique_fields WHERE database_id = ? AND field = ?", (database_id, name)
            )

    def _anonymous_linked(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO anonymous_links VALUES (?, ?, ?)",
            (d["anonymous_id"], d["database_id"], d["profile_id"]),
        )

    # --- queries -------------------------------------------------------------------------------

    def card(self, profile_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT card FROM profile_cards WHERE profile_id = ?", (profile_id,)
        ).fetchone()
        return loads(row[0]) if row else None

    def resolve(self, database_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """The live profiles each key finds in the database, by profile id, keyed by (kind, value).

        Plain (kind, value) tuples in and out, not a LookupKey per key of a 10,000-key batch: a
        LookupKey equals and hashes as its tuple, so `found[key]` and `key in found` work with either.

        One query for the whole batch: the keys go in as one JSON array that SQLite walks,
        seeking the lookup index once per key (no chunks of bound parameters, no sorting here);
        CROSS JOIN keeps that order (SQLite would otherwise scan the index per key).
        """
        found: dict[tuple[str, str], list[str]] = {}
        if not keys:
            return found
        rows = self.conn.execute(
            "SELECT l.kind, l.value, l.profile_id FROM json_each(?) AS k CROSS JOIN profile_lookups AS l"
            " ON l.database_id = ? AND l.kind = k.value ->> 0 AND l.value = k.value ->> 1"
            " ORDER BY l.kind, l.value, l.profile_id",
            (dumps([tuple(key) for key in set(keys)]), database_id),
        )
        for kind, value, profile_id in rows:
            found.setdefault((kind, value), []).append(profile_id)
        return found

    def linked_profiles(self, database_id: str, anonymous_ids: Sequence[str]) -> dict[str, str]:
        """anonymous id → profile id, for the ids an `identify` linked."""
        linked: dict[str, str] = {}
        unique = sorted(set(anonymous_ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows = self.conn.execute(
                f"SELECT anonymous_id, profile_id FROM anonymous_links WHERE database_id = ? "
                f"AND anonymous_id IN ({','.join('?' * len(chunk))})",
                [database_id, *chunk],
            )
            linked.update(dict(rows))
        return linked

    def links_of(self, anonymous_id: str) -> dict[str, str]:
        """database id → profile id of every profile an anonymous visitor was identified as."""
        rows = self.conn.execute(
            "SELECT database_id, profile_id FROM anonymous_links WHERE anonymous_id = ?", (anonymous_id,)
        )
        return dict(rows.fetchall())

    def anonymous_ids_of(self, profile_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT anonymous_id FROM anonymous_links WHERE profile_id = ? ORDER BY anonymous_id",
            (profile_id,),
        )
        return [r[0] for r in rows]

    def list_profiles(
        self, database_id: str, after: str = "", limit: int = 100, status: str | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT card FROM profile_cards WHERE database_id = ? AND live = 1 AND profile_id > ?"
        params: list[Any] = [database_id, after]
        if status:
            sql += " AND global_status = ?"
            params.append(status)
        rows = self.conn.execute(sql + " ORDER BY profile_id LIMIT ?", [*params, limit])
        return [loads(r[0]) for r in rows]

    def subscribers(
        self,
        resource_id: str,
        channel: str | None = None,
        status: str | None = None,
        after: SubscriberCursor | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The subscriptions of a resource (optionally one channel, one status), by profile id.

        Paged by the whole subscription key, since one profile may hold several
        subscriptions on a resource and a page may end between them.
        """
        sql = (
            "SELECT profile_id, database_id, channel, contact, provider, status, priority, registered_at "
            "FROM subscriptions WHERE resource_id = ?"
        )
        params: list[Any] = [resource_id]
        if after is not None:
            sql += " AND (profile_id, channel, contact, provider) > (?, ?, ?, ?)"
            params += list(after)
        if channel:
            sql += " AND channel = ?"
            params.append(channel)
        if status:
            sql += " AND status = ?"
            params.append(status)
        rows = self.conn.execute(
            sql + " ORDER BY profile_id, channel, contact, provider LIMIT ?", [*params, limit]
        )
        columns = (
            "profile_id",
            "database_id",
            "channel",
            "contact",
            "provider",
            "status",
            "priority",
            "registered_at",
        )
        return [dict(zip(columns, r, strict=True)) for r in rows]

    def audience(self, database_id: str, resource_id: str, channel: str) -> list[str]:
        """Live profiles of a database with a subscription (any status) on a resource's channel, by id."""
        rows = self.conn.execute(
            "SELECT DISTINCT s.profile_id FROM subscriptions s "
            "JOIN profile_cards c ON c.profile_id = s.profile_id "
            "WHERE s.resource_id = ? AND s.channel = ? AND c.database_id = ? AND c.live = 1 "
            "ORDER BY s.profile_id",
            (resource_id, channel, database_id),
        )
        return [r[0] for r in rows]

    def status_counts(self, database_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT global_status, count(*) FROM profile_cards WHERE database_id = ? AND live = 1 "
            "GROUP BY global_status",
            (database_id,),
        )
        return dict(rows)
