"""Pixels through HTTP: the entity, its three tracking codes and signed URLs, hits with their goals, the
visitor cookie, tracked links, `match` and `update`, anonymous profiles, the re-fire block, goals by API."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from herald.api.browser_cookie import BROWSER_COOKIE
from herald.api.routes.trackers import PIXEL_GIF
from herald.api.visitor_cookie import COOKIE
from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from herald.messages.rendering import RenderedEmail
from tests.builders import (
    RESOURCE,
    create_profile,
    create_resource,
    customers,
    email_subscription,
    error_of,
    import_rows,
    log_size,
)

P = "/api/v1/pixels"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)


async def pixel(api: httpx.AsyncClient, **settings: Any) -> dict[str, Any]:
    response = await api.post(P, json={"name": "Shop", "database_id": "1", **settings})
    assert response.status_code == 201, response.text
    card: dict[str, Any] = (await api.get(f"{P}/{response.json()['pixel_id']}")).json()
    return card


async def code(api: httpx.AsyncClient, pixel_id: str, **params: Any) -> dict[str, Any]:
    response = await api.get(f"{P}/{pixel_id}/code", params={"base_url": "https://trk.example.com", **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def path_of(url: str, **extra: str) -> str:
    """A tracker URL's path and query (the host cut off), with `extra` parameters added."""
    parts = urlsplit(url)
    query = parts.query + "".join(f"&{k}={v}" for k, v in extra.items())
    return f"{parts.path}?{query}"


async def hit(
    api: httpx.AsyncClient, url: str, cookies: dict[str, str] | None = None, **extra: str
) -> httpx.Response:
    api.cookies.clear()
    headers = {"user-agent": UA}
    if cookies:
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return await api.get(path_of(url, **extra), headers=headers)


def goals_of(herald: Herald) -> list[dict[str, Any]]:
    """Every goal event in the log: (stream, properties, profile or anonymous id)."""
    return [
        {
            "stream": e.stream,
            **e.data["properties"],
            "profile_id": e.data.get("profile_id"),
            "anonymous_id": e.data.get("anonymous_id"),
            "name": e.data["name"],
        }
        for e in herald.store.read_all()
        if e.type == "ActivityTracked" and "pixel_id" in e.data["properties"]
    ]


def cookie(response: httpx.Response) -> str:
    found = re.search(rf"{COOKIE}=([^;]+)", response.headers["set-cookie"])
    assert found, response.headers
    return found.group(1)


# --- the entity and its codes ------------------------------------------------------------------


async def test_a_pixel_has_a_key_and_settings(api: httpx.AsyncClient, herald: Herald) -> None:
    card = await pixel(api, block_retrigger_minutes=30, allow_import=True)
    assert card["name"] == "Shop" and card["database_id"] == "1" and len(card["key"]) == 48
    assert (card["block_retrigger_minutes"], card["allow_import"]) == (30, True)
    herald.runtime.drain()
    listed = (await api.get(P)).json()["pixels"]
    assert [p["pixel_id"] for p in listed] == [card["pixel_id"]]


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"name": ""}, 422, "name"),
        ({"name": "X", "block_retrigger_minutes": 43_201}, 422, "block_retrigger_minutes"),
        ({"name": "X", "database_id": "9"}, 404, "database_id"),
    ],
)
async def test_bad_pixel_settings_are_refused(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, path: str
) -> None:
    response = await api.post(P, json=body)
    assert response.status_code == status and error_of(response)["path"] == path


async def test_the_three_tracking_codes(api: httpx.AsyncClient) -> None:
    card = await pixel(api)
    js = await code(
        api,
        card["pixel_id"],
        kind="js",
        goals="Custom score 2",
        value=9000,
        timeout=10000,
        after_scroll=True,
        auto_load=False,
    )
    assert '"goals": "Custom%20score%202"' in js["code"] and '"timeout": 10000' in js["code"]
    assert '"after_scroll": true' in js["code"] and "https://trk.example.com/pixel/ak.js" in js["code"]
    query = parse_qs(urlsplit(js["url"]).query)
    assert query["k"] == [card["key"]] and re.fullmatch(r"[0-9a-f]{16}", query["s"][0])
    image = await code(api, card["pixel_id"], kind="image", goals="Premium access purchased", value=1)
    assert image["url"].startswith("https://trk.example.com/pixel?k=") and "<img src=" in image["code"]
    assert "goals=Premium%20access%20purchased&value=1" in image["url"]
    link = await code(
        api,
        card["pixel_id"],
        kind="link",
        goals="New product purchased",
        value=200,
        redirect_url="https://shop.example.com/new",
    )
    assert "redirect_url=https%3A%2F%2Fshop.example.com%2Fnew" in link["url"] and "<a href=" in link["code"]
    bad = await api.get(
        f"{P}/{card['pixel_id']}/code", params={"kind": "link", "redirect_url": "javascript:x"}
    )
    assert bad.status_code == 422 and error_of(bad)["path"] == "redirect_url"


# --- hits --------------------------------------------------------------------------------------


async def test_an_image_hit_records_its_goals_for_an_anonymous_visitor(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    card = await pixel(api)
    image = await code(api, card["pixel_id"], kind="image", goals="Viewed,Liked", value=-12.5)
    response = await hit(api, image["url"])
    assert response.status_code == 200 and response.content == PIXEL_GIF
    visitor = herald.pixel_signer.visitor_of(cookie(response))
    assert visitor is not None and "HttpOnly" in response.headers["set-cookie"]
    recorded = goals_of(herald)
    assert [(g["goal"], g["value"], g["source"], g["anonymous_id"]) for g in recorded] == [
        ("Viewed", -12.5, "pixel_img", visitor),
        ("Liked", -12.5, "pixel_img", visitor),
    ]
    again = await hit(api, image["url"], cookies={COOKIE: cookie(response)})
    assert herald.pixel_signer.visitor_of(cookie(again)) == visitor  # the cookie keeps the visitor


async def test_a_forged_key_or_signature_records_nothing(api: httpx.AsyncClient, herald: Herald) -> None:
    card = await pixel(api)
    link = await code(api, card["pixel_id"], kind="link", redirect_url="https://shop.example.com/new")
    before = log_size(herald)
    moved = link["url"].replace("shop.example.com", "evil.example.com")
    assert (await hit(api, moved)).status_code == 404  # no open redirect: the signature covers it
    forged = re.sub(r"s=[0-9a-f]{16}", "s=0000000000000000", link["url"])
    assert (await hit(api, forged)).status_code == 404
    assert log_size(herald) == before
    followed = await hit(api, link["url"])
    assert followed.status_code == 302 and followed.headers["location"] == "https://shop.example.com/new"
    assert [g["source"] for g in goals_of(herald)] == ["pixel_redirect"]


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"value": "lots"}, "value"),
        ({"value": "1e13"}, "value"),
        ({"goals": ",".join(f"g{i}" for i in range(21))}, "goals"),
        ({"goals": "x" * 201}, "goals"),
        ({"t": "js", "match": "%7Bnot-json"}, "match"),
        ({"t": "js", "update": "%5B1%5D"}, "update"),
    ],
)
async def test_bad_hit_parameters_are_a_422_naming_them(
    api: httpx.AsyncClient, herald: Herald, extra: dict[str, str], path: str
) -> None:
    card = await pixel(api)
    url = (await code(api, card["pixel_id"], kind="image"))["url"]
    before = log_size(herald)
    response = await hit(api, url, **extra)
    assert response.status_code == 422 and error_of(response)["path"] == path
    assert log_size(herald) == before


async def test_an_email_click_tells_the_pixel_whose_browser_it_is(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    create_resource(herald)
    rows = [{"email": "ann@example.org", "subscriptions": [email_subscription("ann@example.org")]}]
    ann = (await import_rows(api, rows))["results"][0]["profile_id"]
    card = await pixel(api)
    image = await code(api, card["pixel_id"], kind="image", goals="Seen")
    first = await hit(api, image["url"])  # before the click: an anonymous visitor
    body = await _sent(api, herald, '<a href="https://shop.example.com/p">Shop</a>')
    click = re.search(r'href="https://trk\.example\.com(/t/click/[^"]+)"', body)
    assert click is not None
    api.cookies.clear()
    clicked = await api.get(click.group(1), headers={"user-agent": UA})
    assert clicked.status_code == 302
    browser = re.search(rf"{BROWSER_COOKIE}=([^;]+)", clicked.headers["set-cookie"])
    assert browser is not None
    after = await hit(api, image["url"], cookies={COOKIE: cookie(first), BROWSER_COOKIE: browser.group(1)})
    assert after.status_code == 200
    herald.runtime.drain()
    profile_goals = [e for e in herald.store.read_stream(f"activity-{ann}")]
    assert [e.type for e in profile_goals] == ["AnonymousIdLinked", "ActivityTracked", "GoalAttributed"]
    assert profile_goals[1].data["profile_id"] == ann and profile_goals[2].data["goal"] == "Seen"


async def _sent(api: httpx.AsyncClient, herald: Herald, html: str) -> str:
    template = await api.post(
        "/api/v1/templates", json={"name": "T", "content": {"email": {"subject": "S", "html": html}}}
    )
    campaign = await api.post(
        "/api/v1/campaigns",
        json={
            "name": "C",
            "type": "broadcast",
            "channel": "email",
            "resource_id": RESOURCE,
            "template_ids": [template.json()["template_id"]],
            "audience": {"kind": "database", "id": "1"},
        },
    )
    assert (await api.post(f"/api/v1/campaigns/{campaign.json()['campaign_id']}/launch")).status_code == 200
    herald.runtime.drain()
    message_id = next(e.data["message_id"] for e in herald.store.read_all() if e.type == "MessageQueued")
    email = herald.queued.render_queued(herald.deliveries.queued(message_id)).body
    assert isinstance(email, RenderedEmail)
    return email.html


async def test_a_tracked_links_visitor_token_names_the_messages_profile(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    create_resource(herald)
    rows = [{"email": "ann@example.org", "subscriptions": [email_subscription("ann@example.org")]}]
    ann = (await import_rows(api, rows))["results"][0]["profile_id"]
    body = await _sent(api, herald, '<a href="https://shop.example.com/p?herald_visitor={visitor}">Shop</a>')
    found = re.search(r'href="https://trk\.example\.com/t/click/([^"]+)"', body)
    assert found is not None
    destination = herald.signer.verify("click", found.group(1))
    assert destination is not None
    token = parse_qs(urlsplit(destination["u"]).query)["herald_visitor"][0]
    card = await pixel(api)
    js = await code(api, card["pixel_id"], kind="js")
    response = await hit(api, js["url"], t="js", goals="Bought", hv=token)
    assert response.status_code == 200
    assert [(g["goal"], g["profile_id"], g["source"]) for g in goals_of(herald)] == [
        ("Bought", ann, "pixel_js")
    ]


async def test_match_finds_the_profile_and_update_applies_only_with_import(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ann = await create_profile(api, {"email": "ann@example.org", "crm_id": "C-1", "_fname": "Ann"})
    herald.runtime.drain()
    closed = await pixel(api)
    url = (await code(api, closed["pixel_id"], kind="js"))["url"]
    match = orjson.dumps({"crm_id": "C-1"}).decode()
    update = orjson.dumps({"_fname": "Anna"}).decode()
    await hit(api, url, t="js", goals="registration", match=match, update=update, matching_mode="custom")
    assert goals_of(herald)[-1]["profile_id"] == ann
    card = (await api.get(f"/api/v1/profiles/{ann}")).json()
    assert card["fields"]["_fname"] == "Ann"  # the pixel does not allow import: no update

    opened = await pixel(api, name="Open", allow_import=True)
    url = (await code(api, opened["pixel_id"], kind="js"))["url"]
    await hit(api, url, t="js", goals="registration", match=match, update=update)
    herald.runtime.drain()
    assert (await api.get(f"/api/v1/profiles/{ann}")).json()["fields"]["_fname"] == "Anna"
    newcomer = orjson.dumps({"email": "bob@example.org"}).decode()
    subscribe = orjson.dumps(
        {
            "_fname": "Bob",
            "subscriptions": [{"resource_id": "7", "channel": "email", "email": "bob@example.org"}],
        }
    ).decode()
    create_resource(herald)
    await hit(api, url, t="js", goals="registration", match=newcomer, update=subscribe, matching_mode="email")
    herald.runtime.drain()
    bob = goals_of(herald)[-1]["profile_id"]
    made = (await api.get(f"/api/v1/profiles/{bob}")).json()
    assert made["fields"]["email"] == "bob@example.org" and made["fields"]["_fname"] == "Bob"
    assert [s["contact"] for s in made["subscriptions"]] == ["bob@example.org"]
    bad = await hit(api, url, t="js", match=orjson.dumps({"age": "x", "email": "c@example.org"}).decode())
    assert bad.status_code == 422 and error_of(bad)["path"] == "match"


async def test_import_makes_an_anonymous_profile_merged_once_the_visitor_is_known(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    herald.runtime.drain()
    card = await pixel(api, allow_import=True)
    url = (await code(api, card["pixel_id"], kind="js"))["url"]
    first = await hit(api, url, t="js", goals="Browsed", value="5")
    stranger = goals_of(herald)[-1]["profile_id"]
    assert stranger is not None and stranger != ann
    herald.runtime.drain()
    made = (await api.get(f"/api/v1/profiles/{stranger}")).json()
    assert made["fields"]["email"] == f"{stranger}@localhost"
    herald.runtime.drain()
    match = orjson.dumps({"email": "ann@example.org"}).decode()
    await hit(
        api,
        url,
        cookies={COOKIE: cookie(first)},
        t="js",
        goals="Signed up",
        match=match,
        matching_mode="email_profile",
    )
    herald.runtime.drain()
    assert (await api.get(f"/api/v1/profiles/{stranger}")).status_code == 404  # merged into Ann
    carried = [e.data for e in herald.store.read_stream(f"activity-{ann}") if e.type == "GoalAttributed"]
    assert [(c["goal"], c["value"], c["from_profile_id"]) for c in carried] == [("Browsed", 5.0, stranger)]
    api.cookies.clear()
    bot = {"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
    assert (await api.get(path_of(url), headers=bot)).status_code == 200
    assert goals_of(herald)[-1]["profile_id"] is None  # no profile is made for a bot


async def test_the_refire_block_holds_triggers_not_goals(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    card = await pixel(api, block_retrigger_minutes=30)
    url = (await code(api, card["pixel_id"], kind="image", goals="Seen"))["url"]
    first = await hit(api, url)
    jar = {COOKIE: cookie(first)}
    await hit(api, url, cookies=jar)
    clock.advance(timedelta(minutes=31))
    await hit(api, url, cookies=jar)
    assert [g["fires_triggers"] for g in goals_of(herald)] == [True, False, True]


# --- goals from apps ---------------------------------------------------------------------------


async def test_goals_by_api_have_each_their_value_and_are_idempotent(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ann = await create_profile(api, {"email": "ann@example.org"})
    herald.runtime.drain()
    card = await pixel(api)
    body = {
        "pixel_id": card["pixel_id"],
        "profile": {"email": "ann@example.org"},
        "client_id": "order-42",
        "goals": [{"goal": "purchase", "value": 1200.5}, {"goal": "delivery", "value": -300}],
    }
    first = await api.post("/api/v1/goals", json=body)
    assert first.status_code == 200, first.text
    assert [(r["goal"], r["status"], r["profile_id"]) for r in first.json()["results"]] == [
        ("purchase", "accepted", ann),
        ("delivery", "accepted", ann),
    ]
    again = await api.post("/api/v1/goals", json=body)
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
    assert [(g["goal"], g["value"], g["source"]) for g in goals_of(herald)] == [
        ("purchase", 1200.5, "api"),
        ("delivery", -300.0, "api"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"pixel_id": "9", "goals": [{"goal": "a"}], "anonymous_id": "v"}, 404, "pixel_id"),
        ({"pixel_id": "1", "goals": [], "anonymous_id": "v"}, 422, "goals"),
        (
            {"pixel_id": "1", "goals": [{"goal": "a", "value": 1e13}], "anonymous_id": "v"},
            422,
            "goals.0.value",
        ),
        ({"pixel_id": "1", "goals": [{"goal": "a"}], "profile": {"email": "no@example.org"}}, 404, "profile"),
        ({"pixel_id": "2", "goals": [{"goal": "a"}], "anonymous_id": "v"}, 422, "database_id"),
    ],
)
async def test_bad_goal_registrations_are_refused_at_their_path(
    api: httpx.AsyncClient, herald: Herald, body: dict[str, Any], status: int, path: str
) -> None:
    await pixel(api)
    await pixel(api, name="All", database_id=None)
    before = log_size(herald)
    response = await api.post("/api/v1/goals", json=body)
    assert response.status_code == status, response.text
    assert error_of(response)["path"] == path and log_size(herald) == before
