"""Outgoing email bytes: headers, MIME structure, encodings, RFC 8058, parsed back with the email package."""

from __future__ import annotations

import base64
import email
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import unquote
from typing import Any

import pytest

from herald.senders.mime import Attachment, attachment_from_rendered, build_email

DATE = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
ONE_CLICK = "https://t.herald.test/t/unsubscribe/eyJtIjoiYWJjIn0.c2lnbmF0dXJl"


def build(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "message_id": "5f0c2a9e1b7d4c3e8a6f",
        "domain": "news.herald.test",
        "date": DATE,
        "from_email": "news@news.herald.test",
        "from_name": "Herald News",
        "to_email": "ann@example.org",
        "subject": "Spring sale",
        "text": "Hello Ann\nSee you",
        "html": "<p>Hello Ann</p>",
    }
    return build_email(**(fields | overrides))


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(part: EmailMessage) -> str:
    """A text part's decoded content with its CRLF line ends (MIME's canonical form) read as newlines."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_headers_name_the_message_and_its_people() -> None:
    data = build(reply_to_email="help@herald.test", reply_to_name="Help desk", to_name="Ann Lee")
    message = parse(data)
    assert message["From"] == "Herald News <news@news.herald.test>"
    assert message["To"] == "Ann Lee <ann@example.org>"
    assert message["Reply-To"] == "Help desk <help@herald.test>"
    assert message["Subject"] == "Spring sale"
    assert message["Date"].datetime == DATE
    assert message["Message-ID"] == "<5f0c2a9e1b7d4c3e8a6f@news.herald.test>"
    assert message["X-Herald-Message-ID"] == "5f0c2a9e1b7d4c3e8a6f"
    assert message["MIME-Version"] == "1.0"
    assert "Reply-To" not in parse(build())


def test_lines_end_in_crlf_stay_short_and_are_ascii() -> None:
    data = build(
        subject="Весенняя распродажа 🌸 " * 6,
        text="строка " * 300,
        html="<p>" + "x" * 5000 + "</p>",
        unsubscribe_url=ONE_CLICK + "x" * 300,
        attachments=[Attachment("a.bin", bytes(range(256)) * 20)],
    )
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    head = data.split(b"\r\n\r\n", 1)[0]
    long = [line for line in head.split(b"\r\n") if len(line) > 78]
    assert all(b"https://" in line for line in long)  # only an unbreakable URL may pass 78


def test_non_ascii_names_and_subjects_are_encoded_and_read_back() -> None:
    data = build(
        from_name="Жанна «Новости» 🎉",
        to_name='Zoë, the "second"',
        subject="Привет, Аня! Скидки до 50% 🎉🌸",
    )
    message = parse(data)
    assert message["From"].addresses[0].display_name == "Жанна «Новости» 🎉"
    assert message["To"].addresses[0].display_name == 'Zoë, the "second"'
    assert message["Subject"] == "Привет, Аня! Скидки до 50% 🎉🌸"
    raw_from = data.split(b"\r\nFrom: ", 1)[1].split(b"\r\nTo:", 1)[0]
    assert raw_from.startswith(b"=?utf-8?")  # RFC 2047 encoded words, not raw UTF-8


def test_text_only_is_text_plain() -> None:
    message = parse(build(html=""))
    assert message.get_content_type() == "text/plain"
    assert text_of(message) == "Hello Ann\nSee you\n"
    assert message["Content-Transfer-Encoding"] == "7bit"


def test_html_only_is_text_html() -> None:
    message = parse(build(text=""))
    assert message.get_content_type() == "text/html"
    assert text_of(message) == "<p>Hello Ann</p>\n"


def test_both_are_alternatives_with_text_first() -> None:
    message = parse(build())
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    assert text_of(parts[1]) == "<p>Hello Ann</p>\n"


def test_neither_body_is_refused() -> None:
    with pytest.raises(ValueError, match="text or an HTML body"):
        build(text="", html="")


ENCODINGS = [
    ("short-ascii", "Hello", "7bit"),
    ("long-ascii-lines", "<p>" + "word " * 100 + "</p>", "quoted-printable"),
    ("cyrillic", "Привет, мир! " * 10, "base64"),
    ("mostly-ascii-with-accents", "Caf\u00e9 and a lot of plain words here\n" * 5, "quoted-printable"),
]


@pytest.mark.parametrize(
    ("html", "encoding"), [(h, e) for _, h, e in ENCODINGS], ids=[n for n, _, _ in ENCODINGS]
)
def test_the_email_package_picks_the_transfer_encoding(html: str, encoding: str) -> None:
    message = parse(build(text="", html=html))
    assert message["Content-Transfer-Encoding"] == encoding
    assert text_of(message) == html.removesuffix("\n") + "\n"  # a body always ends its last line


def test_attachments_wrap_the_body_in_mixed_with_their_exact_bytes() -> None:
    pdf = b"%PDF-1.4\x00\x01\xff binary"
    data = build(
        attachments=[
            Attachment("отчёт за март.pdf", pdf, "application/pdf"),
            Attachment("notes.txt", b"plain notes\n"),
            Attachment("blob", b"\x00\x00"),
        ]
    )
    message = parse(data)
    assert message.get_content_type() == "multipart/mixed"
    body, *files = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [f.get_content_type() for f in files] == [
        "application/pdf",
        "text/plain",
        "application/octet-stream",
    ]
    assert [f.get_filename() for f in files] == ["отчёт за март.pdf", "notes.txt", "blob"]
    assert [f.get_content_disposition() for f in files] == ["attachment"] * 3
    assert files[0]["Content-Transfer-Encoding"] == "base64"
    assert files[0].get_content() == pdf
    assert files[2].get_content() == b"\x00\x00"
    assert b"filename*0*=utf-8''" in data  # RFC 2231 for the non-ASCII name, continued over lines


def test_an_attachment_with_a_single_body_goes_beside_it() -> None:
    message = parse(build(html="", attachments=[Attachment("a.csv", b"a,b\r\n1,2\r\n")]))
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/csv"]


def test_rendered_attachments_decode_base64_or_read_their_path() -> None:
    inline = {
        "name": "a.png",
        "path": "",
        "content_base64": base64.b64encode(b"PNG").decode(),
        "content_type": "",
    }
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return b"from disk"

    assert attachment_from_rendered(inline, read) == Attachment("a.png", b"PNG", "")
    from_path = {
        "name": "",
        "path": "files/report.pdf",
        "content_base64": "",
        "content_type": "application/pdf",
    }
    assert attachment_from_rendered(from_path, read) == Attachment(
        "report.pdf", b"from disk", "application/pdf"
    )
    assert reads == ["files/report.pdf"]
    with pytest.raises(ValueError, match="not base64"):
        attachment_from_rendered({"name": "x", "content_base64": "!!!"}, read)
    with pytest.raises(ValueError, match="neither"):
        attachment_from_rendered({"name": "x"}, read)


def test_one_click_unsubscribe_follows_rfc_8058() -> None:
    message = parse(build(unsubscribe_url=ONE_CLICK, unsubscribe_mailto="unsubscribe@news.herald.test"))
    assert message["List-Unsubscribe"] == (
        f"<{ONE_CLICK}>, <mailto:unsubscribe@news.herald.test?subject=unsubscribe-5f0c2a9e1b7d4c3e8a6f>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_no_one_click_post_without_an_https_url() -> None:
    mail_only = parse(build(unsubscribe_mailto="unsubscribe@news.herald.test"))
    assert mail_only["List-Unsubscribe"] == (
        "<mailto:unsubscribe@news.herald.test?subject=unsubscribe-5f0c2a9e1b7d4c3e8a6f>"
    )
    assert "List-Unsubscribe-Post" not in mail_only
    plain_http = parse(build(unsubscribe_url="http://t.herald.test/u/1"))
    assert plain_http["List-Unsubscribe"] == "<http://t.herald.test/u/1>"
    assert "List-Unsubscribe-Post" not in plain_http
    neither = parse(build())
    assert "List-Unsubscribe" not in neither
    assert "List-Unsubscribe-Post" not in neither


def test_a_long_unsubscribe_url_stays_one_unbroken_url() -> None:
    url = "https://t.herald.test/t/unsubscribe/" + "A" * 400
    data = build(unsubscribe_url=url, unsubscribe_mailto="u@news.herald.test")
    assert f"List-Unsubscribe: <{url}>,\r\n <mailto:".encode() in data
    assert b"=?" not in data.split(b"List-Unsubscribe:", 1)[1].split(b"\r\nList-Unsubscribe-Post", 1)[0]
    assert parse(data)["List-Unsubscribe"].startswith(f"<{url}>, <mailto:")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.test/u",
        "https://",
        "/relative/path",
        "https://x.test/a b",
        "https://x.test/a,b",
        "https://x.test/é",
    ],
)
def test_unusable_unsubscribe_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        build(unsubscribe_url=url)


def test_list_id_has_the_resource_name_and_label() -> None:
    assert parse(build(list_id="weekly.news.herald.test"))["List-ID"] == "<weekly.news.herald.test>"
    named = parse(build(list_id="weekly.news.herald.test", list_name="Weekly news"))
    assert named["List-ID"] == "Weekly news <weekly.news.herald.test>"
    quoted = parse(build(list_id="weekly.news.herald.test", list_name="News, weekly"))
    assert quoted["List-ID"] == '"News, weekly" <weekly.news.herald.test>'
    data = build(list_id="weekly.news.herald.test", list_name="Еженедельные новости нашего большого магазина")
    assert parse(data)["List-ID"] == "Еженедельные новости нашего большого магазина <weekly.news.herald.test>"
    assert b"List-ID: =?utf-8?" in data


@pytest.mark.parametrize("list_id", ["nodot", "<a.b.test>", "a b.test", "x." * 128 + "test"])
def test_malformed_list_ids_are_refused(list_id: str) -> None:
    with pytest.raises(ValueError, match="List-ID"):
        build(list_id=list_id)


def test_feedback_id_is_optional() -> None:
    assert parse(build(feedback_id="c42:r7:herald"))["Feedback-ID"] == "c42:r7:herald"
    assert "Feedback-ID" not in parse(build())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"date": datetime(2025, 1, 1)}, "time zone"),
        ({"from_email": "not an address"}, "valid email"),
        ({"to_email": "ann@"}, "valid email"),
        ({"message_id": "a b"}, "Message-ID"),
        ({"message_id": "<x>"}, "Message-ID"),
        ({"domain": "bad domain"}, "not a domain"),
        ({"subject": "two\r\nBcc: victim@example.org"}, "linefeed"),
        ({"attachments": [Attachment("x", b"", "not a type")]}, "not a content type"),
    ],
)
def test_invalid_input_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**overrides)


def test_the_same_input_gives_the_same_bytes() -> None:
    attachments = [Attachment("a.txt", b"x")]
    assert build(attachments=attachments) == build(attachments=attachments)
    assert build(message_id="m1") != build(message_id="m2")


def test_the_date_keeps_its_offset() -> None:
    moscow = datetime(2025, 3, 14, 12, 26, 53, tzinfo=timezone(timedelta(hours=3)))
    assert parse(build(date=moscow))["Date"] == "Fri, 14 Mar 2025 12:26:53 +0300"


# --- every kind of message, parsed back ------------------------------------------------------------

PIECES = [
    "Ann",
    "sale",
    "50%",
    "Café",
    "Привет",
    "ёжик",
    "日本語のテキスト",
    "🌸",
    "👩‍👩‍👧",
    '"quoted"',
    "a,b",
    "back\\slash",
    "=?utf-8?q?not_a_word?=",
    "under_score",
    "x" * 90,
    "Ж" * 40,
    "<tag>",
    "tab\there",
]


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(PIECES) for _ in range(words))


def random_body(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randrange(1, 30)):
        line = random_text(rng, rng.randrange(0, 40))
        lines.append(line + rng.choice(["", " ", "  ", "\t"]))  # trailing white space must survive
    return rng.choice(["\n", "\r\n"]).join(lines)


def display_name(data: bytes, header: str) -> str:
    """A mailbox header's display name decoded as RFC 2047 §6.2 says: white space between adjacent
    encoded words is dropped. (The email package's address parser keeps it in phrases, even for names
    it encoded itself, so it cannot judge a long encoded name.)"""
    raw = email.message_from_bytes(data, policy=policy.compat32)[header]
    phrase = re.sub(r"\r?\n", "", raw).rpartition(" <")[0]
    if phrase.startswith("=?"):
        return str(make_header(decode_header(phrase)))
    if phrase.startswith('"'):
        return unquote(phrase)
    return phrase


def test_random_messages_read_back_exactly_with_the_email_package() -> None:
    rng = random.Random(20251214)
    for n in range(300):
        subject, from_name, to_name = (random_text(rng, rng.randrange(0, 12)) for _ in range(3))
        text = random_body(rng) if rng.random() < 0.8 else ""
        html = f"<p>{random_body(rng)}</p>" if rng.random() < 0.8 or not text else ""
        # (a file name in angle brackets would lose them: the email package's `unquote` strips them)
        filename = random_text(rng, 3).replace("<tag>", "tag")
        attachments = [Attachment(filename, rng.randbytes(rng.randrange(0, 300)))][: rng.randrange(2)]
        data = build(
            message_id=f"m{n}",
            subject=subject,
            from_name=from_name,
            to_name=to_name,
            text=text,
            html=html,
            attachments=attachments,
            unsubscribe_url=ONE_CLICK,
            list_id="weekly.news.herald.test",
            list_name=random_text(rng, 3),
        )
        bare = data.replace(b"\r\n", b"")
        assert data.isascii() and b"\n" not in bare and b"\r" not in bare
        head, _ = data.split(b"\r\n\r\n", 1)
        assert all(len(line) <= 78 or line.startswith(b"List-Unsubscribe:") for line in head.split(b"\r\n"))
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        message = parse(data)
        assert message.defects == []
        assert message["Subject"] == " ".join(subject.split())
        people = (("From", from_name, "news@news.herald.test"), ("To", to_name, "ann@example.org"))
        for header, name, address in people:
            assert message[header].addresses[0].addr_spec == address
            assert display_name(data, header) == " ".join(name.split())
        assert message["Message-ID"] == f"<m{n}@news.herald.test>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        body = message.get_body(("plain",)) if text else None
        if body is not None:
            assert text_of(body) == "\n".join(text.splitlines()) + "\n"
        if html:
            html_part = message.get_body(("html",))
            assert html_part is not None and text_of(html_part) == "\n".join(html.splitlines()) + "\n"
        if text and html:
            alternative = message if not attachments else next(message.iter_parts())
            assert alternative.get_content_type() == "multipart/alternative"
            assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
        for given, part in zip(attachments, list(message.iter_attachments()), strict=True):
            assert part.get_filename() == " ".join(given.filename.split())
            assert part.get_content() == given.content
        for part in message.walk():
            assert part.defects == []
            if not part.is_multipart():
                assert part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")
