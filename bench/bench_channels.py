"""SMS (SMPP) and web push messages/s through Herald's gateways, against the bare client libraries.

Adapter level (the message pipeline around them is not built yet): N messages
through `SmppGateway` (windowed submits on one transceiver bind, receipts read
and acknowledged) and through `WebPushGateway` (aes128gcm encryption per
message, VAPID header cached per push service), `concurrency` at a time.

Baselines, same run, same servers: a bare smpplib client on one bind, a reader
thread taking the responses while the main thread writes every submit_sm; and
pywebpush's own `webpush_async` over one shared aiohttp session (it signs the
VAPID claim for every message, as that call does). The SMSC (the tests' SMPP
simulator) and the push service (201 to everything, no decryption) run in
their own processes, so the figures are the client side's.

    python bench/bench_channels.py [--sms 5000] [--push 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import smpplib.client
import smpplib.consts as c
import smpplib.gsm
from common import REPO, free_port, machine, report, run
from pywebpush import webpush_async

from herald.senders.gateway import Accepted, Outbound
from herald.senders.smpp import SmppGateway, SmppSettings
from herald.senders.webpush import WebPushGateway, WebPushSettings
from tests.channel_servers import Browser, vapid_key_pem

SMSC = """import asyncio, sys
from tests.smsc import smsc_server
async def main():
    async with smsc_server(port=int(sys.argv[1])):
        await asyncio.Event().wait()
asyncio.run(main())"""
PUSH = """import sys
from aiohttp import web
async def push(request):
    await request.read()
    return web.Response(status=201, headers={"Location": "/m/1"})
app = web.Application()
app.router.add_post("/push/{id}", push)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)"""
TEXT = "Привет! Новая коллекция уже в продаже: https://trk.example.com/s/vkxNTsPot2"


@contextlib.contextmanager
def child(script: str, port: int) -> Iterator[None]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script, str(port)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)


async def herald_sms(port: int, count: int, concurrency: int) -> float:
    gateway = SmppGateway(
        SmppSettings(host="127.0.0.1", port=port, system_id="herald", password="secret", window=concurrency)
    )
    await gateway.send(Outbound("warm-up", "+79161234567", TEXT, sender="AWESOME"))
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(gateway.send(Outbound(f"m-{i}", "+79161234567", TEXT, sender="AWESOME")) for i in range(count))
    )
    elapsed = time.perf_counter() - started
    await gateway.close()
    assert all(isinstance(o, Accepted) for o in outcomes)
    return count / elapsed


def bare_sms(port: int, count: int) -> float:
    client = smpplib.client.Client("127.0.0.1", port, timeout=30, allow_unknown_opt_params=True)
    lock = threading.Lock()
    answered = threading.Semaphore(0)
    client.set_message_sent_handler(lambda pdu, **_: answered.release())
    client.set_message_received_handler(lambda pdu, **_: None)
    client.connect()
    client.bind_transceiver(system_id="herald", password="secret")
    original = client.send_pdu
    client.send_pdu = lambda p: lock.acquire() and (original(p), lock.release())  # type: ignore[method-assign]
    stop = threading.Event()

    def read() -> None:
        with contextlib.suppress(Exception):
            while not stop.is_set():
                client.read_once()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.perf_counter()
    sent = 0
    for _ in range(count):
        parts, coding, esm_class = smpplib.gsm.make_parts(TEXT)  # the library's own cut, with its UDH
        for part in parts:
            sent += 1
            client.send_message(
                source_addr_ton=c.SMPP_TON_ALNUM,
                source_addr="AWESOME",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="79161234567",
                esm_class=esm_class,
                data_coding=coding,
                registered_delivery=1,
                short_message=part,
            )
    for _ in range(sent):
        answered.acquire()
    elapsed = time.perf_counter() - started
    stop.set()
    client._socket.shutdown(socket.SHUT_RDWR)
    reader.join()
    client.disconnect()
    return count / elapsed


async def herald_push(port: int, count: int, concurrency: int, key: str) -> float:
    gateway = WebPushGateway(
        WebPushSettings(vapid_private_key=key, subject="mailto:ops@example.com", connections=concurrency)
    )
    addresses = [Browser(f"http://127.0.0.1:{port}/push/{i}").address() for i in range(50)]
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> object:
        async with slots:
            return await gateway.send(
                Outbound(
                    f"m-{i}",
                    addresses[i % 50],
                    TEXT,
                    title="Herald",
                    click_url="https://shop.example.com/new",
                )
            )

    await one(-1)
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await gateway.close()
    assert all(isinstance(o, Accepted) for o in outcomes), outcomes[:3]
    return count / elapsed


async def bare_push(port: int, count: int, concurrency: int, key: str) -> float:
    from py_vapid import Vapid

    vapid = Vapid.from_pem(key.encode())
    subscriptions = [Browser(f"http://127.0.0.1:{port}/push/{i}").subscription() for i in range(50)]
    slots = asyncio.Semaphore(concurrency)
    data = orjson.dumps({"title": "Herald", "body": TEXT, "url": "https://shop.example.com/new"}).decode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(i: int) -> None:
            async with slots:
                await webpush_async(
                    subscriptions[i % 50],
                    data,
                    vapid_private_key=vapid,
                    vapid_claims={"sub": "mailto:ops@example.com"},
                    ttl=86400,
                    aiohttp_session=session,
                )

        await one(0)
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sms", type=int, default=5000)
    parser.add_argument("--push", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    logging.getLogger("smpp").setLevel(logging.CRITICAL)  # the bare client's warnings on teardown
    print(machine(), "| load:", Path("/proc/loadavg").read_text().split()[:3], flush=True)
    port = free_port()
    with child(SMSC, port):
        herald = asyncio.run(herald_sms(port, args.sms, args.concurrency))
        bare = bare_sms(port, args.sms)
        report("SMS over SMPP, gateway (UCS-2, receipts on)", herald, "msgs", bare)
    port = free_port()
    key = vapid_key_pem()
    with child(PUSH, port):
        herald = asyncio.run(herald_push(port, args.push, args.concurrency, key))
        bare = asyncio.run(bare_push(port, args.push, args.concurrency, key))
        report("web push, gateway (aes128gcm, VAPID)", herald, "msgs", bare)


if __name__ == "__main__":
    run(main)
