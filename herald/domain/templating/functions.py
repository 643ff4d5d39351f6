"""The template functions: format, adddate, length, limit, urlencode, urldecode, crypt.

All are total: a missing or unusable argument gives an empty result, never an error.

`format <value> <layout>` is chosen by the value's type: a date or datetime (or an ISO
8601 string) is laid out with the guide's tokens; a number (or a string spelling one) is
grouped by threes with the layout as the separator (`{format 1000000000 ","}` →
`1,000,000,000`). A fraction is kept as written, after `,` when the separator is `.` and
after `.` otherwise (8000.5 with "." → `8.000,5`).

Date layout tokens (the guide's list; each maps onto Go's reference time
`Mon Jan 2 15:04:05 -0700 2006`), matched longest first, everything else literal:
`%y yy` 06 · `%Y YYYY` 2006 · `%m MM` 01 · `%B month` January · `%d` 2 · `%D` 02 ·
`DD` _2 (space-padded) · `%A weekday` Monday · `%H hh hours` 15 · `%I twelve_h` 3 ·
`%M mm` 04 · `%S ss` 05 · `am %p` pm · `AM` PM · `tzone` -07 · `timezone` -07:00 ·
`%Z` Z0700 (`Z` for UTC, else ±hhmm). Names are English. A date is laid out in its own
offset; naive datetimes and plain dates count as UTC.

`adddate(date years months days)` adds like Go's `time.AddDate`: overflowing days roll
into the next month (Oct 31 + 1 month = Dec 1); negative amounts subtract.

`urlencode` is Go's `url.PathEscape` (the guide's example keeps `:` and encodes `/`):
letters, digits, `-_.~` and `$&+:=@` stay, everything else is %-encoded as UTF-8.
`urldecode` undoes %-escapes and leaves `+` alone.

`crypt(<algorithm> <value> [<salt or key>])`, the value taken as its UTF-8 text; an empty
value gives an empty result (a missing field never turns into the hash of the salt):
- `base58` (Bitcoin alphabet) and `base64` (standard alphabet, padded): encodings, no salt.
- `md5`, `sha1`, `sha256`, `xxh32`, `xxh64` (seed 0): the hash of value + salt (the salt
  appended), as lowercase hex.
- `aes` and `blowfish`: the key's UTF-8 bytes are the key (AES: 16, 24 or 32 bytes for
  AES-128/192/256; Blowfish: 4 to 56 bytes); ECB mode with PKCS#7 padding, so the same
  value and key always give the same token and a receiver decrypts with nothing but the
  key; the ciphertext is base64 (standard alphabet, padded). ECB hides nothing about
  repeated blocks; it suits the short identifiers templates carry, not documents.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any
from urllib.parse import quote, unquote

import xxhash
from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
from cryptography.hazmat.primitives.ciphers import (
    BlockCipherAlgorithm,
    Cipher,
    algorithms,
    modes,
)
from cryptography.hazmat.primitives.padding import PKCS7

from herald.domain.templating.values import (
    date_value,
    is_number,
    number,
    numeric_text,
    plain_number,
    to_text,
)

CRYPT_ALGORITHMS = ("base58", "base64", "sha1", "sha256", "md5", "xxh32", "xxh64", "aes", "blowfish")

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _offset(moment: datetime, with_colon: bool, hours_only: bool = False) -> str:
    delta = moment.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    if hours_only:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}:{rest:02d}" if with_colon else f"{sign}{hours:02d}{rest:02d}"


def _zulu(moment: datetime) -> str:
    return "Z" if not moment.utcoffset() else _offset(moment, with_colon=False)


def _twelve(moment: datetime) -> str:
    return str(moment.hour % 12 or 12)


_Layout = Callable[[datetime], str]
_LAYOUTS: tuple[tuple[tuple[str, ...], _Layout], ...] = (
    (("%y", "yy"), lambda m: f"{m.year % 100:02d}"),
    (("%Y", "YYYY"), lambda m: f"{m.year:04d}"),
    (("%m", "MM"), lambda m: f"{m.month:02d}"),
    (("%B", "month"), lambda m: _MONTHS[m.month - 1]),
    (("%d",), lambda m: str(m.day)),
    (("%D",), lambda m: f"{m.day:02d}"),
    (("DD",), lambda m: f"{m.day:>2}"),
    (("%A", "weekday"), lambda m: _WEEKDAYS[m.weekday()]),
    (("%H", "hh", "hours"), lambda m: f"{m.hour:02d}"),
    (("%I", "twelve_h"), _twelve),
    (("%M", "mm"), lambda m: f"{m.minute:02d}"),
    (("%S", "ss"), lambda m: f"{m.second:02d}"),
    (("am", "%p"), lambda m: "pm" if m.hour >= 12 else "am"),
    (("AM",), lambda m: "PM" if m.hour >= 12 else "AM"),
    (("tzone",), lambda m: _offset(m, with_colon=False, hours_only=True)),
    (("timezone",), lambda m: _offset(m, with_colon=True)),
    (("%Z",), _zulu),
)
_TOKENS = {name: layout for names, layout in _LAYOUTS for name in names}
_LAYOUT = re.compile("|".join(re.escape(name) for name in sorted(_TOKENS, key=len, reverse=True)))


def format_date(value: date | datetime, layout: str) -> str:
    """`value` laid out with the guide's date tokens."""
    moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    return _LAYOUT.sub(lambda match: _TOKENS[match.group()](moment), layout)


def format_number(value: Any, separator: str) -> str:
    """The number grouped by threes with `separator`; a fraction follows the other mark."""
    text = numeric_text(value) or plain_number(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("+-").partition(".")
    head = len(whole) % 3 or 3
    groups = [whole[:head]] + [whole[i : i + 3] for i in range(head, len(whole), 3)]
    grouped = sign + separator.join(groups)
    if not fraction:
        return grouped
    return f"{grouped}{',' if separator == '.' else '.'}{fraction}"


def format_value(value: Any, layout: Any) -> str:
    """`{format value layout}`: a date laid out, or a number grouped; anything else as text."""
    pattern = to_text(layout)
    if type(value) is int:  # the common case (points, counts), grouped by Python itself
        return format(value, ",").replace(",", pattern)
    if isinstance(value, date):
        return format_date(value, pattern)
    if is_number(value) or numeric_text(value) is not None:
        return format_number(value, pattern)
    found = date_value(value)
    if found is not None:
        return format_date(found, pattern)
    return to_text(value)


def add_date(value: Any, years: Any, months: Any, days: Any) -> date | datetime | None:
    """`adddate(date years months days)`, normalised like Go's AddDate; None when no date."""
    found = date_value(value)
    if found is None:
        return None
    total = found.year * 12 + found.month - 1 + _whole(months) + _whole(years) * 12
    year, month = divmod(total, 12)
    shifted = found.day - 1 + _whole(days)
    if not 1 <= year <= 9999 or abs(shifted) > _MAX_DAYS:
        return None
    try:
        return found.replace(year=year, month=month + 1, day=1) + timedelta(days=shifted)
    except OverflowError:
        return None


_MAX_DAYS = 3_652_059  # days from 0001-01-01 to 9999-12-31: any larger shift leaves the calendar


def _whole(value: Any) -> int:
    """The argument as a whole number; 0 when it is missing, not a number, or not finite."""
    found = number(value)
    if found is None:
        return 0
    if isinstance(found, int):
        return found
    finite = found.is_finite() if isinstance(found, Decimal) else math.isfinite(found)
    return int(found) if finite else 0


def length(value: Any) -> int:
    """`length(x)`: characters of a string, items of a list or object; 0 when missing."""
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    return len(to_text(value))


def limit(value: Any, count: Any) -> Any:
    """`limit(x n)`: the first n items of a list or object, or characters of a string."""
    size = min(max(_whole(count), 0), sys.maxsize)  # islice takes no larger stop
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value[:size])
    if isinstance(value, Mapping):
        return dict(islice(value.items(), size))
    return to_text(value)[:size]


def urlencode(value: Any) -> str:
    """`urlencode(x)`: Go's url.PathEscape."""
    return quote(to_text(value), safe="$&+:=@")


def urldecode(value: Any) -> str:
    """`urldecode(x)`: %-escapes decoded as UTF-8."""
    return unquote(to_text(value))


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_HASHES: dict[str, Callable[[bytes], str]] = {
    "md5": lambda data: hashlib.md5(data).hexdigest(),
    "sha1": lambda data: hashlib.sha1(data).hexdigest(),
    "sha256": lambda data: hashlib.sha256(data).hexdigest(),
    "xxh32": lambda data: xxhash.xxh32(data).hexdigest(),
    "xxh64": lambda data: xxhash.xxh64(data).hexdigest(),
}
_CIPHER_KEY_BYTES = {"aes": (16, 24, 32), "blowfish": tuple(range(4, 57))}


def cipher_key_problem(algorithm: str, key: str) -> str:
    """Why `key` cannot key `algorithm` ("" when it can)."""
    size = len(key.encode())
    if size in _CIPHER_KEY_BYTES[algorithm]:
        return ""
    wanted = "16, 24 or 32" if algorithm == "aes" else "4 to 56"
    return f"the {algorithm} key must be {wanted} bytes long, got {size}"


def crypt(value: Any, algorithm: str, key: Any = None) -> str:
    """`crypt(algorithm value [salt|key])`: see the module docstring for each algorithm."""
    text = to_text(value)
    if not text:
        return ""
    data = text.encode()
    if algorithm == "base64":
        return base64.b64encode(data).decode()
    if algorithm == "base58":
        return _base58(data)
    secret = to_text(key)
    if algorithm in _HASHES:
        return _HASHES[algorithm](data + secret.encode())
    if cipher_key_problem(algorithm, secret):
        return ""
    cipher: BlockCipherAlgorithm = (
        algorithms.AES(secret.encode()) if algorithm == "aes" else Blowfish(secret.encode())
    )
    padder = PKCS7(cipher.block_size).padder()
    encryptor = Cipher(cipher, modes.ECB()).encryptor()
    padded = padder.update(data) + padder.finalize()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _base58(data: bytes) -> str:
    number_ = int.from_bytes(data, "big")
    digits = ""
    while number_:
        number_, rest = divmod(number_, 58)
        digits = _BASE58[rest] + digits
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + digits
