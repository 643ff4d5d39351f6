"""The event store with profiles' personal data sealed: AES-GCM with each profile's own key.

`SealedEventStore` wraps any event store adapter. On append, the personal values of an event
on a profile's streams — `profile-<id>` (fields, field changes, tracked data, subscription
contacts, addresses, devices), `activity-<id>` (a tracked event's properties and context),
`message-<id>` (the recipient's contact, a trigger's content, a bounce's text, a clicked URL) and
`journey-<scenario>-<profile>` (an entry's content, a node's outcome, a webhook's URL and answer)
— move into one sealed value,
`_sealed`, encrypted with the profile's key (`ProfileKeys`) and bound to the stream; ids,
statuses, times and resource and channel names stay readable, so the log can still be routed,
counted and audited. On read the wrapper opens it again, lazily, when a consumer first looks at
an event's data. When the profile was erased its key is gone: the values read as erased
(empty fields and changes, a contact named by a keyed digest of its ciphertext so two stay
two, `LogNames.erased_contact`), and a replay rebuilds every read model without personal data.

The relay publishes the log as stored (`SealedEventStore.inner`), so a Kafka topic holds the
sealed values too; the Faust worker opens them with its own store (`opened`).

An anonymous visitor's events (`anonymous-<id>`) are sealed under a key of the visitor's own
(`anonymous_key`). A stop list's entries (`stoplist-<id>`) are sealed one by one, each under a key
of its own, and stay matchable by a keyed name (`sealed_entries.py`). Events written before
sealing existed are sealed in place by `herald reseal` (`services/resealing.py`, with
`Sealer.resealed`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.tracking import GOAL_MARKS
from herald.infra.event_store import (
    ANY,
    AppendResult,
    EventFilter,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from herald.infra.log_names import LogNames
from herald.infra.profile_keys import ProfileKeys
from herald.infra.sealed_entries import STOP_LISTS, EntrySealer

SEALED = "_sealed"
SEALED_KEYS = "_sealed_keys"  # which keys the sealed value holds (names only: what an erasure must fill)
PERSONAL: dict[str, frozenset[str]] = {
    "profile-": frozenset({"fields", "changes", "tracked", "contact", "ip", "device", "email_md5"}),
    "activity-": frozenset({"properties", "context"}),
    # a bounce's or a refusal's text often quotes the address ("550 5.1.1 <ann@…>: unknown user")
    # and a clicked link's URL may carry the profile's values (a personalised link)
    "message-": frozenset({"contact", "content", "ip", "user_agent", "response", "detail", "url"}),
    # a journey's entry content, a node's outcome, a webhook's URL (which may carry the profile's
    # values) and the answer's body
    "journey-": frozenset({"content", "outcome", "url", "body"}),
    # an anonymous visitor's tracked events, under the visitor's own key (`anonymous_key`): erasing
    # the profile it was linked to destroys it too
    "anonymous-": frozenset({"properties", "context"}),
}
ANONYMOUS = "anonymous-"
_PREFIXES = tuple(PERSONAL)
_SEALED_STREAMS = (*_PREFIXES, STOP_LISTS)  # stop lists: each entry under its own key (`sealed_entries`)
_NAMED_IN_DATA = frozenset({"message-", "journey-"})  # streams not named by their profile: it is in the data
_SEALED_MARK = b'"_sealed"'
# Keys inside a sealed value whose names (never their values) stay readable as `_sealed_marks`, so a
# reader that skips events by a byte search of the stored JSON (`EventFilter.mentions`) still finds
# them: a tracked event's properties naming a goal or a pixel (`GOAL_MARKS`).
_GOAL_NAMES = ("properties", frozenset(mark.strip(b'"').decode() for mark in GOAL_MARKS))
MARKED: dict[str, tuple[str, frozenset[str]]] = {"activity-": _GOAL_NAMES, ANONYMOUS: _GOAL_NAMES}
SEALED_MARKS = "_sealed_marks"


def _erased(key: str, data: dict[str, Any], token: str, names: LogNames) -> Any:
    """What a personal value reads as once its key is gone (a value the event's model accepts)."""
    if key in ("fields", "changes", "device", "properties", "context"):
        return {}
    if key == "tracked":
        return {"at": data.get("at")}
    if key == "contact":
        return names.erased_contact(token)
    if key in ("response", "detail", "url"):
        return ""
    return None


class Sealer:
    def __init__(self, keys: ProfileKeys, names: LogNames) -> None:
        self.keys = keys
        self.names = names
        self.entries = EntrySealer(keys, names)

    def owners(self, stream: str, data: dict[str, Any]) -> set[str]:
        """Whose keys seal an event on `stream`: its profile's (or visitor's), or its entries'."""
        if stream.startswith(STOP_LISTS):
            return self.entries.owners(data)
        found = self.profile_of(stream, data)
        return {found[0]} if found is not None else set()

    def profile_of(self, stream: str, data: dict[str, Any]) -> tuple[str, frozenset[str]] | None:
        """Whose personal data an event on `stream` holds, and which of its keys are personal."""
        if not stream.startswith(_PREFIXES):
            return None
        prefix = stream[: stream.index("-") + 1]
        if prefix == ANONYMOUS:
            return anonymous_key(stream[len(prefix) :]), PERSONAL[prefix]
        profile_id = data.get("profile_id") if prefix in _NAMED_IN_DATA else stream[len(prefix) :]
        return (str(profile_id), PERSONAL[prefix]) if profile_id else None

    def seal(self, stream: str, data: dict[str, Any]) -> dict[str, Any]:
        if stream.startswith(STOP_LISTS):
            return self.entries.seal(data)
        found = self.profile_of(stream, data)
        if found is None or SEALED in data:
            return data
        profile_id, personal = found
        secret = {k: v for k, v in data.items() if k in personal}
        if not secret:
            return data
        key = self.keys.key(profile_id, create=True)
        if key is None:  # the profile was erased: nothing personal is written for it any more
            rest = {k: v for k, v in data.items() if k not in personal}
            token = base64.b64encode(os.urandom(12)).decode()  # no value to name it by: one of its own
            return {**rest, **self._erased(secret, rest, token)}
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, orjson.dumps(secret), stream.encode())
        rest = {k: v for k, v in data.items() if k not in personal}
        rest[SEALED] = base64.b64encode(nonce + sealed).decode()
        rest[SEALED_KEYS] = sorted(secret)
        marks = _marks(stream, secret)
        if marks:
            rest[SEALED_MARKS] = marks
        return rest

    def resealed(self, stream: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """An event stored before sealing existed, as it is stored now: its personal values sealed (or
        erased, when its profile was); None when it is stored so already (nothing to rewrite)."""
        if stream.startswith(STOP_LISTS):
            entries = self.entries.seal(data)
            return None if entries == data else entries
        found = self.profile_of(stream, data)
        if found is None or SEALED in data or not found[1].intersection(data):
            return None
        now = self.seal(stream, data)
        if SEALED in now:
            return now
        # Its profile was erased: an event appended after the erasure already holds erased values
        # only (its contact's stand-in stays the one it was given).
        same = set(now) == set(data) and all(
            now[k] == v or (k == "contact" and str(v).startswith("erased-")) for k, v in data.items()
        )
        return None if same else now

    def open(self, stream: str, data: dict[str, Any]) -> dict[str, Any]:
        if stream.startswith(STOP_LISTS):
            return self.entries.open(data)
        token = data.get(SEALED)
        if not isinstance(token, str):
            return data
        rest = {k: v for k, v in data.items() if k not in (SEALED, SEALED_KEYS, SEALED_MARKS)}
        found = self.profile_of(stream, data)
        key = self.keys.key(found[0], create=False) if found else None
        if key is not None:
            raw = base64.b64decode(token)
            try:
                return {**rest, **orjson.loads(AESGCM(key).decrypt(raw[:12], raw[12:], stream.encode()))}
            except InvalidTag:
                pass  # a key that is not this event's: read as erased
        return {**rest, **self._erased(data.get(SEALED_KEYS) or (), rest, token)}

    def _erased(self, keys: Iterable[str], rest: dict[str, Any], token: str) -> dict[str, Any]:
        return {k: _erased(k, rest, token, self.names) for k in keys if k in _REQUIRED}


def anonymous_key(anonymous_id: str) -> str:
    """Whose key seals an anonymous visitor's events (apart from every profile id)."""
    return "anonymous:" + anonymous_id


def _marks(stream: str, secret: dict[str, Any]) -> list[str]:
    """The marked key names `secret` holds (see `MARKED`)."""
    for prefix, (key, names) in MARKED.items():
        inner = secret.get(key)
        if stream.startswith(prefix) and isinstance(inner, dict):
            return sorted(names.intersection(inner))
    return []


# Personal keys the events' models need a value for (the others read as absent once erased).
_REQUIRED = frozenset(
    {"fields", "changes", "tracked", "contact", "properties", "context", "response", "detail", "url"}
)


class _Opened(RecordedEvent):
    """A stored event whose sealed data is opened on first access."""

    __slots__ = ("_sealer",)

    @classmethod
    def of(cls, event: RecordedEvent, sealer: Sealer) -> _Opened:
        opened = cls.__new__(cls)
        for slot in RecordedEvent.__slots__:
            object.__setattr__(opened, slot, object.__getattribute__(event, slot))
        opened._sealer = sealer
        return opened

    @property
    def data(self) -> dict[str, Any]:
        data = RecordedEvent.data.fget(self)  # type: ignore[attr-defined]
        if SEALED in data or self.stream.startswith(STOP_LISTS):
            data = self._sealer.open(self.stream, data)
            self._data = data
        return data  # type: ignore[no-any-return]

    @property
    def payload(self) -> dict[str, Any] | bytes:
        # The stored JSON only while it holds nothing sealed: a sealed one is opened first.
        stored = self._data
        if (
            isinstance(stored, bytes)
            and _SEALED_MARK not in stored
            and not self.stream.startswith(STOP_LISTS)
        ):
            return stored
        return self.data


class SealedEventStore:
    """An event store (the port) whose profiles' personal data is sealed; delegates the rest."""

    def __init__(self, inner: EventStore, sealer: Sealer) -> None:
        self.inner = inner
        self.sealer = sealer

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return self.append_many([StreamAppend(stream, events, expected_version)])[0]

    def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        owners = {
            owner
            for a in appends
            if a.stream.startswith(_SEALED_STREAMS)
            for e in a.events
            for owner in self.sealer.owners(a.stream, e.data)
        }
        self.sealer.keys.ensure(owners)  # the keys first, all at once, so no sealed event lacks its key
        return self.inner.append_many([self._sealed(a) for a in appends])

    def _sealed(self, append: StreamAppend) -> StreamAppend:
        if not append.stream.startswith(_SEALED_STREAMS):
            return append
        events = [_with_data(e, self.sealer.seal(append.stream, e.data)) for e in append.events]
        return StreamAppend(append.stream, events, append.expected_version)

    def opened(self, event: RecordedEvent) -> RecordedEvent:
        """`event` (as stored, from this log or a copy of it) with its sealed data opened on access."""
        return _Opened.of(event, self.sealer) if event.stream.startswith(_SEALED_STREAMS) else event

    def recorded(self, *fields: Any) -> RecordedEvent:
        """The event of `RecordedEvent`'s fields as stored, opened on access: `opened` without building
        it twice, for a reader holding a copy of the stored bytes (a partition of the scale engine)."""
        if not fields[1].startswith(_SEALED_STREAMS):  # the stream
            return RecordedEvent(*fields)
        opened = _Opened(*fields)
        opened._sealer = self.sealer
        return opened

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return [self.opened(e) for e in self.inner.read_stream(stream, from_version)]

    def read_all(self, from_position: int = 1, limit: int | None = None) -> Iterator[RecordedEvent]:
        return (self.opened(e) for e in self.inner.read_all(from_position, limit))

    def read_range(self, first: int, last: int, only: EventFilter | None = None) -> list[RecordedEvent]:
        return [self.opened(e) for e in self.inner.read_range(first, last, only)]

    async def subscribe(self, from_position: int = 1) -> AsyncIterator[RecordedEvent]:
        async for event in self.inner.subscribe(from_position):
            yield self.opened(event)

    def close(self) -> None:
        self.inner.close()
        self.sealer.keys.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # stream_version, head_position, wait_for_new, close, …


def _with_data(event: NewEvent, data: dict[str, Any]) -> NewEvent:
    if data is event.data:
        return event
    return NewEvent(event.event_id, event.type, data, event.occurred_at, event.schema_version, event.metadata)
