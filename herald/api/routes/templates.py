"""Templates and fragments: create, list, read, change (a new version), versions, publish, validate.

Decisions where the guide is silent:
- `PATCH /templates/{id}` replaces what it is given: the card keys (name,
  description, tags) one by one, and `content` as a whole (a new version).
- `POST /templates/validate` checks content without saving it and answers
  200 with what it uses, or 422 listing every syntax error with its path,
  line and column (the same body a refused save answers with).
- A clone is a new template (named "<name> (copy)" unless a name is given)
  holding the source's current content as its version 1, as a draft when the
  source is one.
- A fragment is addressed by its short name (its identity, see
  `domain/fragments.py`); `PUT /fragments/{short_name}` replaces it whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.api.endpoints import Call, Endpoint
from herald.api.routes.catalog import VersionQuery, by_id, expected_version_field
from herald.domain import fragments as fr
from herald.domain import templates as tp
from herald.domain.errors import DomainError, NotFound
from herald.domain.templating.references import References
from herald.services.templates import PreviewSample

_Strict = ConfigDict(extra="forbid")
_BODY_KEYS = ("name", "description", "tags", "template_id")
R = TypeVar("R")


class TemplateBody(BaseModel):
    model_config = _Strict
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    draft: bool = Field(False, description="a draft cannot be sent until it is published")
    content: tp.TemplateContent


class TemplatePatch(BaseModel):
    model_config = _Strict
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    content: tp.TemplateContent | None = Field(None, description="the whole new content: a new version")
    expected_version: int | None = expected_version_field()


class CloneBody(BaseModel):
    model_config = _Strict
    name: str | None = Field(None, description='the clone\'s name; default "<name> (copy)"')


class ValidateBody(BaseModel):
    model_config = _Strict
    content: tp.TemplateContent


class PreviewBody(BaseModel):
    model_config = _Strict
    channel: tp.Channel
    content_version: int | None = Field(None, ge=1, description="default: the current version")
    profile_id: str | None = Field(None, description="render for this profile")
    resource_id: str | None = Field(
        None, description="and its subscription on this resource, whose email channel gives the From"
    )
    lead: dict[str, JsonValue] = Field(
        default_factory=dict, description="sample profile fields (win over the profile's)"
    )
    subscription: dict[str, JsonValue] = Field(default_factory=dict, description="sample subscription data")
    content: dict[str, JsonValue] | None = Field(None, description="JSON content as a trigger passes it")
    campaign_name: str = ""


class FragmentBody(BaseModel):
    model_config = _Strict
    short_name: str = Field(description="the name templates use: `{fragment.<short_name>}`")
    name: str
    type: Literal["html", "text"] = "html"
    content: str
    groups: tuple[str, ...] = ()


class FragmentPut(BaseModel):
    model_config = _Strict
    name: str
    type: Literal["html", "text"] = "html"
    content: str
    groups: tuple[str, ...] = ()
    expected_version: int | None = expected_version_field()


# --- templates ---------------------------------------------------------------------------------


def _version_number(call: Call) -> int:
    given = call.path_param("content_version")
    if not given.isdigit():
        raise NotFound(f"no version {given!r}: versions are numbers from 1", "content_version")
    return int(given)


def _references_json(used: References) -> dict[str, Any]:
    return {
        "fragments": sorted(used.fragments),
        "parts": sorted(used.parts),
        "system_tags": sorted(used.system_tags),
        "external_content": used.remote,
    }


def _template_json(state: tp.TemplateState) -> dict[str, Any]:
    assert state.card is not None and state.content is not None
    return {
        "template_id": state.template_id,
        **state.card.model_dump(mode="json"),
        "draft": state.draft,
        "content_version": state.version,
        "channels": [str(c) for c in state.content.channels],
        "uses": _references_json(tp.content_references(state.content)),
        "content": state.content.model_dump(mode="json"),
    }


def _summary_json(doc: dict[str, Any]) -> dict[str, Any]:
    content = tp.TemplateContent.model_validate(doc["content"])
    return {
        "template_id": doc["template_id"],
        **doc["card"],
        "draft": doc["draft"],
        "content_version": doc["version"],
        "channels": [str(c) for c in content.channels],
        "external_content": tp.content_references(content).remote,
    }


def _content_errors_placed(run: Callable[[], R]) -> R:
    """Run a command whose content errors name paths inside `content` (the body's key)."""
    try:
        return run()
    except DomainError as error:
        if error.path.split(".")[0] in _BODY_KEYS:
            raise
        raise error.at("content") from None


async def create_template(call: Call) -> dict[str, Any]:
    b: TemplateBody = call.body
    card = tp.TemplateCard(name=b.name, description=b.description, tags=b.tags)
    template_id, outcome = _content_errors_placed(
        lambda: call.herald.templates.create_template(card, b.content, b.draft, call.context)
    )
    return {"template_id": template_id, **outcome.to_json()}


async def list_templates(call: Call) -> dict[str, Any]:
    docs = by_id(call.herald.templates.listed(), "template_id")
    return {"templates": [_summary_json(doc) for doc in docs]}


async def get_template(call: Call) -> dict[str, Any]:
    loaded = call.herald.templates.template(call.path_param("template_id"))
    return {**_template_json(loaded.state), "version": loaded.version}


async def update_template(call: Call) -> dict[str, Any]:
    b: TemplatePatch = call.body
    template_id = call.path_param("template_id")
    state = call.herald.templates.template(template_id).state
    assert state.card is not None
    given = b.model_dump(exclude_unset=True, include={"name", "description", "tags"}, exclude_none=True)
    card = state.card.model_copy(update=given) if given else None
    command = tp.UpdateTemplate(template_id, card, b.content)
    return _content_errors_placed(
        lambda: call.herald.templates.change_template(command, call.context, b.expected_version)
    ).to_json()


async def list_versions(call: Call) -> dict[str, Any]:
    versions = call.herald.templates.versions(call.path_param("template_id"))
    return {"versions": [{"content_version": v.number, "made_at": v.made_at.isoformat()} for v in versions]}


async def get_version(call: Call) -> dict[str, Any]:
    number = _version_number(call)
    content = call.herald.templates.version(call.path_param("template_id"), number)
    return {"content_version": number, "content": content.model_dump(mode="json")}


async def publish_template(call: Call) -> dict[str, Any]:
    command = tp.PublishTemplate(call.path_param("template_id"))
    return call.herald.templates.change_template(command, call.context, call.query.expected_version).to_json()


async def mark_draft(call: Call) -> dict[str, Any]:
    command = tp.MarkTemplateDraft(call.path_param("template_id"))
    return call.herald.templates.change_template(command, call.context, call.query.expected_version).to_json()


async def clone_template(call: Call) -> dict[str, Any]:
    source = call.herald.templates.template(call.path_param("template_id")).state
    assert source.card is not None and source.content is not None
    name = call.body.name or f"{source.card.name} (copy)"
    card = source.card.model_copy(update={"name": name})
    template_id, outcome = call.herald.templates.create_template(
        card, source.content, source.draft, call.context
    )
    return {"template_id": template_id, **outcome.to_json()}


async def delete_template(call: Call) -> dict[str, Any]:
    command = tp.DeleteTemplate(call.path_param("template_id"))
    return call.herald.templates.change_template(command, call.context, call.query.expected_version).to_json()


async def validate_template(call: Call) -> dict[str, Any]:
    def check() -> tp.TemplateContent:
        content = tp.checked_content(call.body.content)
        call.herald.templates.ensure_references(content)
        return content

    content = _content_errors_placed(check)
    return {"valid": True, "uses": _references_json(tp.content_references(content))}


async def preview_template(call: Call) -> dict[str, Any]:
    b: PreviewBody = call.body
    sample = PreviewSample(
        profile_id=b.profile_id,
        resource_id=b.resource_id,
        lead=b.lead,
        subscription=b.subscription,
        content=b.content,
        content_version=b.content_version,
        campaign_name=b.campaign_name,
    )
    message = call.herald.templates.preview(call.path_param("template_id"), b.channel, sample)
    return {
        "template_id": message.template_id,
        "content_version": message.template_version,
        "channel": str(message.channel),
        str(message.channel): dataclasses.asdict(message.body),
        "links": [dataclasses.asdict(link) for link in message.links],
        "fragment_versions": dict(message.fragment_versions),
    }


# --- fragments ---------------------------------------------------------------------------------


def _fragment_content(body: FragmentBody | FragmentPut) -> fr.FragmentContent:
    return fr.FragmentContent(name=body.name, type=body.type, content=body.content, groups=body.groups)


def _fragment_json(state: fr.FragmentState) -> dict[str, Any]:
    assert state.fragment is not None
    return {
        "short_name": state.short_name,
        **state.fragment.model_dump(mode="json"),
        "content_version": state.version,
    }


async def create_fragment(call: Call) -> dict[str, Any]:
    b: FragmentBody = call.body
    command = fr.CreateFragment(b.short_name, _fragment_content(b))
    return {
        "short_name": b.short_name,
        **call.herald.templates.change_fragment(command, call.context, 0).to_json(),
    }


async def list_fragments(call: Call) -> dict[str, Any]:
    docs = sorted(call.herald.templates.listed_fragments(), key=lambda d: d["short_name"])
    return {
        "fragments": [
            {"short_name": d["short_name"], **d["fragment"], "content_version": d["version"]} for d in docs
        ]
    }


async def get_fragment(call: Call) -> dict[str, Any]:
    loaded = call.herald.templates.fragment(call.path_param("short_name"))
    return {**_fragment_json(loaded.state), "version": loaded.version}


async def put_fragment(call: Call) -> dict[str, Any]:
    b: FragmentPut = call.body
    command = fr.UpdateFragment(call.path_param("short_name"), _fragment_content(b))
    return call.herald.templates.change_fragment(command, call.context, b.expected_version).to_json()


async def list_fragment_versions(call: Call) -> dict[str, Any]:
    versions = call.herald.templates.fragment_versions(call.path_param("short_name"))
    return {"versions": [{"content_version": v.number, "made_at": v.made_at.isoformat()} for v in versions]}


async def get_fragment_version(call: Call) -> dict[str, Any]:
    number = _version_number(call)
    content = call.herald.templates.fragment_version(call.path_param("short_name"), number)
    return {"content_version": number, **content.model_dump(mode="json")}


async def delete_fragment(call: Call) -> dict[str, Any]:
    command = fr.DeleteFragment(call.path_param("short_name"))
    return call.herald.templates.change_fragment(command, call.context, call.query.expected_version).to_json()


TP = "/api/v1/templates/{template_id}"
F = "/api/v1/fragments/{short_name}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/templates",
        create_template,
        "Create a template",
        "templates",
        body=TemplateBody,
        status=201,
    ),
    Endpoint("GET", "/api/v1/templates", list_templates, "List templates", "templates", role="read"),
    Endpoint(
        "POST",
        "/api/v1/templates/validate",
        validate_template,
        "Check template content without saving it (syntax errors with line and column)",
        "templates",
        body=ValidateBody,
    ),
    Endpoint("GET", TP, get_template, "A template with its current content", "templates", role="read"),
    Endpoint(
        "PATCH",
        TP,
        update_template,
        "Change a template (new content is a new version)",
        "templates",
        body=TemplatePatch,
    ),
    Endpoint("DELETE", TP, delete_template, "Delete a template", "templates", query=VersionQuery),
    Endpoint(
        "GET", TP + "/versions", list_versions, "A template's content versions", "templates", role="read"
    ),
    Endpoint(
        "GET",
        TP + "/versions/{content_version}",
        get_version,
        "One content version of a template",
        "templates",
        role="read",
    ),
    Endpoint(
        "POST", TP + "/publish", publish_template, "Clear the draft flag", "templates", query=VersionQuery
    ),
    Endpoint(
        "POST",
        TP + "/preview",
        preview_template,
        "Render a template for a profile or sample data, with no side effects",
        "templates",
        body=PreviewBody,
        role="read",
    ),
    Endpoint("POST", TP + "/draft", mark_draft, "Mark the template a draft", "templates", query=VersionQuery),
    Endpoint(
        "POST",
        TP + "/clone",
        clone_template,
        "Copy a template's current content",
        "templates",
        body=CloneBody,
        status=201,
    ),
    Endpoint(
        "POST",
        "/api/v1/fragments",
        create_fragment,
        "Create a fragment",
        "fragments",
        body=FragmentBody,
        status=201,
    ),
    Endpoint("GET", "/api/v1/fragments", list_fragments, "List fragments", "fragments", role="read"),
    Endpoint("GET", F, get_fragment, "A fragment with its current content", "fragments", role="read"),
    Endpoint(
        "PUT", F, put_fragment, "Replace a fragment's content (a new version)", "fragments", body=FragmentPut
    ),
    Endpoint("DELETE", F, delete_fragment, "Delete a fragment", "fragments", query=VersionQuery),
    Endpoint(
        "GET",
        F + "/versions",
        list_fragment_versions,
        "A fragment's content versions",
        "fragments",
        role="read",
    ),
    Endpoint(
        "GET",
        F + "/versions/{content_version}",
        get_fragment_version,
        "One content version of a fragment",
        "fragments",
        role="read",
    ),
]
