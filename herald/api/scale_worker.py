"""`herald worker`, wired: the partitions it owns, the coordinator it may be, the email it sends.

Everything Herald lives on the worker's processing thread (`ProcessingThread`):
the Herald built over the merged read models (the services the processors
call read every partition through it), one runner per owned partition over
that partition's store, the coordinator (standing by unless it holds the
lock), and the email sender for the owned partitions' send queues.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import replace

from herald.api.wiring import (
    SCENARIO_TIMER_IDLE_SECONDS,
    SEND_IDLE_SECONDS,
    TIMER_TICK_SECONDS,
    build,
    projections_over,
    reactors,
)
from herald.infra.config import Settings, check_scale
from herald.infra.data_dir_lock import FileLock
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.messages.worker import MessageWorker
from herald.processors.campaign_chain import CampaignChain
from herald.processors.campaign_runs import CampaignRunner
from herald.processors.coordinator import Coordinator
from herald.processors.owned_queues import OwnedQueues
from herald.processors.partition_runner import PartitionRunner, redrive_requested
from herald.processors.partition_store import folded_through, open_partition_store, partition_lock
from herald.processors.partition_worker import Partitions, ProcessingThread, WorkerOptions, consume, pause
from herald.processors.relay import ensure_topic
from herald.processors.runtime import InProcessRuntime, Projection, Reactor
from herald.processors.scenarios import ScenarioProcessor
from herald.projections.clickhouse_sink import ClickHouseSink
from herald.projections.partitioned import folded_by_partition_zero_only
from herald.projections.profile_states import profile_loader
from herald.projections.send_queue import SendQueueProjection

log = logging.getLogger(__name__)
COORDINATED = (CampaignRunner, CampaignChain)  # the processors that read every partition
IN_PROGRESS = ("attempting", "committing")  # a message's states between its attempt and its outcome
REDRIVE_SECONDS = 2  # how soon a worker takes a re-drive `herald redrive` asked for


class Worker:
    """One worker's parts, on its processing thread."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.herald = build(settings)
        self._send_queues: dict[int, SendQueueProjection] = {}
        self._sending = asyncio.Lock()
        self.partitions = Partitions(
            self._open, lambda k: partition_lock(settings.partitions_path, k), self._quiesce
        )
        herald = self.herald
        self.queues = OwnedQueues(
            lambda: {k: self._send_queues[k] for k in self.partitions.runners},
            lambda message_id: herald.deliveries.message(message_id).state.status in IN_PROGRESS,
        )
        self.senders = [  # each channel's sender over the owned partitions' queues
            MessageWorker(worker.channel, herald.aggregates, self.queues, herald.deliveries, herald.clock)
            for worker in herald.workers
        ]
        self.coordinator = self._coordinator()

    def _reactors(self) -> list[Reactor]:
        h = self.herald
        return reactors(h.campaigns, h.run_audiences, h.jobs, h.promo_codes, h.store, h.scoring)

    def _open(self, partition: int) -> PartitionRunner:
        """A runner over the partition's store: the key-local read models and reactors, the report sink."""
        herald, store = self.herald, self.herald.store
        conn = open_partition_store(self.settings.partitions_path, partition)
        projections = projections_over(conn, store, self.settings.account_timezone)
        self._send_queues[partition] = projections.send_queue
        folded: list[Projection] = [
            p for p in projections.all() if partition == 0 or not folded_by_partition_zero_only(p)
        ]
        # last, as embedded: it reads the read models the batch has updated; journeys are key-local
        folded.append(
            ScenarioProcessor(store, SqliteCheckpoints(conn), herald.scenario_ports, projections.scenarios)
        )
        local = [r for r in self._reactors() if not isinstance(r, COORDINATED)]
        parked = SqliteParkedEvents(conn)  # the partition's parked events move with it to its next owner

        def runtime(consumers: Sequence[Projection], reacting: Sequence[Reactor] = ()) -> InProcessRuntime:
            return InProcessRuntime(
                store,
                SqliteCheckpoints(conn),
                consumers,
                reacting,
                execute=herald.aggregates.execute_request,
                clock=herald.clock,
                parked=parked,
            )

        runtimes = [runtime(folded, local)]
        if (
            herald.clickhouse is not None
        ):  # in a runtime of its own, as embedded: a report store down holds up nothing
            sink = ClickHouseSink(herald.clickhouse, load_profile=profile_loader(store), sink=f"p{partition}")
            runtimes.append(runtime([sink]))
        return PartitionRunner(partition, self.options.partitions, conn, runtimes, store, self.options.topic)

    def _coordinator(self) -> Coordinator:
        herald, path = self.herald, self.settings.partitions_path
        coordinated = [r for r in self._reactors() if isinstance(r, COORDINATED)]
        conn = open_readmodel_db(path / "coordinator.sqlite")
        runtime = InProcessRuntime(
            herald.store,
            SqliteCheckpoints(conn),
            reactors=coordinated,
            execute=herald.aggregates.execute_request,
            clock=herald.clock,
            parked=SqliteParkedEvents(conn),
        )
        merged = herald.projections.profiles.conn
        return Coordinator(
            herald.store,
            runtime,
            frozenset().union(*(type(r).consumes.types for r in coordinated)),
            lambda: folded_through(merged, self.options.partitions),
            herald.tick,
            FileLock(path / "coordinator.lock"),
            tick_seconds=TIMER_TICK_SECONDS,
        )

    async def _quiesce(self) -> None:
        """Wait until no message of the owned partitions is being sent."""
        async with self._sending:
            pass

    async def send(self, stopping: asyncio.Event) -> None:
        """Send the owned partitions' messages on every channel; settle what a previous owner left, pass
        after pass."""
        while not stopping.is_set():
            sent = 0
            for sender in self.senders:
                try:
                    async with self._sending:
                        await sender.recover()
                        sent += await sender.run_once()
                except Exception:  # one bad message must not stop sending; it is retried on the next pass
                    log.exception("%s sending failed", sender.channel.name)
            if not sent:
                await pause(stopping, SEND_IDLE_SECONDS)

    async def scenario_work(self, stopping: asyncio.Event) -> None:
        """The due scenario waits and webhook calls, made by the coordinating worker only (they are read
        over every partition), every `SCENARIO_TIMER_IDLE_SECONDS` or at once while there is more."""
        herald = self.herald
        while not stopping.is_set():
            made = 0
            if self.coordinator.lock.held:
                try:
                    herald.scenarios.timers.fire_due(herald.clock.now())
                    made = await herald.webhooks.run_once()
                except Exception:  # a failing wait or call must not stop the others; the next round retries
                    log.exception("scenario waits or webhook calls failed")
            await pause(stopping, 0 if made else SCENARIO_TIMER_IDLE_SECONDS)

    async def redrive(self, stopping: asyncio.Event) -> None:
        """Re-drive the parked events `herald redrive` asked for, in the stores this worker owns now: its
        partitions' and, coordinating, the coordinator's (a request waits for whoever owns it next)."""
        while not stopping.is_set():
            try:
                for runner in list(self.partitions.runners.values()):
                    runner.redrive_requested()
                if self.coordinator.lock.held:
                    redrive_requested([self.coordinator.runtime])
            except Exception:  # a store that cannot be read now is asked again on the next round
                log.exception("re-driving requested parked events failed")
            await pause(stopping, REDRIVE_SECONDS)

    async def expire_audit(self, stopping: asyncio.Event) -> None:
        """Drop the audit entries past their retention from the stores this worker owns, every
        `TIMER_TICK_SECONDS` (the merged view `Herald.tick` sees is read-only)."""
        while not stopping.is_set():
            try:
                for runner in list(self.partitions.runners.values()):
                    runner.expire_audit(self.herald.clock.now(), self.settings.audit_retention_days)
            except Exception:  # a store that cannot be written now is tried again on the next round
                log.exception("expiring the audit log failed")
            await pause(stopping, TIMER_TICK_SECONDS)

    async def run(self, stopping: asyncio.Event) -> None:
        await asyncio.gather(
            self.coordinator.run(stopping),
            self.send(stopping),
            self.scenario_work(stopping),
            self.redrive(stopping),
            self.expire_audit(stopping),
        )

    async def close(self) -> None:
        await self.partitions.close()
        for sender in self.senders:
            await sender.close()
        self.herald.close()


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Run one worker until SIGINT/SIGTERM: join the group, fold, coordinate, send."""
    settings = replace(settings, engine="scale", kafka_partitions=options.partitions)
    check_scale(settings)
    asyncio.run(ensure_topic(options.bootstrap, options.topic, options.partitions))
    processing = ProcessingThread()

    async def setup() -> tuple[Worker, asyncio.Event, asyncio.Future[None]]:
        worker, stopping = Worker(settings, options), asyncio.Event()
        return worker, stopping, asyncio.ensure_future(worker.run(stopping))

    worker, stopping_work, work = processing.submit(setup()).result()
    print(
        f"Herald worker: {options.topic} at {options.bootstrap}, group {options.group_id}, "
        f"{options.partitions} partitions",
        flush=True,
    )

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop_signal, stopping.set)
        await consume(options, processing, worker.partitions, stopping)

    try:
        asyncio.run(main())
    finally:

        async def finish() -> None:
            stopping_work.set()
            await work
            await worker.close()

        processing.submit(finish()).result(timeout=60)
        processing.stop()
    return 0
