"""The email channel end to end: a broadcast to 100 profiles over real SMTP, trackers, inbound reports.

An aiosmtpd server on loopback is the relay. Everything is created through
the HTTP API; the test reads the received mail, verifies DKIM with dkimpy,
follows the open and click URLs found in the mail, unsubscribes with the
List-Unsubscribe-Post one-click request, and feeds an ARF complaint and a DSN
bounce built around received messages.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import dkim
import httpx
import pytest

from herald.api.wiring import Herald
from herald.senders.dkim import generate_key
from tests.builders import import_rows
from tests.smtp_sink import smtp_server
from tests.unit.test_inbound import arf, dsn

PROFILES = 100


@dataclass
class Sink:
    """The relay: it keeps every message it accepts."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    with smtp_server(handler) as port:
        yield handler, port


async def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_newsletter(api: httpx.AsyncClient) -> None:
    """Database 1 (with a `plan` field) and resource 1, an email newsletter tracked on trk.shop.example."""
    custom = [{"name": "plan", "title": "Plan", "type": "string"}]
    await ok(await api.post("/api/v1/databases", json={"name": "Customers", "custom_fields": custom}), 201)
    await email_resource(api)


async def email_resource(api: httpx.AsyncClient) -> None:
    """Resource 1, "Newsletter", sending email from news@shop.example to database 1's profiles."""
    channel = {
        "kind": "email",
        "from_name": "Shop",
        "from_email": "news@shop.example",
        "list_id": "news.shop.example",
    }
    resource = {
        "name": "Newsletter",
        "database_ids": ["1"],
        "source_urls": ["https://shop.example"],
        "default_tracking_domain": "trk.shop.example",
        "channels": [channel],
    }
    await ok(await api.post("/api/v1/resources", json=resource), 201)


async def route_to(api: httpx.AsyncClient, port: int, **sender: Any) -> None:
    """Sender "main" to the relay on loopback `port` (with `sender`'s settings), and all mail through it."""
    relay = {"host": "127.0.0.1", "port": port, "starttls": "never"}
    body = {"name": "Loopback relay", "relay": relay, "rate_per_second": 1000, "connections": 2, **sender}
    await ok(await api.put("/api/v1/senders/main", json=body))
    rules = [{"targets": [{"sender_id": "main", "percent": 100}]}]
    await ok(await api.put("/api/v1/virtual-senders/default", json={"name": "Default", "rules": rules}))


async def setup(api: httpx.AsyncClient, herald: Herald, port: int, dns: dict[str, str]) -> str:
    """Database, resource, 100 profiles, a DKIM sender, routing, template, broadcast; returns its id."""
    await create_newsletter(api)
    rows = [
        {
            "email": f"user{i}@mail.example",
            "_fname": f"Ann{i}",
            "plan": "gold",
            "subscriptions": [{"resource_id": "1", "channel": "email", "email": f"user{i}@mail.example"}],
        }
        for i in range(PROFILES)
    ]
    await import_rows(api, rows)
    private, record = generate_key(1024)
    dns["s1._domainkey.shop.example."] = record
    await route_to(api, port, dkim_selector="s1", dkim_domain="shop.example", dkim_private_key=private)
    html = (
        "<html><body><p>Hello, {lead._fname} from {lead.plan}!</p>"
        '<a href="https://shop.example/sale?u={lead._id}">Sale</a>'
        '<p><a href="{unsubscribe}">Unsubscribe</a></p></body></html>'
    )
    template = {"name": "Sale", "content": {"email": {"subject": "{lead._fname}, a sale", "html": html}}}
    template_id = (await ok(await api.post("/api/v1/templates", json=template), 201))["template_id"]
    broadcast = {
        "name": "Spring",
        "type": "broadcast",
        "channel": "email",
        "resource_id": "1",
        "template_ids": [template_id],
        "audience": {"kind": "database", "id": "1"},
    }
    campaign_id = str((await ok(await api.post("/api/v1/campaigns", json=broadcast), 201))["campaign_id"])
    herald.runtime.drain()
    return campaign_id


async def send_everything(herald: Herald) -> None:
    herald.runtime.drain()
    while await herald.email.run_once():
        herald.runtime.drain()
    herald.runtime.drain()


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def events_of(herald: Herald, message_id: str) -> list[str]:
    return [e.type for e in herald.store.read_stream(f"message-{message_id}")]


async def test_a_broadcast_goes_out_over_smtp_and_every_reaction_comes_back(
    api: httpx.AsyncClient, herald: Herald, sink: tuple[Sink, int]
) -> None:
    relay, port = sink
    dns: dict[str, str] = {}
    campaign_id = await setup(api, herald, port, dns)
    await ok(await api.post(f"/api/v1/campaigns/{campaign_id}/launch"))
    await send_everything(herald)

    # 100 messages arrived, each personalised, with the headers and a valid DKIM signature
    assert len(relay.messages) == PROFILES
    by_recipient = {rcpts[0]: parsed(raw) for _, rcpts, raw in relay.messages}
    assert sorted(by_recipient) == sorted(f"user{i}@mail.example" for i in range(PROFILES))
    for _, rcpts, raw in relay.messages:
        message = by_recipient[rcpts[0]]
        number = rcpts[0].removeprefix("user").split("@")[0]
        assert message["Subject"] == f"Ann{number}, a sale"
        assert f"Hello, Ann{number} from gold!" in html_of(message)
        assert message["From"] == "Shop <news@shop.example>"
        assert message["List-ID"] == "Newsletter <news.shop.example>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(r"<[0-9a-f]{32}@shop\.example>", message["Message-ID"])
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: dns[name.decode()].encode())
    counters = (await ok(await api.get(f"/api/v1/campaigns/{campaign_id}/progress")))["campaign"]
    assert counters["queued"] == PROFILES

    first = by_recipient["user0@mail.example"]
    message_id = first["X-Herald-Message-ID"]
    assert events_of(herald, message_id)[-3:] == [
        "MessageSendAttempted",
        "MessageCommitting",
        "MessageDelivered",
    ]

    # the open pixel and the click, followed from the received mail
    page = html_of(first)
    pixel = re.search(r'<img src="([^"]+/t/open/[^"]+)"', page)
    assert pixel is not None
    assert (await api.get(path_of(pixel.group(1)), headers={"User-Agent": "Mozilla/5.0"})).status_code == 200
    click = re.search(r'href="([^"]+/t/click/[^"]+)"', page)
    assert click is not None
    followed = await api.get(path_of(click.group(1)), headers={"User-Agent": "Mozilla/5.0"})
    assert followed.status_code == 302
    assert followed.headers["location"].startswith("https://shop.example/sale?u=")

    # one-click unsubscribe (RFC 8058) through the List-Unsubscribe header
    unsubscribe = re.search(r"<(https://[^>]+)>", first["List-Unsubscribe"])
    assert unsubscribe is not None
    answered = await api.post(
        path_of(unsubscribe.group(1)),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answered.status_code == 200
    herald.runtime.drain()
    assert events_of(herald, message_id)[-3:] == ["MessageOpened", "LinkClicked", "MessageUnsubscribed"]

    # an ARF complaint about the second message, a DSN bounce of the third
    second, third = by_recipient["user1@mail.example"], by_recipient["user2@mail.example"]
    headers = "\n".join(f"{k}: {v}" for k, v in second.items())
    complaint = await ok(await api.post("/api/v1/inbound", content=arf(original=headers)))
    assert complaint == {"kind": "complaint", "message_id": second["X-Herald-Message-ID"]}
    fields = "Final-Recipient: rfc822; user2@mail.example\nAction: failed\nStatus: 5.1.1\n"
    fields += "Diagnostic-Code: smtp; 550 5.1.1 user unknown"
    original = "\n".join(f"{k}: {v}" for k, v in third.items())
    bounced = await ok(await api.post("/api/v1/inbound", content=dsn(fields, original=original)))
    assert bounced == {"kind": "bounce", "message_id": third["X-Herald-Message-ID"], "recipients": ["hard"]}
    garbage = await ok(await api.post("/api/v1/inbound", content=b"Content-Type: multipart/report\n\n--x"))
    assert garbage["kind"] == "unparsed" and garbage["reason"]
    herald.runtime.drain()

    statuses = {}
    for recipient in ("user0@mail.example", "user1@mail.example", "user2@mail.example", "user3@mail.example"):
        found = await ok(
            await api.get(
                "/api/v1/profiles/lookup", params={"database_id": "1", "by": "email", "value": recipient}
            )
        )
        [subscription] = found["profiles"][0]["subscriptions"]
        statuses[recipient] = subscription["status"]
    assert statuses == {
        "user0@mail.example": "unsubscribed",
        "user1@mail.example": "complainer",
        "user2@mail.example": "hard_bounced",
        "user3@mail.example": "subscribed",
    }
    assert events_of(herald, second["X-Herald-Message-ID"])[-1] == "ComplaintReceived"
    assert events_of(herald, third["X-Herald-Message-ID"])[-1] == "MessageHardBounced"
    invalid = (await ok(await api.get("/api/v1/stop-lists/platform-invalid/entries")))["entries"]
    assert [e["value"] for e in invalid] == ["user2@mail.example"]


async def test_a_changed_sender_is_used_from_the_next_message_on(
    api: httpx.AsyncClient, herald: Herald, sink: tuple[Sink, int]
) -> None:
    first, port = sink
    campaign_id = await setup(api, herald, port, {})
    await ok(await api.post(f"/api/v1/campaigns/{campaign_id}/launch"))
    herald.runtime.drain()
    assert await herald.email.run_once(limit=10) == 10
    herald.runtime.drain()
    second = Sink()
    with smtp_server(second) as other_port:
        sender = await ok(await api.get("/api/v1/senders/main"))
        changed = {
            k: sender[k] for k in ("name", "rate_per_second", "connections", "dkim_selector", "dkim_domain")
        }
        relay = {**sender["relay"], "port": other_port}
        await ok(await api.put("/api/v1/senders/main", json={**changed, "relay": relay}))
        await send_everything(herald)
        await herald.email.close()
    assert (len(first.messages), len(second.messages)) == (10, PROFILES - 10)
