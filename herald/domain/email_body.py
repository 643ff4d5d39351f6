"""The email body's last steps: the open pixel, the plain-text version, CSS inlining.

Pure functions on rendered HTML (after `links.track_links`).

Decisions:
- the open pixel goes just before the last `</body>` (Mailchimp and SendGrid put theirs at the
  end of the body), or at the very end of a document without one;
- the text version is written on `html.parser`, not `inscriptis`: inscriptis lays `<table>`s out
  as text grids (an email's layout tables come out as padded columns with unrelated cells on one
  line), prints links as `[text](url)` and bullets as `*`; bending it to this output means
  replacing its table, list and link handlers through its internal document state, and it
  brings lxml along. The writer below is small and shaped for email layouts: every table cell
  is a line of its own, content only Outlook sees (`<!--[if mso]>`) is left out, the preheader's
  padding characters (zero-width joiners, soft hyphens, `&#847;`) are dropped;
- a text version is made from the template's source once per version, not from each message's
  HTML: its blocks' breaks are written as break marks (`text_block`) that `tidy_text` lays out
  after rendering, so a fragment's, part's or remote block's paragraphs and a loop's list items
  break lines where they meet the text around them;
- a link is written `text (url)`; just the text when it already shows the address (`x.com`,
  `a@b.c` for `mailto:a@b.c`); the url alone when the link has no text nor image `alt`; links to
  `#anchors` and `javascript:` give only their text;
- CSS inlining uses `css_inline` with remote stylesheets off (no network in the domain): rules
  are inlined and their `<style>` blocks removed, at-rules (`@media`, `@font-face`, `@import`)
  stay in a `<style>` block, `<link>` stylesheets stay for the clients that load them, and a
  `<style data-css-inline="keep">` block is kept whole (for `:hover` and client hacks, which
  cannot be inlined and are otherwise dropped). An element's own `style` wins over stylesheet
  rules, except `!important` ones, as in a browser. HTML without `<style>` is returned as is.
"""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

import css_inline

PIXEL_TAG = '<img src="{src}" width="1" height="1" alt="" style="display:none">'

_INLINER = css_inline.CSSInliner(keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False)


def insert_open_pixel(html: str, pixel_url: str, *, has_pixel: bool) -> str:
    """`html` with an open pixel for `pixel_url` before `</body>`, unless it has one (`{pixel}`)."""
    if has_pixel:
        return html
    tag = PIXEL_TAG.format(src=html_lib.escape(pixel_url))
    body_end = html.lower().rfind("</body")
    if body_end < 0:
        return html + tag
    return html[:body_end] + tag + html[body_end:]


def inline_css(html: str) -> str:
    """`html` with its `<style>` rules moved into `style` attributes; at-rules stay in `<style>`."""
    if "<style" not in html.lower():
        return html
    return _INLINER.inline(html)


def text_version(html: str) -> str:
    """The plain-text version of an email's HTML: paragraphs, lines, lists and links kept."""
    return tidy_text(_written(html).body())


def text_block(html: str) -> str:
    """HTML made text to be rendered inside a text version, then laid out by `tidy_text`.

    A text version is made from the template's *source* once per version, so its blocks' breaks
    are written as break marks that still collapse once the template is rendered: a loop's
    `</li>` meets the next `<li>`, a `{fragment.footer}` (only a word in the source) brings its
    `<p>`'s breaks. The piece starts and ends with the marks its first and last blocks owe."""
    writer = _written(html)
    body = writer.body()
    if not body.strip():
        return ""
    return _MARKS[writer.leading_breaks] + body + _MARKS[writer.trailing_breaks]


def tidy_text(text: str) -> str:
    """A text version's final layout: break marks that meet collapse to the larger break (as block
    margins do in a browser; `<br>` newlines add), no trailing spaces, at most one blank line in a
    row, none at either end."""
    text = _BREAKS.sub(_collapsed, text)
    lines = (line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def _collapsed(run: re.Match[str]) -> str:
    breaks = run.group()
    owed = 2 if _PARAGRAPH_MARK in breaks else 1 if _LINE_MARK in breaks else 0
    return "\n" * max(owed, breaks.count("\n"))


def _written(html: str) -> _TextWriter:
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    return writer


# Elements whose content is never text a reader sees.
_HIDDEN = frozenset({"head", "style", "script", "title", "template"})
# Elements that start and end a line; paragraph-like ones also leave a blank line around them.
_LINE_BLOCKS = frozenset(
    {
        "div", "table", "tr", "td", "th", "caption", "li", "dt", "dd", "section", "article",
        "header", "footer", "nav", "aside", "main", "center", "address", "form", "figure",
        "figcaption", "tbody", "thead", "tfoot",
    }
)  # fmt: skip
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "dl"})
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u034f\u00ad"))
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Break marks (see `text_block`): a line break and a paragraph break a block owes its neighbours.
_LINE_MARK, _PARAGRAPH_MARK = "\x1e", "\x1d"
_MARKS = ("", _LINE_MARK, _PARAGRAPH_MARK)
_BREAK_CHARACTERS = f"\n{_LINE_MARK}{_PARAGRAPH_MARK}"
_BREAKS = re.compile(f"[{_BREAK_CHARACTERS}]+")
_RULE = "-" * 30


class _TextWriter(HTMLParser):
    """Writes text as a browser would lay it out in one narrow column."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._owed_breaks = 0  # breaks owed before the next text: 1 a line, 2 a paragraph
        self._owed_space = False  # a collapsed space owed before the next text
        self._trailing_breaks = 0  # newlines and break marks at the end of the output
        self._hidden = 0
        self._pre = 0
        self._lists: list[int | None] = []  # None for <ul>, the next number for <ol>
        self._bullet = ""  # the list item prefix owed to the next text
        self._links: list[tuple[str, int]] = []  # (href, index in _out where its text starts)
        self.leading_breaks = 0  # the breaks a block opened before the first text owed

    def body(self) -> str:
        return "".join(self._out)

    @property
    def trailing_breaks(self) -> int:
        """The break blocks closed after the last text still owe."""
        return self._owed_breaks

    # -- parser callbacks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._hidden = 0  # an unclosed <head> ends here
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._newline()
        elif tag == "hr":
            self._block(2)
            self._write(_RULE)
            self._block(2)
        elif tag in ("ul", "ol"):
            self._block(1 if self._lists else 2)
            self._lists.append(None if tag == "ul" else _int(dict(attrs).get("start"), 1))
        elif tag == "li":
            self._block(1)
            self._bullet = "  " * max(len(self._lists) - 1, 0) + self._next_bullet()
        elif tag == "a":
            self._links.append(((dict(attrs).get("href") or "").strip(), len(self._out)))
        elif tag == "img" and self._links:
            self._write(dict(attrs).get("alt") or "")  # an image link's text is its alt
        elif tag == "pre":
            self._block(2)
            self._pre += 1
        elif tag in _PARAGRAPHS:
            self._block(2)
        elif tag in _LINE_BLOCKS:
            self._block(1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(self._hidden - 1, 0)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._block(1 if self._lists else 2)
        elif tag == "a":
            if self._links:
                self._close_link(*self._links.pop())
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
            self._block(2)
        elif tag in _PARAGRAPHS:
            self._block(2)
        elif tag in _LINE_BLOCKS:
            self._block(1)

    def handle_data(self, data: str) -> None:
        self._write(data)

    # -- writing

    def _write(self, data: str) -> None:
        if self._hidden or not data:
            return
        data = data.replace("\xa0", " ").translate(_INVISIBLE)
        if self._pre:
            self._emit(data)
            return
        if data[0].isspace():
            self._owed_space = True
        words = _SPACES.sub(" ", data).strip()
        if words:
            self._emit(words)
            self._owed_space = data[-1].isspace()

    def _emit(self, text: str) -> None:
        """Append text, paying the breaks, the list bullet and the space it is owed."""
        if not self._out:
            self.leading_breaks = self._owed_breaks
        if self._out and self._owed_breaks:
            self._append(_MARKS[self._owed_breaks])
        elif self._owed_space and self._out and not self._trailing_breaks:
            self._append(" ")
        self._owed_breaks = 0
        self._owed_space = False
        if self._bullet:
            self._append(self._bullet)
            self._bullet = ""
        self._append(text)

    def _append(self, text: str) -> None:
        if not text:
            return
        self._out.append(text)
        stripped = text.rstrip(_BREAK_CHARACTERS)
        if stripped:
            self._trailing_breaks = len(text) - len(stripped)
        else:
            self._trailing_breaks += len(text)

    def _block(self, newlines: int) -> None:
        self._owed_breaks = max(self._owed_breaks, newlines)
        self._owed_space = False

    def _newline(self) -> None:
        if self._hidden:
            return
        if not self._out:  # nothing to break yet: owed, for a piece that goes after other text
            self._owed_breaks = min(self._owed_breaks + 1, 2)
            return
        self._owed_breaks = 0
        self._owed_space = False
        self._append("\n")

    def _next_bullet(self) -> str:
        if not self._lists or self._lists[-1] is None:
            return "- "
        number = self._lists[-1]
        self._lists[-1] = number + 1
        return f"{number}. "

    def _close_link(self, href: str, start: int) -> None:
        shown = _SPACES.sub(" ", "".join(self._out[start:])).strip()
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        if not shown:
            self._emit(href)
        elif _address(shown) != _address(href):
            self._append(f" ({href})")


def _address(url: str) -> str:
    """A URL as people write it: without scheme, `mailto:`/`tel:` and trailing slash, lower-case."""
    return re.sub(r"^(?:https?://|mailto:|tel:)", "", url.strip(), flags=re.IGNORECASE).rstrip("/").lower()


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default
