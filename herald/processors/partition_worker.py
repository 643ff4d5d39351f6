"""`herald worker`: one member of the consumer group that folds the event topic, partition by partition.

Every worker joins the group `herald-processors-<topic>`; Kafka gives each
some of the topic's partitions and moves them when a worker joins, leaves or
dies (after the session timeout). For each partition it owns, the worker holds
the partition's lock and a `PartitionRunner` over the partition's store;
offsets are the store's, not the group's (the group's are committed too, every
few seconds, but only for monitoring lag).

The Kafka consumer runs in a child process, the fetcher (`processors/fetcher.py`:
group membership, heartbeats, rebalances, seeks, fetching and aiokafka's
unpacking), so its Python never holds the GIL the fold needs. The worker has
two threads: the main one serves the link to the fetcher (it unpickles each
round's raw `(offset, value)` pairs and answers the fetcher's requests), and
the processing thread's loop owns every SQLite connection and runs the
batches, the email sender and the coordinator. A batch or a campaign chunk
that takes seconds therefore never delays a heartbeat, and a group member is
never dropped for being busy. The fetcher fetches the next round while the
processing thread folds the one before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import herald
from herald.infra.data_dir_lock import FileLock
from herald.processors.fetch_link import read_frame, write_frame
from herald.processors.partition_runner import Message, PartitionRunner

log = logging.getLogger(__name__)
T = TypeVar("T")
_LOCK_POLL_SECONDS = 0.05
_LINK_BUFFER = 64 * 1024 * 1024  # a round (20,000 messages of ~300 bytes) read without pausing the socket


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Where the worker reads from and how it batches."""

    bootstrap: str
    topic: str
    partitions: int
    batch_size: int = 5000  # messages per partition and fetch at most
    session_timeout: float = 10.0  # seconds before the group gives a dead worker's partitions away

    @property
    def group_id(self) -> str:
        return f"herald-processors-{self.topic}"


class ProcessingThread:
    """A thread running an event loop: where the worker's Herald lives and works."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="herald-processing", daemon=True)
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the processing loop and wait for it from another loop."""
        return await asyncio.wrap_future(self.submit(work))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)


class Partitions:
    """The partitions this worker owns and their runners (used on the processing thread only)."""

    def __init__(
        self,
        open_runner: Callable[[int], PartitionRunner],
        lock: Callable[[int], FileLock],
        quiesce: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._open_runner = open_runner
        self._lock = lock
        self._quiesce = quiesce  # waits for work on the owned partitions (sends) to pause
        self.runners: dict[int, PartitionRunner] = {}
        self._locks: dict[int, FileLock] = {}
        self.changed = asyncio.Event()  # set at every assignment: new partitions' leftovers to settle

    async def assign(self, partitions: Iterable[int]) -> dict[int, int]:
        """Take the partitions (waiting for a replaced owner to let go); the offset each resumes at."""
        for partition in sorted(set(partitions) - self.runners.keys()):
            lock = self._lock(partition)
            waited = False
            while not lock.try_acquire():
                if not waited:
                    log.warning("partition %d: waiting for its previous owner to let it go", partition)
                    waited = True
                await asyncio.sleep(_LOCK_POLL_SECONDS)
            self._locks[partition] = lock
            self.runners[partition] = self._open_runner(partition)
        self.changed.set()
        return {partition: runner.next_offset for partition, runner in self.runners.items()}

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Give the partitions up, once nothing of theirs is in flight."""
        leaving = sorted(set(partitions) & self.runners.keys())
        if not leaving:
            return
        if self._quiesce is not None:
            await self._quiesce()
        for partition in leaving:
            runner = self.runners.pop(partition)
            runner.close()
            self._locks.pop(partition).release()

    async def feed(self, partition: int, messages: Sequence[Message]) -> int | None:
        runner = self.runners.get(partition)
        if runner is None:  # given up while the batch was on its way
            return None
        return runner.feed(messages)

    async def close(self) -> None:
        await self.revoke(list(self.runners))


async def consume(
    options: WorkerOptions, processing: ProcessingThread, partitions: Partitions, stopping: asyncio.Event
) -> None:
    """Have the fetcher process fetch the owned partitions and fold each round on the processing thread,
    until `stopping`; raises if the fetcher ends before it is asked to."""
    ours, theirs = socket.socketpair()
    fetcher = _start_fetcher(options, theirs.fileno())
    theirs.close()
    try:
        reader, writer = await asyncio.open_connection(sock=ours, limit=_LINK_BUFFER)
        rounds: asyncio.Queue[tuple[int, dict[int, list[Message]]]] = asyncio.Queue()
        # a round or a rebalance that fails ends the worker (a store it cannot write): the group's tasks
        # are cancelled, the link closes and the fetcher, at its end, leaves the group
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(_stop_when(stopping, writer)),
                tasks.create_task(_fold_rounds(rounds, processing, partitions, writer)),
            ]
            while (frame := await read_frame(reader)) is not None:
                kind, ident, payload = frame
                if kind == "fold":  # in order, one after the other
                    rounds.put_nowait((ident, payload))
                else:  # apart from the rounds: a revoke comes while a round is folded, and waits for it
                    tasks.create_task(_answer(kind, ident, payload, processing, partitions, writer))
            for task in background:
                task.cancel()
        if not stopping.is_set():
            raise RuntimeError(f"the fetcher process ended (exit status {fetcher.wait()})")
    finally:
        ours.close()
        _reap(fetcher)


def _start_fetcher(options: WorkerOptions, fd: int) -> subprocess.Popen[bytes]:
    """The worker's Kafka consumer in a process of its own (`processors/fetcher.py`), importing this
    Herald's code whatever the worker's PYTHONPATH. Started from the thread that lives as long as the
    worker (its main one): the fetcher's PR_SET_PDEATHSIG fires when the thread that forked it ends."""
    root = str(Path(herald.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    argv = [
        *("--bootstrap", options.bootstrap, "--topic", options.topic, "--group", options.group_id),
        *("--batch-size", str(options.batch_size), "--session-timeout", str(options.session_timeout)),
        *("--fd", str(fd), "--parent", str(os.getpid())),
    ]
    command = [sys.executable, "-m", "herald.processors.fetcher", *argv]
    return subprocess.Popen(command, env=env, pass_fds=[fd])


def _reap(fetcher: subprocess.Popen[bytes]) -> None:
    try:
        fetcher.wait(timeout=30)
    except subprocess.TimeoutExpired:  # stuck leaving the group: the session timeout frees its partitions
        fetcher.kill()
        fetcher.wait()


async def _stop_when(stopping: asyncio.Event, writer: asyncio.StreamWriter) -> None:
    await stopping.wait()
    write_frame(writer, "stop", 0, None)
    await writer.drain()


async def _fold_rounds(
    rounds: asyncio.Queue[tuple[int, dict[int, list[Message]]]],
    processing: ProcessingThread,
    partitions: Partitions,
    writer: asyncio.StreamWriter,
) -> None:
    """Fold the rounds in order on the processing thread and answer each. A partition a round asks to
    fetch again is dropped from the round after it: the fetcher sent that one before it knew."""
    stale: set[int] = set()
    while True:
        ident, batches = await rounds.get()
        for partition in stale:
            batches.pop(partition, None)
        again, folded = await processing.run(_fold(partitions, batches))
        stale = set(again)
        write_frame(writer, "answer", ident, (again, folded))
        await writer.drain()


async def _answer(
    kind: str,
    ident: int,
    payload: list[int],
    processing: ProcessingThread,
    partitions: Partitions,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer a rebalance: partitions given up, or taken and the offsets they resume at."""
    work = partitions.assign(payload) if kind == "assign" else partitions.revoke(payload)
    answer = await processing.run(work)
    write_frame(writer, "answer", ident, answer)
    await writer.drain()


async def _fold(
    partitions: Partitions, batches: dict[int, list[Message]]
) -> tuple[dict[int, int], dict[int, int]]:
    """Fold a round's batches (on the processing thread): the offset each partition whose consumer
    failed must be fetched from again, and how far each owned partition is folded."""
    again = {}
    for partition, messages in batches.items():
        offset = await partitions.feed(partition, messages)
        if offset is not None:
            again[partition] = offset
    return again, {k: runner.next_offset for k, runner in partitions.runners.items()}


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stopping` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
