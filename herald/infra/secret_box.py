"""Sealing secrets with keys held outside the log: AES-256-GCM over a keyring.

The keys come from `HERALD_SECRETS_KEY` (comma-separated) or, when that is
unset, from the data directory's `secrets-key` file (one key per line, made
with mode 0600 on first start). Each key is 32 random bytes written as
base64url; the first is the one new secrets are sealed with, the others still
open what was sealed before a rotation. A key's id (the first 16 hex digits of
a SHA-256 of it) goes into every sealed value, so opening picks the right key
and a value sealed under a key that is gone fails plainly.

AES-GCM rather than Fernet: it is an AEAD, so each secret is bound to where it
belongs (its `context`, such as `sender-main.password`) as associated data,
and a sealed value copied into another sender or field does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.secrets import SealedSecret

KEY_FILE = "secrets-key"
_NONCE_BYTES = 12


class SecretKeyError(ValueError):
    """A key that is not 32 bytes of base64url, or a sealed value no key here opens."""


class SecretBox:
    """Seals and opens secrets; the first key seals, every key opens."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secrets key")
        for key in keys:
            if len(key) != 32:
                raise SecretKeyError("a secrets key is 32 bytes (base64url)")
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self.current_key_id = key_id(keys[0])

    def __repr__(self) -> str:
        return f"SecretBox(current_key_id={self.current_key_id!r}, keys={len(self._keys)})"

    def seal(self, plaintext: str, context: str) -> SealedSecret:
        """`plaintext` sealed under the current key, bound to `context`."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self.current_key_id].encrypt(nonce, plaintext.encode(), context.encode())
        text = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return SealedSecret(key_id=self.current_key_id, ciphertext=text)

    def open(self, sealed: SealedSecret, context: str) -> str:
        """The secret `sealed` holds; SecretKeyError when no key here opens it for `context`."""
        cipher = self._keys.get(sealed.key_id)
        if cipher is None:
            raise SecretKeyError(f"the secret was sealed under key {sealed.key_id!r}, not configured here")
        try:
            raw = base64.urlsafe_b64decode(sealed.ciphertext + "=" * (-len(sealed.ciphertext) % 4))
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretKeyError(f"the secret of {context} does not open under {sealed.key_id!r}") from None

    def seal_changed(self, given: str, current: SealedSecret | None, context: str) -> SealedSecret | None:
        """What to store for a write-only secret: `current` when none is given or the same one is
        given again (so an unchanged setting appends nothing), else `given` sealed."""
        if not given:
            return current
        if current is not None and not current.withheld:
            try:
                if self.open(current, context) == given:
                    return current
            except SecretKeyError:
                pass  # sealed under a key no longer here: the given one replaces it
        return self.seal(given, context)

    def is_current(self, sealed: SealedSecret) -> bool:
        return sealed.key_id == self.current_key_id


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"herald secrets key\0" + key).hexdigest()[:16]


def new_key() -> str:
    """A fresh key as it is written in the key file or the environment."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def parse_keys(text: str) -> list[bytes]:
    """Keys written one per line or comma-separated, newest first."""
    keys = []
    for item in text.replace(",", "\n").split():
        try:
            keys.append(base64.urlsafe_b64decode(item + "=" * (-len(item) % 4)))
        except (binascii.Error, ValueError):
            raise SecretKeyError("a secrets key is 32 bytes written as base64url") from None
    return keys


def load_secret_box(configured: str | None, data_dir: Path) -> SecretBox:
    """The keyring from `HERALD_SECRETS_KEY` when set, else from the data directory's key file
    (made, readable by the owner only, on first start)."""
    if configured:
        return SecretBox(parse_keys(configured))
    return SecretBox(parse_keys(private_file(data_dir / KEY_FILE, new_key)))


def private_file(path: Path, make: Callable[[], str]) -> str:
    """The text of a file only its owner may read, made by `make()` when missing.

    Written whole to a temporary file created with mode 0600, then linked into place (which fails if
    the file exists): it is never readable by others, never seen half-written, and two processes
    starting together agree on one value."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(make() + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: its value stands
        finally:
            temporary.unlink()
    return path.read_text().strip()
