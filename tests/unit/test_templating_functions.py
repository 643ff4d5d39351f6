"""The template functions: format (numbers and dates), adddate, length, limit, urlencode, urldecode, crypt."""

from __future__ import annotations

import base64
import hashlib
import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import xxhash
from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.padding import PKCS7

from herald.domain.templating import RenderContext, compile_template


def render(source: str, **json: Any) -> str:
    return compile_template(source).render(RenderContext(json=json))


NUMBERS = [
    ("guide-thousands", 1000000000, ",", "1,000,000,000"),
    ("guide-price", 8000, ".", "8.000"),
    ("numeric-string", "8000", ".", "8.000"),
    ("small", 999, ",", "999"),
    ("space-separator", 1000, " ", "1 000"),
    ("negative", -1234567, ",", "-1,234,567"),
    ("fraction-after-dot", 1234.5, ",", "1,234.5"),
    ("fraction-after-comma", 1234.5, ".", "1.234,5"),
    ("string-keeps-its-fraction", "99.90", ".", "99,90"),
    ("whole-float", 8000.0, ".", "8.000"),
    ("zero", 0, ",", "0"),
    ("decimal", Decimal("1234567.89"), " ", "1 234 567.89"),
    ("multi-character-separator", 1234567, "' ", "1' 234' 567"),
    ("no-separator", 1234567, "", "1234567"),
]


@pytest.mark.parametrize(
    ("value", "separator", "expected"), [c[1:] for c in NUMBERS], ids=[c[0] for c in NUMBERS]
)
def test_format_groups_numbers(value: Any, separator: str, expected: str) -> None:
    assert render("{format json.v json.sep}", v=value, sep=separator) == expected


# Go's reference time, in which the guide states every token's output.
REFERENCE = datetime(2006, 1, 2, 15, 4, 5, tzinfo=timezone(timedelta(hours=-7)))
INDIA = timezone(timedelta(hours=5, minutes=30))
DATE_TOKENS = [
    ("%y", "06"), ("%Y", "2006"), ("yy", "06"), ("YYYY", "2006"),
    ("%m", "01"), ("MM", "01"), ("%B", "January"), ("month", "January"),
    ("%d", "2"), ("%D", "02"), ("DD", " 2"), ("%A", "Monday"), ("weekday", "Monday"),
    ("%H", "15"), ("%I", "3"), ("hh", "15"), ("hours", "15"), ("twelve_h", "3"),
    ("%M", "04"), ("mm", "04"), ("%S", "05"), ("ss", "05"),
    ("am", "pm"), ("AM", "PM"), ("%p", "pm"),
    ("tzone", "-07"), ("timezone", "-07:00"), ("%Z", "-0700"),
]  # fmt: skip


@pytest.mark.parametrize(("token", "expected"), DATE_TOKENS, ids=[t for t, _ in DATE_TOKENS])
def test_format_date_tokens_give_the_guides_outputs(token: str, expected: str) -> None:
    assert render("{format json.d json.layout}", d=REFERENCE, layout=token) == expected


DATES = [
    ("guide-birthday", "1998-11-02", "%D.%m.%Y", "02.11.1998"),
    ("date-object", date(1998, 11, 2), "%d/%m/yy", "2/11/98"),
    ("iso-string-utc", "2019-08-22T00:00:00.000Z", "YYYY-MM-%D hh:mm:ss %Z", "2019-08-22 00:00:00 Z"),
    ("naive-counts-as-utc", datetime(2020, 1, 1, 0, 30), "%I:%M AM tzone timezone", "12:30 AM +00 +00:00"),
    ("longest-token-first", REFERENCE, "weekday, month DD", "Monday, January  2"),
    ("literal-text-kept", REFERENCE, "Date: %D of month!", "Date: 02 of January!"),
    ("offset-with-minutes", datetime(2020, 5, 5, 9, tzinfo=INDIA), "%Z timezone", "+0530 +05:30"),
    ("noon-is-pm", datetime(2020, 5, 5, 12, tzinfo=UTC), "%I %p", "12 pm"),
    ("not-a-date-prints-as-is", "soon", "%Y", "soon"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "layout", "expected"), [c[1:] for c in DATES], ids=[c[0] for c in DATES])
def test_format_dates(value: Any, layout: str, expected: str) -> None:
    assert render("{format json.d json.layout}", d=value, layout=layout) == expected


ADDDATE = [
    ("days", "2020-06-22", "0 0 10", "2020-07-02"),
    ("month-overflow-rolls-over", "2020-10-31", "0 1 0", "2020-12-01"),
    ("leap-month-overflow", "2020-01-31", "0 1 0", "2020-03-02"),
    ("year-from-leap-day", "2020-02-29", "1 0 0", "2021-03-01"),
    ("negative-days", "2020-03-01", "0 0 -1", "2020-02-29"),
    ("negative-months-across-years", "2020-01-15", "0 -1 0", "2019-12-15"),
    ("all-three", "2020-01-01", "1 2 3", "2021-03-04"),
    ("keeps-time-and-offset", "2019-08-22T10:00:00+03:00", "0 0 1", "2019-08-23T10:00:00+03:00"),
    ("numeric-string-amounts", "2020-01-01", '"1" "0" "0"', "2021-01-01"),
    ("not-a-date", "never", "0 0 1", ""),
    ("out-of-range", "9999-12-31", "1 0 0", ""),
]


@pytest.mark.parametrize(
    ("value", "amounts", "expected"), [c[1:] for c in ADDDATE], ids=[c[0] for c in ADDDATE]
)
def test_adddate(value: str, amounts: str, expected: str) -> None:
    assert render(f"{{adddate(json.d {amounts})}}", d=value) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{length("abc ")}', "4"),
        ('{length("привет")}', "6"),
        ("{length(json.list)}", "3"),
        ("{length(json.object)}", "1"),
        ("{length(json.nothing)}", "0"),
        ("{length(json.number)}", "5"),
        ('{array[1 "2" 3.3]}', "1, 2, 3.3"),
        ("{array[]}", ""),
        ("{length(array[json.list json.nothing])}", "2"),
        ("{limit(array[1 2 3] 2)}", "1, 2"),
        ("{limit(json.list 5)}", "a, b, c"),
        ('{limit("abcdef" 3)}', "abc"),
        ("{limit(json.list -1)}", ""),
        ("{limit(json.object 1)}", '{"k": "v"}'),
        ("{limit(json.number 2)}", "12"),
    ],
)
def test_length_array_limit(source: str, expected: str) -> None:
    assert render(source, list=["a", "b", "c"], object={"k": "v"}, number=12345) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://test.testdomain.com/some", "http:%2F%2Ftest.testdomain.com%2Fsome"),
        ("a b", "a%20b"),
        ("a/b?c#d", "a%2Fb%3Fc%23d"),
        ("$&+:=@", "$&+:=@"),
        (",;", "%2C%3B"),
        ("-_.~", "-_.~"),
        ("ü", "%C3%BC"),
        (42, "42"),
    ],
)
def test_urlencode_is_gos_path_escape(value: Any, expected: str) -> None:
    assert render("{urlencode(json.v)}", v=value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("http:%2F%2Ftest.testdomain.com%2Fsome", "http://test.testdomain.com/some"), ("%C3%BC+x", "ü+x")],
)
def test_urldecode(value: str, expected: str) -> None:
    assert render("{urldecode(json.v)}", v=value) == expected


def _digest(name: str, data: bytes) -> str:
    if name.startswith("xxh"):
        return str(getattr(xxhash, name)(data).hexdigest())
    return hashlib.new(name, data).hexdigest()


CRYPT = [
    ("base58", '{crypt(base58 "hello world")}', "StV1DL6CwTryKyV"),
    ("base58-guide", '{crypt(base58 "value")}', "EMeAB7i"),
    ("base58-leading-zero-bytes", "{crypt(base58 json.zeros)}", "11ZiCa"),
    ("base64-number", "{crypt(base64 42)}", "NDI="),
    ("base64-unicode", '{crypt(base64 "ё")}', base64.b64encode("ё".encode()).decode()),
    ("algorithm-any-case-or-quoted", '{crypt(BASE64 42)}{crypt("base64" 42)}', "NDI=NDI="),
    ("empty-value", '{crypt(sha1 json.nothing "salt")}', ""),
    *[
        (f"{name}-salted", f'{{crypt({name} "x" "salt")}}', _digest(name, b"xsalt"))
        for name in ("md5", "sha1", "sha256", "xxh32", "xxh64")
    ],
    *[
        (f"{name}-unsalted", f'{{crypt({name} "x")}}', _digest(name, b"x"))
        for name in ("md5", "sha256", "xxh64")
    ],
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in CRYPT], ids=[c[0] for c in CRYPT])
def test_crypt_encodings_and_hashes(source: str, expected: str) -> None:
    assert render(source, zeros="\x00\x00abc") == expected


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("aes", "key1234567891234"),
        ("aes", "k" * 24),
        ("aes", "k" * 32),
        ("blowfish", "key12345"),
        ("blowfish", "kkkk"),
    ],
)
@pytest.mark.parametrize("value", ["9500", "a longer value that spans several cipher blocks"])
def test_crypt_ciphers_are_ecb_pkcs7_base64_and_decrypt_with_the_key(
    algorithm: str, key: str, value: str
) -> None:
    token = render(f'{{crypt({algorithm} json.v "{key}")}}', v=value)
    assert token == render(f'{{crypt({algorithm} json.v "{key}")}}', v=value)
    cipher = algorithms.AES(key.encode()) if algorithm == "aes" else Blowfish(key.encode())
    decryptor = Cipher(cipher, modes.ECB()).decryptor()
    padded = decryptor.update(base64.b64decode(token)) + decryptor.finalize()
    unpadder = PKCS7(cipher.block_size).unpadder()
    assert (unpadder.update(padded) + unpadder.finalize()).decode() == value


def test_a_cipher_key_from_data_that_cannot_key_the_cipher_gives_nothing() -> None:
    assert render("[{crypt(aes json.v json.key)}]", v="x", key="short") == "[]"


# Values a profile field or a trigger's payload can hold, among them the ones that overflow dates and ints.
_EDGE_VALUES = (
    None,
    True,
    0,
    -1,
    100000000000,
    10**40,
    -(10**40),
    2**63,
    float("inf"),
    float("-inf"),
    float("nan"),
    Decimal("1e400"),
    Decimal("NaN"),
    "1e400",
    "99999999999999999999999",
    "",
    "x",
    "2026-01-01",
    "9999-12-31T23:59:59+14:00",
    [1, 2],
    {"k": "v"},
)
_EVERY_FUNCTION = (
    "{adddate(json.d json.a json.b json.b)}",
    "{adddate(json.a 0 0 json.b)}",
    "{format json.a json.b}",
    '{format json.a "%Y-%m-%D %H:%M timezone"}',
    "{limit(json.a json.b)}",
    "{length(json.a)}",
    "{urlencode(json.a)}{urldecode(json.b)}",
    "{crypt(base58 json.a)}{crypt(sha256 json.a json.b)}{crypt(aes json.a json.b)}",
)


@pytest.mark.parametrize("source", _EVERY_FUNCTION)
def test_every_function_is_total_over_any_value_a_profile_can_hold(source: str) -> None:
    """No argument makes a function raise (`adddate(... 100000000000)` overflowed): each gives a text."""
    for a, b in itertools.product(_EDGE_VALUES, repeat=2):
        assert isinstance(render(source, a=a, b=b, d="2026-01-01"), str), (a, b)


def test_adddate_beyond_the_calendar_is_empty() -> None:
    assert render("{adddate(json.d 0 0 json.n)}", d="2026-01-01", n=100000000000) == ""
    assert render("{adddate(json.d 0 0 json.n)}", d="2026-01-01", n=-3_652_060) == ""
    assert render("{adddate(json.d json.n 0 0)}", d="2026-01-01", n=float("inf")) == "2026-01-01"
