"""The `herald` command: a real server on loopback, the log printer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from herald.api import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> tuple[str, Path]:
    """`herald serve` in a subprocess, as a user starts it; its URL and data directory."""
    port = _free_port()
    data = tmp_path / "data"
    env = {**os.environ, "HERALD_DATA_DIR": str(data), "HERALD_PORT": str(port)}
    env.pop("HERALD_ADMIN_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "herald.api.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 30
    try:
        while True:  # waiting for a process to bind its port, not for a processor
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        process.stdout.read().decode() if process.stdout else "no output"
                    ) from None
                time.sleep(0.05)
        yield url, data
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_generates_an_admin_token_and_serves_the_api(server: tuple[str, Path]) -> None:
    url, data = server
    token = (data / "admin-token").read_text().strip()
    assert (data / "admin-token").stat().st_mode & 0o777 == 0o600
    assert httpx.get(f"{url}/tokens").status_code == 401
    issued = httpx.post(
        f"{url}/tokens", json={"name": "reader", "role": "read"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert issued.status_code == 201, issued.text
    assert httpx.get(f"{url}/openapi.json").json()["openapi"] == "3.1.0"
    assert (data / "events.sqlite").exists() and (data / "readmodels.sqlite").exists()


def test_events_prints_the_log_as_json_lines(
    server: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, data = server
    token = (data / "admin-token").read_text().strip()
    for name in ("one", "two"):
        httpx.post(
            f"{url}/tokens",
            json={"name": name, "role": "track"},
            headers={"Authorization": f"Bearer {token}"},
        )
    capsys.readouterr()
    assert cli.main(["--data-dir", str(data), "events", "--type", "ApiTokenIssued"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["data"]["name"] for e in lines] == ["one", "two"]
    assert [e["position"] for e in lines] == [1, 2] and "token_hash" in lines[0]["data"]
    assert cli.main(["--data-dir", str(data), "events", "--after", "1", "--limit", "1"]) == 0
    [only] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["position"] == 2
