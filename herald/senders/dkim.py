"""DKIM: signing an outgoing email with its sender's key and selector (dkimpy), and making key pairs.

Decisions where the task is silent:
- Signatures are rsa-sha256 with relaxed/relaxed canonicalisation, which
  survives the header refolding and trailing-space changes relays make.
- `h=` lists the chosen headers that the message has (a header that is absent
  is not listed), in the order given, plus `From` once more: a From added in
  transit then breaks the signature (RFC 6376 §8.15), as dkimpy does by
  default. The default set adds `Feedback-ID` (Gmail uses it only when the
  signature covers it) and `X-Herald-Message-ID` (a complaint's copy of the
  message then proves which message it was) to the task's list.
- dkimpy writes the `t=` timestamp from its own clock; nothing else varies.
- Private keys are PEM, unencrypted: PKCS#8 from `generate_key`, and PKCS#1
  (`BEGIN RSA PRIVATE KEY`) pasted by an admin works as well.
- The DNS TXT record is returned as one string. A 2048-bit key's record is
  longer than 255 characters, so a zone file has to split it into several
  quoted strings; DNS providers' forms do that themselves.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dkim as dkimpy  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "X-Herald-Message-ID",
    "MIME-Version",
    "Content-Type",
)
_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


class DkimError(ValueError):
    """The message cannot be signed with this key (a malformed key, no From header, ...)."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A sender's DKIM key: the selector and domain its public key is published under, and the secret."""

    selector: str
    domain: str
    private_key_pem: str = field(repr=False)

    @property
    def dns_name(self) -> str:
        """Where the public key's TXT record lives: `<selector>._domainkey.<domain>`."""
        return f"{self.selector}._domainkey.{self.domain}"


def sign(message: bytes, key: DkimKey, headers: Sequence[str] = DEFAULT_SIGNED_HEADERS) -> bytes:
    """The message with a `DKIM-Signature` header in front, signing those of `headers` it has."""
    present = _header_names(message)
    if "from" not in present:
        raise DkimError("the message has no From header, which DKIM must sign")
    chosen = [name.lower() for name in headers if name.lower() in present]
    if "from" not in chosen:
        raise DkimError("the signed headers must include From")
    try:
        signature: bytes = dkimpy.sign(
            message,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key_pem.encode("ascii"),
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"rsa-sha256",
            include_headers=[name.encode("ascii") for name in [*chosen, "from"]],
        )
    except (dkimpy.DKIMException, UnicodeEncodeError) as error:
        raise DkimError(f"cannot DKIM-sign with {key.dns_name}: {error}") from None
    return signature + message


def generate_key(bits: Literal[1024, 2048] = 1024) -> tuple[str, str]:
    """A new RSA key pair: (the private key as PEM, the DNS TXT record value `v=DKIM1; k=rsa; p=...`)."""
    if bits not in (1024, 2048):
        raise ValueError("DKIM keys here are 1024 or 2048 bits")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"


def _header_names(message: bytes) -> set[str]:
    """The lower-cased names of the message's header fields (the part before the first empty line)."""
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    return {name.decode("ascii").lower() for name in _HEADER_NAME.findall(head)}
