"""README's walk-through, run as written: its shell block against a real `herald serve` and its mailbox.

The block is taken from README.md itself, so the two cannot drift apart. Only
its two port numbers are changed (to free ones: other tests run at the same
time); `herald` is this checkout's command. The walk-through starts the
mailbox itself; the test then checks what it promises: Ann's mails received,
Cyd's suppressed, and the summary report counting her open and click, and the
machine's open on its own. The Welcome scenario's block goes on in the same
shell: its bad graph refused with the node's path, Dee's welcome mail on her
import, her wait at the pause, and the summary by scenario.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
HEADING = "## Five minutes with curl, ending in a mail received"
SCENARIO_HEADING = "## The Welcome scenario (the guide's §1.9)"  # goes on in the same shell
HERALD_ADDRESS, MAILBOX_PORT = "127.0.0.1:8080", "2525"


def walk_through() -> str:
    """The first shell block after the walk-through's heading in README.md, then the Welcome scenario's."""
    readme = (REPO / "README.md").read_text()
    blocks = []
    for heading in (HEADING, SCENARIO_HEADING):
        assert heading in readme
        block = re.search(r"```sh\n(.*?)```", readme[readme.index(heading) :], re.DOTALL)
        assert block is not None
        blocks.append(block.group(1))
    return "\n".join(blocks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory, and this checkout's `herald` first on PATH (a user's is `pip install .`'s)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    herald = bin_dir / "herald"
    herald.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m herald.api.cli "$@"\n')
    herald.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    return work


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    bin_dir = workdir.parent / "bin"
    return env | {"PATH": f"{bin_dir}:{env['PATH']}", "PYTHONPATH": str(REPO)}


@pytest.fixture
def server(workdir: Path) -> Iterator[str]:
    """`herald serve` in the directory, as the README's first lines start it (on a free port)."""
    port = _free_port()
    # Its log goes to a file (a pipe nobody reads would stall it once full); a failing walk shows it.
    with (workdir.parent / "server.log").open("wb") as log:
        process = subprocess.Popen(
            ["herald", "serve", "--port", str(port)],
            cwd=workdir,
            env=_env(workdir),
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        banner = process.stdout.readline().decode() if ready else ""
        assert banner.startswith(f"Herald on http://127.0.0.1:{port} "), banner or _server_log(workdir)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _server_log(workdir: Path) -> str:
    return (workdir.parent / "server.log").read_text(errors="replace")[-3000:]


def test_the_readme_walk_through_ends_in_a_mail_received_and_counted(workdir: Path, server: str) -> None:
    assert shutil.which("curl") and shutil.which("python3"), "the walk-through needs curl and python3"
    script = walk_through()
    assert HERALD_ADDRESS in script and f"--port {MAILBOX_PORT}" in script
    mailbox_port = str(_free_port())
    script = script.replace(HERALD_ADDRESS, server).replace(MAILBOX_PORT, mailbox_port)
    # -e: a step that fails (an id missing from an answer, a mail that never comes) stops it there.
    # Output goes to files: the mailbox it starts in the background keeps a pipe open after it ends.
    out, err = workdir.parent / "out.txt", workdir.parent / "err.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        walk = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=workdir,
            env=_env(workdir),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group: the mailbox it starts goes with it
        )
        try:
            walk.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the group is gone if the mailbox is
                os.killpg(walk.pid, signal.SIGTERM)
    output = out.read_text()
    assert walk.returncode == 0, (
        f"{output[-3000:]}\n{err.read_text()[-3000:]}\nthe server's log:\n{_server_log(workdir)}"
    )

    # the mails received: the broadcast's and the trigger's, both to Ann (Cyd's address bounced)
    received = sorted((workdir / "mail").glob("*.eml"))
    assert [p.name for p in received] == ["1.eml", "2.eml", "3.eml"]
    mails = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in received]
    assert [(m["To"], m["Subject"]) for m in mails] == [
        ("ann@example.org", "Hi Ann"),
        ("ann@example.org", "Order 42"),
        ("dee@example.org", "Hi Dee"),  # the Welcome scenario's node 2, on Dee's import
    ]
    assert (
        (workdir / "mail" / "1.txt")
        .read_text()
        .startswith("Hello Ann\n\nYour page (https://trk.example.com/t/click/")
    )
    assert "the User-Agent contains 'curl/'" in output  # the history said why curl's open did not count
    assert "302 https://shop.example.com/C-1" in output  # the click went where the link points
    assert "graph.nodes.1.next" in output  # the loop no pause breaks, refused with the node's path
    assert '"entered":1,"completed":0' in output and '"in_process":1' in output  # Dee waits at node 3
    assert '"columns":["scenario","email_queued"],"rows":[["",2],["1",1]]' in output  # her mail, by scenario

    # the report, asked here: one delivered mail per campaign, Ann's open and click, the machine's open
    token = (workdir / "herald-data" / "admin-token").read_text().strip()
    today = datetime.now(UTC).date()
    period = {"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()}  # midnight-proof
    metrics = "email_delivered,email_unique_opens,email_unique_clicks,email_bot_opens,email_suppressed"
    answer = httpx.get(
        f"http://{server}/api/v1/reports/summary",
        params={**period, "group_by": "campaign", "metrics": metrics},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [["1", 1, 1, 1, 1, 1], ["2", 1, 0, 0, 0, 0], ["3", 1, 0, 0, 0, 0]]
