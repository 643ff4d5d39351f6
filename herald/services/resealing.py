"""Sealing, in place, the personal values of events written before sealing existed (`herald reseal`).

Crypto-shredding covers only what is sealed: an event appended by a Herald older than the sealed
store holds its profile's values in clear, and destroying the key would not reach them. The only
way to cover them is to rewrite their stored bytes, so this is the log's second sanctioned
rewrite (the first is `herald secrets reseal --scrub`, `infra/log_scrub.py`): each such event's
data is replaced by what the sealed store writes today, under its profile's key (made now when it
has none), or by its erased values when the profile was erased already. Positions, ids, stream
versions, types, schema versions, times and metadata stay; the opened data equals the old data,
so a replay gives the same read models (checksums identical) — only the bytes on disk change.
The rows are rewritten with `secure_delete` in one transaction, then the WAL is truncated and the
file vacuumed. Copies made before (a Kafka topic, a backup) keep the clear text until they expire.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from herald.infra.log_scrub import Rewrite
from herald.infra.sealed_store import SealedEventStore

_CHUNK = 1000  # events whose owners' keys are made in one transaction


def plaintext_rewrites(store: SealedEventStore) -> Iterator[Rewrite]:
    """Every stored event holding a profile's values in clear, as (position, version, sealed data)."""
    events = store.inner.read_all()
    sealer = store.sealer
    while chunk := list(islice(events, _CHUNK)):
        owners = {owner for e in chunk for owner in sealer.owners(e.stream, e.data)}
        sealer.keys.ensure(owners)
        for event in chunk:
            data = sealer.resealed(event.stream, event.data)
            if data is not None:
                yield event.position, event.schema_version, data
