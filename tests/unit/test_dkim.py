"""DKIM signing with a sender's key, every signature verified by dkimpy (an independent implementation)
against a fake DNS answering with our TXT record."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import Relaxed

from herald.senders.dkim import DkimError, DkimKey, generate_key, relaxed_body, sign
from herald.senders.mime import Attachment, build_email
from tests.unit.test_mime import random_body, random_text

DOMAIN = "news.herald.test"
Dns = Callable[..., bytes | None]


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    return generate_key(1024)


@pytest.fixture
def key(key_pair: tuple[str, str]) -> DkimKey:
    return DkimKey("hr1", DOMAIN, key_pair[0])


def dns_with(records: dict[str, str]) -> Dns:
    """A dnsfunc for dkim.verify: TXT records by name, nothing for any other name, no network."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        record = records.get(name.decode().rstrip("."))
        return record.encode() if record is not None else None

    return lookup


def message(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "message_id": "5f0c2a9e1b7d4c3e8a6f",
        "domain": DOMAIN,
        "date": datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC),
        "from_email": f"news@{DOMAIN}",
        "from_name": "Новости Herald",
        "to_email": "ann@example.org",
        "subject": "Весенняя распродажа 🌸",
        "text": "Hello Ann",
        "html": "<p>Hello Ann</p>",
        "unsubscribe_url": "https://t.herald.test/t/unsubscribe/abc",
        "unsubscribe_mailto": f"unsubscribe@{DOMAIN}",
        "list_id": f"weekly.{DOMAIN}",
        "list_name": "Weekly",
        "attachments": [Attachment("a.pdf", b"%PDF binary \x00\xff")],
    }
    return build_email(**(fields | overrides))


def signature_tags(signed: bytes) -> dict[str, str]:
    header = signed.split(b"\r\n", 1)[0]
    for line in signed.split(b"\r\n")[1:]:
        if not line.startswith((b" ", b"\t")):
            break
        header += line
    value = header.decode().split(":", 1)[1]
    return {
        k.strip(): re.sub(r"\s+", "", v) for k, v in (t.split("=", 1) for t in value.split(";") if "=" in t)
    }


def test_a_signed_message_verifies_against_the_published_record(
    key: DkimKey, key_pair: tuple[str, str]
) -> None:
    signed = sign(message(), key)
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(message())
    assert dkimpy.verify(signed, dnsfunc=dns_with({key.dns_name: key_pair[1]}))


def test_the_signature_is_relaxed_rsa_sha256_over_the_chosen_headers(key: DkimKey) -> None:
    tags = signature_tags(sign(message(), key))
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == ("rsa-sha256", "relaxed/relaxed", DOMAIN, "hr1")
    assert tags["h"].split(":") == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "x-herald-message-id",
        "mime-version",
        "content-type",
        "from",  # signed twice: a second From added later breaks the signature
    ]


def test_reply_to_and_feedback_id_are_signed_when_present(key: DkimKey) -> None:
    signed = sign(message(reply_to_email=f"help@{DOMAIN}", feedback_id="c1:r2:herald"), key)
    signed_headers = signature_tags(signed)["h"].split(":")
    assert {"reply-to", "feedback-id"} <= set(signed_headers)


def test_a_chosen_header_list_is_honoured(key: DkimKey, key_pair: tuple[str, str]) -> None:
    signed = sign(message(), key, headers=["From", "Subject"])
    assert signature_tags(signed)["h"] == "from:subject:from"
    assert dkimpy.verify(signed, dnsfunc=dns_with({key.dns_name: key_pair[1]}))


TAMPERINGS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("body", lambda m: m.replace(b"Hello Ann", b"Hello Bob", 1)),
    ("subject", lambda m: re.sub(rb"Subject: [^\r]*", b"Subject: Free money", m, count=1)),
    ("unsubscribe-url", lambda m: m.replace(b"/t/unsubscribe/abc", b"/t/unsubscribe/evil", 1)),
    ("one-click-removed", lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"")),
    ("second-from", lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: boss@evil.test\r\n\r\n", 1)),
    ("attachment", lambda m: m.replace(b"JVBERiBiaW5hcnkgAP8=", b"JVBERiBiaW5hcnkgAP4=", 1)),
]


@pytest.mark.parametrize("tamper", [t for _, t in TAMPERINGS], ids=[n for n, _ in TAMPERINGS])
def test_changes_after_signing_break_the_signature(
    key: DkimKey, key_pair: tuple[str, str], tamper: Callable[[bytes], bytes]
) -> None:
    signed = sign(message(), key)
    changed = tamper(signed)
    assert changed != signed
    assert not dkimpy.verify(changed, dnsfunc=dns_with({key.dns_name: key_pair[1]}))


def test_relaxed_canonicalisation_survives_refolding_and_trailing_spaces(
    key: DkimKey, key_pair: tuple[str, str]
) -> None:
    signed = sign(message(), key)
    refolded = signed.replace(b"\r\nTo: ann@example.org", b"\r\nTo:\r\n    ann@example.org", 1)
    refolded = refolded.replace(b"Hello Ann\r\n", b"Hello   Ann  \r\n", 1)
    assert refolded != signed
    assert dkimpy.verify(refolded, dnsfunc=dns_with({key.dns_name: key_pair[1]}))


def test_another_key_in_dns_fails_verification(key: DkimKey) -> None:
    _, other_record = generate_key(1024)
    assert not dkimpy.verify(sign(message(), key), dnsfunc=dns_with({key.dns_name: other_record}))


def test_generated_keys_match_their_dns_record() -> None:
    for bits in (1024, 2048):
        pem, record = generate_key(bits)  # type: ignore[arg-type]
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        assert private.key_size == bits
        assert pem.startswith("-----BEGIN PRIVATE KEY-----")
        version, kind, public = record.split("; ")
        assert (version, kind) == ("v=DKIM1", "k=rsa")
        published = serialization.load_der_public_key(base64.b64decode(public.removeprefix("p=")))
        assert published.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


def test_a_pkcs1_key_pasted_by_an_admin_signs_too(key_pair: tuple[str, str]) -> None:
    private = serialization.load_pem_private_key(key_pair[0].encode(), password=None)
    pkcs1 = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = DkimKey("old", DOMAIN, pkcs1)
    assert dkimpy.verify(sign(message(), key), dnsfunc=dns_with({key.dns_name: key_pair[1]}))


def test_the_private_key_stays_out_of_repr(key: DkimKey) -> None:
    assert "PRIVATE" not in repr(key)
    assert key.dns_name == f"hr1._domainkey.{DOMAIN}"


def test_unusable_keys_and_messages_are_refused(key: DkimKey) -> None:
    with pytest.raises(DkimError, match="cannot DKIM-sign"):
        sign(
            message(),
            DkimKey("hr1", DOMAIN, "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----"),
        )
    with pytest.raises(DkimError, match="no From"):
        sign(b"Subject: hi\r\n\r\nbody\r\n", key)
    with pytest.raises(DkimError, match="must include From"):
        sign(message(), key, headers=["Subject"])
    with pytest.raises(ValueError, match="1024 or 2048"):
        generate_key(512)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def key_pair_2048() -> tuple[str, str]:
    return generate_key(2048)


def test_random_messages_signed_with_rsa_2048_verify_with_dkimpy(key_pair_2048: tuple[str, str]) -> None:
    key = DkimKey("big", DOMAIN, key_pair_2048[0])
    dns = dns_with({key.dns_name: key_pair_2048[1]})
    rng = random.Random(6376)
    for n in range(40):
        subject = random_text(rng, rng.randrange(0, 12))
        signed = sign(
            message(message_id=f"m{n}", subject=subject, text=random_body(rng), html=random_body(rng)), key
        )
        assert dkimpy.verify(signed, dnsfunc=dns), (n, subject)
        assert signature_tags(signed)["a"] == "rsa-sha256"


def test_the_signing_time_is_the_one_given(key: DkimKey, key_pair: tuple[str, str]) -> None:
    at = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    signed = sign(message(), key, at=at)
    assert signature_tags(signed)["t"] == str(int(at.timestamp()))
    assert sign(message(), key, at=at) == signed  # PKCS#1 v1.5: the same input, the same bytes
    assert dkimpy.verify(signed, dnsfunc=dns_with({key.dns_name: key_pair[1]}))


BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"one line without an end",
    b"ends with blank lines\r\n\r\n\r\n",
    b"spaces  and\t\ttabs \t inside\r\n",
    b"trailing  \r\n\t\r\n   \r\n",
    b"a\r\n \r\nb  \t",
    b"  leading\r\n\tleading tab\r\n",
]


@pytest.mark.parametrize("body", BODIES)
def test_the_relaxed_body_is_dkimpys(body: bytes, key: DkimKey, key_pair: tuple[str, str]) -> None:
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)
    signed = sign(b"From: a@" + DOMAIN.encode() + b"\r\nSubject: x\r\n\r\n" + body, key)
    assert dkimpy.verify(signed, dnsfunc=dns_with({key.dns_name: key_pair[1]}))


def test_folded_and_repeated_headers_are_signed_bottom_up(key: DkimKey, key_pair: tuple[str, str]) -> None:
    raw = (
        b"From: a@" + DOMAIN.encode() + b"\r\n"
        b"To: first@example.org\r\n"
        b"Subject:   a   folded\r\n\t subject  \r\n"
        b"To: second@example.org\r\n"
        b"\r\nbody\r\n"
    )
    signed = sign(raw, key, headers=["From", "Subject", "To", "To"])
    assert signature_tags(signed)["h"] == "from:subject:to:to:from"
    assert dkimpy.verify(signed, dnsfunc=dns_with({key.dns_name: key_pair[1]}))
    swapped = signed.replace(b"first@", b"third@")
    assert not dkimpy.verify(swapped, dnsfunc=dns_with({key.dns_name: key_pair[1]}))
