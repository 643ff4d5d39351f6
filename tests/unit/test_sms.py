"""SMS length and parts: encodings, extension characters, the cut into concatenated parts; bare links."""

from __future__ import annotations

import pytest

from herald.domain.sms import SmsLength, add_http_to_links, decode_part, sms_length, split_sms


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
        ("{" * 153, SmsLength("gsm7", 306, 3)),  # 76 escapes fill a part: a pair is never cut
        ("😀" * 34, SmsLength("ucs2", 68, 1)),
        ("😀" * 67, SmsLength("ucs2", 134, 3)),  # 33 surrogate pairs a part (66 of 67 units): 33+33+1
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


@pytest.mark.parametrize(
    "text",
    ["Hello", "a" * 160, "a" * 161, "a" * 500, "{" * 153, "x" * 152 + "€" + "y", "Привет! " * 30, "😀" * 40],
)
def test_split_sms_cuts_whole_characters_into_as_many_parts_as_counted(text: str) -> None:
    split = split_sms(text, reference=0x2A)
    assert len(split.parts) == sms_length(text).parts
    if split.concatenated:
        total = len(split.parts)
        assert [p[:6] for p in split.parts] == [bytes((5, 0, 3, 0x2A, total, i)) for i in range(1, total + 1)]
        limit = 6 + (153 if split.encoding == "gsm7" else 134)
        assert all(len(p) <= limit for p in split.parts)
        bodies = [p[6:] for p in split.parts]
    else:
        assert len(split.parts[0]) <= (160 if split.encoding == "gsm7" else 140)
        bodies = list(split.parts)
    assert "".join(decode_part(b, split.encoding) for b in bodies) == text


def test_gsm_text_is_one_septet_per_octet_with_escapes_for_the_extension_table() -> None:
    split = split_sms("@A{€", reference=0)
    assert split.encoding == "gsm7"
    assert split.parts == (bytes((0x00, 0x41, 0x1B, 0x28, 0x1B, 0x65)),)


def test_a_reference_is_one_octet() -> None:
    with pytest.raises(ValueError):
        split_sms("hi", reference=256)
