"""A worker's fetcher: the child process that is the worker's Kafka consumer.

`herald worker` starts it (`python -m herald.processors.fetcher`) with one end
of a socket pair. Here live the group membership, the heartbeats, the
assignment and its seeks, the pauses of a partition waiting to be fetched
again, and aiokafka's unpacking of every record (about 10 µs a message, which
in the worker's own process held the GIL its fold needs); the worker gets
each round as raw `{partition: [(offset, value), ...]}` and answers it.

What is folded and committed stays the worker's: a rebalance asks the worker
to give partitions up (`revoke`, answered once nothing of theirs is in
flight) and to take them (`assign`, answered with the offsets its stores
resume at, which the fetcher seeks to); every round (`fold`) is answered with
the partitions to fetch again from an offset (a consumer failed there) and
how far each is folded (committed to the group for lag monitoring only).
Two rounds are in flight: the next is fetched and sent while the worker folds
the one before, so when a round's answer asks for a partition again, the round
already sent has that partition's later messages, which the worker drops (it
knows which), and the round in hand has them too, which the fetcher drops
before it seeks.

The fetcher dies with the worker: the kernel kills it when the worker dies
(`PR_SET_PDEATHSIG`, even on SIGKILL), and it stops at the end of the link,
so no orphan keeps the worker's partitions in the group.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import itertools
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]

from herald.processors.fetch_link import open_link, read_frame, write_frame

_RETRY_SECONDS = 1.0  # a partition whose consumer failed waits this long before it is fetched again
_COMMIT_SECONDS = 2.0
# rounds sent to the worker and not yet answered: with two, the next round crosses the link (and is
# unpickled) while the worker folds the one before; it waited ~100 ms for 20,000 messages with one
_IN_FLIGHT = 2
# how long the broker may hold a fetch for partitions with nothing new (aiokafka's default 500 ms): a
# worker caught up sees a new bulk sooner; rounds of the bench then came back to back (no ~190 ms gap)
_FETCH_WAIT_MS = 100
_PR_SET_PDEATHSIG = 1


class WorkerGone(Exception):
    """The worker's end of the link closed."""


class Link:
    """Requests to the worker and their answers; `stopping` is set when the worker asks to stop or is gone."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.stopping = asyncio.Event()
        self.gone = False

    async def ask(self, kind: str, payload: Any) -> Any:
        if self.gone:
            raise WorkerGone()
        ident = next(self._ids)
        answer = self._waiting[ident] = asyncio.get_running_loop().create_future()
        write_frame(self._writer, kind, ident, payload)
        await self._writer.drain()
        return await answer

    async def listen(self) -> None:
        """Route the worker's answers to their requests until the link ends."""
        while (frame := await read_frame(self._reader)) is not None:
            kind, ident, payload = frame
            if kind == "stop":
                self.stopping.set()
            elif (answer := self._waiting.pop(ident, None)) is not None:
                answer.set_result(payload)
        self.gone = True
        self.stopping.set()
        for answer in self._waiting.values():
            answer.set_exception(WorkerGone())
        self._waiting.clear()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands the group's decisions to the worker and seeks to its stores' offsets."""

    def __init__(self, consumer: Any, link: Link) -> None:
        self._consumer = consumer
        self._link = link

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        if not self._link.gone:  # a worker that is gone holds nothing any more
            await self._link.ask("revoke", [tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        by_number = {tp.partition: tp for tp in assigned}
        offsets = await self._link.ask("assign", list(by_number))
        for partition, tp in by_number.items():
            self._consumer.seek(tp, offsets[partition])


async def fetch(options: argparse.Namespace, link: Link) -> None:
    """Fetch the owned partitions round after round and have the worker fold each, until `link.stopping`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.bootstrap,
        group_id=options.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(options.session_timeout * 1000),
        heartbeat_interval_ms=max(int(options.session_timeout * 1000 / 6), 100),
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_wait_ms=_FETCH_WAIT_MS,
    )
    consumer.subscribe([options.topic], listener=_Rebalance(consumer, link))
    await consumer.start()
    loop = asyncio.get_running_loop()
    committed = loop.time()
    folding: collections.deque[asyncio.Future[Any]] = collections.deque()  # rounds sent, not yet answered
    try:
        while not link.stopping.is_set():
            # up to a batch per owned partition: `max_records` caps the whole fetch, and a fold pays its
            # commits per batch (capped at one batch in all, 4 partitions folded 4.8k events/s; 6.0k so)
            owned = max(len(consumer.assignment()), 1)
            batches = await consumer.getmany(timeout_ms=200, max_records=options.batch_size * owned)
            if len(folding) == _IN_FLIGHT:  # the worker holds the next round already: wait for the oldest
                again, folded = await folding.popleft()
                _fetch_again(consumer, options.topic, again, batches)
                if loop.time() - committed > _COMMIT_SECONDS:
                    committed = loop.time()
                    await _commit(consumer, folded)
            raw = {tp.partition: [(r.offset, r.value) for r in records] for tp, records in batches.items()}
            folding.append(asyncio.ensure_future(link.ask("fold", raw)))
        for answer in folding:
            await answer
    except WorkerGone:
        pass
    finally:
        await consumer.stop()  # leaves the group: the revoke hands every partition back first


def _fetch_again(consumer: Any, topic: str, again: dict[int, int], batches: dict[Any, list[Any]]) -> None:
    """Seek each partition whose consumer failed back to `offset` and pause it a moment."""
    loop = asyncio.get_running_loop()
    owned = consumer.assignment()
    for partition, offset in again.items():
        tp = TopicPartition(topic, partition)
        batches.pop(tp, None)  # fetched from past it meanwhile
        if tp not in owned:  # moved to another worker meanwhile: its store says where to resume
            continue
        consumer.seek(tp, offset)
        consumer.pause(tp)
        loop.call_later(_RETRY_SECONDS, _resume, consumer, tp)


def _resume(consumer: Any, tp: Any) -> None:
    if tp in consumer.assignment():
        consumer.resume(tp)


async def _commit(consumer: Any, folded: dict[int, int]) -> None:
    """Tell the group how far each owned partition is folded (for lag monitoring only)."""
    owned = {tp.partition: tp for tp in consumer.assignment()}
    to_commit = {owned[k]: offset for k, offset in folded.items() if k in owned and offset > 0}
    if not to_commit:
        return
    try:
        await consumer.commit(to_commit)
    except Exception as error:  # a rebalance in progress: the next round commits
        print(f"herald fetcher: offset commit skipped: {error}", file=sys.stderr)


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when the worker dies, however it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the worker died before the line above
        os._exit(1)


async def _main(options: argparse.Namespace) -> None:
    reader, writer = await open_link(options.fd)
    link = Link(reader, writer)
    listening = asyncio.ensure_future(link.listen())
    try:
        await fetch(options, link)
    finally:
        writer.close()
        listening.cancel()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="herald-fetcher")
    for name in ("bootstrap", "topic", "group"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--session-timeout", type=float, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    options = parser.parse_args(argv)
    _die_with(options.parent)
    # a terminal's Ctrl-C or a supervisor's SIGTERM to the whole group: the worker says when to stop, so
    # the fetcher leaves the group cleanly after the worker's last round (and dies with it at worst)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    asyncio.run(_main(options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
