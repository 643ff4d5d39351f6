"""Pixels: the entity, its tracking codes, the tracker a site's codes report to, goals registered by API.

The tracker (`GET /pixel`, public) checks the key and the signature (`k`,
`s`, which covers `redirect_url`): a bad pair gets 404 and records nothing.
It answers a transparent GIF, or (a link code) a redirect to `redirect_url`.
Its visitor cookie (`api/visitor_cookie.py`) names an anonymous visitor; the
browser cookie the email trackers set (`api/browser_cookie.py`) names the
profile that opened or clicked a message in this browser, so a hit from that
browser is that profile's (and the visitor's earlier anonymous goals follow).

Decisions where the guide is silent:
- Bad parameters are a 422 naming them (`goals`, `value`, `match`, `update`):
  up to 20 goals of 1–200 characters, a finite value within ±10^12, `match`
  and `update` JSON objects of at most 8 KB each.
- The JavaScript hit is `t=js` on the same URL (an image request: no CORS).
- A hit the bot rules (`domain/bots.py`, `HERALD_BOT_RULES`) call a machine's
  is recorded as a bot's (`context.bot`) and never creates a profile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import RedirectResponse, Response

from herald.api.browser_cookie import browser_profile
from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.api.pixel_script import PIXEL_SCRIPT
from herald.api.routes.catalog import VersionQuery, expected_version_field
from herald.api.routes.trackers import MAX_USER_AGENT, NO_STORE, PIXEL_GIF, web_url
from herald.api.visitor_cookie import remember, visitor_of
from herald.domain import pixels as px
from herald.domain.bots import Hit, classify
from herald.domain.errors import ValidationFailed
from herald.domain.goals import MAX_GOALS, goal_name, goal_value
from herald.domain.pixel_codes import CodeKind, image_code, js_code, link_code, pixel_url
from herald.projections.catalog import PIXEL
from herald.services.goals import GoalPair
from herald.services.pixels import PixelHit

P = "/api/v1/pixels"
ONE = P + "/{pixel_id}"
MAX_JSON = 8192
T = "pixels"


class PixelPut(px.PixelSettings):
    expected_version: int | None = expected_version_field()


class CodeQuery(BaseModel):
    kind: CodeKind = "js"
    goals: str = Field("", description="comma-separated goal names")
    value: float = 0.0
    redirect_url: str | None = Field(None, description="link codes: where the link leads (http or https)")
    timeout: int = Field(0, ge=0, le=3_600_000, description="js: ms to wait before the page view is reported")
    after_scroll: bool = Field(False, description="js: report the page view after the first scroll")
    auto_load: bool = Field(True, description="js: report the page view when the page loads")
    base_url: str | None = Field(None, description="the tracker's public address (default: this server's)")


class HitQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    k: str = Field(min_length=1, max_length=200, description="the pixel's key")
    s: str = Field(min_length=1, max_length=64, description="the URL's signature")
    redirect_url: str | None = None
    goals: str = Field("", max_length=MAX_GOALS * 201)
    value: str = Field("", max_length=40)
    t: Literal["js", "img"] = "img"
    match: str | None = Field(None, max_length=MAX_JSON)
    update: str | None = Field(None, max_length=MAX_JSON)
    matching_mode: str | None = Field(None, max_length=20)
    hv: str | None = Field(None, max_length=1000, description="a tracked link's visitor token")
    url: str = Field("", max_length=2000)
    ref: str = Field("", max_length=2000)


class GoalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    goal: str = Field(min_length=1, max_length=200)
    value: float = 0.0


class GoalsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pixel_id: str
    goals: list[GoalIn] = Field(min_length=1, max_length=MAX_GOALS, description="goal and value pairs")
    database_id: str | None = Field(None, description="for a pixel of all databases: the profile's database")
    profile: dict[str, Any] | None = Field(None, description='one match field, e.g. {"email": "ann@x.io"}')
    anonymous_id: str | None = Field(None, min_length=1, max_length=200)
    client_id: str | None = Field(None, min_length=1, max_length=200, description="resends are no-ops")
    at: datetime | None = Field(None, description="when the goals were reached (default: now)")
    context: dict[str, Any] = Field(default_factory=dict)


# --- the entity --------------------------------------------------------------------------------


def _card(call: Call, pixel_id: str) -> dict[str, Any]:
    state = call.herald.pixels.pixel(pixel_id)
    assert state.settings is not None
    return {
        "pixel_id": pixel_id,
        "key": state.key,
        **state.settings.model_dump(mode="json"),
        "created_at": state.created_at,
        "version": call.herald.pixels.version(pixel_id),
    }


async def create_pixel(call: Call) -> dict[str, Any]:
    settings = px.PixelSettings.model_validate(call.body.model_dump())
    seen = len(call.herald.catalog.projection.objects(PIXEL, include_deleted=True))
    pixel_id, outcome = call.herald.pixels.create(settings, seen, call.context)
    return {"pixel_id": pixel_id, **outcome.to_json()}


async def list_pixels(call: Call) -> dict[str, Any]:
    return {"pixels": call.herald.catalog.projection.objects(PIXEL)}


async def get_pixel(call: Call) -> dict[str, Any]:
    return _card(call, call.path_param("pixel_id"))


async def put_pixel(call: Call) -> dict[str, Any]:
    body: PixelPut = call.body
    settings = px.PixelSettings.model_validate(body.model_dump(exclude={"expected_version"}))
    pixel_id = call.path_param("pixel_id")
    return call.herald.pixels.change(pixel_id, settings, call.context, body.expected_version).to_json()


async def delete_pixel(call: Call) -> dict[str, Any]:
    return call.herald.pixels.delete(call.path_param("pixel_id"), call.context).to_json()


async def pixel_code(call: Call) -> dict[str, Any]:
    """A tracking code of the pixel, with the signed URL it reports to."""
    query: CodeQuery = call.query
    state = call.herald.pixels.pixel(call.path_param("pixel_id"))
    base = (query.base_url or str(call.request.base_url)).rstrip("/")
    goals = tuple(goal_name(g, "goals") for g in query.goals.split(",") if g.strip())
    value = goal_value(query.value, "value")
    signer = call.herald.pixel_signer
    if query.kind == "link":
        target = web_url(query.redirect_url)
        if target is None:
            raise ValidationFailed("a link code needs an http or https redirect_url", "redirect_url")
        url = pixel_url(base, state.key, signer.signature(state.key, target), goals, value, target)
        return {"kind": "link", "url": url, "code": link_code(url)}
    signature = signer.signature(state.key)
    if query.kind == "image":
        url = pixel_url(base, state.key, signature, goals, value)
        return {"kind": "image", "url": url, "code": image_code(url)}
    url = pixel_url(base, state.key, signature)
    code = js_code(base, url, goals, value, query.timeout, query.after_scroll, query.auto_load)
    return {"kind": "js", "url": url, "code": code}


# --- the tracker -------------------------------------------------------------------------------


async def pixel_hit(call: Call) -> Response:
    """Record a pixel's hit; a GIF, or the link's redirect."""
    query: HitQuery = call.query
    herald = call.herald
    pixel = herald.pixels.by_key(query.k)
    target = query.redirect_url or ""
    if pixel is None or not herald.pixel_signer.verify(query.k, target, query.s):
        raise HttpError(404, "no such pixel", "k")
    redirect = web_url(target) if target else None
    if target and redirect is None:
        raise HttpError(404, "no such pixel", "redirect_url")
    request = call.request
    ip = request.client.host if request.client is not None else ""
    user_agent = request.headers.get("user-agent", "")[:MAX_USER_AGENT]
    visitor = visitor_of(request, herald.pixel_signer)
    machine = classify(
        Hit("click", user_agent, ip, None, head=request.method == "HEAD"), herald.settings.bot_rules
    )
    hit = PixelHit(
        kind="redirect" if redirect else query.t,
        goals=tuple(goal_name(g, "goals") for g in query.goals.split(",") if g.strip()),
        value=goal_value(query.value, "value"),
        at=herald.clock.now(),
        visitor_id=visitor,
        message_id=herald.pixel_signer.message_of(query.hv) if query.hv else None,
        browser_profile=browser_profile(request, herald.signer),
        match=_json_object(query.match, "match"),
        update=_json_object(query.update, "update"),
        matching_mode=query.matching_mode,
        ip=ip,
        user_agent=user_agent,
        url=query.url,
        referrer=query.ref or request.headers.get("referer", "")[:2000],
        bot=machine is not None,
    )
    if len(hit.goals) > MAX_GOALS:
        raise ValidationFailed(f"a hit names at most {MAX_GOALS} goals", "goals")
    context = call.context
    context.actor = f"pixel:{pixel.pixel_id}"
    context.source = "pixel"
    result = herald.pixels.hit(pixel, hit, context)
    response: Response = (
        RedirectResponse(redirect, 302, headers=NO_STORE)
        if redirect
        else Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)
    )
    remember(request, response, herald.pixel_signer, result.visitor_id)
    return response


def _json_object(text: str | None, path: str) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ValidationFailed(f"not JSON: {error}", path) from None
    if not isinstance(value, dict):
        raise ValidationFailed("a JSON object is expected", path)
    return value


async def pixel_script(call: Call) -> Response:
    return Response(
        PIXEL_SCRIPT, media_type="application/javascript", headers={"Cache-Control": "public, max-age=3600"}
    )


# --- goals from apps ---------------------------------------------------------------------------


async def register_goals(call: Call) -> dict[str, Any]:
    """Register several goals, each with its own value, for one profile (or anonymous visitor)."""
    body: GoalsBody = call.body
    results = call.herald.goals.register(
        body.pixel_id,
        [GoalPair(g.goal, g.value) for g in body.goals],
        call.context,
        profile=body.profile,
        anonymous_id=body.anonymous_id,
        database_id=body.database_id,
        client_id=body.client_id,
        at=body.at,
        event_context=body.context,
    )
    return {"results": results}


ENDPOINTS = [
    Endpoint("POST", P, create_pixel, "Create a pixel", T, body=px.PixelSettings, status=201),
    Endpoint("GET", P, list_pixels, "List pixels", T, role="read"),
    Endpoint("GET", ONE, get_pixel, "A pixel: settings and key", T, role="read"),
    Endpoint("PUT", ONE, put_pixel, "Replace a pixel's settings", T, body=PixelPut),
    Endpoint("DELETE", ONE, delete_pixel, "Delete a pixel", T, query=VersionQuery),
    Endpoint(
        "GET",
        ONE + "/code",
        pixel_code,
        "A tracking code: page view (JS), image or link",
        T,
        query=CodeQuery,
        role="read",
    ),
    Endpoint(
        "POST",
        "/api/v1/goals",
        register_goals,
        "Register goals with their values (apps, servers)",
        "goals",
        body=GoalsBody,
        role="track",
    ),
    Endpoint(
        "GET",
        "/pixel",
        pixel_hit,
        "A pixel's hit: goals, profile look-up and import (GIF or redirect)",
        "trackers",
        query=HitQuery,
        role="public",
    ),
    Endpoint(
        "GET", "/pixel/ak.js", pixel_script, "The pixel script (ak_pixel_push)", "trackers", role="public"
    ),
]
