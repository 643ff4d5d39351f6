"""Reads one inbound email (raw bytes) as a complaint report, a bounce report, ordinary mail, or junk.

Pure parsing: no I/O, no clock. `parse_inbound` never raises; the listener
(`senders/inbound_smtp.py`) and the HTTP endpoint hand it the bytes, and the
caller turns the result into events.

What it returns:
- `Complaint` for an ARF report (RFC 5965): `multipart/report;
  report-type=feedback-report` with a `message/feedback-report` part and the
  original message (`message/rfc822`) or its headers (`text/rfc822-headers`).
- `Bounce` for a DSN (RFC 3464): `multipart/report; report-type=delivery-status`
  with a `message/delivery-status` part; one `BouncedRecipient` per recipient
  whose Action is `failed` or `delayed`. Recipients reported `delivered`,
  `relayed` or `expanded` are no bounces and are left out, so a success-only
  DSN is a `Bounce` with no recipients.
- `Unparsed(reason)` for a report (or something that claims to be one) that
  cannot be read; the reason names what is missing or wrong.
- `NotReport(subject, sender)` for ordinary mail (a reply), to be forwarded or
  captured by the caller.

Decisions where the RFCs or the guide leave room:
- Only the top-level message is examined: a report forwarded as an attachment
  inside other mail is ordinary mail.
- Strict where a report would be useless or ambiguous, lenient elsewhere. An
  ARF report needs its Feedback-Type and the original message part (RFC 5965
  requires the part, and it is what identifies the message); User-Agent and
  Version may be missing. A DSN needs, per recipient, an address
  (Final-Recipient, else Original-Recipient) and a status: the Status field,
  else an enhanced code inside Diagnostic-Code. A missing Action is inferred
  from the status class (5 failed, 4 delayed, 2 delivered). One unreadable
  recipient makes the whole DSN `Unparsed`, so nothing is half-recorded.
  The original message is optional in a DSN (RFC 3464 §2).
- `report-type=global-delivery-status` and the RFC 6533 part types
  (`message/global-delivery-status`, `message/global`,
  `message/global-headers`) are read like their ASCII twins. Other report
  types (read receipts, TLS reports) are `Unparsed` with the type named.
- Mail from `MAILER-DAEMON` that is not a `multipart/report` is a free-form
  bounce (qmail, old Exchange); its text is not guessed at: `Unparsed`.
- Input that has no header field at all, or is empty, is `Unparsed`.
- Feedback types `not-spam` and `auth-failure` (RFC 6591 forensic reports)
  are returned but `Complaint.counts_as_complaint` is False for them: they
  say nothing about the recipient wanting no mail.
- `Complaint.original_recipient` is the report's Original-Rcpt-To, else the
  address in the quoted original's To (many FBLs redact one or the other).
  `arrival_date` is Arrival-Date (or the older drafts' Received-Date); a date
  without a zone is taken as UTC; an unreadable one is None.
- `diagnostic_code` is the Diagnostic-Code text after its type (`smtp;`),
  whitespace folded to single spaces: the provider's answer, as the guide's
  bounce reports group by it.

Message id recovery (Herald sends `Message-ID: <{id}@{domain}>` and
`X-Herald-Message-ID: {id}`, id = 32 lower-case hex), first match wins:
1. `X-Herald-Message-ID` in the quoted original;
2. the quoted original's `Message-ID` `<id@any-domain>`;
3. DSN per-message fields: `Original-Envelope-Id` (RFC 3461 ENVID, present
   only if the sender passed `ENVID=<id>`) and Gmail's `X-Original-Message-ID`;
4. optional VERP: an address `bounce+<id>@...` among the SMTP envelope
   recipients (when the caller passes them), the report's To, Delivered-To,
   X-Original-To and Envelope-To headers, the report's fields (ARF
   Original-Mail-From, Postfix's X-Postfix-Sender) and the original's
   Return-Path. This only works if the sender uses such a return path.
None when nothing matches; the report is still returned.

Bounce classification (`bounce_reason`, `bounce_kind`):
- reason from the enhanced status code (RFC 3463) first: x.1.1 user unknown,
  x.1.2 / x.1.10 / x.4.4 bad domain, x.1.3 bad address syntax, x.2.1 mailbox
  disabled, x.2.2 mailbox full, x.2.3 / x.3.4 message too large, x.7.* policy
  or spam block, x.4.7 delivery time expired, other x.4.* network, x.3.*
  service unavailable. A generic code (x.0.0, x.5.0, ...) looks at a more
  specific code of the same class inside the diagnostic, then at the text
  ("user unknown", "mailbox full", "Max retry times are reached", "DNSBL"...),
  then falls back by subject (address → bad address, system → service
  unavailable, network → network) or `other`.
- kind: Action `delayed` → `delayed` (still being retried, the subscription is
  untouched); `failed` with 4.x.x → `soft` (the relay gave up on a temporary
  error: the guide's "max retries" non-delivery, not a dead address); `failed`
  with 5.x.x → `hard`, except when the reason says the address itself is fine:
  mailbox full, message too large, policy/spam block, service unavailable,
  time expired, max retries are `soft`. This follows Amazon SES's split
  (MailboxFull, MessageTooLarge, ContentRejected are transient) and the guide
  (a hard bounce is "the address or domain does not exist"; mailbox full and
  oversize attachments are listed as soft causes). A hard bounce puts the
  address on the platform invalid list, so a block of our IP must not do it.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, parseaddr, parsedate_to_datetime
from enum import StrEnum
from typing import Literal

# --- results -----------------------------------------------------------------------------------


class BounceReason(StrEnum):
    """Why a message was not delivered: the guide's bounce and non-delivery causes, from DSN codes."""

    USER_UNKNOWN = "user_unknown"  # the mailbox does not exist (x.1.1)
    BAD_DOMAIN = "bad_domain"  # the domain does not exist or takes no mail (x.1.2, x.1.10, x.4.4)
    BAD_ADDRESS = "bad_address"  # the address is not valid syntax (x.1.3)
    MAILBOX_DISABLED = "mailbox_disabled"  # exists but accepts nothing (x.2.1)
    MAILBOX_FULL = "mailbox_full"  # x.2.2
    MESSAGE_TOO_LARGE = "message_too_large"  # x.2.3, x.3.4: the guide's "attachments too large"
    POLICY_BLOCK = "policy_block"  # x.7.*: spam filter, blocklist, reputation, authentication
    NETWORK = "network"  # x.4.*: no answer, bad connection, routing
    SERVICE_UNAVAILABLE = "service_unavailable"  # x.3.*: the receiving system is unavailable
    TTL_EXPIRED = "ttl_expired"  # x.4.7: the relay dropped it after its lifetime
    MAX_RETRIES = "max_retries"  # "Max retry times are reached"
    OTHER = "other"


BounceKind = Literal["hard", "soft", "delayed"]
BounceAction = Literal["failed", "delayed"]


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient of a DSN that failed or is delayed."""

    address: str
    action: BounceAction
    status: str  # the enhanced status code, e.g. "5.1.1"
    diagnostic_code: str | None  # the server's answer, e.g. "550 5.1.1 user unknown"
    kind: BounceKind
    reason: BounceReason
    smtp_code: int | None = None  # the basic reply code at the start of the diagnostic (550), if any


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery status notification (RFC 3464)."""

    message_id: str | None
    recipients: tuple[BouncedRecipient, ...]


# Feedback types that are not a recipient's complaint (RFC 5965 §7.3, RFC 6591).
_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})


@dataclass(frozen=True, slots=True)
class Complaint:
    """A feedback report (ARF, RFC 5965): usually a recipient pressed "This is spam"."""

    message_id: str | None
    feedback_type: str  # lower case: abuse, fraud, virus, other, not-spam, auth-failure, ...
    user_agent: str | None
    original_recipient: str | None
    arrival_date: datetime | None
    source_ip: str | None
    reported_domain: str | None

    @property
    def counts_as_complaint(self) -> bool:
        """Whether the report says the recipient objected to the mail (not `not-spam` or `auth-failure`)."""
        return self.feedback_type not in _NOT_COMPLAINTS


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A report, or something claiming to be one, that could not be read; `reason` says why."""

    reason: str


@dataclass(frozen=True, slots=True)
class NotReport:
    """Ordinary mail (a reply, a human's message): no report."""

    subject: str | None
    sender: str | None


Inbound = Complaint | Bounce | Unparsed | NotReport


class _Malformed(Exception):
    """Raised inside the parser with the reason a report is unreadable; becomes `Unparsed`."""


# --- entry point -------------------------------------------------------------------------------

_DSN_REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})
_ARF_REPORT_TYPE = "feedback-report"
_DSN_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ARF_PARTS = frozenset({"message/feedback-report"})
_ORIGINAL_MESSAGE_PARTS = frozenset({"message/rfc822", "message/global"})
_ORIGINAL_HEADER_PARTS = frozenset({"text/rfc822-headers", "message/global-headers"})


def parse_inbound(raw: bytes, envelope_recipients: Sequence[str] = ()) -> Inbound:
    """Read one inbound message; never raises. `envelope_recipients` (SMTP RCPT TO) only helps VERP."""
    try:
        return _parse(bytes(raw), tuple(envelope_recipients))
    except _Malformed as error:
        return Unparsed(str(error))
    except RecursionError:
        return Unparsed("MIME parts nested too deeply to parse")
    except Exception as error:
        # The stdlib email package has had crashes on hostile input; a report is never worth a crash.
        return Unparsed(f"internal parser error on malformed input: {type(error).__name__}: {error}")


def _parse(raw: bytes, envelope_recipients: tuple[str, ...]) -> Inbound:
    if not raw.strip():
        raise _Malformed("empty message")
    message = BytesParser(policy=compat32).parsebytes(raw)
    if not message.keys():
        raise _Malformed("no header fields: the input is not an email message")
    if message.get_content_type() != "multipart/report":
        return _not_report(message)
    payload = message.get_payload()
    if not message.is_multipart() or not isinstance(payload, list) or not payload:
        raise _Malformed("multipart/report without parts: its boundary parameter is missing or never appears")
    parts = [part for part in payload if isinstance(part, Message)]
    report_type = _report_type(message, parts)
    if report_type == _ARF_REPORT_TYPE:
        return _complaint(message, parts, envelope_recipients)
    return _bounce(message, parts, envelope_recipients)


def _report_type(message: Message, parts: list[Message]) -> str:
    """feedback-report or delivery-status, from the report-type parameter or else the parts present."""
    param = message.get_param("report-type")
    value = (collapse_rfc2231_value(param) if param else "").strip().lower()
    if value in _DSN_REPORT_TYPES:
        return "delivery-status"
    if value == _ARF_REPORT_TYPE:
        return value
    if value:
        raise _Malformed(
            f"unsupported report-type {value!r}: only delivery-status and feedback-report are read"
        )
    if _first_part(parts, _DSN_PARTS) is not None:
        return "delivery-status"
    if _first_part(parts, _ARF_PARTS) is not None:
        return _ARF_REPORT_TYPE
    raise _Malformed(
        "multipart/report without a report-type parameter and without a delivery-status "
        "or feedback-report part"
    )


def _not_report(message: Message) -> Inbound:
    sender = _address(_header(message, "from"))
    if sender is not None and sender.partition("@")[0].lower() == "mailer-daemon":
        raise _Malformed(
            "bounce from MAILER-DAEMON that is not a multipart/report DSN (free-form bounces are not read)"
        )
    subject = _header(message, "subject")
    return NotReport(subject=_decode_words(subject) if subject is not None else None, sender=sender)


# --- ARF ---------------------------------------------------------------------------------------


def _complaint(message: Message, parts: list[Message], envelope_recipients: tuple[str, ...]) -> Complaint:
    report_part = _first_part(parts, _ARF_PARTS)
    if report_part is None:
        raise _Malformed("feedback report without a message/feedback-report part")
    fields = [field for block in _field_blocks(_body_text(report_part)) for field in block]
    feedback_type = _field(fields, "feedback-type")
    if not feedback_type:
        raise _Malformed("message/feedback-report part without a Feedback-Type field")
    original = _original_headers(parts)
    if original is None:
        raise _Malformed(
            "feedback report without the original message (a message/rfc822 or text/rfc822-headers part)"
        )
    recipient = _address(_field(fields, "original-rcpt-to")) or _address(_header(original, "to"))
    return Complaint(
        message_id=_recover_message_id(message, original, fields, envelope_recipients),
        feedback_type=feedback_type.lower(),
        user_agent=_field(fields, "user-agent"),
        original_recipient=recipient,
        arrival_date=_date(_field(fields, "arrival-date") or _field(fields, "received-date")),
        source_ip=_field(fields, "source-ip"),
        reported_domain=_field(fields, "reported-domain"),
    )


# --- DSN ---------------------------------------------------------------------------------------

_RECIPIENT_FIELDS = frozenset({"final-recipient", "original-recipient", "action", "status"})
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


def _bounce(message: Message, parts: list[Message], envelope_recipients: tuple[str, ...]) -> Bounce:
    status_part = _first_part(parts, _DSN_PARTS)
    if status_part is None:
        raise _Malformed("delivery-status report without a message/delivery-status part")
    blocks = _field_blocks(_body_text(status_part))
    recipient_blocks = [block for block in blocks if any(name in _RECIPIENT_FIELDS for name, _ in block)]
    if not recipient_blocks:
        raise _Malformed(
            "message/delivery-status part without per-recipient fields (no Final-Recipient, Action or Status)"
        )
    bounced = [_recipient(block, number) for number, block in enumerate(recipient_blocks, start=1)]
    try:
        original = _original_headers(parts)
    except _Malformed:
        original = None  # the original is optional in a DSN; the bounce itself is still worth reading
    fields = [field for block in blocks for field in block]
    return Bounce(
        message_id=_recover_message_id(message, original, fields, envelope_recipients),
        recipients=tuple(recipient for recipient in bounced if recipient is not None),
    )


def _recipient(block: list[tuple[str, str]], number: int) -> BouncedRecipient | None:
    """One per-recipient block; None for a recipient that was delivered (no bounce)."""
    address = _address(_field(block, "final-recipient")) or _address(_field(block, "original-recipient"))
    if address is None:
        raise _Malformed(f"recipient #{number} of the delivery-status part has no Final-Recipient address")
    diagnostic = _diagnostic(_field(block, "diagnostic-code"))
    status_field = _field(block, "status")
    status = _status_field_code(status_field) or next(_status_codes(diagnostic or ""), None)
    if status is None:
        if status_field:
            raise _Malformed(f"recipient {address}: Status {status_field!r} is not an RFC 3463 status code")
        raise _Malformed(f"recipient {address}: no Status field and no status code in its Diagnostic-Code")
    action = _action(_field(block, "action"), status, address)
    if action in ("delivered", "relayed", "expanded"):
        return None
    if status.startswith("2"):
        raise _Malformed(f"recipient {address}: Action {action} with the success Status {status}")
    bounce_action: BounceAction = "failed" if action == "failed" else "delayed"
    reason = bounce_reason(status, " ".join(value for value in (status_field, diagnostic) if value))
    return BouncedRecipient(
        address=address,
        action=bounce_action,
        status=status,
        diagnostic_code=diagnostic,
        kind=bounce_kind(bounce_action, status, reason),
        reason=reason,
        smtp_code=_smtp_code(diagnostic),
    )


def _action(value: str | None, status: str, address: str) -> str:
    if value is None:
        # RFC 3464 requires Action; its status class says the same thing.
        return {"5": "failed", "4": "delayed"}.get(status[0], "delivered")
    match = re.match(r"\s*([A-Za-z-]+)", value)
    action = match.group(1).lower() if match else ""
    if action not in _ACTIONS:
        raise _Malformed(f"recipient {address}: unknown Action {value!r}")
    return action


def _diagnostic(value: str | None) -> str | None:
    """The Diagnostic-Code text after its type (`smtp; 550 ...` → `550 ...`)."""
    if value is None:
        return None
    text = re.sub(r"^[A-Za-z][\w.-]*\s*;\s*", "", value).strip()
    return text or None


def _smtp_code(diagnostic: str | None) -> int | None:
    match = re.match(r"\s*([245]\d\d)(?:[ -]|$)", diagnostic or "")
    return int(match.group(1)) if match else None


# --- classification ----------------------------------------------------------------------------

# An enhanced status code: class.subject.detail, not part of a longer dotted number (IPs, versions).
_STATUS_CODE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")

_REASON_BY_CODE: dict[tuple[int, int], BounceReason] = {
    (1, 1): BounceReason.USER_UNKNOWN,
    (1, 2): BounceReason.BAD_DOMAIN,
    (1, 3): BounceReason.BAD_ADDRESS,
    (1, 6): BounceReason.USER_UNKNOWN,  # mailbox moved, no forwarding address
    (1, 10): BounceReason.BAD_DOMAIN,  # null MX (RFC 7505)
    (2, 1): BounceReason.MAILBOX_DISABLED,
    (2, 2): BounceReason.MAILBOX_FULL,
    (2, 3): BounceReason.MESSAGE_TOO_LARGE,
    (3, 1): BounceReason.SERVICE_UNAVAILABLE,  # mail system full
    (3, 2): BounceReason.SERVICE_UNAVAILABLE,  # system not accepting messages
    (3, 4): BounceReason.MESSAGE_TOO_LARGE,
    (4, 1): BounceReason.NETWORK,
    (4, 2): BounceReason.NETWORK,
    (4, 3): BounceReason.NETWORK,  # directory (DNS) server failure
    (4, 4): BounceReason.BAD_DOMAIN,  # unable to route: no MX or A for the domain
    (4, 5): BounceReason.NETWORK,
    (4, 6): BounceReason.NETWORK,
    (4, 7): BounceReason.TTL_EXPIRED,
}

# Used when the code is generic: phrases of the servers' answers, checked in order (more telling first).
_TEXT_PHRASES: tuple[tuple[BounceReason, tuple[str, ...]], ...] = (
    (
        BounceReason.MAILBOX_FULL,
        (
            r"mailbox (is )?full",
            r"over ?quota",
            r"quota exceeded",
            r"insufficient (system )?storage",
            r"mailbox size limit",
        ),
    ),
    (
        BounceReason.MAILBOX_DISABLED,
        (r"account (is )?(disabled|inactive|suspended)", r"mailbox (is )?disabled"),
    ),
    (
        BounceReason.BAD_DOMAIN,
        (
            r"host (or domain name )?not found",
            r"domain (not found|does not exist)",
            r"no such domain",
            r"unroute?able",
            r"name service error",
            r"host name lookup failure",
        ),
    ),
    (
        BounceReason.USER_UNKNOWN,
        (
            r"user unknown",
            r"unknown (user|recipient|mailbox)",
            r"no such (user|mailbox|recipient|address)",
            r"(user|mailbox|address|recipient|account)\b.{0,40}\b(does not|doesn't) exist",
            r"invalid (mailbox|recipient)",
            r"(recipient|address|mailbox) not found",
            r"mailbox unavailable",
            r"not a registered",
        ),
    ),
    (
        BounceReason.MESSAGE_TOO_LARGE,
        (r"(message|mail) (is )?too (large|big)", r"size exceeds", r"exceeds .{0,20}size"),
    ),
    (
        BounceReason.MAX_RETRIES,
        (r"max(imum)? retr(y|ies)", r"too many retries", r"retry (time|limit) (exceeded|reached)"),
    ),
    (
        BounceReason.TTL_EXPIRED,
        (
            r"delivery time expired",
            r"message expired",
            r"expired in queue",
            r"cannot send message for",
            r"could not be delivered for",
        ),
    ),
    (
        BounceReason.POLICY_BLOCK,
        (
            r"spam",
            r"blocked",
            r"block ?list",
            r"black ?list",
            r"dnsbl",
            r"\brbl\b",
            r"reputation",
            r"policy",
            r"complaints",
            r"not allowed",
        ),
    ),
    (
        BounceReason.NETWORK,
        (
            r"timed? ?out",
            r"connection (refused|reset|lost)",
            r"lost connection",
            r"network",
            r"unreachable",
            r"no route to host",
        ),
    ),
    (
        BounceReason.SERVICE_UNAVAILABLE,
        (
            r"service (is )?(currently )?unavailable",
            r"the service is currently",
            r"temporar(il)?y (unavailable|deferred)",
            r"try again later",
            r"too many (connections|messages)",
            r"rate limit",
        ),
    ),
)
_REASON_BY_TEXT = tuple(
    (re.compile("|".join(phrases), re.IGNORECASE), reason) for reason, phrases in _TEXT_PHRASES
)

_REASON_BY_SUBJECT = {
    1: BounceReason.BAD_ADDRESS,
    3: BounceReason.SERVICE_UNAVAILABLE,
    4: BounceReason.NETWORK,
    7: BounceReason.POLICY_BLOCK,
}

# Reasons that say nothing against the address: a 5.x.x with one of them is still a soft bounce.
_ADDRESS_IS_FINE = frozenset(
    {
        BounceReason.MAILBOX_FULL,
        BounceReason.MESSAGE_TOO_LARGE,
        BounceReason.POLICY_BLOCK,
        BounceReason.SERVICE_UNAVAILABLE,
        BounceReason.TTL_EXPIRED,
        BounceReason.MAX_RETRIES,
    }
)


def bounce_reason(status: str, text: str = "") -> BounceReason:
    """The non-delivery reason an enhanced status code ("5.1.1") and the server's text point to."""
    codes = [status, *(code for code in _status_codes(text) if code[0] == status[:1])]
    for code in codes:
        reason = _code_reason(code)
        if reason is not None:
            return reason
    for pattern, reason in _REASON_BY_TEXT:
        if pattern.search(text):
            return reason
    subject = _subject_detail(status)
    return _REASON_BY_SUBJECT.get(subject[0], BounceReason.OTHER) if subject else BounceReason.OTHER


def bounce_kind(action: BounceAction, status: str, reason: BounceReason) -> BounceKind:
    """hard, soft or delayed: see the module docstring for the rule and why."""
    if action == "delayed":
        return "delayed"
    if status.startswith("5") and reason not in _ADDRESS_IS_FINE:
        return "hard"
    return "soft"


def _code_reason(code: str) -> BounceReason | None:
    subject_detail = _subject_detail(code)
    if subject_detail is None:
        return None
    if subject_detail[0] == 7:
        return BounceReason.POLICY_BLOCK
    return _REASON_BY_CODE.get(subject_detail)


def _subject_detail(code: str) -> tuple[int, int] | None:
    match = _STATUS_CODE.fullmatch(code.strip())
    return (int(match.group(2)), int(match.group(3))) if match else None


def _status_codes(text: str) -> Iterator[str]:
    for match in _STATUS_CODE.finditer(text):
        yield f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def _status_field_code(value: str | None) -> str | None:
    """The code of a Status field (`5.0.0 (permanent failure)` → `5.0.0`), if it starts with one."""
    match = _STATUS_CODE.match((value or "").strip())
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}" if match else None


# --- message id recovery -----------------------------------------------------------------------

_BARE_ID = re.compile(r"\s*<?\s*([0-9a-fA-F]{32})\s*>?\s*")
_ANGLE_ID = re.compile(r"<\s*([0-9a-fA-F]{32})@[^<>\s]+>")
_VERP_ID = re.compile(r"(?<![\w.+-])bounce\+([0-9a-fA-F]{32})@", re.IGNORECASE)
_VERP_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to")


def _recover_message_id(
    message: Message,
    original: Message | None,
    fields: list[tuple[str, str]],
    envelope_recipients: tuple[str, ...],
) -> str | None:
    """The Herald message id a report is about, from the places listed in the module docstring."""
    quoted = original if original is not None else Message()
    candidates: Iterable[str | None] = (
        *(_match(_BARE_ID, value, full=True) for value in _headers(quoted, "x-herald-message-id")),
        *(_match(_ANGLE_ID, value) for value in _headers(quoted, "message-id")),
        *(_match(_BARE_ID, value, full=True) for name, value in fields if name == "original-envelope-id"),
        *(_match(_ANGLE_ID, value) for name, value in fields if name == "x-original-message-id"),
        *(_match(_VERP_ID, value) for value in _verp_places(message, quoted, fields, envelope_recipients)),
    )
    return next((candidate for candidate in candidates if candidate), None)


def _verp_places(
    message: Message, original: Message, fields: list[tuple[str, str]], envelope_recipients: tuple[str, ...]
) -> Iterator[str]:
    yield from envelope_recipients
    for name in _VERP_HEADERS:
        yield from _headers(message, name)
    for _, value in fields:
        yield value
    yield from _headers(original, "return-path")


def _match(pattern: re.Pattern[str], value: str, *, full: bool = False) -> str | None:
    match = pattern.fullmatch(value) if full else pattern.search(value)
    return match.group(1).lower() if match else None


# --- MIME helpers ------------------------------------------------------------------------------


def _first_part(parts: list[Message], content_types: frozenset[str]) -> Message | None:
    return next((part for part in parts if part.get_content_type() in content_types), None)


def _original_headers(parts: list[Message]) -> Message | None:
    """The quoted original's header fields (from a message/rfc822 or text/rfc822-headers part)."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type in _ORIGINAL_MESSAGE_PARTS:
            payload = part.get_payload()
            if _identity_encoded(part) and isinstance(payload, list) and payload:
                quoted = payload[0]
                if isinstance(quoted, Message):
                    return quoted
            return _header_block(_body_bytes(part))
        if content_type in _ORIGINAL_HEADER_PARTS:
            return _header_block(_body_bytes(part))
    return None


def _header_block(data: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(data.lstrip(b"\r\n"))


def _identity_encoded(part: Message) -> bool:
    return _transfer_encoding(part) in ("7bit", "8bit", "binary")


def _transfer_encoding(part: Message) -> str:
    return (_header(part, "content-transfer-encoding") or "7bit").strip().lower()


def _body_bytes(part: Message) -> bytes:
    """A part's body with its transfer encoding undone."""
    encoding = _transfer_encoding(part)
    content_type = part.get_content_type()
    payload = part.get_payload()
    if isinstance(payload, list):
        # The stdlib splits message/* bodies into header blocks (sub-messages): join them back.
        data = b"\n\n".join(_block_bytes(block) for block in payload if isinstance(block, Message))
    elif encoding in ("7bit", "8bit", "binary"):
        return _raw_payload(part)
    else:
        data = _to_bytes(str(payload))
    if encoding in ("7bit", "8bit", "binary"):
        return data
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    if encoding == "base64":
        try:
            return base64.b64decode(data)
        except (binascii.Error, ValueError) as error:
            raise _Malformed(f"{content_type} part: its base64 body does not decode ({error})") from None
    raise _Malformed(f"{content_type} part: unsupported Content-Transfer-Encoding {encoding!r}")


def _raw_payload(message: Message) -> bytes:
    """A non-multipart payload as the bytes that arrived (the stdlib's text form replaces non-ASCII)."""
    data = message.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _body_text(part: Message) -> str:
    return _body_bytes(part).decode("utf-8", "replace")


def _block_bytes(block: Message) -> bytes:
    lines = [_to_bytes(f"{name}: {value}") for name, value in block.raw_items()]
    if isinstance(block.get_payload(), str):
        body = _raw_payload(block)
        if body:
            lines.append(body)
    return b"\n".join(lines)


def _field_blocks(text: str) -> list[list[tuple[str, str]]]:
    """`Name: value` fields (names lower-cased, folded lines joined) in blank-line separated blocks."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
        elif line[0] in " \t":
            if current:
                name, value = current[-1]
                current[-1] = (name, f"{value} {line.strip()}")
        else:
            name, colon, value = line.partition(":")
            if colon and name.strip() and not re.search(r"\s", name.strip()):
                current.append((name.strip().lower(), value.strip()))
            # Any other line is free text inside the report part: ignored.
    if current:
        blocks.append(current)
    return blocks


def _field(fields: list[tuple[str, str]], name: str) -> str | None:
    value = next((value for field, value in fields if field == name), None)
    if value is None:
        return None
    return _squeeze(value) or None


# --- header helpers ----------------------------------------------------------------------------


def _headers(message: Message, name: str) -> list[str]:
    """Every value of a header field, as text (undecodable bytes replaced), folding undone."""
    return [_squeeze(_to_text(value)) for key, value in message.raw_items() if key.lower() == name]


def _header(message: Message, name: str) -> str | None:
    values = _headers(message, name)
    return values[0] if values else None


def _to_bytes(text: str) -> bytes:
    # Parsed from bytes, non-ASCII arrives as surrogate escapes: this gives the original bytes back.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _to_text(value: object) -> str:
    return _to_bytes(str(value)).decode("utf-8", "replace")


def _squeeze(value: str) -> str:
    return " ".join(value.split())


def _decode_words(value: str) -> str:
    """A header value with RFC 2047 encoded words decoded; the raw value if they do not decode."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _address(value: str | None) -> str | None:
    """The mail address in a header or report field (`rfc822; <a@b>`, `Name <a@b>`), if it has one."""
    if not value:
        return None
    if ";" in value and "@" not in value.partition(";")[0]:
        value = value.partition(";")[2]  # an address-type prefix (rfc822;)
    address = parseaddr(value)[1].strip() or value.strip().strip("<>").strip()
    return address if "@" in address and " " not in address else None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
