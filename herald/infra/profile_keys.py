"""Per-profile encryption keys, kept outside the log (`<data dir>/profile-keys.sqlite`).

A profile's personal data is sealed in its events with its own AES-256 key; erasing the profile
destroys the key, and every copy of those events anywhere (the log, its backups, a Kafka topic)
becomes unreadable at once. The file uses SQLite's `secure_delete` (a deleted key's bytes are
overwritten with zeros) and a destroyed key leaves a tombstone, so a profile that was erased is
never given a new key for its old events; its WAL is checkpointed and truncated after a
destruction, so no copy of the key stays in it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

FILE_NAME = "profile-keys.sqlite"
_CACHE = 100_000


class ProfileKeys:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA secure_delete=ON")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS profile_keys (profile_id TEXT PRIMARY KEY, key BLOB)"  # NULL: erased
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, bytes | None] = OrderedDict()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ProfileKeys:
        return cls(data_dir / FILE_NAME)

    def key(self, profile_id: str, create: bool) -> bytes | None:
        """The profile's key (made on first use when `create`); None once the profile was erased."""
        with self._lock:
            if profile_id in self._cache:
                self._cache.move_to_end(profile_id)
                return self._cache[profile_id]
            row = self._conn.execute(
                "SELECT key FROM profile_keys WHERE profile_id = ?", (profile_id,)
            ).fetchone()
            if row is None and not create:
                return None
            if row is None:
                key = os.urandom(32)
                # another process may have made one first: its key wins
                self._conn.execute("INSERT OR IGNORE INTO profile_keys VALUES (?, ?)", (profile_id, key))
                row = self._conn.execute(
                    "SELECT key FROM profile_keys WHERE profile_id = ?", (profile_id,)
                ).fetchone()
            self._remember(profile_id, row[0])
            return row[0]  # type: ignore[no-any-return]

    def ensure(self, profile_ids: set[str]) -> None:
        """Make the keys of profiles that have none yet, in one transaction (one sync to disk, not one
        per profile: an import of 5,000 new profiles makes 5,000 keys at once)."""
        with self._lock:
            missing = sorted(p for p in profile_ids if p not in self._cache)
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT profile_id, key FROM profile_keys WHERE profile_id IN ({marks})", chunk
                )
                for profile_id, key in rows:
                    self._remember(profile_id, key)
            new = [(p, os.urandom(32)) for p in missing if p not in self._cache]
            if not new:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR IGNORE INTO profile_keys VALUES (?, ?)", new)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        for profile_id, _ in new:  # another process may have made one first: read what is stored
            self.key(profile_id, create=False)

    def destroy(self, profile_id: str) -> None:
        """Erase the key for good (a tombstone stays), and leave no copy of it in the WAL."""
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO profile_keys VALUES (?, NULL)", (profile_id,))
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._remember(profile_id, None)

    def _remember(self, profile_id: str, key: bytes | None) -> None:
        self._cache[profile_id] = key
        if len(self._cache) > _CACHE:
            self._cache.popitem(last=False)

    def close(self) -> None:
        self._conn.close()
