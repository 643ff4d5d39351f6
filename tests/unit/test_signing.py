"""Signed tracking tokens: genuine ones verify; forged, cut or foreign ones do not."""

from __future__ import annotations

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
