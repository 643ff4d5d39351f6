"""What a template reads when it renders, gathered by the caller (the domain does no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herald.domain.templating.compiler import CompiledTemplate

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class RenderContext:
    """The data one message is rendered with.

    - `lead`: profile fields by name, standard ones with their underscore (`_fname`) and
      custom ones as named (`Sign`); Tags fields are lists of strings.
    - `subscription`: the subscription being sent to (`email`, `email_domain`, `emails`,
      `phone`, `phones`, `email_md5`, `phone_md5`, ...).
    - `relations`: `{relation: {"direct"|"reverse": {property: {"count", "total", "top"}}}}`;
      `top` is a list of `{"value": ..., "lead_fname": ..., "lead_<field>": ...}`.
    - `loyalty`: `{program: {"promocode": code}}`.
    - `json`: the JSON content (from the template's JSON URL or a trigger's API call).
    - `query`: `{short_name: [row, ...]}`, each row a mapping of columns.
    - `fragments` / `parts`: name → template text (or an already compiled template).
    - `system`: the system tags by name (see SYSTEM_TAGS): links, pixels, parameters.
    - `variables`: `$name` values that are not loop variables (`$batch` in segment sync).
    - `defaults`: the template's "values when empty", keyed by the variable as written
      (`lead._fname` or `{lead._fname}`); used where that value is missing or empty.
    - `random_seed`: seeds `randomfragment` (use the message id: one choice per message).
    - `fetch_remote`: called with each `{[url]}` URL, returns the body to insert; without
      it remote blocks render empty (preview without the network). Its errors propagate.
    """

    lead: Mapping[str, Any] = field(default_factory=_empty)
    subscription: Mapping[str, Any] = field(default_factory=_empty)
    relations: Mapping[str, Any] = field(default_factory=_empty)
    loyalty: Mapping[str, Any] = field(default_factory=_empty)
    json: Mapping[str, Any] = field(default_factory=_empty)
    query: Mapping[str, Any] = field(default_factory=_empty)
    fragments: Mapping[str, str | CompiledTemplate] = field(default_factory=_empty)
    parts: Mapping[str, str | CompiledTemplate] = field(default_factory=_empty)
    system: Mapping[str, Any] = field(default_factory=_empty)
    variables: Mapping[str, Any] = field(default_factory=_empty)
    defaults: Mapping[str, Any] = field(default_factory=_empty)
    random_seed: int | str = 0
    fetch_remote: Callable[[str], str] | None = None
