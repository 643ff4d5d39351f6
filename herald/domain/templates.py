"""The message template aggregate (stream `template-<id>`): content per channel, in versions.

One template holds email, SMS, push and Telegram bot content, the defaults for empty
fields and its local parts (guide "Шаблоны"). Every edit of the content makes
a new version; messages and the click map name the version they were made
from. A draft cannot be sent until it is published.

Decisions where the guide is silent:
- Versions count from 1; the first version is the created content. An update
  that changes nothing makes no event. Name, description and tags are the
  template's card, not its content: changing them makes no new version.
- Every personalisable text (subject, names, HTML, text, SMS body, push
  fields, attachment paths, parts, the JSON content URL) must compile; the
  save is refused with every syntax error found, each with its path, line and
  column. A part the content names (`{part.x}`) must be defined in the
  template; fragments are shared and checked by the caller, which sees them.
- Email needs a subject and an HTML or text body; SMS a body; push a title
  and a body; a Telegram bot message (`telegram_bot`, the resource channel's
  name) a text, in plain text, HTML or MarkdownV2 (Telegram's `parse_mode`),
  with up to `MAX_TELEGRAM_BUTTONS` URL buttons under it (one per row), each
  with a label and an absolute http(s) URL, both personalisable, the URL
  click-tracked. In MarkdownV2 a tracked link is `[text](url)` (a bare URL's
  redirect would need escaping). `no_css_inline` defaults to true, as in the guide.
- The draft flag is set at creation when asked; `PublishTemplate` clears it,
  `MarkTemplateDraft` sets it again. Deleting keeps the stream (messages still
  name its versions); a deleted template cannot be changed or sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.templating import CompiledTemplate, TemplateSyntaxError, compile_template
from herald.domain.templating.references import References, references

_URL = re.compile(r"https?://", re.IGNORECASE)
_PART_NAME = re.compile(r"^[^\W\d][\w-]{0,63}$")


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    TELEGRAM_BOT = "telegram_bot"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Attachment(_Value):
    """A file sent with the email: a server path (which may hold profile variables) or inline bytes."""

    name: str = Field(description="the file name the recipient sees (may hold variables)")
    path: str = Field("", description="a file on the server; may contain profile variables")
    content_base64: str = Field("", description="the file itself, base64-encoded, when no path is given")
    content_type: str = "application/octet-stream"


class EmailContent(_Value):
    subject: str
    html: str = ""
    text: str = Field("", description="the plain-text version; generated from the HTML when empty")
    from_name: str = Field("", description="overrides the resource's From name")
    from_email: str = Field("", description="overrides the resource's From email")
    reply_to_name: str = ""
    reply_to_email: str = ""
    attachments: tuple[Attachment, ...] = ()
    no_css_inline: bool = Field(True, description="keep styles in <style> (the guide's default)")


class SmsContent(_Value):
    body: str
    max_sms_parts: int = Field(0, ge=0, le=10, description="refuse a message longer than this; 0: no limit")
    add_http_to_links: bool = False


class PushContent(_Value):
    title: str
    body: str
    icon: str = ""
    click_url: str = ""
    ios_deep_link: str = ""
    android_deep_link: str = ""


MAX_TELEGRAM_BUTTONS = 8
TELEGRAM_MAX_TEXT = 4096  # the Bot API's limit on a message's text (after rendering)


class TelegramButton(_Value):
    """A URL button under a Telegram message (an inline keyboard's row)."""

    text: str = Field(description="the label (may hold variables)")
    url: str = Field(description="where it opens: an http(s) URL (may hold variables), click-tracked")


class TelegramContent(_Value):
    text: str
    parse_mode: Literal["", "HTML", "MarkdownV2"] = Field("", description="Telegram's markup; '': plain text")
    disable_link_preview: bool = False
    buttons: tuple[TelegramButton, ...] = ()


ChannelContent = EmailContent | SmsContent | PushContent | TelegramContent


class TemplatePart(_Value):
    """A piece of content local to the template, used as `{part.<name>}`."""

    name: str
    type: Literal["html", "text"] = "html"
    content: str


class TemplateContent(_Value):
    """Everything a message is made from; each change is a new version."""

    email: EmailContent | None = None
    sms: SmsContent | None = None
    push: PushContent | None = None
    telegram_bot: TelegramContent | None = None
    defaults: dict[str, str] = Field(
        default_factory=dict, description='values for empty fields, e.g. {"lead._fname": "dear customer"}'
    )
    parts: tuple[TemplatePart, ...] = ()
    json_content_url: str = Field("", description="JSON fetched per message as `json.*` (may hold variables)")
    track_links: bool = Field(True, description="wrap links in tracking redirects (per link: data-no-track)")
    add_utm: bool = Field(False, description="add UTM parameters to every link (the product's defaults)")
    utm: dict[str, str] = Field(
        default_factory=dict, description="UTM values replacing the defaults (utm_source, ...); '' drops one"
    )
    stop_list_id: str | None = None
    add_unsubscribed_to_stop_list: bool = False

    def channel(self, channel: Channel) -> ChannelContent | None:
        """The content for `channel`, or None when the template has none."""
        content: ChannelContent | None = getattr(self, channel.value)
        return content

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(c for c in Channel if self.channel(c) is not None)

    def part(self, name: str) -> TemplatePart | None:
        return next((p for p in self.parts if p.name == name), None)


class TemplateCard(_Value):
    """How the template is listed: not content, so changing it makes no version."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()


# --- events ------------------------------------------------------------------------------------


@registry.register("TemplateCreated")
class TemplateCreated(Event):
    template_id: str
    card: TemplateCard
    content: TemplateContent
    draft: bool


@registry.register("TemplateContentChanged")
class TemplateContentChanged(Event):
    template_id: str
    version: int
    content: TemplateContent


@registry.register("TemplateCardChanged")
class TemplateCardChanged(Event):
    template_id: str
    card: TemplateCard


@registry.register("TemplatePublished")
class TemplatePublished(Event):
    template_id: str


@registry.register("TemplateMarkedDraft")
class TemplateMarkedDraft(Event):
    template_id: str


@registry.register("TemplateDeleted")
class TemplateDeleted(Event):
    template_id: str


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateTemplate:
    template_id: str
    card: TemplateCard
    content: TemplateContent
    draft: bool = False


@dataclass(frozen=True, slots=True)
class UpdateTemplate:
    """Replace the card and/or the content; a changed content becomes the next version."""

    template_id: str
    card: TemplateCard | None = None
    content: TemplateContent | None = None


@dataclass(frozen=True, slots=True)
class PublishTemplate:
    template_id: str


@dataclass(frozen=True, slots=True)
class MarkTemplateDraft:
    template_id: str


@dataclass(frozen=True, slots=True)
class DeleteTemplate:
    template_id: str


TemplateCommand = CreateTemplate | UpdateTemplate | PublishTemplate | MarkTemplateDraft | DeleteTemplate


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateState:
    template_id: str = ""
    card: TemplateCard | None = None
    content: TemplateContent | None = None
    version: int = 0
    draft: bool = False
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.card is not None and not self.deleted

    def ensure_sendable(self, channel: Channel) -> TemplateContent:
        """The content to send over `channel`; refuses a draft, a deleted template or a missing channel."""
        if not self.exists or self.content is None:
            raise NotFound(f"no template {self.template_id!r}", "template_id")
        if self.draft:
            raise RuleViolated("the template is a draft: publish it before sending", "template_id")
        if self.content.channel(channel) is None:
            raise RuleViolated(f"the template has no {channel} content", "channel")
        return self.content


class RenderFailed(RuleViolated):
    """One message could not be made (a remote fetch failed, a limit was hit); the reason says why."""


# --- validation --------------------------------------------------------------------------------


class TemplateInvalid(ValidationFailed):
    """The content does not compile: every syntax error found, each with its path and position."""

    def __init__(self, errors: list[TemplateSyntaxError]) -> None:
        self.errors = errors
        super().__init__(errors[0].reason, errors[0].path)

    def at(self, prefix: str) -> TemplateInvalid:
        """The same errors with their paths nested under `prefix`."""
        return TemplateInvalid([error.at(prefix) for error in self.errors])


def personalised_texts(content: TemplateContent) -> Iterator[tuple[str, str]]:
    """(path, text) for every text of `content` that holds template language."""
    if content.email is not None:
        email = content.email
        for name in ("subject", "html", "text", "from_name", "reply_to_name", "reply_to_email"):
            yield f"email.{name}", getattr(email, name)
        for i, attachment in enumerate(email.attachments):
            yield f"email.attachments.{i}.name", attachment.name
            yield f"email.attachments.{i}.path", attachment.path
    if content.sms is not None:
        yield "sms.body", content.sms.body
    if content.push is not None:
        for name in ("title", "body", "click_url", "ios_deep_link", "android_deep_link"):
            yield f"push.{name}", getattr(content.push, name)
    if content.telegram_bot is not None:
        yield "telegram_bot.text", content.telegram_bot.text
        for i, button in enumerate(content.telegram_bot.buttons):
            yield f"telegram_bot.buttons.{i}.text", button.text
            yield f"telegram_bot.buttons.{i}.url", button.url
    for i, part in enumerate(content.parts):
        yield f"parts.{i}.content", part.content
    yield "json_content_url", content.json_content_url


def compiled_texts(content: TemplateContent) -> dict[str, CompiledTemplate]:
    """Every personalised text compiled, by path; raises TemplateInvalid with all errors."""
    compiled: dict[str, CompiledTemplate] = {}
    errors: list[TemplateSyntaxError] = []
    for path, text in personalised_texts(content):
        try:
            compiled[path] = compile_template(text)
        except TemplateSyntaxError as error:
            errors.append(error.at(path))
    if errors:
        raise TemplateInvalid(errors)
    return compiled


def content_references(content: TemplateContent) -> References:
    """What the whole content uses (parts, fragments, system tags, remote blocks); it must compile."""
    found = References()
    for compiled in compiled_texts(content).values():
        found |= references(compiled.tree)
    return found


def checked_content(content: TemplateContent) -> TemplateContent:
    """`content` when it can be saved; raises the first rule it breaks (all syntax errors at once)."""
    if not content.channels:
        raise ValidationFailed(
            "at least one channel (email, sms, push or telegram_bot) is needed to save", ""
        )
    _check_channels(content)
    _check_parts(content)
    used = content_references(content)
    missing = sorted(used.parts - {p.name for p in content.parts})
    if missing:
        raise ValidationFailed(
            f"the content uses part {missing[0]!r}, which the template does not define", "parts"
        )
    return content


def _check_channels(content: TemplateContent) -> None:
    email, sms, push = content.email, content.sms, content.push
    if email is not None:
        if not email.subject.strip():
            raise ValidationFailed("an email needs a subject", "email.subject")
        if not (email.html.strip() or email.text.strip()):
            raise ValidationFailed("an email needs an HTML or a text body", "email.html")
        for i, attachment in enumerate(email.attachments):
            if not attachment.name.strip():
                raise ValidationFailed("an attachment needs a file name", f"email.attachments.{i}.name")
            if bool(attachment.path.strip()) == bool(attachment.content_base64):
                raise ValidationFailed(
                    "an attachment is either a server path or uploaded content", f"email.attachments.{i}"
                )
    if sms is not None and not sms.body.strip():
        raise ValidationFailed("an SMS needs a body", "sms.body")
    if push is not None:
        if not push.title.strip():
            raise ValidationFailed("a push needs a title", "push.title")
        if not push.body.strip():
            raise ValidationFailed("a push needs a body", "push.body")
    if content.telegram_bot is not None:
        _check_telegram(content.telegram_bot, content.track_links)


def _check_telegram(telegram: TelegramContent, track_links: bool) -> None:
    if not telegram.text.strip():
        raise ValidationFailed("a Telegram message needs a text", "telegram_bot.text")
    if track_links and telegram.parse_mode == "MarkdownV2":
        for found in _URL.finditer(telegram.text):
            if not telegram.text[: found.start()].endswith("]("):
                raise ValidationFailed(
                    "in MarkdownV2 a tracked link is written [text](url): a bare URL's tracking "
                    "redirect would need MarkdownV2's escapes",
                    "telegram_bot.text",
                )
    if len(telegram.buttons) > MAX_TELEGRAM_BUTTONS:
        raise ValidationFailed(
            f"a Telegram message has at most {MAX_TELEGRAM_BUTTONS} buttons", "telegram_bot.buttons"
        )
    for i, button in enumerate(telegram.buttons):
        if not button.text.strip():
            raise ValidationFailed("a button needs a label", f"telegram_bot.buttons.{i}.text")
        url = button.url.strip()
        if not (url.startswith(("http://", "https://", "{")) and len(url) > len("http://")):
            raise ValidationFailed("a button opens an http(s) URL", f"telegram_bot.buttons.{i}.url")


def _check_parts(content: TemplateContent) -> None:
    seen: set[str] = set()
    for i, part in enumerate(content.parts):
        if not _PART_NAME.match(part.name):
            raise ValidationFailed(
                "a part's name is a letter then letters, digits, `_` or `-` (≤64)", f"parts.{i}.name"
            )
        if part.name in seen:
            raise ValidationFailed(f"part {part.name!r} is defined twice", f"parts.{i}.name")
        seen.add(part.name)


# --- decide and evolve -------------------------------------------------------------------------


def _checked_card(card: TemplateCard) -> TemplateCard:
    name = card.name.strip()
    if not name:
        raise ValidationFailed("a template needs a name", "name")
    return card.model_copy(update={"name": name, "tags": tuple(dict.fromkeys(t.strip() for t in card.tags))})


def decide(command: TemplateCommand, state: TemplateState) -> list[Event]:
    if isinstance(command, CreateTemplate):
        if state.card is not None:
            raise AlreadyExists(f"template {command.template_id!r} exists", "template_id")
        card = _checked_card(command.card)
        content = checked_content(command.content)
        return [
            TemplateCreated(template_id=command.template_id, card=card, content=content, draft=command.draft)
        ]
    if not state.exists:
        raise NotFound(f"no template {command.template_id!r}", "template_id")
    if isinstance(command, UpdateTemplate):
        return _update(command, state)
    if isinstance(command, PublishTemplate):
        return [TemplatePublished(template_id=state.template_id)] if state.draft else []
    if isinstance(command, MarkTemplateDraft):
        return [] if state.draft else [TemplateMarkedDraft(template_id=state.template_id)]
    return [TemplateDeleted(template_id=state.template_id)]


def _update(command: UpdateTemplate, state: TemplateState) -> list[Event]:
    events: list[Event] = []
    if command.card is not None:
        card = _checked_card(command.card)
        if card != state.card:
            events.append(TemplateCardChanged(template_id=state.template_id, card=card))
    if command.content is not None:
        content = checked_content(command.content)
        if content != state.content:
            events.append(
                TemplateContentChanged(
                    template_id=state.template_id, version=state.version + 1, content=content
                )
            )
    return events


def evolve(state: TemplateState, event: Event) -> TemplateState:
    if isinstance(event, TemplateCreated):
        return TemplateState(event.template_id, event.card, event.content, 1, event.draft)
    if isinstance(event, TemplateContentChanged):
        return replace(state, content=event.content, version=event.version)
    if isinstance(event, TemplateCardChanged):
        return replace(state, card=event.card)
    if isinstance(event, TemplatePublished):
        return replace(state, draft=False)
    if isinstance(event, TemplateMarkedDraft):
        return replace(state, draft=True)
    if isinstance(event, TemplateDeleted):
        return replace(state, deleted=True)
    return state


template_decider: Decider[TemplateCommand, TemplateState] = Decider(TemplateState(), decide, evolve)


def template_stream(template_id: str) -> str:
    return f"template-{template_id}"


def version_content(event: Event) -> tuple[int, TemplateContent] | None:
    """(version, content) when `event` made a version of a template's content."""
    if isinstance(event, TemplateCreated):
        return 1, event.content
    if isinstance(event, TemplateContentChanged):
        return event.version, event.content
    return None
