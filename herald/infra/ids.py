"""Identifiers: deterministic event ids, random ids from an injected source, profile ids."""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import Callable
from typing import Any

import xxhash

# The namespace of every deterministic id Herald makes; fixed forever, since
# changing it would make replays append new ids instead of dropping them.
HERALD_NAMESPACE = uuid.UUID("6f1b2c57-5c1e-4e7a-9a53-2f0e8c1d4b7a")


_NAMESPACE_BYTES = HERALD_NAMESPACE.bytes


def deterministic_id(*parts: object) -> uuid.UUID:
    """The same UUID for the same parts: `uuid5(processor, causing event id, ordinal)`.

    Exactly `uuid.uuid5(HERALD_NAMESPACE, "\\x1f".join(map(str, parts)))`, computed
    inline because ingestion derives one per tracked event.
    """
    return _uuid5(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(map(str, parts)).encode()))


def deterministic_ids(*prefix: object) -> Callable[[object], uuid.UUID]:
    """`last → deterministic_id(*prefix, last)`, hashing the shared prefix once (one id per tracked event)."""
    hashed = hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(map(str, (*prefix, ""))).encode())

    def derive(last: object) -> uuid.UUID:
        digest = hashed.copy()
        digest.update(str(last).encode())
        return _uuid5(digest)

    return derive


# A version's bits and the RFC 4122 variant, as `uuid.UUID(..., version=N)` sets them.
_VERSION_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VARIANT = 0x8000 << 48
_UUID4 = (0x4000 << 64) | _VARIANT
_UUID5 = (0x5000 << 64) | _VARIANT
_new_object = object.__new__
_set_slot = object.__setattr__
_SAFETY_UNKNOWN = uuid.SafeUUID.unknown  # read once: an enum member's lookup is a Python property call


def _uuid5(sha1: Any) -> uuid.UUID:
    return _uuid((int.from_bytes(sha1.digest()[:16]) & _VERSION_CLEAR) | _UUID5)


def _uuid(value: int) -> uuid.UUID:
    """`uuid.UUID(int=value)` for a value whose version bits are set: `UUID.__init__` checks its
    arguments in Python, half the cost of an id; this sets the same two slots it sets
    (`tests/unit/test_ids_and_claims.py` holds the results to `uuid.uuid5`'s and `UUID(int=...)`'s)."""
    made = _new_object(uuid.UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", _SAFETY_UNKNOWN)
    return made


class IdSource:
    """Random ids from a seedable generator, so tests are deterministic."""

    def __init__(self, seed: int | None = None) -> None:
        # Ids are unique, not secret (anything a link must not let one guess is
        # HMAC-signed), so a generator seeded once from the OS serves them: a
        # system call per id cost 5% of an import.
        self._random = random.Random(seed if seed is not None else int.from_bytes(os.urandom(32)))
        self._seed = seed

    def secret_random(self) -> random.Random:
        """A generator for values people must not guess (promo codes): the OS's, unless seeded (tests,
        where it is seeded apart from the ids, so asking for it changes no id)."""
        return random.SystemRandom() if self._seed is None else random.Random(f"secret/{self._seed}")

    def uuid(self) -> uuid.UUID:
        return _uuid((self._random.getrandbits(128) & _VERSION_CLEAR) | _UUID4)

    def profile_id(self) -> str:
        """A 24-hex id like the guide's `5e8a7f9de7d8b9372bb0de5c`."""
        return f"{self._random.getrandbits(96):024x}"

    def token(self, nbytes: int = 24) -> str:
        return self._random.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()


def profile_md5_id(profile_id: str) -> str:
    """The profile's MD5 identifier (32 hex)."""
    return hashlib.md5(profile_id.encode()).hexdigest()


def profile_xxh_id(profile_id: str) -> str:
    """The profile's XXH identifier (xxh64, 16 hex)."""
    return xxhash.xxh64_hexdigest(profile_id.encode())
