"""The `herald` command: a real server on loopback, the log printer."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from herald.api import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    env.pop("HERALD_ADMIN_TOKEN", None)
    env.pop("HERALD_DATA_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "herald.api.cli", "serve", "--data-dir", str(data), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _banner(process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The server's first line of output (it prints it once listening); fails if it dies first."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().decode() if ready else ""
    if not line:
        process.kill()
        raise RuntimeError(process.communicate()[1].decode() or "no banner")
    return line


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`herald serve --data-dir D --port 0` in a subprocess, as a user starts it; its URL and data directory.

    The URL is the one its banner prints, used at once: the banner comes only when the port is bound."""
    data = tmp_path / "data"
    process = _serve(data, "--port", "0")
    try:
        banner = _banner(process)
        match = re.match(r"Herald on (http://127\.0\.0\.1:(\d+)) ", banner)
        assert match and match.group(2) != "0", banner
        url = f"{match.group(1)}/api/v1"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
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
    # the flag goes before the command or after it
    assert cli.main(["events", "--after", "1", "--limit", "1", "--data-dir", str(data)]) == 0
    [only] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["position"] == 2


def test_a_second_server_on_the_same_data_directory_says_why_in_one_line(
    server: tuple[str, Path],
) -> None:
    _, data = server
    second = _serve(data, "--port", str(_free_port()))
    out, err = second.communicate(timeout=60)
    assert second.returncode == cli.CANNOT_START
    assert out == b""
    [line] = err.decode().splitlines()
    assert re.fullmatch(
        rf"herald: herald serve \(pid \d+\) already runs Herald's processors over {re.escape(str(data))}; "
        r"stop it first, or give this one another --data-dir",
        line,
    ), line


def test_a_taken_port_is_one_line_and_the_same_exit_status(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = _serve(tmp_path / "data", "--port", str(taken.getsockname()[1]))
        out, err = process.communicate(timeout=60)
    assert process.returncode == cli.CANNOT_START and out == b""
    [line] = err.decode().splitlines()
    assert "address already in use" in line


def test_settings_herald_cannot_use_are_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_BOT_RULES", '{"prefetch_seconds": "soon"}')
    assert cli.main(["events", "--data-dir", str(tmp_path)]) == cli.BAD_CONFIGURATION
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("herald: HERALD_BOT_RULES.prefetch_seconds: Input should be a valid number")
