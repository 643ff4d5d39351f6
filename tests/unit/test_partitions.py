"""One partition folded into its own store: a redelivery applies nothing twice, a failed consumer is
fetched again from the first message it lacks, offsets gone from the topic are read from the log; the
partition stores read as one database; the coordinator's barrier.

The broker side runs in `tests/integration/test_scale_out.py`; here the messages are the relay's own
encoding of events in a real SQLite log.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from herald.api import cli
from herald.infra.clock import ManualClock
from herald.infra.data_dir_lock import FileLock
from herald.infra.event_store import EventFilter, NewEvent, RecordedEvent
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.coordinator import Coordinator
from herald.processors.partition_runner import Message, PartitionRunner
from herald.processors.partition_store import folded_through, open_partition_store, partition_path
from herald.processors.runtime import InProcessRuntime
from herald.processors.topic_format import decode, encode, partition_key, partition_of
from herald.projections.partitioned import FIRST, open_merged, summed
from tests.unit.test_runtime import AT, Counter

PARTITIONS = 2
STREAMS = ("database-1", "profile-a", "profile-d", "profile-h", "profile-a", "campaign-1", "profile-d")


class Flaky(Counter):
    """A counter that fails on the first event of type `fail_on` it is given, once."""

    name = "flaky"

    def __init__(self, conn: sqlite3.Connection, fail_on: str) -> None:
        super().__init__(conn)
        self.fail_on = fail_on
        self.pending_fail = True

    def apply(self, event: RecordedEvent) -> None:
        if self.pending_fail and event.type == self.fail_on:
            self.pending_fail = False
            raise RuntimeError("a poisoned event")
        super().apply(event)

    def discard(self) -> None:
        self.pending.clear()


def event_log(path: Path) -> SqliteEventStore:
    """A log of one event on each of `STREAMS`, `Happened0`, `Happened1`, ..."""
    store = SqliteEventStore(path, ManualClock(AT))
    for n, stream in enumerate(STREAMS):
        store.append(stream, [NewEvent(uuid.uuid4(), f"Happened{n}", {"n": n}, AT)])
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    store = event_log(tmp_path / "events.sqlite")
    yield store
    store.close()


def _messages(store: SqliteEventStore, partition: int) -> list[Message]:
    """The partition's messages, as the relay publishes them: its keys' events and every global one."""
    mine = [
        e
        for e in store.read_all(1)
        if (key := partition_key(e)) is None or partition_of(key, PARTITIONS) == partition
    ]
    return [(offset, encode(event)) for offset, event in enumerate(mine)]


def _runner(
    tmp_path: Path,
    store: SqliteEventStore,
    partition: int,
    *counters: Counter,
    clock: ManualClock | None = None,
) -> tuple[PartitionRunner, sqlite3.Connection]:
    """A runner over the counters' connection (a new partition store when none is given)."""
    conn = counters[0].conn if counters else open_partition_store(tmp_path / "partitions", partition)
    counters = counters or (Counter(conn),)
    checkpoints, parked = SqliteCheckpoints(conn), SqliteParkedEvents(conn)  # as the worker keeps them
    runtime = InProcessRuntime(
        store, checkpoints, list(counters), clock=clock or ManualClock(AT), parked=parked
    )
    return PartitionRunner(partition, PARTITIONS, conn, [runtime], store, "events"), conn


def _counted(conn: sqlite3.Connection, name: str = "counts") -> set[str]:
    return {str(kind) for (kind,) in conn.execute(f"SELECT type FROM {name}")}


def test_a_partition_folds_its_messages_once_and_resumes_at_its_stored_offset(
    tmp_path: Path, store: SqliteEventStore
) -> None:
    partition = partition_of("a", PARTITIONS)
    messages = _messages(store, partition)
    runner, conn = _runner(tmp_path, store, partition)
    assert runner.feed(messages[:2]) is None
    assert runner.feed(messages) is None  # the first two again (a redelivery): applied once
    expected = {decode(value).type for _, value in messages}
    assert "Happened1" in expected and "Happened2" not in expected  # profile-d lives in the other one
    assert _counted(conn) == expected
    assert conn.execute("SELECT sum(n) FROM counts").fetchone()[0] == len(messages)
    runner.close()

    again, _ = _runner(tmp_path, store, partition)  # the partition taken over: same store
    assert again.next_offset == len(messages)
    assert again.folded_through == decode(messages[-1][1]).position


def test_a_consumer_that_fails_is_fetched_again_from_the_first_message_it_lacks(
    tmp_path: Path, store: SqliteEventStore
) -> None:
    partition = partition_of("a", PARTITIONS)
    messages = _messages(store, partition)
    conn = open_partition_store(tmp_path / "partitions", partition)
    flaky = Flaky(conn, fail_on="Happened1")  # profile-a's first event, offset 1 of the partition
    clock = ManualClock(AT)
    runner, _ = _runner(tmp_path, store, partition, flaky, clock=clock)
    assert runner.feed(messages) == 1  # the events before the failing one are committed
    assert runner.next_offset == 1 and _counted(conn) == {"Happened0"}
    assert runner.feed(messages[1:]) == 1  # it waits out its backoff: fetched again later
    clock.advance(timedelta(seconds=2))
    assert runner.feed(messages[1:]) is None
    assert conn.execute("SELECT sum(n) FROM counts").fetchone()[0] == len(messages)


def test_offsets_gone_from_the_topic_are_read_from_the_log(tmp_path: Path, store: SqliteEventStore) -> None:
    partition = partition_of("a", PARTITIONS)
    messages = _messages(store, partition)
    runner, conn = _runner(tmp_path, store, partition)
    assert runner.feed(messages[-1:]) is None  # offsets 0.. lost to retention: only the last arrives
    assert conn.execute("SELECT sum(n) FROM counts").fetchone()[0] == len(messages)
    assert runner.next_offset == len(messages)


class Picky(Counter):
    """A counter that declares the one type it folds."""

    name = "picky"
    consumes = EventFilter(frozenset({"Happened1"}))


def test_messages_no_consumer_folds_are_passed_over_to_the_last(
    tmp_path: Path, store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition = partition_of("a", PARTITIONS)
    messages = _messages(store, partition)
    assert decode(messages[-1][1]).type != "Happened1"  # the batch ends with messages nobody folds
    built: list[str] = []
    monkeypatch.setattr(RecordedEvent, "__init__", _recording(RecordedEvent.__init__, built))
    runner, conn = _runner(tmp_path, store, partition, Picky(open_partition_store(tmp_path / "p", partition)))
    assert runner.feed(messages) is None  # not fetched again: the checkpoint went over the rest
    assert built == ["Happened1"]  # the others' envelopes read, no event built
    assert _counted(conn) == {"Happened1"}
    assert runner.next_offset == len(messages)
    last = int(orjson.loads(messages[-1][1].split(b"\n")[0])["position"])
    assert runner.folded_through == last
    assert conn.execute("SELECT position FROM checkpoints WHERE name = 'picky'").fetchone() == (last,)


def _recording(init: Callable[..., None], built: list[str]) -> Callable[..., None]:
    def recorded(event: RecordedEvent, *args: object, **fields: object) -> None:
        init(event, *args, **fields)
        built.append(event.type)

    return recorded


class Cards:
    """Three tables over partition stores: one per key, one of global state, one counter."""

    tables: ClassVar = {"cards": "id", "catalog": "id", "counts": "key"}
    merge: ClassVar = {"catalog": FIRST, "counts": summed("key", "value")}


def test_partition_stores_read_as_one_database(tmp_path: Path) -> None:
    paths = []
    for k in range(3):
        conn = open_partition_store(tmp_path, k)
        conn.execute("CREATE TABLE cards (id TEXT, name TEXT)")
        conn.execute("CREATE TABLE catalog (id TEXT, name TEXT)")
        conn.execute("CREATE TABLE counts (key TEXT, value INTEGER)")
        conn.execute("INSERT INTO cards VALUES (?, ?)", (f"p{k}", f"profile {k}"))
        conn.execute("INSERT INTO catalog VALUES ('db', 'Customers')")  # every partition folds it alike
        conn.execute("INSERT INTO counts VALUES ('queued', ?)", (k + 1,))
        conn.execute("INSERT INTO checkpoints VALUES ('cards', ?)", (10 - k,))
        conn.close()
        paths.append(partition_path(tmp_path, k))
    assert "cards" not in Cards.merge  # UNION, the default
    merged = open_merged(paths, [Cards])
    assert merged.execute("SELECT id FROM cards ORDER BY id").fetchall() == [("p0",), ("p1",), ("p2",)]
    assert merged.execute("SELECT * FROM catalog").fetchall() == [("db", "Customers")]
    assert merged.execute("SELECT value FROM counts WHERE key = 'queued'").fetchall() == [(6,)]
    # a read model is as far as its slowest partition
    assert merged.execute("SELECT position FROM checkpoints WHERE name = 'cards'").fetchall() == [(8,)]
    assert folded_through(merged, 3) == 0  # no partition has stored its offsets yet
    with pytest.raises(sqlite3.OperationalError):
        merged.execute("INSERT INTO p0.cards VALUES ('x', 'y')")  # attached read-only


def test_the_coordinator_applies_an_event_it_consumes_only_once_every_partition_has_folded_it(
    tmp_path: Path, store: SqliteEventStore
) -> None:
    conn = open_readmodel_db(tmp_path / "coordinator.sqlite")
    counter = Counter(conn)
    runtime = InProcessRuntime(store, SqliteCheckpoints(conn), [counter])
    folded = [0]
    coordinator = Coordinator(
        store,
        runtime,
        frozenset({"Happened5"}),  # campaign-1's event, position 6
        lambda: folded[0],
        lambda: None,
        FileLock(tmp_path / "coordinator.lock"),
    )
    coordinator.run_once()
    assert counter.checkpoint() == 5  # stops before the consumed event no partition has folded
    folded[0] = 6
    coordinator.run_once()
    assert counter.checkpoint() == len(STREAMS)
    assert _counted(conn) == {f"Happened{n}" for n in range(len(STREAMS))}


class Broken(Counter):
    """A counter that fails on every event of type `fail_on`."""

    name = "broken"

    def __init__(self, conn: sqlite3.Connection, fail_on: str) -> None:
        super().__init__(conn)
        self.fail_on = fail_on

    def apply(self, event: RecordedEvent) -> None:
        if event.type == self.fail_on:
            raise RuntimeError("a poisoned event")
        super().apply(event)

    def commit(self, position: int) -> None:
        if not self.conn.in_transaction:
            super().commit(position)
        else:  # parking or re-driving: it joins that transaction (parking: nothing is pending)
            self.write_pending(position)

    def discard(self) -> None:
        self.pending.clear()


def test_a_partition_parks_an_event_in_its_store_and_herald_parked_lists_it(
    tmp_path: Path,
    store: SqliteEventStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    partition = partition_of("a", PARTITIONS)
    messages = _messages(store, partition)
    data = tmp_path / "data"
    conn = open_partition_store(data / "partitions", partition)
    clock = ManualClock(AT)
    runner, _ = _runner(data, store, partition, Broken(conn, fail_on="Happened1"), clock=clock)
    while (again := runner.feed(messages)) is not None:
        messages = [m for m in messages if m[0] >= again]
        clock.advance(timedelta(minutes=10))  # past any backoff
    assert _counted(conn) == {f"Happened{n}" for n in (0, 3, 4, 5)}  # all but the parked one

    monkeypatch.setenv("HERALD_ENGINE", "scale")
    monkeypatch.setenv("HERALD_REPORTS_ENGINE", "off")
    monkeypatch.setenv("HERALD_KAFKA_PARTITIONS", str(PARTITIONS))
    capsys.readouterr()
    assert cli.main(["--data-dir", str(data), "parked"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    listed = orjson.loads(line)
    assert (listed["consumer"], listed["position"], listed["store"]) == ("broken", 2, f"p{partition}")
    assert cli.main(["--data-dir", str(data), "redrive", "broken", "2", "7"]) == 1  # 7 is not parked
    assert capsys.readouterr().out.splitlines() == [
        f"p{partition} broken 2: asked of its worker",
        "broken 7: not parked",
    ]
    assert _counted(conn) == {f"Happened{n}" for n in (0, 3, 4, 5)}  # asked, not yet taken

    assert runner.redrive_requested() == 1  # what the owning worker does on its next round: it fails again
    assert runner.redrive_requested() == 0  # the request is taken either way
    [again] = SqliteParkedEvents(conn).waiting()
    assert again.attempts > listed["attempts"]
    runner.runtimes[0].consumers()[0].fail_on = "nothing"  # the fix is deployed
    assert cli.main(["--data-dir", str(data), "redrive"]) == 0
    assert runner.redrive_requested() == 1

    assert _counted(conn) == {f"Happened{n}" for n in (0, 1, 3, 4, 5)}
    capsys.readouterr()
    assert cli.main(["--data-dir", str(data), "parked"]) == 0
    assert capsys.readouterr().out == ""
    conn.close()
