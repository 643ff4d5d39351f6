"""Several sender processes on one queue: every message sent once, whoever takes it.

Two `herald send --part 0/1` processes both take every due message (the worst
overlap: no split of the queue), while this test runs the processors that keep
the queue; the attempt's version check lets only one of them send each
message. Then `herald send --processes 2`, which splits the queue between its
two processes, sends a second broadcast and stops when it is done.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from herald.api.wiring import Herald, build
from herald.infra.config import Settings
from tests.integration.test_email_crash import Sink, queue_messages, sink, start_sender

__all__ = ["sink"]  # the fixture
MESSAGES = 300


def _data_dir(tmp_path: Path, port: int, connections: int) -> Path:
    data_dir = tmp_path / "data"
    herald = build(Settings(data_dir=data_dir, admin_token="t", reports_engine="off"))
    try:
        queue_messages(herald, port, MESSAGES, connections)
    finally:
        herald.close()
    return data_dir


def _sent_once(relay: Sink, herald: Herald) -> None:
    assert [m for m, count in relay.ids.items() if count > 1] == []
    assert len(relay.ids) == MESSAGES
    events = list(herald.store.read_all(1))
    attempts = [e.data["message_id"] for e in events if e.type == "MessageSendAttempted"]
    assert sorted(attempts) == sorted(relay.ids)  # one attempt each: no sender started a taken message
    assert {e.data["message_id"] for e in events if e.type == "MessageDelivered"} == set(relay.ids)


def test_two_senders_taking_every_message_never_send_one_twice(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    relay, port = sink
    data_dir = _data_dir(tmp_path, port, connections=1)  # one connection per sender: a peer each
    senders = [start_sender(data_dir, "--part", "0/1") for _ in range(2)]
    herald = build(Settings(data_dir=data_dir, admin_token="t", reports_engine="off"))
    try:
        deadline = time.monotonic() + 240
        while herald.projections.send_queue.waiting():  # the processors the senders read the queue of
            assert all(s.poll() is None for s in senders), [s.stderr.read() for s in senders if s.stderr]
            assert time.monotonic() < deadline, "the senders made no progress in time"
            herald.runtime.drain()
            time.sleep(0.02)  # the senders are other processes: there is nothing to drive
        _sent_once(relay, herald)
        assert len(relay.peers) == 2  # both senders sent
    finally:
        for sender in senders:
            sender.terminate()
            sender.wait()
        herald.close()


def test_send_with_two_processes_splits_the_queue_and_stops_when_done(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    relay, port = sink
    data_dir = _data_dir(tmp_path, port, connections=1)
    sender = start_sender(data_dir, "--processes", "2", "--until-empty")
    try:
        _, errors = sender.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        sender.kill()
        raise
    assert sender.returncode == 0, errors.decode()
    herald = build(Settings(data_dir=data_dir, admin_token="t", reports_engine="off"))
    try:
        herald.runtime.drain()
        assert herald.projections.send_queue.waiting() == 0
        _sent_once(relay, herald)
        assert len(relay.peers) == 2
    finally:
        herald.close()
