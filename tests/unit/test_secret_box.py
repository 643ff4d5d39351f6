"""Sealing secrets: AES-GCM under a keyring, each secret bound to its place; credentials in URLs."""

from __future__ import annotations

import pytest

from herald.domain.secrets import WITHHELD, looks_like_credential, redacted_url
from herald.infra.secret_box import SecretBox, SecretKeyError, new_key, parse_keys

BOX = SecretBox(parse_keys(new_key()))


def test_a_sealed_secret_opens_only_for_its_place_and_never_shows_the_text() -> None:
    sealed = BOX.seal("hunter2", "sender-main.password")
    assert "hunter2" not in sealed.model_dump_json()
    assert sealed.key_id == BOX.current_key_id
    assert BOX.open(sealed, "sender-main.password") == "hunter2"
    assert BOX.seal("hunter2", "sender-main.password") != sealed  # a fresh nonce every time
    with pytest.raises(SecretKeyError):
        BOX.open(sealed, "sender-other.password")  # copied into another sender: does not open


def test_a_value_sealed_under_another_key_or_tampered_with_does_not_open() -> None:
    other = SecretBox(parse_keys(new_key()))
    sealed = other.seal("x", "c")
    with pytest.raises(SecretKeyError, match="not configured"):
        BOX.open(sealed, "c")
    mine = BOX.seal("x", "c")
    flipped = mine.model_copy(
        update={
            "ciphertext": mine.ciphertext[:-2]
            + ("A" if mine.ciphertext[-2] != "A" else "B")
            + mine.ciphertext[-1]
        }
    )
    with pytest.raises(SecretKeyError):
        BOX.open(flipped, "c")


def test_a_keyring_seals_with_its_first_key_and_opens_with_all() -> None:
    old, new = new_key(), new_key()
    before = SecretBox(parse_keys(old)).seal("s", "c")
    rotated = SecretBox(parse_keys(f"{new},{old}"))
    assert rotated.open(before, "c") == "s" and not rotated.is_current(before)
    assert rotated.is_current(rotated.seal("s", "c"))


def test_keys_must_be_32_bytes_of_base64url() -> None:
    for bad in ("", "short", "!!!!"):
        with pytest.raises(SecretKeyError):
            SecretBox(parse_keys(bad))


def test_seal_changed_keeps_what_is_given_again_and_seals_what_is_new() -> None:
    stored = BOX.seal("a", "c")
    assert BOX.seal_changed("", stored, "c") is stored
    assert BOX.seal_changed("a", stored, "c") is stored
    assert BOX.open(BOX.seal_changed("b", stored, "c"), "c") == "b"  # type: ignore[arg-type]
    assert BOX.open(BOX.seal_changed("a", WITHHELD, "c"), "c") == "a"  # type: ignore[arg-type]
    assert "SecretBox(" in repr(BOX) and new_key() not in repr(BOX)


@pytest.mark.parametrize(
    ("name", "credential"),
    [("bot_token", True), ("api-key", True), ("Password", True), ("X-Auth-Token", True),
     ("apikey", True), ("secret", True), ("author", False), ("tokens_per_day", False),
     ("parse_mode", False), ("keyword", False)],
)  # fmt: skip
def test_names_that_say_they_hold_a_credential(name: str, credential: bool) -> None:
    assert looks_like_credential(name) is credential


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@crm.example.com/x?a=1&api_key=abc", "https://***@crm.example.com/x?a=1&api_key=***"),
        ("https://crm.example.com/x?token=t%20x&b=%20", "https://crm.example.com/x?token=***&b=%20"),
        ("https://crm.example.com/export?id=5", "https://crm.example.com/export?id=5"),
        ("file:/etc/passwd", "file:/etc/passwd"),
    ],
)
def test_urls_are_shown_with_their_credentials_masked(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
