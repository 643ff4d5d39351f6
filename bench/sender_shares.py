"""Sender workers in processes of their own, as `herald send --processes N` runs them, for the benchmarks.

`herald send --processes N` starts N - 1 more senders over the same data directory, each taking its
share of the queue (`worker.part`, by message id) and running no processor (the lead process keeps
the read models). A benchmark cannot time the CLI's start-up (imports, wiring) as sending, so here
each other share is started, built and waiting before the clock starts, and let go when it does:
the same worker with the same `part`, over the same files, with no processor; it stops when told.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from common import REPO, TOKEN

SHARE = """import asyncio, sys, threading
from pathlib import Path
from herald.api.wiring import build
from herald.infra.config import Settings
data, channel, index, parts, concurrency = sys.argv[1:6]
herald = build(Settings(data_dir=Path(data), admin_token=sys.argv[6], reports_engine="off"))
worker = getattr(herald, channel)
worker.part, worker.concurrency = (int(index), int(parts)), int(concurrency)
print("ready", flush=True)
sys.stdin.readline()
import time
cpu = time.process_time()
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
async def share():
    while not stop.is_set():
        if not await worker.run_once(limit=2000):  # its receipts settle at each pass's start and end
            await asyncio.sleep(0.002)
    await worker.close()
asyncio.run(share())
print(f"cpu {time.process_time() - cpu}", flush=True)
herald.close()
"""


@contextlib.contextmanager
def other_shares(
    data_dir: Path, channel: str, processes: int, concurrency: int, cpu: list[float] | None = None
) -> Iterator[Callable[[], None]]:
    """Shares 1 … `processes` - 1 of `channel`'s queue, each in its own process, built and waiting;
    yields what lets them go (call it as the clock starts). They stop at the end of the block, and
    the CPU seconds each used from its go are added to `cpu`."""
    shares = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SHARE,
                str(data_dir),
                channel,
                str(i),
                str(processes),
                str(concurrency),
                TOKEN,
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for i in range(1, processes)
    ]
    try:
        for share in shares:
            assert share.stdout is not None and share.stdout.readline().strip() == b"ready"

        def go() -> None:
            for share in shares:
                assert share.stdin is not None
                share.stdin.write(b"go\n")
                share.stdin.flush()

        yield go
    finally:
        for share in shares:
            if share.stdin is not None:
                share.stdin.close()  # stop
        for share in shares:
            assert share.stdout is not None
            said = share.stdout.read().split()
            if cpu is not None and said[:1] == [b"cpu"]:
                cpu.append(float(said[1]))
            try:
                share.wait(timeout=30)
            except subprocess.TimeoutExpired:
                share.kill()
                share.wait()
