"""The event topic's contract: which events are key-local and to which key, and the message format.

A *key-local* event belongs to one profile (its journeys through scenarios too; or to a key no other profile's
processing reads: an anonymous visitor, a uniqueness claim, an inbound mail)
and goes to that key's partition. Every other event is *global*: the state it
changes (a database's fields, a template, a campaign, a segment's query, a
stop list) is read while processing any profile, so it goes to every
partition. A stream kind this module does not name is global: correct for any
consumer, at the cost of one copy per partition.

The partition is `crc32(key) mod partitions`, chosen by the relay: Kafka's
default murmur2 is pure Python in both clients and cost 6 µs an event, a
third of the relay's budget at 50k events/s; crc32 is 0.1 µs.

A message's value is one line of JSON, the envelope (`event_id` as 32 hex digits, `stream`,
`version`, `position`, `type`, `schema_version`, `occurred_at` and
`recorded_at` in microseconds since the epoch, `data_bytes`), a newline, then
the event's data JSON (`data_bytes` long) and its metadata JSON, as the store
holds them: the relay copies the stored bytes, a partition builds only the
events some consumer of it folds (`decode_wanted` reads the envelope alone of
the others), and a consumer decodes the payload only of the events it folds.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import orjson

from herald.domain.scenario_instances import JOURNEY_PREFIX, journey_key
from herald.infra.event_store import EventFilter, RecordedEvent

_PROFILE_STREAMS = ("profile-", "activity-")  # the profile id follows the prefix
_PROFILE_IN_DATA = ("message-", "segmentmembers-")  # the profile id is in the event's data
_OWN_KEY = ("anonymous-", "unique-", "inbound-")  # read by no one for other keys: their stream is the key
_BOOKMARK = "SegmentPopulationContinued"  # one partition's population step: it names that partition's profile


def partition_key(event: RecordedEvent) -> str | None:
    """The key of a key-local event (the profile id, mostly); None for a global event."""
    stream = event.stream
    if stream.startswith(_PROFILE_STREAMS):
        return stream.partition("-")[2]
    if stream.startswith(_PROFILE_IN_DATA):
        data = event.data
        found = data.get("after_profile_id" if event.type == _BOOKMARK else "profile_id")
        return found if isinstance(found, str) and found else stream
    if stream.startswith(JOURNEY_PREFIX):  # a profile's run through a scenario stays with the profile
        return journey_key(stream)[1]
    if stream.startswith(_OWN_KEY):
        return stream
    return None


def partition_of(key: str | bytes, partitions: int) -> int:
    """The partition a key's events go to."""
    return zlib.crc32(key.encode() if isinstance(key, str) else key) % partitions


def encode(event: RecordedEvent) -> bytes:
    """The message value: the envelope line, then the stored data and metadata JSON."""
    data = event.stored_data or orjson.dumps(event.data)
    metadata = event.stored_metadata or orjson.dumps(event.metadata)
    envelope = orjson.dumps(
        {
            "event_id": event.id_bytes.hex(),
            "stream": event.stream,
            "version": event.version,
            "position": event.position,
            "type": event.type,
            "schema_version": event.schema_version,
            "occurred_at": event.occurred_micros,
            "recorded_at": event.recorded_micros,
            "data_bytes": len(data),
        }
    )
    return b"".join((envelope, b"\n", data, metadata))


def decode(value: bytes) -> RecordedEvent:
    """The event a message carries; its payloads stay JSON until read."""
    event = decode_wanted(value, None)[1]
    assert event is not None  # every event is wanted
    return event


def decode_wanted(
    value: bytes, wanted: EventFilter | None, build: Callable[..., RecordedEvent] = RecordedEvent
) -> tuple[int, RecordedEvent | None]:
    """The message's log position, and its event unless `wanted` (None: every event) says no consumer
    folds it (by type and stream: a consumer narrowing by `mentions` sees the event and drops it).
    `build` makes the event of `RecordedEvent`'s fields (a sealed store's `recorded` opens it)."""
    end = value.index(b"\n")
    doc = orjson.loads(value[:end])
    position, stream, type_ = doc["position"], doc["stream"], doc["type"]
    if wanted is not None and type_ not in wanted.types and not stream.startswith(wanted.stream_prefixes):
        return position, None
    split = end + 1 + doc["data_bytes"]
    return position, build(
        bytes.fromhex(doc["event_id"]),
        stream,
        doc["version"],
        position,
        type_,
        doc["schema_version"],
        doc["occurred_at"],
        doc["recorded_at"],
        value[end + 1 : split],
        value[split:],
    )
