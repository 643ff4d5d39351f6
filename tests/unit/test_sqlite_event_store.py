"""What the SQLite adapter adds to the contract: its schema migration and its index of stored ids."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import orjson

from herald.infra import event_id_index
from herald.infra.clock import ManualClock
from herald.infra.event_id_index import EventIdIndex, uuid_hash
from herald.infra.event_id_runs import SpilledRuns
from herald.infra.event_store import NewEvent
from herald.infra.sqlite_event_store import SqliteEventStore

OCCURRED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
MICROS = 1_772_357_400_000_000  # OCCURRED in µs since the epoch

# The log's schema before version 2, as the releases before it created it (user_version 0).
VERSION_1 = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    metadata BLOB NOT NULL,
    UNIQUE (stream, version)
);
"""


def _version_1_log(path: Path, count: int) -> list[bytes]:
    """A log written with the version-1 schema: `count` events in stream `profile-1`; their ids."""
    ids = [uuid4().bytes for _ in range(count)]
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_1)
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, 'profile-1', ?, 'Old', 1, ?, ?, ?, '{}')",
            [(n + 1, ids[n], n + 1, MICROS, MICROS, orjson.dumps({"n": n})) for n in range(count)],
        )
    return ids


def test_a_version_1_log_is_migrated_on_open_and_keeps_every_event_and_id(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    ids = _version_1_log(path, 3)

    store = SqliteEventStore(path, ManualClock())
    try:
        assert [(e.event_id.bytes, e.version, e.data) for e in store.read_stream("profile-1")] == [
            (ids[n], n + 1, {"n": n}) for n in range(3)
        ]
        resent = NewEvent(store.read_stream("profile-1")[1].event_id, "Old", {"n": 1}, OCCURRED)
        assert store.append("profile-1", [resent], expected_version=0).positions == (2,)
        assert store.append("profile-1", [NewEvent(uuid4(), "New", {}, OCCURRED)], 3).positions == (4,)
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        indexes = conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'events'").fetchall()
        assert "UNIQUE" not in indexes[0][0].split("event_id", 1)[1].split(",", 1)[0]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_migrated_log_opens_again_without_migrating(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    _version_1_log(path, 2)
    SqliteEventStore(path, ManualClock()).close()
    with sqlite3.connect(path) as conn:
        # A migration copies the table to new pages; none must happen on a version-2 file.
        before = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()

    SqliteEventStore(path, ManualClock()).close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone() == before


def test_the_index_answers_every_hash_added_before_and_after_a_merge() -> None:
    index = EventIdIndex()
    count = 70_000  # past the dict's merge threshold, so both halves are searched
    hashes = [(n * 0x9E3779B97F4A7C15) % 2**64 for n in range(count)]
    index.add(hashes, list(range(1, count + 1)), count)
    index.add([hashes[7], 12345], [count + 1, count + 2], count + 2)

    found = index.candidates([hashes[0], hashes[7], hashes[-1], 12345, 999])

    assert found == {hashes[0]: [1], hashes[7]: [count + 1, 8], hashes[-1]: [count], 12345: [count + 2]}
    assert index.covered == count + 2
    assert len(index) == count + 2


def test_hashes_that_collide_keep_every_position_before_and_after_a_merge() -> None:
    index = EventIdIndex()
    index.add([5, 6, 5], [1, 2, 3], 3)  # two ids of one batch share a hash
    index.add([6, 7], [4, 5], 5)  # and one of a later batch an earlier one's
    assert index.candidates([5, 6, 7, 8]) == {5: [1, 3], 6: [2, 4], 7: [5]}
    assert len(index) == 5

    count = 70_000  # past the merge threshold: everything moves to the sorted arrays
    index.add([2**40 + n for n in range(count)], list(range(6, count + 6)), count + 5)

    assert index.candidates([5, 6, 7, 2**40]) == {5: [1, 3], 6: [2, 4], 7: [5], 2**40: [6]}
    assert len(index) == count + 5


def test_the_hash_folds_both_halves_of_the_id() -> None:
    a, b = uuid4().bytes, uuid4().bytes
    assert uuid_hash([a, b]) == [
        int.from_bytes(a[:8], "little") ^ int.from_bytes(a[8:], "little"),
        int.from_bytes(b[:8], "little") ^ int.from_bytes(b[8:], "little"),
    ]
    assert uuid_hash([]) == []


def test_spilled_hashes_are_found_on_disk_and_absent_ones_are_not() -> None:
    count = 70_000  # one merge, then the sorted arrays move to disk
    index = EventIdIndex(spill_at=count)
    hashes = [(n * 0x9E3779B97F4A7C15) % 2**64 for n in range(count)]
    index.add(hashes, list(range(1, count + 1)), count)
    index.add([hashes[7]], [count + 1], count + 1)  # a later event whose hash collides, in memory

    found = index.candidates([hashes[0], hashes[7], hashes[-1], 12345])

    assert found == {hashes[0]: [1], hashes[7]: [count + 1, 8], hashes[-1]: [count]}
    assert len(index) == count + 1
    assert index.candidates([hashes[n] for n in range(0, count, 97)]) == {
        hashes[n]: [n + 1] for n in range(0, count, 97)
    }
    index.close()


def test_a_run_finds_a_hash_at_a_fence_and_one_that_straddles_two_blocks() -> None:
    runs = SpilledRuns(initial_capacity=1000)  # small: the second run rebuilds the filter larger
    descriptors = len(os.listdir("/proc/self/fd"))
    keys = np.arange(0, 3 * 512 * 2, 2, dtype=np.uint64)  # 1,536 even hashes: three 512-hash blocks
    keys[512:514] = 1022  # one hash for three events: the last of block 0, the first two of block 1
    runs.spill(keys, np.arange(1, len(keys) + 1, dtype=np.int64))
    more = np.array([2**63 + n for n in range(600)], dtype=np.uint64)
    runs.spill(more, np.arange(10_001, 10_601, dtype=np.int64))

    found: dict[int, list[int]] = {}
    wanted = [1022, 2048, 0, int(keys[-1]), 2**63 + 599, 1, 1024, 2**63 + 600]
    runs.candidates(wanted, np.asarray(wanted, dtype=np.uint64), found)

    assert int(keys[512]) == 1022 and int(keys[1024]) == 2048  # the fences of blocks 1 and 2
    assert found == {
        1022: [512, 513, 514],
        2048: [1025],
        0: [1],
        int(keys[-1]): [len(keys)],
        2**63 + 599: [10_600],
    }
    assert len(runs) == len(keys) + 600
    assert len(os.listdir("/proc/self/fd")) == descriptors + 1  # one file holds every run
    runs.close()


def test_a_resent_event_long_spilled_to_disk_is_still_dropped(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(event_id_index, "_SPILL_AT", 65_536)  # the first merge spills
    store = SqliteEventStore(tmp_path / "events.sqlite", ManualClock(OCCURRED))
    events = [NewEvent(uuid4(), "Tracked", {"n": n}, OCCURRED) for n in range(70_000)]
    for start in range(0, len(events), 10_000):
        store.append("activity-1", events[start : start + 10_000])
    assert len(store._ids._spilled) >= 65_536  # the first events' hashes are on disk now

    resent = store.append("activity-1", [events[3], NewEvent(uuid4(), "Tracked", {"n": -1}, OCCURRED)])

    assert resent.positions[0] == 4 and store.head_position() == 70_001
    store.close()
