"""Tracked events/s, durable, through `herald serve`'s batch endpoint, against a bare Starlette endpoint.

Herald: `POST /api/v1/track/batch` with 10,000 events a request, each event
naming its profile by email (profiles imported and projected beforehand, so
every event matches), in a second run by an anonymous id, and in a third by
email with a random uuid4 client id (`event_id`, as Segment's libraries send
`messageId`); the third run's first request is then sent again and every
event must come back `duplicate` (exact dedup). A response means the batch is
committed to the log. The clock runs from the first
request to the last response; the server's processors (which read every
appended event back) run in the same process meanwhile, as they do in
production, and their remaining lag is printed.

Baseline, same run: a Starlette app served by uvicorn the same way (one
process, same uvicorn settings) whose endpoint `orjson.loads` the same
bodies and stores nothing.

The client cannot be the bottleneck: bodies are serialized with orjson before
the clock starts and sent over keep-alive `httpx.Client`s from `--clients`
threads.

    python bench/bench_ingest.py [--events N] [--batch 10000] [--profiles P] [--clients 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from common import (
    DATABASE_ID,
    HOST,
    client,
    create_catalog,
    email,
    free_port,
    herald_in_process,
    herald_server,
    machine,
    profile_row,
    report,
    run,
    server,
    temp_dir,
    timed,
    wait_for_processors,
)

from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions

TRACK = "/api/v1/track/batch"
_CATEGORIES = ("shoes", "bags", "coats", "hats")


def bare_app() -> Any:
    """The baseline: parse the batch, count it, store nothing."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def track(request: Request) -> Response:
        body = orjson.loads(await request.body())
        counts = {"accepted": len(body["events"]), "duplicate": 0, "error": 0}
        return Response(orjson.dumps({"counts": counts}), media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route(TRACK, track, methods=["POST"]), Route("/api/v1/health", health)])


def _serve_bare(port: int) -> None:
    import uvicorn

    # As `herald serve` runs uvicorn, so the two servers differ only in the app.
    uvicorn.run(bare_app(), host=HOST, port=port, log_level="warning")


def _bodies(
    run_id: str, count: int, batch: int, profiles: int, anonymous: bool, random_ids: bool = False
) -> list[bytes]:
    bodies = []
    seeded = random.Random(run_id)  # the same ids every run, none repeated within one
    for start in range(0, count, batch):
        events = []
        for n in range(start, min(start + batch, count)):
            event: dict[str, Any] = {
                "event": "Viewed product",
                "properties": {
                    "product_id": f"sku-{n % 5000}",
                    "price": 100 + n % 900,
                    "category": _CATEGORIES[n % 4],
                },
                "event_id": str(uuid.UUID(int=seeded.getrandbits(128), version=4))
                if random_ids
                else f"{run_id}-{n}",
            }
            if anonymous:
                event["anonymous_id"] = f"anon-{(n * 7919) % profiles}"
            else:
                event["profile"] = {"email": email((n * 7919) % profiles)}
            events.append(event)
        bodies.append(orjson.dumps({"database_id": DATABASE_ID, "events": events}))
    return bodies


def _send(base: str, bodies: list[bytes], clients: int, expect: str = "accepted") -> float:
    """Seconds to post every body from `clients` threads; every event must come back `expect`."""

    def worker(part: list[bytes]) -> None:
        with client(base) as http:
            for body in part:
                counts = http.post(TRACK, content=body).raise_for_status().json()["counts"]
                if counts[expect] != sum(counts.values()):
                    raise RuntimeError(f"expected every event {expect}, got {counts}")

    parts = [bodies[i::clients] for i in range(clients)]

    def all_parts() -> None:
        with ThreadPoolExecutor(clients) as pool:
            for done in [pool.submit(worker, p) for p in parts]:
                done.result()

    return timed(all_parts)


def prepare_profiles(data: Path, profiles: int) -> None:
    """The catalog and `profiles` profiles, imported and projected, so events find them by email."""
    with herald_in_process(data) as herald:
        create_catalog(herald)
        for start in range(0, profiles, 5000):
            rows = [profile_row(n, 0) for n in range(start, min(start + 5000, profiles))]
            herald.profiles.import_rows(DATABASE_ID, rows, ImportOptions(), CommandContext(actor="bench"))
        herald.runtime.drain()


def main() -> None:
    """Time Herald's two runs and the bare endpoint; print events/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument("--batch", type=int, default=10_000, help="events per request")
    parser.add_argument("--profiles", type=int, default=20_000, help="profiles the events are spread over")
    parser.add_argument("--clients", type=int, default=2, help="client threads")
    args = parser.parse_args()
    print(
        f"{machine()}; {args.events:,} events per run, {args.batch:,} per request, "
        f"{args.profiles:,} profiles, {args.clients} client threads",
        flush=True,
    )
    runs = {
        "known": _bodies("known", args.events, args.batch, args.profiles, anonymous=False),
        "anon": _bodies("anon", args.events, args.batch, args.profiles, anonymous=True),
        "uuid4": _bodies("uuid4", args.events, args.batch, args.profiles, anonymous=False, random_ids=True),
    }
    warm = {
        name: _bodies(f"warm-{name}", args.batch // 10, args.batch // 10, args.profiles, name == "anon")
        for name in runs
    }
    seconds: dict[str, float] = {}
    with temp_dir("ingest") as work:
        data = work / "herald"
        seconds["setup"] = timed(lambda: prepare_profiles(data, args.profiles))
        with herald_server(data) as base, client(base) as http:
            for name, bodies in runs.items():
                _send(base, warm[name], 1)
                wait_for_processors(http)
                seconds[name] = _send(base, bodies, args.clients)
                seconds[name + " lag"] = wait_for_processors(http)
            _send(base, runs["uuid4"][:1], 1, expect="duplicate")
        port = free_port()
        argv = [sys.executable, __file__, "--serve-bare", str(port)]
        with server(argv, port, work / "bare.log") as base:
            _send(base, warm["known"], 1)
            seconds["bare"] = _send(base, runs["known"], args.clients)
    print(f"setup: {args.profiles:,} profiles imported and projected in {seconds['setup']:.1f} s")
    bare = args.events / seconds["bare"]
    labels = {
        "known": "profiles by email",
        "anon": "anonymous ids",
        "uuid4": "profiles by email, uuid4 client ids (exact dedup checked)",
    }
    for name, label in labels.items():
        report(f"track batch, {label}, herald serve over HTTP", args.events / seconds[name], "events", bare)
        print(f"  processors caught up {seconds[name + ' lag']:.2f} s after the last response", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-bare"]:
        _serve_bare(int(sys.argv[2]))
    else:
        run(main)
