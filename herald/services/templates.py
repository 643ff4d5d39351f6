"""Templates and fragments: their commands, their versions, and the fragments a message renders with.

Decisions where the guide is silent:
- Template ids are short sequential numbers, like databases' and resources'.
- The fragments a template names must exist when it is saved (a typo would
  otherwise render empty in every message); one deleted later renders empty.
- Old versions are read from the template's stream, where each version's
  content was recorded whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from herald.domain import fragments, templates
from herald.domain.errors import NotFound, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.resources import EmailSettings
from herald.messages.rendering import (
    MessageData,
    MessageRenderer,
    PreviewUrls,
    PromoCodes,
    RenderedEmail,
    RenderedMessage,
    as_sent,
    current_fragments,
    lead_of,
    subscription_of,
)
from herald.projections.catalog import FRAGMENT, TEMPLATE
from herald.services.aggregates import CommandContext, Loaded, Outcome
from herald.services.catalog import CatalogService
from herald.services.profiles import ProfileService


class TemplateService:
    def __init__(
        self,
        catalog: CatalogService,
        profiles: ProfileService,
        renderer: MessageRenderer,
        preview_codes: Callable[[str | None], PromoCodes] | None = None,
    ) -> None:
        self.catalog = catalog
        self.aggregates = catalog.aggregates
        self.profiles = profiles
        self.renderer = renderer
        self.preview_codes = preview_codes  # a preview's promo codes: the profile's own, else samples

    # --- preview -------------------------------------------------------------------------------

    def preview(self, template_id: str, channel: templates.Channel, sample: PreviewSample) -> RenderedMessage:
        """The message as it would be sent, with no side effects: untracked links, no pixel."""
        state = self.template(template_id).state
        assert state.card is not None and state.content is not None
        version = sample.content_version or state.version
        content = state.content if version == state.version else self.version(template_id, version)
        if content.channel(channel) is None:
            raise ValidationFailed(f"the template has no {channel} content", "channel")
        data = self._sample_data(sample, channel, state.card.name)
        message = self.renderer.render(template_id, version, content, channel, data, PreviewUrls())
        if isinstance(message.body, RenderedEmail) and sample.resource_id is not None:
            email = self.catalog.resource(sample.resource_id).channels.get("email")
            if isinstance(email, EmailSettings):  # From and Reply-To as the resource would send it
                message = replace(message, body=as_sent(message.body, email))
        return message

    def _sample_data(
        self, sample: PreviewSample, channel: templates.Channel, template_name: str
    ) -> MessageData:
        lead: dict[str, Any] = {}
        subscription: dict[str, Any] = {}
        database_name = resource_name = resource_token = ""
        if sample.profile_id is not None:
            profile = self.profiles.state(sample.profile_id)
            lead = lead_of(profile)
            database_name = self.catalog.database(profile.database_id).name
            if sample.resource_id is not None:
                subscription = subscription_of(profile, sample.resource_id, channel)
        if sample.resource_id is not None:
            resource = self.catalog.resource(sample.resource_id)
            resource_name, resource_token = (
                resource.settings.name if resource.settings else "",
                resource.token,
            )
        return MessageData(
            message_id="preview",
            lead={**lead, **sample.lead},
            subscription={**subscription, **sample.subscription},
            template_name=template_name,
            database_name=database_name,
            resource_name=resource_name,
            resource_token=resource_token,
            campaign_name=sample.campaign_name,
            content=sample.content,
            promo_codes=self.preview_codes(sample.profile_id) if self.preview_codes else None,
        )

    # --- templates -----------------------------------------------------------------------------

    def template(self, template_id: str, path: str = "template_id") -> Loaded[templates.TemplateState]:
        """The template as its stream holds it now; NotFound if it does not exist."""
        loaded = self.aggregates.load(templates.template_decider, templates.template_stream(template_id))
        if not loaded.state.exists:
            raise NotFound(f"no template {template_id!r}", path)
        return loaded

    def create_template(
        self,
        card: templates.TemplateCard,
        content: templates.TemplateContent,
        draft: bool,
        context: CommandContext,
    ) -> tuple[str, Outcome]:
        """Create a template under the next free id."""
        self.ensure_references(content)
        seen = len(self.catalog.projection.objects(TEMPLATE, include_deleted=True))
        return self.catalog.create_numbered(
            templates.template_decider,
            templates.template_stream,
            seen,
            lambda i: templates.CreateTemplate(i, card, content, draft),
            context,
        )

    def change_template(
        self, command: templates.TemplateCommand, context: CommandContext, expected_version: int | None = None
    ) -> Outcome:
        if isinstance(command, templates.UpdateTemplate) and command.content is not None:
            self.ensure_references(command.content)
        stream = templates.template_stream(command.template_id)
        return self.aggregates.execute(templates.template_decider, stream, command, context, expected_version)

    def versions(self, template_id: str) -> list[Version]:
        """Every version of the template's content, oldest first."""
        self.template(template_id)
        return self._versions(templates.template_stream(template_id), templates.version_content)

    def version(self, template_id: str, version: int) -> templates.TemplateContent:
        """The content of one version; NotFound if the template never had it."""
        content: templates.TemplateContent = _pick(
            self.versions(template_id), version, f"template {template_id!r}"
        )
        return content

    def _versions(self, stream: str, made: Callable[[Event], tuple[int, Any] | None]) -> list[Version]:
        found = []
        for recorded in self.aggregates.store.read_stream(stream):
            version = made(registry.decode(recorded.type, recorded.schema_version, recorded.payload))
            if version is not None:
                found.append(Version(version[0], version[1], recorded.occurred_at))
        return found

    def listed(self) -> list[dict[str, Any]]:
        """Every template as the catalog lists it (eventually consistent)."""
        return self.catalog.projection.objects(TEMPLATE)

    # --- fragments -----------------------------------------------------------------------------

    def fragment(self, short_name: str, path: str = "short_name") -> Loaded[fragments.FragmentState]:
        loaded = self.aggregates.load(fragments.fragment_decider, fragments.fragment_stream(short_name))
        if not loaded.state.exists:
            raise NotFound(f"no fragment {short_name!r}", path)
        return loaded

    def change_fragment(
        self, command: fragments.FragmentCommand, context: CommandContext, expected_version: int | None = None
    ) -> Outcome:
        stream = fragments.fragment_stream(command.short_name)
        return self.aggregates.execute(fragments.fragment_decider, stream, command, context, expected_version)

    def fragment_versions(self, short_name: str) -> list[Version]:
        """Every version of the fragment, oldest first."""
        self.fragment(short_name)
        return self._versions(fragments.fragment_stream(short_name), fragments.version_content)

    def fragment_version(self, short_name: str, version: int) -> fragments.FragmentContent:
        content: fragments.FragmentContent = _pick(
            self.fragment_versions(short_name), version, f"fragment {short_name!r}"
        )
        return content

    def listed_fragments(self) -> list[dict[str, Any]]:
        return self.catalog.projection.objects(FRAGMENT)

    def ensure_references(self, content: templates.TemplateContent) -> None:
        """Refuse content that names a fragment or a stop list that does not exist."""
        if content.stop_list_id is not None:
            self.catalog.ensure_attachable(content.stop_list_id, "stop_list_id")
        used = templates.content_references(content).fragments
        missing = sorted(used - set(current_fragments(self.aggregates)(used)))
        if missing:
            raise ValidationFailed(f"the content uses fragment {missing[0]!r}, which does not exist", "")


@dataclass(frozen=True, slots=True)
class PreviewSample:
    """Whom a preview renders for: a real profile (and its subscription on a resource) and/or sample data."""

    profile_id: str | None = None
    resource_id: str | None = None
    lead: Mapping[str, Any] = field(default_factory=dict)
    subscription: Mapping[str, Any] = field(default_factory=dict)
    content: Mapping[str, Any] | None = None
    content_version: int | None = None
    campaign_name: str = ""


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a template's or fragment's content and when it was made."""

    number: int
    content: Any
    made_at: datetime


def _pick(versions: list[Version], number: int, what: str) -> Any:
    for version in versions:
        if version.number == number:
            return version.content
    raise NotFound(f"{what} has no version {number}", "version")
