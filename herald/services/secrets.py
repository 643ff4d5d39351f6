"""Sealing every secret in the log again: after a key rotation, and for logs from before sealing.

`reseal_log` finds every stream whose events carry secrets and has its service
seal them again under the current key: secrets an old event held in clear
(withheld on read) from those events' stored bytes, secrets sealed under an
older key by opening them first. Each stream gets at most one event, with an id
derived from its version, so running it twice, or in two processes, appends
nothing more. `cleartext_rewrites` lists the stored events whose bytes still
hold clear text, as their upcast form, for `infra/log_scrub.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from herald.domain import senders as sd
from herald.domain.events import EventRegistry
from herald.infra.event_store import EventStore
from herald.infra.log_scrub import Rewrite
from herald.services.catalog import CatalogService
from herald.services.channel_secrets import CHANNEL_EVENTS, reseal_resource
from herald.services.senders import RESEAL, SenderService

SENDER_EVENTS = frozenset({"SenderCreated", "SenderChanged"})
# The event types that carry secrets; their schema version 1 held them in clear (their upcasters
# withhold them).
SECRET_EVENTS = SENDER_EVENTS | CHANNEL_EVENTS


@dataclass(frozen=True, slots=True)
class Resealed:
    streams: int  # streams holding secrets
    resealed: int  # of which had a secret sealed again


def reseal_log(store: EventStore, senders: SenderService, catalog: CatalogService) -> Resealed:
    """Seal every secret in the log under the current key (see the module docstring)."""
    resealers: dict[str, Callable[[str], bool]] = {
        "sender-": lambda stream: _reseal_sender(senders, stream),
        "resource-": lambda stream: reseal_resource(
            catalog, senders.box, stream.removeprefix("resource-"), RESEAL
        ),
    }
    streams = sorted({e.stream for e in store.read_all() if e.type in SECRET_EVENTS})
    resealed = 0
    for stream in streams:
        reseal = next(fn for prefix, fn in resealers.items() if stream.startswith(prefix))
        resealed += reseal(stream)
    return Resealed(len(streams), resealed)


def _reseal_sender(senders: SenderService, stream: str) -> bool:
    loaded = senders.aggregates.load(sd.sender_decider, stream)
    return senders.reseal(loaded).version != loaded.version


def cleartext_rewrites(store: EventStore, registry: EventRegistry) -> Iterator[Rewrite]:
    """Every stored event whose bytes hold secrets in clear, as (position, version, upcast data)."""
    for event in store.read_all():
        if event.type in SECRET_EVENTS and event.schema_version == 1:
            current = registry.event_class(event.type).schema_version
            yield event.position, current, registry.upcast(event.type, event.schema_version, event.data)
