"""Deterministic ids, seeded id sources, and unique-value claims."""

from __future__ import annotations

import hashlib

import pytest
import xxhash

from herald.domain.claims import (
    ClaimValue,
    ReleaseValue,
    UniqueValueClaimed,
    UniqueValueReleased,
    claim_decider,
)
from herald.domain.errors import AlreadyExists
from herald.infra.ids import IdSource, deterministic_id, deterministic_ids, profile_md5_id, profile_xxh_id
from tests.unit.decider_table import then, then_error


def test_deterministic_ids_are_uuid5_in_herald_namespace() -> None:
    import pickle
    import uuid

    from herald.infra.ids import HERALD_NAMESPACE

    for parts in [("proc", "evt", 0), ("tracked", "1", "ünïcode-€"), ()]:
        made, expected = deterministic_id(*parts), uuid.uuid5(HERALD_NAMESPACE, "\x1f".join(map(str, parts)))
        # built without `UUID.__init__`: it must be a UUID in every way callers use one
        assert made == expected and hash(made) == hash(expected)
        assert (str(made), made.bytes, made.version, made.variant) == (
            str(expected),
            expected.bytes,
            5,
            uuid.RFC_4122,
        )
        assert pickle.loads(pickle.dumps(made)) == expected and made.is_safe is uuid.SafeUUID.unknown


def test_ids_derived_from_a_shared_prefix_are_the_same_deterministic_ids() -> None:
    derive = deterministic_ids("tracked", "db-1")
    for last in ("m-1", "", "ключ", 7, "a\x1fb"):
        assert derive(last) == deterministic_id("tracked", "db-1", last)


def test_deterministic_ids_depend_only_on_their_parts() -> None:
    assert deterministic_id("proc", "evt", 0) == deterministic_id("proc", "evt", 0)
    assert deterministic_id("proc", "evt", 0) != deterministic_id("proc", "evt", 1)
    assert deterministic_id("a", "bc") != deterministic_id("ab", "c")


def test_a_seeded_id_source_repeats_itself() -> None:
    import random
    import uuid

    first, second = IdSource(7), IdSource(7)
    expected = random.Random(7)
    for _ in range(50):
        made, wanted = first.uuid(), uuid.UUID(int=expected.getrandbits(128), version=4)
        assert made == wanted and hash(made) == hash(wanted) and str(made) == str(wanted)
        assert made.version == 4 and made.variant == uuid.RFC_4122
    first, second = IdSource(7), IdSource(7)
    assert [first.profile_id() for _ in range(3)] == [second.profile_id() for _ in range(3)]
    profile_id = IdSource(1).profile_id()
    assert len(profile_id) == 24 and int(profile_id, 16) >= 0


def test_profile_hash_ids() -> None:
    assert profile_md5_id("abc") == hashlib.md5(b"abc").hexdigest()
    assert profile_xxh_id("abc") == xxhash.xxh64(b"abc").hexdigest()


ANN = hashlib.sha256(b"ann@x.io").hexdigest()  # a claim names its value by its digest, never in clear
CLAIMED_BY_A = UniqueValueClaimed(database_id="1", kind="email", value=ANN, profile_id="a")
RELEASED_BY_A = UniqueValueReleased(database_id="1", kind="email", value=ANN, profile_id="a")


@pytest.mark.parametrize(
    ("given", "when", "expected"),
    [
        ([], ClaimValue("1", "email", "ann@x.io", "a"), [CLAIMED_BY_A]),
        ([CLAIMED_BY_A], ClaimValue("1", "email", "ann@x.io", "a"), []),
        ([CLAIMED_BY_A], ReleaseValue("1", "email", "ann@x.io", "a"), [RELEASED_BY_A]),
        ([CLAIMED_BY_A], ReleaseValue("1", "email", "ann@x.io", "b"), []),
        ([CLAIMED_BY_A, RELEASED_BY_A], ClaimValue("1", "email", "ann@x.io", "a"), [CLAIMED_BY_A]),
        (
            [],
            ClaimValue("1", "email", "ann@x.io", "a", digest="keyed"),
            [UniqueValueClaimed(database_id="1", kind="email", value="keyed", profile_id="a")],
        ),
    ],
    ids=[
        "claim a free value",
        "reclaim own value",
        "release own value",
        "others cannot release",
        "claim again",
        "named by the digest given (a keyed one)",
    ],
)
def test_claims(given: list, when: object, expected: list) -> None:
    assert then(claim_decider, given, when) == expected


def test_a_value_owned_by_another_profile_is_refused_naming_the_field() -> None:
    error = then_error(
        claim_decider,
        [CLAIMED_BY_A],
        ClaimValue("1", "email", "ann@x.io", "b", path="rows.3.email"),
        AlreadyExists,
        "rows.3.email",
    )
    assert "profile a" in error.reason
