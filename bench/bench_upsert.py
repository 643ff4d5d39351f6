"""Profile upserts/s through `herald serve`'s batch import, against the `eventsourcing` library's SQLite app.

Herald: N profiles posted to `POST /api/v1/databases/1/profiles/import` in
batches of 1,000 (bodies serialized before the clock starts, one keep-alive
client), first creating them, then re-importing the same N with three fields
changed. The clock stops at the last response (each batch is durable in the
log when its response comes back); how long the server's projections then
need to catch up is printed too.

Baseline, same machine, same run: an `eventsourcing` 9.x `Application` on
SQLite (`PERSISTENCE_MODULE=eventsourcing.sqlite`) with a `Profile` aggregate
(email, fields). An upsert finds the profile by email in a dict index (as
apps on that library keep one), then creates it or `repository.get`s it and
triggers `FieldsUpdated`. The ratio is taken against its strongest shape:
the 1,000 upserts of a batch saved by ONE `app.save(*profiles)` (one
transaction, as Herald's batch). The library's per-command shape, `save`
after every upsert, is timed on a smaller sample and printed for context:
it commits (and, at the library's default `synchronous=FULL`, fsyncs) once
per profile.

    python bench/bench_upsert.py [--events N] [--batch 1000] [--single-saves 2000]
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
from common import (
    DATABASE_ID,
    client,
    create_catalog,
    herald_in_process,
    herald_server,
    machine,
    profile_row,
    report,
    run,
    temp_dir,
    timed,
    wait_for_processors,
)
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Profile(Aggregate):
    """The baseline's aggregate: a profile's email and its field values."""

    @event("Created")
    def __init__(self, email: str, fields: dict[str, Any]) -> None:
        self.email = email
        self.fields = dict(fields)

    @event("FieldsUpdated")
    def update_fields(self, changes: dict[str, Any]) -> None:
        self.fields.update(changes)


class Profiles(Application[UUID]):
    """The baseline's application: upserts by email over its own index."""

    def __init__(self, dbname: Path) -> None:
        super().__init__(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(dbname)})
        self.by_email: dict[str, UUID] = {}

    def upsert(self, row: dict[str, Any]) -> Profile:
        fields = {k: v for k, v in row.items() if k != "email"}
        found = self.by_email.get(row["email"])
        if found is None:
            profile = Profile(row["email"], fields)
            self.by_email[row["email"]] = profile.id
            return profile
        profile = self.repository.get(found)
        changes = {k: v for k, v in fields.items() if profile.fields.get(k) != v}
        if changes:
            profile.update_fields(changes)
        return profile

    def upsert_batches(self, batches: list[list[dict[str, Any]]]) -> None:
        """Each batch's upserts recorded by one `save` (one transaction)."""
        for rows in batches:
            self.save(*(self.upsert(row) for row in rows))

    def upsert_each(self, rows: list[dict[str, Any]]) -> None:
        """A `save` (a transaction) per upsert."""
        for row in rows:
            self.save(self.upsert(row))


def _batches(count: int, size: int, generation: int) -> list[list[dict[str, Any]]]:
    return [
        [profile_row(n, generation) for n in range(start, min(start + size, count))]
        for start in range(0, count, size)
    ]


def _herald(work: Path, batches: dict[str, list[list[dict[str, Any]]]]) -> dict[str, float]:
    """Seconds per phase through a real server; each batch's result counts are checked."""
    data = work / "herald"
    with herald_in_process(data) as herald:
        create_catalog(herald)
    bodies = {
        phase: [orjson.dumps({"mode": "add_and_update", "match": "email", "rows": rows}) for rows in found]
        for phase, found in batches.items()
    }
    expected = {"create": "created", "update": "updated"}
    path = f"/api/v1/databases/{DATABASE_ID}/profiles/import"
    seconds: dict[str, float] = {}
    with herald_server(data) as base, client(base) as http:
        warm = orjson.dumps({"rows": [{"email": "warm-up@example.org"}]})
        http.post(path, content=warm).raise_for_status()
        wait_for_processors(http)
        for phase, posts in bodies.items():
            seconds[phase] = timed(partial(_post_all, http, path, posts, expected[phase]))
            seconds[phase + " projections"] = wait_for_processors(http)
    return seconds


def _post_all(http: httpx.Client, path: str, bodies: list[bytes], outcome: str) -> None:
    """Post the batches one after another; every row must come back as `outcome`."""
    for body in bodies:
        counts = http.post(path, content=body).raise_for_status().json()["counts"]
        if counts[outcome] != sum(counts.values()):
            raise RuntimeError(f"expected every row {outcome}, got {counts}")


def _baseline(work: Path, batches: dict[str, list[list[dict[str, Any]]]], single: int) -> dict[str, float]:
    seconds: dict[str, float] = {}
    app = Profiles(work / "eventsourcing.sqlite")
    for phase, found in batches.items():
        seconds[phase] = timed(partial(app.upsert_batches, found))
    app.close()
    samples = {phase: [r for rows in found for r in rows][:single] for phase, found in batches.items()}
    app = Profiles(work / "eventsourcing-single.sqlite")
    for phase, sample in samples.items():
        seconds[phase + " single"] = timed(partial(app.upsert_each, sample))
    app.close()
    return seconds


def main() -> None:
    """Time the two phases on both systems and print profiles/s with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="profiles to create, then update")
    parser.add_argument("--batch", type=int, default=1000, help="profiles per import request")
    parser.add_argument(
        "--single-saves",
        type=int,
        default=2000,
        help="profiles the baseline's save-per-upsert shape is timed on",
    )
    args = parser.parse_args()
    count = args.events
    batches = {"create": _batches(count, args.batch, 0), "update": _batches(count, args.batch, 1)}
    print(f"{machine()}; {count:,} profiles in batches of {args.batch:,}", flush=True)
    with temp_dir("upsert") as work:
        ours = _herald(work, batches)
        theirs = _baseline(work, batches, args.single_saves)
    single = min(args.single_saves, count)
    for phase in batches:
        report(
            f"upsert {phase}, herald serve over HTTP", count / ours[phase], "profiles", count / theirs[phase]
        )
        print(
            f"  projections caught up {ours[phase + ' projections']:.2f} s after the last response; "
            f"eventsourcing with a save per upsert ({single:,} profiles): "
            f"{single / theirs[phase + ' single']:,.0f} profiles/s",
            flush=True,
        )


if __name__ == "__main__":
    run(main)
