"""SMS and web push messages/s end to end through Herald's workers, against the bare client libraries.

Herald: a broadcast to N profiles (an SMS template, then a push template, personalised with the
profile's name) is launched and queued first; the clock then covers what the channel's worker
does per message: read the message's stream, render it again from its queued template version
(an SMS's link shortened on the tracking domain and recorded before it leaves), route it through
the virtual sender, record the attempt, the commit mark and the gateway's answer in the log, and
the exchange itself: SMPP submit_sm in two UCS-2 parts on one transceiver bind with every receipt
parsed, matched to its message and recorded (`MessageDeliveryReported`, `MessageDelivered`); a
web push encrypted (aes128gcm) and VAPID-signed to one of 50 browser subscriptions.

Baselines, same run, same servers (their own processes): bare smpplib writing the same number of
two-part messages from one thread while a reader thread takes the responses; pywebpush's
`webpush_async` over one shared aiohttp session (`bench_channels.py` has both).

Each line is followed by the same per CPU second (`/s` there: per CPU second) of the sender
processes (Herald's: every share's, the processors with them; the baseline's: its process), which
the other sessions' load on the shared cores moves far less than the wall clock.

`--processes N` sends with N workers sharing the queue as `herald send --processes N` does (this
process's worker takes share 0 and runs the processors; the others are started, built and waiting
before the clock starts: `sender_shares.py`).

    python bench/bench_channels_e2e.py [--sms 3000] [--push 2000] [--processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable

import orjson
from bench_channels import PUSH, SMSC, bare_push, bare_sms, child
from common import (
    DATABASE_ID,
    RESOURCE_ID,
    Herald,
    create_catalog,
    free_port,
    herald_in_process,
    machine,
    report,
    run,
    temp_dir,
)
from sender_shares import other_shares

from herald.domain import campaigns as cp
from herald.domain import resources as rs
from herald.domain import senders as sd
from herald.domain import templates as tp
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from herald.services.senders import PlainSenderSecrets
from tests.channel_servers import Browser

CONTEXT = CommandContext(actor="bench", source="bench")
SMS_BODY = "Привет, {lead._fname}! Новая коллекция уже в продаже: https://shop.example.com/new"
CONCURRENCY = 64


def _channels(herald: Herald) -> None:
    """The bench resource's SMS and web push channels besides its email one."""
    for settings in (
        rs.SmsSettings(caller_id="AWESOME"),
        rs.PushSettings(platforms=(rs.PushPlatform.CHROME,), providers=(rs.PushProvider.WEBPUSH,)),
    ):
        herald.aggregates.execute(
            rs.resource_decider,
            rs.resource_stream(RESOURCE_ID),
            rs.EnableChannel(RESOURCE_ID, settings),
            CONTEXT,
        )


def _profiles(herald: Herald, count: int, subscription: dict[str, str], contact: list[str]) -> None:
    rows = [
        {
            "_fname": f"Anna{n}",
            "subscriptions": [{"resource_id": RESOURCE_ID, **subscription, **_c(contact[n])}],
        }
        for n in range(count)
    ]
    for start in range(0, count, 10_000):
        herald.profiles.import_rows(DATABASE_ID, rows[start : start + 10_000], ImportOptions(), CONTEXT)
    herald.runtime.drain()


def _c(value: str) -> dict[str, str]:
    return {"phone": value} if value.startswith("+") else {"token": value}


def _launched(herald: Herald, channel: str, content: tp.TemplateContent) -> None:
    template_id, _ = herald.templates.create_template(tp.TemplateCard(name=channel), content, False, CONTEXT)
    settings = cp.CampaignSettings(
        name=channel,
        type=cp.CampaignType.BROADCAST,
        channel=channel,
        resource_id=RESOURCE_ID,
        template_ids=(template_id,),
        audience=cp.Audience(id=DATABASE_ID),
    )
    herald.runtime.drain()
    campaign_id, _ = herald.campaigns.create(settings, CONTEXT)
    herald.campaigns.launch_now(str(campaign_id), CONTEXT)
    herald.runtime.drain()


def _sender(herald: Herald, channel: str, settings: sd.SenderSettings, password: str = "") -> None:
    herald.senders.set_sender(channel, settings, PlainSenderSecrets(password=password), CONTEXT, True)
    rules = (sd.RouteRule(targets=(sd.RouteTarget(sender_id=channel, percent=100),)),)
    herald.senders.set_virtual_sender(f"default_{channel}", channel, rules, CONTEXT)


async def _send_all(
    herald: Herald, channel: str, count: int, go: Callable[[], None], parts: int
) -> tuple[float, float]:
    """Messages/s and this process's CPU seconds: its worker sends share 0 of `parts` (`go` lets the
    others go) and it runs the processors, until the campaign's card counts every message delivered
    (an SMS once its receipts are recorded)."""
    worker = herald.sms if channel == "sms" else herald.push
    worker.concurrency = CONCURRENCY
    worker.part = (0, parts)
    assert herald.projections.send_queue.waiting() == count
    started, cpu = time.perf_counter(), time.process_time()
    go()
    while await worker.run_once(limit=2000):
        herald.runtime.drain()
    delivered = 0
    while delivered < count:
        await asyncio.sleep(0.001)
        herald.runtime.drain()
        worker.settle_reports()
        delivered = herald.projections.campaigns.counters("1").get("delivered", 0)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await worker.close()
    return count / elapsed, cpu


def herald_sms(port: int, count: int, processes: int = 1) -> tuple[float, float]:
    """Messages/s, and messages per CPU second of every sender process (the SMSC's own excluded)."""
    with temp_dir("bench-sms") as data, herald_in_process(data) as herald:
        create_catalog(herald)
        _channels(herald)
        _profiles(herald, count, {"channel": "sms"}, [f"+7916{n:07d}" for n in range(count)])
        smpp = sd.SmppAccountSettings(host="127.0.0.1", port=port, system_id="herald", window=CONCURRENCY)
        settings = sd.SenderSettings(
            name="smsc", channel="sms", smpp=smpp, rate_per_second=10_000, await_delivery_seconds=600
        )
        _sender(herald, "sms", settings, "secret")
        _launched(herald, "sms", tp.TemplateContent(sms=tp.SmsContent(body=SMS_BODY)))
        others: list[float] = []
        with other_shares(data, "sms", processes, CONCURRENCY, others) as go:
            rate, cpu = asyncio.run(_send_all(herald, "sms", count, go, processes))
        assert herald.projections.send_queue.waiting() == 0
        return rate, count / (cpu + sum(others))


def herald_push(port: int, count: int, processes: int = 1) -> tuple[float, float, str]:
    """Pushes/s, pushes per CPU second of every sender process, and the account's VAPID key they were
    signed with (the baseline signs with it too)."""
    with temp_dir("bench-push") as data, herald_in_process(data) as herald:
        create_catalog(herald)
        _channels(herald)
        endpoints = [Browser(f"http://127.0.0.1:{port}/push/{n}") for n in range(count)]
        browsers = [orjson.dumps(b.subscription()).decode() for b in endpoints]
        _profiles(herald, count, {"channel": "push", "provider": "webpush"}, browsers)
        webpush = sd.WebPushServiceSettings(subject="mailto:ops@example.com")
        settings = sd.SenderSettings(
            name="push", channel="push", webpush=webpush, rate_per_second=10_000, connections=CONCURRENCY
        )
        _sender(herald, "push", settings)
        push = tp.PushContent(
            title="Hi {lead._fname}", body="New in store", click_url="https://shop.example.com/new"
        )
        _launched(herald, "push", tp.TemplateContent(push=push))
        others: list[float] = []
        with other_shares(data, "push", processes, CONCURRENCY, others) as go:
            rate, cpu = asyncio.run(_send_all(herald, "push", count, go, processes))
        return rate, count / (cpu + sum(others)), herald.vapid_private_key


def _cpu_rate(count: int, work: Callable[[], float]) -> tuple[float, float]:
    """What `work` returns (a rate), and `count` per CPU second of this process while it ran."""
    cpu = time.process_time()
    rate = work()
    return rate, count / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sms", type=int, default=3000)
    parser.add_argument("--push", type=int, default=2000)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="sender processes sharing the queue (herald send --processes)",
    )
    args = parser.parse_args()
    logging.getLogger("smpp").setLevel(logging.CRITICAL)
    print(machine(), flush=True)
    port = free_port()
    with child(SMSC, port):
        herald, herald_cpu = herald_sms(port, args.sms, args.processes)
        bare, bare_cpu = _cpu_rate(args.sms, lambda: bare_sms(port, args.sms))
        name = f"SMS end to end (2 UCS-2 parts, receipts recorded), {args.processes} process(es)"
        report(name, herald, "msgs", bare)
        report(f"{name}, per CPU second", herald_cpu, "msgs", bare_cpu)
    port = free_port()
    with child(PUSH, port):
        herald, herald_cpu, key = herald_push(port, args.push, args.processes)
        bare, bare_cpu = _cpu_rate(
            args.push, lambda: asyncio.run(bare_push(port, args.push, CONCURRENCY, key))
        )
        name = f"web push end to end (aes128gcm, VAPID), {args.processes} process(es)"
        report(name, herald, "msgs", bare)
        report(f"{name}, per CPU second", herald_cpu, "msgs", bare_cpu)


if __name__ == "__main__":
    run(main)
