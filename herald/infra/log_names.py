"""Keyed digests for the names the log keeps of personal values, their key outside the log.

A profile's unique value is claimed on a stream named by a digest of it
(`unique-<db>-<kind>-<digest>`), and an erased contact reads as a stand-in named by a digest
(`erased-<digest>`). An unkeyed SHA-256 of an email protects nothing: anyone holding a guess
recomputes it and finds the stream, so after an erasure the name would still be personal data.
These digests are HMAC-SHA-256 under a 32-byte key kept in the data directory (`names-key`,
mode 0600, made on first start, like `secrets-key` and `profile-keys.sqlite`: back it up with
them; without it no claim is found again).

The keyed digest of a value is taken over its unkeyed SHA-256, which is what logs written before
keyed names named their claims by, so such a log is migrated from what it stores alone: when the
key is made, `_rekey_claims` renames every profile claim event named the old way, in place, in the
same write transaction that writes the key file (positions, ids, versions and types unchanged; the
old bytes zeroed by `secure_delete`, the WAL truncated and the file vacuumed). A process finding
the key finds the log migrated; one that does not waits for the write lock and looks again. A
rename rather than reading both names: reading both would double every claim lookup for good and
keep the unkeyed name of an erased profile's email in the log. Claims on values that are no one's
personal data (promo codes, shortcodes, pixel keys) keep their unkeyed names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
from pathlib import Path

import orjson

from herald.domain.claims import named_claim_stream, value_digest
from herald.domain.matching import EMAIL_PROFILE
from herald.infra.serialization import dumps
from herald.infra.sqlite_event_store import stream_key

KEY_FILE = "names-key"
_CLAIM_TYPES = ("UniqueValueClaimed", "UniqueValueReleased")


class LogNames:
    """Names for personal values, keyed (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a names key is 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "LogNames(key withheld)"

    def claim_digest(self, value: str) -> str:
        """How a profile's unique value is named in its claim's stream and events."""
        return self.rekeyed(value_digest(value))

    def rekeyed(self, unkeyed: str) -> str:
        """The keyed name of the value an old log named by its unkeyed digest."""
        return hmac.new(self._key, unkeyed.encode(), hashlib.sha256).hexdigest()

    def entry_digest(self, kind: str, key: str) -> str:
        """How a stop-list entry is named and matched (`domain/stop_lists.EntryNamer`): by a keyed
        digest of its kind and normalised value, so an erased address still matches its entry."""
        return hmac.new(self._key, f"stop-list\0{kind}\0{key}".encode(), hashlib.sha256).hexdigest()

    def erased_contact(self, token: str) -> str:
        """The stand-in an erased contact reads as: named by its sealed value, so two stay two."""
        return "erased-" + hmac.new(self._key, b"erased\0" + token.encode(), hashlib.sha256).hexdigest()[:16]


def personal_claim(kind: str) -> bool:
    """Whether a claim's kind is a profile's unique value (its email or a unique custom field)."""
    return kind == EMAIL_PROFILE or kind.startswith("field:")


def open_log_names(data_dir: Path, log_path: Path) -> LogNames:
    """The data directory's names key; made on first start, migrating the log at `log_path`."""
    path = data_dir / KEY_FILE
    if not path.exists():
        _make_key(path, log_path)
    return LogNames(base64.urlsafe_b64decode(path.read_bytes().strip()))


def _make_key(path: Path, log_path: Path) -> None:
    conn = sqlite3.connect(log_path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")  # another process making the key waits here, then finds it
        if path.exists():
            conn.execute("ROLLBACK")
            return
        key = os.urandom(32)
        try:
            changed = _rekey_claims(conn, LogNames(key))
            _write_key(path, key)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            path.unlink(missing_ok=True)
            raise
        if changed:  # no copy of the old names in the WAL or the free pages
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _rekey_claims(conn: sqlite3.Connection, names: LogNames) -> int:
    """Rename the profile claims named by an unkeyed digest; how many events changed."""
    rows = conn.execute(
        "SELECT position, stream, data FROM events WHERE type IN (?, ?)", _CLAIM_TYPES
    ).fetchall()
    changed = 0
    for position, stream, data in rows:
        event = orjson.loads(data)
        database_id, kind, unkeyed = event["database_id"], event["kind"], event["value"]
        if not personal_claim(kind) or stream != named_claim_stream(database_id, kind, unkeyed):
            continue
        digest = names.rekeyed(unkeyed)
        renamed = named_claim_stream(database_id, kind, digest)
        conn.execute(
            "UPDATE events SET stream = ?, stream_key = ?, data = ? WHERE position = ?",
            (renamed, stream_key(renamed), dumps({**event, "value": digest}), position),
        )
        changed += 1
    return changed


def _write_key(path: Path, key: bytes) -> None:
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(base64.urlsafe_b64encode(key) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    part.replace(path)
