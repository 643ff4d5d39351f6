"""Emails/s end to end (render, track, sign, send, record) to an aiosmtpd sink, against bare aiosmtplib.

Herald: N queued messages of a broadcast (a personalised HTML email with
tracked links and a text version, DKIM-signed with a 2048-bit key, as the goal
asks) are sent by
the email worker through one pooled SMTP connection, then through eight; the
clock covers rendering again from the queued template version, building the
MIME message, signing, the SMTP exchange and recording the attempt, the commit
mark and the outcome in the log.

Baseline, same run, same sink: the same number of messages of the same size,
already built and signed, sent by a bare aiosmtplib loop over one persistent
connection, then over eight concurrent ones. The sink runs in its own process.

    python bench/bench_email.py [--messages 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import textwrap
import time

import aiosmtplib
from common import (
    broadcast,
    create_catalog,
    free_port,
    herald_in_process,
    machine,
    report,
    run,
    subscribed_profiles,
    temp_dir,
)

from herald.domain import senders as sd
from herald.senders.dkim import generate_key
from herald.services.aggregates import CommandContext
from herald.services.senders import PlainSenderSecrets

CONTEXT = CommandContext(actor="bench", source="bench")
HTML = """<html><head><style>p { font-family: Arial }</style></head><body>
<h1>Hello, {lead._fname}!</h1><p>Your plan: {lead.plan}. Points: {format(lead.points ",")}.</p>
<p><a href="https://shop.example.com/sale?u={lead._id}">Spring sale</a> |
<a href="https://shop.example.com/new">New arrivals</a></p>
<p><a href="{unsubscribe}">Unsubscribe</a></p></body></html>"""
SINK = textwrap.dedent(
    """
    import sys, time
    from aiosmtpd.controller import Controller
    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"
    controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    print(machine(), f"; {args.messages:,} messages per run", flush=True)
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        for connections in (1, 8):
            herald_rate, sent = _herald(args.messages, port, connections)
            bare_rate = asyncio.run(_bare(sent, port, connections))
            report(f"email end to end, {connections} connection(s)", herald_rate, "emails", bare_rate)
    finally:
        sink.kill()
        sink.wait()


def _herald(messages: int, port: int, connections: int) -> tuple[float, list[bytes]]:
    """Emails/s through Herald's worker, and the bytes of every message it sent (for the baseline)."""
    with temp_dir("bench-email") as data, herald_in_process(data) as herald:
        create_catalog(herald)
        subscribed_profiles(herald, messages)
        private, _ = generate_key(2048)
        relay = sd.SmtpRelaySettings(host="127.0.0.1", port=port, starttls="never")
        sender = sd.SenderSettings(
            name="sink",
            relay=relay,
            rate_per_second=10_000,
            connections=connections,
            dkim_selector="s1",
            dkim_domain="example.com",
        )
        herald.senders.set_sender("main", sender, PlainSenderSecrets(dkim_private_key=private), CONTEXT, True)
        rules = (sd.RouteRule(targets=(sd.RouteTarget(sender_id="main", percent=100),)),)
        herald.senders.set_virtual_sender("default", "Default", rules, CONTEXT)
        herald.campaigns.launch_now(broadcast(herald, HTML), CONTEXT)
        herald.runtime.drain()
        herald.email.concurrency = max(8, connections)
        waiting = herald.projections.send_queue.waiting()
        assert waiting == messages, waiting

        async def send_all() -> float:
            started = time.perf_counter()
            while await herald.email.run_once():
                herald.runtime.drain()
            elapsed = time.perf_counter() - started
            await herald.email.close()
            return elapsed

        elapsed = asyncio.run(send_all())
        herald.runtime.drain()
        assert herald.projections.send_queue.waiting() == 0
        queued = [e.data["message_id"] for e in herald.store.read_all(1) if e.type == "MessageQueued"]
        now = herald.clock.now()
        sent = [herald.email.channel.wire(herald.deliveries.queued(m), now) for m in queued]
        return messages / elapsed, sent


async def _bare(sent: list[bytes], port: int, connections: int) -> float:
    """Emails/s of a bare aiosmtplib loop sending the very bytes Herald sent, over persistent connections."""

    async def loop(share: list[bytes]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for n, data in enumerate(share):
            await client.sendmail("news@example.com", [f"user{n}@example.org"], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(loop(sent[i::connections]) for i in range(connections)))
    return len(sent) / (time.perf_counter() - started)


if __name__ == "__main__":
    run(main)
