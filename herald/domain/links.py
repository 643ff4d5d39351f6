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

With `precompute=True` (the send path), an anchor whose start tag has template tags only in its
href (or none) is done once per template version instead: its functional attributes are removed
from the source and its href written as a placeholder, so each message only puts its own tracker
URL there, with no attribute scanning. A static href becomes U+E003 id U+E005 (what the author
wrote is kept in `LinkSpec.raw_href`, for a message that leaves the link as it was); an href with
tags keeps its value between U+E006 id U+E001 and U+E005, so the rendered URL is read from
there. A text link with no tag in its URL becomes U+E004 id U+E005. Either way the same message
comes out.

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
from dataclasses import dataclass, field, replace
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
# a precomputed link's placeholder: static href, static text URL, end; an href with template tags
STATIC_HREF, STATIC_TEXT, STATIC_CLOSE, RENDERED_HREF = "\ue003", "\ue004", "\ue005", "\ue006"

_STATEMENTS = frozenset({"if", "for", "else", "end", "autocomma"})
_SYSTEM_HREF = re.compile(rf"\{{({'|'.join(SYSTEM_LINKS)})\s*\}}", re.IGNORECASE)
_HTTP_PREFIX = re.compile(r"https?://", re.IGNORECASE)
_HTTP_URL = re.compile(r"https?://[^\s/?#]", re.IGNORECASE)
_UNMARKED = f"[^{TEXT_OPEN}-{TEXT_CLOSE}]*"
# The three kinds of mark in a rendered message, each found by its own scan: one alternation of them
# cannot start from a literal and costs ≈ 5× as much on a message's HTML. An anchor's marker is
# written right after `<a ` (checked where it is found).
_HTML_MARK = re.compile(rf'{MARKER_ATTR}="(?P<hid>[^"<>]*)"')
_TEXT_MARK = re.compile(rf"{TEXT_OPEN}(?P<tid>{_UNMARKED}){TEXT_SEP}(?P<turl>{_UNMARKED}){TEXT_CLOSE}")
_OURS = f"[^{TEXT_OPEN}-{RENDERED_HREF}]*"  # text with none of the private-use characters marks use
_STATIC_MARK = re.compile(rf"(?P<static>[{STATIC_HREF}{STATIC_TEXT}])(?P<sid>{_OURS}){STATIC_CLOSE}")
_HREF_MARK = re.compile(rf"{RENDERED_HREF}(?P<rid>{_OURS}){TEXT_SEP}(?P<value>{_OURS}){STATIC_CLOSE}")
_OLD_TEXT_MARKS = re.compile(f"{TEXT_OPEN}{_UNMARKED}{TEXT_SEP}|{TEXT_CLOSE}")
_URL_START = re.compile(r"https?://", re.IGNORECASE)
_URL_STOP = frozenset(" \t\r\n\f\v<>\"'`{}") | set(
    TEXT_OPEN + TEXT_SEP + TEXT_CLOSE + STATIC_TEXT + STATIC_CLOSE
)
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
    raw_href: str = ""  # a precomputed link's href value as the source wrote it (quotes included)


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


def mark_links(source: str, scope: str, *, precompute: bool = False) -> MarkedSource:
    """Mark every `<a href>` of an HTML template source with a stable id `<scope>.<n>`; with
    `precompute`, static links get their placeholder instead (see the module's docstring).

    Raises TemplateSyntaxError when the source's tags do not scan.
    """
    spans = _template_spans(source)
    tags = {start: end for start, end, _ in spans}
    starts = sorted(tags)
    masked = _mask(source, spans)
    edits: list[tuple[int, int, str]] = []
    links: list[LinkSpec] = []
    for offset in _anchor_offsets(masked):
        attrs = _scan_attrs(source, offset + 2, tags)
        href = _first(attrs, "href")
        if href is None:
            continue
        link_id = f"{scope}.{len(links) + 1}"
        spec = _spec(link_id, href, attrs)
        varies = _varying(masked, offset, attrs, starts)
        if precompute and varies <= {href.name}:
            edits.extend((a.start, a.end, "") for a in attrs if _functional(a))
            value = source[href.value_start : href.end]
            if varies:  # the href holds template tags: its rendered value is read per message
                edits.append(
                    (href.value_start, href.end, f"{RENDERED_HREF}{link_id}{TEXT_SEP}{value}{STATIC_CLOSE}")
                )
            else:
                edits.append((href.value_start, href.end, f"{STATIC_HREF}{link_id}{STATIC_CLOSE}"))
                spec = replace(spec, raw_href=value)
        else:
            edits.append((offset + 2, offset + 2, f' {MARKER_ATTR}="{link_id}"'))
            # A source marked before (a copied tag) keeps one marker: the new one.
            edits.extend((a.start, a.end, "") for a in attrs if a.name.lower() == MARKER_ATTR)
        links.append(spec)
    return MarkedSource(_apply(source, edits), tuple(links))


def mark_text_links(source: str, scope: str, *, precompute: bool = False) -> MarkedSource:
    """Mark every bare http(s) URL of a plain-text template source (template tags may be in it);
    with `precompute`, a URL with no template tag in it gets its placeholder instead."""
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
        static = precompute and not _spans_between(starts, match.start(), end)
        mark = (
            f"{STATIC_TEXT}{link_id}{STATIC_CLOSE}"
            if static
            else f"{TEXT_OPEN}{link_id}{TEXT_SEP}{url}{TEXT_CLOSE}"
        )
        edits.append((match.start(), end, mark))
        links.append(LinkSpec(link_id, url, raw_href=url if static else ""))
        pos = end
    return MarkedSource(_apply(source, edits), tuple(links))


def _varying(masked: str, offset: int, attrs: list[_Attr], starts: list[int]) -> set[str]:
    """The names of the start tag's attributes that hold template tags; "" for a tag between them."""
    end = masked.find(">", attrs[-1].end if attrs else offset)
    if not _spans_between(starts, offset, len(masked) if end < 0 else end):
        return set()
    varies = {a.name for a in attrs if a.value_start >= 0 and _spans_between(starts, a.value_start, a.end)}
    inside = [(a.value_start, a.end) for a in attrs if a.value_start >= 0]
    tags_at = starts[
        bisect.bisect_left(starts, offset) : bisect.bisect_left(starts, len(masked) if end < 0 else end)
    ]
    if any(not any(s <= t < e for s, e in inside) for t in tags_at):
        varies.add("")  # a tag between attributes (`{if x}class="y"{end}`): the tag's shape varies
    return varies


def _spans_between(starts: list[int], start: int, end: int) -> bool:
    """Whether a template tag starts in [start, end)."""
    index = bisect.bisect_left(starts, start)
    return index < len(starts) and starts[index] < end


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
    specs: Mapping[str, LinkSpec] | Iterable[LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str] | None = None,
    finished: dict[str, RenderedLink] | None = None,
) -> TrackedOutput:
    """Turn marked links of a rendered message into their final form and list their occurrences.

    `track` is called with each tracked custom link (destination in `url`) and returns the
    tracker URL written in its place; a precomputed link occurring more than once (a loop) is
    tracked once. Markers and functional attributes never reach the output. `specs` by id, or
    listed. `finished` keeps precomputed links' occurrences across messages (the caller's cache
    per template version; only valid without `utm`, which names the message).
    """
    by_id = specs if isinstance(specs, Mapping) else {spec.id: spec for spec in specs}
    edits: list[tuple[int, int, str]] = []
    links: list[RenderedLink] = []
    done: dict[str, tuple[RenderedLink, str]] = {}  # precomputed link id → its occurrence and output
    for match in _marks(rendered):
        if match.re is _STATIC_MARK:
            link = _fill_static(match, by_id, track, utm or {}, edits, done, finished)
        elif match.re is _HREF_MARK:
            link = _fill_href(match, by_id, track, utm or {}, edits)
        elif match.re is _HTML_MARK:
            link = _track_anchor(rendered, match, by_id, track, utm or {}, edits)
        else:
            link = _track_text(match, by_id, track, utm or {}, edits)
        if link is not None:
            links.append(link)
    return TrackedOutput(_apply(rendered, edits), tuple(links))


def _marks(rendered: str) -> list[re.Match[str]]:
    """Every mark of the rendered message, in output order."""
    found: list[re.Match[str]] = []
    if STATIC_CLOSE in rendered:
        found.extend(_STATIC_MARK.finditer(rendered))
        if RENDERED_HREF in rendered:
            found.extend(_HREF_MARK.finditer(rendered))
    if MARKER_ATTR in rendered:
        found.extend(m for m in _HTML_MARK.finditer(rendered) if _after_anchor(rendered, m.start()))
    if TEXT_OPEN in rendered:
        found.extend(_TEXT_MARK.finditer(rendered))
    return sorted(found, key=lambda m: m.start()) if len(found) > 1 else found


def _after_anchor(rendered: str, start: int) -> bool:
    return start >= 3 and rendered[start - 1].isspace() and rendered[start - 3 : start - 1].lower() == "<a"


def _fill_static(
    match: re.Match[str],
    by_id: Mapping[str, LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str],
    edits: list[tuple[int, int, str]],
    done: dict[str, tuple[RenderedLink, str]],
    finished: dict[str, RenderedLink] | None,
) -> RenderedLink | None:
    """A precomputed link's placeholder: its tracker URL (as an attribute value for an href); the
    source's own text when the link is left as it was written."""
    link_id = match.group("sid")
    found = done.get(link_id)
    if found is None:
        spec = by_id.get(link_id)
        if spec is None or not spec.raw_href:  # not one of the message's placeholders: dropped
            edits.append((match.start(), match.end(), ""))
            return None
        href = match.group("static") == STATIC_HREF
        link = finished.get(link_id) if finished is not None and not utm else None
        if link is None:
            link = _finish(spec, spec.href_source, spec.name, dict(spec.updates), spec.subscribe_to, utm)
            if finished is not None and not utm:
                finished[link_id] = link
        final = track(link) if link.tracked else link.url
        if final == spec.href_source:
            output = spec.raw_href
        elif href:
            output = f'"{html.escape(final)}"'
        else:
            output = final
        found = done[link_id] = (link, output)
    edits.append((match.start(), match.end(), found[1]))
    return found[0]


def _fill_href(
    match: re.Match[str],
    by_id: Mapping[str, LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str],
    edits: list[tuple[int, int, str]],
) -> RenderedLink | None:
    """A precomputed anchor whose href has template tags: the rendered value as written (quotes
    included), or the tracker URL in its place."""
    value = match.group("value")
    spec = by_id.get(match.group("rid"))
    if spec is None:  # not one of the message's placeholders: the value stays, unlinked
        edits.append((match.start(), match.end(), value))
        return None
    quoted = len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]
    url = html.unescape(value[1:-1] if quoted else value).strip()
    link = _finish(spec, url, spec.name, dict(spec.updates), spec.subscribe_to, utm)
    final = track(link) if link.tracked else link.url
    edits.append((match.start(), match.end(), value if final == url else f'"{html.escape(final)}"'))
    return link


def _track_anchor(
    rendered: str,
    match: re.Match[str],
    by_id: Mapping[str, LinkSpec],
    track: Callable[[RenderedLink], str],
    utm: Mapping[str, str],
    edits: list[tuple[int, int, str]],
) -> RenderedLink | None:
    attrs = _scan_attrs(rendered, match.end(), {})
    edits.append((match.start() - 1, match.end(), ""))
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
    if not utm:
        return url
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
