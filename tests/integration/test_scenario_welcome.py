"""The guide's Welcome scenario (§1.9) end to end for 1,000 profiles over simulated days, over real SMTP.

Everything is made through the HTTP API: a database with `LOYALTY_SCORE`, a resource with email
and SMS, a sender to an aiosmtpd relay on loopback, three trigger campaigns, and the scenario with
the guide's node numbers: (2) welcome email → (3) pause a day → (4) "clicked the welcome?" (the
guide allows a click instead of the opt-in confirmation), waiting an hour → true: (5) +200
points → (6) a promo code → (7) promo email; false: (8) "an SMS was sent?" → true: (9) webhook to
the call centre; false: (10) SMS reminder → (11) pause a day → a link back to (4). Node (6) binds
a code of the Welcome loyalty program (made on demand: the scenario may create codes), and the
promo email shows it.

Clicks are followed from the received mail through the click tracker. The SMS reminders go out
through the SMS worker as SMPP submits to a loopback SMSC (an SMS sender set by the API; accepted
is delivered), so the scenario's "an SMS was sent?" reads what the worker recorded.

Who does what, by the profile's number: 0–2 of every 10 click on day 1 (before the pause ends);
3 clicks while node 4 waits its hour; 4 clicks on day 2, after the SMS, and is caught when the
loop comes back to node 4; the other five never click: the SMS, then the call centre.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from herald.api.app import create_app
from herald.api.wiring import Herald, build
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from tests.conftest import ADMIN_TOKEN
from tests.smsc import Smsc, smsc_server
from tests.smtp_sink import smtp_server

PROFILES = 1_000


@dataclass
class Sink:
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos[0], envelope.original_content))
        return "250 2.0.0 queued"

    def by_subject(self) -> Counter[str]:
        return Counter(_parsed(raw)["Subject"] for _, raw in self.messages)


class _CallCentre(BaseHTTPRequestHandler):
    phones: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _CallCentre.phones += parse_qs(urlsplit(self.path).query).get("phone", [])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def call_centre() -> Iterator[str]:
    _CallCentre.phones = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CallCentre)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/leads"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    async with smsc_server() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    with smtp_server(handler) as port:
        yield handler, port


@pytest.fixture
def welcome_herald(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    settings = Settings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        reports_engine="off",
        remote_allowed_networks=("127.0.0.0/8",),  # the call centre listens on loopback
    )
    app = build(settings, clock=clock, ids=IdSource(17))
    yield app
    app.close()


@pytest.fixture
async def api(welcome_herald: Herald) -> Iterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(welcome_herald, run_processors=False))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://herald.test", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as client:
        yield client  # type: ignore[misc]


async def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def created_id(api: httpx.AsyncClient, path: str, payload: dict[str, Any], key: str) -> str:
    return str((await ok(await api.post(path, json=payload), 201))[key])


async def setup(api: httpx.AsyncClient, herald: Herald, port: int, call_centre: str) -> dict[str, str]:
    fields = [{"name": "LOYALTY_SCORE", "title": "Loyalty score", "type": "int"}]
    await ok(await api.post("/api/v1/databases", json={"name": "Клиенты B2C", "custom_fields": fields}), 201)
    channels = [
        {
            "kind": "email",
            "from_name": "Shop",
            "from_email": "news@shop.example",
            "list_id": "news.shop.example",
        },
        {"kind": "sms", "caller_id": "SHOP"},
    ]
    resource = {
        "name": "Shop",
        "database_ids": ["1"],
        "source_urls": ["https://shop.example"],
        "default_tracking_domain": "trk.shop.example",
        "channels": channels,
    }
    await ok(await api.post("/api/v1/resources", json=resource), 201)
    relay = {
        "name": "Loopback",
        "relay": {"host": "127.0.0.1", "port": port, "starttls": "never"},
        "rate_per_second": 10_000,
        "connections": 4,
    }
    await ok(await api.put("/api/v1/senders/main", json=relay))
    rules = [{"targets": [{"sender_id": "main", "percent": 100}]}]
    await ok(await api.put("/api/v1/virtual-senders/default", json={"name": "Default", "rules": rules}))
    contents = {
        "welcome": {
            "email": {
                "subject": "Welcome",
                "html": '<p>Hi!</p><a href="https://shop.example/start">Start</a>',
            }
        },
        "promo": {
            "email": {
                "subject": "Your bonus",
                "html": "<p>200 points are yours. Your code: <b>{loyalty.welcome.promocode}</b></p>",
            }
        },
        "reminder": {"sms": {"body": "Finish signing up at shop.example"}},
    }
    ids = {}
    for name, content in contents.items():
        template_id = await created_id(
            api, "/api/v1/templates", {"name": name, "content": content}, "template_id"
        )
        trigger = {
            "name": name,
            "type": "trigger",
            "channel": next(iter(content)),
            "resource_id": "1",
            "template_ids": [template_id],
            "database_id": "1",
            "trigger": {},
        }
        ids[name] = await created_id(api, "/api/v1/campaigns", trigger, "campaign_id")
        await ok(await api.post(f"/api/v1/campaigns/{ids[name]}/activate"))
    program = {
        "name": "Welcome",
        "shortcode": "welcome",
        "generator": {"kind": "pattern", "pattern": "WELCOME-{D6}"},
        "scenario_may_create": True,
    }
    ids["program"] = await created_id(api, "/api/v1/loyalty-programs", program, "program_id")
    clicked = {
        "kind": "message_history",
        "action": "clicked",
        "campaign_ids": [ids["welcome"]],
        "at_least": 1,
    }
    sms_sent = {"kind": "message_history", "action": "sent", "channel": "sms", "at_least": 1}
    nodes = [
        {"id": "2", "type": "campaign", "name": "Welcome", "campaign_id": ids["welcome"], "next": "3"},
        {"id": "3", "type": "pause", "wait": {"kind": "relative", "days": 1}, "next": "4"},
        {
            "id": "4",
            "type": "condition",
            "name": "Подтвердил подписку?",
            "rules": [clicked],
            "wait_hours": 1,
            "limit": {"kind": "percent", "from_pct": 1, "to_pct": 100},
            "true": "5",
            "false": "8",
        },
        {
            "id": "5",
            "type": "update_data",
            "name": "Приветственные бонусы",
            "operations": [{"field": "LOYALTY_SCORE", "op": "increment", "value": 200}],
            "next": "6",
        },
        {
            "id": "6",
            "type": "promo_code",
            "name": "Назначить промокод",
            "program_id": ids["program"],
            "next": "7",
        },
        {"id": "7", "type": "campaign", "campaign_id": ids["promo"], "next": None},
        {
            "id": "8",
            "type": "condition",
            "name": "Существует отправка SMS",
            "rules": [sms_sent],
            "true": "9",
            "false": "10",
        },
        {
            "id": "9",
            "type": "webhook",
            "name": "HTTP(S) вызов API",
            "method": "GET",
            "url": call_centre,
            "params": [{"name": "phone", "source": "profile", "value": "phones"}],
            "next": None,
        },
        {"id": "10", "type": "campaign", "campaign_id": ids["reminder"], "next": "11"},
        {"id": "11", "type": "pause", "wait": {"kind": "relative", "days": 1}, "next": "4"},
    ]
    scenario = {
        "name": "Приветственная цепочка",
        "database_id": "1",
        "reentry": "once_ever",
        "capture": {"kind": "import", "via": "any"},
        "graph": {"nodes": nodes},
    }
    ids["scenario"] = await created_id(api, "/api/v1/scenarios", scenario, "scenario_id")
    await ok(await api.post(f"/api/v1/scenarios/{ids['scenario']}/activate"))
    herald.runtime.drain()
    return ids


async def send_mail(herald: Herald) -> None:
    herald.runtime.drain()
    while await herald.email.run_once():
        herald.runtime.drain()


async def send_sms(herald: Herald) -> int:
    """The SMS worker sends what is due to the loopback SMSC; returns how many it sent."""
    herald.runtime.drain()
    sent = 0
    while attempts := await herald.sms.run_once():
        sent += attempts
        herald.runtime.drain()
    return sent


async def sms_route(api: httpx.AsyncClient, smsc: Smsc) -> None:
    """An SMS sender (the loopback SMSC's account; accepted is delivered) as the default SMS route."""
    account = {"host": "127.0.0.1", "port": smsc.port, "system_id": "herald"}
    sender = {
        "name": "SMSC",
        "channel": "sms",
        "smpp": account,
        "password": "secret",
        "rate_per_second": 1000,
    }
    await ok(await api.put("/api/v1/senders/smsc", json=sender))
    rules = [{"targets": [{"sender_id": "smsc", "percent": 100}]}]
    await ok(await api.put("/api/v1/virtual-senders/default_sms", json={"name": "SMS", "rules": rules}))


def later(herald: Herald, clock: ManualClock, by: timedelta) -> None:
    clock.advance(by)
    herald.tick()
    herald.runtime.drain()
    herald.runtime.drain()


def _parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def shown_code(raw: bytes) -> str:
    """The promo code the bonus mail shows."""
    part = _parsed(raw).get_body(("html",))
    assert part is not None
    found = re.search(r"<b>(.*?)</b>", str(part.get_content()))
    assert found is not None
    return found.group(1)


async def click(api: httpx.AsyncClient, raw: bytes) -> None:
    part = _parsed(raw).get_body(("html",))
    assert part is not None
    found = re.search(r'href="([^"]+/t/click/[^"]+)"', str(part.get_content()))
    assert found is not None
    url = urlsplit(found.group(1))
    response = await api.get(
        f"{url.path}?{url.query}" if url.query else url.path, headers={"User-Agent": "Mozilla/5.0"}
    )
    assert response.status_code == 302


@pytest.mark.slow
async def test_the_guides_welcome_scenario_for_1000_profiles_over_simulated_days(
    api: httpx.AsyncClient,
    welcome_herald: Herald,
    clock: ManualClock,
    sink: tuple[Sink, int],
    call_centre: str,
    smsc: Smsc,
) -> None:
    herald, (relay, port) = welcome_herald, sink
    ids = await setup(api, herald, port, call_centre)
    await sms_route(api, smsc)
    rows = [
        {
            "email": f"c{i}@mail.example",
            "phones": f"+4930{i:07d}",
            "subscriptions": [
                {"resource_id": "1", "channel": "email", "email": f"c{i}@mail.example"},
                {"resource_id": "1", "channel": "sms", "phone": f"+4930{i:07d}"},
            ],
        }
        for i in range(PROFILES)
    ]
    await ok(await api.post("/api/v1/databases/1/profiles/import", json={"rows": rows}))
    await send_mail(herald)
    assert relay.by_subject() == {"Welcome": PROFILES}
    welcome = {rcpt: raw for rcpt, raw in relay.messages}

    def number(address: str) -> int:
        return int(address.removeprefix("c").split("@")[0])

    def group(wanted: set[int]) -> list[str]:
        return [a for a in welcome if number(a) % 10 in wanted]

    later(herald, clock, timedelta(hours=2))  # people read their mail later than scanners do
    for address in group({0, 1, 2}):  # day 1, before the pause ends
        await click(api, welcome[address])
    later(herald, clock, timedelta(hours=22))  # the pause ends: node 4, true for the clickers
    later(herald, clock, timedelta(minutes=10))
    for address in group({3}):  # while node 4 waits its hour: the click itself decides it
        await click(api, welcome[address])
    herald.runtime.drain()
    later(herald, clock, timedelta(minutes=50))  # the hour is up: the rest go to node 8, then the SMS
    assert await send_sms(herald) == 600
    assert {s.source_addr for s in smsc.submits} == {"SHOP"} and len(smsc.submits) == 600
    for address in group({4}):  # day 2, after the SMS
        await click(api, welcome[address])
    later(herald, clock, timedelta(days=1))  # node 11 ends: the link back to node 4
    later(herald, clock, timedelta(hours=1))  # node 4's hour again: false, and an SMS was sent: node 9
    assert herald.webhooks.call_due() == 100
    while herald.webhooks.call_due():
        pass
    herald.runtime.drain()
    await send_mail(herald)

    clickers = [a for a in welcome if number(a) % 10 <= 4]
    never = [a for a in welcome if number(a) % 10 > 4]
    assert relay.by_subject() == {"Welcome": PROFILES, "Your bonus": 500}
    promo = Counter(rcpt for rcpt, raw in relay.messages if _parsed(raw)["Subject"] == "Your bonus")
    assert sorted(promo) == sorted(clickers) and set(promo.values()) == {1}  # each once
    codes = [shown_code(raw) for _, raw in relay.messages if _parsed(raw)["Subject"] == "Your bonus"]
    assert len(set(codes)) == 500 and all(re.fullmatch(r"WELCOME-\d{6}", code) for code in codes)
    assert sorted(_CallCentre.phones) == sorted(f"+4930{number(a):07d}" for a in never)
    assert await send_sms(herald) == 0 and len(smsc.submits) == 600  # nobody was sent the SMS twice
    await herald.sms.close()

    stats = await ok(
        await api.get(
            f"/api/v1/scenarios/{ids['scenario']}/statistics",
            params={"start": "2026-03-01", "end": "2026-03-31"},
        )
    )
    assert (stats["entered"], stats["completed"], stats["in_process"], stats["errors"]) == (1000, 1000, 0, 0)
    nodes = {n["node_id"]: n for n in stats["nodes"]}
    assert nodes["4"]["entered"] == 1000 + 600  # the 600 sent the SMS came back round the loop
    assert nodes["4"]["exited"] == {"true": 500, "false": 500 + 600}
    assert nodes["8"]["exited"] == {"false": 600, "true": 500}
    assert nodes["9"]["entered"] == 500 and nodes["10"]["entered"] == 600

    lookup = await ok(
        await api.get(
            "/api/v1/profiles/lookup", params={"database_id": "1", "by": "email", "value": "c4@mail.example"}
        )
    )
    looper = lookup["profiles"][0]
    assert looper["fields"]["LOYALTY_SCORE"] == 200
    path = await ok(await api.get(f"/api/v1/scenarios/{ids['scenario']}/profiles/{looper['profile_id']}"))
    visited = [step["node_id"] for step in path["instances"][0]["steps"]]
    assert visited == ["2", "3", "4", "8", "10", "11", "4", "5", "6", "7"]
    assert path["instances"][0]["steps"][-2]["outcome"]["code"] in codes
