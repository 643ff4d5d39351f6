"""Stop-list entries in the log: each address or phone sealed under a key of its own, matched by a keyed name.

A stop list outlives the profiles whose addresses it holds, and it must: a suppression that an
erasure lifted would let the erased person be mailed again on the next import. So an entry keeps
what it is matched by and loses what it reads as. On append, each item of a `stoplist-<id>`
event (`StopListEntriesAdded`, `StopListEntriesRemoved`) is stored as its kind, its name (`digest`:
`LogNames.entry_digest`, an HMAC of its kind and match key under the names key) and its value
sealed with AES-GCM under the entry's key (`entry_owner(digest)` in `ProfileKeys`, one key per
distinct entry, shared by every list holding it). Erasing a profile destroys the keys of its
addresses and phones (`entry_names`): from then on the entry reads as `erased-<digest prefix>`, in
this process, in a replay and in any copy of the log, while the send-time check, which names the
contact it checks the same way, still finds it. An entry made again after its key was destroyed
is stored with the stand-in only. Domains are not personal data and are never sealed.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.errors import ValidationFailed
from herald.domain.stop_lists import EntryKind, StopListItem, erased_value, parse_item
from herald.infra.log_names import LogNames
from herald.infra.profile_keys import ProfileKeys

STOP_LISTS = "stoplist-"
SEALED = "_sealed"
_PERSONAL_KINDS = frozenset({EntryKind.EMAIL.value, EntryKind.PHONE.value})


def entry_owner(digest: str) -> str:
    """Whose key seals the entry named `digest` (apart from every profile id)."""
    return "entry:" + digest


def entry_names(values: Iterable[str], names: LogNames) -> set[str]:
    """The entry names of the addresses and phones among `values` (whose keys erasing their holder
    destroys, `entry_owner`), whether or not a list holds them."""
    digests: set[str] = set()
    for value in values:
        with suppress(ValidationFailed):
            item = parse_item(value)
            if item.kind.value in _PERSONAL_KINDS:
                digests.add(names.entry_digest(item.kind, item.match_key))
    return digests


class EntrySealer:
    def __init__(self, keys: ProfileKeys, names: LogNames) -> None:
        self.keys = keys
        self.names = names

    def owners(self, data: dict[str, Any]) -> set[str]:
        """The entry keys an event's items are sealed under (made before the append)."""
        return {entry_owner(self._digest(item)) for item in _items(data) if _personal(item)}

    def seal(self, data: dict[str, Any]) -> dict[str, Any]:
        items = _items(data)
        if not any("value" in item for item in items):
            return data
        return {**data, "items": [self._sealed(item) for item in items]}

    def needs_opening(self, data: dict[str, Any]) -> bool:
        """Whether `open` changes the event (a sealed item, or one stored before entries were named)."""
        return any(SEALED in item or "digest" not in item for item in _items(data))

    def open(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self.needs_opening(data):
            return data
        return {**data, "items": [self._opened(item) for item in _items(data)]}

    def _digest(self, item: dict[str, Any]) -> str:
        """The item's name, from its value (whatever name it was given: a decider naming entries
        plainly must not put an address in the log as its name), or as given for an erased one."""
        digest = item.get("digest")
        if isinstance(digest, str) and item.get("value", erased_value(digest)) == erased_value(digest):
            return digest
        return self.names.entry_digest(item["kind"], StopListItem.model_validate(item).match_key)

    def _sealed(self, item: dict[str, Any]) -> dict[str, Any]:
        if "value" not in item:
            return item
        digest = self._digest(item)
        named = {"kind": item["kind"], "digest": digest}
        if not _personal(item):
            return {**named, "value": item["value"]}
        key = self.keys.key(entry_owner(digest), create=True)
        if key is None:  # erased: nothing personal is written for it any more
            return {**named, "value": erased_value(digest)}
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, str(item["value"]).encode(), digest.encode())
        return {**named, SEALED: base64.b64encode(nonce + sealed).decode()}

    def _opened(self, item: dict[str, Any]) -> dict[str, Any]:
        token = item.get(SEALED)
        if not isinstance(token, str):
            return {**item, "digest": self._digest(item)}
        digest = item["digest"]
        key = self.keys.key(entry_owner(digest), create=False)
        value = erased_value(digest)
        if key is not None:
            raw = base64.b64decode(token)
            with suppress(InvalidTag):  # a key that is not this entry's: read as erased
                value = AESGCM(key).decrypt(raw[:12], raw[12:], digest.encode()).decode()
        return {"kind": item["kind"], "value": value, "digest": digest}


def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
    items = data.get("items")
    return list(items) if isinstance(items, list | tuple) else []


def _personal(item: dict[str, Any]) -> bool:
    return item.get("kind") in _PERSONAL_KINDS
