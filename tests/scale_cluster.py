"""The scale engine as processes for the tests and the benchmark: `herald relay` and `herald worker`s over
one data directory and a Tansu broker, and how far they have come.

The processes are real children (SIGKILL is a real kill); the harness only
reads their stores: the relay's checkpoint, each partition's `folded_through`,
the coordinator's checkpoints, the locks' holders.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import IO

from herald.api.scale_worker import COORDINATED
from herald.infra.event_store import EventStore
from herald.processors.partition_store import partition_path
from herald.processors.topic_format import partition_key, partition_of

REPO = Path(__file__).resolve().parent.parent


class ScaleCluster:
    """One relay and any number of workers over `data`, each logging to a file in `logs`."""

    def __init__(
        self,
        data: Path,
        bootstrap: str,
        topic: str,
        partitions: int,
        logs: Path,
        env: dict[str, str],
        session_timeout: float = 3.0,
    ) -> None:
        self.data = data
        self.topic = topic
        self.partitions = partitions
        self._args = ["--bootstrap", bootstrap, "--topic", topic, "--partitions", str(partitions)]
        self._env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **env,
        }
        self._session = session_timeout
        self._logs = logs
        self._log_files: list[IO[bytes]] = []
        self.relay: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: list[subprocess.Popen[bytes]] = []

    def _start(self, command: str, *extra: str) -> subprocess.Popen[bytes]:
        log = (self._logs / f"{command}-{len(self._log_files) + 1}.log").open("wb")
        self._log_files.append(log)
        argv = [sys.executable, "-m", "herald.api.cli", "--data-dir", str(self.data), command]
        return subprocess.Popen(
            [*argv, *self._args, *extra], env=self._env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def start_relay(self) -> None:
        self.relay = self._start("relay")

    def start_worker(self) -> subprocess.Popen[bytes]:
        # A short session lets the survivor take a killed worker's partitions over quickly.
        worker = self._start("worker", "--session-timeout", str(self._session))
        self.workers.append(worker)
        return worker

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        self.killed.append(worker)

    def stop(self) -> None:
        for process in [*self.workers, self.relay]:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self._log_files:
            log.close()

    # --- who holds what ----------------------------------------------------------------------

    def owners(self) -> dict[int, int]:
        """partition → the pid of the worker holding it (partitions nobody holds left out)."""
        return {
            k: pid
            for k in range(self.partitions)
            if (pid := _holder(self.data / "partitions" / f"p{k}.lock")) is not None
        }

    def coordinator(self) -> int | None:
        """The pid of the worker that coordinates, if one does."""
        return _holder(self.data / "partitions" / "coordinator.lock")

    # --- how far it has come -----------------------------------------------------------------

    def progress(self) -> dict[str, int]:
        """The relay's checkpoint, each partition's folded position, the coordinator's checkpoints."""
        found = {"relay": _checkpoints(self.data / "relay.sqlite").get(f"relay:{self.topic}", 0)}
        for k in range(self.partitions):
            found[f"p{k}"] = _folded(partition_path(self.data / "partitions", k), self.topic, k)
        found |= _checkpoints(self.data / "partitions" / "coordinator.sqlite")
        return found

    def caught_up(self, store: EventStore) -> bool:
        """Whether everything has reached the head of the log: the relay, every partition its last
        event, the coordinator the head (a processor appends before it checkpoints, so nothing is
        left to happen)."""
        progress, head = self.progress(), store.head_position()
        last = last_positions(store, self.partitions)
        return (
            progress["relay"] == head
            and all(progress[f"p{k}"] >= last[k] for k in range(self.partitions))
            and all(progress.get(processor.name, 0) == head for processor in COORDINATED)
        )

    def wait_for(self, done: Callable[[], bool], what: str, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            for process in [self.relay, *self.workers]:
                if process is not None and process not in self.killed and process.poll() is not None:
                    raise AssertionError(f"a process exited: {self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} in {seconds}s: {self.progress()}\n{self.log_text()}")
            time.sleep(0.05)  # polling the stores of other processes, not waiting for an outcome

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self._logs.glob("*.log")))


def last_positions(store: EventStore, partitions: int, until: int | None = None) -> list[int]:
    """The position of the last event of the log (up to `until`) each partition receives (0: none yet)."""
    last = [0] * partitions
    for event in store.read_all(1, limit=until):
        key = partition_key(event)
        if key is None:
            last = [event.position] * partitions
        else:
            last[partition_of(key, partitions)] = event.position
    return last


def _holder(path: Path) -> int | None:
    """The pid in a lock file whose lock is held (the holder wrote it); None when nobody holds it."""
    if not path.exists():
        return None
    with path.open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return int(handle.read().strip() or 0) or None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _read(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            return list(conn.execute(sql, params))
        except sqlite3.OperationalError:  # the table is not there yet
            return []


def _checkpoints(path: Path) -> dict[str, int]:
    return {
        str(name): int(str(position))
        for name, position in _read(path, "SELECT name, position FROM checkpoints")
    }


def _folded(path: Path, topic: str, partition: int) -> int:
    rows = _read(
        path,
        "SELECT folded_through FROM partition_offsets WHERE topic = ? AND partition = ?",
        topic,
        partition,
    )
    return int(str(rows[0][0])) if rows else 0
