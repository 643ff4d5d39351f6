"""Who runs the processors over a data directory: one process at a time, and the others say who does.

`herald serve` (embedded engine), `herald send` and `herald replay` each fold
the log into the directory's read models and the embedded report store; two at
once would corrupt the read models (each with its own checkpoints in memory),
and chDB refuses a second process outright with a C++ message buried in a
traceback. So each takes an exclusive `flock` on `<data dir>/processors.lock`
before it opens anything, and writes its pid and command there; the kernel
drops the lock when the process dies, however it dies, so a stale file never
blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "processors.lock"


class DataDirInUse(Exception):
    """Another Herald process holds the data directory's processors lock."""


def hold_processors_lock(data_dir: Path, command: str) -> IO[str]:
    """Take the data directory's lock for the life of the returned handle; DataDirInUse if it is held."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(
            f"{holder} already runs Herald's processors over {data_dir}; "
            "stop it first, or give this one another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"herald {command} (pid {os.getpid()})\n")
    handle.flush()
    return handle


class FileLock:
    """An exclusive `flock` on `path`, taken without waiting, held until released or the process dies.

    The holder writes its pid into the file, so `cat` says who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True), or say it is not (False); True again while held."""
        if self._handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()  # closing the file drops the lock
