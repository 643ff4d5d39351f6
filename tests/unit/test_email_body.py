"""The email body's last steps: open pixel, plain-text version, CSS inlining."""

from __future__ import annotations

import pytest

from herald.domain.email_body import inline_css, insert_open_pixel, text_block, text_version, tidy_text

PIXEL = "https://t.test/o?m=1&s=2"
PIXEL_TAG = '<img src="https://t.test/o?m=1&amp;s=2" width="1" height="1" alt="" style="display:none">'

PIXELS = [
    (
        "before-body-end",
        "<html><body><p>Hi</p></body></html>",
        f"<html><body><p>Hi</p>{PIXEL_TAG}</body></html>",
    ),
    (
        "upper-case-body",
        "<HTML><BODY><p>Hi</p></BODY ></HTML>",
        f"<HTML><BODY><p>Hi</p>{PIXEL_TAG}</BODY ></HTML>",
    ),
    (
        "last-body-end-wins",
        "<body><!-- </body> --><p>Hi</p></body>",
        f"<body><!-- </body> --><p>Hi</p>{PIXEL_TAG}</body>",
    ),
    ("no-body-appended", "<p>Hi</p>", f"<p>Hi</p>{PIXEL_TAG}"),
]


@pytest.mark.parametrize(("html", "expected"), [c[1:] for c in PIXELS], ids=[c[0] for c in PIXELS])
def test_insert_open_pixel(html: str, expected: str) -> None:
    assert insert_open_pixel(html, PIXEL, has_pixel=False) == expected


def test_no_second_pixel_when_the_template_has_one() -> None:
    html = '<body><img src="https://t.test/o/9"></body>'
    assert insert_open_pixel(html, PIXEL, has_pixel=True) == html


TEXTS = [
    (
        "paragraphs-and-whitespace",
        "<p>Hello   \n  Eddie,</p><p>second\tparagraph</p>",
        "Hello Eddie,\n\nsecond paragraph",
    ),
    ("line-breaks", "<p>one<br>two<br/><br>three</p>", "one\ntwo\n\nthree"),
    ("inline-elements-join", "<p>a <b>bold</b><i>italic</i> word</p>", "a bolditalic word"),
    (
        "head-style-script-dropped",
        "<html><head><title>T</title><style>p{color:red}</style></head>"
        "<body><script>var x = 1;</script><p>Body</p></body></html>",
        "Body",
    ),
    ("unclosed-head-ends-at-body", "<head><title>T</title><body>Body", "Body"),
    (
        "unordered-list",
        "<p>Intro</p><ul><li>one</li><li>two</li></ul><p>After</p>",
        "Intro\n\n- one\n- two\n\nAfter",
    ),
    ("ordered-list", "<ol><li>first</li><li>second</li></ol>", "1. first\n2. second"),
    ("ordered-list-start", '<ol start="3"><li>c</li><li>d</li></ol>', "3. c\n4. d"),
    ("nested-list", "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "- a\n  - b\n- c"),
    (
        "link-text-and-url",
        '<p>Read <a href="https://x.test/a?b=1&amp;c=2">the news</a>.</p>',
        "Read the news (https://x.test/a?b=1&c=2).",
    ),
    ("link-text-is-the-url", '<a href="https://x.test/">https://x.test/</a>', "https://x.test/"),
    ("link-text-is-the-address", '<a href="https://x.test/">x.test</a>', "x.test"),
    ("mailto-showing-the-address", '<a href="mailto:a@b.test">a@b.test</a>', "a@b.test"),
    ("mailto-with-text", '<a href="mailto:a@b.test">Write to us</a>', "Write to us (mailto:a@b.test)"),
    (
        "image-link-uses-alt",
        '<a href="https://x.test"><img src="l.png" alt="Logo"></a>',
        "Logo (https://x.test)",
    ),
    ("image-link-without-alt", '<a href="https://x.test"><img src="l.png"></a>', "https://x.test"),
    ("anchor-link-text-only", '<a href="#top">Back to top</a>', "Back to top"),
    ("images-outside-links-dropped", '<p>A<img src="x.png" alt="pic">B</p>', "AB"),
    (
        "layout-tables-one-cell-a-line",
        "<table><tr><td>Left</td><td>Right</td></tr><tr><td><table><tr><td>Inner</td></tr></table></td></tr></table>",
        "Left\nRight\nInner",
    ),
    ("headings", "<h1>Title</h1>text<h2>Sub</h2>more", "Title\n\ntext\n\nSub\n\nmore"),
    ("horizontal-rule", "<p>a</p><hr><p>b</p>", "a\n\n" + "-" * 30 + "\n\nb"),
    ("pre-kept", "<pre>  x = 1\n  y = 2</pre>", "  x = 1\n  y = 2"),
    ("entities-and-nbsp", "<p>Tom&nbsp;&amp;&nbsp;Jerry &lt;3</p>", "Tom & Jerry <3"),
    (
        "preheader-padding-dropped",
        "<div>Sale&zwnj;&nbsp;&#847;&zwnj;&nbsp;&shy;</div><p>Body</p>",
        "Sale\n\nBody",
    ),
    ("outlook-only-content-dropped", "<!--[if mso]><p>Outlook</p><![endif]--><p>All</p>", "All"),
    ("many-blank-lines-collapse", "<p>a</p><br><br><br><div></div><p>b</p>", "a\n\nb"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("html", "expected"), [c[1:] for c in TEXTS], ids=[c[0] for c in TEXTS])
def test_text_version(html: str, expected: str) -> None:
    assert text_version(html) == expected


# A text version made from a template's source, then rendered: the pieces its tags stand for
# (fragments, parts, loop iterations) are joined as the template joins them, then laid out.
ASSEMBLED = [
    (
        "a-fragment-paragraph-after-a-link",
        ["Your page (https://x.test)", text_block("<p>Shop Inc.</p>")],
        "Your page (https://x.test)\n\nShop Inc.",
    ),
    ("loop-list-items", [text_block("<ul>"), *[text_block(f"<li>{x}</li>") for x in "ab"]], "- a\n- b"),
    ("table-rows", [text_block("<tr><td>a</td></tr>"), text_block("<tr><td>b</td></tr>")], "a\nb"),
    ("headings", [text_block("<h1>A</h1>"), "text", text_block("<h2>B</h2>")], "A\n\ntext\n\nB"),
    ("a-br-between-words", ["one", text_block("<br>two")], "one\ntwo"),
    ("two-brs-add-up", ["one", text_block("<br><br>two")], "one\n\ntwo"),
    ("an-empty-if-leaves-one-blank-line", [text_block("<p>a</p>"), "", text_block("<p>b</p>")], "a\n\nb"),
    ("inline-pieces-stay-on-the-line", ["Hi ", text_block("<b>Ann</b>"), "!"], "Hi Ann!"),
]


@pytest.mark.parametrize(("pieces", "expected"), [c[1:] for c in ASSEMBLED], ids=[c[0] for c in ASSEMBLED])
def test_pieces_made_text_break_lines_where_their_blocks_meet(pieces: list[str], expected: str) -> None:
    assert tidy_text("".join(pieces)) == expected


def test_text_version_of_a_typical_email() -> None:
    html = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>.btn{color:#fff}</style></head>
    <body><table width="100%"><tr><td align="center">
      <table width="600"><tr><td>
        <h1>Hello, Eddie</h1>
        <p>Your order <b>#42</b> has shipped.<br>It arrives on Friday.</p>
        <ul><li>Red shoes &times; 1</li><li>Socks &times; 3</li></ul>
        <p><a class="btn" href="https://t.test/c?l=html.1&amp;u=x">Track the parcel</a></p>
      </td></tr></table>
      <p style="font-size:11px"><a href="https://t.test/u/abc">Unsubscribe</a></p>
    </td></tr></table>
    <img src="https://t.test/o" width="1" height="1" alt="" style="display:none"></body></html>"""
    assert text_version(html) == (
        "Hello, Eddie\n"
        "\n"
        "Your order #42 has shipped.\n"
        "It arrives on Friday.\n"
        "\n"
        "- Red shoes × 1\n"
        "- Socks × 3\n"
        "\n"
        "Track the parcel (https://t.test/c?l=html.1&u=x)\n"
        "\n"
        "Unsubscribe (https://t.test/u/abc)"
    )


INLINED = [
    (
        "rules-inlined-style-block-removed",
        "<html><head><style>p{color:red;margin:0}</style></head><body><p>x</p></body></html>",
        '<html><head></head><body><p style="color: red;margin: 0;">x</p></body></html>',
    ),
    (
        "media-kept-in-style-block",
        "<html><head><style>p{color:red} @media (max-width:600px){p{color:green}}</style></head>"
        "<body><p>x</p></body></html>",
        "<html><head><style>@media (max-width:600px){p{color:green}} </style></head>"
        '<body><p style="color: red;">x</p></body></html>',
    ),
    (
        "existing-inline-style-wins",
        "<html><head><style>.x{color:blue;font-size:12px}</style></head>"
        '<body><p class="x" style="color:black">x</p></body></html>',
        '<html><head></head><body><p class="x" style="font-size: 12px;color: black">x</p></body></html>',
    ),
    (
        "important-rule-wins-as-in-a-browser",
        "<html><head><style>p{color:red !important}</style></head>"
        '<body><p style="color:black">x</p></body></html>',
        '<html><head></head><body><p style="color: red !important">x</p></body></html>',
    ),
    (
        "remote-stylesheet-not-fetched-and-kept",
        '<html><head><link rel="stylesheet" href="https://fonts.invalid/x.css"><style>p{color:red}</style></head>'
        "<body><p>x</p></body></html>",
        '<html><head><link rel="stylesheet" href="https://fonts.invalid/x.css"></head>'
        '<body><p style="color: red;">x</p></body></html>',
    ),
    (
        "keep-block-for-hover",
        '<html><head><style data-css-inline="keep">a:hover{color:red}</style>'
        "<style>a{color:blue}</style></head>"
        '<body><a href="https://x.test/?a=1&amp;b=2">l</a></body></html>',
        '<html><head><style data-css-inline="keep">a:hover{color:red}</style></head>'
        '<body><a href="https://x.test/?a=1&amp;b=2" style="color: blue;">l</a></body></html>',
    ),
    (
        "no-style-block-untouched",
        '<p style="color:red">x</p>',
        '<p style="color:red">x</p>',
    ),
]


@pytest.mark.parametrize(("html", "expected"), [c[1:] for c in INLINED], ids=[c[0] for c in INLINED])
def test_inline_css(html: str, expected: str) -> None:
    assert inline_css(html) == expected


def test_inline_css_keeps_outlook_conditionals() -> None:
    html = (
        "<!DOCTYPE html><html><head><!--[if mso]><xml><o:OfficeDocumentSettings/></xml><![endif]-->"
        "<style>td{padding:0}</style></head><body><table><tr><td>x</td></tr></table></body></html>"
    )
    out = inline_css(html)
    assert "<!--[if mso]><xml><o:OfficeDocumentSettings/></xml><![endif]-->" in out
    assert '<td style="padding: 0;">x</td>' in out
