"""Broadcasts that start when another completes ("Активировать эту кампанию после завершения другой").

When a broadcast completes, every inactive broadcast that names it as its
predecessor is activated, with the same checks a user's activation runs; a
follower that fails them stays inactive and the refusal is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from herald.domain import campaigns as cp
from herald.domain.errors import DomainError
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.processors.runtime import Dispatch, Reaction

log = logging.getLogger(__name__)


class ChainPorts(Protocol):
    account_timezone: str

    def campaign(self, campaign_id: str) -> cp.CampaignState: ...
    def followers(self, campaign_id: str) -> list[str]: ...
    def activation(self, campaign_id: str, at: datetime) -> cp.ActivateCampaign: ...


class CampaignChain:
    name = "campaign-chain"
    consumes = EventFilter(frozenset({"CampaignCompleted"}))

    def __init__(self, ports: ChainPorts) -> None:
        self.ports = ports

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type not in self.consumes.types:
            return []
        reactions: list[Reaction] = []
        for follower in self.ports.followers(event.data["campaign_id"]):
            command = self.ports.activation(follower, event.occurred_at)
            try:
                cp.decide(command, self.ports.campaign(follower))
            except DomainError as refused:
                log.warning(
                    "campaign %s did not start after %s: %s", follower, event.data["campaign_id"], refused
                )
                continue
            reactions.append(Dispatch(cp.campaign_decider, cp.campaign_stream(follower), command))
        return reactions
