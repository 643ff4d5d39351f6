"""`herald worker`: one member of the consumer group that folds the event topic, partition by partition.

Every worker joins the group `herald-processors-<topic>`; Kafka gives each
some of the topic's partitions and moves them when a worker joins, leaves or
dies (after the session timeout). For each partition it owns, the worker holds
the partition's lock and a `PartitionRunner` over the partition's store;
offsets are the store's, not the group's (the group's are committed too, every
few seconds, but only for monitoring lag).

Two threads: the Kafka client's event loop (fetches, heartbeats, rebalances)
and the processing thread's loop, which owns every SQLite connection and runs
the batches, the email sender and the coordinator. A batch or a campaign chunk
that takes seconds therefore never delays a heartbeat, and a group member is
never dropped for being busy. The Kafka thread fetches and unpacks the next
round while the processing thread folds the one before (SQLite's writes
release the GIL), so the processing thread does not wait for the fetch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener  # type: ignore[import-untyped]

from herald.infra.data_dir_lock import FileLock
from herald.processors.partition_runner import Message, PartitionRunner

log = logging.getLogger(__name__)
T = TypeVar("T")
_LOCK_POLL_SECONDS = 0.05
_RETRY_SECONDS = 1.0  # a partition whose consumer failed waits this long before it is fetched again
_COMMIT_SECONDS = 2.0


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


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands the group's decisions to the processing thread and seeks to the stores' offsets."""

    def __init__(self, consumer: Any, processing: ProcessingThread, partitions: Partitions) -> None:
        self._consumer = consumer
        self._processing = processing
        self._partitions = partitions

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._processing.run(self._partitions.revoke([tp.partition for tp in revoked]))

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        by_number = {tp.partition: tp for tp in assigned}
        offsets = await self._processing.run(self._partitions.assign(list(by_number)))
        for partition, tp in by_number.items():
            self._consumer.seek(tp, offsets[partition])


async def consume(
    options: WorkerOptions, processing: ProcessingThread, partitions: Partitions, stopping: asyncio.Event
) -> None:
    """Fetch the owned partitions and fold each batch on the processing thread, until `stopping`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.bootstrap,
        group_id=options.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(options.session_timeout * 1000),
        heartbeat_interval_ms=max(int(options.session_timeout * 1000 / 6), 100),
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    consumer.subscribe([options.topic], listener=_Rebalance(consumer, processing, partitions))
    await consumer.start()
    loop = asyncio.get_running_loop()
    committed = loop.time()
    folding: asyncio.Future[dict[Any, int]] | None = None  # the round the processing thread is folding
    try:
        while not stopping.is_set():
            # up to a batch per owned partition: `max_records` caps the whole fetch, and a fold pays its
            # commits per batch (capped at one batch in all, 4 partitions folded 4.8k events/s; 6.0k so)
            owned = max(len(consumer.assignment()), 1)
            # fetched (and unpacked, on this thread) while the processing thread folds the round before
            batches = await consumer.getmany(timeout_ms=200, max_records=options.batch_size * owned)
            if folding is not None:
                for tp, offset in (await folding).items():  # a consumer failed at `offset`: fetch it again
                    batches.pop(tp, None)  # fetched from past it meanwhile
                    consumer.seek(tp, offset)
                    consumer.pause(tp)
                    loop.call_later(_RETRY_SECONDS, consumer.resume, tp)
            folding = asyncio.wrap_future(processing.submit(_fold(partitions, batches)))
            if loop.time() - committed > _COMMIT_SECONDS:
                committed = loop.time()
                await _commit(consumer, processing, partitions)
        if folding is not None:
            await folding
    finally:
        await consumer.stop()  # leaves the group: the revoke hands every partition back first


async def _fold(partitions: Partitions, batches: dict[Any, list[Any]]) -> dict[Any, int]:
    """Fold a round's batches (on the processing thread); the offset each partition whose consumer
    failed must be fetched from again."""
    again = {}
    for tp, records in batches.items():
        offset = await partitions.feed(tp.partition, [(record.offset, record.value) for record in records])
        if offset is not None:
            again[tp] = offset
    return again


async def _commit(consumer: Any, processing: ProcessingThread, partitions: Partitions) -> None:
    """Tell the group how far each owned partition is folded (for lag monitoring only)."""

    async def offsets() -> dict[int, int]:
        return {k: runner.next_offset for k, runner in partitions.runners.items()}

    owned = {tp.partition: tp for tp in consumer.assignment()}
    found = await processing.run(offsets())
    to_commit = {owned[k]: offset for k, offset in found.items() if k in owned and offset > 0}
    if not to_commit:
        return
    try:
        await consumer.commit(to_commit)
    except Exception as error:  # a rebalance in progress: the next round commits
        log.debug("offset commit skipped: %s", error)


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stopping` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
