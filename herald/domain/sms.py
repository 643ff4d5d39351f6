"""How long an SMS is: its encoding, characters and parts (3GPP TS 23.038 / 23.040).

A message that fits the GSM 7-bit alphabet is sent in it: 160 characters in
one part, 153 per part when split (the rest of each part holds the
concatenation header); characters of the extension table (`{ } [ ] ~ \\ | ^ €`
and form feed) take two places. Anything else goes as UCS-2: 70 characters in
one part, 67 per part when split, where a character outside the Basic
Multilingual Plane (most emoji) takes two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = "\f^{}\\[~]|€"
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
        units = sum(2 if c in _GSM_EXT else 1 for c in text)
        return SmsLength("gsm7", units, _parts(units, 160, 153))
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    return SmsLength("ucs2", units, _parts(units, 70, 67))


def _parts(units: int, single: int, each: int) -> int:
    if units <= single:
        return 1 if units else 0
    return -(-units // each)


def add_http_to_links(text: str) -> str:
    """`www.` links given without a scheme get `http://`, so every phone makes them clickable."""
    return _BARE_WWW.sub(r"http://\1", text)
