"""The worker's fetcher process on a real broker (Tansu): it dies with its worker, even one killed with
SIGKILL, so no orphan keeps the worker's place in the group; and a partition whose consumer failed is
fetched again (seek, pause, resume in the fetcher) and folded once, the worker's stores deciding.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from herald.infra.clock import ManualClock
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.readmodel_db import SqliteCheckpoints
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.partition_runner import Message, PartitionRunner
from herald.processors.partition_store import open_partition_store, partition_lock, partition_path
from herald.processors.partition_worker import Partitions, ProcessingThread, WorkerOptions, consume
from herald.processors.relay import ensure_topic
from herald.processors.runtime import InProcessRuntime
from herald.processors.topic_format import encode, partition_key, partition_of
from tests.scale_cluster import ScaleCluster
from tests.tansu import running_tansu
from tests.unit.test_partitions import PARTITIONS, Flaky, event_log
from tests.unit.test_runtime import AT


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_tansu(tmp_path_factory.mktemp("tansu")) as bootstrap:
        yield bootstrap


# --- the fetcher dies with its worker ---------------------------------------------------------------


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _is_fetcher(pid: int) -> bool:
    return b"herald.processors.fetcher" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_killed_with_sigkill_takes_its_fetcher_and_its_group_membership_with_it(
    tmp_path: Path, broker: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"HERALD_REPORTS_ENGINE": "off", "HERALD_ADMIN_TOKEN": "fetcher-admin-token"}
    cluster = ScaleCluster(tmp_path / "data", broker, "fetcher-dies", PARTITIONS, logs, env)
    try:
        worker = cluster.start_worker()
        cluster.wait_for(lambda: len(cluster.owners()) == PARTITIONS, "the worker holding every partition")
        (fetcher,) = [pid for pid in _children(worker.pid) if _is_fetcher(pid)]
        assert _running(fetcher)
        cluster.kill(worker)
        cluster.wait_for(lambda: not _running(fetcher), "its fetcher gone with it", seconds=5)
        # an orphan fetcher would still be a member of the group, given some of the partitions
        successor = cluster.start_worker()
        cluster.wait_for(
            lambda: (
                set(cluster.owners()) == set(range(PARTITIONS))
                and set(cluster.owners().values()) == {successor.pid}
            ),
            "the next worker holding every partition",
        )
    finally:
        cluster.stop()


# --- a failed consumer's partition fetched again ------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    log = event_log(tmp_path / "events.sqlite")
    yield log
    log.close()


def _by_partition(log: SqliteEventStore) -> dict[int, list[Message]]:
    """Each partition's messages as the relay publishes them: its keys' events and every global one."""
    found: dict[int, list[Message]] = {k: [] for k in range(PARTITIONS)}
    for event in log.read_all(1):
        key = partition_key(event)
        for k in range(PARTITIONS) if key is None else [partition_of(key, PARTITIONS)]:
            found[k].append((len(found[k]), encode(event)))
    return found


async def _publish(bootstrap: str, topic: str, messages: dict[int, list[Message]]) -> None:
    await ensure_topic(bootstrap, topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, values in messages.items():
            for _, value in values:
                await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def _until(done: Callable[[], bool], processing: ProcessingThread, what: str) -> None:
    """Poll `done` on the processing thread (where the runners live) until it holds, for 60 s at most."""

    async def check() -> bool:
        return done()

    for _ in range(1200):
        if await processing.run(check()):
            return
        await asyncio.sleep(0.05)  # polling another process's progress, not waiting for an outcome
    raise AssertionError(f"not {what} in 60 s")


def test_a_partition_whose_consumer_failed_is_fetched_again_and_folded_once(
    tmp_path: Path, broker: str, store: SqliteEventStore
) -> None:
    topic, messages = "fetch-again", _by_partition(store)
    asyncio.run(_publish(broker, topic, messages))
    clock, flaky = ManualClock(AT), []
    directory = tmp_path / "partitions"

    def open_runner(partition: int) -> PartitionRunner:  # on the processing thread, as the worker's
        conn = open_partition_store(directory, partition)
        flaky.append(Flaky(conn, fail_on="Happened1"))  # profile-a's first event, in one partition
        parked = SqliteParkedEvents(conn)
        runtime = InProcessRuntime(store, SqliteCheckpoints(conn), [flaky[-1]], clock=clock, parked=parked)
        return PartitionRunner(partition, PARTITIONS, conn, [runtime], store, topic)

    processing = ProcessingThread()
    partitions = Partitions(open_runner, lambda k: partition_lock(directory, k))

    async def run() -> None:
        stopping = asyncio.Event()
        consuming = asyncio.ensure_future(
            consume(
                WorkerOptions(broker, topic, PARTITIONS, session_timeout=3.0),
                processing,
                partitions,
                stopping,
            )
        )
        await _until(lambda: any(not f.pending_fail for f in flaky), processing, "the poisoned event failed")
        # its partition is fetched again from it (after the fetcher's pause) until its backoff is over:
        # only a redelivery from the failed offset folds the rest
        clock.advance(timedelta(minutes=5))
        await _until(
            lambda: (
                {k: r.next_offset for k, r in partitions.runners.items()}
                == {k: len(v) for k, v in messages.items()}
            ),
            processing,
            "every message folded",
        )
        stopping.set()
        await consuming  # the fetcher left the group and ended
        await processing.run(partitions.close())

    try:
        asyncio.run(run())
    finally:
        processing.stop()

    for partition, values in messages.items():
        with closing(sqlite3.connect(partition_path(directory, partition))) as conn:
            counted = sum(n for (n,) in conn.execute("SELECT n FROM counts"))
        assert counted == len(values)  # each message folded once, the failed one too


def test_a_partition_store_that_cannot_be_opened_ends_the_worker_and_its_fetcher(
    tmp_path: Path, broker: str
) -> None:
    asyncio.run(ensure_topic(broker, "unopenable", PARTITIONS))

    def open_runner(partition: int) -> PartitionRunner:
        raise sqlite3.OperationalError("unable to open database file")

    processing = ProcessingThread()
    partitions = Partitions(open_runner, lambda k: partition_lock(tmp_path, k))
    options = WorkerOptions(broker, "unopenable", PARTITIONS, session_timeout=3.0)
    try:
        with pytest.raises(ExceptionGroup) as failed:  # not left waiting for an answer that never comes
            asyncio.run(asyncio.wait_for(consume(options, processing, partitions, asyncio.Event()), 60))
    finally:
        processing.stop()
    assert failed.group_contains(sqlite3.OperationalError)
    assert [pid for pid in _children(os.getpid()) if _is_fetcher(pid)] == []  # its fetcher reaped
