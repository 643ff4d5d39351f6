"""Push subscriptions end to end: browsers (initSubscription, the email cookie), apps, toolkit, ack/open."""

from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.app import create_app
from herald.api.wiring import Herald
from herald.domain.resources import PushPlatform, PushProvider, PushSettings, UpdateChannel
from herald.senders.webpush import public_key_of
from tests import channel_servers as cs
from tests.builders import (
    RESOURCE,
    SEALED_KEY,
    _resource_runner,
    create_resource,
    customers,
    import_rows,
    launched_message,
)

SITE = "https://shop.example.com"
EMAIL = "ann@example.org"


def subscription(n: int = 1, endpoint: str = "https://push.example.net/wpush/v2/abc") -> dict[str, Any]:
    return {
        "endpoint": f"{endpoint}{n}",
        "expirationTime": None,
        "keys": {"p256dh": f"BKey{n}", "auth": f"auth{n}"},
    }


@pytest.fixture
async def browser(herald: Herald) -> AsyncIterator[httpx.AsyncClient]:
    """A browser: no API token, https (its cookies are Secure), a cookie jar."""
    transport = httpx.ASGITransport(app=create_app(herald, run_processors=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://trk.example.com") as client:
        yield client


@pytest.fixture
def shop(herald: Herald) -> str:
    customers(herald)
    create_resource(herald)
    web = PushSettings(
        platforms=(PushPlatform.ANDROID, PushPlatform.CHROME, PushPlatform.FIREFOX),
        providers=(PushProvider.FCM, PushProvider.WEBPUSH),
        firebase_api_key=SEALED_KEY,
    )
    _resource_runner(herald, RESOURCE)(UpdateChannel(RESOURCE, web))
    herald.runtime.drain()
    return herald.catalog.resource(RESOURCE).token


def pushes(herald: Herald) -> list[tuple[str, str, str]]:
    """(profile, provider, contact) of every push subscription, after the projections caught up."""
    herald.runtime.drain()
    found = []
    for event in herald.store.read_all():
        if event.type == "SubscriptionAdded" and event.data["channel"] == "push":
            found.append(
                (event.stream.removeprefix("profile-"), event.data["provider"], event.data["contact"])
            )
    return found


def created(herald: Herald) -> int:
    return sum(1 for e in herald.store.read_all() if e.type == "ProfileCreated")


async def subscribe(client: httpx.AsyncClient, token: str, **extra: Any) -> httpx.Response:
    body = {"resource_token": token, "subscription": subscription(), **extra}
    return await client.post(
        "/push/subscribe", content=json.dumps(body), headers={"Origin": SITE, "Content-Type": "text/plain"}
    )


async def email_opened_in(browser: httpx.AsyncClient, api: httpx.AsyncClient, herald: Herald) -> str:
    """Ann gets an email and opens it in `browser`; returns her profile id."""
    rows = [
        {"email": EMAIL, "subscriptions": [{"resource_id": RESOURCE, "channel": "email", "email": EMAIL}]}
    ]
    profile_id = str((await import_rows(api, rows))["results"][0]["profile_id"])
    message_id = await launched_message(
        api, herald, "email", {"email": {"subject": "Hi", "html": "<p>Hi</p>"}}
    )
    html = herald.queued.render_queued(herald.deliveries.queued(message_id)).body.html  # type: ignore[union-attr]
    pixel = re.search(r'src="https://trk\.example\.com(/t/open/[^"]+)"', html)
    assert pixel is not None
    opened = await browser.get(
        pixel.group(1), headers={"User-Agent": "Mozilla/5.0 (X11; Linux) Firefox/128.0"}
    )
    assert opened.status_code == 200 and "herald_browser" in browser.cookies
    return profile_id


async def test_a_browser_that_opened_an_email_subscribes_the_profile_that_opened_it(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, herald: Herald, shop: str
) -> None:
    profile_id = await email_opened_in(browser, api, herald)
    profiles_before = created(herald)
    response = await subscribe(browser, shop, update={"_fname": "Ann"}, browser="firefox")
    assert response.status_code == 200, response.text
    assert response.json()["profile_id"] == profile_id
    assert response.headers["access-control-allow-origin"] == SITE
    assert response.headers["access-control-allow-credentials"] == "true"
    contact = json.dumps(
        {"endpoint": subscription()["endpoint"], "keys": subscription()["keys"]}, separators=(",", ":")
    )
    assert pushes(herald) == [(profile_id, "webpush", contact)]
    assert created(herald) == profiles_before  # no new profile
    card = (await api.get(f"/api/v1/profiles/{profile_id}")).json()
    assert card["fields"]["_fname"] == "Ann"


async def test_a_new_browser_makes_a_new_profile_and_the_same_one_again_changes_nothing(
    browser: httpx.AsyncClient, herald: Herald, shop: str
) -> None:
    first = await subscribe(browser, shop, update={"_fname": "Boris"})
    assert first.status_code == 200 and first.json()["status"] == "created"
    herald.runtime.drain()
    browser.cookies.clear()  # even without the cookie, the same subscription finds its profile
    again = await browser.post(
        "/push/subscribe",
        json={"resource_token": shop, "subscription": {"keys": subscription()["keys"], **subscription()}},
        headers={"Origin": SITE},
    )
    assert again.status_code == 200 and again.json()["profile_id"] == first.json()["profile_id"]
    assert len(pushes(herald)) == 1


async def test_match_finds_the_profile_and_update_writes_to_it(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, herald: Herald, shop: str
) -> None:
    profile_id = (await import_rows(api, [{"email": EMAIL}]))["results"][0]["profile_id"]
    herald.runtime.drain()
    response = await subscribe(browser, shop, match={"email": EMAIL.upper()}, update={"_lname": "Lee"})
    assert response.status_code == 200 and response.json()["profile_id"] == profile_id
    assert [p for p, _, _ in pushes(herald)] == [profile_id]
    assert (await api.get(f"/api/v1/profiles/{profile_id}")).json()["fields"]["_lname"] == "Lee"


@pytest.mark.parametrize(
    ("change", "status", "path"),
    [
        (
            {"subscription": {"endpoint": "http://push.example.net/x", "keys": {"p256dh": "a", "auth": "b"}}},
            422,
            "subscription.endpoint",
        ),
        (
            {"subscription": {"endpoint": "https://push.example.net/x", "keys": {"p256dh": "a"}}},
            422,
            "subscription.keys.auth",
        ),
        ({"resource_token": "nope"}, 404, "resource_token"),
    ],
)
async def test_a_bad_subscription_is_refused_and_writes_nothing(
    browser: httpx.AsyncClient, herald: Herald, shop: str, change: dict[str, Any], status: int, path: str
) -> None:
    head = herald.store.head_position()
    body = {"resource_token": shop, "subscription": subscription(), **change}
    response = await browser.post("/push/subscribe", json=body, headers={"Origin": SITE})
    assert response.status_code == status, response.text
    assert response.json()["error"]["path"] == path
    assert herald.store.head_position() == head


async def test_a_page_of_another_site_cannot_subscribe(
    browser: httpx.AsyncClient, herald: Herald, shop: str
) -> None:
    head = herald.store.head_position()
    response = await browser.post(
        "/push/subscribe",
        json={"resource_token": shop, "subscription": subscription()},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403 and herald.store.head_position() == head


async def test_an_app_adds_its_device_token_by_api(api: httpx.AsyncClient, herald: Herald, shop: str) -> None:
    body = {
        "resource_token": shop,
        "token": "fcm-token-1",
        "provider": "fcm",
        "update": {"_fname": "Kim"},
        "device": {"device_type": "mobile", "platform": "android", "app_version": "5.1"},
    }
    response = await api.post("/api/v1/push/subscriptions", json=body)
    assert response.status_code == 200, response.text
    assert pushes(herald) == [(response.json()["profile_id"], "fcm", "fcm-token-1")]
    refused = await api.post("/api/v1/push/subscriptions", json={**body, "token": "t2", "provider": "apns"})
    assert refused.status_code in (409, 422) and refused.json()["error"]["path"] == "provider"
    anonymous = await api.post("/api/v1/push/subscriptions", json=body, headers={"Authorization": "Bearer x"})
    assert anonymous.status_code == 401


async def test_the_toolkit_carries_the_resource_and_the_vapid_key(
    api: httpx.AsyncClient, herald: Herald, shop: str, tmp_path: Any
) -> None:
    response = await api.get(f"/api/v1/resources/{RESOURCE}/push-toolkit")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    files = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(files.namelist()) == ["README.txt", "ak-push.js", "manifest.json", "service-worker.js"]
    script = files.read("ak-push.js").decode()
    assert f'"{shop}"' in script and f'"{public_key_of(herald.vapid_private_key)}"' in script
    assert '"https:\\/\\/trk.example.com\\/push\\/subscribe"' in script
    assert json.loads(files.read("manifest.json"))["name"] == "Shop 7"
    for name in ("ak-push.js", "service-worker.js"):
        (tmp_path / name).write_bytes(files.read(name))
        subprocess.run(["node", "--check", str(tmp_path / name)], check=True)


async def test_a_subscribed_browser_gets_the_push_decrypted_and_it_reports_delivered_and_opened(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, herald: Herald, shop: str
) -> None:
    herald.device_subscriptions.allow_http_endpoints = True  # the local push service is plain HTTP
    async with cs.push_service() as service:
        device = service.browser()
        body = {"resource_token": shop, "subscription": device.subscription(), "update": {"_fname": "Ann"}}
        subscribed = await browser.post("/push/subscribe", json=body, headers={"Origin": SITE})
        assert subscribed.status_code == 200, subscribed.text
        sender = {"name": "Web push", "channel": "push", "webpush": {"subject": "mailto:o@e.com"}}
        assert (await api.put("/api/v1/senders/web", json=sender)).status_code == 200
        route = {"name": "Push", "rules": [{"targets": [{"sender_id": "web", "percent": 100}]}]}
        assert (await api.put("/api/v1/virtual-senders/default_push", json=route)).status_code == 200
        push = {"push": {"title": "Hi {lead._fname}", "body": "New in store"}}
        message_id = await launched_message(api, herald, "push", push)
        assert await herald.push.run_once() == 1  # the push worker, through the sender's gateway
        await herald.push.close()
    assert herald.deliveries.message(message_id).state.status == "delivered"
    herald.runtime.drain()
    card = await api.get(f"/api/v1/campaigns/{herald.deliveries.queued(message_id).campaign_id}/progress")
    assert card.json()["campaign"] == {"queued": 1}  # a push card has no delivered/undelivered/delivering
    shown = service.received[0].body  # decrypted with the browser's key, as the browser would
    assert (shown["title"], shown["body"]) == ("Hi Ann", "New in store")
    # signed with the key whose public half the toolkit gave the browser
    assert f"k={public_key_of(herald.vapid_private_key)}" in service.received[0].headers["authorization"]
    for link in shown["hub_link"].values():  # what the service worker does: ack on receipt, open on a tap
        assert (await browser.get(link.removeprefix("https://trk.example.com"))).status_code in (200, 204)
    events = [e for e in herald.store.read_stream(f"message-{message_id}")]
    tracked = {e.type: e.data for e in events if e.type in ("MessageAcknowledged", "MessageOpened")}
    assert set(tracked) == {"MessageAcknowledged", "MessageOpened"}
    # a device's HTTP client (here httpx, a "machine" by the email rules) at the delivery is the person
    assert all((d["bot"], d["unique"]) == (False, True) for d in tracked.values())


async def test_one_push_campaign_reaches_an_app_through_fcm_and_a_browser_through_web_push(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, herald: Herald, shop: str
) -> None:
    """The virtual sender routes by the subscription's provider: `fcm` to the FCM sender (its
    service account sealed with it), everything else to the Web Push one."""
    herald.device_subscriptions.allow_http_endpoints = True
    async with cs.push_service() as service, cs.fcm_server() as fcm:
        device = service.browser()
        web = {"resource_token": shop, "subscription": device.subscription(), "update": {"_fname": "Ann"}}
        assert (await browser.post("/push/subscribe", json=web, headers={"Origin": SITE})).status_code == 200
        app = {"resource_token": shop, "token": "fcm-token-1", "provider": "fcm", "update": {"_fname": "Kim"}}
        assert (await api.post("/api/v1/push/subscriptions", json=app)).status_code == 200
        senders = {
            "app": {
                "name": "Firebase",
                "channel": "push",
                "fcm": {"base_url": fcm.base_url},
                "service_account": json.dumps(fcm.account),
            },
            "web": {"name": "Web push", "channel": "push", "webpush": {"subject": "mailto:o@e.com"}},
        }
        for sender_id, sender in senders.items():
            assert (await api.put(f"/api/v1/senders/{sender_id}", json=sender)).status_code == 200
        shown = (await api.get("/api/v1/senders/app")).json()
        assert shown["has_service_account"] and "service_account" not in shown
        rules = [
            {"domains": ["fcm"], "targets": [{"sender_id": "app", "percent": 100}]},
            {"targets": [{"sender_id": "web", "percent": 100}]},
        ]
        route = {"name": "Push", "rules": rules}
        assert (await api.put("/api/v1/virtual-senders/default_push", json=route)).status_code == 200
        await launched_message(api, herald, "push", {"push": {"title": "Hi {lead._fname}", "body": "New"}})
        assert await herald.push.run_once() == 2
        await herald.push.close()
    [to_app] = fcm.received
    assert (to_app.address, to_app.body["notification"]["title"]) == ("fcm-token-1", "Hi Kim")
    assert set(to_app.body["data"]) >= {"ack", "open"}  # the app reports delivered and opened
    [to_browser] = service.received
    assert to_browser.body["title"] == "Hi Ann"
    herald.runtime.drain()
    sent = [e for e in herald.store.read_all() if e.type == "MessageDelivered"]
    assert sorted(e.data["sender_id"] for e in sent) == ["app", "web"]


async def test_an_app_push_goes_through_apns_and_a_gone_token_ends_its_subscription(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, herald: Herald, shop: str, tmp_path: Path
) -> None:
    """An APNs sender (token auth: team, key id, topic; the .p8 key sealed) over HTTP/2 to the local
    APNs server; the `ack` link in the payload records delivered; 410 Unregistered hard-bounces."""
    ios = PushSettings(
        platforms=(PushPlatform.IOS, PushPlatform.ANDROID),
        providers=(PushProvider.APNS, PushProvider.FCM),
        firebase_api_key=SEALED_KEY,
    )
    _resource_runner(herald, RESOURCE)(UpdateChannel(RESOURCE, ios))
    herald.runtime.drain()
    good, gone = "ab" * 32, "cd" * 32
    async with cs.apns_server(tmp_path, cs.ApnsServer(behaviour={gone: "gone"})) as (server, ca):
        for token, name in ((good, "Kim"), (gone, "Lee")):
            app = {"resource_token": shop, "token": token, "provider": "apns", "update": {"_fname": name}}
            assert (await api.post("/api/v1/push/subscriptions", json=app)).status_code == 200
        sender = {
            "name": "APNs",
            "channel": "push",
            "apns": {
                "team_id": server.team_id,
                "key_id": server.key_id,
                "topic": server.topic,
                "base_url": f"https://127.0.0.1:{server.port}",
                "ca_file": str(ca),
            },
            "signing_key": server.signing_key,
        }
        assert (await api.put("/api/v1/senders/ios", json=sender)).status_code == 200
        shown = (await api.get("/api/v1/senders/ios")).json()
        assert shown["has_signing_key"] and "signing_key" not in shown
        route = {"name": "Push", "rules": [{"targets": [{"sender_id": "ios", "percent": 100}]}]}
        assert (await api.put("/api/v1/virtual-senders/default_push", json=route)).status_code == 200
        content = {"push": {"title": "Hi {lead._fname}", "body": "New", "ios_deep_link": "shop://sale"}}
        await launched_message(api, herald, "push", content)
        assert await herald.push.run_once() == 2
        await herald.push.close()
    to_kim = next(r for r in server.received if r.address == good)
    assert to_kim.headers["apns-topic"] == server.topic
    assert (to_kim.body["aps"]["alert"]["title"], to_kim.body["deep_link"]) == ("Hi Kim", "shop://sale")
    ack = to_kim.body["hub_link"]["ack"].removeprefix("https://trk.example.com")
    assert (await browser.get(ack)).status_code in (200, 204)  # what the app does on receipt
    herald.runtime.drain()
    kinds = [e.type for e in herald.store.read_all()]
    assert kinds.count("MessageDelivered") == 1 and "MessageAcknowledged" in kinds
    [bounced] = [e.data for e in herald.store.read_all() if e.type == "MessageHardBounced"]
    assert (bounced["code"], bounced["response"]) == (410, "Unregistered")
    [ended] = [e.data for e in herald.store.read_all() if e.type == "SubscriptionStatusChanged"]
    assert (ended["contact"], ended["provider"], ended["to_status"]) == (gone, "apns", "hard_bounced")


async def test_an_apns_sender_needs_a_p256_signing_key(api: httpx.AsyncClient) -> None:
    app = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.app"}
    sender = {"name": "APNs", "channel": "push", "apns": app}
    for key, path in (("", "signing_key"), ("not a key", "signing_key"), (cs.vapid_key_pem(), None)):
        answer = await api.put("/api/v1/senders/ios", json={**sender, "signing_key": key})
        if path is None:
            assert answer.status_code == 200, answer.text
        else:
            assert answer.status_code == 422 and answer.json()["error"]["path"] == path, answer.text
    bad = await api.put("/api/v1/senders/x", json={**sender, "apns": {**app, "topic": ""}})
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "apns.topic"


async def test_an_apns_senders_ca_file_must_be_a_readable_pem_bundle_at_save(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    ca, _, _ = cs.tls_files(tmp_path)
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    app = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.app"}
    sender = {"name": "APNs", "channel": "push", "signing_key": cs.vapid_key_pem()}
    for path in (tmp_path / "missing.pem", tmp_path, not_pem):  # missing, a directory, not PEM
        answer = await api.put("/api/v1/senders/ios", json={**sender, "apns": {**app, "ca_file": str(path)}})
        assert answer.status_code == 422 and answer.json()["error"]["path"] == "apns.ca_file", (
            path,
            answer.text,
        )
    kept = await api.put("/api/v1/senders/ios", json={**sender, "apns": {**app, "ca_file": str(ca)}})
    assert kept.status_code == 200, kept.text
    assert (await api.get("/api/v1/senders/ios")).json()["apns"]["ca_file"] == str(ca)
