"""The fragment aggregate (stream `fragment-<short_name>`): content shared by templates.

A fragment (guide "Фрагменты") is a named piece of HTML or text that any
template includes as `{fragment.<short_name>}`; it may hold variables and
logic and is rendered with the message's data. Every content edit is a new
version; a message renders the version current when it is made.

Decisions where the guide is silent:
- The short name is the fragment's identity: templates refer to it by that
  name, so renaming would silently empty every template that uses it. It is
  unique by construction (one stream per name); to rename, clone.
- A short name is a letter then letters, digits, `_` or `-` (≤64), the
  characters the template language reads after `fragment.`.
- A text fragment fits every channel; an HTML fragment is meant for email
  (the guide's advice, not enforced: a template may hold HTML in SMS too).
- A deleted fragment renders empty in templates that still name it; its
  short name stays taken, since old messages name its versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.templates import TemplateInvalid
from herald.domain.templating import TemplateSyntaxError, compile_template

_SHORT_NAME = re.compile(r"^[^\W\d][\w-]{0,63}$")


class FragmentContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: Literal["html", "text"] = "html"
    content: str
    groups: tuple[str, ...] = ()


@registry.register("FragmentCreated")
class FragmentCreated(Event):
    short_name: str
    fragment: FragmentContent


@registry.register("FragmentChanged")
class FragmentChanged(Event):
    short_name: str
    version: int
    fragment: FragmentContent


@registry.register("FragmentDeleted")
class FragmentDeleted(Event):
    short_name: str


@dataclass(frozen=True, slots=True)
class CreateFragment:
    short_name: str
    fragment: FragmentContent


@dataclass(frozen=True, slots=True)
class UpdateFragment:
    short_name: str
    fragment: FragmentContent


@dataclass(frozen=True, slots=True)
class DeleteFragment:
    short_name: str


FragmentCommand = CreateFragment | UpdateFragment | DeleteFragment


@dataclass(frozen=True, slots=True)
class FragmentState:
    short_name: str = ""
    fragment: FragmentContent | None = None
    version: int = 0
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.fragment is not None and not self.deleted


def _checked(fragment: FragmentContent) -> FragmentContent:
    name = fragment.name.strip()
    if not name:
        raise ValidationFailed("a fragment needs a name", "name")
    try:
        compile_template(fragment.content)
    except TemplateSyntaxError as error:
        raise TemplateInvalid([error.at("content")]) from None
    return fragment.model_copy(update={"name": name})


def decide(command: FragmentCommand, state: FragmentState) -> list[Event]:
    if isinstance(command, CreateFragment):
        if not _SHORT_NAME.match(command.short_name):
            raise ValidationFailed(
                "a short name is a letter then letters, digits, `_` or `-` (≤64)", "short_name"
            )
        if state.fragment is not None:
            raise AlreadyExists(f"the short name {command.short_name!r} is taken", "short_name")
        return [FragmentCreated(short_name=command.short_name, fragment=_checked(command.fragment))]
    if not state.exists:
        raise NotFound(f"no fragment {command.short_name!r}", "short_name")
    if isinstance(command, UpdateFragment):
        fragment = _checked(command.fragment)
        if fragment == state.fragment:
            return []
        return [FragmentChanged(short_name=state.short_name, version=state.version + 1, fragment=fragment)]
    return [FragmentDeleted(short_name=state.short_name)]


def evolve(state: FragmentState, event: Event) -> FragmentState:
    if isinstance(event, FragmentCreated):
        return FragmentState(event.short_name, event.fragment, 1)
    if isinstance(event, FragmentChanged):
        return replace(state, fragment=event.fragment, version=event.version)
    if isinstance(event, FragmentDeleted):
        return replace(state, deleted=True)
    return state


fragment_decider: Decider[FragmentCommand, FragmentState] = Decider(FragmentState(), decide, evolve)


def fragment_stream(short_name: str) -> str:
    return f"fragment-{short_name}"


def version_content(event: Event) -> tuple[int, FragmentContent] | None:
    """(version, content) when `event` made a version of a fragment."""
    if isinstance(event, FragmentCreated):
        return 1, event.fragment
    if isinstance(event, FragmentChanged):
        return event.version, event.fragment
    return None
