"""How long an SMS is: its encoding, characters and parts (3GPP TS 23.038 / 23.040).

A message that fits the GSM 7-bit alphabet is sent in it: 160 characters in
one part, 153 per part when split (the rest of each part holds the
concatenation header); characters of the extension table (`{ } [ ] ~ \\ | ^ €`
and form feed) take two places. Anything else goes as UCS-2: 70 characters in
one part, 67 per part when split, where a character outside the Basic
Multilingual Plane (most emoji) takes two.

`split_sms` cuts a text into the parts a gateway sends: GSM 7-bit as one
septet per octet (the SMPP "SMSC default alphabet", which the SMSC packs),
UCS-2 as UTF-16BE; each part of a long message starts with the 8-bit
concatenation header (UDH `05 00 03 ref total seq`). A cut never falls
inside an extension character's escape pair or a surrogate pair, so every
part decodes on its own, and the part count always equals `sms_length`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = "\f^{}\\[~]|€"
_GSM_EXTENSION_CODES = (0x0A, 0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40, 0x65)
_ESCAPE = 0x1B
# The basic table in code order: the escape (0x1B) sits between Ξ and Æ.
_GSM_CODE = {c: i for i, c in enumerate(_GSM_BASIC[:27] + "\x00" + _GSM_BASIC[27:]) if i != _ESCAPE}
_GSM_CODE.update({c: 0x100 | code for c, code in zip(_GSM_EXTENSION, _GSM_EXTENSION_CODES, strict=True)})
_GSM = frozenset(_GSM_BASIC)
_GSM_EXT = frozenset(_GSM_EXTENSION)
_BARE_WWW = re.compile(r"(?<![\w/.:@])(www\.)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: str  # "gsm7" or "ucs2"
    units: int  # septets (GSM) or UTF-16 code units (UCS-2)
    parts: int


def sms_length(text: str) -> SmsLength:
    """The encoding, length and number of parts `text` is sent in."""
    if all(c in _GSM or c in _GSM_EXT for c in text):
        widths = [2 if c in _GSM_EXT else 1 for c in text]
        return SmsLength("gsm7", sum(widths), _parts(widths, 160, 153))
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SmsLength("ucs2", sum(widths), _parts(widths, 70, 67))


def _parts(widths: list[int], single: int, each: int) -> int:
    """How many parts characters of these widths take: a character is never cut between two parts."""
    units = sum(widths)
    if units <= single:
        return 1 if units else 0
    if units == len(widths):  # no two-place character: nothing to keep whole
        return -(-units // each)
    return len(_chunks([b"\0" * w for w in widths], each))


@dataclass(frozen=True, slots=True)
class SmsParts:
    encoding: str  # "gsm7" or "ucs2"
    parts: tuple[bytes, ...]  # each part's bytes, with the concatenation header when there are several

    @property
    def concatenated(self) -> bool:
        return len(self.parts) > 1


def split_sms(text: str, reference: int) -> SmsParts:
    """The parts `text` is sent in; `reference` (0–255) ties the parts of one long message together."""
    if not 0 <= reference <= 255:
        raise ValueError("a concatenation reference is one octet")
    length = sms_length(text)
    if length.encoding == "gsm7":
        units = [_gsm_bytes(c) for c in text]
        single, each = 160, 153
    else:
        units = [c.encode("utf-16-be") for c in text]
        single, each = 140, 134  # octets: 70 and 67 UTF-16 code units
    whole = b"".join(units)
    if len(whole) <= single:
        return SmsParts(length.encoding, (whole,) if whole else ())
    width = len(units[0])
    if each % width == 0 and all(len(u) == width for u in units):  # no pair to cut: plain slices
        chunks = [whole[i : i + each] for i in range(0, len(whole), each)]
    else:
        chunks = _chunks(units, each)
    if len(chunks) > 255:
        raise ValueError("an SMS is at most 255 parts")
    total = len(chunks)
    header = bytes((0x05, 0x00, 0x03, reference, total))
    return SmsParts(length.encoding, tuple(header + bytes((i,)) + c for i, c in enumerate(chunks, 1)))


def _gsm_bytes(char: str) -> bytes:
    code = _GSM_CODE[char]
    return bytes((_ESCAPE, code & 0xFF)) if code > 0xFF else bytes((code,))


def _chunks(units: list[bytes], size: int) -> list[bytes]:
    """Whole characters (each unit one character's bytes) packed into chunks of at most `size` bytes."""
    chunks: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > size:
            chunks.append(current)
            current = b""
        current += unit
    chunks.append(current)
    return chunks


def decode_part(data: bytes, encoding: str) -> str:
    """The text of one part's bytes (header removed), the inverse of `split_sms` for one part."""
    if encoding == "ucs2":
        return data.decode("utf-16-be")
    by_code = {code: c for c, code in _GSM_CODE.items()}
    out, escaped = [], False
    for octet in data:
        if octet == _ESCAPE and not escaped:
            escaped = True
            continue
        out.append(by_code[(0x100 | octet) if escaped else octet])
        escaped = False
    return "".join(out)


def add_http_to_links(text: str) -> str:
    """`www.` links given without a scheme get `http://`, so every phone makes them clickable."""
    return _BARE_WWW.sub(r"http://\1", text)
