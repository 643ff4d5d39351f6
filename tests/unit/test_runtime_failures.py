"""A failing consumer: backoff on the runtime's clock, parking after the last try, re-drive, transients.

The consumers are small real ones over a real SQLite log and read-model file;
a `poison` set says which events they fail on, and a test "fixes the bug" by
emptying it. Time is a manual clock: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herald.domain.errors import NotFound, RuleViolated
from herald.infra.clock import ManualClock
from herald.infra.event_store import NewEvent, RecordedEvent
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.backoff import RetryPolicy
from herald.processors.runtime import Emission, InProcessRuntime

AT = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = RetryPolicy(attempts=4, first_delay=timedelta(seconds=1), max_delay=timedelta(seconds=60))


class Tally:
    """A projection: one row per signer (a counter), committed with its checkpoint; fails on `poison`."""

    name = "tally"

    def __init__(self, conn: sqlite3.Connection, poison: set[str]) -> None:
        self.conn = conn
        self.poison = poison
        self.failing_commit: Exception | None = None  # set: every commit fails with it
        self.applied: list[str] = []  # every apply call, failed or not
        self.pending: list[str] = []
        conn.execute("CREATE TABLE IF NOT EXISTS tally (who TEXT PRIMARY KEY, n INTEGER NOT NULL)")

    def checkpoint(self) -> int:
        return SqliteCheckpoints(self.conn).load(self.name)

    def apply(self, event: RecordedEvent) -> None:
        if event.type != "Signed":
            return
        who = event.data["who"]
        self.applied.append(who)
        if who in self.poison:
            raise OverflowError(f"cannot count {who}")
        self.pending.append(who)

    def commit(self, position: int) -> None:
        joined = self.conn.in_transaction
        if not joined:
            self.conn.execute("BEGIN IMMEDIATE")
        if self.failing_commit is not None or any(p in self.poison for p in self.pending):
            self.discard()
            if not joined:
                self.conn.execute("ROLLBACK")
            raise self.failing_commit or ValueError("a row the table refuses")
        for who in self.pending:
            self.conn.execute(
                "INSERT INTO tally VALUES (?, 1) ON CONFLICT(who) DO UPDATE SET n = n + 1", (who,)
            )
        SqliteCheckpoints(self.conn).save(self.name, position)
        if not joined:
            self.conn.execute("COMMIT")
        self.pending.clear()

    def discard(self) -> None:
        self.pending.clear()

    def counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT who, n FROM tally"))


class Greeter:
    """A reactor: every `Signed` causes one `Greeted`; it fails on `poison`."""

    name = "greeter"

    def __init__(self, poison: set[str]) -> None:
        self.poison = poison

    def handle(self, event: RecordedEvent) -> Sequence[Emission]:
        if event.type != "Signed":
            return []
        if event.data["who"] in self.poison:
            raise KeyError(event.data["who"])
        return [Emission("greetings", "Greeted", {"who": event.data["who"]}, event.occurred_at)]


def signed(*names: str) -> list[NewEvent]:
    return [NewEvent(uuid.uuid4(), "Signed", {"who": n}, AT) for n in names]


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock(AT)
        self.store = SqliteEventStore(tmp_path / "events.sqlite", self.clock)
        self.conn = open_readmodel_db(tmp_path / "rm.sqlite")
        self.poison: set[str] = set()
        self.tally = Tally(self.conn, self.poison)
        self.greeter = Greeter(self.poison)
        self.runtime = self.restarted()

    def restarted(self, batch_size: int = 100) -> InProcessRuntime:
        return InProcessRuntime(
            self.store,
            SqliteCheckpoints(self.conn),
            [self.tally],
            [self.greeter],
            batch_size=batch_size,
            clock=self.clock,
            parked=SqliteParkedEvents(self.conn),
            retry=POLICY,
        )

    def greeted(self) -> list[str]:
        return [e.data["who"] for e in self.store.read_stream("greetings")]

    def status(self, name: str) -> dict[str, object]:
        found = next(s for s in self.runtime.status() if s.name == name)
        return {
            "position": found.position,
            "failing_at": found.failing_at,
            "attempts": found.attempts,
            "parked": found.parked,
        }


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.store.close()
    made.conn.close()


def test_a_failing_event_is_retried_with_doubling_waits_then_parked_and_the_consumer_goes_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.poison.add("mallory")
    world.store.append("guestbook", signed("ann", "bob", "mallory", "cy", "dan"))  # positions 1..5
    caplog.set_level(logging.INFO)
    world.runtime.drain()
    # the events before the poison are committed; the tally waits; the reactor (healthy here) went on
    assert world.tally.counts() == {"ann": 1, "bob": 1}
    assert world.status("tally") == {"position": 2, "failing_at": 3, "attempts": 1, "parked": 0}
    assert world.greeted() == ["ann", "bob"]  # the greeter fails on mallory too: it stops there
    assert world.status("greeter")["failing_at"] == 3

    tries = world.tally.applied.count("mallory")
    world.runtime.drain()  # no time passed: nobody retries
    assert world.tally.applied.count("mallory") == tries
    for wait in (1, 2, 4):  # the waits double
        world.clock.advance(timedelta(seconds=wait) - timedelta(milliseconds=1))
        world.runtime.drain()
        assert world.tally.applied.count("mallory") == tries, f"retried before its {wait} s wait ended"
        world.clock.advance(timedelta(milliseconds=1))
        world.runtime.drain()
        tries += 1
        assert world.tally.applied.count("mallory") == tries
    # the fourth attempt parked it: the checkpoint moved past it and the later events were applied
    assert world.tally.counts() == {"ann": 1, "bob": 1, "cy": 1, "dan": 1}
    head = world.store.head_position()  # the signatures and the greetings
    assert world.status("tally") == {"position": head, "failing_at": None, "attempts": 0, "parked": 1}
    assert world.greeted() == ["ann", "bob", "cy", "dan"]
    (parked,) = world.runtime.parked.waiting("tally")
    assert (parked.position, parked.event_type, parked.attempts) == (3, "Signed", 4)
    assert parked.error.startswith("OverflowError: cannot count mallory (at test_runtime_failures.py:")
    assert parked.first_failed_at == AT and parked.last_failed_at == AT + timedelta(seconds=7)
    assert "Traceback" in parked.traceback
    # the log: one line per failure, none with a traceback
    lines = [r for r in caplog.records if r.name == "herald.processors.runtime" or "processor" in r.msg]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)
    tally_lines = [r.getMessage() for r in lines if "tally" in r.getMessage()]
    assert len(tally_lines) == 4
    assert "attempt 1 of 4" in tally_lines[0] and "next try in 1 s" in tally_lines[0]
    assert "parked event 3" in tally_lines[-1]


def test_a_parked_event_stays_parked_across_a_restart_and_later_events_go_on(world: World) -> None:
    world.poison.add("mallory")
    world.store.append("guestbook", signed("mallory"))
    for _ in range(POLICY.attempts):
        world.runtime.drain()
        world.clock.advance(POLICY.max_delay)
    world.store.append("guestbook", signed("eve"))
    restarted = world.restarted()
    restarted.drain()
    assert world.tally.counts() == {"eve": 1}
    assert [p.position for p in restarted.parked.waiting()] == [1, 1]  # the tally's and the greeter's
    assert {s.name: s.parked for s in restarted.status()} == {"tally": 1, "greeter": 1}


def test_a_failed_commit_is_split_until_the_event_that_breaks_it_is_found(world: World) -> None:
    world.runtime = world.restarted(batch_size=100)
    names = [f"p{i}" for i in range(40)]
    world.store.append("guestbook", signed(*names))
    world.tally.poison.add("p29")
    # a commit-time poison: apply passes, the commit of any batch holding it fails
    world.tally.apply = lambda event: world.tally.pending.append(event.data["who"])  # type: ignore[method-assign]
    world.greeter.poison = set()
    world.runtime.drain()
    assert world.status("tally")["position"] == 29 and world.status("tally")["failing_at"] == 30
    assert len(world.tally.counts()) == 29


def test_a_transient_failure_is_retried_until_it_passes_and_never_parked(world: World) -> None:
    world.store.append("guestbook", signed("ann", "bob"))
    world.tally.failing_commit = sqlite3.OperationalError("database is locked")
    for _ in range(POLICY.attempts * 3):
        world.runtime.drain()
        world.clock.advance(POLICY.max_delay)
    assert world.status("tally") == {"position": 0, "failing_at": 1, "attempts": 12, "parked": 0}
    world.tally.failing_commit = None
    world.runtime.drain()
    assert world.tally.counts() == {"ann": 1, "bob": 1}
    head = world.store.head_position()
    assert world.status("tally") == {"position": head, "failing_at": None, "attempts": 0, "parked": 0}


def park_mallory(world: World) -> None:
    world.poison.add("mallory")
    world.store.append("guestbook", signed("ann", "mallory", "bob"))
    for _ in range(POLICY.attempts):
        world.runtime.drain()
        world.clock.advance(POLICY.max_delay)
    assert world.status("tally")["parked"] == 1 and world.status("greeter")["parked"] == 1


def test_re_driving_a_parked_event_after_the_fix_applies_it_once(world: World) -> None:
    park_mallory(world)
    with pytest.raises(RuleViolated, match="the event still fails: OverflowError: cannot count mallory"):
        world.runtime.redrive("tally", 2)
    assert world.runtime.parked.get("tally", 2).attempts == POLICY.attempts + 1  # type: ignore[union-attr]

    world.poison.clear()  # the fix
    redriven = world.runtime.redrive("tally", 2)
    assert redriven.redriven_at == world.clock.now()
    assert world.runtime.redrive("tally", 2) == redriven  # again: nothing is applied twice
    assert world.tally.counts() == {"ann": 1, "mallory": 1, "bob": 1}
    head = world.store.head_position()
    assert world.status("tally") == {"position": head, "failing_at": None, "attempts": 0, "parked": 0}

    world.runtime.redrive("greeter", 2)
    world.runtime.redrive("greeter", 2)
    assert world.greeted() == ["ann", "bob", "mallory"]
    with pytest.raises(NotFound):
        world.runtime.redrive("greeter", 3)
    with pytest.raises(NotFound):
        world.runtime.redrive("nobody", 2)


def test_a_reactors_re_drive_is_exactly_once_even_when_its_record_was_lost(world: World) -> None:
    """A crash after the reactor's effects were appended but before the record was settled: the next
    re-drive appends the same event ids again, which the store drops."""
    park_mallory(world)
    world.poison.clear()
    world.runtime.redrive("greeter", 2)
    world.conn.execute("UPDATE parked_events SET redriven_at = NULL WHERE consumer = 'greeter'")
    world.runtime.redrive("greeter", 2)
    assert world.greeted() == ["ann", "bob", "mallory"]


def test_a_projections_re_drive_and_its_record_commit_together(world: World) -> None:
    """When the projection's commit fails, the record is not marked re-driven either."""
    park_mallory(world)
    world.poison.clear()
    world.tally.failing_commit = ValueError("disk says no")
    with pytest.raises(RuleViolated):
        world.runtime.redrive("tally", 2)
    assert world.runtime.parked.get("tally", 2).redriven_at is None  # type: ignore[union-attr]
    assert "mallory" not in world.tally.counts()


async def test_run_waits_out_a_failing_consumers_backoff_instead_of_looping(world: World) -> None:
    world.poison.add("mallory")
    world.store.append("guestbook", signed("mallory", "ann"))
    task = asyncio.create_task(world.runtime.run())
    await asyncio.sleep(0.3)  # real time: a hot loop would retry thousands of times meanwhile
    world.store.append("guestbook", signed("bob"))  # new events wake the runtime; the tally still waits
    await asyncio.sleep(0.1)
    world.runtime.stop()
    await asyncio.wait_for(task, timeout=10)
    assert world.tally.applied.count("mallory") == 1


def test_an_event_parked_again_keeps_its_first_failure_and_adds_the_attempts(world: World) -> None:
    """A consumer whose checkpoint lags its parking (the report sink stores it every so often) meets the
    event again after a restart: the record is the same one, with the attempts of both."""
    park_mallory(world)
    first = world.runtime.parked.get("tally", 2)
    SqliteCheckpoints(world.conn).save("tally", 1)
    world.runtime = world.restarted()
    for _ in range(POLICY.attempts):
        world.runtime.drain()
        world.clock.advance(POLICY.max_delay)
    again = world.runtime.parked.get("tally", 2)
    assert first is not None and again is not None
    assert again.attempts == 2 * POLICY.attempts and again.first_failed_at == first.first_failed_at
    assert again.last_failed_at > first.last_failed_at
