"""A CSV file import against the batch import API doing the same rows, in one process, same run.

File import: N profiles as one CSV file (email, _fname, _lname, _city, plan, points, and an
email subscription to the resource from the email column) written to the import files
before the clock starts; the clock runs from starting the job to its completion, the job's
chunks driven by the processor runtime (`runtime.drain()`, which also runs every projection
over the events the chunks append).

Baseline: the same N rows as dicts, built before the clock starts, imported through
`ProfileService.import_rows` (what `POST /databases/{id}/profiles/import` calls) in batches of
the job's chunk size, then `runtime.drain()` so the projections fold the same events. Both
write to a fresh data directory. The goal is ratio ≤ 2 (file time over batch time); also
printed: the stdlib `csv` module reading the same file alone, the floor of the file path.

Each path runs `--rounds` times, alternating (batch, file, batch, file, …), each on a fresh data
directory, and the best time of each is taken: on a machine shared with other work, alternating
keeps a change of load from falling on one side only.

    python bench/bench_file_import.py [--rows 1000000] [--chunk 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import time
from pathlib import Path

from common import (
    DATABASE_ID,
    RESOURCE_ID,
    Herald,
    create_catalog,
    herald_in_process,
    machine,
    profile_row,
    run,
    temp_dir,
)

from herald.domain.import_spec import ImportSpec
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions

CONTEXT = CommandContext(actor="bench", source="bench")
COLUMNS = ["email", "_fname", "_lname", "_city", "plan", "points"]


def csv_bytes(rows: int) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for n in range(rows):
        row = profile_row(n, 0)
        writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue().encode()


def file_import(herald: Herald, content: bytes, chunk: int) -> float:
    herald.imports.chunk_rows = chunk
    stored = herald.import_files.store([content], len(content))
    spec = ImportSpec.model_validate(
        {
            "file_id": stored.file_id,
            "format": "csv",
            "columns": [{"column": c, "field": c} for c in COLUMNS],
            "subscriptions": [{"column": "email", "resource_id": RESOURCE_ID, "channel": "email"}],
        }
    )
    started = time.perf_counter()
    job_id, _ = herald.imports.start(DATABASE_ID, spec, CONTEXT)
    herald.runtime.drain()
    elapsed = time.perf_counter() - started
    job = herald.jobs.job(job_id)
    assert job["status"] == "completed" and job["counts"]["created"] == len(content.splitlines()) - 1, job
    return elapsed


def batch_import(herald: Herald, rows: int, chunk: int) -> float:
    batches = [
        [profile_row(n, 0, subscribe=True) for n in range(start, min(start + chunk, rows))]
        for start in range(0, rows, chunk)
    ]
    started = time.perf_counter()
    created = 0
    for batch in batches:
        results = herald.profiles.import_rows(DATABASE_ID, batch, ImportOptions(), CONTEXT)
        created += sum(r.status == "created" for r in results)
    herald.runtime.drain()
    elapsed = time.perf_counter() - started
    assert created == rows
    return elapsed


def fresh(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(machine(), "| load", os.getloadavg(), flush=True)
    content = csv_bytes(args.rows)
    started = time.perf_counter()
    read = sum(1 for _ in csv.reader(io.StringIO(content.decode(), newline="")))
    parse = time.perf_counter() - started
    batch_times: list[float] = []
    file_times: list[float] = []
    with temp_dir("file-import") as root:
        for round_number in range(args.rounds):
            with herald_in_process(fresh(root, f"batch-{round_number}")) as herald:
                create_catalog(herald)
                batch_times.append(batch_import(herald, args.rows, args.chunk))
            with herald_in_process(fresh(root, f"file-{round_number}")) as herald:
                create_catalog(herald)
                file_times.append(file_import(herald, content, args.chunk))
            print(
                f"round {round_number + 1}: batch {batch_times[-1]:.1f} s, file {file_times[-1]:.1f} s | "
                f"load {os.getloadavg()}",
                flush=True,
            )
    batch, file = min(batch_times), min(file_times)
    print(f"stdlib csv reading the file alone: {read - 1:,} rows in {parse:.2f} s", flush=True)
    print(f"batch import API: {args.rows:,} rows in {batch:.1f} s ({args.rows / batch:,.0f} rows/s)")
    print(f"file import job:  {args.rows:,} rows in {file:.1f} s ({args.rows / file:,.0f} rows/s)")
    print(f"ratio file / batch: {file / batch:.2f} (goal ≤ 2.00) | load {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    run(main)
