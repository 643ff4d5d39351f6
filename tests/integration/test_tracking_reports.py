"""What a new user sees after a send: machines' hits said where they happen, and the summary's formulas.

Six profiles get a broadcast over real SMTP (aiosmtpd on loopback); then, from
the received mail, each does something scripted through the trackers, and one
mailbox bounces by DSN after the relay accepted it. The summary report must show
the numbers worked out below by hand from the script, and the profiles'
histories must say which hits were machines' and why.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import DB, RESOURCE, create_resource, customers, email_subscription, import_rows
from tests.integration.test_email_end_to_end import ok, send_everything
from tests.smtp_sink import smtp_server
from tests.unit.test_inbound import dsn

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)"
CURL = "curl/8.5.0"
PEOPLE = ("ann", "bob", "cyd", "dan", "eve", "fay")


@dataclass
class Sink:
    messages: dict[str, EmailMessage] = field(default_factory=dict)  # by recipient

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages[envelope.rcpt_tos[0]] = message
        return "250 2.0.0 queued"


async def send_a_broadcast(api: httpx.AsyncClient, herald: Herald, port: int) -> dict[str, str]:
    """Database, resource, six subscribers, a sender at `port`, a template, a launched broadcast, all
    sent; returns the profile ids by name."""
    customers(herald)
    create_resource(herald)
    rows = [
        {"email": f"{n}@mail.example", "subscriptions": [email_subscription(f"{n}@mail.example")]}
        for n in PEOPLE
    ]
    results = (await import_rows(api, rows))["results"]
    relay = {"host": "127.0.0.1", "port": port}
    await ok(
        await api.put("/api/v1/senders/main", json={"name": "Sink", "relay": relay, "rate_per_second": 100})
    )
    rules = [{"targets": [{"sender_id": "main", "percent": 100}]}]
    await ok(await api.put("/api/v1/virtual-senders/default", json={"name": "Default", "rules": rules}))
    html = '<p>Sale!</p><a href="https://shop.example/sale">Sale</a>'
    template = {"name": "Sale", "content": {"email": {"subject": "Sale", "html": html}}}
    template_id = (await ok(await api.post("/api/v1/templates", json=template), 201))["template_id"]
    broadcast = {
        "name": "Spring",
        "type": "broadcast",
        "channel": "email",
        "resource_id": RESOURCE,
        "template_ids": [template_id],
        "audience": {"kind": "database", "id": DB},
    }
    campaign_id = (await ok(await api.post("/api/v1/campaigns", json=broadcast), 201))["campaign_id"]
    herald.runtime.drain()
    await ok(await api.post(f"/api/v1/campaigns/{campaign_id}/launch"))
    await send_everything(herald)
    await herald.email.close()
    return {name: r["profile_id"] for name, r in zip(PEOPLE, results, strict=True)}


def tracker(message: EmailMessage, purpose: str) -> str:
    """The path of the message's `purpose` tracker (open pixel or click), found in its HTML."""
    part = message.get_body(("html",))
    assert part is not None
    found = re.search(rf'"(https://trk\.example\.com/t/{purpose}/[^"]+)"', str(part.get_content()))
    assert found is not None, purpose
    return urlsplit(found.group(1)).path


async def test_machines_hits_are_said_and_the_summary_follows_the_guides_formulas(
    reporting_api: httpx.AsyncClient, reporting: Herald, clock: ManualClock
) -> None:
    client = reporting_api
    sink = Sink()
    with smtp_server(sink) as port:
        ids = await send_a_broadcast(client, reporting, port)
    mail = {name: sink.messages[f"{name}@mail.example"] for name in PEOPLE}

    async def hit(name: str, purpose: str, agent: str = BROWSER) -> None:
        answer = await client.get(tracker(mail[name], purpose), headers={"User-Agent": agent})
        assert answer.status_code in (200, 302), answer.text

    await hit("ann", "open")  # at the delivery: the receiving server's scanner prefetching, not Ann
    clock.advance(timedelta(hours=1))
    await hit("ann", "open")  # Ann opens, and clicks
    await hit("ann", "click")
    await hit("bob", "click")  # Bob's client blocks images: his click is his open too
    await hit("dan", "open")
    await hit("fay", "open", CURL)  # someone's script, not a mail client
    await hit("fay", "click", CURL)
    original = "\n".join(f"{k}: {v}" for k, v in mail["eve"].items())  # accepted, then bounced
    report = dsn(
        "Final-Recipient: rfc822; eve@mail.example\nAction: failed\nStatus: 5.1.1\n", original=original
    )
    await ok(await client.post("/api/v1/inbound", content=report))
    clock.advance(timedelta(hours=30))
    await hit("dan", "click")  # 30 h after his open: opening it again to click counts a new open
    reporting.runtime.drain()
    assert reporting.reports_runtime is not None
    reporting.reports_runtime.drain()

    # By hand, from the script: 6 sent; Eve's bounced, so 5 delivered; 1 hard bounce; unique opens:
    # Ann 1, Bob 1 (his click), Dan 2 (his open, then his click 30 h later) = 4; unique clicks: Ann,
    # Bob, Dan = 3; machines: Ann's prefetch and Fay's curl opened (2), Fay's curl clicked (1).
    expected = {
        "email_sent": 6,
        "email_delivered": 5,
        "email_hard_bounces": 1,
        "email_opens": 4,
        "email_unique_opens": 4,
        "email_clicks": 3,
        "email_unique_clicks": 3,
        "email_bot_opens": 2,
        "email_bot_clicks": 1,
        "email_delivery_rate": 5 / 6,  # delivered / sent
        "email_open_rate": 4 / 5,  # unique opens / delivered
        "email_click_rate": 3 / 5,  # unique clicks / delivered
        "email_click_to_open_rate": 3 / 4,  # unique clicks / unique opens
        "email_hard_bounce_rate": 1 / 6,  # hard bounces / sent
    }
    params = {"start": "2026-03-01", "end": "2026-03-31", "metrics": ",".join(expected)}
    summary = await ok(await client.get("/api/v1/reports/summary", params=params))
    assert dict(zip(summary["columns"], summary["rows"][0], strict=True)) == pytest.approx(expected)

    # where it happened: the profile's history names the rule and why
    async def opens_of(name: str) -> list[dict[str, Any]]:
        history = await ok(await client.get(f"/api/v1/profiles/{ids[name]}/history"))
        return [e["data"] for e in history["events"] if e["type"] == "MessageOpened"]

    fay = await opens_of("fay")
    assert [(o["bot"], o["bot_rule"], o["unique"]) for o in fay] == [(True, "user_agent", False)]
    assert "the User-Agent contains 'curl/'" in fay[0]["bot_reason"]
    ann = await opens_of("ann")
    assert [(o["bot"], o["bot_rule"], o["unique"]) for o in ann] == [
        (True, "prefetch", False),
        (False, "", True),
    ]
    assert ann[0]["bot_reason"].startswith("0.0 s after the delivery (under 2 s)")
    assert [(o["implied"], o["user_agent"]) for o in await opens_of("bob")] == [(True, BROWSER)]
