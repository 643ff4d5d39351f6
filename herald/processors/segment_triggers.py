"""Triggers fired by segment entries ("when a profile enters the segment, send").

A trigger campaign whose `TriggerOptions.segment_id` names a segment is fired
for each profile that enters that segment while the campaign is active, as
if the API had fired it with the profile's id. The request id is the entry
event's id, so an entry handled twice (a redelivered batch) sends once.

Decisions where the guide is silent:
- Entries made by saving a dynamic segment (cause `segment_saved`: everyone
  already matching "enters" a new or changed query) do not fire: they are not
  something the profile did. Entries by an event, a window timer, a static
  recalculation or a hand edit do.
- A profile that leaves and enters again is fired for again; sending policies
  are the limiter, as for API fires.
- Only triggers live (active, not paused) since the entry or earlier fire, so
  an entry handled again later (a redelivered batch) never fires a trigger
  activated after it.
- A refused fire (the profile was deleted since, the campaign paused meanwhile)
  is logged, never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from herald.domain.errors import DomainError
from herald.domain.events import registry
from herald.domain.memberships import ProfileEnteredSegment
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.processors.runtime import Reaction

log = logging.getLogger(__name__)
NAME = "segment-triggers"


class TriggerPorts(Protocol):
    def segment_triggers(self, segment_id: str, entered_at: datetime) -> list[str]:
        """The live trigger campaigns on `segment_id` that were live when the profile entered."""
        ...

    def fire_for_segment_entry(self, campaign_id: str, profile_id: str, entry_event_id: str) -> None:
        """Fire the trigger for the profile; the entry event's id makes a second call a no-op."""
        ...


class SegmentTriggers:
    name = NAME
    consumes = EventFilter(frozenset({"ProfileEnteredSegment"}))

    def __init__(self, ports: TriggerPorts) -> None:
        self.ports = ports

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type != "ProfileEnteredSegment":
            return []
        entered = registry.decode(event.type, event.schema_version, event.payload)
        assert isinstance(entered, ProfileEnteredSegment)
        if entered.cause.kind == "segment_saved":
            return []
        for campaign_id in self.ports.segment_triggers(entered.segment_id, entered.at):
            self._fire(campaign_id, entered, str(event.event_id))
        return []

    def _fire(self, campaign_id: str, entered: ProfileEnteredSegment, event_id: str) -> None:
        try:
            self.ports.fire_for_segment_entry(campaign_id, entered.profile_id, event_id)
        except DomainError as error:
            log.warning(
                "trigger %s not fired for %s entering segment %s: %s",
                campaign_id,
                entered.profile_id,
                entered.segment_id,
                error.reason,
            )
