"""`herald parked` and `herald redrive`: the events processors gave up on, listed and applied again.

`herald parked` only reads the read-model file, so it also works while the
server runs. `herald redrive` opens the data directory as the server does and
takes its processors lock, so it refuses while a server runs (whose processors
hold their state in memory): re-drive through the server's endpoint instead.
With the scale engine the workers hold the partitions' state: `herald redrive`
leaves a request in each store, and the worker that owns the store re-drives it.
"""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path

from herald.api.wiring import Herald, build
from herald.domain.errors import DomainError
from herald.infra.clock import SystemClock
from herald.infra.config import Settings
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.readmodel_db import open_readmodel_db
from herald.infra.serialization import dumps
from herald.processors.partition_store import partition_path


def print_parked(settings: Settings, processor: str | None, with_traceback: bool) -> int:
    """Every parked event not re-driven yet, of one processor or all, one JSON object a line (with the
    scale engine, from every partition's store and the coordinator's, each line naming its `store`)."""
    for store, path in _parked_stores(settings):
        with closing(open_readmodel_db(path)) as conn:
            for parked in SqliteParkedEvents(conn).waiting(processor):
                found = parked.to_json(with_traceback) | ({"store": store} if store else {})
                sys.stdout.buffer.write(dumps(found) + b"\n")
    return 0


def _parked_stores(settings: Settings) -> list[tuple[str, Path]]:
    """(name, file) of the stores that may hold parked events; the embedded engine's has no name."""
    if settings.engine != "scale":
        return [("", settings.readmodel_path)]
    stores = [
        (f"p{k}", partition_path(settings.partitions_path, k)) for k in range(settings.kafka_partitions)
    ]
    stores.append(("coordinator", settings.partitions_path / "coordinator.sqlite"))
    return [(name, path) for name, path in stores if path.exists()]


def request_redrive(settings: Settings, processor: str | None, positions: list[int]) -> int:
    """With the scale engine: ask the workers to re-drive the named parked events (default: all of
    `processor`, or of every processor); the worker owning each store takes it within seconds, and
    `herald parked` shows what came of it. Exit status 1 when one named is not parked there."""
    now = SystemClock().now()
    missing = set(positions)
    for store, path in _parked_stores(settings):
        with closing(open_readmodel_db(path)) as conn:
            parked = SqliteParkedEvents(conn)
            for event in parked.waiting(processor):
                if positions and event.position not in positions:
                    continue
                missing.discard(event.position)
                parked.request_redrive(event.consumer, event.position, now)
                print(f"{store} {event.consumer} {event.position}: asked of its worker", flush=True)
    for position in sorted(missing):
        print(f"{processor or 'no processor'} {position}: not parked", flush=True)
    return 1 if missing else 0


def redrive_parked(settings: Settings, processor: str | None, positions: list[int]) -> int:
    """Re-drive the named parked events (default: all of `processor`, or of every processor); exit
    status 1 when one of them still fails (it stays parked)."""
    herald = build(settings)
    failed = 0
    try:
        for name, position in _chosen(herald, processor, positions):
            runtime = next(r for r in herald.runtimes() if name in r.names)
            try:
                runtime.redrive(name, position)
            except DomainError as error:
                failed += 1
                print(f"{name} {position}: {error.reason}", flush=True)
            else:
                print(f"{name} {position}: re-driven", flush=True)
    finally:
        herald.close()
    return 1 if failed else 0


def _chosen(herald: Herald, processor: str | None, positions: list[int]) -> list[tuple[str, int]]:
    if processor is not None and positions:
        return [(processor, p) for p in positions]
    return [(p.consumer, p.position) for r in herald.runtimes() for p in r.parked_events(processor)]
