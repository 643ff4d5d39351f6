"""`herald send`: the senders (one worker per channel) on their own, in one process or several
sharing the queue.

The process `herald send` starts holds the processors lock: it folds the log
(the send queue is a projection), settles what a previous run left mid-way,
and only then starts `--processes N - 1` more senders. Each of the N takes its
share of the queue (`part`: by message id), so they do not race for the same
messages; the attempt's version check would stop two that did from both
sending one. The others run no processor: they read the queue the first one
keeps. They stop with it (SIGTERM), or, with `--until-empty`, once nothing is
waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

from herald.api.wiring import SEND_IDLE_SECONDS, Herald, build
from herald.infra.config import Settings

PART_HELP = "I/N: run as sender I of N sharing the queue, with no processors (started by --processes)"


def send(settings: Settings, until_empty: bool, processes: int = 1, part: str | None = None) -> int:
    """Run the sender (`part`: as one of several started by another); returns the exit status."""
    herald = build(settings)
    try:
        if part is not None:
            index, parts = _part(part)
            for worker in herald.workers:
                worker.part = (index, parts)
            asyncio.run(_share(herald, until_empty))
        else:
            asyncio.run(_lead(herald, settings, until_empty, processes))
    finally:
        herald.close()
    return 0


async def _lead(herald: Herald, settings: Settings, until_empty: bool, processes: int) -> None:
    """The processors, the recovery, the others started, and share 0 of the queue."""
    herald.runtime.drain()
    for worker in herald.workers:
        await worker.recover()
        worker.part = (0, processes)
    others = [_start(settings, f"{i}/{processes}", until_empty) for i in range(1, processes)]
    try:
        while True:
            herald.runtime.drain()
            sent = await _pass(herald)
            if not sent and until_empty and herald.projections.send_queue.waiting() == 0:
                for other in others:
                    await asyncio.to_thread(other.wait)
                return
            if not sent:
                await asyncio.sleep(SEND_IDLE_SECONDS)
    finally:
        for other in others:
            if other.poll() is None:
                other.terminate()
        await _close(herald)


async def _share(herald: Herald, until_empty: bool) -> None:
    """One share of the queue, read from the read models the lead process keeps."""
    try:
        while True:
            sent = await _pass(herald)
            if not sent and until_empty and herald.projections.send_queue.waiting() == 0:
                return
            if not sent:
                await asyncio.sleep(SEND_IDLE_SECONDS)
    finally:
        await _close(herald)


async def _pass(herald: Herald) -> int:
    """One pass of every channel's worker; returns the attempts."""
    return sum([await worker.run_once() for worker in herald.workers])


async def _close(herald: Herald) -> None:
    for worker in herald.workers:
        await worker.close()


def _start(settings: Settings, part: str, until_empty: bool) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "herald.api.cli",
        "--data-dir",
        str(settings.data_dir),
        "send",
        "--part",
        part,
    ]
    return subprocess.Popen([*argv, "--until-empty"] if until_empty else argv)


def _part(text: str) -> tuple[int, int]:
    with contextlib.suppress(ValueError):
        index, parts = (int(n) for n in text.split("/"))
        if 0 <= index < parts:
            return index, parts
    raise SystemExit(f"herald send: --part takes I/N with 0 <= I < N, not {text!r}")
