"""The trackers (`/t/<purpose>/<token>`, SMS `/s/<code>`): pixels, clicks, web version, unsubscribe.

Every tracker URL carries a token signed for its purpose (`infra/signing.py`,
made by `services/rendering.SignedTrackingUrls`). A token that fails
verification for the route's purpose (forged, cut, or made for another
purpose, such as a click token replayed on `/t/open/`), or that names a
message that was never queued, gets 404 and records nothing; the answer is
the same in every case, so it tells nothing about which messages exist.
An SMS's links are short (`/s/<code>`, `infra/signing.short_code`): the code
is looked up in the `short_links` read model and the click token it stands
for is verified as on `/t/click/`; an unknown code is the same 404.

Each recorded hit carries the client's IP (`request.client.host`), its
User-Agent and the time, and whether it is a machine's, with the rule that
matched and why (`domain/bots.classify` under the account's `HERALD_BOT_RULES`,
given the seconds since the message's delivery when it was delivered).

Decisions where the brief and the guide are silent:
- A HEAD request is a machine's (it shows nothing to anyone): recorded as a
  bot (rule `head_request`), and never unsubscribes.
- A click redirects (302) only to its token's destination, and only to an
  http(s) URL with a host; a bot's click is recorded and redirected but does
  not apply the link's `update-<field>` / `subscribe-to` actions. An action
  that cannot apply (a resource or field gone) is logged: the recipient is
  redirected all the same.
- Unsubscribe by the resource's policy (notes seeds001-004 §1.3):
  instant: the GET unsubscribes (`via="link"`) and shows a confirmation, or
  redirects to the resource's page URL when it has one; confirm and delayed:
  the GET records nothing and redirects to the resource's page (the domain
  requires one for these modes), `{send_message_id}` and `{resource_token}`
  filled in, and a page without one gets Herald's own page with a form;
  forbidden: a page with the resource's explanation, and every POST is
  refused (403). A GET that looks like a mail scanner or prefetch (a bot)
  never unsubscribes: it gets the page with the form, so a person can still
  confirm with one click.
- `POST /t/unsubscribe/{token}` with the RFC 8058 body
  (`List-Unsubscribe=One-Click`, form-encoded or multipart) records
  `via="one_click"` and answers 200 with an empty body; any other POST is the
  form of the confirmation page and records `via="page"`. Posts are not
  bot-checked: RFC 8058 posts come from mail providers' servers.
- Delayed mode: the click schedules the unsubscribe (`MessageUnsubscribeScheduled`,
  the resource's timer, at most 30 minutes) and redirects to the resource's
  page; the page confirms at once or cancels through
  `POST /api/v1/messages/{send_message_id}/unsubscribe` and `.../cancel-unsubscribe`,
  and the timer (`herald serve`'s timer loop) applies it when it falls due.
- `/t/globalunsubscribe/{token}` sets the profile's global status to
  unsubscribed (cause `unsubscribe_link`) on GET (unless a bot) or POST; the
  resource's forbidden mode forbids it too (guide: "all unsubscribe links").
- `/t/subscription_manager/{token}` lists the recipient's subscriptions on
  the message's resource, their status and the categories the resource shows
  in the manager; it changes nothing (changing them is not built yet).
- `/t/stoplist/{token}` and `/t/confirm/{token}` (double opt-in) have no
  route yet, so they answer the app's 404.
- The web version is the message as it was sent: rendered again
  (`render_queued`) from the template version it was queued with and what its
  last attempt was rendered from (the profile at its stream version then, the
  fragments' versions, the remote content fetched), so the same HTML, tokens
  and pixel whatever changed since; viewing it records nothing by itself. A
  message whose attempt predates keeping these renders with today's data.
- Every answer of these routes carries a Content-Security-Policy that allows
  no script, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
  no-referrer` (`api/security_headers.py`).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from herald.api.browser_cookie import remember_browser
from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.domain.bots import Action, BotRules, BotVerdict, Hit, classify
from herald.domain.deliveries import DeliveryState, MessageRef
from herald.domain.errors import DomainError, NotFound
from herald.domain.resources import MAX_UNSUBSCRIBE_TIMER_MINUTES, ResourceState, UnsubscribeMode
from herald.messages.rendering import RenderedEmail

log = logging.getLogger(__name__)

# A 1×1 GIF89a whose one pixel is transparent (global colour table of two, transparency index 0).
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {"Cache-Control": "no-store, private"}
READ_POLL_SECONDS = 0.5
MAX_USER_AGENT = 1000  # longer ones are cut: real clients stay far below
MAX_POST_BYTES = 8192  # an unsubscribe post is a few dozen bytes
_ONE_CLICK_MULTIPART = re.compile(rb'name="?List-Unsubscribe"?\r?\n\r?\nOne-Click', re.IGNORECASE)
_NO_LINK = "no such link"
# The action each tracker's hit is, for the bot rules; pages and links other than these are "click"s.
_ACTIONS: dict[str, Action] = {"open": "open", "read": "read", "ack": "open"}
# A push's ack and open come from the device's app or service worker, through whatever HTTP client it
# uses (okhttp, CFNetwork), and the ack right at the delivery by design: no scanner fetches a push,
# so of the account's rules only the HEAD one applies to push messages.
PUSH_BOT_RULES = BotRules(
    user_agents=(), people=(), bot_word=False, empty_user_agent=False, prefetch_seconds=0
)


# --- one tracker request -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    """A tracker request with a genuine token: its payload, the message, who asked and when."""

    message_id: str
    payload: dict[str, Any]
    state: DeliveryState
    ip: str
    user_agent: str
    at: datetime
    bot: BotVerdict | None  # why the request is a machine's; None for a person's

    @property
    def ref(self) -> MessageRef:
        assert self.state.ref is not None  # a visit exists only for a queued message
        return self.state.ref


def _visit(call: Call, purpose: str, token: str | None = None) -> Visit:
    """The request's visit; 404 (nothing recorded) unless its token is genuine and names a queued message."""
    payload = call.herald.signer.verify(purpose, token if token is not None else call.path_param("token"))
    message_id = payload.get("m") if payload is not None else None
    if payload is None or not isinstance(message_id, str):
        raise HttpError(404, _NO_LINK, "token")
    try:
        state = call.herald.deliveries.message(message_id).state
    except NotFound:
        raise HttpError(404, _NO_LINK, "token") from None
    request = call.request
    ip = request.client.host if request.client is not None else ""
    user_agent = request.headers.get("user-agent", "")[:MAX_USER_AGENT]
    at = call.herald.clock.now()
    delivered = state.delivered_at
    seconds = (at - delivered).total_seconds() if delivered is not None else None
    hit = Hit(_ACTIONS.get(purpose, "click"), user_agent, ip, seconds, head=request.method == "HEAD")
    rules = (
        PUSH_BOT_RULES
        if state.ref is not None and state.ref.channel == "push"
        else call.herald.settings.bot_rules
    )
    return Visit(message_id, payload, state, ip, user_agent, at, classify(hit, rules))


def _hit(call: Call, visit: Visit, action: Literal["open", "read", "click", "ack"]) -> None:
    link = visit.payload if action == "click" else None
    call.herald.deliveries.hit(
        visit.message_id, action, visit.ip, visit.user_agent, visit.bot, visit.at, link=link
    )


def _gif() -> Response:
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


# --- pixels and clicks -------------------------------------------------------------------------


async def open_pixel(call: Call) -> Response:
    """An email's open pixel, and a push's `open` link (the app or service worker calls it on a tap)."""
    visit = _visit(call, "open")
    _hit(call, visit, "open")
    return _remembered(call, visit, _gif())


async def push_ack(call: Call) -> Response:
    """A push's `ack` link: the device got it (push delivered)."""
    _hit(call, _visit(call, "ack"), "ack")
    return Response(status_code=204, headers=NO_STORE)


def _remembered(call: Call, visit: Visit, response: Response) -> Response:
    """An email opened or clicked in this browser: the browser cookie names its profile, so a web push
    subscription made later from this browser goes to the same profile."""
    if visit.ref.channel == "email" and not visit.ref.is_test and not visit.bot:
        remember_browser(response, call.herald.signer, visit.ref.profile_id)
    return response


class Disconnectable(Protocol):
    async def is_disconnected(self) -> bool: ...


async def held_open(request: Disconnectable, seconds: float, poll: float = READ_POLL_SECONDS) -> bool:
    """Whether the client keeps its request open for `seconds` (checked every `poll` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(min(poll, left))
    return not await request.is_disconnected()


async def read_pixel(call: Call) -> Response:
    """The read pixel: the message was open as long as the image's request was (the client waits for it)."""
    visit = _visit(call, "read")
    if await held_open(call.request, call.herald.settings.read_pixel_seconds):
        _hit(call, replace(visit, at=call.herald.clock.now()), "read")
    return _gif()


def web_url(url: object) -> str | None:
    """`url` if it is an http(s) URL with a host (where a tracker may redirect), else None."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


async def click(call: Call) -> Response:
    """Record the click and redirect to the destination its token carries (never anywhere else)."""
    return _click(call, _visit(call, "click"))


async def short_link(call: Call) -> Response:
    """An SMS's short link: the click token its code stands for, then as a click; 404 for any other code."""
    token = call.herald.projections.short_links.token(call.path_param("code"))
    if token is None:
        raise HttpError(404, _NO_LINK, "code")
    return _click(call, _visit(call, "click", token))


def _click(call: Call, visit: Visit) -> Response:
    url = web_url(visit.payload.get("u"))
    if url is None:
        raise HttpError(404, _NO_LINK, "token")
    try:
        _hit(call, visit, "click")
    except DomainError as refused:
        # the click is recorded before the link's actions run; an action that cannot apply must not
        # keep the recipient from the page
        log.info("click on message %s: link action not applied: %s", visit.message_id, refused)
    return _remembered(call, visit, RedirectResponse(url, 302, headers=NO_STORE))


async def web_version(call: Call) -> Response:
    """The message's HTML as it was sent: rendered again from what its last attempt was rendered from."""
    visit = _visit(call, "webversion")
    deliveries = call.herald.deliveries
    sent = deliveries.rendered_from(visit.message_id)
    message = call.herald.queued.render_queued(deliveries.queued(visit.message_id), sent)
    if not isinstance(message.body, RenderedEmail) or not message.body.html:
        raise HttpError(404, "this message has no web version", "token")
    return HTMLResponse(message.body.html, headers=NO_STORE)


# --- unsubscribe -------------------------------------------------------------------------------


def _resource(call: Call, visit: Visit) -> ResourceState:
    """The message's resource; a deleted one reads as the defaults (instant unsubscribe)."""
    try:
        return call.herald.catalog.resource(visit.ref.resource_id)
    except NotFound:
        return ResourceState()


def _filled(page_url: str, visit: Visit, resource: ResourceState) -> str:
    """The resource's page URL with `{send_message_id}` and `{resource_token}` filled in."""
    return page_url.replace("{send_message_id}", quote(visit.message_id, safe="")).replace(
        "{resource_token}", quote(resource.token, safe="")
    )


def _html(title: str, inner: str, status: int = 200) -> Response:
    """A plain HTML page titled `title` around `inner` (already escaped), kept out of search engines."""
    heading = html.escape(title)
    return HTMLResponse(
        '<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"<title>{heading}</title></head><body><h1>{heading}</h1>{inner}</body></html>",
        status,
        headers=NO_STORE,
    )


def page(title: str, *paragraphs: str, form: tuple[str, str] | None = None, status: int = 200) -> Response:
    """A page of plain paragraphs; `form` is (action path, button text) of a POST form."""
    text = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if form is not None:
        action, button = (html.escape(v) for v in form)
        text += (
            f'<form method="post" action="{action}"><input type="hidden" name="confirm" value="1">'
            f'<button type="submit">{button}</button></form>'
        )
    return _html(title, text, status)


def _forbidden(resource: ResourceState, status: int) -> Response:
    explanation = resource.unsubscribe_policy.forbidden_explanation or ""
    return page("You cannot unsubscribe", explanation, status=status)


def _ask(call: Call, what: str) -> Response:
    return page(what, "Confirm with the button below.", form=(call.request.url.path, what))


def _unsubscribe(call: Call, visit: Visit, via: Literal["link", "one_click", "page"]) -> None:
    call.herald.deliveries.unsubscribe(visit.message_id, via, visit.ip, visit.user_agent, visit.at)


async def unsubscribe_link(call: Call) -> Response:
    """The unsubscribe link, by the resource's unsubscribe mode."""
    visit = _visit(call, "unsubscribe")
    resource = _resource(call, visit)
    policy = resource.unsubscribe_policy
    if policy.mode is UnsubscribeMode.FORBIDDEN:
        return _forbidden(resource, 200)
    if policy.mode is UnsubscribeMode.INSTANT and not visit.bot:
        _unsubscribe(call, visit, "link")
        if policy.page_url:
            return RedirectResponse(_filled(policy.page_url, visit, resource), 302, headers=NO_STORE)
        return page("You are unsubscribed", "You will get no more of these messages.")
    if policy.mode is UnsubscribeMode.DELAYED and not visit.bot:
        # the timer starts at the click: the page lets the recipient cancel (or confirm at once)
        minutes = policy.timer_minutes or MAX_UNSUBSCRIBE_TIMER_MINUTES
        call.herald.deliveries.schedule_unsubscribe(
            visit.message_id, minutes, visit.ip, visit.user_agent, visit.at
        )
    if policy.mode is not UnsubscribeMode.INSTANT and policy.page_url:
        return RedirectResponse(_filled(policy.page_url, visit, resource), 302, headers=NO_STORE)
    return _ask(call, "Unsubscribe")


def is_one_click(body: bytes, content_type: str) -> bool:
    """Whether a POST body is RFC 8058's `List-Unsubscribe=One-Click` (form-encoded or multipart)."""
    if content_type.lower().startswith("multipart/form-data"):
        return _ONE_CLICK_MULTIPART.search(body) is not None
    fields = parse_qs(body.decode("latin-1").strip(), keep_blank_values=True)
    return "One-Click" in fields.get("List-Unsubscribe", [])


async def unsubscribe_post(call: Call) -> Response:
    """RFC 8058 one-click unsubscribe (empty 200), or the confirmation page's form."""
    visit = _visit(call, "unsubscribe")
    resource = _resource(call, visit)
    if resource.unsubscribe_policy.mode is UnsubscribeMode.FORBIDDEN:
        return _forbidden(resource, 403)
    body: bytes = call.body
    if is_one_click(body, call.request.headers.get("content-type", "")):
        _unsubscribe(call, visit, "one_click")
        return Response(status_code=200, headers=NO_STORE)
    _unsubscribe(call, visit, "page")
    return page("You are unsubscribed", "You will get no more of these messages.")


async def _global_unsubscribe(call: Call, confirmed: bool) -> Response:
    visit = _visit(call, "globalunsubscribe")
    resource = _resource(call, visit)
    if resource.unsubscribe_policy.mode is UnsubscribeMode.FORBIDDEN:
        return _forbidden(resource, 403 if confirmed else 200)
    if not confirmed and visit.bot:
        return _ask(call, "Unsubscribe from everything")
    call.herald.deliveries.global_unsubscribe(visit.message_id, visit.at)
    return page("You are unsubscribed from everything", "You will get no more messages from us.")


async def global_unsubscribe_link(call: Call) -> Response:
    """Unsubscribe from every message of the account (the profile's global status)."""
    return await _global_unsubscribe(call, confirmed=False)


async def global_unsubscribe_post(call: Call) -> Response:
    """The global unsubscribe page's form."""
    return await _global_unsubscribe(call, confirmed=True)


async def subscription_manager(call: Call) -> Response:
    """The recipient's subscriptions on the message's resource, with their status (read-only)."""
    visit = _visit(call, "subscription_manager")
    resource = _resource(call, visit)
    profile = call.herald.deliveries.recipient(visit.message_id)
    subscriptions = [s for s in profile.subscriptions if s.key.resource_id == visit.ref.resource_id]
    shown = [c for c in resource.categories.values() if c.in_subscription_manager]
    items = []
    for s in subscriptions if profile.exists else []:
        categories = "".join(
            f"<li>{html.escape(c.title)}: {html.escape(str(s.category_status(c.api_name)))}</li>"
            for c in shown
        )
        items.append(
            f"<li>{html.escape(s.key.channel)} {html.escape(s.key.contact)}: {html.escape(str(s.status))}"
            + (f"<ul>{categories}</ul>" if categories else "")
            + "</li>"
        )
    name = resource.settings.name if resource.settings else ""
    listing = f"<ul>{''.join(items)}</ul>" if items else "<p>No subscriptions.</p>"
    return _html(f"Your subscriptions: {name}" if name else "Your subscriptions", listing)


T = "trackers"
# Unsubscribe posts are forms (RFC 8058: form-encoded or multipart); any media type is read as
# one (`accepts=None`), since refusing a mail provider's odd label would refuse an unsubscribe.
FORM = "application/x-www-form-urlencoded"
ENDPOINTS = [
    Endpoint("GET", "/t/open/{token}", open_pixel, "Open pixel (1×1 GIF)", T, role="public"),
    Endpoint(
        "GET", "/t/ack/{token}", push_ack, "A push's ack link: push delivered", T, role="public", status=204
    ),
    Endpoint("GET", "/t/read/{token}", read_pixel, "Read pixel: held open long enough", T, role="public"),
    Endpoint(
        "GET", "/t/click/{token}", click, "Record a click, redirect to the link", T, role="public", status=302
    ),
    Endpoint(
        "GET",
        "/s/{code}",
        short_link,
        "An SMS's short link: record the click, redirect",
        T,
        role="public",
        status=302,
    ),
    Endpoint("GET", "/t/webversion/{token}", web_version, "The message's web version", T, role="public"),
    Endpoint("GET", "/t/unsubscribe/{token}", unsubscribe_link, "Unsubscribe link", T, role="public"),
    Endpoint(
        "POST",
        "/t/unsubscribe/{token}",
        unsubscribe_post,
        "RFC 8058 one-click unsubscribe, or the confirmation form",
        T,
        role="public",
        bytes_body=FORM,
        accepts=None,
        max_body=MAX_POST_BYTES,
    ),
    Endpoint(
        "GET",
        "/t/globalunsubscribe/{token}",
        global_unsubscribe_link,
        "Unsubscribe from everything",
        T,
        role="public",
    ),
    Endpoint(
        "POST",
        "/t/globalunsubscribe/{token}",
        global_unsubscribe_post,
        "Unsubscribe from everything: the confirmation form",
        T,
        role="public",
        bytes_body=FORM,
        accepts=None,
        max_body=MAX_POST_BYTES,
    ),
    Endpoint(
        "GET",
        "/t/subscription_manager/{token}",
        subscription_manager,
        "The recipient's subscriptions on the message's resource",
        T,
        role="public",
    ),
]
