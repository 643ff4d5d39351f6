"""The tracking domain: the web version is the message as it was sent, every page on it runs no
script, and the track token a website embeds writes only the fields its database allows.

A message goes out over real SMTP (aiosmtpd on loopback); afterwards the profile's fields, a
fragment it used and its remote content all change, and the web version still shows, byte for
byte, the HTML the recipient received.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.security_headers import TRACKER_CSP
from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.conftest import herald_with
from tests.integration.test_email_end_to_end import (
    Sink,
    create_newsletter,
    html_of,
    ok,
    parsed,
    path_of,
    send_everything,
)
from tests.smtp_sink import smtp_server

HTML = (
    "<html><body><p>Hello, {lead._fname}, {lead.plan}!</p>{fragment.footer}"
    '{[REMOTE/offer]}<a href="{webversion}">Web version</a>'
    '<a href="{unsubscribe}">Unsubscribe</a></body></html>'
)
XSS = '<script>alert("pwned")</script>'


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    with smtp_server(handler) as port:
        yield handler, port


OFFER = {"html": b"<p>Offer: 10% off</p>"}  # what the remote block's URL answers right now


class _Offer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(OFFER["html"])))
        self.end_headers()
        self.wfile.write(OFFER["html"])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def remote() -> Iterator[str]:
    """A web server on loopback answering the template's remote block with `OFFER`."""
    OFFER["html"] = b"<p>Offer: 10% off</p>"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Offer)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def herald(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    with herald_with(tmp_path / "data", clock, remote_allowed_networks=("127.0.0.0/8",)) as app:
        yield app


async def _setup(api: httpx.AsyncClient, herald: Herald, port: int, remote: str) -> str:
    await create_newsletter(api)
    subscription = {"resource_id": "1", "channel": "email", "email": "ann@mail.example"}
    row = {"email": "ann@mail.example", "_fname": "Ann", "plan": "gold", "subscriptions": [subscription]}
    profile_id = (await ok(await api.post("/api/v1/databases/1/profiles/import", json={"rows": [row]})))[
        "results"
    ][0]["profile_id"]
    footer = {"short_name": "footer", "name": "Footer", "content": "<p>Shop Inc., {lead.plan} desk</p>"}
    await ok(await api.post("/api/v1/fragments", json=footer), 201)
    sender = {"name": "Loopback", "relay": {"host": "127.0.0.1", "port": port, "starttls": "never"}}
    await ok(await api.put("/api/v1/senders/main", json=sender))
    rules = [{"targets": [{"sender_id": "main", "percent": 100}]}]
    await ok(await api.put("/api/v1/virtual-senders/default", json={"name": "Default", "rules": rules}))
    content = {"email": {"subject": "Hi {lead._fname}", "html": HTML.replace("REMOTE", remote)}}
    template_id = (
        await ok(await api.post("/api/v1/templates", json={"name": "T", "content": content}), 201)
    )["template_id"]
    broadcast = {"name": "Spring", "type": "broadcast", "channel": "email", "resource_id": "1",
                 "template_ids": [template_id], "audience": {"kind": "database", "id": "1"}}  # fmt: skip
    campaign_id = (await ok(await api.post("/api/v1/campaigns", json=broadcast), 201))["campaign_id"]
    herald.runtime.drain()
    await ok(await api.post(f"/api/v1/campaigns/{campaign_id}/launch"))
    await send_everything(herald)
    return str(profile_id)


def _links(received: str) -> dict[str, str]:
    return {
        text: path_of(html.unescape(href))
        for href, text in re.findall(r'<a href="([^"]+)">([^<]*)</a>', received)
    }


async def test_the_web_version_is_the_message_as_sent_whatever_changed_since(
    api: httpx.AsyncClient,
    herald: Herald,
    sink: tuple[Sink, int],
    remote: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay, port = sink
    profile_id = await _setup(api, herald, port, remote)
    assert len(relay.messages) == 1
    received = html_of(parsed(relay.messages[0][2]))
    assert "Hello, Ann, gold!" in received and "gold desk" in received and "10% off" in received

    # everything the message was made from changes
    patched = await api.patch(
        f"/api/v1/profiles/{profile_id}", json={"fields": {"_fname": XSS, "plan": "basic"}}
    )
    assert patched.status_code == 200, patched.text
    footer = {"name": "Footer", "content": "<p>New footer {lead._fname}</p>"}
    await ok(await api.put("/api/v1/fragments/footer", json=footer))
    OFFER["html"] = b"<p>Offer: gone</p>"
    herald.runtime.drain()

    shown = await api.get(_links(received)["Web version"])
    assert shown.status_code == 200
    assert shown.text == received.rstrip("\r\n")  # MIME ends the part with a line break
    assert XSS not in shown.text
    assert shown.headers["content-security-policy"] == TRACKER_CSP


@pytest.mark.parametrize("page", ["Web version", "Unsubscribe"])
async def test_pages_on_the_tracking_domain_run_no_script(
    api: httpx.AsyncClient, herald: Herald, sink: tuple[Sink, int], remote: str, page: str
) -> None:
    relay, port = sink
    await _setup(api, herald, port, remote)
    links = _links(html_of(parsed(relay.messages[0][2])))
    for url in (links[page], "/t/webversion/forged.token", "/t/stoplist/anything"):
        response = await api.get(url)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp  # nothing may run script
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    api_response = await api.get("/api/v1/health")
    assert api_response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api_response.headers


# --- what a track token may write ------------------------------------------------------------------


async def _track_token(api: httpx.AsyncClient, herald: Herald) -> dict[str, str]:
    issued = await ok(await api.post("/api/v1/tokens", json={"name": "site", "role": "track"}), 201)
    herald.runtime.drain()
    return {"Authorization": f"Bearer {issued['token']}"}


def _identify(user_id: str, traits: dict[str, Any], field: str = "crm_id") -> dict[str, Any]:
    return {"url": "/api/v1/track/segment/identify", "params": {"database_id": "1", "user_id_field": field},
            "json": {"userId": user_id, "traits": traits}}  # fmt: skip


async def test_a_track_token_writes_only_the_allowed_fields_and_never_contacts(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    custom = [{"name": "crm_id", "title": "CRM", "type": "string", "unique": True},
              {"name": "plan", "title": "Plan", "type": "string"},
              {"name": "vip", "title": "VIP", "type": "bool"}]  # fmt: skip
    await ok(await api.post("/api/v1/databases", json={"name": "Shop", "custom_fields": custom}), 201)
    row = {
        "email": "ann@example.org",
        "phones": ["+79123456789"],
        "crm_id": "C-1",
        "_fname": "Ann",
        "plan": "gold",
    }
    profile_id = (await ok(await api.post("/api/v1/databases/1/profiles/import", json={"rows": [row]})))[
        "results"
    ][0]["profile_id"]
    herald.runtime.drain()
    track = await _track_token(api, herald)
    traits = {
        "email": "evil@example.org",
        "phones": ["+70000000000"],
        "_fname": XSS,
        "plan": "free",
        "vip": True,
    }

    # empty by default: a track token writes no field at all
    answer = await ok(await api.post(**_identify("C-1", traits), headers=track))
    assert answer["results"][0]["not_allowed_traits"] == sorted(traits)
    # the allow-list is set through the database API, checked against the database's fields
    for bad, path in ([["nope"], "tracking_fields.0"], [["plan", "email"], "tracking_fields.1"],
                      [["Phones"], "tracking_fields.0"]):  # fmt: skip
        refused = await api.patch("/api/v1/databases/1", json={"tracking_fields": bad})
        assert refused.status_code == 422 and refused.json()["error"]["path"] == path, refused.text
    await ok(await api.patch("/api/v1/databases/1", json={"tracking_fields": ["plan", "VIP"]}))
    assert (await ok(await api.get("/api/v1/databases/1")))["tracking_fields"] == ["plan", "vip"]
    answer = await ok(await api.post(**_identify("C-1", traits), headers=track))
    assert answer["results"][0]["not_allowed_traits"] == ["_fname", "email", "phones"]
    # matched by email or phone, the contact only names the profile
    await ok(await api.post(**_identify("ann@example.org", {"plan": "silver"}, "email"), headers=track))
    await ok(await api.post(**_identify("+79123456789", {"vip": False}, "phone"), headers=track))
    herald.runtime.drain()
    card = await ok(await api.get(f"/api/v1/profiles/{profile_id}"))
    fields = card["fields"]
    assert (fields["email"], fields["phones"], fields["_fname"]) == (
        "ann@example.org",
        ["+79123456789"],
        "Ann",
    )
    assert (fields["plan"], fields["vip"]) == ("silver", False)
    # a write token (a server-side integration) is not held to the list
    write = await ok(await api.post("/api/v1/tokens", json={"name": "crm", "role": "write"}), 201)
    herald.runtime.drain()
    headers = {"Authorization": f"Bearer {write['token']}"}
    await ok(await api.post(**_identify("C-1", {"_fname": "Annie"}), headers=headers))
    herald.runtime.drain()
    assert (await ok(await api.get(f"/api/v1/profiles/{profile_id}")))["fields"]["_fname"] == "Annie"
