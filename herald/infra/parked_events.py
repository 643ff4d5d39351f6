"""Parked events: the events a processor gave up on after its retries, kept with why, until re-driven.

The table sits in the read-model file beside the checkpoints, on the same
connection, so parking an event and moving the consumer's checkpoint past it
are one transaction, and so are re-driving it and marking it re-driven (for a
consumer whose writes go to that file; the others write idempotently).
`herald replay` carries the rows of the consumers it does not rebuild.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

_DDL = (
    "CREATE TABLE IF NOT EXISTS parked_events (consumer TEXT NOT NULL, position INTEGER NOT NULL, "
    "event_id TEXT NOT NULL, event_type TEXT NOT NULL, stream TEXT NOT NULL, error TEXT NOT NULL, "
    "traceback TEXT NOT NULL, attempts INTEGER NOT NULL, first_failed_at TEXT NOT NULL, "
    "last_failed_at TEXT NOT NULL, redriven_at TEXT, PRIMARY KEY (consumer, position))"
)
# With the scale engine a partition's events are re-driven by the worker that owns it: `herald redrive`
# leaves a request in the partition's store, and the owner takes it on its next round.
_REQUESTS_DDL = (
    "CREATE TABLE IF NOT EXISTS redrive_requests (consumer TEXT NOT NULL, position INTEGER NOT NULL, "
    "requested_at TEXT NOT NULL, PRIMARY KEY (consumer, position))"
)
_COLUMNS = (
    "consumer, position, event_id, event_type, stream, error, traceback, attempts, "
    "first_failed_at, last_failed_at, redriven_at"
)


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """One event a consumer failed on `attempts` times, the last error, when it first and last failed."""

    consumer: str
    position: int
    event_id: str
    event_type: str
    stream: str
    error: str
    traceback: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    redriven_at: datetime | None = None

    def to_json(self, with_traceback: bool = False) -> dict[str, object]:
        found: dict[str, object] = {
            "consumer": self.consumer,
            "position": self.position,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "stream": self.stream,
            "error": self.error,
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "redriven_at": self.redriven_at.isoformat() if self.redriven_at else None,
        }
        if with_traceback:
            found["traceback"] = self.traceback
        return found


class SqliteParkedEvents:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.execute(_DDL)
        conn.execute(_REQUESTS_DDL)

    @contextmanager
    def parking(self, parked: ParkedEvent) -> Iterator[None]:
        """Record `parked` in one transaction with what the block writes (the consumer's checkpoint). An
        event parked again (a consumer whose checkpoint did not survive a restart failed on it anew) keeps
        its first failure and adds the attempts."""
        with self._transaction():
            self.conn.execute(
                f"INSERT INTO parked_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT (consumer, position) DO UPDATE SET error = excluded.error, "
                "traceback = excluded.traceback, attempts = attempts + excluded.attempts, "
                "last_failed_at = excluded.last_failed_at, redriven_at = NULL",
                (
                    parked.consumer,
                    parked.position,
                    parked.event_id,
                    parked.event_type,
                    parked.stream,
                    parked.error,
                    parked.traceback,
                    parked.attempts,
                    parked.first_failed_at.isoformat(),
                    parked.last_failed_at.isoformat(),
                ),
            )
            yield

    @contextmanager
    def settling(self, consumer: str, position: int, at: datetime) -> Iterator[None]:
        """Mark the event re-driven in one transaction with what the block writes (its effects)."""
        with self._transaction():
            self.conn.execute(
                "UPDATE parked_events SET redriven_at = ? WHERE consumer = ? AND position = ?",
                (at.isoformat(), consumer, position),
            )
            yield

    def failed_again(self, consumer: str, position: int, error: str, traceback: str, at: datetime) -> None:
        """A re-drive failed too: one more attempt, the newest error."""
        self.conn.execute(
            "UPDATE parked_events SET attempts = attempts + 1, error = ?, traceback = ?, last_failed_at = ? "
            "WHERE consumer = ? AND position = ?",
            (error, traceback, at.isoformat(), consumer, position),
        )

    def get(self, consumer: str, position: int) -> ParkedEvent | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM parked_events WHERE consumer = ? AND position = ?", (consumer, position)
        ).fetchone()
        return _parked(row) if row else None

    def waiting(self, consumer: str | None = None) -> list[ParkedEvent]:
        """Parked events not re-driven yet, of one consumer or all, in log order."""
        where = "redriven_at IS NULL" + (" AND consumer = ?" if consumer is not None else "")
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM parked_events WHERE {where} ORDER BY position, consumer",
            (consumer,) if consumer is not None else (),
        )
        return [_parked(r) for r in rows]

    def request_redrive(self, consumer: str, position: int, at: datetime) -> None:
        """Ask the store's owner to re-drive a waiting parked event (asking twice is asking once)."""
        with self._transaction():
            self.conn.execute(
                "INSERT INTO redrive_requests (consumer, position, requested_at) VALUES (?, ?, ?) "
                "ON CONFLICT (consumer, position) DO NOTHING",
                (consumer, position, at.isoformat()),
            )

    def requested(self) -> list[tuple[str, int]]:
        """(consumer, position) of the re-drives asked for and not taken yet, in log order."""
        rows = self.conn.execute(
            "SELECT consumer, position FROM redrive_requests ORDER BY position, consumer"
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def taken(self, consumer: str, position: int) -> None:
        """The owner has re-driven it, or tried (a failure counts as one more attempt on the event)."""
        self.conn.execute(
            "DELETE FROM redrive_requests WHERE consumer = ? AND position = ?", (consumer, position)
        )

    def counts(self) -> dict[str, int]:
        """How many events each consumer has parked and not yet re-driven."""
        rows = self.conn.execute(
            "SELECT consumer, count(*) FROM parked_events WHERE redriven_at IS NULL GROUP BY consumer"
        )
        return {r[0]: int(r[1]) for r in rows}

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction around the block (joined when one is open); a consumer's commit inside may
        end it, and ours with it: what we wrote first is then committed together with its writes."""
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")


def _parked(row: tuple[object, ...]) -> ParkedEvent:
    (consumer, position, event_id, event_type, stream, error, tb, attempts, first, last, redriven) = row
    return ParkedEvent(
        consumer=str(consumer),
        position=int(str(position)),
        event_id=str(event_id),
        event_type=str(event_type),
        stream=str(stream),
        error=str(error),
        traceback=str(tb),
        attempts=int(str(attempts)),
        first_failed_at=datetime.fromisoformat(str(first)),
        last_failed_at=datetime.fromisoformat(str(last)),
        redriven_at=datetime.fromisoformat(str(redriven)) if redriven else None,
    )
