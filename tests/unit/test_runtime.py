"""The in-process runtime: checkpoints, catch-up then live, exactly-once effects by deterministic ids."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herald.infra.clock import ManualClock
from herald.infra.event_store import EventFilter, NewEvent, RecordedEvent
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.runtime import Emission, InProcessRuntime

AT = datetime(2026, 3, 1, tzinfo=UTC)


class Counter:
    """A projection that counts events per type, committing with its checkpoint."""

    name = "counter"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pending: list[str] = []
        self.checkpoints = SqliteCheckpoints(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS counts (type TEXT PRIMARY KEY, n INTEGER)")

    def checkpoint(self) -> int:
        return self.checkpoints.load(self.name)

    def apply(self, event: RecordedEvent) -> None:
        self.pending.append(event.type)

    def commit(self, position: int) -> None:
        self.conn.execute("BEGIN")
        self.write_pending(position)
        self.conn.execute("COMMIT")

    def write_pending(self, position: int) -> None:
        """The counts and the checkpoint, in the transaction open on the connection."""
        for kind in self.pending:
            self.conn.execute(
                "INSERT INTO counts VALUES (?, 1) ON CONFLICT(type) DO UPDATE SET n = n + 1", (kind,)
            )
        self.checkpoints.save(self.name, position)
        self.pending.clear()

    def counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT type, n FROM counts"))


class Greeter:
    """A reactor: every `Signed` causes one `Greeted` in the `greetings` stream."""

    name = "greeter"

    def handle(self, event: RecordedEvent) -> Sequence[Emission]:
        if event.type != "Signed":
            return []
        return [Emission("greetings", "Greeted", {"who": event.data["who"]}, event.occurred_at)]


def signed(who: str) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Signed", {"who": who}, AT)


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    store = SqliteEventStore(tmp_path / "events.sqlite", ManualClock(AT))
    yield store
    store.close()


def runtime_for(store: SqliteEventStore, conn: sqlite3.Connection) -> tuple[InProcessRuntime, Counter]:
    counter = Counter(conn)
    return InProcessRuntime(store, SqliteCheckpoints(conn), [counter], [Greeter()], batch_size=2), counter


def test_drain_brings_every_consumer_to_the_head_including_reactor_output(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    store.append("guestbook", [signed("ann"), signed("bob"), signed("cy")])
    runtime, counter = runtime_for(store, open_readmodel_db(tmp_path / "rm.sqlite"))
    runtime.drain()
    assert counter.counts() == {"Signed": 3, "Greeted": 3}
    assert runtime.positions() == {"counter": 6, "greeter": 6}
    assert [e.data["who"] for e in store.read_stream("greetings")] == ["ann", "bob", "cy"]


def test_a_restarted_runtime_resumes_from_its_checkpoints(store: SqliteEventStore, tmp_path: Path) -> None:
    store.append("guestbook", [signed("ann")])
    runtime, _ = runtime_for(store, open_readmodel_db(tmp_path / "rm.sqlite"))
    runtime.drain()
    store.append("guestbook", [signed("bob")])
    restarted, counter = runtime_for(store, open_readmodel_db(tmp_path / "rm.sqlite"))
    restarted.drain()
    assert counter.counts() == {"Signed": 2, "Greeted": 2}


def test_redelivery_to_a_reactor_appends_nothing_twice(store: SqliteEventStore, tmp_path: Path) -> None:
    store.append("guestbook", [signed("ann"), signed("bob")])
    conn = open_readmodel_db(tmp_path / "rm.sqlite")
    runtime, _ = runtime_for(store, conn)
    runtime.drain()
    # Lose the reactor's checkpoint, as a crash between its append and its checkpoint would.
    SqliteCheckpoints(conn).save("greeter", 0)
    again, _ = runtime_for(store, conn)
    again.drain()
    assert [e.data["who"] for e in store.read_stream("greetings")] == ["ann", "bob"]
    first = store.read_stream("greetings")[0]
    assert first.metadata["causation_id"] == str(store.read_stream("guestbook")[0].event_id)


def test_drain_until_stops_at_the_given_position(store: SqliteEventStore, tmp_path: Path) -> None:
    store.append("guestbook", [signed("ann"), signed("bob"), signed("cy")])
    conn = open_readmodel_db(tmp_path / "rm.sqlite")
    counter = Counter(conn)
    runtime = InProcessRuntime(store, SqliteCheckpoints(conn), [counter], batch_size=100)
    runtime.drain(until=2)
    assert counter.checkpoint() == 2 and counter.counts() == {"Signed": 2}


async def test_run_catches_up_then_follows_live_appends(store: SqliteEventStore, tmp_path: Path) -> None:
    store.append("guestbook", [signed("ann")])
    runtime, counter = runtime_for(store, open_readmodel_db(tmp_path / "rm.sqlite"))
    task = asyncio.create_task(runtime.run())
    await asyncio.wait_for(runtime.reached(2), timeout=10)
    store.append("guestbook", [signed("bob")])
    await asyncio.wait_for(runtime.reached(4), timeout=10)
    runtime.stop()
    await asyncio.wait_for(task, timeout=10)
    assert counter.counts() == {"Signed": 2, "Greeted": 2}


class Picky(Counter):
    """A projection that folds only `Signed` events and the `vip-` streams."""

    name = "picky"
    consumes = EventFilter(frozenset({"Signed"}), ("vip-",))


class Watching:
    """A store that records each range the runtime asks for."""

    def __init__(self, store: SqliteEventStore) -> None:
        self.store = store
        self.asked: list[tuple[int, int, EventFilter | None]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def read_range(self, first: int, last: int, only: EventFilter | None = None) -> list[RecordedEvent]:
        self.asked.append((first, last, only))
        return self.store.read_range(first, last, only)


def test_a_consumer_that_declares_what_it_folds_is_handed_only_that_and_still_advances(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    conn = open_readmodel_db(tmp_path / "rm.sqlite")
    store.append("people", [signed("ann"), NewEvent(uuid.uuid4(), "Left", {}, AT), signed("bob")])
    store.append("vip-1", [NewEvent(uuid.uuid4(), "Left", {}, AT)])
    store.append("people", [NewEvent(uuid.uuid4(), "Left", {}, AT)])
    watching = Watching(store)
    picky = Picky(conn)
    runtime = InProcessRuntime(watching, SqliteCheckpoints(conn), [picky], batch_size=2)  # type: ignore[arg-type]

    runtime.drain()

    assert picky.counts() == {"Signed": 2, "Left": 1}
    assert picky.checkpoint() == 5
    assert [(first, last) for first, last, _ in watching.asked] == [(1, 2), (3, 4), (5, 5)]
    assert all(only == Picky.consumes for _, _, only in watching.asked)


def test_the_store_reads_everything_when_one_behind_consumer_declares_nothing(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    conn = open_readmodel_db(tmp_path / "rm.sqlite")
    store.append("people", [signed("ann"), NewEvent(uuid.uuid4(), "Left", {}, AT)])
    watching = Watching(store)
    picky, counter = Picky(conn), Counter(open_readmodel_db(tmp_path / "other.sqlite"))
    runtime = InProcessRuntime(watching, SqliteCheckpoints(conn), [picky, counter])  # type: ignore[arg-type]

    runtime.drain()

    assert watching.asked == [(1, 2, None)]
    assert picky.counts() == {"Signed": 1}
    assert counter.counts() == {"Signed": 1, "Left": 1}
    assert counter.checkpoint() == picky.checkpoint() == 2
