"""Building one outgoing email's bytes (RFC 5322 + MIME) from a rendered message, with no I/O.

`build_email` is pure: the date is given, attachment bytes are given (the
caller reads files), and the same arguments always give the same bytes.

Decisions where the task is silent:
- The policy is the email package's `SMTP` (CRLF line endings) with
  `cte_type="7bit"`: the output is pure ASCII, so it needs no 8BITMIME at the
  relay and no relay re-encodes it after DKIM signing (which would break the
  signature). Text and HTML parts are 7bit when they are ASCII with lines of
  at most 78 characters; otherwise the email package picks quoted-printable
  or base64, whichever is shorter (Cyrillic text comes out base64, mostly
  ASCII HTML with long lines quoted-printable). Attachments are base64.
- Headers Herald writes itself (`Message-ID`, `X-Herald-Message-ID`,
  `List-ID`, `List-Unsubscribe`, `List-Unsubscribe-Post`, `Feedback-ID`)
  are kept exactly as built and folded only at spaces: the email package
  would otherwise turn a URL longer than a line into RFC 2047 encoded words,
  which no mail client reads as a URL. Every other header goes through the
  email package (display names and subjects RFC 2047-encoded when not ASCII,
  quoted when they hold specials).
- Multipart boundaries are derived from a hash of everything the message
  holds, not drawn at random, so output is reproducible; a part cannot
  contain its own hash, and `=_` never appears in quoted-printable or base64.
- Attachment file names use RFC 2231 (`filename*=utf-8''...`) when not
  ASCII, as the email package writes them. An attachment without a content
  type gets one from its file name's extension (the standard library's
  built-in table, not the machine's), else `application/octet-stream`.
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
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, quote
from typing import Any
from urllib.parse import urlsplit

from herald.domain.contacts import normalize_email
from herald.domain.errors import ValidationFailed

MAX_LIST_ID_LENGTH = 255  # the guide's limit for a resource's List-ID
MAX_LINE = 998  # RFC 5322 §2.1.1: a line longer than this is not mail
FOLD_AT = 78  # RFC 5322's recommended line length, where verbatim headers fold

# Headers whose values Herald builds itself from ASCII pieces: stored and folded as they are.
_VERBATIM = frozenset(
    {
        "message-id",
        "x-herald-message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "feedback-id",
    }
)
# RFC 5322 dot-atom-text: what a Message-ID's left part and a List-ID may be made of.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+{_LABEL}$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_PHRASE_SAFE = re.compile(rf"^(?:{_ATEXT}| )+$")  # an ASCII display name that needs no quoting
_ONE_CLICK = "List-Unsubscribe=One-Click"
_BUILTIN_TYPES = mimetypes.MimeTypes()  # the built-in table only: the same on every machine


class _Policy(EmailPolicy):
    """Policy SMTP, except that Herald's own headers are stored and folded verbatim (at spaces only)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if name.lower() not in _VERBATIM:
            return super().header_store_parse(name, value)
        text = str(value)
        if "\r" in text or "\n" in text or not text.isascii():
            raise ValueError(f"{name} must be one line of ASCII")
        return (name, text)

    def fold(self, name: str, value: Any) -> str:
        if name.lower() not in _VERBATIM:
            folded: str = super().fold(name, value)
            return folded
        return _fold_at_spaces(name, str(value), self.linesep)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() not in _VERBATIM:
            return super().fold_binary(name, value)
        return self.fold(name, value).encode("ascii")


POLICY = _Policy(linesep="\r\n", cte_type="7bit")


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
    message = EmailMessage(policy=POLICY)
    message["Date"] = _date(date)
    message["From"] = _address(from_name, from_email, "from_email")
    message["To"] = _address(to_name, to_email, "to_email")
    if reply_to_email:
        message["Reply-To"] = _address(reply_to_name, reply_to_email, "reply_to_email")
    message["Subject"] = subject
    message["Message-ID"] = f"<{_message_id(message_id)}@{_domain(domain)}>"
    message["X-Herald-Message-ID"] = message_id
    if list_id:
        message["List-ID"] = list_id_header(list_name, list_id)
    unsubscribe = list_unsubscribe(unsubscribe_url, unsubscribe_mailto, message_id)
    if unsubscribe:
        message["List-Unsubscribe"] = unsubscribe
        if urlsplit(unsubscribe_url).scheme == "https":
            message["List-Unsubscribe-Post"] = _ONE_CLICK
    if feedback_id:
        message["Feedback-ID"] = feedback_id
    message["MIME-Version"] = "1.0"
    _set_body(message, text, html, attachments, _content_digest(message_id, text, html, attachments))
    data = message.as_bytes()
    if any(len(line) > MAX_LINE for line in data.split(b"\r\n")):
        raise ValueError(f"a header line is longer than {MAX_LINE} characters")
    return data


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


def _set_body(
    message: EmailMessage, text: str, html: str, attachments: Sequence[Attachment], digest: str
) -> None:
    """text → text/plain; html → text/html; both → multipart/alternative; attachments → multipart/mixed."""
    alternatives = [(body, subtype) for body, subtype in ((text, "plain"), (html, "html")) if body]
    if not attachments:
        _set_alternatives(message, alternatives, digest)
        return
    body = MIMEPart(policy=POLICY)
    _set_alternatives(body, alternatives, digest)
    _set_multipart(message, "mixed", [body, *(_attachment_part(a) for a in attachments)], digest)


def _set_alternatives(target: MIMEPart, alternatives: list[tuple[str, str]], digest: str) -> None:
    if len(alternatives) == 1:
        target.set_content(alternatives[0][0], subtype=alternatives[0][1], charset="utf-8")
        return
    parts = []
    for body, subtype in alternatives:  # text first: clients show the last alternative they can
        part = MIMEPart(policy=POLICY)
        part.set_content(body, subtype=subtype, charset="utf-8")
        parts.append(part)
    _set_multipart(target, "alternative", parts, digest)


def _set_multipart(target: MIMEPart, subtype: str, parts: list[MIMEPart], digest: str) -> None:
    target["Content-Type"] = f"multipart/{subtype}"
    for part in parts:
        target.attach(part)
    target.set_boundary(f"=_{subtype}_{digest}")


def _attachment_part(attachment: Attachment) -> MIMEPart:
    maintype, subtype = _content_type(attachment).split("/", 1)
    part = MIMEPart(policy=POLICY)
    part.set_content(
        attachment.content,
        maintype=maintype,
        subtype=subtype,
        disposition="attachment",
        filename=attachment.filename,
    )
    return part


def _content_type(attachment: Attachment) -> str:
    given = attachment.content_type.strip().lower()
    if given:
        if not _CONTENT_TYPE.match(given) or given.startswith("multipart/"):
            raise ValueError(f"attachment {attachment.filename!r}: {given!r} is not a content type")
        return given
    guessed, _ = _BUILTIN_TYPES.guess_type(attachment.filename, strict=False)
    return guessed or "application/octet-stream"


def _content_digest(message_id: str, text: str, html: str, attachments: Sequence[Attachment]) -> str:
    digest = hashlib.sha256()
    for piece in (message_id, text, html):
        digest.update(piece.encode() + b"\0")
    for a in attachments:
        digest.update(f"{a.filename}\0{a.content_type}\0".encode())
        digest.update(a.content)
    return digest.hexdigest()[:32]


# --- header values ---------------------------------------------------------------------------------


def _fold_at_spaces(name: str, value: str, linesep: str) -> str:
    """`Name: value` folded before spaces, so lines stay within 78 characters wherever a space allows."""
    lines: list[str] = []
    line, words_on_line = f"{name}:", 0
    for word in value.split():
        if words_on_line and len(line) + 1 + len(word) > FOLD_AT:
            lines.append(line)
            line, words_on_line = "", 0
        line, words_on_line = f"{line} {word}", words_on_line + 1
    lines.append(line)
    return linesep.join(lines) + linesep


def _date(date: datetime) -> str:
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date needs a time zone (pass an aware datetime)")
    return format_datetime(date)


def _address(name: str, email: str, path: str) -> Address:
    return Address(display_name=" ".join(name.split()), addr_spec=_checked_email(email, path))


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


def _phrase(name: str) -> str:
    """A List-ID display name as a header phrase: as it is, quoted, or RFC 2047 encoded words."""
    if not name.isascii():
        # Encoded words of at most 75 characters (RFC 2047 §2), separated by spaces to fold at.
        encoded = Header(name, "utf-8", header_name="List-ID").encode(maxlinelen=FOLD_AT, linesep=" ")
        return " ".join(encoded.split())
    if _PHRASE_SAFE.match(name):
        return name
    return f'"{quote(name)}"'
