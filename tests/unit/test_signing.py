"""Signed tracking tokens: genuine ones verify; forged, cut or foreign ones do not."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from herald.infra.signing import TokenSigner

SIGNER = TokenSigner("secret")
CLICK = {"m": "msg-1", "l": "html.2", "u": "https://shop.example.com/?a=1&b=2"}


def test_a_token_carries_its_payload_for_its_purpose() -> None:
    token = SIGNER.sign("click", CLICK)
    assert SIGNER.verify("click", token) == CLICK
    assert "/" not in token and "+" not in token and "=" not in token


def _flip(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: _flip(t, 3),  # payload changed
        lambda t: _flip(t, len(t) - 2),  # MAC changed
        lambda t: t[:-4],  # MAC cut
        lambda t: t.split(".")[0],  # no MAC
        lambda t: t + "x",
        lambda t: "",
        lambda t: "!!!.???",
        lambda t: TokenSigner("other key").sign("click", CLICK),
        lambda t: SIGNER.sign("open", CLICK),  # a genuine token for another purpose
    ],
)
def test_forged_cut_and_foreign_tokens_are_refused(tamper: object) -> None:
    token = SIGNER.sign("click", CLICK)
    assert SIGNER.verify("click", tamper(token)) is None  # type: ignore[operator]


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_only_the_canonical_spelling_of_a_mac_verifies() -> None:
    token = SIGNER.sign("click", CLICK)
    body, _, mac = token.partition(".")
    accepted = [c for c in _ALPHABET if SIGNER.verify("click", f"{body}.{mac[:-1]}{c}") is not None]
    assert accepted == [mac[-1]]  # 16 bytes leave 4 unused bits in the last character: 15 other spellings


@pytest.mark.parametrize("variant", ["=", "==", "===", "\n", " ", "%3D"])
def test_padding_or_junk_after_a_mac_is_refused(variant: str) -> None:
    token = SIGNER.sign("click", CLICK)
    assert SIGNER.verify("click", token + variant) is None


def test_junk_inside_the_payload_or_mac_is_refused() -> None:
    token = SIGNER.sign("click", CLICK)
    body, _, mac = token.partition(".")
    for spelled in (f"{body}.{mac[:4]}!!{mac[4:]}", f"{body[:4]}!!!!{body[4:]}.{mac}", f"{body}=.{mac}"):
        assert SIGNER.verify("click", spelled) is None


def test_a_payload_with_unused_bits_set_is_refused() -> None:
    """A payload spelled non-canonically, MACed as spelled, still does not verify: one token, one URL."""
    # a payload whose length leaves unused bits in its last character (a length of 2 or 3 mod 4)
    body = next(b for n in range(4) if len(b := SIGNER.sign("click", {"m": "m" * n}).partition(".")[0]) % 4)
    assert SIGNER.verify("click", SIGNER.sign("click", {"m": "m"}))
    variant = body[:-1] + _ALPHABET[_ALPHABET.index(body[-1]) | 1]  # the lowest bit is an unused one
    assert variant != body
    mac = hmac.new(b"secret", variant.encode(), hashlib.sha256).digest()[:16]
    forged = f"{variant}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert SIGNER.verify("click", forged) is None
