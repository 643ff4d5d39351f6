"""Soak: memory and open files of `herald serve` under tracked-event batches at half the maximum rate.

1. 20,000 profiles are imported and projected in this process; `herald serve`
   (embedded: SQLite log, in-process processors, chDB reports) starts over them.
2. The maximum rate is measured: batches of `--batch` events at
   `POST /api/v1/track/batch`, back to back from two client threads for
   `--probe-seconds`, until the processors have caught up.
3. The soak sends batches at half that rate for `--minutes` (30), one client
   on a keep-alive connection, each event new (its own `event_id`) and naming a
   profile by email. Every `--sample-seconds` the server's RSS (VmRSS) and
   open file descriptors are read from /proc, with the processors' lag.
4. After `--warmup-minutes` the RSS must stay within 5 % of what it was at
   the end of the warm-up, and the open files bounded.

Baseline, same run: a bare Starlette app under uvicorn (`bench_ingest`'s,
which `orjson.loads` each body and keeps nothing) under the same pacing for
`--baseline-minutes`: the drift of the server underneath, with no Herald.

    python bench/bench_soak.py [--minutes 30] [--warmup-minutes 5] [--batch 1000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from bench_ingest import prepare_profiles
from common import (
    DATABASE_ID,
    client,
    email,
    free_port,
    herald_server_process,
    machine,
    run,
    server_process,
    temp_dir,
    wait_for_processors,
)

TRACK = "/api/v1/track/batch"
_CATEGORIES = ("shoes", "bags", "coats", "hats")
GOAL_PCT = 5.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_mb: float
    open_files: int
    lag: int | None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def body(batch_number: int, size: int, profiles: int) -> bytes:
    """A batch of new tracked events (their own ids), each naming a profile by email."""
    events = []
    for i in range(size):
        n = batch_number * size + i
        events.append(
            {
                "event": "Viewed product",
                "profile": {"email": email((n * 7919) % profiles)},
                "properties": {
                    "product_id": f"sku-{n % 5000}",
                    "price": 100 + n % 900,
                    "category": _CATEGORIES[n % 4],
                },
                "event_id": f"soak-{n}",
            }
        )
    return orjson.dumps({"database_id": DATABASE_ID, "events": events})


def post(http: httpx.Client, payload: bytes) -> None:
    counts = http.post(TRACK, content=payload).raise_for_status().json()["counts"]
    if counts["accepted"] != sum(counts.values()):
        raise RuntimeError(f"expected every event accepted, got {counts}")


def max_rate(base: str, batch: int, profiles: int, seconds: float, numbers: itertools.count[int]) -> float:
    """Events/s with two clients posting back to back, counted until the processors caught up."""
    stop = time.monotonic() + seconds
    sent = [0, 0]

    def worker(slot: int) -> None:
        with client(base) as http:
            while time.monotonic() < stop:
                post(http, body(next(numbers), batch, profiles))
                sent[slot] += batch

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with client(base) as http:
        wait_for_processors(http)
    return sum(sent) / (time.perf_counter() - started)


@dataclass
class Load:
    """What the soak sends: `rate` events/s in batches of `batch` over `profiles`, sampled every so often."""

    rate: float
    batch: int
    profiles: int
    sample_seconds: float
    numbers: itertools.count[int]

    def next_body(self) -> bytes:
        return body(next(self.numbers), self.batch, self.profiles)


def paced(
    base: str, pid: int, load: Load, minutes: float, lag: Callable[[httpx.Client], int | None], label: str
) -> list[Sample]:
    """Post a batch every `batch / rate` seconds for `minutes`, sampling the server every `sample_seconds`."""
    samples: list[Sample] = []
    started = time.monotonic()
    end = started + minutes * 60
    next_sample = started
    interval = load.batch / load.rate
    per_minute = max(1, int(60 / load.sample_seconds))
    with client(base) as http:
        sent = 0
        payload = load.next_body()
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                samples.append(Sample(now - started, rss_mb(pid), open_files(pid), lag(http)))
                next_sample += load.sample_seconds
                if len(samples) % per_minute == 1:
                    last = samples[-1]
                    print(
                        f"  {label} {last.seconds / 60:5.1f} min: RSS {last.rss_mb:7.1f} MB, "
                        f"{last.open_files} open files, lag {last.lag}",
                        flush=True,
                    )
            post(http, payload)
            sent += 1
            payload = load.next_body()
            pause = started + sent * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        samples.append(Sample(time.monotonic() - started, rss_mb(pid), open_files(pid), lag(http)))
    return samples


def herald_lag(http: httpx.Client) -> int:
    return max(
        p["lag"] for p in http.get("/api/v1/processors").raise_for_status().json()["processors"].values()
    )


def slope_mb_per_min(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return 0.0
    return statistics.linear_regression([s.seconds / 60 for s in samples], [s.rss_mb for s in samples]).slope


def summary(name: str, samples: list[Sample], warmup_minutes: float) -> tuple[float, float]:
    """Print RSS after the warm-up against its end and the open files; returns (growth %, MB/min)."""
    after = [s for s in samples if s.seconds >= warmup_minutes * 60] or samples[-1:]
    first, last = after[0], after[-1]
    growth = (last.rss_mb - first.rss_mb) / first.rss_mb * 100
    slope = slope_mb_per_min(after)
    files = [s.open_files for s in after]
    peak = max(s.rss_mb for s in after)
    print(
        f"{name}: RSS {first.rss_mb:.1f} MB after the {warmup_minutes:g}-minute warm-up, "
        f"{last.rss_mb:.1f} MB at {last.seconds / 60:.1f} min ({growth:+.1f} %, {slope:+.2f} MB/min; "
        f"peak {peak:.1f} MB); open files {min(files)}–{max(files)}",
        flush=True,
    )
    return growth, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="the soak's length")
    parser.add_argument("--warmup-minutes", type=float, default=5)
    parser.add_argument("--baseline-minutes", type=float, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--probe-seconds", type=float, default=20)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument(
        "--reports", choices=("chdb", "off"), default="chdb", help="the server's report store (embedded chDB)"
    )
    args = parser.parse_args()
    warmup = min(args.warmup_minutes, args.minutes / 3)
    print(
        f"{machine()}; load {os.getloadavg()[0]:.2f}; {args.minutes:g} min soak, "
        f"{args.batch} events a batch, reports {args.reports}",
        flush=True,
    )
    numbers = itertools.count()
    with temp_dir("soak") as work:
        data = work / "herald"
        prepare_profiles(data, args.profiles)
        with herald_server_process(data, {"HERALD_REPORTS_ENGINE": args.reports}) as (base, process):
            peak = max_rate(base, args.batch, args.profiles, args.probe_seconds, numbers)
            load = Load(peak / 2, args.batch, args.profiles, args.sample_seconds, numbers)
            print(f"maximum rate {peak:,.0f} events/s; the soak sends {load.rate:,.0f} events/s", flush=True)
            samples = paced(base, process.pid, load, args.minutes, herald_lag, "herald")
        port = free_port()
        bare_argv = [
            sys.executable,
            str(Path(__file__).with_name("bench_ingest.py")),
            "--serve-bare",
            str(port),
        ]
        with server_process(bare_argv, port, work / "bare.log") as (bare, bare_process):
            bare_samples = paced(bare, bare_process.pid, load, args.baseline_minutes, lambda _: None, "bare")
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    growth, _ = summary("herald serve", samples, warmup)
    summary("baseline, bare Starlette", bare_samples, min(1.0, args.baseline_minutes / 3))
    verdict = "met" if abs(growth) <= GOAL_PCT else "NOT met"
    print(f"goal: RSS within {GOAL_PCT:g} % after the warm-up: {verdict}")


if __name__ == "__main__":
    run(main)
