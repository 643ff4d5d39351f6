"""Replay a log with this tree's code and print every projection's checksum, to compare trees.

The same log replayed by two versions of Herald must give identical read
models: run this script from each tree on a copy of one log (the newer code
may migrate the file it opens) and compare the printed JSON.

    python bench/replay_checksums.py generate DIR [--events N] [--profiles P]
    python bench/replay_checksums.py replay LOG OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_replay import _generate
from common import run, timed

from herald.api.wiring import build_projections
from herald.infra.clock import SystemClock
from herald.infra.readmodel_db import SqliteCheckpoints
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.processors.runtime import InProcessRuntime


def _replay(log: Path, out: Path) -> dict[str, str]:
    store = SqliteEventStore(log, SystemClock())
    try:
        projections = build_projections(out, store)
        checkpoints = SqliteCheckpoints(projections.profiles.conn)
        runtime = InProcessRuntime(store, checkpoints, projections=projections.all(), batch_size=20_000)
        seconds = timed(lambda: runtime.drain(until=store.head_position()))
        print(f"replayed {store.head_position():,} events in {seconds:.1f} s", file=sys.stderr)
        checksums = projections.checksums()
        projections.profiles.conn.close()
        return checksums
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    generate = sub.add_parser("generate", help="write a log as bench_replay does, into DIR/herald")
    generate.add_argument("dir", type=Path)
    generate.add_argument("--events", type=int, default=200_000)
    generate.add_argument("--profiles", type=int)
    replay = sub.add_parser("replay", help="replay LOG into the new read-model file OUT; print checksums")
    replay.add_argument("log", type=Path)
    replay.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "generate":
        _generate(args.dir / "herald", args.events, args.profiles or max(args.events // 20, 1))
    else:
        print(json.dumps(_replay(args.log, args.out), indent=1, sort_keys=True))


if __name__ == "__main__":
    run(main)
