"""Read models folded into partition stores read as the embedded ones: global state counts once.

A partition store folds its profiles' events and every global event, so a table fed by global
events (users and groups, jobs, scheduled imports, loyalty programs and their codes) holds the same
rows in every partition and must be read from one of them, not from all. The log of an embedded
Herald with state in those read models is folded into partition stores by the scale worker's own
runners (`Worker._open`), fed the relay's messages made from the log (no broker: that path runs in
`test_scale_out.py`), and the read models read merged over the stores must have the embedded
runtime's checksums.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from herald.api.scale_worker import Worker
from herald.api.wiring import Herald, build
from herald.domain import loyalty as ly
from herald.domain.promo_pool import BindingCause
from herald.domain.stop_lists import AddStopListEntries, EntryReason
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.processors.partition_runner import Message, PartitionRunner
from herald.processors.partition_worker import WorkerOptions
from herald.processors.topic_format import encode, partition_key, partition_of
from tests.api.test_access_matrix import World
from tests.builders import CTX, DB, customers
from tests.conftest import ADMIN_TOKEN, START

PARTITIONS = 3


def _settings(data: Path, engine: str) -> Settings:
    return Settings(
        data_dir=data,
        admin_token=ADMIN_TOKEN,
        engine=engine,
        kafka_partitions=PARTITIONS,
        reports_engine="off",
    )


def _with_global_state(herald: Herald) -> None:
    customers(herald)
    world = World(herald)  # groups, an export job, a scheduled import, a profile
    settings = ly.ProgramSettings(name="P", shortcode="p", generator=ly.PatternGenerator(pattern="{X8}"))
    program_id, _ = herald.loyalty.create(settings, True, CTX)
    herald.promo_codes.generate(program_id, 5, False, {}, CTX)
    cause = BindingCause(kind="api", id="a-1")
    herald.promo_codes.assign(program_id, world.profile_id, cause.id, cause, CTX)
    _stop_listed_and_erased(herald)
    herald.runtime.drain()


def _stop_listed_and_erased(herald: Herald) -> None:
    """Profiles whose addresses are on the global stop list, erased: the list lives in partition 0,
    most of them elsewhere, and the list must read their entries as erased all the same."""
    emails = [f"erased{n}@mail.example" for n in range(6)]
    profile_ids = [str(herald.profiles.create(DB, {"email": email}, CTX).profile_id) for email in emails]
    assert {partition_of(p, PARTITIONS) for p in profile_ids} - {0}  # some live outside partition 0
    herald.catalog.change_stop_list(AddStopListEntries("global", tuple(emails), EntryReason.API, START), CTX)
    herald.runtime.drain()
    for profile_id in profile_ids:
        herald.erasure.erase(profile_id, CTX)


def _messages(herald: Herald, partition: int) -> list[Message]:
    """The partition's messages as the relay publishes them: its keys' events and every global one."""
    mine = [
        event
        for event in herald.store.read_all(1)
        if (key := partition_key(event)) is None or partition_of(key, PARTITIONS) == partition
    ]
    return [(offset, encode(event)) for offset, event in enumerate(mine)]


def _embedded_then_partitioned(data: Path) -> tuple[dict[str, str], Worker, list[PartitionRunner]]:
    """The embedded read models' checksums, and a worker over the same directory (its log and keys)
    with every partition folded by its own runner (left open)."""
    embedded = build(_settings(data, "embedded"), clock=ManualClock(START), ids=IdSource(7))
    _with_global_state(embedded)
    expected = embedded.projections.checksums()
    embedded.close()
    worker = Worker(_settings(data, "scale"), WorkerOptions("127.0.0.1:1", "events", PARTITIONS))
    runners = [worker._open(partition) for partition in range(PARTITIONS)]
    for partition, runner in enumerate(runners):
        assert runner.feed(_messages(worker.herald, partition)) is None  # nothing failed
    return expected, worker, runners


def _scaled(data: Path, at: datetime = START) -> Herald:
    return build(_settings(data, "scale"), clock=ManualClock(at), ids=IdSource(7))


def _closed(worker: Worker, runners: list[PartitionRunner]) -> None:
    for runner in runners:
        runner.close()
    worker.herald.close()


def test_global_read_models_folded_by_every_partition_read_once(tmp_path: Path) -> None:
    expected, worker, runners = _embedded_then_partitioned(tmp_path / "data")
    _closed(worker, runners)
    scaled = _scaled(tmp_path / "data")
    try:
        found = scaled.projections.checksums()
    finally:
        scaled.close()

    assert {name: digest for name, digest in found.items() if found[name] != expected[name]} == {}


def test_the_timers_run_over_the_merged_read_models_and_each_partition_expires_its_audit(
    tmp_path: Path,
) -> None:
    _, worker, runners = _embedded_then_partitioned(tmp_path / "data")
    later = START + timedelta(days=worker.settings.audit_retention_days + 1)
    scaled = _scaled(tmp_path / "data", later)
    try:
        logged = len(scaled.projections.audit.entries(limit=1000))
        assert logged > 0
        scaled.tick()  # every timer (audit expiry is not its: the merged view is read-only)
        assert len(scaled.projections.audit.entries(limit=1000)) == logged

        expired = [runner.expire_audit(later, worker.settings.audit_retention_days) for runner in runners]
        assert all(expired)  # each store held its own copy of the global events' entries
        assert scaled.projections.audit.entries(limit=1000) == []
    finally:
        scaled.close()
        _closed(worker, runners)
