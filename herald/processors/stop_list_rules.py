"""Stop-list rules that follow from what happens to subscriptions.

A hard bounce (a subscription set to hard bounced because its address does
not exist) puts the address on the platform invalid list, so subscriptions
with the same address in every database and resource stop receiving until an
operator removes it (guide, "Стоп-списки"). Complaints add no entry: the
subscription's complainer status already stops sends (see `domain/stop_lists.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herald.domain.decider import Decider
from herald.domain.stop_lists import PLATFORM_INVALID_LIST_ID, hard_bounce_entry, stop_list_stream
from herald.domain.subscriptions import Cause
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.processors.runtime import Dispatch, Reaction


class HardBounceRule:
    name = "hard-bounce-to-stop-list"
    consumes = EventFilter(frozenset({"SubscriptionStatusChanged"}))

    def __init__(self, stop_lists: Decider[Any, Any]) -> None:
        self.stop_lists = stop_lists  # the application's (`CatalogService.stop_lists`): it names entries

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        data = event.data
        if (
            event.type != "SubscriptionStatusChanged"
            or data.get("cause") != Cause.HARD_BOUNCE
            or data.get("channel") != "email"
        ):
            return []
        command = hard_bounce_entry(data["contact"], event.occurred_at)
        return [Dispatch(self.stop_lists, stop_list_stream(PLATFORM_INVALID_LIST_ID), command)]
