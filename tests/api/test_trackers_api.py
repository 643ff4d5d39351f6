"""The email trackers end to end: a campaign is launched, its message rendered, and the links in it followed.

The message is made through the real path (database, resource, profile,
template, campaign, launch); its HTML is rendered again as the sender would,
and the tests follow the tracker URLs found in it (the tracking domain cut
off, the path kept).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from herald.api.routes.trackers import PIXEL_GIF, held_open, is_one_click
from herald.api.wiring import Herald
from herald.domain import deliveries as dl
from herald.domain.messages import message_stream
from herald.infra.clock import ManualClock
from herald.messages.rendering import RenderedEmail
from tests.builders import RESOURCE, create_resource, customers, email_subscription, import_rows

CLUB = "8"
EMAIL = "ann@example.org"
SALE = "https://shop.example.com/sale?x=1&y=2#top"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
HTML = """<html><body>
<p>Hi {lead._fname}</p>
<a href="https://shop.example.com/sale?x=1&amp;y=2#top" name="sale">Sale</a>
<a href="https://shop.example.com/gold" update-tier="gold">Go gold</a>
<a href="https://shop.example.com/club" subscribe-to="8">Join the club</a>
<a href="{unsubscribe}">Unsubscribe</a>
<a href="{globalunsubscribe}">Leave everything</a>
<a href="{subscription_manager}">Manage</a>
<a href="{webversion}">Web version</a>
{read}
</body></html>"""
_ANCHOR = re.compile(r'<a [^>]*href="([^"]+)"[^>]*>([^<]*)</a>')
_IMAGE = re.compile(r'<img src="([^"]+)"')
_TRACKER = "https://trk.example.com"


@dataclass(frozen=True)
class Sent:
    """A queued message: its id, its profile, its HTML and its tracker paths by anchor text."""

    message_id: str
    profile_id: str
    html: str
    links: dict[str, str]
    open: str
    read: str


def _path(url: str) -> str:
    url = html.unescape(url)
    assert url.startswith(f"{_TRACKER}/t/"), url
    return url[len(_TRACKER) :]


@pytest.fixture
async def sent(api: httpx.AsyncClient, herald: Herald) -> Sent:
    customers(herald)
    create_resource(herald)
    create_resource(herald, CLUB)
    rows = [{"email": EMAIL, "_fname": "Ann", "subscriptions": [email_subscription(EMAIL)]}]
    profile_id = (await import_rows(api, rows))["results"][0]["profile_id"]
    template = await api.post(
        "/api/v1/templates", json={"name": "Sale", "content": {"email": {"subject": "Sale", "html": HTML}}}
    )
    assert template.status_code == 201, template.text
    campaign = await api.post(
        "/api/v1/campaigns",
        json={
            "name": "Spring",
            "type": "broadcast",
            "channel": "email",
            "resource_id": RESOURCE,
            "template_ids": [template.json()["template_id"]],
            "audience": {"kind": "database", "id": "1"},
        },
    )
    assert campaign.status_code == 201, campaign.text
    launched = await api.post(f"/api/v1/campaigns/{campaign.json()['campaign_id']}/launch")
    assert launched.status_code == 200, launched.text
    herald.runtime.drain()
    message_id = next(e.data["message_id"] for e in herald.store.read_all() if e.type == "MessageQueued")
    email = herald.queued.render_queued(herald.deliveries.queued(message_id)).body
    assert isinstance(email, RenderedEmail)
    body = email.html
    images = [_path(src) for src in _IMAGE.findall(body)]
    return Sent(
        message_id=message_id,
        profile_id=profile_id,
        html=body,
        links={text: _path(href) for href, text in _ANCHOR.findall(body)},
        open=next(p for p in images if p.startswith("/t/open/")),
        read=next(p for p in images if p.startswith("/t/read/")),
    )


def events(herald: Herald, sent: Sent, *types: str) -> list[dict[str, Any]]:
    return [e.data for e in herald.store.read_stream(message_stream(sent.message_id)) if e.type in types]


def subscription_change(herald: Herald, sent: Sent) -> dict[str, Any]:
    """The last status change of the profile's subscriptions."""
    changes = [
        e.data
        for e in herald.store.read_stream(f"profile-{sent.profile_id}")
        if e.type == "SubscriptionStatusChanged"
    ]
    return changes[-1]


def status(herald: Herald, sent: Sent, resource_id: str = RESOURCE) -> str:
    subscriptions = herald.profiles.state(sent.profile_id).subscriptions.of_resource(resource_id, "email")
    return str(subscriptions[0].status) if subscriptions else "none"


async def set_policy(api: httpx.AsyncClient, **policy: Any) -> None:
    response = await api.put(f"/api/v1/resources/{RESOURCE}/unsubscribe-policy", json=policy)
    assert response.status_code == 200, response.text


# --- pixels ------------------------------------------------------------------------------------


async def test_the_open_pixel_records_opens_unique_once_and_flags_bots(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, sent: Sent
) -> None:
    scanner = await api.get(sent.open, headers={"User-Agent": "Barracuda Sentinel (EE)"})
    assert scanner.status_code == 200
    first = await api.get(sent.open, headers={"User-Agent": UA})
    assert first.content == PIXEL_GIF
    assert first.headers["content-type"] == "image/gif"
    assert "no-store" in first.headers["cache-control"]
    clock.advance(timedelta(minutes=5))
    await api.get(sent.open, headers={"User-Agent": UA})

    opened = events(herald, sent, "MessageOpened")
    assert [(o["bot"], o["unique"]) for o in opened] == [(True, False), (False, True), (False, False)]
    assert opened[1]["user_agent"] == UA and opened[1]["ip"] == "127.0.0.1"
    assert opened[1]["at"] < opened[2]["at"]


async def test_a_head_request_is_a_bot(api: httpx.AsyncClient, herald: Herald, sent: Sent) -> None:
    assert (await api.head(sent.open, headers={"User-Agent": UA})).status_code == 200
    assert [o["bot"] for o in events(herald, sent, "MessageOpened")] == [True]


async def test_hits_right_after_the_delivery_are_prefetches(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, sent: Sent
) -> None:
    deliveries = herald.deliveries
    deliveries.execute(sent.message_id, dl.StartAttempt("smtp-1", clock.now()))
    outcome = dl.RecordAcceptance((sent.message_id,), 250, "ok", "smtp-1", None, clock.now())
    deliveries.execute(sent.message_id, outcome)
    clock.advance(timedelta(seconds=1))
    await api.get(sent.open, headers={"User-Agent": UA})
    clock.advance(timedelta(minutes=1))
    await api.get(sent.open, headers={"User-Agent": UA})
    assert [(o["bot"], o["unique"]) for o in events(herald, sent, "MessageOpened")] == [
        (True, False),
        (False, True),
    ]


def test_the_pixel_is_a_transparent_1x1_gif() -> None:
    assert PIXEL_GIF[:6] == b"GIF89a"
    assert (PIXEL_GIF[6:8], PIXEL_GIF[8:10]) == (b"\x01\x00", b"\x01\x00")  # width, height
    assert PIXEL_GIF[10] & 0x80  # a global colour table (of 2 entries, 6 bytes) follows
    extension = PIXEL_GIF[19:27]  # graphic control: transparency flag set, transparent index 0
    assert extension[:3] == b"\x21\xf9\x04" and extension[3] & 0x01 and extension[6] == 0
    image = PIXEL_GIF[27:]
    assert image[0] == 0x2C and image[5:9] == b"\x01\x00\x01\x00"
    min_code_size, length = image[10], image[11]
    data = int.from_bytes(image[12 : 12 + length], "little")
    width = min_code_size + 1
    codes = [(data >> (i * width)) & ((1 << width) - 1) for i in range(3)]
    assert codes == [4, 0, 5]  # clear, the one pixel: colour 0 (the transparent one), end
    assert image[12 + length :] == b"\x00\x3b"  # block terminator, trailer


async def test_the_read_pixel_records_a_read_when_held_open(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    herald.settings = replace(herald.settings, read_pixel_seconds=0)
    response = await api.get(sent.read, headers={"User-Agent": UA})
    assert response.status_code == 200 and response.content == PIXEL_GIF
    (read,) = events(herald, sent, "MessageRead")
    assert (read["unique"], read["bot"], read["user_agent"]) == (True, False, UA)


class _Client:
    def __init__(self, gone: bool) -> None:
        self.gone = gone
        self.asked = 0

    async def is_disconnected(self) -> bool:
        self.asked += 1
        return self.gone


async def test_a_client_that_leaves_early_is_no_read() -> None:
    left = _Client(gone=True)
    assert await held_open(left, 30) is False and left.asked == 1  # seen at the first poll, no wait
    assert await held_open(_Client(gone=False), 0) is True


# --- clicks ------------------------------------------------------------------------------------


async def test_a_click_redirects_to_the_link_and_records_it(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    response = await api.get(sent.links["Sale"], headers={"User-Agent": UA})
    assert response.status_code == 302
    assert response.headers["location"] == SALE
    (clicked,) = events(herald, sent, "LinkClicked")
    assert (clicked["link_id"], clicked["url"], clicked["link_name"]) == ("html.1", SALE, "sale")
    assert (clicked["unique"], clicked["bot"], clicked["ip"]) == (True, False, "127.0.0.1")


async def test_link_actions_update_the_profile_and_subscribe(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    assert herald.profiles.state(sent.profile_id).fields.get("tier") == "basic"
    gold = await api.get(sent.links["Go gold"], headers={"User-Agent": UA})
    assert gold.headers["location"] == "https://shop.example.com/gold"
    assert herald.profiles.state(sent.profile_id).fields["tier"] == "gold"

    assert status(herald, sent, CLUB) == "none"
    club = await api.get(sent.links["Join the club"], headers={"User-Agent": UA})
    assert club.headers["location"] == "https://shop.example.com/club"
    assert status(herald, sent, CLUB) == "subscribed"


async def test_a_scanners_click_is_recorded_but_applies_no_action(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    scanned = await api.get(sent.links["Go gold"], headers={"User-Agent": "Mimecast URL protect"})
    assert scanned.status_code == 302
    assert [c["bot"] for c in events(herald, sent, "LinkClicked")] == [True]
    assert herald.profiles.state(sent.profile_id).fields.get("tier") == "basic"


def _changed(token_path: str) -> str:
    """The path with one character of the token's payload changed."""
    at = token_path.index("/", 3) + 5
    return token_path[:at] + ("A" if token_path[at] != "A" else "B") + token_path[at + 1 :]


async def test_forged_cut_and_replayed_tokens_are_404_and_record_nothing(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    click = sent.links["Sale"]
    token = click.rsplit("/", 1)[1]
    head = herald.store.head_position()
    tries = [
        _changed(click),
        click[:-3],  # the MAC cut short
        click.split(".")[0],  # no MAC at all
        f"/t/open/{token}",  # a genuine click token on the open pixel
        f"/t/unsubscribe/{token}",
        sent.open.replace("/t/open/", "/t/click/"),  # a genuine open token as a click
        f"/t/click/{herald.signer.sign('click', {'m': 'never-queued', 'l': 'html.1', 'u': SALE})}",
    ]
    for path in tries:
        response = await api.get(path, headers={"User-Agent": UA})
        assert response.status_code == 404, path
        assert "location" not in response.headers
    one_click = await api.post(
        f"/t/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 404
    assert herald.store.head_position() == head


# --- web version and subscription manager -------------------------------------------------------


async def test_the_web_version_is_the_message_as_sent(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    head = herald.store.head_position()
    response = await api.get(sent.links["Web version"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == sent.html
    assert herald.store.head_position() == head


async def test_the_subscription_manager_lists_the_subscriptions_on_the_resource(
    api: httpx.AsyncClient, sent: Sent
) -> None:
    response = await api.get(sent.links["Manage"])
    assert response.status_code == 200
    assert f"email {EMAIL}: subscribed" in response.text
    assert "Shop 7" in response.text


# --- unsubscribe -------------------------------------------------------------------------------


async def test_one_click_unsubscribe_unsubscribes_once(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Google-Mail"}
    response = await api.post(sent.links["Unsubscribe"], content=b"List-Unsubscribe=One-Click", headers=form)
    assert (response.status_code, response.content) == (200, b"")
    assert status(herald, sent) == "unsubscribed"
    assert subscription_change(herald, sent)["cause"] == "list_unsubscribe"
    (unsubscribed,) = events(herald, sent, "MessageUnsubscribed")
    assert (unsubscribed["via"], unsubscribed["user_agent"]) == ("one_click", "Google-Mail")

    head = herald.store.head_position()
    again = await api.post(sent.links["Unsubscribe"], content=b"List-Unsubscribe=One-Click", headers=form)
    assert again.status_code == 200
    assert herald.store.head_position() == head


async def test_instant_mode_unsubscribes_a_person_on_the_link_but_not_a_scanner(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    link = sent.links["Unsubscribe"]
    scanned = await api.get(link, headers={"User-Agent": "Proofpoint URL Defense"})
    assert scanned.status_code == 200 and f'<form method="post" action="{link}">' in scanned.text
    assert status(herald, sent) == "subscribed"

    response = await api.get(link, headers={"User-Agent": UA})
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert status(herald, sent) == "unsubscribed"
    assert subscription_change(herald, sent)["cause"] == "unsubscribe_link"
    assert [u["via"] for u in events(herald, sent, "MessageUnsubscribed")] == ["link"]


async def test_instant_mode_with_a_page_goes_there_after_unsubscribing(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    await set_policy(api, mode="instant", page_url="https://shop.example.com/bye?m={send_message_id}")
    response = await api.get(sent.links["Unsubscribe"], headers={"User-Agent": UA})
    assert response.status_code == 302
    assert response.headers["location"] == f"https://shop.example.com/bye?m={sent.message_id}"
    assert status(herald, sent) == "unsubscribed"


async def test_confirm_mode_sends_to_the_resource_page_and_unsubscribes_on_confirmation(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    page_url = "https://shop.example.com/unsub?smid={send_message_id}&rt={resource_token}"
    await set_policy(api, mode="confirm", page_url=page_url)
    head = herald.store.head_position()
    link = sent.links["Unsubscribe"]
    response = await api.get(link, headers={"User-Agent": UA})
    assert response.status_code == 302
    assert response.headers["location"] == f"https://shop.example.com/unsub?smid={sent.message_id}&rt=rt-7"
    assert herald.store.head_position() == head and status(herald, sent) == "subscribed"

    confirmed = await api.post(
        link, content=b"confirm=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert confirmed.status_code == 200 and "You are unsubscribed" in confirmed.text
    assert status(herald, sent) == "unsubscribed"
    assert subscription_change(herald, sent)["cause"] == "unsubscribe_link"
    assert [u["via"] for u in events(herald, sent, "MessageUnsubscribed")] == ["page"]


async def test_delayed_mode_unsubscribes_when_the_timer_falls_due_unless_cancelled(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, sent: Sent
) -> None:
    page_url = "https://shop.example.com/unsub?smid={send_message_id}"
    await set_policy(api, mode="delayed", page_url=page_url, timer_minutes=15)
    link = sent.links["Unsubscribe"]
    response = await api.get(link, headers={"User-Agent": UA})
    assert response.status_code == 302
    herald.runtime.drain()
    [scheduled] = events(herald, sent, "MessageUnsubscribeScheduled")
    assert scheduled["apply_at"] == (clock.now() + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
    clock.advance(timedelta(minutes=14))
    herald.tick()
    assert status(herald, sent) == "subscribed"

    # the page cancels with the resource token; a wrong token is refused
    body = {"rtoken": "wrong"}
    assert (
        await api.post(f"/api/v1/messages/{sent.message_id}/cancel-unsubscribe", json=body)
    ).status_code == 404
    cancel = await api.post(f"/api/v1/messages/{sent.message_id}/cancel-unsubscribe", json={"rtoken": "rt-7"})
    assert cancel.status_code == 200, cancel.text
    herald.runtime.drain()
    clock.advance(timedelta(minutes=5))
    herald.tick()
    assert status(herald, sent) == "subscribed"

    # clicked again and left alone: the timer unsubscribes
    assert (await api.get(link, headers={"User-Agent": UA})).status_code == 302
    herald.runtime.drain()
    clock.advance(timedelta(minutes=15))
    herald.tick()
    herald.runtime.drain()
    assert status(herald, sent) == "unsubscribed"
    assert [u["via"] for u in events(herald, sent, "MessageUnsubscribed")] == ["page"]
    message = (await api.get(f"/api/v1/messages/{sent.message_id}")).json()
    assert [e["type"] for e in message["events"]][-4:] == [
        "MessageUnsubscribeScheduled",
        "MessageUnsubscribeCancelled",
        "MessageUnsubscribeScheduled",
        "MessageUnsubscribed",
    ]


async def test_forbidden_mode_explains_and_records_nothing(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    await set_policy(api, mode="forbidden", forbidden_explanation="Receipts & invoices are required by law.")
    head = herald.store.head_position()
    page = await api.get(sent.links["Unsubscribe"], headers={"User-Agent": UA})
    assert page.status_code == 200
    assert "Receipts &amp; invoices are required by law." in page.text and "<form" not in page.text
    one_click = await api.post(
        sent.links["Unsubscribe"],
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 403
    everything = await api.get(sent.links["Leave everything"], headers={"User-Agent": UA})
    assert "required by law" in everything.text
    assert herald.store.head_position() == head
    assert status(herald, sent) == "subscribed"


async def test_the_global_unsubscribe_link_unsubscribes_the_profile(
    api: httpx.AsyncClient, herald: Herald, sent: Sent
) -> None:
    response = await api.get(sent.links["Leave everything"], headers={"User-Agent": UA})
    assert response.status_code == 200
    profile = herald.profiles.state(sent.profile_id)
    assert str(profile.status) == "unsubscribed"
    (changed,) = [
        e.data
        for e in herald.store.read_stream(f"profile-{sent.profile_id}")
        if e.type == "ProfileGlobalStatusChanged" and e.data["to_status"] == "unsubscribed"
    ]
    assert changed["cause"] == "unsubscribe_link"


@pytest.mark.parametrize(
    ("body", "content_type", "one_click"),
    [
        (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", True),
        (b"List-Unsubscribe=One-Click\r\n", "application/x-www-form-urlencoded", True),
        (
            b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            True,
        ),
        (b"confirm=1", "application/x-www-form-urlencoded", False),
        (b"", "", False),
        (b"List-Unsubscribe=Two-Clicks", "application/x-www-form-urlencoded", False),
    ],
)
def test_one_click_bodies_are_recognised(body: bytes, content_type: str, one_click: bool) -> None:
    assert is_one_click(body, content_type) is one_click
