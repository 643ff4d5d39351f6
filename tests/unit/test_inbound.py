"""Inbound mail parsing: ARF complaints, DSN bounces, id recovery, malformed reports, ordinary mail, fuzz.

The fixtures are real report shapes: the RFC 5965 appendix B ARF example, the
RFC 3464 appendix example DSNs, and Gmail-, Postfix- and Yahoo-style reports
as those systems send them (addresses and ids replaced).
"""

from __future__ import annotations

import random
import textwrap
from datetime import UTC, datetime, timedelta, timezone

import pytest

from herald.senders.inbound import (
    Bounce,
    BouncedRecipient,
    BounceReason,
    Complaint,
    NotReport,
    Unparsed,
    bounce_kind,
    bounce_reason,
    parse_inbound,
)

HERALD_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"


def mail(text: str, *, crlf: bool = False) -> bytes:
    """A message from an indented literal; `crlf` gives the line endings SMTP delivers."""
    body = textwrap.dedent(text).lstrip("\n")
    return (body.replace("\n", "\r\n") if crlf else body).encode("utf-8")


# --- fixtures: complaint reports --------------------------------------------------------------

# RFC 5965, appendix B.2 ("Generic abuse report with maximum fields").
RFC5965_ARF = mail(
    """
    From: <abusedesk@example.com>
    Date: Thu, 8 Mar 2005 17:40:36 EDT
    Subject: FW: Earn money
    To: <abuse@example.net>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=feedback-report;
         boundary="part1_13d.2e68ed54_boundary"

    --part1_13d.2e68ed54_boundary
    Content-Type: text/plain; charset="US-ASCII"
    Content-Transfer-Encoding: 7bit

    This is an email abuse report for an email message received from IP
    192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
    about this format please see http://www.mipassoc.org/arf/.

    --part1_13d.2e68ed54_boundary
    Content-Type: message/feedback-report

    Feedback-Type: abuse
    User-Agent: SomeGenerator/1.0
    Version: 1
    Original-Mail-From: <somespammer@example.net>
    Original-Rcpt-To: <user@example.com>
    Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
    Reporting-MTA: dns; mail.example.com
    Source-IP: 192.0.2.1
    Authentication-Results: mail.example.com;
                   spf=fail smtp.mail=somespammer@example.com
    Reported-Domain: example.net
    Reported-Uri: http://example.net/earn_money.html
    Reported-Uri: mailto:user@example.com
    Removal-Recipient: user@example.com

    --part1_13d.2e68ed54_boundary
    Content-Type: message/rfc822
    Content-Disposition: inline

    From: <somespammer@example.net>
    Received: from mailserver.example.net
            (mailserver.example.net [192.0.2.1])
            by example.com with ESMTP id M63d4137594e46;
            Thu, 08 Mar 2005 14:00:00 -0400
    To: <Undisclosed Recipients>
    Subject: Earn money
    MIME-Version: 1.0
    Content-type: text/plain
    Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net
    Date: Thu, 02 Sep 2004 12:31:03 -0500

    Spam Spam Spam
    Spam Spam Spam
    Spam Spam Spam
    Spam Spam Spam
    --part1_13d.2e68ed54_boundary--
    """
)

# Yahoo's feedback loop: Version 0.1, no Original-Rcpt-To, the whole original message attached.
YAHOO_ARF = mail(
    f"""
    Return-Path: <feedback@arf.mail.yahoo.com>
    From: "Yahoo! Mail AntiSpam Feedback" <feedback@arf.mail.yahoo.com>
    To: abusemaster@herald.example
    Subject: Yahoo! Mail AntiSpam Feedback
    Date: Mon, 03 Jun 2024 08:12:45 +0000
    Message-ID: <1717402365.52341@arf.mail.yahoo.com>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=feedback-report;
     boundary="----=_Part_4123_987654.1717402365"

    ------=_Part_4123_987654.1717402365
    Content-Type: text/plain; charset=us-ascii
    Content-Transfer-Encoding: 7bit

    This is an email abuse report for an email message received from IP 203.0.113.25 on
    Mon, 03 Jun 2024 08:01:02 +0000

    ------=_Part_4123_987654.1717402365
    Content-Type: message/feedback-report

    Feedback-Type: abuse
    User-Agent: Yahoo!-Mail-Feedback/2.0
    Version: 0.1
    Original-Mail-From: <bounce@mail.herald.example>
    Arrival-Date: Mon, 03 Jun 2024 08:01:02 +0000
    Source-IP: 203.0.113.25
    Reported-Domain: herald.example
    Authentication-Results: mta1012.mail.gq1.yahoo.com  header.from=herald.example; dkim=pass

    ------=_Part_4123_987654.1717402365
    Content-Type: message/rfc822

    Received: from 203.0.113.25 (EHLO mail.herald.example)
     by mta1012.mail.gq1.yahoo.com with SMTP; Mon, 03 Jun 2024 08:01:02 +0000
    From: Shop News <news@herald.example>
    To: jane.doe@yahoo.com
    Subject: =?utf-8?q?Summer_sale?=
    Message-ID: <{HERALD_ID}@mail.herald.example>
    X-Herald-Message-ID: {HERALD_ID}
    List-Unsubscribe: <https://t.herald.example/u/abc>
    MIME-Version: 1.0
    Content-Type: text/html; charset=utf-8

    <p>Summer sale</p>

    ------=_Part_4123_987654.1717402365--
    """,
    crlf=True,
)


# --- fixtures: delivery status notifications ---------------------------------------------------

# RFC 3464, appendix A.1 ("Simple DSN"), the original message replaced by a Herald one.
RFC3464_SIMPLE = mail(
    f"""
    Date: Thu, 7 Jul 1994 17:16:05 -0400
    From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
    Message-Id: <199407072116.RAA14128@CS.UTK.EDU>
    Subject: Returned mail: Cannot send message for 5 days
    To: <owner-info-mime@cs.utk.edu>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
          boundary="RAA14128.773615765/CS.UTK.EDU"

    --RAA14128.773615765/CS.UTK.EDU

    The original message was received at Sat, 2 Jul 1994 17:10:28 -0400
    from root@localhost

       ----- The following addresses had delivery problems -----
    <louisl@larry.slip.umd.edu>  (unrecoverable error)

       ----- Transcript of session follows -----
    <louisl@larry.slip.umd.edu>... Deferred: Connection timed out
          with larry.slip.umd.edu.
    Message could not be delivered for 5 days
    Message will be deleted from queue

    --RAA14128.773615765/CS.UTK.EDU
    content-type: message/delivery-status

    Reporting-MTA: dns; cs.utk.edu

    Original-Recipient: rfc822;louisl@larry.slip.umd.edu
    Final-Recipient: rfc822;louisl@larry.slip.umd.edu
    Action: failed
    Status: 4.0.0
    Diagnostic-Code: smtp; 426 connection timed out
    Last-Attempt-Date: Thu, 7 Jul 1994 17:15:49 -0400

    --RAA14128.773615765/CS.UTK.EDU
    content-type: message/rfc822

    From: news@herald.example
    To: louisl@larry.slip.umd.edu
    Subject: Weekly news
    Message-ID: <{HERALD_ID}@mail.herald.example>
    X-Herald-Message-ID: {HERALD_ID}

    Hello.

    --RAA14128.773615765/CS.UTK.EDU--
    """
)

# RFC 3464, appendix A.2 ("Multi-Recipient DSN"), headers-only original.
RFC3464_MULTI = mail(
    f"""
    Date: Fri, 8 Jul 1994 09:21:47 -0400
    From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
    Subject: Returned mail: User unknown
    To: <owner-ups-mib@CS.UTK.EDU>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
          boundary="JAA13167.773673707/CS.UTK.EDU"

    --JAA13167.773673707/CS.UTK.EDU
    content-type: text/plain; charset=us-ascii

       ----- The following addresses had delivery problems -----
    <arathib@vnet.ibm.com>  (unrecoverable error)
    <wsnell@sdcc13.ucsd.edu>  (unrecoverable error)

    --JAA13167.773673707/CS.UTK.EDU
    content-type: message/delivery-status

    Reporting-MTA: dns; cs.utk.edu

    Original-Recipient: rfc822;arathib@vnet.ibm.com
    Final-Recipient: rfc822;arathib@vnet.ibm.com
    Action: failed
    Status: 5.0.0 (permanent failure)
    Diagnostic-Code: smtp;  550 'arathib@vnet.IBM.COM' is not a
        registered gateway user
    Remote-MTA: dns; vnet.ibm.com

    Original-Recipient: rfc822;johnh@hpnjld.njd.hp.com
    Final-Recipient: rfc822;johnh@hpnjld.njd.hp.com
    Action: delayed
    Status: 4.0.0 (hpnjld.njd.jp.com: host name lookup failure)

    Original-Recipient: rfc822;wsnell@sdcc13.ucsd.edu
    Final-Recipient: rfc822;wsnell@sdcc13.ucsd.edu
    Action: failed
    Status: 5.0.0
    Diagnostic-Code: smtp; 550 user unknown
    Remote-MTA: dns; sdcc13.ucsd.edu

    --JAA13167.773673707/CS.UTK.EDU
    content-type: text/rfc822-headers

    Return-Path: <bounce@mail.herald.example>
    From: news@herald.example
    Subject: Weekly news
    Message-ID: <{HERALD_ID}@mail.herald.example>

    --JAA13167.773673707/CS.UTK.EDU--
    """
)

# Gmail: a multipart/related human part, X-Original-Message-ID, the whole original attached.
GMAIL_DSN = mail(
    f"""
    Delivered-To: bounce@mail.herald.example
    Return-Path: <>
    From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
    To: bounce@mail.herald.example
    Auto-Submitted: auto-replied
    Subject: Delivery Status Notification (Failure)
    Message-ID: <665d7a2b.050a0220.1c2f3.abcd.GMR@mx.google.com>
    Date: Mon, 03 Jun 2024 01:02:04 -0700 (PDT)
    X-Failed-Recipients: nobody.here@gmail.com
    MIME-Version: 1.0
    Content-Type: multipart/report; boundary="000000000000d1e2f3061a0b0c0d"; report-type=delivery-status

    --000000000000d1e2f3061a0b0c0d
    Content-Type: multipart/related; boundary="000000000000d1e30a061a0b0c0e"

    --000000000000d1e30a061a0b0c0e
    Content-Type: multipart/alternative; boundary="000000000000d1e30b061a0b0c0f"

    --000000000000d1e30b061a0b0c0f
    Content-Type: text/plain; charset="UTF-8"

    ** Address not found **

    Your message wasn't delivered to nobody.here@gmail.com because the address couldn't be found,
    or is unable to receive mail.

    --000000000000d1e30b061a0b0c0f
    Content-Type: text/html; charset="UTF-8"

    <html><body><h1>Address not found</h1></body></html>

    --000000000000d1e30b061a0b0c0f--
    --000000000000d1e30a061a0b0c0e
    Content-Type: image/png; name="icon.png"
    Content-Transfer-Encoding: base64
    Content-ID: <icon.png>

    iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==
    --000000000000d1e30a061a0b0c0e--
    --000000000000d1e2f3061a0b0c0d
    Content-Type: message/delivery-status

    Reporting-MTA: dns; googlemail.com
    Received-From-MTA: dns; bounce@mail.herald.example
    Arrival-Date: Mon, 03 Jun 2024 01:02:03 -0700 (PDT)
    X-Original-Message-ID: <{HERALD_ID}@mail.herald.example>

    Final-Recipient: rfc822; nobody.here@gmail.com
    Action: failed
    Status: 5.1.1
    Remote-MTA: dns; gmail-smtp-in.l.google.com. 142.250.102.27
    Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
     550-5.1.1 double-checking the recipient's email address for typos or
     550-5.1.1 unnecessary spaces. For more information, go to
     550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a640c23a62f3a-a6.9 - gsmtp
    Last-Attempt-Date: Mon, 03 Jun 2024 01:02:04 -0700 (PDT)

    --000000000000d1e2f3061a0b0c0d
    Content-Type: message/rfc822

    From: Shop News <news@herald.example>
    To: nobody.here@gmail.com
    Subject: Summer sale
    Message-ID: <{HERALD_ID}@mail.herald.example>
    X-Herald-Message-ID: {HERALD_ID}
    Content-Type: text/plain; charset=utf-8

    Summer sale

    --000000000000d1e2f3061a0b0c0d--
    """,
    crlf=True,
)

# Postfix: mailbox full, the original's headers only (text/rfc822-headers), no X-Herald header.
POSTFIX_DSN = mail(
    f"""
    Return-Path: <>
    Received: by mail.example.org (Postfix) id 3F1A21C0E8; Mon,  3 Jun 2024 07:00:05 +0000 (UTC)
    Date: Mon,  3 Jun 2024 07:00:05 +0000 (UTC)
    From: MAILER-DAEMON@mail.example.org (Mail Delivery System)
    Subject: Undelivered Mail Returned to Sender
    To: bounce@mail.herald.example
    Auto-Submitted: auto-replied
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
    \tboundary="3F1A21C0E8.1717398005/mail.example.org"
    Content-Transfer-Encoding: 8bit
    Message-Id: <20240603070005.3F1A21C0E8@mail.example.org>

    This is a MIME-encapsulated message.

    --3F1A21C0E8.1717398005/mail.example.org
    Content-Description: Notification
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: 8bit

    This is the mail system at host mail.example.org.

    I'm sorry to have to inform you that your message could not
    be delivered to one or more recipients.

    <full.box@example.net>: host mx.example.net[198.51.100.7] said: 552 5.2.2
        <full.box@example.net>: Mailbox full (in reply to RCPT TO command)

    --3F1A21C0E8.1717398005/mail.example.org
    Content-Description: Delivery report
    Content-Type: message/delivery-status

    Reporting-MTA: dns; mail.example.org
    X-Postfix-Queue-ID: 3F1A21C0E8
    X-Postfix-Sender: rfc822; bounce@mail.herald.example
    Arrival-Date: Mon,  3 Jun 2024 07:00:01 +0000 (UTC)

    Final-Recipient: rfc822; full.box@example.net
    Original-Recipient: rfc822;full.box@example.net
    Action: failed
    Status: 5.2.2
    Remote-MTA: dns; mx.example.net
    Diagnostic-Code: smtp; 552 5.2.2 <full.box@example.net>: Mailbox full

    --3F1A21C0E8.1717398005/mail.example.org
    Content-Description: Undelivered Message Headers
    Content-Type: text/rfc822-headers
    Content-Transfer-Encoding: 8bit

    Return-Path: <bounce@mail.herald.example>
    Received: from mail.herald.example (mail.herald.example [203.0.113.25])
    \tby mail.example.org (Postfix) with ESMTPS id 3F1A21C0E8
    \tfor <full.box@example.net>; Mon,  3 Jun 2024 07:00:01 +0000 (UTC)
    From: Shop News <news@herald.example>
    To: full.box@example.net
    Subject: Summer sale
    Message-ID: <{HERALD_ID.upper()}@mail.herald.example>

    --3F1A21C0E8.1717398005/mail.example.org--
    """,
    crlf=True,
)

# Postfix "delayed mail" warning: still being retried.
POSTFIX_DELAYED = mail(
    f"""
    From: MAILER-DAEMON@mail.example.org (Mail Delivery System)
    Subject: Delayed Mail (still being retried)
    To: bounce+{HERALD_ID}@mail.herald.example
    Auto-Submitted: auto-replied
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
    \tboundary="9B2C31D0F1.1717412400/mail.example.org"

    --9B2C31D0F1.1717412400/mail.example.org
    Content-Description: Notification
    Content-Type: text/plain; charset=us-ascii

    This is the mail system at host mail.example.org.

    ####################################################################
    # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
    ####################################################################

    --9B2C31D0F1.1717412400/mail.example.org
    Content-Description: Delivery report
    Content-Type: message/delivery-status

    Reporting-MTA: dns; mail.example.org
    X-Postfix-Queue-ID: 9B2C31D0F1
    Arrival-Date: Mon,  3 Jun 2024 07:00:00 +0000 (UTC)

    Final-Recipient: rfc822; slow@example.net
    Action: delayed
    Status: 4.4.1
    Diagnostic-Code: X-Postfix; connect to mx.example.net[198.51.100.8]:25:
        Connection timed out
    Will-Retry-Until: Wed,  5 Jun 2024 07:00:00 +0000 (UTC)

    --9B2C31D0F1.1717412400/mail.example.org--
    """
)

FIXTURES = {
    "rfc5965_arf": RFC5965_ARF,
    "yahoo_arf": YAHOO_ARF,
    "rfc3464_simple": RFC3464_SIMPLE,
    "rfc3464_multi": RFC3464_MULTI,
    "gmail_dsn": GMAIL_DSN,
    "postfix_dsn": POSTFIX_DSN,
    "postfix_delayed": POSTFIX_DELAYED,
}


# --- builders for the table tests --------------------------------------------------------------


def dsn(
    recipient_fields: str,
    *,
    per_message: str = "Reporting-MTA: dns; mx.example.org",
    original: str | None = None,
    headers: str = "",
    status_part_headers: str = "Content-Type: message/delivery-status",
    report_type: str = "; report-type=delivery-status",
) -> bytes:
    """A DSN with the given per-recipient block(s) and, optionally, a text/rfc822-headers original."""
    parts = [
        "Content-Type: text/plain\n\nDelivery failed.\n",
        f"{status_part_headers}\n\n{per_message}\n\n{recipient_fields.strip()}\n",
    ]
    if original is not None:
        parts.append(f"Content-Type: text/rfc822-headers\n\n{original.strip()}\n")
    body = "".join(f"--b\n{part}" for part in parts) + "--b--\n"
    head = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\n"
        "To: bounce@mail.herald.example\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"{headers}"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report{report_type}; boundary="b"\n\n'
    )
    return (head + body).encode("utf-8")


def arf(
    feedback_fields: str | None = "Feedback-Type: abuse\nUser-Agent: Test/1.0\nVersion: 1",
    *,
    original: str | None = f"Message-ID: <{HERALD_ID}@mail.herald.example>",
    original_type: str = "message/rfc822",
) -> bytes:
    parts = ["Content-Type: text/plain\n\nAbuse report.\n"]
    if feedback_fields is not None:
        parts.append(f"Content-Type: message/feedback-report\n\n{feedback_fields.strip()}\n")
    if original is not None:
        parts.append(f"Content-Type: {original_type}\n\n{original.strip()}\n\nbody\n")
    body = "".join(f"--b\n{part}" for part in parts) + "--b--\n"
    head = (
        "From: <fbl@isp.example>\nTo: <abusemaster@herald.example>\nSubject: complaint\n"
        'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary="b"\n\n'
    )
    return (head + body).encode("utf-8")


def only_recipient(raw: bytes) -> BouncedRecipient:
    result = parse_inbound(raw)
    assert isinstance(result, Bounce), result
    assert len(result.recipients) == 1
    return result.recipients[0]


# --- complaints --------------------------------------------------------------------------------


def test_rfc5965_example_reads_every_field() -> None:
    assert parse_inbound(RFC5965_ARF) == Complaint(
        message_id=None,  # the quoted original is not a Herald message
        feedback_type="abuse",
        user_agent="SomeGenerator/1.0",
        original_recipient="user@example.com",
        arrival_date=datetime(2005, 3, 8, 14, 0, tzinfo=timezone(timedelta(hours=-4))),
        source_ip="192.0.2.1",
        reported_domain="example.net",
    )


def test_yahoo_style_report_matches_the_message_and_takes_the_recipient_from_the_original() -> None:
    result = parse_inbound(YAHOO_ARF)
    assert result == Complaint(
        message_id=HERALD_ID,
        feedback_type="abuse",
        user_agent="Yahoo!-Mail-Feedback/2.0",
        original_recipient="jane.doe@yahoo.com",
        arrival_date=datetime(2024, 6, 3, 8, 1, 2, tzinfo=UTC),
        source_ip="203.0.113.25",
        reported_domain="herald.example",
    )
    assert isinstance(result, Complaint) and result.counts_as_complaint


@pytest.mark.parametrize(
    ("feedback_type", "counts"),
    [
        ("abuse", True),
        ("fraud", True),
        ("virus", True),
        ("other", True),
        ("Not-Spam", False),
        ("auth-failure", False),
    ],
)
def test_feedback_types_that_count_as_complaints(feedback_type: str, counts: bool) -> None:
    result = parse_inbound(arf(f"Feedback-Type: {feedback_type}\nUser-Agent: T/1\nVersion: 1"))
    assert isinstance(result, Complaint)
    assert result.feedback_type == feedback_type.lower()
    assert result.counts_as_complaint is counts


def test_complaint_with_headers_only_original_and_missing_optional_fields() -> None:
    result = parse_inbound(
        arf("Feedback-Type: abuse\nArrival-Date: not a date", original_type="text/rfc822-headers")
    )
    assert result == Complaint(
        message_id=HERALD_ID,
        feedback_type="abuse",
        user_agent=None,
        original_recipient=None,
        arrival_date=None,
        source_ip=None,
        reported_domain=None,
    )


def test_arrival_date_without_zone_is_utc() -> None:
    result = parse_inbound(arf("Feedback-Type: abuse\nReceived-Date: Mon, 03 Jun 2024 08:01:02 -0000"))
    assert isinstance(result, Complaint)
    assert result.arrival_date == datetime(2024, 6, 3, 8, 1, 2, tzinfo=UTC)


# --- bounces -----------------------------------------------------------------------------------


def test_rfc3464_simple_dsn_is_a_soft_bounce_after_retries() -> None:
    assert parse_inbound(RFC3464_SIMPLE) == Bounce(
        message_id=HERALD_ID,
        recipients=(
            BouncedRecipient(
                address="louisl@larry.slip.umd.edu",
                action="failed",
                status="4.0.0",
                diagnostic_code="426 connection timed out",
                kind="soft",
                reason=BounceReason.NETWORK,
                smtp_code=426,
            ),
        ),
    )


def test_rfc3464_multi_recipient_dsn() -> None:
    result = parse_inbound(RFC3464_MULTI)
    assert isinstance(result, Bounce)
    assert result.message_id == HERALD_ID
    assert [(r.address, r.action, r.status, r.kind, r.reason) for r in result.recipients] == [
        ("arathib@vnet.ibm.com", "failed", "5.0.0", "hard", BounceReason.USER_UNKNOWN),
        ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0", "delayed", BounceReason.BAD_DOMAIN),
        ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0", "hard", BounceReason.USER_UNKNOWN),
    ]
    assert (
        result.recipients[0].diagnostic_code == "550 'arathib@vnet.IBM.COM' is not a registered gateway user"
    )
    assert result.recipients[1].diagnostic_code is None


def test_gmail_dsn_user_unknown() -> None:
    result = parse_inbound(GMAIL_DSN)
    assert isinstance(result, Bounce)
    assert result.message_id == HERALD_ID
    (recipient,) = result.recipients
    assert (recipient.address, recipient.status, recipient.kind, recipient.reason, recipient.smtp_code) == (
        "nobody.here@gmail.com",
        "5.1.1",
        "hard",
        BounceReason.USER_UNKNOWN,
        550,
    )
    assert recipient.diagnostic_code is not None
    assert recipient.diagnostic_code.startswith(
        "550-5.1.1 The email account that you tried to reach does not exist."
    )
    assert "\n" not in recipient.diagnostic_code


def test_postfix_dsn_mailbox_full_is_soft() -> None:
    assert parse_inbound(POSTFIX_DSN) == Bounce(
        message_id=HERALD_ID,  # from the quoted Message-ID, lower-cased
        recipients=(
            BouncedRecipient(
                address="full.box@example.net",
                action="failed",
                status="5.2.2",
                diagnostic_code="552 5.2.2 <full.box@example.net>: Mailbox full",
                kind="soft",
                reason=BounceReason.MAILBOX_FULL,
                smtp_code=552,
            ),
        ),
    )


def test_postfix_delayed_warning() -> None:
    result = parse_inbound(POSTFIX_DELAYED)
    assert result == Bounce(
        message_id=HERALD_ID,  # VERP in the To header: no original is attached to a delay warning
        recipients=(
            BouncedRecipient(
                address="slow@example.net",
                action="delayed",
                status="4.4.1",
                diagnostic_code="connect to mx.example.net[198.51.100.8]:25: Connection timed out",
                kind="delayed",
                reason=BounceReason.NETWORK,
                smtp_code=None,
            ),
        ),
    )


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind", "reason"),
    [
        ("failed", "5.1.1", "550 5.1.1 <a@example.net>: Recipient address rejected: User unknown", "hard",
         BounceReason.USER_UNKNOWN),
        ("failed", "5.1.2", "550 5.1.2 bad destination system address", "hard", BounceReason.BAD_DOMAIN),
        ("failed", "5.1.3", "501 5.1.3 Bad recipient address syntax", "hard", BounceReason.BAD_ADDRESS),
        ("failed", "5.1.10", "556 5.1.10 Recipient address has null MX", "hard", BounceReason.BAD_DOMAIN),
        ("failed", "5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", "hard",
         BounceReason.MAILBOX_DISABLED),
        ("failed", "5.2.2", "552 5.2.2 Mailbox full", "soft", BounceReason.MAILBOX_FULL),
        ("failed", "5.3.4", "552 5.3.4 Message size exceeds fixed limit", "soft",
         BounceReason.MESSAGE_TOO_LARGE),
        ("failed", "5.7.1", "550 5.7.1 Our system has detected that this message is likely unsolicited mail",
         "soft", BounceReason.POLICY_BLOCK),
        ("failed", "5.7.26", "550 5.7.26 Unauthenticated email is not accepted (DMARC)", "soft",
         BounceReason.POLICY_BLOCK),
        ("failed", "5.4.4", "550 5.4.4 Host not found", "hard", BounceReason.BAD_DOMAIN),
        ("failed", "5.4.7", "Delivery time expired", "soft", BounceReason.TTL_EXPIRED),
        ("failed", "4.4.7", "Message expired in queue", "soft", BounceReason.TTL_EXPIRED),
        ("failed", "4.2.2", "452 4.2.2 Mailbox full", "soft", BounceReason.MAILBOX_FULL),
        ("failed", "4.0.0", "Max retry times are reached", "soft", BounceReason.MAX_RETRIES),
        ("failed", "4.3.0", "451 Sorry, the service is currently unavailable", "soft",
         BounceReason.SERVICE_UNAVAILABLE),
        ("failed", "5.3.2", "554 5.3.2 System not accepting network messages", "soft",
         BounceReason.SERVICE_UNAVAILABLE),
        ("failed", "5.0.0", "550 Message was not accepted - invalid mailbox", "hard",
         BounceReason.USER_UNKNOWN),
        ("failed", "5.0.0", "554 DNSBL:ATTRBL blocked", "soft", BounceReason.POLICY_BLOCK),
        ("failed", "5.0.0", "550 5.1.1 <a@example.net>: Recipient address rejected", "hard",
         BounceReason.USER_UNKNOWN),  # a generic Status sharpened by the code in the diagnostic
        ("failed", "5.5.0", "550 5.5.0 Requested action not taken: mailbox unavailable", "hard",
         BounceReason.USER_UNKNOWN),
        ("failed", "5.0.0", "550 rejected", "hard", BounceReason.OTHER),
        ("delayed", "4.4.1", "Connection refused", "delayed", BounceReason.NETWORK),
        ("delayed", "4.7.0", "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred due to user "
         "complaints - 4.16.55.1; see https://help.yahoo.com/kb/postmaster/SIN3434.html", "delayed",
         BounceReason.POLICY_BLOCK),
        ("delayed", "4.7.0", "421 4.7.0 Not allowed.", "delayed", BounceReason.POLICY_BLOCK),
        ("delayed", "5.1.1", "550 5.1.1 user unknown (will retry)", "delayed", BounceReason.USER_UNKNOWN),
    ],
)  # fmt: skip
def test_classification_table(
    action: str, status: str, diagnostic: str, kind: str, reason: BounceReason
) -> None:
    raw = dsn(
        f"Final-Recipient: rfc822; a@example.net\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}"
    )
    recipient = only_recipient(raw)
    assert (recipient.status, recipient.kind, recipient.reason) == (status, kind, reason)
    assert recipient.diagnostic_code == diagnostic


def test_classification_functions_match_the_parser() -> None:
    assert bounce_reason("5.1.1") is BounceReason.USER_UNKNOWN
    assert bounce_reason("5.0.0", "552 Mailbox is full") is BounceReason.MAILBOX_FULL
    assert bounce_reason("4.4.2") is BounceReason.NETWORK
    assert bounce_reason("5.6.0") is BounceReason.OTHER
    assert bounce_kind("failed", "5.1.1", BounceReason.USER_UNKNOWN) == "hard"
    assert bounce_kind("failed", "5.2.2", BounceReason.MAILBOX_FULL) == "soft"
    assert bounce_kind("failed", "4.1.1", BounceReason.USER_UNKNOWN) == "soft"
    assert bounce_kind("delayed", "5.1.1", BounceReason.USER_UNKNOWN) == "delayed"


def test_status_missing_is_taken_from_the_diagnostic() -> None:
    recipient = only_recipient(
        dsn(
            "Final-Recipient: rfc822; a@example.net\nAction: failed\n"
            "Diagnostic-Code: smtp; 550 5.1.1 no such user"
        )
    )
    assert (recipient.status, recipient.kind, recipient.reason) == (
        "5.1.1",
        "hard",
        BounceReason.USER_UNKNOWN,
    )


def test_action_missing_is_inferred_from_the_status_class() -> None:
    recipient = only_recipient(dsn("Final-Recipient: rfc822; a@example.net\nStatus: 4.2.2"))
    assert (recipient.action, recipient.kind) == ("delayed", "delayed")


def test_original_recipient_stands_in_for_a_missing_final_recipient() -> None:
    recipient = only_recipient(
        dsn("Original-Recipient: rfc822;<a@example.net>\nAction: failed\nStatus: 5.1.1")
    )
    assert recipient.address == "a@example.net"


def test_success_only_dsn_has_no_bounced_recipients() -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@example.net\nAction: delivered\nStatus: 2.0.0\n\n"
        "Final-Recipient: rfc822; b@example.net\nAction: relayed\nStatus: 2.0.0",
        original=f"Message-ID: <{HERALD_ID}@mail.herald.example>",
    )
    assert parse_inbound(raw) == Bounce(message_id=HERALD_ID, recipients=())


def test_report_type_missing_is_inferred_from_the_parts() -> None:
    recipient = only_recipient(
        dsn("Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1", report_type="")
    )
    assert recipient.reason is BounceReason.USER_UNKNOWN


def test_base64_delivery_status_part_is_decoded() -> None:
    import base64

    fields = "Final-Recipient: rfc822; a@example.net\r\nAction: failed\r\nStatus: 5.1.2\r\n"
    encoded = base64.encodebytes(f"Reporting-MTA: dns; mx\r\n\r\n{fields}".encode()).decode()
    raw = dsn(
        "",
        per_message=encoded,
        status_part_headers="Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64",
    )
    recipient = only_recipient(raw)
    assert (recipient.address, recipient.reason) == ("a@example.net", BounceReason.BAD_DOMAIN)


def test_global_delivery_status_with_utf8_address() -> None:
    raw = dsn(
        "Final-Recipient: utf-8; jürgen@bücher.example\nAction: failed\nStatus: 5.1.1",
        status_part_headers="Content-Type: message/global-delivery-status",
        report_type="; report-type=global-delivery-status",
    )
    assert only_recipient(raw).address == "jürgen@bücher.example"


def test_truncated_dsn_still_reads_what_arrived() -> None:
    cut = POSTFIX_DSN[: POSTFIX_DSN.index(b"Content-Description: Undelivered Message Headers")]
    result = parse_inbound(cut)
    assert isinstance(result, Bounce)
    assert result.message_id is None
    assert result.recipients[0].reason is BounceReason.MAILBOX_FULL


# --- message id recovery -----------------------------------------------------------------------

STATUS_PART = "Content-Type: message/delivery-status"
RECIPIENT = "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1"


@pytest.mark.parametrize(
    ("raw", "envelope"),
    [
        pytest.param(dsn(RECIPIENT, original=f"X-Herald-Message-ID: {HERALD_ID}"), (), id="x-herald-header"),
        pytest.param(
            dsn(RECIPIENT, original=f"X-Herald-Message-ID: {HERALD_ID}\nMessage-ID: <{OTHER_ID}@h.example>"),
            (),
            id="x-herald-header-wins-over-message-id",
        ),
        pytest.param(
            dsn(RECIPIENT, original=f"X-Herald-Message-ID: not-an-id\nMessage-ID: <{HERALD_ID}@h.example>"),
            (),
            id="message-id-when-x-herald-is-not-an-id",
        ),
        pytest.param(dsn(RECIPIENT, original=f"Message-ID: <{HERALD_ID}@h.example>"), (), id="message-id"),
        pytest.param(
            dsn(RECIPIENT, per_message=f"Reporting-MTA: dns; mx\nOriginal-Envelope-Id: {HERALD_ID}"),
            (),
            id="original-envelope-id",
        ),
        pytest.param(
            dsn(RECIPIENT, per_message=f"Reporting-MTA: dns; mx\nX-Original-Message-ID: <{HERALD_ID}@h.ex>"),
            (),
            id="gmail-x-original-message-id",
        ),
        pytest.param(dsn(RECIPIENT), (f"bounce+{HERALD_ID}@h.example",), id="verp-envelope-recipient"),
        pytest.param(
            dsn(RECIPIENT, headers=f"Delivered-To: Bounce+{HERALD_ID.upper()}@mail.herald.example\n"),
            (),
            id="verp-delivered-to",
        ),
        pytest.param(
            dsn(RECIPIENT, original=f"Return-Path: <bounce+{HERALD_ID}@mail.herald.example>"),
            (),
            id="verp-original-return-path",
        ),
        pytest.param(
            dsn(RECIPIENT, per_message=f"X-Postfix-Sender: rfc822; bounce+{HERALD_ID}@h.example"),
            (),
            id="verp-postfix-sender",
        ),
        pytest.param(
            arf(original=f"From: news@h.example\nX-Herald-Message-ID: {HERALD_ID}"), (), id="arf-x-herald"
        ),
        pytest.param(
            arf(
                f"Feedback-Type: abuse\nOriginal-Mail-From: <bounce+{HERALD_ID}@mail.herald.example>",
                original="From: news@herald.example\nMessage-ID: <not-ours@h.example>",
            ),
            (),
            id="arf-verp-original-mail-from",
        ),
    ],
)  # fmt: skip
def test_message_id_recovery(raw: bytes, envelope: tuple[str, ...]) -> None:
    result = parse_inbound(raw, envelope)
    assert isinstance(result, Bounce | Complaint), result
    assert result.message_id == HERALD_ID


def test_message_id_is_none_when_nothing_matches() -> None:
    raw = dsn(RECIPIENT, original="Message-ID: <short-id@h.example>\nX-Herald-Message-ID: 123")
    result = parse_inbound(raw, ["postmaster@herald.example"])
    assert isinstance(result, Bounce)
    assert result.message_id is None
    assert result.recipients[0].kind == "hard"


# --- malformed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"", "empty message", id="empty"),
        pytest.param(b"\r\n  \r\n", "empty message", id="blank"),
        pytest.param(b"\x00\xff\x10 binary junk without any header", "no header fields", id="no-headers"),
        pytest.param(
            b"From: a@b.example\nContent-Type: multipart/report; report-type=delivery-status\n\nbody\n",
            "multipart/report without parts: its boundary parameter is missing or never appears",
            id="no-boundary",
        ),
        pytest.param(
            b"From: a@b.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=z\n\n"
            b"body\n",
            "multipart/report without parts",
            id="boundary-never-appears",
        ),
        pytest.param(
            dsn(RECIPIENT, report_type="; report-type=disposition-notification"),
            "unsupported report-type 'disposition-notification'",
            id="read-receipt",
        ),
        pytest.param(
            b'Content-Type: multipart/report; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n--b--\n',
            "multipart/report without a report-type parameter and without a delivery-status or "
            "feedback-report part",
            id="no-report-type-no-report-part",
        ),
        pytest.param(
            dsn(RECIPIENT, status_part_headers="Content-Type: text/plain"),
            "delivery-status report without a message/delivery-status part",
            id="dsn-no-status-part",
        ),
        pytest.param(
            dsn("", per_message="Reporting-MTA: dns; mx\nArrival-Date: Mon, 3 Jun 2024 07:00:01 +0000"),
            "message/delivery-status part without per-recipient fields",
            id="dsn-no-recipients",
        ),
        pytest.param(
            dsn("Action: failed\nStatus: 5.1.1"),
            "recipient #1 of the delivery-status part has no Final-Recipient address",
            id="dsn-no-final-recipient",
        ),
        pytest.param(
            dsn("Final-Recipient: rfc822; a@example.net\nAction: failed\nDiagnostic-Code: smtp; 550 no"),
            "recipient a@example.net: no Status field and no status code in its Diagnostic-Code",
            id="dsn-no-status",
        ),
        pytest.param(
            dsn("Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: five"),
            "recipient a@example.net: Status 'five' is not an RFC 3463 status code",
            id="dsn-bad-status",
        ),
        pytest.param(
            dsn("Final-Recipient: rfc822; a@example.net\nAction: exploded\nStatus: 5.1.1"),
            "recipient a@example.net: unknown Action 'exploded'",
            id="dsn-unknown-action",
        ),
        pytest.param(
            dsn("Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 2.0.0"),
            "recipient a@example.net: Action failed with the success Status 2.0.0",
            id="dsn-failed-with-success-status",
        ),
        pytest.param(
            dsn(RECIPIENT + "\n\nFinal-Recipient: rfc822; b@example.net\nAction: failed"),
            "recipient b@example.net: no Status field",
            id="dsn-one-bad-recipient-of-two",
        ),
        pytest.param(
            dsn(
                "",
                per_message="@@@not base64!!",
                status_part_headers=f"{STATUS_PART}\nContent-Transfer-Encoding: base64",
            ),
            "message/delivery-status part: its base64 body does not decode",
            id="dsn-undecodable-base64",
        ),
        pytest.param(
            dsn(RECIPIENT, status_part_headers=f"{STATUS_PART}\nContent-Transfer-Encoding: x-uue"),
            "message/delivery-status part: unsupported Content-Transfer-Encoding 'x-uue'",
            id="dsn-unknown-transfer-encoding",
        ),
        pytest.param(
            arf(None),
            "feedback report without a message/feedback-report part",
            id="arf-no-feedback-part",
        ),
        pytest.param(
            arf("User-Agent: T/1\nVersion: 1"),
            "message/feedback-report part without a Feedback-Type field",
            id="arf-no-feedback-type",
        ),
        pytest.param(
            arf(original=None),
            "feedback report without the original message (a message/rfc822 or text/rfc822-headers part)",
            id="arf-no-original",
        ),
        pytest.param(
            b"From: a@b.example\n"
            + b"".join(b"Content-Type: multipart/mixed; boundary=%d\n\n--%d\n" % (i, i) for i in range(3000)),
            "MIME parts nested too deeply to parse",
            id="nesting-bomb",
        ),
        pytest.param(
            b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\nSubject: failure notice\n\n"
            b"Sorry, we were unable to deliver your message to <a@example.net>.\n",
            "bounce from MAILER-DAEMON that is not a multipart/report DSN",
            id="free-form-bounce",
        ),
    ],
)  # fmt: skip
def test_malformed_reports_are_unparsed_with_their_reason(raw: bytes, reason: str) -> None:
    result = parse_inbound(raw)
    assert isinstance(result, Unparsed), result
    assert result.reason.startswith(reason), result.reason


# --- ordinary mail -----------------------------------------------------------------------------


def test_a_reply_is_not_a_report() -> None:
    raw = mail(
        f"""
        From: "Jane Doe" <jane.doe@example.net>
        To: news@herald.example
        Subject: =?utf-8?q?Re:_Summer_sale_=E2=80=94_question?=
        In-Reply-To: <{HERALD_ID}@mail.herald.example>
        Content-Type: text/plain; charset=utf-8

        Do you ship to Norway?
        """
    )
    assert parse_inbound(raw) == NotReport(
        subject="Re: Summer sale — question", sender="jane.doe@example.net"
    )


def test_multipart_mail_without_sender_or_subject_is_not_a_report() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n--b--\n'
    assert parse_inbound(raw) == NotReport(subject=None, sender=None)


def test_undecodable_subject_is_kept_raw() -> None:
    raw = b"From: a@example.net\nSubject: =?x-no-such-charset?q?hi?= \xff\n\nbody\n"
    result = parse_inbound(raw)
    assert isinstance(result, NotReport)
    assert result.sender == "a@example.net"
    assert result.subject is not None and "hi" in result.subject


# --- fuzz --------------------------------------------------------------------------------------


def _variants(rng: random.Random) -> list[bytes]:
    """Random bytes, truncations, byte flips and content-type swaps of every fixture."""
    samples = list(FIXTURES.values())
    variants = [rng.randbytes(rng.randrange(0, 2048)) for _ in range(300)]
    variants += [b"Content-Type: multipart/report; boundary=b\n\n" + rng.randbytes(512) for _ in range(50)]
    for sample in samples:
        variants += [sample[: rng.randrange(len(sample))] for _ in range(40)]
        for _ in range(40):
            mutated = bytearray(sample)
            for _ in range(rng.randrange(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            variants.append(bytes(mutated))
        for old, new in (
            (b"message/delivery-status", b"text/plain"),
            (b"message/feedback-report", b"message/rfc822"),
            (b"multipart/report", b"multipart/mixed"),
            (b"report-type=delivery-status", b"report-type=feedback-report"),
            (b"report-type=feedback-report", b"report-type=delivery-status"),
            (b"message/rfc822", b"application/octet-stream"),
            (b"text/rfc822-headers", b"message/rfc822"),
            (b"Status:", b"Stat:"),
            (b"\n\n", b"\n"),
        ):
            variants.append(sample.replace(old, new))
    return variants


def test_fuzz_never_raises_and_never_needs_the_safety_net() -> None:
    rng = random.Random(20240603)
    seen: set[type] = set()
    for raw in _variants(rng):
        result = parse_inbound(raw)
        assert isinstance(result, Complaint | Bounce | Unparsed | NotReport)
        if isinstance(result, Unparsed):
            # Every failure is one the parser names, not a stdlib crash caught by the last resort.
            assert not result.reason.startswith("internal parser error"), (result.reason, raw[:200])
        seen.add(type(result))
    assert seen == {Complaint, Bounce, Unparsed, NotReport}
