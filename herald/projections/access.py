"""Users, roles, groups, objects' groups and users' tokens: what each request's access check reads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

import orjson

from herald.domain.access import MAIN, Rights, Role
from herald.infra.event_store import RecordedEvent
from herald.projections.partitioned import FIRST
from herald.projections.sqlite_projection import Handler, SqliteProjection


class AccessProjection(SqliteProjection):
    name = "access"
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, login TEXT NOT NULL, "
        "profile TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, last_login TEXT, last_ip TEXT)",
        "CREATE INDEX IF NOT EXISTS users_by_login ON users (login)",
        "CREATE TABLE IF NOT EXISTS roles (role_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "groups TEXT NOT NULL, rules TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS access_groups (group_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "deleted INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS object_groups (kind TEXT NOT NULL, object_id TEXT NOT NULL, "
        "group_id TEXT NOT NULL, PRIMARY KEY (kind, object_id, group_id))",
        "CREATE INDEX IF NOT EXISTS object_groups_by_group ON object_groups (group_id)",
        "CREATE TABLE IF NOT EXISTS user_tokens (token_hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, "
        "user_id TEXT NOT NULL, roles TEXT, groups TEXT, expires_at TEXT)",
    )
    tables: ClassVar = {
        "users": "user_id",
        "roles": "role_id",
        "access_groups": "group_id",
        "object_groups": "kind, object_id, group_id",
        "user_tokens": "token_hash",
    }
    merge: ClassVar = dict.fromkeys(tables, FIRST)  # global state: every partition folds all of it

    def handlers(self) -> dict[str, Handler]:
        return {
            "UserSaved": self._user,
            "UserLoggedIn": self._login,
            "UserDeleted": self._user_deleted,
            "RoleSaved": self._role,
            "RoleDeleted": self._role_deleted,
            "GroupSaved": self._group,
            "GroupDeleted": self._group_deleted,
            "ObjectGroupsSet": self._object_groups,
            "ApiTokenIssued": self._token,
        }

    def _user(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT INTO users (user_id, login, profile) VALUES (?, ?, ?) ON CONFLICT(user_id) DO UPDATE "
            "SET login = excluded.login, profile = excluded.profile",
            (d["user_id"], d["profile"]["login"].casefold(), orjson.dumps(d["profile"]).decode()),
        )

    def _login(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "UPDATE users SET last_login = ?, last_ip = ? WHERE user_id = ?",
            (d["at"], d.get("ip"), d["user_id"]),
        )

    def _user_deleted(self, event: RecordedEvent) -> None:
        self.write("UPDATE users SET deleted = 1 WHERE user_id = ?", (event.data["user_id"],))

    def _role(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO roles (role_id, name, groups, rules, deleted) VALUES (?, ?, ?, ?, 0)",
            (d["role_id"], d["name"], orjson.dumps(d["groups"]).decode(), orjson.dumps(d["rules"]).decode()),
        )

    def _role_deleted(self, event: RecordedEvent) -> None:
        self.write("UPDATE roles SET deleted = 1 WHERE role_id = ?", (event.data["role_id"],))

    def _group(self, event: RecordedEvent) -> None:
        d = event.data
        self.write(
            "INSERT OR REPLACE INTO access_groups (group_id, name, deleted) VALUES (?, ?, 0)",
            (d["group_id"], d["name"]),
        )

    def _group_deleted(self, event: RecordedEvent) -> None:
        group_id = event.data["group_id"]
        self.write("UPDATE access_groups SET deleted = 1 WHERE group_id = ?", (group_id,))
        self.write("DELETE FROM object_groups WHERE group_id = ?", (group_id,))  # its objects stay in main

    def _object_groups(self, event: RecordedEvent) -> None:
        d = event.data
        self.write("DELETE FROM object_groups WHERE kind = ? AND object_id = ?", (d["kind"], d["object_id"]))
        for group in d["groups"]:
            self.write(
                "INSERT INTO object_groups (kind, object_id, group_id) VALUES (?, ?, ?)",
                (d["kind"], d["object_id"], group),
            )

    def _token(self, event: RecordedEvent) -> None:
        d = event.data
        if d.get("user_id") is None:
            return
        self.write(
            "INSERT OR REPLACE INTO user_tokens (token_hash, token_id, user_id, roles, groups, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                d["token_hash"],
                d["token_id"],
                d["user_id"],
                None if d.get("roles") is None else orjson.dumps(d["roles"]).decode(),
                None if d.get("groups") is None else orjson.dumps(d["groups"]).decode(),
                d.get("expires_at"),
            ),
        )

    # --- queries --------------------------------------------------------------------------------

    def user_id_of(self, login: str) -> str | None:
        row = self.conn.execute(
            "SELECT user_id FROM users WHERE login = ? AND deleted = 0", (login.casefold(),)
        ).fetchone()
        return row[0] if row else None

    def token_binding(
        self, token_hash: str
    ) -> tuple[str, str, list[str] | None, list[str] | None, str | None] | None:
        """(token id, user id, roles kept, groups kept, expiry) of a user's token."""
        row = self.conn.execute(
            "SELECT token_id, user_id, roles, groups, expires_at FROM user_tokens WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return row[0], row[1], _maybe(row[2]), _maybe(row[3]), row[4]

    def rights(self, user_id: str, roles: list[str] | None, groups: list[str] | None) -> Rights | None:
        """The user's rights narrowed to a token's roles and groups; None when the user cannot log in."""
        row = self.conn.execute(
            "SELECT profile FROM users WHERE user_id = ? AND deleted = 0", (user_id,)
        ).fetchone()
        if row is None:
            return None
        profile = orjson.loads(row[0])
        if not profile["active"]:
            return None
        if profile["master"]:
            return Rights(master=True)
        role_ids = [r for r in profile["roles"] if roles is None or r in roles]
        live_groups = {MAIN, *self._live_groups()}
        user_groups = frozenset(
            g for g in profile["groups"] if (groups is None or g in groups) and g in live_groups
        )
        return Rights(groups=user_groups, roles=tuple(self._roles(role_ids, live_groups)))

    def _live_groups(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT group_id FROM access_groups WHERE deleted = 0")]

    def _roles(self, role_ids: list[str], live_groups: set[str]) -> list[Role]:
        if not role_ids:
            return []
        marks = ",".join("?" * len(role_ids))
        rows = self.conn.execute(
            f"SELECT groups, rules FROM roles WHERE deleted = 0 AND role_id IN ({marks})", role_ids
        )
        return [
            Role(
                groups=frozenset(g for g in orjson.loads(groups) if g in live_groups),
                rules={kind: frozenset(actions) for kind, actions in orjson.loads(rules).items()},
            )
            for groups, rules in rows
        ]

    def object_groups(self, kind: str, object_id: str) -> frozenset[str]:
        rows = self.conn.execute(
            "SELECT group_id FROM object_groups WHERE kind = ? AND object_id = ?", (kind, object_id)
        )
        return frozenset(r[0] for r in rows)

    def groups_of(self, kind: str, object_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """The groups of each of these objects of `kind` (none set: an empty set; every object is in main)."""
        wanted = set(object_ids)
        found: dict[str, set[str]] = {object_id: set() for object_id in wanted}
        rows = self.conn.execute("SELECT object_id, group_id FROM object_groups WHERE kind = ?", (kind,))
        for object_id, group_id in rows:
            if object_id in wanted:
                found[object_id].add(group_id)
        return {object_id: frozenset(groups) for object_id, groups in found.items()}

    def known_groups(self) -> frozenset[str]:
        return frozenset(self._live_groups())

    def known_roles(self) -> frozenset[str]:
        return frozenset(r[0] for r in self.conn.execute("SELECT role_id FROM roles WHERE deleted = 0"))

    def users(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT user_id, profile, last_login, last_ip FROM users WHERE deleted = 0 ORDER BY user_id"
        )
        return [{"user_id": r[0], **orjson.loads(r[1]), "last_login": r[2], "last_ip": r[3]} for r in rows]

    def roles(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT role_id, name, groups, rules FROM roles WHERE deleted = 0 ORDER BY role_id"
        )
        return [
            {"role_id": r[0], "name": r[1], "groups": orjson.loads(r[2]), "rules": orjson.loads(r[3])}
            for r in rows
        ]

    def groups(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT group_id, name FROM access_groups WHERE deleted = 0 ORDER BY group_id"
        )
        return [{"group_id": MAIN, "name": "Главная"}, *({"group_id": r[0], "name": r[1]} for r in rows)]


def _maybe(text: str | None) -> list[str] | None:
    return None if text is None else list(orjson.loads(text))


def expired(expires_at: str | None, now: datetime) -> bool:
    return expires_at is not None and datetime.fromisoformat(expires_at.replace("Z", "+00:00")) <= now
