"""Building one outgoing email's bytes (RFC 5322 + MIME) from a rendered message, with no I/O.

`build_email` is pure: the date is given, attachment bytes are given (the
caller reads files), and the same arguments always give the same bytes.

The bytes are written directly, not through `email.message.EmailMessage`:
its header objects cost ≈ 1.8 ms for a 10 KB message (≈ 543 messages/s on
this machine) against ≈ 0.14 ms written as bytes (≈ 7,400/s). The `email`
package stays the tests' judge: they parse every kind of message back with it.

Decisions where the task is silent:
- The output is pure ASCII with CRLF line ends, so it needs no 8BITMIME at
  the relay and no relay re-encodes it after DKIM signing (which would break
  the signature). Text and HTML parts are 7bit when they are ASCII with lines
  of at most 78 characters; otherwise quoted-printable when fewer than one
  byte in six needs escaping, else base64 (what is shorter: Cyrillic text
  comes out base64, mostly ASCII HTML with long lines quoted-printable).
  Attachments are base64. Body lines end in CRLF whatever the rendered text
  used, and a body always ends its last line.
- Display names and subjects that are not ASCII are RFC 2047 encoded words
  (`=?utf-8?q?...?=` or `?b?`, whichever is shorter, each at most 66
  characters, so it fits a line after any header's name, and holding whole
  characters); a subject keeps its ASCII words
  as they are and encodes only the runs of words that need it. An ASCII name
  with specials is a quoted string. A word too long to fold under 78
  characters is encoded too, so it can be split. Runs of white space in a
  subject or a name become one space; a CR or LF in a subject is refused.
- Headers are folded before spaces to keep lines within 78 characters; a URL
  longer than a line (List-Unsubscribe) stays unbroken, since no mail client
  reads an encoded word as a URL. No line passes 998 characters (RFC 5322
  §2.1.1): a header that would is refused.
- Multipart boundaries are derived from a hash of everything the message
  holds, not drawn at random, so output is reproducible; a part cannot
  contain its own hash, and `=_` never appears in quoted-printable or base64.
- Attachment file names use RFC 2231 (`filename*0*=utf-8''...`, continued
  over lines) when not ASCII, too long for a line or holding `=?` (which clients would
  decode as an RFC 2047 encoded word, though the RFC does not allow one there). An attachment without a
  content type gets one from its file name's extension (the standard
  library's built-in table, not the machine's), else `application/octet-stream`.
- `List-Unsubscribe-Post: List-Unsubscribe=One-Click` is written only when
  the unsubscribe URL is https (RFC 8058 §3.1); an http URL is still listed.
- Invalid input (a naive date, a malformed address, id, URL or List-ID, an
  email with neither HTML nor text) raises ValueError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import quote as percent_quote
from urllib.parse import urlsplit

from herald.domain.contacts import normalize_email
from herald.domain.errors import ValidationFailed

MAX_LIST_ID_LENGTH = 255  # the guide's limit for a resource's List-ID
MAX_LINE = 998  # RFC 5322 §2.1.1: a line longer than this is not mail
FOLD_AT = 78  # RFC 5322's recommended line length, where headers fold
CRLF = b"\r\n"

# RFC 5322 dot-atom-text: what a Message-ID's left part and a List-ID may be made of.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_PHRASE_SAFE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+$")  # an ASCII display name needing no quotes
_TOKEN_SAFE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an RFC 2045 token: a parameter value unquoted
_ONE_CLICK = "List-Unsubscribe=One-Click"
_BUILTIN_TYPES = mimetypes.MimeTypes()  # the built-in table only: the same on every machine

# A word longer than this cannot fold under 78 characters after its header's name ("Reply-To: ").
_LONGEST_WORD = 66
_ENCODED_WORD_TEXT = _LONGEST_WORD - len("=?utf-8?q??=")  # room for the encoded text in one encoded word
# Q encoding (RFC 2047 §5 (3), the strictest form, valid in phrases and unstructured text alike)
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE = [chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]
# Bytes quoted-printable writes as they are; any other byte costs three characters.
_QP_LITERAL = bytes(b for b in range(256) if 32 <= b < 127 and b != ord("=")) + b"\t\r\n"
_BASE64_LINE = 57  # bytes per 76-character base64 line


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to an email: its name, its bytes and its content type ("" to guess by name)."""

    filename: str
    content: bytes
    content_type: str = ""


def attachment_from_rendered(spec: Mapping[str, str], read: Callable[[str], bytes]) -> Attachment:
    """A rendered email's attachment (`name`, `path`, `content_base64`, `content_type`) with its bytes.

    Inline base64 content wins; otherwise `read(path)` supplies the bytes, so
    the caller decides where files come from.
    """
    path = spec.get("path", "")
    name = spec.get("name", "") or posixpath.basename(path) or "attachment"
    encoded = spec.get("content_base64", "")
    if encoded:
        try:
            content = base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise ValueError(f"attachment {name!r}: content_base64 is not base64 ({error})") from None
    elif path:
        content = read(path)
    else:
        raise ValueError(f"attachment {name!r} has neither content_base64 nor a path")
    return Attachment(name, content, spec.get("content_type", ""))


def build_email(
    *,
    message_id: str,
    domain: str,
    date: datetime,
    from_email: str,
    to_email: str,
    subject: str = "",
    text: str = "",
    html: str = "",
    from_name: str = "",
    to_name: str = "",
    reply_to_email: str = "",
    reply_to_name: str = "",
    attachments: Sequence[Attachment] = (),
    unsubscribe_url: str = "",
    unsubscribe_mailto: str = "",
    list_id: str = "",
    list_name: str = "",
    feedback_id: str = "",
) -> bytes:
    """The message's bytes, CRLF-terminated lines of pure ASCII, ready for DKIM signing and SMTP DATA.

    `message_id` is Herald's per-recipient id (`Message-ID: <message_id@domain>`
    and `X-Herald-Message-ID`); `domain` is the sender's domain;
    `unsubscribe_url` is the one-click URL and `unsubscribe_mailto` the address
    that unsubscribes by mail; `list_id` is the resource's `label.domain` and
    `list_name` its display name.
    """
    if not text and not html:
        raise ValueError("an email needs a text or an HTML body")
    left = _message_id(message_id)
    head = [
        _field("Date", _date(date)),
        _field("From", _mailbox(from_name, from_email, "from_email")),
        _field("To", _mailbox(to_name, to_email, "to_email")),
    ]
    if reply_to_email:
        head.append(_field("Reply-To", _mailbox(reply_to_name, reply_to_email, "reply_to_email")))
    head.append(_field("Subject", _unstructured(subject)))
    head.append(_field("Message-ID", f"<{left}@{_domain(domain)}>"))
    head.append(_field("X-Herald-Message-ID", left))
    if list_id:
        head.append(_field("List-ID", list_id_header(list_name, list_id)))
    unsubscribe = list_unsubscribe(unsubscribe_url, unsubscribe_mailto, message_id)
    if unsubscribe:
        head.append(_field("List-Unsubscribe", unsubscribe))
        if urlsplit(unsubscribe_url).scheme == "https":
            head.append(_field("List-Unsubscribe-Post", _ONE_CLICK))
    if feedback_id:
        head.append(_field("Feedback-ID", _one_line(feedback_id, "Feedback-ID")))
    head.append(b"MIME-Version: 1.0\r\n")
    digest = _content_digest(message_id, text, html, attachments)
    content_headers, body = _body(text, html, attachments, digest)
    return b"".join(head) + content_headers + CRLF + body


def list_unsubscribe(url: str, mailto: str, message_id: str) -> str:
    """The `List-Unsubscribe` value (RFC 2369): the one-click URL first, then the mailto; "" for neither."""
    entries: list[str] = []
    if url:
        entries.append(f"<{_http_url(url)}>")
    if mailto:
        address = _checked_email(mailto.removeprefix("mailto:"), "unsubscribe_mailto")
        entries.append(f"<mailto:{address}?subject=unsubscribe-{message_id}>")
    return ", ".join(entries)


def list_id_header(name: str, list_id: str) -> str:
    """The `List-ID` value (RFC 2919): `Name <label.domain>`, the name RFC 2047-encoded when not ASCII."""
    if len(list_id) > MAX_LIST_ID_LENGTH or "." not in list_id or not _DOT_ATOM.match(list_id):
        raise ValueError(f"{list_id!r} is not a List-ID (label.domain, at most {MAX_LIST_ID_LENGTH} chars)")
    name = " ".join(name.split())
    return f"{_phrase(name)} <{list_id}>" if name else f"<{list_id}>"


# --- the body --------------------------------------------------------------------------------------


def _body(text: str, html: str, attachments: Sequence[Attachment], digest: str) -> tuple[bytes, bytes]:
    """(content headers, body): text → text/plain; html → text/html; both → multipart/alternative;
    with attachments → multipart/mixed around them."""
    alternatives = [_text_part(body, subtype) for body, subtype in ((text, "plain"), (html, "html")) if body]
    main = alternatives[0] if len(alternatives) == 1 else _multipart("alternative", alternatives, digest)
    if not attachments:
        return main
    return _multipart("mixed", [main, *(_attachment_part(a) for a in attachments)], digest)


def _text_part(body: str, subtype: str) -> tuple[bytes, bytes]:
    data = body.encode("utf-8")
    lines = data.splitlines()
    canonical = CRLF.join(lines) + CRLF
    if data.isascii() and max(map(len, lines), default=0) <= FOLD_AT:
        encoding, payload = b"7bit", canonical
    elif 6 * len(data.translate(None, _QP_LITERAL)) < len(data):  # the bytes QP must escape
        encoding, payload = b"quoted-printable", binascii.b2a_qp(canonical, istext=True)
    else:
        encoding, payload = b"base64", _base64(canonical)
    headers = (
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + encoding + CRLF
    )
    return headers, payload


def _attachment_part(attachment: Attachment) -> tuple[bytes, bytes]:
    headers = (
        _field("Content-Type", _content_type(attachment))
        + b"Content-Transfer-Encoding: base64\r\n"
        + _field("Content-Disposition", "attachment; " + _filename(attachment.filename))
    )
    return headers, _base64(attachment.content)


def _multipart(subtype: str, parts: list[tuple[bytes, bytes]], digest: str) -> tuple[bytes, bytes]:
    boundary = f"=_{subtype}_{digest}".encode()
    between = CRLF + b"--" + boundary + CRLF  # the CRLF before a delimiter belongs to it (RFC 2046 §5.1.1)
    body = between.join(headers + CRLF + payload for headers, payload in parts)
    headers = b"Content-Type: multipart/" + subtype.encode() + b';\r\n boundary="' + boundary + b'"\r\n'
    return headers, b"--" + boundary + CRLF + body + CRLF + b"--" + boundary + b"--" + CRLF


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _content_type(attachment: Attachment) -> str:
    given = attachment.content_type.strip().lower()
    if given:
        if not _CONTENT_TYPE.match(given) or given.startswith("multipart/"):
            raise ValueError(f"attachment {attachment.filename!r}: {given!r} is not a content type")
        return given
    guessed, _ = _BUILTIN_TYPES.guess_type(attachment.filename, strict=False)
    return guessed or "application/octet-stream"


def _filename(name: str) -> str:
    """The `filename` parameter: a token or quoted string, else RFC 2231 pieces of at most a line."""
    name = " ".join(name.split()) or "attachment"
    if name.isascii() and len(name) <= _LONGEST_WORD and "=?" not in name:  # clients decode =?..?= in it
        return f"filename={name}" if _TOKEN_SAFE.match(name) else f'filename="{_quoted(name)}"'
    encoded = "utf-8''" + percent_quote(name, safe="")
    pieces: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + 60, len(encoded))
        if "%" in encoded[end - 2 : end]:  # never cut a %XX escape
            end = encoded.rindex("%", start, end)
        pieces.append(f"filename*{len(pieces)}*={encoded[start:end]}")
        start = end
    return "; ".join(pieces)


def _content_digest(message_id: str, text: str, html: str, attachments: Sequence[Attachment]) -> str:
    digest = hashlib.sha256()
    for piece in (message_id, text, html):
        digest.update(piece.encode() + b"\0")
    for a in attachments:
        digest.update(f"{a.filename}\0{a.content_type}\0".encode())
        digest.update(a.content)
    return digest.hexdigest()[:32]


# --- header fields ---------------------------------------------------------------------------------


def _field(name: str, value: str) -> bytes:
    """`Name: value` CRLF, folded before spaces so lines stay within 78 characters where a space allows
    (never right after the name: a value's first word stays on the name's line)."""
    line = f"{name}: {value}"
    if len(line) > FOLD_AT:
        lines: list[str] = []
        current, words = f"{name}:", 0
        for word in value.split(" "):
            if words and len(current) + 1 + len(word) > FOLD_AT:
                lines.append(current)
                current, words = "", 0
            current, words = f"{current} {word}", words + 1
        lines.append(current)
        if any(len(piece) > MAX_LINE for piece in lines):
            raise ValueError(f"the {name} header has a line longer than {MAX_LINE} characters")
        line = "\r\n".join(lines)
    return line.encode("ascii") + CRLF


def _one_line(value: str, name: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name}: header values may not contain linefeed or carriage return characters")
    if not value.isascii():
        raise ValueError(f"{name} must be ASCII")
    return value


def _unstructured(text: str) -> str:
    """A Subject's value: ASCII words as they are, each run of words that needs it as encoded words."""
    if "\r" in text or "\n" in text:
        raise ValueError("Subject: header values may not contain linefeed or carriage return characters")
    words = text.split()
    if text.isascii() and not any(len(w) > _LONGEST_WORD or "=?" in w for w in words):
        return " ".join(words)
    out: list[str] = []
    run: list[str] = []
    for word in words:
        if word.isascii() and len(word) <= _LONGEST_WORD and "=?" not in word:
            if run:
                out.append(_encoded_words(" ".join(run)))
                run = []
            out.append(word)
        else:
            run.append(word)
    if run:
        out.append(_encoded_words(" ".join(run)))
    return " ".join(out)


def _phrase(name: str) -> str:
    """A display name as a header phrase: as it is, quoted, or RFC 2047 encoded words."""
    if not name.isascii() or any(len(w) > _LONGEST_WORD for w in name.split(" ")):
        return _encoded_words(name)
    if _PHRASE_SAFE.match(name) and "=?" not in name:
        return name
    return f'"{_quoted(name)}"'


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _encoded_words(text: str) -> str:
    """`text` as RFC 2047 encoded words separated by spaces (where the header may fold): Q or B,
    whichever is shorter, each fitting a line after its header's name and never splitting a character."""
    data = text.encode("utf-8")
    q_length = sum(len(_Q_BYTE[b]) for b in data)
    b_length = (len(data) + 2) // 3 * 4
    return " ".join(_q_words(text) if q_length <= b_length else _b_words(text))


def _q_words(text: str) -> list[str]:
    words, current = [], ""
    for char in text:
        encoded = "".join(_Q_BYTE[b] for b in char.encode("utf-8"))
        if len(current) + len(encoded) > _ENCODED_WORD_TEXT:
            words.append(f"=?utf-8?q?{current}?=")
            current = ""
        current += encoded
    return [*words, f"=?utf-8?q?{current}?="]


def _b_words(text: str) -> list[str]:
    room = _ENCODED_WORD_TEXT // 4 * 3  # bytes whose base64 fits one encoded word
    words, chunk = [], b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > room:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
            chunk = b""
        chunk += encoded
    return [*words, f"=?utf-8?b?{base64.b64encode(chunk).decode()}?="]


def _mailbox(name: str, email: str, path: str) -> str:
    address = _checked_email(email, path)
    name = " ".join(name.split())
    return f"{_phrase(name)} <{address}>" if name else address


def _date(date: datetime) -> str:
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date needs a time zone (pass an aware datetime)")
    return format_datetime(date)


def _checked_email(email: str, path: str) -> str:
    try:
        return normalize_email(email, path)
    except ValidationFailed as error:
        raise ValueError(str(error)) from None


def _message_id(message_id: str) -> str:
    if not _DOT_ATOM.match(message_id) or len(message_id) > 200:
        raise ValueError(f"{message_id!r} cannot be the left part of a Message-ID")
    return message_id


def _domain(domain: str) -> str:
    if not _DOMAIN.match(domain):
        raise ValueError(f"{domain!r} is not a domain")
    return domain.lower()


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    if not url.isascii() or any(c in url for c in ' <>,"\r\n\t'):
        raise ValueError(f"{url!r} must be ASCII with no spaces, quotes, commas or angle brackets")
    return url
