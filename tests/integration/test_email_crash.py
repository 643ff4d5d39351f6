"""Crash injection: the sender process killed (SIGKILL) again and again during a 10,000-message send.

The test queues 10,000 messages, then runs `herald send` as a child process
against an aiosmtpd sink, kills it with SIGKILL each time the sink has taken
another portion (so the kills land mid-transaction, mid-append, mid-batch),
restarts it, and at the end counts the messages the sink received per
Herald message id: every one exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herald.api.wiring import Herald, build
from herald.domain import campaigns as cp
from herald.domain import senders as sd
from herald.domain import templates as tp
from herald.infra.config import Settings
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.builders import RESOURCE, create_resource, customers, email_subscription
from tests.smtp_sink import MessageCounter, smtp_server

MESSAGES = 10_000
KILL_AFTER = (1_200, 3_500, 6_000, 8_300)  # messages at the sink when the sender is killed
CONTEXT = CommandContext(actor="test", source="test")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink() -> Iterator[tuple[MessageCounter, int]]:
    handler = MessageCounter()
    with smtp_server(handler) as port:
        yield handler, port


def queue_messages(herald: Herald, port: int, count: int = MESSAGES, connections: int = 4) -> None:
    """`count` profiles and a broadcast to them, run to the queue; a sender at the sink."""
    customers(herald)
    create_resource(herald)
    for start in range(0, count, 5_000):
        rows = [
            {"email": f"u{i}@mail.example", "subscriptions": [email_subscription(f"u{i}@mail.example")]}
            for i in range(start, min(start + 5_000, count))
        ]
        herald.profiles.import_rows("1", rows, ImportOptions(), CONTEXT)
    relay = sd.SmtpRelaySettings(host="127.0.0.1", port=port, starttls="never")
    settings = sd.SenderSettings(name="sink", relay=relay, rate_per_second=10_000, connections=connections)
    herald.senders.set_sender("main", settings, sd.SenderSecrets(), CONTEXT, create=True)
    rules = (sd.RouteRule(targets=(sd.RouteTarget(sender_id="main", percent=100),)),)
    herald.senders.set_virtual_sender("default", "Default", rules, CONTEXT)
    content = tp.TemplateContent(email=tp.EmailContent(subject="Hi", html="<p>Hi {lead.email}</p>"))
    template_id, _ = herald.templates.create_template(tp.TemplateCard(name="Hi"), content, False, CONTEXT)
    campaign = cp.CampaignSettings(
        name="Load",
        type=cp.CampaignType.BROADCAST,
        channel="email",
        resource_id=RESOURCE,
        template_ids=(template_id,),
        audience=cp.Audience(id="1"),
    )
    herald.runtime.drain()
    campaign_id, _ = herald.campaigns.create(campaign, CONTEXT)
    herald.campaigns.launch_now(campaign_id, CONTEXT)
    herald.runtime.drain()
    assert herald.projections.send_queue.waiting() == count


def start_sender(data_dir: Path, *flags: str) -> subprocess.Popen[bytes]:
    """`herald send` as a child process over `data_dir` (`--until-empty` unless other flags are given)."""
    env = {
        **os.environ,
        "HERALD_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(REPO),
        "HERALD_REPORTS_ENGINE": "off",
    }
    command = [sys.executable, "-m", "herald.api.cli", "send", *(flags or ("--until-empty",))]
    return subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE)


def wait_until(condition: Any, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll `condition` while the sender runs (it is a separate process: there is nothing to drive)."""
    while not condition():
        if process.poll() is not None:
            return
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the sender made no progress in time")
        time.sleep(0.01)


@pytest.mark.slow
def test_killing_the_sender_loses_and_doubles_nothing(
    tmp_path: Path, sink: tuple[MessageCounter, int]
) -> None:
    relay, port = sink
    data_dir = tmp_path / "data"
    herald = build(Settings(data_dir=data_dir, admin_token="t", reports_engine="off"))
    try:
        queue_messages(herald, port)
    finally:
        herald.close()

    deadline = time.monotonic() + 600
    for threshold in KILL_AFTER:
        sender = start_sender(data_dir)
        wait_until(lambda: relay.received >= threshold, sender, deadline)  # noqa: B023 - used at once
        sender.send_signal(signal.SIGKILL)
        sender.wait()
    sender = start_sender(data_dir)
    _, errors = sender.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert sender.returncode == 0, errors.decode()

    doubled = [message for message, count in relay.ids.items() if count > 1]
    assert doubled == []
    assert len(relay.ids) == MESSAGES

    herald = build(Settings(data_dir=data_dir, admin_token="t", reports_engine="off"))
    try:
        herald.runtime.drain()
        assert herald.projections.send_queue.waiting() == 0
        delivered = {e.data["message_id"] for e in herald.store.read_all(1) if e.type == "MessageDelivered"}
        assert delivered == set(relay.ids)  # the log and the sink agree on every message
    finally:
        herald.close()
