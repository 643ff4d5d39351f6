"""A queued message rendered: to be sent now (with what it was rendered from), or as it was sent.

The template version and the data the message was queued with, so the text, links and tracking
tokens are the same every time; with the inputs an attempt kept (`RenderInputs`: the profile's
version, the fragments' versions, the remote content fetched) the message comes out as it was
sent, whatever changed since: its web version.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Protocol, TypeVar

from herald.domain import campaigns as cp
from herald.domain.deliveries import RenderInputs
from herald.domain.errors import NotFound
from herald.domain.messages import MessageQueued
from herald.domain.profiles import profile_decider, profile_stream
from herald.domain.resources import ChannelSettings, ResourceState
from herald.domain.templates import (
    Channel,
    TemplateContent,
    template_decider,
    template_stream,
    version_content,
)
from herald.infra.aggregates import Aggregates
from herald.infra.signing import TokenSigner
from herald.messages.ports import Catalog
from herald.messages.rendering import (
    KeptFetches,
    MessageData,
    MessageRenderer,
    RenderedMessage,
    ShortLinkUrls,
    fixed_promo_codes,
    fragments_at,
    lead_of,
    subscription_of,
    tracking_urls,
)

T = TypeVar("T")


class Remembers(Protocol):
    """What a sender's pass reads once for all its messages (`worker.Lookups`)."""

    def remember(self, key: Hashable, read: Callable[[], T]) -> T: ...


class _ReadEachTime:
    def remember(self, key: Hashable, read: Callable[[], T]) -> T:
        return read()


class QueuedMessages:
    def __init__(
        self, aggregates: Aggregates, catalog: Catalog, renderer: MessageRenderer, signer: TokenSigner
    ) -> None:
        self.aggregates = aggregates
        self.catalog = catalog
        self.renderer = renderer
        self.signer = signer

    def render_queued(self, queued: MessageQueued, sent: RenderInputs | None = None) -> RenderedMessage:
        """The message rendered again; with `sent` (what an attempt was rendered from), as it was sent."""
        return self._render(queued, sent)[0]

    def render_to_send(
        self, queued: MessageQueued, found: Remembers | None = None
    ) -> tuple[RenderedMessage, RenderInputs]:
        """The message rendered to be sent now, and what it was rendered from (kept with the attempt,
        so `render_queued` can show it as sent); `found` keeps the template, campaign, resource and
        database a pass's messages share, read once."""
        return self._render(queued, None, found)

    def _render(
        self, queued: MessageQueued, sent: RenderInputs | None, found: Remembers | None = None
    ) -> tuple[RenderedMessage, RenderInputs]:
        found = found or _ReadEachTime()
        stream = profile_stream(queued.profile_id)
        if sent is None:
            loaded = self.aggregates.load(profile_decider, stream)
            remote = self.renderer.remote
            kept = KeptFetches(remote.for_message() if remote is not None else None)
            fragments = None  # the current versions
        else:
            loaded = self.aggregates.load_at(profile_decider, stream, sent.profile_version)
            kept = KeptFetches(None, sent.remote_html, sent.remote_json)
            fragments = fragments_at(self.aggregates, sent.fragment_versions)
        profile = loaded.state
        channel = Channel(queued.channel)
        chosen = next(
            (
                s
                for s in profile.subscriptions.of_resource(queued.resource_id, queued.channel)
                if s.key.contact == queued.contact
            ),
            None,
        )
        template_id, version = queued.template_id, queued.template_version
        template = found.remember(
            ("template", template_id),
            lambda: self.aggregates.load(template_decider, template_stream(template_id)).state,
        )
        content = template.content
        if content is None or template.version != version:
            content = found.remember(
                ("template version", template_id, version),
                lambda: self.template_version(template_id, version),
            )
        resource = found.remember(
            ("resource", queued.resource_id), lambda: self.catalog.resource(queued.resource_id)
        )
        campaign = found.remember(
            ("campaign", queued.campaign_id),
            lambda: self.aggregates.load(cp.campaign_decider, cp.campaign_stream(queued.campaign_id)).state,
        )
        database = found.remember(
            ("database", queued.database_id), lambda: self.catalog.database(queued.database_id)
        )
        data = MessageData(
            message_id=queued.message_id,
            lead=lead_of(profile),
            subscription=subscription_of(profile, queued.resource_id, channel, chosen),
            template_name=template.card.name if template.card else "",
            database_name=database.name,
            resource_name=resource.settings.name if resource.settings else "",
            resource_token=resource.token,
            campaign_name=campaign.settings.name if campaign.settings else "",
            content=queued.content,
            promo_codes=fixed_promo_codes(queued.promo_codes),
        )
        urls = tracking_urls(self.signer, resource, queued.message_id, channel)
        message = self.renderer.render(
            queued.template_id, queued.template_version, content, channel, data, urls, kept, fragments
        )
        if isinstance(urls, ShortLinkUrls):
            message = replace(message, short_links=dict(urls.shortened))
        inputs = RenderInputs(
            profile_version=loaded.version,
            fragment_versions=dict(message.fragment_versions),
            remote_html=kept.html,
            remote_json=kept.json_answers,
        )
        return message, inputs

    def channel_of(
        self, queued: MessageQueued, found: Remembers | None = None
    ) -> tuple[ResourceState, ChannelSettings]:
        """The message's resource and its settings for the message's channel (NotFound without one)."""
        resource = (found or _ReadEachTime()).remember(
            ("resource", queued.resource_id), lambda: self.catalog.resource(queued.resource_id)
        )
        settings = resource.channels.get(queued.channel)
        if settings is None or resource.settings is None:
            raise NotFound(f"resource {queued.resource_id} has no {queued.channel} channel", "resource_id")
        return resource, settings

    def template_version(self, template_id: str, version: int) -> TemplateContent:
        """One version's content, read from the template's stream."""
        for event in self.aggregates.store.read_stream(template_stream(template_id)):
            made = version_content(self.aggregates.decode(event))
            if made is not None and made[0] == version:
                return made[1]
        raise NotFound(f"template {template_id!r} has no version {version}", "template_version")
