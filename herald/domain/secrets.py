"""Secrets in events: only sealed values (a key id and ciphertext); the key is held outside the log.

Relay passwords, DKIM private keys, push credentials, custom channels' tokens
and the headers an external segment source is asked with are write-only: the
API takes them in clear, the service seals them (`infra/secret_box.py`,
AES-256-GCM under a key from the data directory or `HERALD_SECRETS_KEY`) and
events, states and read models hold only the `SealedSecret`. Folding, replay
and every processor work on sealed values; a secret is opened only where it
is used (the SMTP login, the DKIM signature, the external request).

An event written before secrets were sealed held them in clear. Its upcaster
replaces each one with `WITHHELD` (a sealed value that opens to nothing), so
the cleartext is never served or folded; the service seals it again from the
stored bytes the first time it is needed (or `herald secrets reseal` does it
for every one), and `herald secrets reseal --scrub` overwrites those bytes.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

WITHHELD_KEY_ID = "withheld"


class SealedSecret(BaseModel):
    """A secret encrypted under the key `key_id`: `ciphertext` is base64url of nonce ‖ ciphertext ‖ tag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    ciphertext: str

    @property
    def withheld(self) -> bool:
        """True for a secret an old event held in clear: known to exist, not readable from the event."""
        return self.key_id == WITHHELD_KEY_ID


WITHHELD = SealedSecret(key_id=WITHHELD_KEY_ID, ciphertext="")
MASK = "***"

# A name that says its value is a credential (`bot_token`, `api-key`, `Password`, `X-Auth-Token`).
_CREDENTIAL_NAME = re.compile(
    r"(?:^|[_\-.])(?:pass(?:word|wd)?|secret|token|api[_\-]?key|private[_\-]?key|auth(?:orization)?|"
    r"credentials?|signature|sig)(?:$|[_\-.])",
    re.IGNORECASE,
)


def looks_like_credential(name: str) -> bool:
    """Whether a setting's or parameter's name says it holds a credential."""
    return _CREDENTIAL_NAME.search(name.strip()) is not None


def redacted_url(url: str) -> str:
    """`url` with its credentials masked: the login (`user:password@`) and the values of query
    parameters whose names say they are credentials; the rest is kept as written."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, equals, _ = piece.partition("=")
        pieces.append(f"{name}={MASK}" if equals and looks_like_credential(unquote_plus(name)) else piece)
    query = "&".join(pieces)
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to mask: the URL exactly as written
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
