"""What checking a request body's shape costs: Herald's `parse_json` against bare `orjson.loads`.

Herald parses every JSON body with pydantic's parser (which keeps integers past 64 bits exact)
and walks it once for the limits (depth 32, strings of 1 MiB, 64-bit integers;
`api/request_body.py`). The baseline, same run, is `orjson.loads` alone, what the tracking
batch did before. Bodies: a 10,000-event tracking batch (about 1.4 MB) and a 10,000-row
profile import (about 1.1 MB), each parsed in alternating rounds; each one's best round counts.

    python bench/bench_body_limits.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson
from common import machine, report, run

from herald.api.request_body import parse_json


def _batch(rows: int) -> bytes:
    events = [
        {"event": "Product Viewed", "profile": {"email": f"u{i}@example.org"}, "event_id": f"ev-{i}",
         "properties": {"sku": f"A-{i % 97}", "price": 12.5, "tags": ["a", "b"], "qty": i % 5}}
        for i in range(rows)
    ]  # fmt: skip
    return orjson.dumps({"database_id": "1", "events": events})


def _import(rows: int) -> bytes:
    data = [
        {"email": f"user{i}@example.org", "_fname": f"Ann{i}", "plan": "gold", "points": i,
         "subscriptions": [{"resource_id": "7", "channel": "email", "email": f"user{i}@example.org"}]}
        for i in range(rows)
    ]  # fmt: skip
    return orjson.dumps({"mode": "add_and_update", "match": "email", "rows": data})


def _best(work: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(machine())
    for name, body in (
        ("tracking batch, 10,000 events", _batch(10_000)),
        ("import, 10,000 rows", _import(10_000)),
    ):
        assert parse_json(body) == orjson.loads(body)
        herald = _best(lambda b=body: parse_json(b), args.rounds)
        bare = _best(lambda b=body: orjson.loads(b), args.rounds)
        print(f"{name}: {len(body) / 1e6:.1f} MB; Herald {herald * 1000:.1f} ms, bare {bare * 1000:.1f} ms")
        report(f"{name}, bodies checked", 1 / herald, "bodies", baseline=1 / bare)


if __name__ == "__main__":
    run(main)
