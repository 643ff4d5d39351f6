"""Rendering one message: a template version for one profile, subscription and campaign.

The pipeline follows the guide (notes seed000-C §2.5): gather the data (the
profile as `lead`, the subscription, the JSON content fetched from the
template's URL or passed by a trigger), expand fragments and parts, evaluate
the language, fetch remote blocks, then post-process: tracking redirects and
UTM on links, the open pixel, the text version, CSS inlining, SMS length.

Decisions where the guide is silent:
- Link ids are fixed per template version (`links.mark_links` on the
  version's sources, cached by template and version): `html.<n>`, `text.<n>`,
  `part.<name>.<n>`, `fragment.<short_name>.<n>`, `sms.<n>`, `push.click_url.1`,
  `telegram_bot.<n>` (and `telegram_bot.bare.<n>` in HTML),
  `telegram_bot.buttons.<i>.1`.
- `{pixel}` and `{read}` render as 1×1 images; without `{pixel}` in the
  email's HTML the open pixel goes before `</body>`. `{read}` is never added
  by itself: the author places it.
- A click token carries the destination, so the tracker redirects only to
  URLs that were in the message (no open redirect), and personalised URLs need
  no lookup.
- UTM parameters are added only when the template asks (`add_utm`): the
  product's defaults, overridden key by key by the template's `utm`.
- A message that cannot be rendered (a remote fetch failed, a limit was hit,
  an SMS is longer than the template allows) raises `RenderFailed` with the
  reason: the caller records it for that message and goes on.
- A preview renders exactly what would be sent, with the links' own URLs in
  place of tracking redirects, no pixel, and `#unsubscribe`-style anchors for
  system links, so nothing it shows can record an event.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, Protocol, TypeVar

from herald.domain import fragments
from herald.domain import links as lk
from herald.domain.email_body import inline_css, insert_open_pixel, text_block, tidy_text
from herald.domain.errors import DomainError
from herald.domain.events import registry
from herald.domain.profiles import ProfileState
from herald.domain.resources import EmailSettings, ResourceState
from herald.domain.sms import add_http_to_links, sms_length
from herald.domain.subscriptions import Subscription
from herald.domain.templates import (
    TELEGRAM_MAX_TEXT,
    Channel,
    EmailContent,
    PushContent,
    RenderFailed,
    SmsContent,
    TelegramContent,
    TemplateContent,
)
from herald.domain.templating import CompiledTemplate, RenderContext, compile_template
from herald.domain.templating.references import References, references
from herald.infra.aggregates import Aggregates
from herald.infra.failures import TRANSIENT, describe
from herald.infra.pixel_signing import link_token
from herald.infra.remote_content import RemoteContentError
from herald.infra.signing import TokenSigner

PREPARED_CACHE_SIZE = 256
_P = ParamSpec("_P")
_R = TypeVar("_R")
SYSTEM_LINK_TAGS = (
    "unsubscribe",
    "globalunsubscribe",
    "subscription_manager",
    "stoplist",
    "confirm",
    "webversion",
)


# --- ports -------------------------------------------------------------------------------------


class TrackingUrls(Protocol):
    """Where a message's links, pixels and system links point."""

    def click(self, link: lk.RenderedLink) -> str: ...
    def pixel(self, kind: str) -> str: ...
    def system(self, kind: str) -> str: ...
    def visitor(self) -> str:
        """`{visitor}`: the token that tells a site's pixel whose message a visitor came from."""
        ...


class MessageFetches(Protocol):
    """One message's dynamic content: `{[url]}` HTML by calling it, the JSON content by `json`."""

    def __call__(self, url: str) -> str: ...
    def json(self, url: str) -> dict[str, Any]: ...


class PromoCodes(Protocol):
    """A message's promo codes: `{loyalty.<name>.promocode}` by program template name.

    Raises RenderFailed when a code cannot be given (no such program, none free, stopped).
    """

    def __call__(self, shortcodes: frozenset[str]) -> Mapping[str, str]: ...


class RemoteContent(Protocol):
    """Fetches dynamic content under the account's policy (timeouts, size limits, no private addresses)."""

    def for_message(self) -> MessageFetches: ...


class KeptFetches:
    """A message's remote content, kept: fetched through `fetch` the first time a URL is asked for,
    or, without `fetch`, answered from what was kept when it was sent (its web version)."""

    def __init__(
        self,
        fetch: MessageFetches | None,
        html: Mapping[str, str] | None = None,
        json: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._fetch = fetch
        self.html: dict[str, str] = dict(html or {})
        self.json_answers: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (json or {}).items()}

    def __call__(self, url: str) -> str:
        if url not in self.html:
            self.html[url] = self._fetch(url) if self._fetch is not None else ""
        return self.html[url]

    def json(self, url: str) -> dict[str, Any]:
        if url not in self.json_answers:
            self.json_answers[url] = self._fetch.json(url) if self._fetch is not None else {}
        return self.json_answers[url]


class SignedTrackingUrls:
    """Tracker URLs on the resource's tracking domain, each with a signed token (`/t/<purpose>/<token>`)."""

    def __init__(self, signer: TokenSigner, base_url: str, message_id: str) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.message_id = message_id

    def click(self, link: lk.RenderedLink) -> str:
        """The click tracker URL: link id and destination, plus the link's name and actions when set
        (`n` name, `f` the `update-<field>` values, `s` the `subscribe-to` resource)."""
        payload: dict[str, Any] = {"l": link.id, "u": link.url}
        if link.name:
            payload["n"] = link.name
        if link.updates:
            payload["f"] = dict(link.updates)
        if link.subscribe_to:
            payload["s"] = link.subscribe_to
        return self._url("click", payload)

    def pixel(self, kind: str) -> str:
        return self._url(kind, {})

    def system(self, kind: str) -> str:
        return self._url(kind, {})

    def visitor(self) -> str:
        return link_token(self.signer, self.message_id)

    def push_links(self) -> dict[str, str]:
        """A push's `hub_link`: `ack` (GET when received: delivered) and `open` (GET when tapped)."""
        return {"ack": self._url("ack", {}), "open": self._url("open", {})}

    def _url(self, purpose: str, payload: dict[str, Any]) -> str:
        token = self.signer.sign(purpose, {"m": self.message_id, **payload})
        return f"{self.base_url}/t/{purpose}/{token}"


class ShortLinkUrls(SignedTrackingUrls):
    """An SMS's tracker URLs: each click becomes `/s/<code>` (ten characters, not the long token),
    and `shortened` keeps code → token for the message's `MessageLinksShortened` event."""

    def __init__(self, signer: TokenSigner, base_url: str, message_id: str) -> None:
        super().__init__(signer, base_url, message_id)
        self.shortened: dict[str, str] = {}

    def click(self, link: lk.RenderedLink) -> str:
        token = super().click(link).rpartition("/")[2]
        code = self.signer.short_code(token)
        self.shortened[code] = token
        return f"{self.base_url}/s/{code}"


def tracking_urls(
    signer: TokenSigner, resource: ResourceState, message_id: str, channel: Channel
) -> SignedTrackingUrls:
    """A message's tracker URLs on its resource's tracking domain; an SMS's clicks as short links, so
    its length (and the parts it is sent in) is the length it is counted with when queued."""
    kind = ShortLinkUrls if channel is Channel.SMS else SignedTrackingUrls
    return kind(signer, tracking_base(resource), message_id)


def tracking_base(resource: ResourceState) -> str:
    """The resource's tracking domain as the base of its tracker URLs."""
    domain = resource.settings.default_tracking_domain if resource.settings else "localhost"
    return f"https://{domain}"


class PreviewUrls:
    """A preview's links: their own destinations, no pixel, anchors for system links."""

    def click(self, link: lk.RenderedLink) -> str:
        return link.url

    def pixel(self, kind: str) -> str:
        return ""

    def system(self, kind: str) -> str:
        return f"#{kind}"

    def visitor(self) -> str:
        return ""


# --- what a message is rendered from and to ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageData:
    """Who and what one message is for."""

    message_id: str
    lead: Mapping[str, Any] = field(default_factory=dict)
    subscription: Mapping[str, Any] = field(default_factory=dict)
    template_name: str = ""
    database_name: str = ""
    resource_name: str = ""
    resource_token: str = ""
    campaign_id: str = ""
    campaign_name: str = ""
    content: Mapping[str, Any] | None = None  # JSON passed with a trigger: replaces the template's JSON URL
    promo_codes: PromoCodes | None = None  # without it, `{loyalty.<name>.promocode}` renders empty


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    from_name: str
    from_email: str
    reply_to_name: str
    reply_to_email: str
    attachments: tuple[dict[str, str], ...]


def as_sent(body: RenderedEmail, channel: EmailSettings) -> RenderedEmail:
    """The email's From and Reply-To as it goes out: the template's own where it sets them, else
    those of the resource's email channel (a routed sender may still override the From name)."""
    return replace(
        body,
        from_name=body.from_name or channel.from_name,
        from_email=body.from_email or channel.from_email,
        reply_to_name=body.reply_to_name or channel.reply_to_name,
        reply_to_email=body.reply_to_email or (channel.reply_to_email or ""),
    )


@dataclass(frozen=True, slots=True)
class RenderedSms:
    body: str
    encoding: str
    characters: int
    parts: int


@dataclass(frozen=True, slots=True)
class RenderedPush:
    title: str
    body: str
    icon: str
    click_url: str
    ios_deep_link: str
    android_deep_link: str


@dataclass(frozen=True, slots=True)
class RenderedTelegram:
    text: str
    parse_mode: str  # "", "HTML" or "MarkdownV2"
    disable_link_preview: bool
    buttons: tuple[tuple[str, str], ...]  # (label, URL), one per row


RenderedBody = RenderedEmail | RenderedSms | RenderedPush | RenderedTelegram


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    template_id: str
    template_version: int
    channel: Channel
    body: RenderedBody
    links: tuple[lk.RenderedLink, ...]
    fragment_versions: Mapping[str, int]
    short_links: Mapping[str, str] = field(default_factory=dict)  # an SMS's `/s/<code>` → click token


@dataclass(frozen=True, slots=True)
class Fragment:
    """A fragment as a message renders it: its current version and type."""

    content: str
    type: str
    version: int


FragmentSource = Callable[[frozenset[str]], Mapping[str, Fragment]]


# --- sources marked once per template version --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A template version's texts with their links marked, compiled, and what they refer to.

    An email without a text version gets one made from its HTML *source*
    once per version (`text_parts` are its parts made text the same way), so
    each message renders a text template rather than parsing its own HTML.
    """

    texts: Mapping[str, CompiledTemplate]
    specs: Mapping[str, lk.LinkSpec]
    parts: Mapping[str, CompiledTemplate]
    text_parts: Mapping[str, CompiledTemplate]
    uses: References
    # with the fragments' versions a message renders with: every link spec, and the precomputed
    # links' occurrences made so far (messages without UTM share them)
    link_tables: dict[tuple[tuple[str, int], ...], _LinkTable] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _LinkTable:
    specs: Mapping[str, lk.LinkSpec]
    finished: dict[str, lk.RenderedLink] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _CompiledFragment:
    """A fragment version compiled for HTML and for text, its link specs and what it uses."""

    html: CompiledTemplate
    text: CompiledTemplate
    specs: tuple[lk.LinkSpec, ...]
    uses: References
    version: int


def _marked(text: str, scope: str, html: bool | None) -> lk.MarkedSource:
    """A source's links marked, the static ones precomputed: per message only their tokens are made.
    `html` None: HTML whose bare URLs are links too (Telegram's HTML parse mode): its `href`s (their
    entities decoded) as `<scope>.<n>`, then its bare URLs as `<scope>.bare.<n>`."""
    if html is None:
        hrefs = lk.mark_links(text, scope, precompute=True)
        bare = lk.mark_text_links(hrefs.source, f"{scope}.bare", precompute=True)
        return lk.MarkedSource(bare.source, hrefs.links + bare.links)
    if html:
        return lk.mark_links(text, scope, precompute=True)
    return lk.mark_text_links(text, scope, precompute=True)


def _prepare(content: TemplateContent) -> _Prepared:
    texts: dict[str, CompiledTemplate] = {}
    specs: dict[str, lk.LinkSpec] = {}
    uses = References()

    def add(key: str, text: str, scope: str | None, html: bool | None = False) -> CompiledTemplate:
        nonlocal uses
        marked = _marked(text, scope, html) if scope else lk.MarkedSource(text, ())
        specs.update((spec.id, spec) for spec in marked.links)
        compiled = compile_template(marked.source)
        uses |= references(compiled.tree)
        texts[key] = compiled
        return compiled

    for key, text, scope, html in _channel_texts(content):
        add(key, text, scope, html)
    parts = {
        p.name: add(f"part.{p.name}", p.content, f"part.{p.name}", p.type == "html") for p in content.parts
    }
    text_parts = {
        p.name: add(f"text-part.{p.name}", _as_text(p.content, p.type), f"text-part.{p.name}")
        for p in content.parts
    }
    add("json_content_url", content.json_content_url, None)
    return _Prepared(texts, specs, parts, text_parts, uses)


def _as_text(source: str, kind: str) -> str:
    """A part's or fragment's source as plain text to go inside a text version: HTML made text (with
    the line breaks its edge blocks owe), text as it is."""
    return text_block(source) if kind == "html" else source


def _channel_texts(content: TemplateContent) -> list[tuple[str, str, str | None, bool | None]]:
    """(key, text, link scope or None, is HTML: None for HTML with bare links) of every personalised
    text of every channel."""
    found: list[tuple[str, str, str | None, bool | None]] = []
    if content.email is not None:
        e = content.email
        text = e.text if e.text.strip() or not e.html.strip() else text_block(e.html)
        found += [("email.html", e.html, "html", True), ("email.text", text, "text", False)]
        found += [
            (f"email.{n}", getattr(e, n), None, False) for n in ("subject", "from_name", "reply_to_name")
        ]
        found.append(("email.reply_to_email", e.reply_to_email, None, False))
        for i, a in enumerate(e.attachments):
            found += [(f"email.attachments.{i}.name", a.name, None, False)]
            found += [(f"email.attachments.{i}.path", a.path, None, False)]
    if content.sms is not None:
        body = add_http_to_links(content.sms.body) if content.sms.add_http_to_links else content.sms.body
        found.append(("sms.body", body, "sms", False))
    if content.push is not None:
        p = content.push
        found += [("push.title", p.title, None, False), ("push.body", p.body, None, False)]
        found += [
            ("push.icon", p.icon, None, False),
            ("push.click_url", p.click_url, "push.click_url", False),
        ]
        found += [("push.ios_deep_link", p.ios_deep_link, None, False)]
        found += [("push.android_deep_link", p.android_deep_link, None, False)]
    if content.telegram_bot is not None:
        t = content.telegram_bot
        # HTML: its hrefs (entities decoded) and its bare URLs, which Telegram links too; plain text
        # and MarkdownV2 as text: bare URLs and MarkdownV2's `(url)`
        found.append(("telegram_bot.text", t.text, "telegram_bot", None if t.parse_mode == "HTML" else False))
        for i, b in enumerate(t.buttons):
            found.append((f"telegram_bot.buttons.{i}.text", b.text, None, False))
            found.append((f"telegram_bot.buttons.{i}.url", b.url, f"telegram_bot.buttons.{i}", False))
    return found


# --- where fragments come from -----------------------------------------------------------------


def current_fragments(aggregates: Aggregates) -> FragmentSource:
    """Reads the current version of named fragments (those that exist).

    A fragment's stream is folded again only when it has grown: each use costs one version query,
    not a read of every version the fragment ever had (a run renders it for every recipient).
    """
    folded: dict[str, tuple[int, Fragment | None]] = {}

    def current(name: str) -> Fragment | None:
        stream = fragments.fragment_stream(name)
        cached = folded.get(name)
        if cached is None or cached[0] != aggregates.store.stream_version(stream):
            loaded = aggregates.load(fragments.fragment_decider, stream)
            state = loaded.state
            fragment = (
                Fragment(state.fragment.content, state.fragment.type, state.version)
                if state.exists and state.fragment is not None
                else None
            )
            cached = folded[name] = (loaded.version, fragment)
        return cached[1]

    def read(names: frozenset[str]) -> Mapping[str, Fragment]:
        found = {name: current(name) for name in sorted(names)}
        return {name: fragment for name, fragment in found.items() if fragment is not None}

    return read


def fragments_at(aggregates: Aggregates, versions: Mapping[str, int]) -> FragmentSource:
    """Reads named fragments at the given versions (those a message was rendered with); a fragment
    not named there is left out, as it was then."""

    def at_version(name: str) -> Fragment | None:
        wanted = versions.get(name)
        for recorded in aggregates.store.read_stream(fragments.fragment_stream(name)) if wanted else ():
            made = fragments.version_content(
                registry.decode(recorded.type, recorded.schema_version, recorded.payload)
            )
            if made is not None and made[0] == wanted:
                return Fragment(made[1].content, made[1].type, wanted)
        return None

    def read(names: frozenset[str]) -> Mapping[str, Fragment]:
        found = {name: at_version(name) for name in sorted(names)}
        return {name: fragment for name, fragment in found.items() if fragment is not None}

    return read


# --- the renderer ------------------------------------------------------------------------------


def _one_message(render: Callable[_P, _R]) -> Callable[_P, _R]:
    """Any error while one message is made becomes that message's `RenderFailed`: the language's own
    errors keep their path; a template function or post-processing step that broke says what it
    raised. Only a failure of the surroundings (a locked store, a full disk: `TRANSIENT`, worth
    retrying) passes through as it is."""

    @functools.wraps(render)
    def one(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return render(*args, **kwargs)
        except RenderFailed:
            raise
        except DomainError as error:
            raise RenderFailed(error.reason, error.path) from None
        except TRANSIENT:
            raise
        except Exception as error:
            raise RenderFailed(f"the message could not be rendered: {describe(error)}", "template") from None

    return one


class MessageRenderer:
    def __init__(self, fragments: FragmentSource, remote: RemoteContent | None) -> None:
        self.fragments = fragments
        self.remote = remote
        self._prepared: OrderedDict[tuple[str, int], _Prepared] = OrderedDict()
        self._fragments_compiled: dict[tuple[str, int], _CompiledFragment] = {}

    @_one_message
    def render(
        self,
        template_id: str,
        version: int,
        content: TemplateContent,
        channel: Channel,
        data: MessageData,
        urls: TrackingUrls,
        fetches: MessageFetches | None = None,
        fragments_source: FragmentSource | None = None,
    ) -> RenderedMessage:
        """The message `content` (version `version` of the template) makes for `data` over `channel`;
        whatever goes wrong while making it raises `RenderFailed` with the reason (`_one_message`).

        `fetches` answers its remote content (default: fetched now), `fragments_source` its fragments
        (default: their current versions)."""
        prepared = self._prepare(template_id, version, content)
        fragments = self._fragments(prepared.uses.fragments, fragments_source or self.fragments)
        uses = prepared.uses
        for fragment in fragments.values():
            uses |= fragment.uses
        if fetches is None and self.remote is not None:
            fetches = self.remote.for_message()
        codes = data.promo_codes(uses.loyalty) if uses.loyalty and data.promo_codes is not None else {}
        context = RenderContext(
            lead=data.lead,
            subscription=data.subscription,
            loyalty={name: {"promocode": code} for name, code in codes.items()},
            json=self._json(content, prepared, data, fetches),
            fragments={name: f.html for name, f in fragments.items()},
            parts=prepared.parts,
            system=_system_tags(data, channel, urls, uses.system_tags),
            defaults=content.defaults,
            random_seed=data.message_id,
            fetch_remote=fetches,
        )
        text_context = replace(
            context,
            fragments={name: f.text for name, f in fragments.items()},
            parts=prepared.text_parts,
            fetch_remote=_as_text_block(fetches),
        )
        job = _Job(content, prepared, _link_table(prepared, fragments), data, urls, context, text_context)
        body = job.body(channel)
        return RenderedMessage(
            template_id,
            version,
            channel,
            body,
            tuple(job.links),
            {name: f.version for name, f in fragments.items()},
        )

    def _prepare(self, template_id: str, version: int, content: TemplateContent) -> _Prepared:
        key = (template_id, version)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = _prepare(content)
            if len(self._prepared) > PREPARED_CACHE_SIZE:
                self._prepared.popitem(last=False)
        self._prepared.move_to_end(key)
        return prepared

    def _fragments(self, names: frozenset[str], source: FragmentSource) -> dict[str, _CompiledFragment]:
        """The fragments `names` use, and those they use in turn, compiled (once per version)."""
        found: dict[str, _CompiledFragment] = {}
        missing: set[str] = set()  # deleted since the template was saved: they render empty
        pending = set(names)
        while pending:
            fetched = source(frozenset(pending))
            missing |= pending - fetched.keys()
            used: set[str] = set()
            for name, fragment in fetched.items():
                found[name] = self._compiled_fragment(name, fragment)
                used |= found[name].uses.fragments
            pending = used - found.keys() - missing
        return found

    def _compiled_fragment(self, name: str, fragment: Fragment) -> _CompiledFragment:
        key = (name, fragment.version)
        compiled = self._fragments_compiled.get(key)
        if compiled is None:  # a version's content never changes: compile it once
            html = _marked(fragment.content, f"fragment.{name}", fragment.type == "html")
            text = _marked(_as_text(fragment.content, fragment.type), f"text-fragment.{name}", False)
            html_compiled = compile_template(html.source)
            compiled = _CompiledFragment(
                html_compiled,
                compile_template(text.source),
                html.links + text.links,
                references(html_compiled.tree),
                fragment.version,
            )
            self._fragments_compiled[key] = compiled
        return compiled

    def _json(
        self,
        content: TemplateContent,
        prepared: _Prepared,
        data: MessageData,
        fetches: MessageFetches | None,
    ) -> Mapping[str, Any]:
        if data.content is not None:
            return data.content
        if not content.json_content_url or fetches is None:
            return {}
        url = prepared.texts["json_content_url"].render(
            RenderContext(lead=data.lead, subscription=data.subscription)
        )
        if not url.strip():
            return {}
        try:
            return fetches.json(url.strip())
        except RemoteContentError as error:
            raise RenderFailed(f"JSON content: {error}", "json_content_url") from None


def _link_table(prepared: _Prepared, fragments: Mapping[str, _CompiledFragment]) -> _LinkTable:
    """The links of a template version rendered with these fragment versions (made once)."""
    key = tuple(sorted((name, f.version) for name, f in fragments.items()))
    table = prepared.link_tables.get(key)
    if table is None:
        specs = {**prepared.specs, **{s.id: s for f in fragments.values() for s in f.specs}}
        table = prepared.link_tables[key] = _LinkTable(specs)
    return table


def _as_text_block(fetches: MessageFetches | None) -> Callable[[str], str] | None:
    """Remote HTML blocks (`{[url]}`) as a text version shows them: made text (each URL is still
    fetched once per message: `fetches` keeps what it fetched)."""
    if fetches is None:
        return None
    return lambda url: text_block(fetches(url))


def _system_tags(
    data: MessageData, channel: Channel, urls: TrackingUrls, used: frozenset[str]
) -> dict[str, str]:
    """The system tags' values; tracker URLs only for the tags the message uses (each is signed)."""
    tags = {kind: urls.system(kind) for kind in SYSTEM_LINK_TAGS if kind in used}
    if "pixel" in used:
        tags["pixel"] = _pixel_tag(urls.pixel("open"))
    if "read" in used:
        tags["read"] = _pixel_tag(urls.pixel("read"))
    if "visitor" in used:
        tags["visitor"] = urls.visitor()
    return tags | {
        "listname": data.database_name,
        "msg_type": str(channel),
        "campid": data.campaign_id,
        "msgname": data.template_name,
        "msgid": data.message_id,
        "send_message_id": data.message_id,
        "resource_token": data.resource_token,
    }


def _pixel_tag(url: str) -> str:
    if not url:
        return ""
    return f'<img src="{url}" width="1" height="1" alt="" style="display:none">'


class _Job:
    """One message's render: the texts of its channel, their links tracked."""

    def __init__(
        self,
        content: TemplateContent,
        prepared: _Prepared,
        links: _LinkTable,
        data: MessageData,
        urls: TrackingUrls,
        context: RenderContext,
        text_context: RenderContext,
    ) -> None:
        self.context = context
        self.text_context = text_context
        self.content = content
        self.prepared = prepared
        self.link_table = links
        self.data = data
        self.urls = urls
        self.links: list[lk.RenderedLink] = []

    def body(self, channel: Channel) -> RenderedBody:
        section = self.content.channel(channel)
        if isinstance(section, EmailContent):
            return self.email(section)
        if isinstance(section, SmsContent):
            return self.sms(section)
        if isinstance(section, PushContent):
            return self.push(section)
        if isinstance(section, TelegramContent):
            return self.telegram(section)
        raise RenderFailed(f"the template has no {channel} content", "channel")

    def text(self, key: str, context: RenderContext | None = None) -> str:
        compiled = self.prepared.texts[key]
        if not compiled.source:
            return ""
        try:
            return compiled.render(context or self.context)
        except RemoteContentError as error:
            raise RenderFailed(f"remote content: {error}", key) from None

    def tracked(self, key: str, utm_source: str, context: RenderContext | None = None) -> str:
        rendered = self.text(key, context)
        table = self.link_table
        out = lk.track_links(rendered, table.specs, self._track, self._utm(utm_source), table.finished)
        self.links.extend(out.links)
        return out.text

    def _track(self, link: lk.RenderedLink) -> str:
        return self.urls.click(link) if self.content.track_links else link.url

    def _utm(self, source: str) -> dict[str, str] | None:
        if not self.content.add_utm:
            return None
        utm = lk.default_utm(
            channel_version=source,
            database_name=self.data.database_name,
            campaign_name=self.data.campaign_name,
            template_name=self.data.template_name,
            message_id=self.data.message_id,
        )
        return utm | dict(self.content.utm)

    def email(self, email: EmailContent) -> RenderedEmail:
        html = self.tracked("email.html", "email") if email.html.strip() else ""
        made = not email.text.strip()  # a text version made from the HTML renders fragments as text
        text = self.tracked("email.text", "email-text", self.text_context if made else None)
        if made:
            text = tidy_text(text)
        pixel = self.urls.pixel("open")
        if html and pixel:
            html = insert_open_pixel(html, pixel, has_pixel="pixel" in self.prepared.uses.system_tags)
        if html and not email.no_css_inline:
            html = inline_css(html)
        attachments = tuple(
            {
                "name": self.text(f"email.attachments.{i}.name"),
                "path": self.text(f"email.attachments.{i}.path"),
                "content_base64": a.content_base64,
                "content_type": a.content_type,
            }
            for i, a in enumerate(email.attachments)
        )
        return RenderedEmail(
            subject=" ".join(self.text("email.subject").split()),
            html=html,
            text=text,
            from_name=self.text("email.from_name"),
            from_email=email.from_email,
            reply_to_name=self.text("email.reply_to_name"),
            reply_to_email=self.text("email.reply_to_email").strip(),
            attachments=attachments,
        )

    def sms(self, sms: SmsContent) -> RenderedSms:
        body = self.tracked("sms.body", "sms")
        length = sms_length(body)
        if sms.max_sms_parts and length.parts > sms.max_sms_parts:
            raise RenderFailed(
                f"the SMS takes {length.parts} parts ({length.units} {length.encoding} characters); "
                f"the template allows {sms.max_sms_parts}",
                "sms.max_sms_parts",
            )
        return RenderedSms(body, length.encoding, length.units, length.parts)

    def push(self, push: PushContent) -> RenderedPush:
        return RenderedPush(
            title=self.text("push.title"),
            body=self.text("push.body"),
            icon=self.text("push.icon"),
            click_url=self.tracked("push.click_url", "push").strip(),
            ios_deep_link=self.text("push.ios_deep_link"),
            android_deep_link=self.text("push.android_deep_link"),
        )

    def telegram(self, telegram: TelegramContent) -> RenderedTelegram:
        text = self.tracked("telegram_bot.text", "telegram")
        if len(text) > TELEGRAM_MAX_TEXT:
            raise RenderFailed(
                f"the message is {len(text)} characters; Telegram takes {TELEGRAM_MAX_TEXT}",
                "telegram_bot.text",
            )
        buttons = tuple(
            (
                " ".join(self.text(f"telegram_bot.buttons.{i}.text").split()),
                self.tracked(f"telegram_bot.buttons.{i}.url", "telegram").strip(),
            )
            for i in range(len(telegram.buttons))
        )
        return RenderedTelegram(text, telegram.parse_mode, telegram.disable_link_preview, buttons)


# --- a profile as the template language reads it ----------------------------------------------


def lead_of(profile: ProfileState) -> dict[str, Any]:
    """The profile's fields as `lead.*`, with its identifiers (`_id`, `_md5`, `_xxh`)."""
    return {**profile.fields, "_id": profile.profile_id, "_md5": profile.md5_id, "_xxh": profile.xxh_id}


def subscription_of(
    profile: ProfileState, resource_id: str, channel: Channel, chosen: Subscription | None = None
) -> dict[str, Any]:
    """The subscription a message goes to (`chosen`, or the first by priority) as `subscription.*`."""
    subscriptions = profile.subscriptions.of_resource(resource_id, str(channel))
    if not subscriptions:
        return {}
    chosen = chosen or subscriptions[0]
    contact = chosen.key.contact
    data: dict[str, Any] = {**chosen.fields, "status": str(chosen.status), "resource_id": resource_id}
    if channel is Channel.EMAIL:
        emails = [s.key.contact for s in subscriptions]
        data |= {
            "email": contact,
            "emails": emails,
            "email_domain": contact.rpartition("@")[2],
            "email_md5": _md5(contact),
        }
    elif channel is Channel.SMS:
        phones = [s.key.contact for s in subscriptions]
        data |= {"phone": contact, "phones": phones, "phone_md5": _md5(contact)}
    elif channel is Channel.TELEGRAM_BOT:
        data |= {"chat_id": contact}
    else:
        data |= {"token": contact, "provider": chosen.key.provider or ""}
    return data


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def fixed_promo_codes(codes: Mapping[str, str] | None) -> PromoCodes:
    """A queued message's codes, as it was queued with them."""
    given = dict(codes or {})

    def lookup(shortcodes: frozenset[str]) -> Mapping[str, str]:
        return {name: given.get(name, "") for name in shortcodes}

    return lookup
