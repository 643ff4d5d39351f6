"""SMS length: encodings, extension characters, parts; the http:// prefix for bare links."""

from __future__ import annotations

import pytest

from herald.domain.sms import SmsLength, add_http_to_links, sms_length


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsLength("gsm7", 0, 0)),
        ("Hello", SmsLength("gsm7", 5, 1)),
        ("a" * 160, SmsLength("gsm7", 160, 1)),
        ("a" * 161, SmsLength("gsm7", 161, 2)),
        ("a" * 306, SmsLength("gsm7", 306, 2)),
        ("a" * 307, SmsLength("gsm7", 307, 3)),
        ("{€}", SmsLength("gsm7", 6, 1)),
        ("a" * 159 + "€", SmsLength("gsm7", 161, 2)),
        ("Привет", SmsLength("ucs2", 6, 1)),
        ("я" * 70, SmsLength("ucs2", 70, 1)),
        ("я" * 71, SmsLength("ucs2", 71, 2)),
        ("я" * 134, SmsLength("ucs2", 134, 2)),
        ("я" * 135, SmsLength("ucs2", 135, 3)),
        ("Hi 😀", SmsLength("ucs2", 5, 1)),
    ],
)
def test_sms_length(text: str, expected: SmsLength) -> None:
    assert sms_length(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see www.shop.com now", "see http://www.shop.com now"),
        ("see https://www.shop.com", "see https://www.shop.com"),
        ("mail info@www.shop.com", "mail info@www.shop.com"),
        ("WWW.SHOP.COM", "http://WWW.SHOP.COM"),
    ],
)
def test_bare_www_links_get_http(text: str, expected: str) -> None:
    assert add_http_to_links(text) == expected
