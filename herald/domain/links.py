"""Links in a message: stable link ids on the template source, click tracking on the rendered output.

Two steps, because ids belong to a template version while URLs belong to one message:

    marked = mark_links(template_html, "html")          # once per template version (and part, fragment)
    rendered = compile_template(marked.source).render(context)
    out = track_links(rendered, marked.links, track, utm)   # per message

`mark_links` gives every `<a href>` of the source an id `<scope>.<n>` (n from 1 in source order) and
writes it into the tag as `data-herald-link="<id>"`, placed right after `<a` so the rendered tag is
found again whatever the template printed into its attributes. `mark_text_links` does the same for
bare http(s) URLs in plain text (email text version, SMS) with a pair of private-use characters
(U+E000 id U+E001 url U+E002). `track_links` reads each marked link in the rendered output, removes
the marker and the functional attributes, appends UTM and swaps tracked hrefs for tracker URLs.

Decisions where the product notes are silent:
- no-tracking markers: `data-no-track`, `data-notrack` and `notrack` (the brief's names), plus the
  ones pasted templates bring from other platforms, `mc:disable-tracking` (Mailchimp) and
  `clicktracking="off"` (SendGrid, Braze); presence is enough, as for any HTML boolean attribute;
- a link is a system link only when its href is exactly one system link tag (`{unsubscribe}`, ...):
  its rendered URL is already a tracker URL, so it is neither wrapped nor given UTM;
- `tracked` on a LinkSpec means "may be wrapped": false for no-tracking, system and non-http(s)
  hrefs. An href that is all template (`{lead.site}`) may be wrapped; whether it is depends on the
  rendered URL, which must be http(s) with a host;
- UTM goes on every custom http(s) link, tracked or not (it is analytics, not click tracking);
  parameters already in the URL win; the fragment stays last;
- `name`, `update-*` and `subscribe-to` of a RenderedLink are read from the rendered tag, so a
  value computed by the template (`update-last="{lead.x}"`) arrives rendered; on a LinkSpec they
  are the source text. Attribute values are entity-decoded in both;
- `update-<field>` keeps the field's case (`update-Sign` writes `Sign`); the first of duplicate
  attributes wins, as in HTML;
- links inside Outlook conditional comments (`<!--[if mso]>...<![endif]-->`) are marked too:
  their buttons are the ones Outlook users click;
- a marker whose id is not among the specs (a profile value that imitates one) loses its marker
  and functional attributes and is left untracked;
- an href left untouched (not tracked, no UTM added) is written back byte for byte.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote

from herald.domain.templating.lexer import RemoteEnd, RemoteStart, Source, Tag, scan

MARKER_ATTR = "data-herald-link"
SYSTEM_LINKS = (
    "unsubscribe",
    "globalunsubscribe",
    "subscription_manager",
    "stoplist",
    "confirm",
    "webversion",
)
NO_TRACK_ATTRS = frozenset({"data-no-track", "data-notrack", "notrack", "mc:disable-tracking"})
TEXT_OPEN, TEXT_SEP, TEXT_CLOSE = "\ue000", "\ue001", "\ue002"

_STATEMENTS = frozenset({"if", "for", "else", "end", "autocomma"})
_SYSTEM_HREF = re.compile(rf"\{{({'|'.join(SYSTEM_LINKS)})\s*\}}", re.IGNORECASE)
_HTTP_PREFIX = re.compile(r"https?://", re.IGNORECASE)
_HTTP_URL = re.compile(r"https?://[^\s/?#]", re.IGNORECASE)
_UNMARKED = f"[^{TEXT_OPEN}-{TEXT_CLOSE}]*"
_MARKS = re.compile(
    rf"""(?P<html><a\s+{MARKER_ATTR}="(?P<hid>[^"<>]*)")
       | {TEXT_OPEN}(?P<tid>{_UNMARKED}){TEXT_SEP}(?P<turl>{_UNMARKED}){TEXT_CLOSE}""",
    re.IGNORECASE | re.VERBOSE,
)
_OLD_TEXT_MARKS = re.compile(f"{TEXT_OPEN}{_UNMARKED}{TEXT_SEP}|{TEXT_CLOSE}")
_URL_START = re.compile(r"https?://", re.IGNORECASE)
_URL_STOP = frozenset(" \t\r\n\f\v<>\"'`{}") | {TEXT_OPEN, TEXT_SEP, TEXT_CLOSE}
_TRAILING = frozenset(".,;:!?'\"")
_CLOSERS = {")": "(", "]": "["}


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A link as the template source writes it; `id` is stable for the same source."""

    id: str
    href_source: str
    name: str | None = None
    tracked: bool = True
    kind: str = "custom"  # "custom" or a system link name from SYSTEM_LINKS
    updates: dict[str, str] = field(default_factory=dict)
    subscribe_to: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedLink:
    """One occurrence of a link in a rendered message: `url` is the destination, with UTM."""

    id: str
    url: str
    name: str | None = None
    kind: str = "custom"
    updates: dict[str, str] = field(default_factory=dict)
    subscribe_to: str | None = None
    tracked: bool = False  # true when the output carries track(link) instead of `url`


@dataclass(frozen=True, slots=True)
class MarkedSource:
    """A template source with its links marked, and the links in source order."""

    source: str
    links: tuple[LinkSpec, ...]


@dataclass(frozen=True, slots=True)
class TrackedOutput:
    """The message text to send and every link occurrence in it, in output order."""

    text: str
    links: tuple[RenderedLink, ...]


@dataclass(frozen=True, slots=True)
class _Attr:
    """One attribute of a start tag; offsets index the scanned text."""

    name: str  # as written
    value: str | None  # raw (entity-encoded), without quotes; None for a bare attribute
    start: int  # where the whitespace before it starts, so removing [start, end) leaves the tag tidy
    value_start: int  # the opening quote or first character of the value, -1 without a value
    end: int


# ---------------------------------------------------------------- marking (template source)


def mark_links(source: str, scope: str) -> MarkedSource:
    """Mark every `<a href>` of an HTML template source with a stable id `<scope>.<n>`.

    Raises TemplateSyntaxError when the source's tags do not scan.
    """
    spans = _template_spans(source)
    tags = {start: end for start, end, _ in spans}
    edits: list[tuple[int, int, str]] = []
    links: list[LinkSpec] = []
    for offset in _anchor_offsets(_mask(source, spans)):
        attrs = _scan_attrs(source, offset + 2, tags)
        href = _first(attrs, "href")
        if href is None:
            continue
        link_id = f"{scope}.{len(links) + 1}"
        edits.append((offset + 2, offset + 2, f' {MARKER_ATTR}="{link_id}"'))
        # A source marked before (a copied tag) keeps one marker: the new one.
        edits.extend((a.start, a.end, "") for a in attrs if a.name.lower() == MARKER_ATTR)
        links.append(_spec(link_id, href, attrs))
    return MarkedSource(_apply(source, edits), tuple(links))


def mark_text_links(source: str, scope: str) -> MarkedSource:
    """Mark every bare http(s) URL of a plain-text template source (template tags may be in it)."""
    source = _OLD_TEXT_MARKS.sub("", source)
    spans = _template_spans(source)
    starts = [start for start, _, _ in spans]
    tags = {start: (end, statement) for start, end, statement in spans}
    tag_ends = {end for _, end, _ in spans}
    edits: list[tuple[int, int, str]] = []
    links: list[LinkSpec] = []
    pos = 0
    while match := _URL_START.search(source, pos):
        if _inside(match.start(), spans, starts):
            pos = match.end()
            continue
        end = _url_end(source, match.start(), match.end(), tags, tag_ends)
        if end == match.end():  # a scheme with nothing after it
            pos = end
            continue
        link_id = f"{scope}.{len(links) + 1}"
        url = source[match.start() : end]
        edits.append((match.start(), end, f"{TEXT_OPEN}{link_id}{TEXT_SEP}{url}{TEXT_CLOSE}"))
        links.append(LinkSpec(link_id, url))
        pos = end
    return MarkedSource(_apply(source, edits), tuple(links))


def _spec(link_id: str, href: _Attr, attrs: list[_Attr]) -> LinkSpec:
    href_source = html.unescape(href.value or "").strip()
    system = _SYSTEM_HREF.fullmatch(href_source)
    kind = system.group(1).lower() if system else "custom"
    tracked = kind == "custom" and not _no_track(attrs) and _may_be_http(href_source)
    return LinkSpec(
        id=link_id,
        href_source=href_source,
        name=_value(attrs, "name"),
        tracked=tracked,
        kind=kind,
        updates=_updates(attrs),
        subscribe_to=_value(attrs, "subscribe-to") or None,
    )


def _may_be_http(href: str) -> bool:
    """Whether the href can render to an http(s) URL: it says so, or a template tag decides."""
    return href.startswith("{") or _HTTP_PREFIX.match(href) is not None


def _template_spans(source: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_statement) of every template tag and remote block `{[...]}`, in order."""
    spans: list[tuple[int, int, bool]] = []
    remote_at = -1
    for segment in scan(Source(source)):
        if isinstance(segment, RemoteStart):
            remote_at = segment.offset
        elif isinstance(segment, RemoteEnd):
            spans.append((remote_at, segment.offset + 2, True))
            remote_at = -1
        elif isinstance(segment, Tag) and remote_at < 0:
            head = segment.tokens[0].text.lower() if segment.tokens else ""
            spans.append((segment.offset, segment.end, head in _STATEMENTS))
    return spans


def _mask(source: str, spans: list[tuple[int, int, bool]]) -> str:
    """The source with each template tag blanked to `_`s of the same length (offsets survive).

    Template tags may hold quotes, `>` and spaces (`{format json.price "."}`) that would
    mislead an HTML parser; blanked, they read as plain attribute text.
    """
    parts: list[str] = []
    prev = 0
    for start, end, _ in spans:
        parts.append(source[prev:start])
        parts.append("_" * (end - start))
        prev = end
    parts.append(source[prev:])
    return "".join(parts)


class _AnchorFinder(HTMLParser):
    """Offsets of `<a` start tags, skipping comments, scripts and styles (except MSO conditionals)."""

    def __init__(self, text: str, base: int = 0) -> None:
        super().__init__(convert_charrefs=True)
        self.offsets: list[int] = []
        self._base = base
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._base + self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.offsets.append(self._offset())

    def handle_comment(self, data: str) -> None:
        # `<!--[if mso]> ... <![endif]-->`: markup only Outlook renders, often its buttons.
        if data.lstrip().lower().startswith("[if"):
            self.offsets.extend(_anchor_offsets(data, self._offset() + len("<!--")))


def _anchor_offsets(text: str, base: int = 0) -> list[int]:
    finder = _AnchorFinder(text, base)
    finder.feed(text)
    finder.close()
    return finder.offsets


def _inside(offset: int, spans: list[tuple[int, int, bool]], starts: list[int]) -> bool:
    index = bisect.bisect_right(starts, offset) - 1
    return index >= 0 and offset < spans[index][1]


def _url_end(
    source: str, start: int, pos: int, tags: Mapping[int, tuple[int, bool]], tag_ends: set[int]
) -> int:
    """Where the bare URL at `start` ends: output tags belong to it; statements, spaces and an
    unbalanced closing bracket (`(see https://x.io)`, `Shop (https://x.io)Next`) end it."""
    depth = dict.fromkeys(_CLOSERS.values(), 0)
    while pos < len(source):
        tag = tags.get(pos)
        char = source[pos]
        if tag is not None:
            end, statement = tag
            if statement:
                break
            pos = end
            continue
        if char in _URL_STOP:
            break
        if char in depth:
            depth[char] += 1
        elif char in _CLOSERS:
            if depth[_CLOSERS[char]] == 0:
                break
            depth[_CLOSERS[char]] -= 1
        pos += 1
    return _trim_punctuation(source, start, pos, tag_ends)


def _trim_punctuation(source: str, start: int, end: int, tag_ends: set[int]) -> int:
    """Drop sentence punctuation and unbalanced closing brackets after a URL, as linkifiers do."""
    while end > start and end not in tag_ends:
        char = source[end - 1]
        opener = _CLOSERS.get(char)
        url = source[start:end]
        if char in _TRAILING or (opener and url.count(opener) < url.count(char)):
            end -= 1
        else:
            break
    return end


# ---------------------------------------------------------------- tracking (rendered output)


def track_links(
    rendered: str,
    specs: Iterable[LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str] | None = None,
) -> TrackedOutput:
    """Turn marked links of a rendered message into their final form and list their occurrences.

    `track` is called with each tracked custom link (destination in `url`) and returns the
    tracker URL written in its place. Markers and functional attributes never reach the output.
    """
    by_id = {spec.id: spec for spec in specs}
    edits: list[tuple[int, int, str]] = []
    links: list[RenderedLink] = []
    for match in _MARKS.finditer(rendered):
        if match.group("html") is not None:
            link = _track_anchor(rendered, match, by_id, track, utm or {}, edits)
        else:
            link = _track_text(match, by_id, track, utm or {}, edits)
        if link is not None:
            links.append(link)
    return TrackedOutput(_apply(rendered, edits), tuple(links))


def _track_anchor(
    rendered: str,
    match: re.Match[str],
    by_id: Mapping[str, LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str],
    edits: list[tuple[int, int, str]],
) -> RenderedLink | None:
    attrs = _scan_attrs(rendered, match.end(), {})
    edits.append((match.start() + 2, match.end(), ""))
    edits.extend((a.start, a.end, "") for a in attrs if _functional(a))
    spec = by_id.get(match.group("hid"))
    href = _first(attrs, "href")
    if spec is None or href is None:
        return None
    url = html.unescape(href.value or "").strip()
    link = _finish(spec, url, _value(attrs, "name"), _updates(attrs), _value(attrs, "subscribe-to"), utm)
    final = track(link) if link.tracked else link.url
    if final != url:
        edits.append((href.value_start, href.end, f'"{html.escape(final)}"'))
    return link


def _track_text(
    match: re.Match[str],
    by_id: Mapping[str, LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str],
    edits: list[tuple[int, int, str]],
) -> RenderedLink | None:
    url = match.group("turl")
    spec = by_id.get(match.group("tid"))
    if spec is None:
        edits.append((match.start(), match.end(), url))
        return None
    link = _finish(spec, url, spec.name, dict(spec.updates), spec.subscribe_to, utm)
    edits.append((match.start(), match.end(), track(link) if link.tracked else link.url))
    return link


def _finish(
    spec: LinkSpec,
    url: str,
    name: str | None,
    updates: dict[str, str],
    subscribe_to: str | None,
    utm: Mapping[str, str],
) -> RenderedLink:
    """The occurrence of `spec` rendered to `url`: UTM added, tracking decided."""
    custom_http = spec.kind == "custom" and _HTTP_URL.match(url) is not None
    return RenderedLink(
        id=spec.id,
        url=add_utm(url, utm) if custom_http else url,
        name=name,
        kind=spec.kind,
        updates=updates,
        subscribe_to=subscribe_to or None,
        tracked=custom_http and spec.tracked,
    )


def add_utm(url: str, utm: Mapping[str, str]) -> str:
    """`url` with the UTM parameters it does not already have, before its `#fragment`."""
    base, hash_mark, fragment = url.partition("#")
    path, _, query = base.partition("?")
    present = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
    extra = [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in utm.items() if v and k not in present]
    if not extra:
        return url
    joiner = "&" if query and not query.endswith("&") else ""
    return f"{path}?{query}{joiner}{'&'.join(extra)}{hash_mark}{fragment}"


def default_utm(
    *, channel_version: str, database_name: str, campaign_name: str, template_name: str, message_id: str
) -> dict[str, str]:
    """The product's default UTM: source = channel version (email, email-text, sms, push), medium =
    database, campaign = campaign, term = template, content = message id."""
    return {
        "utm_source": channel_version,
        "utm_medium": database_name,
        "utm_campaign": campaign_name,
        "utm_term": template_name,
        "utm_content": message_id,
    }


# ---------------------------------------------------------------- start-tag attributes


def _scan_attrs(text: str, pos: int, tags: Mapping[int, int]) -> list[_Attr]:
    """The attributes of the start tag whose name ends at `pos`, up to its closing `>`.

    `tags` maps the start of each template tag to its end: a template tag is one unit, part of
    a value when inside one and skipped between attributes (`<a {if x}class="y"{end} href=...>`).
    """
    attrs: list[_Attr] = []
    size = len(text)
    while True:
        start = pos
        while pos < size and (text[pos].isspace() or text[pos] == "/"):
            pos += 1
        if pos >= size or text[pos] == ">":
            return attrs
        if pos in tags:
            pos = tags[pos]
            continue
        name_start = pos
        while pos < size and not (text[pos].isspace() or text[pos] in "/>=" or pos in tags):
            pos += 1
        if pos == name_start:  # a stray `=`: skip it as browsers do
            pos += 1
            continue
        name = text[name_start:pos]
        after_name = pos
        while pos < size and text[pos].isspace():
            pos += 1
        if pos >= size or text[pos] != "=":
            attrs.append(_Attr(name, None, start, -1, after_name))
            pos = after_name
            continue
        pos += 1
        while pos < size and text[pos].isspace():
            pos += 1
        value_start = pos
        value, pos = _scan_value(text, pos, tags)
        attrs.append(_Attr(name, value, start, value_start, pos))


def _scan_value(text: str, pos: int, tags: Mapping[int, int]) -> tuple[str, int]:
    """An attribute value starting at `pos` (quoted or not) and the offset just past it."""
    size = len(text)
    if pos < size and text[pos] in "\"'":
        quote_char = text[pos]
        if not tags:  # rendered output has no template tags: find the closing quote directly
            end = text.find(quote_char, pos + 1)
            end = size if end < 0 else end
            return text[pos + 1 : end], min(end + 1, size)
        end = pos + 1
        while end < size and text[end] != quote_char:
            end = tags.get(end, end + 1)
        return text[pos + 1 : end], min(end + 1, size)
    end = pos
    while end < size and not (text[end].isspace() or text[end] == ">"):
        end = tags.get(end, end + 1)
    return text[pos:end], end


def _first(attrs: list[_Attr], name: str) -> _Attr | None:
    return next((a for a in attrs if a.name.lower() == name), None)


def _value(attrs: list[_Attr], name: str) -> str | None:
    attr = _first(attrs, name)
    return None if attr is None else html.unescape(attr.value or "")


def _updates(attrs: list[_Attr]) -> dict[str, str]:
    updates: dict[str, str] = {}
    for attr in attrs:
        if attr.name.lower().startswith("update-") and len(attr.name) > len("update-"):
            updates.setdefault(attr.name[len("update-") :], html.unescape(attr.value or ""))
    return updates


def _no_track(attrs: list[_Attr]) -> bool:
    return any(
        a.name.lower() in NO_TRACK_ATTRS
        or (a.name.lower() == "clicktracking" and (a.value or "").strip().lower() == "off")
        for a in attrs
    )


def _functional(attr: _Attr) -> bool:
    """Attributes that steer Herald and must not reach the recipient."""
    name = attr.name.lower()
    return (
        name in NO_TRACK_ATTRS
        or name in ("clicktracking", "subscribe-to", MARKER_ATTR)
        or (name.startswith("update-") and len(name) > len("update-"))
    )


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """`text` with non-overlapping (start, end, replacement) edits applied."""
    parts: list[str] = []
    prev = 0
    for start, end, replacement in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        parts.append(text[prev:start])
        parts.append(replacement)
        prev = end
    parts.append(text[prev:])
    return "".join(parts)
