"""Links: stable ids on the source, then tracking, UTM and attribute clean-up on the rendered message."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from herald.domain.links import (
    MARKER_ATTR,
    RENDERED_HREF,
    STATIC_CLOSE,
    STATIC_HREF,
    STATIC_TEXT,
    TEXT_CLOSE,
    TEXT_OPEN,
    TEXT_SEP,
    LinkSpec,
    RenderedLink,
    TrackedOutput,
    add_utm,
    default_utm,
    mark_links,
    mark_text_links,
    track_links,
)
from herald.domain.templating import RenderContext, TemplateSyntaxError, compile_template

UNSUBSCRIBE_URL = "https://t.test/u/abc?s=1&m=2"
SYSTEM = {
    "unsubscribe": UNSUBSCRIBE_URL,
    "globalunsubscribe": "https://t.test/gu/abc",
    "webversion": "https://t.test/w/abc",
}


def tracker(link: RenderedLink) -> str:
    return f"https://t.test/c?l={link.id}&u={quote(link.url, safe='')}"


def tracked_href(link_id: str, url: str) -> str:
    """The tracker URL of `tracker`, as written in an HTML attribute."""
    return f"https://t.test/c?l={link_id}&amp;u={quote(url, safe='')}"


@pytest.fixture(params=[False, True], ids=["marked", "precomputed"])
def precompute(request: pytest.FixtureRequest) -> bool:
    """Each output test runs with static links marked and with them precomputed: the same message."""
    return bool(request.param)


def send(
    source: str,
    *,
    precompute: bool = False,
    utm: dict[str, str] | None = None,
    specs: tuple[LinkSpec, ...] = (),
    **data: Any,
) -> TrackedOutput:
    """Mark, render with the real template engine, then track: the send path in one call."""
    marked = mark_links(source, "html", precompute=precompute)
    rendered = compile_template(marked.source).render(RenderContext(system=SYSTEM, **data))
    return track_links(rendered, marked.links + specs, tracker, utm)


def visible(text: str) -> str:
    """Text markers made readable: [[id|url]]."""
    return text.replace(TEXT_OPEN, "[[").replace(TEXT_SEP, "|").replace(TEXT_CLOSE, "]]")


# ---------------------------------------------------------------- mark_links


MARKED = [
    (
        "one-link",
        '<p><a href="https://x.test">X</a></p>',
        f'<p><a {MARKER_ATTR}="html.1" href="https://x.test">X</a></p>',
    ),
    (
        "source-order-and-no-href-skipped",
        '<a name="top"></a><a href="https://a.test">A</a><a class="b" href="https://b.test">B</a>',
        '<a name="top"></a><a data-herald-link="html.1" href="https://a.test">A</a>'
        '<a data-herald-link="html.2" class="b" href="https://b.test">B</a>',
    ),
    (
        "upper-case-tag",
        "<A HREF='https://x.test'>X</A>",
        "<A data-herald-link=\"html.1\" HREF='https://x.test'>X</A>",
    ),
    (
        "template-tags-in-attributes-survive",
        '<a href="https://y.test/p?q={format json.price "."}&amp;s={lead.Sign}" '
        'title="{if lead.vip}VIP > all{else}you{end}">Y</a>',
        '<a data-herald-link="html.1" href="https://y.test/p?q={format json.price "."}&amp;s={lead.Sign}" '
        'title="{if lead.vip}VIP > all{else}you{end}">Y</a>',
    ),
    (
        "conditional-attribute-between-attributes",
        '<a {if lead.vip}class="vip"{end} href="https://x.test">X</a>',
        '<a data-herald-link="html.1" {if lead.vip}class="vip"{end} href="https://x.test">X</a>',
    ),
    (
        "unquoted-href-with-tag",
        "<a href=https://x.test/{lead.id}>X</a>",
        '<a data-herald-link="html.1" href=https://x.test/{lead.id}>X</a>',
    ),
    (
        "comments-and-scripts-are-not-links",
        '<!-- <a href="https://old.test">old</a> --><script>s = \'<a href="https://js.test">\';</script>',
        '<!-- <a href="https://old.test">old</a> --><script>s = \'<a href="https://js.test">\';</script>',
    ),
    (
        "outlook-conditional-comment-is-marked",
        '<!--[if mso]><a href="https://mso.test">B</a><![endif]--><a href="https://x.test">B</a>',
        '<!--[if mso]><a data-herald-link="html.1" href="https://mso.test">B</a><![endif]-->'
        '<a data-herald-link="html.2" href="https://x.test">B</a>',
    ),
    (
        "link-in-loop-marked-once",
        '{for $x = json.items}<a href="{$x.url}">{$x.name}</a>{end}',
        '{for $x = json.items}<a data-herald-link="html.1" href="{$x.url}">{$x.name}</a>{end}',
    ),
    (
        "existing-marker-replaced",
        '<a href="https://x.test" data-herald-link="html.7">X</a>',
        '<a data-herald-link="html.1" href="https://x.test">X</a>',
    ),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in MARKED], ids=[c[0] for c in MARKED])
def test_mark_links_inserts_markers(source: str, expected: str) -> None:
    assert mark_links(source, "html").source == expected


def test_same_source_same_ids_and_marking_is_idempotent() -> None:
    source = '<a href="https://a.test">A</a> <a href="{lead.site}">B</a> <a href="mailto:x@y.test">C</a>'
    first = mark_links(source, "html")
    assert first == mark_links(source, "html")
    assert [link.id for link in first.links] == ["html.1", "html.2", "html.3"]
    assert mark_links(first.source, "html") == first


def test_scope_names_the_ids() -> None:
    marked = mark_links('<a href="https://a.test">A</a><a href="https://b.test">B</a>', "part.footer")
    assert [link.id for link in marked.links] == ["part.footer.1", "part.footer.2"]


SPECS = [
    ("http", '<a href="https://x.test">', True, "custom"),
    ("http-upper-case", '<a href="HTTP://X.TEST">', True, "custom"),
    ("template-decides", '<a href="{lead.site}">', True, "custom"),
    ("mailto", '<a href="mailto:a@b.test">', False, "custom"),
    ("tel", '<a href="tel:+79001112233">', False, "custom"),
    ("anchor", '<a href="#top">', False, "custom"),
    ("empty", '<a href="">', False, "custom"),
    ("relative", '<a href="/account">', False, "custom"),
    ("unsubscribe", '<a href="{unsubscribe}">', False, "unsubscribe"),
    ("global-unsubscribe", '<a href=" {GlobalUnsubscribe} ">', False, "globalunsubscribe"),
    ("subscription-manager", '<a href="{subscription_manager}">', False, "subscription_manager"),
    ("stoplist", '<a href="{stoplist}">', False, "stoplist"),
    ("confirm", '<a href="{confirm}">', False, "confirm"),
    ("webversion", '<a href="{webversion}">', False, "webversion"),
    ("system-tag-with-more-is-custom", '<a href="{webversion}&amp;x=1">', True, "custom"),
    ("data-no-track", '<a href="https://x.test" data-no-track>', False, "custom"),
    ("data-notrack", '<a href="https://x.test" data-notrack="">', False, "custom"),
    ("notrack", '<a href="https://x.test" NOTRACK>', False, "custom"),
    ("mailchimp", '<a href="https://x.test" mc:disable-tracking>', False, "custom"),
    ("sendgrid-off", '<a href="https://x.test" clicktracking="off">', False, "custom"),
    ("sendgrid-on", '<a href="https://x.test" clicktracking="on">', True, "custom"),
]


@pytest.mark.parametrize(("source", "tracked", "kind"), [c[1:] for c in SPECS], ids=[c[0] for c in SPECS])
def test_link_spec_tracking_and_kind(source: str, tracked: bool, kind: str) -> None:
    (spec,) = mark_links(source + "x</a>", "html").links
    assert (spec.tracked, spec.kind) == (tracked, kind)


def test_link_spec_reads_name_updates_and_subscribe_to() -> None:
    source = (
        '<a href="http://www.example.org/?a=1&amp;b=2" name="link" update-clicked_link="true" '
        'update-Sign="Leo &amp; Co" update-clicked_link="ignored" subscribe-to="1">Go</a>'
    )
    (spec,) = mark_links(source, "html").links
    assert spec == LinkSpec(
        id="html.1",
        href_source="http://www.example.org/?a=1&b=2",
        name="link",
        tracked=True,
        kind="custom",
        updates={"clicked_link": "true", "Sign": "Leo & Co"},
        subscribe_to="1",
    )


def test_a_broken_template_tag_is_a_syntax_error() -> None:
    with pytest.raises(TemplateSyntaxError):
        mark_links('<a href="https://x.test/{lead.id">X</a>', "html")


# ---------------------------------------------------------------- mark_text_links


TEXT_MARKED = [
    ("sentence-dot", "See https://x.test/a.", "See [[text.1|https://x.test/a]]."),
    ("several", "http://a.test, https://b.test!", "[[text.1|http://a.test]], [[text.2|https://b.test]]!"),
    ("balanced-parens-kept", "(https://x.test/a_(b))", "([[text.1|https://x.test/a_(b)]])"),
    ("angle-brackets", "<https://x.test/a>", "<[[text.1|https://x.test/a]]>"),
    (
        "output-tags-belong-to-the-url",
        'Go https://x.test/{lead.id}?s={urlencode(lead.Sign)}&p={format json.price "."} now',
        'Go [[text.1|https://x.test/{lead.id}?s={urlencode(lead.Sign)}&p={format json.price "."}]] now',
    ),
    (
        "statements-end-the-url",
        "{if lead.vip}https://a.test{else}https://b.test{end}",
        "{if lead.vip}[[text.1|https://a.test]]{else}[[text.2|https://b.test]]{end}",
    ),
    ("url-ending-in-a-tag", "https://x.test/{lead.id}.", "[[text.1|https://x.test/{lead.id}]]."),
    ("remote-block-is-not-a-link", "{[https://r.test/block]} end", "{[https://r.test/block]} end"),
    (
        "url-inside-a-tag-is-not-a-link",
        '{if lead.site equal "https://x.test"}yes{end}',
        '{if lead.site equal "https://x.test"}yes{end}',
    ),
    ("no-scheme-no-link", "mailto:a@b.test www.x.test https:// x", "mailto:a@b.test www.x.test https:// x"),
]


@pytest.mark.parametrize(
    ("source", "expected"), [c[1:] for c in TEXT_MARKED], ids=[c[0] for c in TEXT_MARKED]
)
def test_mark_text_links(source: str, expected: str) -> None:
    assert visible(mark_text_links(source, "text").source) == expected


def test_text_marking_is_idempotent() -> None:
    marked = mark_text_links("a https://x.test b https://y.test", "sms")
    assert mark_text_links(marked.source, "sms") == marked
    assert [(s.id, s.href_source, s.tracked) for s in marked.links] == [
        ("sms.1", "https://x.test", True),
        ("sms.2", "https://y.test", True),
    ]


# ---------------------------------------------------------------- track_links (after a real render)


TRACKED = [
    (
        "tracked-link-wrapped",
        '<a href="https://x.test/a">X</a>',
        {},
        f'<a href="{tracked_href("html.1", "https://x.test/a")}">X</a>',
    ),
    (
        "no-track-left-as-is",
        '<a href="https://x.test/a" class="btn" data-no-track>X</a>',
        {},
        '<a href="https://x.test/a" class="btn">X</a>',
    ),
    (
        "mailto-tel-anchor-untouched",
        '<a href="mailto:a@b.test">M</a><a href="tel:+7900">T</a><a href="#top">A</a>',
        {},
        '<a href="mailto:a@b.test">M</a><a href="tel:+7900">T</a><a href="#top">A</a>',
    ),
    (
        "system-link-not-wrapped",
        '<a href="{unsubscribe}">Unsubscribe</a>',
        {},
        f'<a href="{UNSUBSCRIBE_URL}">Unsubscribe</a>',
    ),
    (
        "functional-attributes-stripped",
        '<a href="https://x.test" name="link" update-clicked_link="true" subscribe-to="1">Go</a>',
        {},
        f'<a href="{tracked_href("html.1", "https://x.test")}" name="link">Go</a>',
    ),
    (
        "functional-attributes-stripped-untracked",
        '<a href="https://x.test" notrack update-a="1" subscribe-to="2" clicktracking="off">Go</a>',
        {},
        '<a href="https://x.test">Go</a>',
    ),
    (
        "template-tags-in-href-rendered-then-tracked",
        '<a href="https://shop.test/p?id={lead.id}&amp;price={format json.price "."}">Buy</a>',
        {"lead": {"id": 42}, "json": {"price": 9.5}},
        f'<a href="{tracked_href("html.1", "https://shop.test/p?id=42&price=9,5")}">Buy</a>',
    ),
    (
        "template-href-rendering-to-mailto-not-wrapped",
        '<a href="{lead.contact}">Write</a>',
        {"lead": {"contact": "mailto:me@x.test"}},
        '<a href="mailto:me@x.test">Write</a>',
    ),
    (
        "outlook-button-tracked",
        '<!--[if mso]><a href="https://x.test">B</a><![endif]-->',
        {},
        f'<!--[if mso]><a href="{tracked_href("html.1", "https://x.test")}">B</a><![endif]-->',
    ),
    (
        "href-rendered-away",
        '<a {if lead.vip}href="https://x.test"{end}>X</a>',
        {"lead": {"vip": False}},
        "<a >X</a>",
    ),
    (
        "imitated-marker-from-data-is-neutralised",
        "<p>{lead.bio}</p>",
        {"lead": {"bio": '<a data-herald-link="html.9" href="https://evil.test" update-x="1">hi</a>'}},
        '<p><a href="https://evil.test">hi</a></p>',
    ),
]


@pytest.mark.parametrize(
    ("source", "data", "expected"), [c[1:] for c in TRACKED], ids=[c[0] for c in TRACKED]
)
def test_track_links_output(source: str, data: dict[str, Any], expected: str, precompute: bool) -> None:
    assert send(source, precompute=precompute, **data).text == expected


def test_link_in_loop_occurs_once_per_iteration_with_one_id(precompute: bool) -> None:
    items = [{"url": f"https://shop.test/item/{n}", "name": f"Item {n}"} for n in (1, 2, 3)]
    source = '{for $x = json.items}<a href="{$x.url}">{$x.name}</a>{end}'
    out = send(source, precompute=precompute, json={"items": items})
    assert [(link.id, link.url) for link in out.links] == [
        ("html.1", "https://shop.test/item/1"),
        ("html.1", "https://shop.test/item/2"),
        ("html.1", "https://shop.test/item/3"),
    ]
    assert out.text == "".join(
        f'<a href="{tracked_href("html.1", item["url"])}">{item["name"]}</a>' for item in items
    )


def test_ids_do_not_change_when_the_rendered_url_changes(precompute: bool) -> None:
    source = '<a href="https://x.test/{lead.id}">X</a><a href="https://y.test">Y</a>'
    first = send(source, precompute=precompute, lead={"id": 1})
    second = send(source, precompute=precompute, lead={"id": 2})
    assert [link.id for link in first.links] == [link.id for link in second.links] == ["html.1", "html.2"]
    assert [link.url for link in first.links] != [link.url for link in second.links]


def test_rendered_links_carry_kind_name_updates_and_subscribe_to(precompute: bool) -> None:
    source = (
        '<a href="http://www.example.org" name="link" update-clicked_link="true">A</a>'
        '<a href="http://www.example.org" subscribe-to="1" update-last="{lead.id}">B</a>'
        '<a href="{unsubscribe}">U</a><a href="mailto:a@b.test">M</a>'
    )
    out = send(source, precompute=precompute, lead={"id": 7})
    assert out.links == (
        RenderedLink(
            "html.1", "http://www.example.org", "link", "custom", {"clicked_link": "true"}, None, True
        ),
        RenderedLink("html.2", "http://www.example.org", None, "custom", {"last": "7"}, "1", True),
        RenderedLink("html.3", UNSUBSCRIBE_URL, None, "unsubscribe", {}, None, False),
        RenderedLink("html.4", "mailto:a@b.test", None, "custom", {}, None, False),
    )


def test_track_receives_the_destination_with_utm() -> None:
    seen: list[RenderedLink] = []

    def record(link: RenderedLink) -> str:
        seen.append(link)
        return "https://t.test/c/1"

    marked = mark_links('<a href="https://x.test/?a=1&amp;b=2">X</a>', "html")
    out = track_links(marked.source, marked.links, record, {"utm_source": "email"})
    assert [link.url for link in seen] == ["https://x.test/?a=1&b=2&utm_source=email"]
    assert out.text == '<a href="https://t.test/c/1">X</a>'


UTM = {"utm_source": "email", "utm_medium": "Main DB"}

UTM_OUTPUT = [
    (
        "appended-and-escaped",
        '<a href="https://x.test/?a=1&amp;b=2" data-no-track>X</a>',
        '<a href="https://x.test/?a=1&amp;b=2&amp;utm_source=email&amp;utm_medium=Main%20DB">X</a>',
    ),
    (
        "existing-parameter-wins-fragment-last",
        '<a href="https://x.test/p?utm_source=own#sec" data-no-track>X</a>',
        '<a href="https://x.test/p?utm_source=own&amp;utm_medium=Main%20DB#sec">X</a>',
    ),
    ("system-link-gets-none", '<a href="{webversion}">W</a>', '<a href="https://t.test/w/abc">W</a>'),
    ("mailto-gets-none", '<a href="mailto:a@b.test">M</a>', '<a href="mailto:a@b.test">M</a>'),
    (
        "tracked-link-gets-utm-inside-the-tracker-url",
        '<a href="https://x.test">X</a>',
        f'<a href="{tracked_href("html.1", "https://x.test?utm_source=email&utm_medium=Main%20DB")}">X</a>',
    ),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in UTM_OUTPUT], ids=[c[0] for c in UTM_OUTPUT])
def test_utm_in_output(source: str, expected: str, precompute: bool) -> None:
    assert send(source, precompute=precompute, utm=UTM).text == expected


ADD_UTM = [
    ("no-query", "https://x.test/p", "https://x.test/p?utm_source=email&utm_medium=Main%20DB"),
    ("query", "https://x.test/p?a=1", "https://x.test/p?a=1&utm_source=email&utm_medium=Main%20DB"),
    ("empty-query", "https://x.test/p?", "https://x.test/p?utm_source=email&utm_medium=Main%20DB"),
    (
        "trailing-ampersand",
        "https://x.test/p?a=1&",
        "https://x.test/p?a=1&utm_source=email&utm_medium=Main%20DB",
    ),
    ("fragment", "https://x.test/#/cart", "https://x.test/?utm_source=email&utm_medium=Main%20DB#/cart"),
    ("present-blank-wins", "https://x.test/?utm_source=", "https://x.test/?utm_source=&utm_medium=Main%20DB"),
    (
        "encoded-key-is-present",
        "https://x.test/?utm%5Fsource=a&utm_medium=b",
        "https://x.test/?utm%5Fsource=a&utm_medium=b",
    ),
]


@pytest.mark.parametrize(("url", "expected"), [c[1:] for c in ADD_UTM], ids=[c[0] for c in ADD_UTM])
def test_add_utm(url: str, expected: str) -> None:
    assert add_utm(url, UTM) == expected


def test_add_utm_skips_empty_values() -> None:
    assert add_utm("https://x.test/", {"utm_source": "", "utm_term": "Spring sale"}) == (
        "https://x.test/?utm_term=Spring%20sale"
    )


def test_default_utm_follows_the_product_defaults() -> None:
    utm = default_utm(
        channel_version="email-text",
        database_name="Customers",
        campaign_name="Spring",
        template_name="Sale",
        message_id="m-1",
    )
    assert utm == {
        "utm_source": "email-text",
        "utm_medium": "Customers",
        "utm_campaign": "Spring",
        "utm_term": "Sale",
        "utm_content": "m-1",
    }


def test_href_entities_decoded_for_the_url_and_escaped_when_written(precompute: bool) -> None:
    out = send(
        '<a href="https://x.test/?q={lead.q}&amp;r=&quot;1&quot;" data-no-track>X</a>',
        precompute=precompute,
        lead={"q": "a<b"},
        utm={"utm_source": "email"},
    )
    assert out.links[0].url == 'https://x.test/?q=a<b&r="1"&utm_source=email'
    assert out.text == ('<a href="https://x.test/?q=a&lt;b&amp;r=&quot;1&quot;&amp;utm_source=email">X</a>')


def test_parts_and_fragments_keep_their_own_ids() -> None:
    footer = mark_links('<a href="https://help.test">Help</a>', "part.footer")
    social = mark_links('<a href="https://social.test/{lead.id}">Follow</a>', "fragment.social")
    body = mark_links('<a href="https://x.test">X</a>{part.footer}{fragment.social}', "html")
    context = RenderContext(
        lead={"id": 5}, parts={"footer": footer.source}, fragments={"social": social.source}
    )
    rendered = compile_template(body.source).render(context)
    out = track_links(rendered, body.links + footer.links + social.links, tracker)
    assert [(link.id, link.url) for link in out.links] == [
        ("html.1", "https://x.test"),
        ("part.footer.1", "https://help.test"),
        ("fragment.social.1", "https://social.test/5"),
    ]
    assert MARKER_ATTR not in out.text


# ---------------------------------------------------------------- text bodies


def test_text_links_tracked_after_render() -> None:
    marked = mark_text_links("Hi {lead._fname}, your order: https://shop.test/o/{lead.id}. Thanks", "text")
    rendered = compile_template(marked.source).render(RenderContext(lead={"_fname": "Eddie", "id": 9}))
    out = track_links(rendered, marked.links, tracker, {"utm_source": "email-text"})
    url = "https://shop.test/o/9?utm_source=email-text"
    assert out.text == f"Hi Eddie, your order: https://t.test/c?l=text.1&u={quote(url, safe='')}. Thanks"
    assert out.links == (RenderedLink("text.1", url, tracked=True),)


def test_text_links_in_a_loop_and_unknown_ids() -> None:
    marked = mark_text_links("{for $u = json.urls}https://x.test/{$u} {end}", "sms")
    rendered = compile_template(marked.source).render(RenderContext(json={"urls": ["a", "b"]}))
    out = track_links(
        rendered + f"{TEXT_OPEN}sms.9{TEXT_SEP}https://y.test{TEXT_CLOSE}", marked.links, tracker
    )
    assert [(link.id, link.url) for link in out.links] == [
        ("sms.1", "https://x.test/a"),
        ("sms.1", "https://x.test/b"),
    ]
    assert out.text.endswith(" https://y.test")
    assert TEXT_OPEN not in out.text and TEXT_CLOSE not in out.text


# ---------------------------------------------------------------- precomputed static links


def test_links_varying_only_in_their_href_are_placeholders_once_per_version() -> None:
    source = (
        '<a href="https://x.test/a" update-seen="1" name="a">A</a>'
        '<a href="https://x.test/{lead.id}">B</a>'
        "<a href='https://x.test/?a=1&b=2' data-no-track>C</a>"
    )
    marked = mark_links(source, "html", precompute=True)
    assert marked.source == (
        f'<a href={STATIC_HREF}html.1{STATIC_CLOSE} name="a">A</a>'
        f'<a href={RENDERED_HREF}html.2{TEXT_SEP}"https://x.test/{{lead.id}}"{STATIC_CLOSE}>B</a>'
        f"<a href={STATIC_HREF}html.3{STATIC_CLOSE}>C</a>"
    )
    assert [s.raw_href for s in marked.links] == ['"https://x.test/a"', "", "'https://x.test/?a=1&b=2'"]
    kept = mark_links(
        '<a {if lead.x}class="y"{end} href="https://x.test" update-a="{lead.a}">', "html", precompute=True
    )
    assert (
        kept.source.count(MARKER_ATTR) == 1
    )  # a tag elsewhere in the start tag: marked, scanned per message
    assert marked.links[0].updates == {"seen": "1"}  # the click still applies it
    rendered = compile_template(marked.source).render(RenderContext(lead={"id": 3}))
    out = track_links(rendered, marked.links, tracker)
    assert out.text == (
        f'<a href="{tracked_href("html.1", "https://x.test/a")}" name="a">A</a>'
        f'<a href="{tracked_href("html.2", "https://x.test/3")}">B</a>'
        "<a href='https://x.test/?a=1&b=2'>C</a>"  # left as the author wrote it
    )


def test_a_static_link_in_a_loop_is_tracked_once_per_message() -> None:
    calls: list[str] = []

    def counting(link: RenderedLink) -> str:
        calls.append(link.id)
        return tracker(link)

    source = '{for $x = json.items}<a href="https://x.test">{$x}</a>{end}'
    marked = mark_links(source, "html", precompute=True)
    rendered = compile_template(marked.source).render(RenderContext(json={"items": [1, 2, 3]}))
    out = track_links(rendered, marked.links, counting)
    assert calls == ["html.1"]
    assert [link.id for link in out.links] == ["html.1"] * 3
    assert out.text.count(tracked_href("html.1", "https://x.test")) == 3


def test_static_text_links_and_placeholders_from_data() -> None:
    source = "Hi {lead.bio} https://x.test/a and https://x.test/{lead.id}"
    marked = mark_text_links(source, "text", precompute=True)
    assert marked.source == (
        f"Hi {{lead.bio}} {STATIC_TEXT}text.1{STATIC_CLOSE} and "
        f"{TEXT_OPEN}text.2{TEXT_SEP}https://x.test/{{lead.id}}{TEXT_CLOSE}"
    )
    imitation = f"{STATIC_TEXT}text.9{STATIC_CLOSE}{STATIC_HREF}html.1{STATIC_CLOSE}"  # not its own
    rendered = compile_template(marked.source).render(RenderContext(lead={"bio": imitation, "id": 4}))
    out = track_links(rendered, marked.links, tracker)
    assert out.text == (
        f"Hi  https://t.test/c?l=text.1&u={quote('https://x.test/a', safe='')} and "
        f"https://t.test/c?l=text.2&u={quote('https://x.test/4', safe='')}"
    )
    assert [link.id for link in out.links] == ["text.1", "text.2"]
