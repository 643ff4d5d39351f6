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

from pathlib import Path

from herald.api.scale_worker import Worker
from herald.api.wiring import Herald, build
from herald.domain import loyalty as ly
from herald.domain.promo_pool import BindingCause
from herald.domain.stop_lists import AddStopListEntries, EntryReason
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.processors.partition_runner import Message
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


def test_global_read_models_folded_by_every_partition_read_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    embedded = build(_settings(data, "embedded"), clock=ManualClock(START), ids=IdSource(7))
    _with_global_state(embedded)
    expected = embedded.projections.checksums()
    embedded.close()

    # a worker over the same directory (its log and keys), folding every partition itself
    worker = Worker(_settings(data, "scale"), WorkerOptions("127.0.0.1:1", "events", PARTITIONS))
    try:
        for partition in range(PARTITIONS):
            runner = worker._open(partition)
            assert runner.feed(_messages(worker.herald, partition)) is None  # nothing failed
            runner.close()
        scaled = build(_settings(data, "scale"), clock=ManualClock(START), ids=IdSource(7))
        try:
            found = scaled.projections.checksums()
        finally:
            scaled.close()
    finally:
        worker.herald.close()

    assert {name: digest for name, digest in found.items() if found[name] != expected[name]} == {}
