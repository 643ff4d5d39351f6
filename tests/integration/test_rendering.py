"""Rendering messages: personalisation, fragments, parts, links, pixel, text, CSS, SMS, push, remote content.

The renderer runs as wired (real fragments from the log, the signed tracker
URLs, the SSRF-guarded fetcher against a real HTTP server on loopback).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from herald.api.wiring import Herald
from herald.domain import fragments as fr
from herald.domain import templates as tp
from herald.domain.templates import RenderFailed
from herald.domain.templating.compiler import _ENVIRONMENT
from herald.infra.remote_content import RemoteContentFetcher, RemoteContentPolicy
from herald.messages.rendering import (
    MessageData,
    MessageRenderer,
    RenderedEmail,
    RenderedPush,
    RenderedSms,
    SignedTrackingUrls,
    current_fragments,
)
from herald.services.aggregates import CommandContext

CTX = CommandContext(actor="test", source="test")
TRACKER = "https://trk.example.com"


class _Content(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/news":
            sign = parse_qs(url.query).get("s", [""])[0]
            self._send(200, f"<p>News for {sign}</p>".encode(), "text/html; charset=utf-8")
        elif url.path == "/offer.json":
            self._send(200, orjson.dumps({"title": "Sale", "items": ["a", "b"]}), "application/json")
        else:
            self._send(500, b"down", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def content_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Content)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def renderer(herald: Herald) -> Iterator[MessageRenderer]:
    policy = RemoteContentPolicy(timeout_seconds=2, allowed_networks=(ip_network("127.0.0.0/8"),))
    with RemoteContentFetcher(policy) as fetcher:
        yield MessageRenderer(current_fragments(herald.aggregates), fetcher)


def fragment(herald: Herald, short_name: str, content: str, type_: str = "html") -> None:
    command = fr.CreateFragment(short_name, fr.FragmentContent(name=short_name, type=type_, content=content))  # type: ignore[arg-type]
    herald.templates.change_fragment(command, CTX)


def render(
    herald: Herald, renderer: MessageRenderer, template: tp.TemplateContent, channel: tp.Channel, **data: Any
) -> Any:
    message_id = data.pop("message_id", "m-1")
    urls = SignedTrackingUrls(herald.signer, TRACKER, message_id)
    message_data = MessageData(
        message_id=message_id, template_name="Welcome", database_name="Customers", **data
    )
    # (template id, version) names one content: the renderer caches its marked sources by them.
    template_id = hashlib.sha1(template.model_dump_json().encode()).hexdigest()
    return renderer.render(template_id, 1, template, channel, message_data, urls)


def token_of(url: str, purpose: str) -> str:
    prefix = f"{TRACKER}/t/{purpose}/"
    assert url.startswith(prefix), url
    return url[len(prefix) :]


HTML = """<html><head><style>p { color: red }</style></head><body>
<h1>Hello, {lead._fname}!</h1>
{fragment.header}
<a href="https://shop.example.com/u/{lead._id}?x=1&amp;y=2" name="profile" update-clicked="yes">My page</a>
{for $item = json.items}<a href="https://shop.example.com/p/{$item}">{$item}</a>{end}
<a href="https://shop.example.com/plain" data-no-track>Plain</a>
<a href="mailto:help@example.com">Help</a>
{part.footer}
<a href="{unsubscribe}">Unsubscribe</a>
</body></html>"""


def email_content(**email: Any) -> tp.TemplateContent:
    return tp.TemplateContent(
        email=tp.EmailContent(subject="Hi {lead._fname}", html=HTML, **email),
        parts=(
            tp.TemplatePart(
                name="footer", content='<p>Shop <a href="https://shop.example.com/about">About</a></p>'
            ),
        ),
        defaults={"lead._fname": "friend"},
    )


def test_an_email_is_personalised_and_its_links_tracked(herald: Herald, renderer: MessageRenderer) -> None:
    fragment(herald, "header", "<div>{fragment.logo} for {lead._fname}</div>")
    fragment(herald, "logo", '<a href="https://shop.example.com/">Logo</a>')
    data = {"lead": {"_fname": "Ann", "_id": "p1"}, "content": {"items": ["a", "b", "c"]}}
    message = render(herald, renderer, email_content(), tp.Channel.EMAIL, **data)
    body: RenderedEmail = message.body
    assert body.subject == "Hi Ann"
    assert "<h1>Hello, Ann!</h1>" in body.html and "<div>" in body.html and " for Ann</div>" in body.html
    assert message.fragment_versions == {"header": 1, "logo": 1}

    by_id: dict[str, list[Any]] = {}
    for link in message.links:
        by_id.setdefault(link.id, []).append(link)
    loop_links = by_id["html.2"]
    assert [link.url for link in loop_links] == [f"https://shop.example.com/p/{x}" for x in "abc"]
    profile_link = by_id["html.1"][0]
    assert profile_link.url == "https://shop.example.com/u/p1?x=1&y=2"
    assert (profile_link.name, profile_link.updates) == ("profile", {"clicked": "yes"})
    assert "update-clicked" not in body.html and "data-herald-link" not in body.html
    assert by_id["fragment.logo.1"][0].url == "https://shop.example.com/"
    assert by_id["part.footer.1"][0].url == "https://shop.example.com/about"

    click = herald.signer.verify("click", token_of(profile_link_href(body.html, "My page"), "click"))
    assert click == {
        "m": "m-1",
        "l": "html.1",
        "u": "https://shop.example.com/u/p1?x=1&y=2",
        "n": "profile",
        "f": {"clicked": "yes"},  # the link's update-<field> action rides in its signed token
    }
    assert 'href="https://shop.example.com/plain"' in body.html
    assert 'href="mailto:help@example.com"' in body.html
    unsubscribe = profile_link_href(body.html, "Unsubscribe")
    assert herald.signer.verify("unsubscribe", token_of(unsubscribe, "unsubscribe")) == {"m": "m-1"}
    pixel = body.html.split('<img src="')[1].split('"')[0]
    assert herald.signer.verify("open", token_of(pixel, "open")) == {"m": "m-1"}
    assert body.html.index("<img") < body.html.index("</body>")

    assert body.text.startswith("Hello, Ann!")
    assert "My page" in body.text and "/t/click/" in body.text
    assert "p { color: red }" in body.html  # no_css_inline is the default


def profile_link_href(html: str, text: str) -> str:
    """The href of the anchor whose text is `text`."""
    before = html[: html.index(f">{text}</a>")]
    return before[before.rindex('href="') + 6 :].split('"')[0].replace("&amp;", "&")


def test_the_text_version_breaks_lines_between_blocks_from_fragments_parts_and_remote_content(
    herald: Herald, renderer: MessageRenderer, content_server: str
) -> None:
    # README's template: a link, then a fragment whose <p> must not run into it
    fragment(herald, "footer", '<p>Shop Inc. <a href="{unsubscribe}">Unsubscribe</a></p>')
    html = (
        '<h1>Hello {lead._fname}</h1>{if lead.crm_id}<a href="https://shop.example.com/{lead.crm_id}">'
        "Your page</a>{end}{fragment.footer}<ul>{for $x = json.items}<li>{$x}</li>{end}</ul>"
        f"{{if lead.vip}}<p>VIP</p>{{end}}Thanks{{[{content_server}/news?s=Leo]}}{{part.sign}}<br>Bye"
    )
    content = tp.TemplateContent(
        email=tp.EmailContent(subject="s", html=html),
        parts=(
            tp.TemplatePart(name="sign", content="<table><tr><td>Ann</td></tr><tr><td>CEO</td></tr></table>"),
        ),
        track_links=False,
    )
    data = {"lead": {"_fname": "Ann", "crm_id": "C-1"}, "content": {"items": ["a", "b"]}}
    message = render(herald, renderer, content, tp.Channel.EMAIL, **data)
    unsubscribe = profile_link_href(message.body.html, "Unsubscribe")
    assert message.body.text == (
        "Hello Ann\n\n"
        "Your page (https://shop.example.com/C-1)\n\n"
        f"Shop Inc. Unsubscribe ({unsubscribe})\n\n"
        "- a\n- b\n\n"
        "Thanks\n\n"
        "News for Leo\n\n"  # the remote block is HTML: made text too, never its tags
        "Ann\nCEO\n"
        "Bye"
    )


def test_link_ids_are_stable_across_messages_and_defaults_fill_empty_fields(
    herald: Herald, renderer: MessageRenderer
) -> None:
    fragment(herald, "header", "<i>hi</i>")
    one = render(herald, renderer, email_content(), tp.Channel.EMAIL, lead={"_id": "p1"}, message_id="m-1")
    two = render(herald, renderer, email_content(), tp.Channel.EMAIL, lead={"_id": "p2"}, message_id="m-2")
    assert [link.id for link in one.links] == [link.id for link in two.links]
    assert [link.url for link in one.links] != [link.url for link in two.links]
    assert one.body.subject == "Hi friend"


def test_a_fragment_edited_between_messages_renders_its_new_version(
    herald: Herald, renderer: MessageRenderer
) -> None:
    fragment(herald, "header", "<i>old</i>")
    before = render(herald, renderer, email_content(), tp.Channel.EMAIL, lead={"_id": "p1"}, message_id="m-1")
    edit = fr.UpdateFragment("header", fr.FragmentContent(name="header", type="html", content="<i>new</i>"))
    herald.templates.change_fragment(edit, CTX)
    after = render(herald, renderer, email_content(), tp.Channel.EMAIL, lead={"_id": "p1"}, message_id="m-2")
    assert "<i>old</i>" in before.body.html and "<i>new</i>" in after.body.html
    assert (before.fragment_versions, after.fragment_versions) == ({"header": 1}, {"header": 2})


def test_css_is_inlined_and_utm_added_when_the_template_asks(
    herald: Herald, renderer: MessageRenderer
) -> None:
    fragment(herald, "header", "")
    content = email_content(no_css_inline=False).model_copy(
        update={"add_utm": True, "utm": {"utm_medium": "mail"}}
    )
    message = render(herald, renderer, content, tp.Channel.EMAIL, lead={"_id": "p1"}, campaign_name="Spring")
    assert '<p style="color: red;">Shop' in message.body.html
    plain = next(link for link in message.links if link.url.startswith("https://shop.example.com/plain"))
    query = parse_qs(urlsplit(plain.url).query)
    assert query == {
        "utm_source": ["email"],
        "utm_medium": ["mail"],
        "utm_campaign": ["Spring"],
        "utm_term": ["Welcome"],
        "utm_content": ["m-1"],
    }


def test_an_sms_counts_its_parts_and_refuses_more_than_allowed(
    herald: Herald, renderer: MessageRenderer
) -> None:
    content = tp.TemplateContent(
        sms=tp.SmsContent(
            body="Hi {lead._fname}, see www.shop.example.com/{lead._id}", add_http_to_links=True
        )
    )
    message = render(herald, renderer, content, tp.Channel.SMS, lead={"_fname": "Ann", "_id": "p1"})
    body: RenderedSms = message.body
    assert body.body.startswith("Hi Ann, see https://trk.example.com/t/click/")
    assert message.links[0].url == "http://www.shop.example.com/p1"
    assert (body.encoding, body.characters) == ("gsm7", len(body.body))
    assert body.parts == (1 if len(body.body) <= 160 else -(-len(body.body) // 153))

    long = tp.TemplateContent(sms=tp.SmsContent(body="Привет, {lead._fname}! " * 6, max_sms_parts=1))
    with pytest.raises(RenderFailed, match=r"2 parts .* allows 1"):
        render(herald, renderer, long, tp.Channel.SMS, lead={"_fname": "Анна"})


def test_a_push_tracks_its_click_url(herald: Herald, renderer: MessageRenderer) -> None:
    content = tp.TemplateContent(
        push=tp.PushContent(
            title="Hi {lead._fname}", body="Sale", click_url="https://shop.example.com/{lead._id}"
        )
    )
    message = render(herald, renderer, content, tp.Channel.PUSH, lead={"_fname": "Ann", "_id": "p1"})
    body: RenderedPush = message.body
    assert (body.title, body.body) == ("Hi Ann", "Sale")
    payload = herald.signer.verify("click", token_of(body.click_url, "click"))
    assert payload == {"m": "m-1", "l": "push.click_url.1", "u": "https://shop.example.com/p1"}


def test_remote_html_and_json_content_are_fetched_per_message(
    herald: Herald, renderer: MessageRenderer, content_server: str
) -> None:
    content = tp.TemplateContent(
        email=tp.EmailContent(
            subject="{json.title}", html=f"{{[{content_server}/news?s={{lead.Sign}}]}} {{json.items}}"
        ),
        json_content_url=f"{content_server}/offer.json",
    )
    message = render(herald, renderer, content, tp.Channel.EMAIL, lead={"Sign": "Leo"})
    assert message.body.subject == "Sale"
    assert message.body.html.startswith("<p>News for Leo</p> a, b")
    given = render(
        herald, renderer, content, tp.Channel.EMAIL, lead={"Sign": "Leo"}, content={"title": "API"}
    )
    assert given.body.subject == "API"


def test_a_failed_fetch_fails_only_that_message_with_the_reason(
    herald: Herald, renderer: MessageRenderer, content_server: str
) -> None:
    broken = tp.TemplateContent(email=tp.EmailContent(subject="s", html=f"{{[{content_server}/broken]}}"))
    with pytest.raises(RenderFailed, match=r"remote content: could not fetch .*/broken: HTTP 500"):
        render(herald, renderer, broken, tp.Channel.EMAIL)
    json_broken = tp.TemplateContent(
        email=tp.EmailContent(subject="s", html="x"), json_content_url=f"{content_server}/nope"
    )
    with pytest.raises(RenderFailed, match=r"JSON content: .*HTTP 500") as caught:
        render(herald, renderer, json_broken, tp.Channel.EMAIL)
    assert caught.value.path == "json_content_url"


def test_the_wired_fetcher_refuses_private_addresses(herald: Herald, content_server: str) -> None:
    renderer = MessageRenderer(current_fragments(herald.aggregates), herald.remote)
    content = tp.TemplateContent(email=tp.EmailContent(subject="s", html=f"{{[{content_server}/news]}}"))
    with pytest.raises(RenderFailed, match="loopback"):
        render(herald, renderer, content, tp.Channel.EMAIL)


def _broken_adddate(*args: Any) -> Any:
    raise ZeroDivisionError("a bug in a template function")


def test_any_error_while_rendering_is_the_messages_failure_with_its_reason(
    herald: Herald, renderer: MessageRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the known failures: whatever breaks while making one message is that message's
    RenderFailed, so a caller records it and goes on (a store or disk failure is retried instead)."""
    monkeypatch.setitem(_ENVIRONMENT.filters, "adddate", _broken_adddate)
    content = tp.TemplateContent(email=tp.EmailContent(subject="Hi", html="<p>{adddate(lead.d 0 0 1)}</p>"))
    with pytest.raises(RenderFailed, match="ZeroDivisionError: a bug in a template function") as caught:
        render(herald, renderer, content, tp.Channel.EMAIL, lead={"d": "2026-01-01"})
    assert caught.value.path == "template"

    def store_down(*args: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setitem(_ENVIRONMENT.filters, "adddate", store_down)
    with pytest.raises(sqlite3.OperationalError):
        render(herald, renderer, content, tp.Channel.EMAIL, lead={"d": "2026-01-01"})
