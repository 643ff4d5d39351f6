"""Runs Debian's `clickhouse-server` (18.16) on loopback for tests, from a throwaway directory.

The server gets a minimal config.xml and users.xml written into a temp
directory, keeps its data there, listens on one free native-protocol port on
127.0.0.1 and runs in UTC. Readiness is the server's own "Ready for
connections" log line (read from its console output), then a `SELECT 1`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

INSTALL_HINT = (
    "clickhouse-server is not installed: run scripts/test, which installs Debian's clickhouse-server "
    "(apt-get install clickhouse-server) before running the tests"
)

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <console>1</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{port}</tcp_port>
    <path>{data}/</path>
    <tmp_path>{data}/tmp/</tmp_path>
    <user_files_path>{data}/user_files/</user_files_path>
    <format_schema_path>{data}/format_schemas/</format_schema_path>
    <users_config>{users}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
"""

_READY = "Ready for connections"


def server_binary() -> str | None:
    """The clickhouse-server executable, also where /usr/sbin is not on PATH."""
    found = shutil.which("clickhouse-server")
    if found:
        return found
    fallback = Path("/usr/sbin/clickhouse-server")
    return str(fallback) if os.access(fallback, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ClickHouseServer:
    """One clickhouse-server process in `workdir`; `start()` returns once it answers `SELECT 1`."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = workdir
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.started_in: float | None = None  # seconds from spawn to the first answered query
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        began = time.monotonic()
        config = self._write_config()
        self._process = subprocess.Popen(
            [self.binary, f"--config-file={config}"],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(target=self._drain, args=(self._process.stdout,), daemon=True)
        self._reader.start()
        # The reader sets the event on the ready line, or at EOF if the server dies first.
        if not self._ready.wait(timeout) or self._process.poll() is not None:
            self.stop()
            raise RuntimeError(f"clickhouse-server did not start:\n{self._log_tail()}")
        self._check_answers()
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _write_config(self) -> Path:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        users = self.workdir / "users.xml"
        users.write_text(_USERS)
        config = self.workdir / "config.xml"
        config.write_text(_CONFIG.format(port=self.port, data=escape(str(data)), users=escape(str(users))))
        return config

    def _drain(self, stream: IO[str]) -> None:
        # Keep reading until the process ends, so a full pipe never blocks the server.
        with self.log_path.open("a") as log:
            for line in stream:
                log.write(line)
                log.flush()
                if _READY in line:
                    self._ready.set()
        self._ready.set()

    def _check_answers(self) -> None:
        from clickhouse_driver import Client  # type: ignore[import-untyped]

        client = Client(self.host, port=self.port, connect_timeout=10)
        try:
            if client.execute("SELECT 1") != [(1,)]:
                raise RuntimeError("clickhouse-server answered SELECT 1 wrongly")
        finally:
            client.disconnect()

    def _log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no output)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
