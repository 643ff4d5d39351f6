"""The event-id index's memory and speed: spilling to disk against holding every hash in memory.

Each variant runs in its own process (clean RSS): `--events` random 64-bit
hashes in batches of `--batch`, each batch asked for (`candidates`, as every
append does) and then added, as the store does inside its write lock. It
prints the RSS growth per event and the rate; the baseline is the same index
holding everything in memory (what the store did before spilling), in the
same run. Then a resend: every batch's hashes asked for again, all found.

    python bench/bench_event_id_index.py [--events 5000000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import numpy as np
from common import machine

from herald.infra import event_id_index
from herald.infra.event_id_index import EventIdIndex
from herald.infra.malloc_tuning import return_large_blocks


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _run(spill_at: int, events: int, batch: int, answer: multiprocessing.Queue[dict[str, float]]) -> None:
    return_large_blocks()  # as every `herald` command does
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**63, events, dtype=np.uint64).tolist()
    index = EventIdIndex(spill_at=spill_at)
    before = _rss_mb()
    started = time.perf_counter()
    for start in range(0, events, batch):
        chunk = hashes[start : start + batch]
        assert not index.candidates(chunk)
        index.add(chunk, list(range(start + 1, start + len(chunk) + 1)), start + len(chunk))
    seconds = time.perf_counter() - started
    grown = _rss_mb() - before
    resent = rng.choice(events, batch, replace=False).tolist()
    started = time.perf_counter()
    found = index.candidates([hashes[i] for i in resent])
    resend_ms = (time.perf_counter() - started) * 1000
    assert len(found) == batch
    index.close()
    answer.put({"rate": events / seconds, "bytes_per_event": grown * 2**20 / events, "resend_ms": resend_ms})


def _measure(spill_at: int, events: int, batch: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    answer: multiprocessing.Queue[dict[str, float]] = context.Queue()
    process = context.Process(target=_run, args=(spill_at, events, batch, answer))
    process.start()
    result = answer.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    print(machine())
    spilled = _measure(event_id_index._SPILL_AT, args.events, args.batch)
    held = _measure(2**62, args.events, args.batch)  # never spills: every hash in memory
    for name, result in (("spilling", spilled), ("all in memory (baseline)", held)):
        print(
            f"{name}: {result['rate']:,.0f} hashes/s, RSS +{result['bytes_per_event']:.2f} bytes an event, "
            f"a resent batch of {args.batch} found in {result['resend_ms']:.1f} ms"
        )
    print(
        f"ratio: rate {spilled['rate'] / held['rate']:.2f}x, "
        f"memory {spilled['bytes_per_event'] / held['bytes_per_event']:.2f}x of the baseline"
    )


if __name__ == "__main__":
    main()
