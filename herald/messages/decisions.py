"""What becomes of one message: through the send gate, rendered, then queued, suppressed or failed.

`MessageDecisions.decide` turns a `MessageDraft` (whose, which run, which template, when) into the
message's decision event: suppressed with the gate's reason, failed with the render's (the
template broke for this profile), or queued with the template and fragment versions it rendered
from and the contact it goes to, so the sender renders the same message later. A run's chunk
shares one `Lookups` (templates, resources and database names read once).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from herald.domain import campaigns as cp
from herald.domain import messages as ms
from herald.domain import sending_policies as sp
from herald.domain.errors import DomainError
from herald.domain.profiles import ProfileState
from herald.domain.resources import ResourceState
from herald.domain.send_gate import Passed, SendGate
from herald.domain.templates import Channel, RenderFailed, TemplateState, template_decider, template_stream
from herald.infra.aggregates import Aggregates
from herald.infra.signing import TokenSigner
from herald.messages.gate import SendGates
from herald.messages.ports import Catalog
from herald.messages.rendering import MessageData, MessageRenderer, lead_of, subscription_of, tracking_urls


class GivenCodes(Protocol):
    """One message's promo codes (`PromoCodes`), and those it rendered so far."""

    used: dict[str, str]

    def __call__(self, shortcodes: frozenset[str]) -> Mapping[str, str]: ...


class ChunkPromoCodes(Protocol):
    def message(self, profile_id: str, message_id: str) -> GivenCodes: ...


class PromoPort(Protocol):
    """The loyalty service's side of rendering: how a message gets its promo codes."""

    def chunk(self, campaign_id: str, campaign_name: str, at: datetime) -> ChunkPromoCodes: ...

    def immediate(
        self, campaign_id: str, campaign_name: str, profile_id: str, message_id: str
    ) -> GivenCodes: ...

    def preview(self, profile_id: str | None) -> GivenCodes: ...


class Lookups:
    """Templates, resources, database names and sending policies read once for a batch of messages
    (a run's chunk, a scenario processor's batch), and, for a run's chunk, the promo codes it gives out
    (appended with the chunk's decisions); without `chunk` each message's codes are given at once."""

    def __init__(
        self, aggregates: Aggregates, catalog: Catalog, gates: SendGates, chunk: bool = False
    ) -> None:
        self.chunk = chunk
        self.promo: Any = None  # the chunk's promo codes (the loyalty service's), once one is given
        self._aggregates = aggregates
        self._catalog = catalog
        self._gates = gates
        self._templates: dict[str, TemplateState] = {}
        self._resources: dict[str, ResourceState] = {}
        self._databases: dict[str, str] = {}
        self._policies: dict[str, sp.SendingPolicy] = {}

    def policy(self, settings: cp.CampaignSettings) -> sp.SendingPolicy:
        """The sending policy a campaign's messages are checked against (account, resource, own)."""
        key = settings.model_dump_json(include={"resource_id", "sending_policy_id", "apply_resource_policy"})
        if key not in self._policies:
            self._policies[key] = self._gates.policy(settings)
        return self._policies[key]

    def template(self, template_id: str) -> TemplateState:
        if template_id not in self._templates:
            loaded = self._aggregates.load(template_decider, template_stream(template_id))
            self._templates[template_id] = loaded.state
        return self._templates[template_id]

    def resource(self, resource_id: str) -> ResourceState:
        if resource_id not in self._resources:
            self._resources[resource_id] = self._catalog.resource(resource_id)
        return self._resources[resource_id]

    def database_name(self, database_id: str) -> str:
        if database_id not in self._databases:
            self._databases[database_id] = self._catalog.database(database_id).name
        return self._databases[database_id]


class MessageDecisions:
    def __init__(
        self,
        aggregates: Aggregates,
        catalog: Catalog,
        renderer: MessageRenderer,
        signer: TokenSigner,
        gates: SendGates,
        promo: PromoPort | None = None,
    ) -> None:
        self.aggregates = aggregates
        self.catalog = catalog
        self.renderer = renderer
        self.signer = signer
        self.gates = gates
        self.promo = promo

    def lookups(self) -> Lookups:
        return Lookups(self.aggregates, self.catalog, self.gates)

    def decide(
        self,
        draft: ms.MessageDraft,
        gate: SendGate,
        profile: ProfileState,
        content: Mapping[str, Any] | None = None,
        lane: ms.Lane = ms.Lane.BULK,
        due_at: datetime | None = None,
    ) -> ms.MessageDecision:
        settings = draft.settings
        common: dict[str, Any] = {
            "message_id": draft.message_id,
            "campaign_id": draft.campaign_id,
            "run_id": draft.run_id,
            "profile_id": profile.profile_id,
            "resource_id": settings.resource_id,
            "channel": settings.channel,
            "is_test": gate.is_test,
            "scenario_id": draft.scenario_id,
            "at": draft.at,
        }
        verdict = gate.check(profile)
        if not isinstance(verdict, Passed):
            return ms.MessageSuppressed(
                **common, contact=verdict.contact, reason=verdict.reason, detail=verdict.detail
            )
        try:
            version, fragments, codes = self.render(
                settings,
                draft.template_id,
                profile,
                verdict,
                draft.message_id,
                content,
                draft.lookups,
                gate.is_test,
                draft.campaign_id,
                draft.at,
            )
        except RenderFailed as error:
            failed = {"template_id": draft.template_id, "template_version": 0, "reason": error.reason}
            return ms.MessageFailed(**common, contact=verdict.contact, **failed)
        return ms.MessageQueued(
            **common,
            database_id=profile.database_id,
            contact=verdict.contact,
            template_id=draft.template_id,
            template_version=version,
            fragment_versions=dict(fragments),
            lane=lane,
            due_at=due_at or draft.due_at or draft.at,
            local_day=self.gates.local_day(profile, draft.at),
            content=dict(content) if content is not None else None,
            promo_codes=codes or None,
        )

    def render(
        self,
        settings: cp.CampaignSettings,
        template_id: str,
        profile: ProfileState,
        passed: Passed,
        message_id: str,
        content: Mapping[str, Any] | None = None,
        lookups: object = None,
        is_test: bool = False,
        campaign_id: str = "",
        at: datetime | None = None,
    ) -> tuple[int, Mapping[str, int], dict[str, str]]:
        """(template version, fragment versions, promo codes given) of the message, rendered; raises
        RenderFailed."""
        found = lookups if isinstance(lookups, Lookups) else self.lookups()
        template = found.template(template_id)
        channel = Channel(settings.channel)
        try:
            body = template.ensure_sendable(channel)
        except DomainError as error:
            raise RenderFailed(error.reason, "template_id") from None
        resource = found.resource(settings.resource_id)
        codes = self._promo_codes(found, settings, campaign_id, profile.profile_id, message_id, is_test, at)
        data = MessageData(
            message_id=message_id,
            lead=lead_of(profile),
            subscription=subscription_of(profile, settings.resource_id, channel, passed.subscription),
            template_name=template.card.name if template.card else "",
            database_name=found.database_name(profile.database_id),
            resource_name=resource.settings.name if resource.settings else "",
            resource_token=resource.token,
            campaign_name=settings.name,
            content=content,
            promo_codes=codes,
        )
        urls = tracking_urls(self.signer, resource, message_id, channel)
        message = self.renderer.render(template_id, template.version, body, channel, data, urls)
        return template.version, message.fragment_versions, dict(codes.used) if codes is not None else {}

    def _promo_codes(
        self,
        found: Lookups,
        settings: cp.CampaignSettings,
        campaign_id: str,
        profile_id: str,
        message_id: str,
        is_test: bool,
        at: datetime | None,
    ) -> GivenCodes | None:
        """The message's promo-code port: a test's shows codes, a run's chunk gives them out with the
        chunk, any other send gives them out at once."""
        if self.promo is None:
            return None
        if is_test:
            return self.promo.preview(profile_id)
        if found.chunk:
            if found.promo is None:
                found.promo = self.promo.chunk(campaign_id, settings.name, at or self.aggregates.clock.now())
            message_codes: GivenCodes = found.promo.message(profile_id, message_id)
            return message_codes
        return self.promo.immediate(campaign_id, settings.name, profile_id, message_id)
