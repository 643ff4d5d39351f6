"""Keyed names for unique values: no stream name a guess can check, and a log written before keyed
names migrated in place on first start, its claims still holding."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import orjson
import pytest

from herald.api.wiring import build
from herald.domain.errors import AlreadyExists
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.infra.log_names import KEY_FILE, open_log_names
from herald.infra.serialization import dumps
from herald.infra.sqlite_event_store import SqliteEventStore, stream_key
from tests.builders import CTX, DB, customers
from tests.conftest import ADMIN_TOKEN

ANN = "ann.keyed@example.org"
UNKEYED = hashlib.sha256(ANN.encode()).hexdigest()


def stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("events.sqlite*") if p.is_file())


def unkey_claims(log: Path, value: str, owner: str) -> int:
    """Turn the log back into what Herald wrote before keyed names: `owner`'s claims on `value` named
    by its SHA-256 (stream and events)."""
    digest = hashlib.sha256(value.encode()).hexdigest()
    conn = sqlite3.connect(log, isolation_level=None)
    rows = conn.execute(
        "SELECT position, data FROM events WHERE type IN ('UniqueValueClaimed', 'UniqueValueReleased')"
    ).fetchall()
    rows = [(position, orjson.loads(data)) for position, data in rows]
    rows = [(position, event) for position, event in rows if event["profile_id"] == owner]
    for position, data in rows:
        event = {**data, "value": digest}
        stream = f"unique-{event['database_id']}-{event['kind']}-{digest}"
        conn.execute(
            "UPDATE events SET stream = ?, stream_key = ?, data = ? WHERE position = ?",
            (stream, stream_key(stream), dumps(event), position),
        )
    conn.close()
    return len(rows)


def test_a_claim_is_named_by_a_keyed_digest_no_guess_can_check(tmp_path: Path, clock: ManualClock) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN)
    herald = build(settings, clock=clock, ids=IdSource(1))
    try:
        customers(herald)
        herald.profiles.create(DB, {"email": ANN}, CTX)
        [claim] = [e for e in herald.store.read_all() if e.type == "UniqueValueClaimed"]
        assert UNKEYED not in claim.stream and claim.data["value"] != UNKEYED
        assert claim.stream.endswith(herald.store.sealer.names.claim_digest(ANN))
    finally:
        herald.close()
    assert UNKEYED.encode() not in stored_bytes(settings.data_dir)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    SqliteEventStore(other_dir / "events.sqlite", clock).close()
    other = open_log_names(other_dir, other_dir / "events.sqlite")  # another directory: another key
    assert other.claim_digest(ANN) != open_log_names(
        settings.data_dir, settings.event_store_path
    ).claim_digest(ANN)


def test_a_log_from_before_keyed_names_is_renamed_in_place_and_its_claims_still_hold(
    tmp_path: Path, clock: ManualClock
) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN)
    herald = build(settings, clock=clock, ids=IdSource(2))
    try:
        customers(herald)
        ann = herald.profiles.create(DB, {"email": ANN}, CTX).profile_id
        bob = herald.profiles.create(DB, {"email": "bob@example.org"}, CTX).profile_id
        before = [(e.position, e.event_id, e.version) for e in herald.store.read_all()]
    finally:
        herald.close()
    assert unkey_claims(settings.event_store_path, ANN, str(ann)) == 1
    (settings.data_dir / KEY_FILE).unlink()
    assert UNKEYED.encode() in stored_bytes(settings.data_dir)

    again = build(settings, clock=clock, ids=IdSource(3))
    try:
        after = list(again.store.read_all())
        assert [(e.position, e.event_id, e.version) for e in after] == before
        assert UNKEYED.encode() not in stored_bytes(settings.data_dir)
        with pytest.raises(AlreadyExists):  # ann's old claim still holds her email
            again.profiles.update_fields(str(bob), {"email": ANN}, CTX)
        assert again.profiles.state(str(ann)).fields["email"] == ANN
    finally:
        again.close()
