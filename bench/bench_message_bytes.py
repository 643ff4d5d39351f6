"""Messages/s of the email adapters: MIME written as bytes against the email package, DKIM against dkimpy.

MIME: `senders/mime.build_email` of a ≈ 14 KB multipart/alternative email (a
personalised subject with a non-ASCII word, a display name, List-Unsubscribe
with one-click, List-ID, Feedback-ID, a quoted-printable HTML part of ≈ 10 KB
and a text part). Baseline, same run: the same message built with
`email.message.EmailMessage` (policy SMTP, headers set as values, both bodies by
`set_content`, `as_bytes()`): what Herald did before. Both outputs are parsed
back with the email package and must carry the same headers and bodies.

DKIM: `senders/dkim.sign` (rsa-sha256, relaxed/relaxed, RSA-2048 through
`cryptography`) of the built message. Baseline, same run: `dkim.sign` of
dkimpy with the same key, headers and canonicalisation. Every signature of
both is verified by dkimpy before the figures are printed.

Each side is timed in alternating rounds over the same messages; each one's best
round counts (the machine is shared).

    python bench/bench_message_bytes.py [--messages 1000] [--signatures 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import email
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

import dkim as dkimpy
from common import machine, report, run

from herald.senders.dkim import DEFAULT_SIGNED_HEADERS, DkimKey, generate_key, sign
from herald.senders.mime import build_email

DATE = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
HTML = (
    '<p>Hello Anna, <a href="https://trk.example.com/t/click/eyJsIjoiaHRtbC4xIn0.c2lnbmF0dXJlMTIz">'
    "see our spring sale</a>, with prices you will like.</p>\n"
) * 80
TEXT = "Hello Anna, see our spring sale: https://trk.example.com/t/click/eyJsIjoidGV4dC4xIn0.c2ln\n" * 40
UNSUBSCRIBE = "https://trk.example.com/t/unsubscribe/eyJtIjoiMDAwMDAwMDAwMDAwMDAwMCJ9.bWFj"


def fields(n: int) -> dict[str, str]:
    return {
        "message_id": f"{n:032x}",
        "to_email": f"user{n}@example.org",
        "subject": f"Anna{n}, весенняя распродажа",
    }


def herald_message(n: int) -> bytes:
    f = fields(n)
    return build_email(
        message_id=f["message_id"],
        domain="example.com",
        date=DATE,
        from_email="news@example.com",
        from_name="Shop News",
        to_email=f["to_email"],
        subject=f["subject"],
        text=TEXT,
        html=HTML,
        unsubscribe_url=UNSUBSCRIBE,
        list_id="news.example.com",
        list_name="News",
        feedback_id="1:7:herald",
    )


def email_package_message(n: int) -> bytes:
    f = fields(n)
    message = EmailMessage(policy=policy.SMTP)
    message["Date"] = email.utils.format_datetime(DATE)
    message["From"] = Address("Shop News", addr_spec="news@example.com")
    message["To"] = f["to_email"]
    message["Subject"] = f["subject"]
    message["Message-ID"] = f"<{f['message_id']}@example.com>"
    message["X-Herald-Message-ID"] = f["message_id"]
    message["List-ID"] = "News <news.example.com>"
    message["List-Unsubscribe"] = f"<{UNSUBSCRIBE}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Feedback-ID"] = "1:7:herald"
    message.set_content(TEXT, charset="utf-8")
    message.add_alternative(HTML, subtype="html", charset="utf-8")
    return message.as_bytes()


def same_message(ours: bytes, theirs: bytes) -> None:
    a = email.message_from_bytes(ours, policy=policy.default)
    b = email.message_from_bytes(theirs, policy=policy.default)
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe", "List-ID", "Feedback-ID"):
        if str(a[header]).strip() != str(b[header]).strip():  # the email package folds after a name
            raise RuntimeError(f"{header} differs: {a[header]!r} against {b[header]!r}")
    for kind in ("plain", "html"):
        ours_part, theirs_part = a.get_body((kind,)), b.get_body((kind,))
        assert ours_part is not None and theirs_part is not None
        if ours_part.get_content().replace("\r\n", "\n") != theirs_part.get_content().replace("\r\n", "\n"):
            raise RuntimeError(f"the {kind} bodies differ")


def best(rounds: int, count: int, work: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Per second, each side's best of `rounds` alternating rounds of `count` calls."""
    rates = dict.fromkeys(work, 0.0)
    for _ in range(rounds):
        for name, one in work.items():
            started = time.perf_counter()
            for _ in range(count):
                one()
            rates[name] = max(rates[name], count / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--signatures", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sample = herald_message(0)
    same_message(sample, email_package_message(0))
    print(f"{machine()}; a {len(sample):,}-byte message", flush=True)

    numbers = iter(range(10**9))
    rates = best(
        args.rounds,
        args.messages,
        {
            "herald": lambda: herald_message(next(numbers)),
            "email": lambda: email_package_message(next(numbers)),
        },
    )
    report("MIME, bytes written directly", rates["herald"], "messages", rates["email"])

    private, record = generate_key(2048)
    key = DkimKey("s1", "example.com", private)
    headers = [h.lower().encode() for h in DEFAULT_SIGNED_HEADERS] + [b"from"]
    signed = {
        "herald": lambda: sign(sample, key, at=DATE),
        "dkimpy": lambda: (
            dkimpy.sign(
                sample,
                b"s1",
                b"example.com",
                private.encode(),
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=headers,
            )
            + sample
        ),
    }
    dns = lambda name, timeout=5: record.encode()  # noqa: E731
    if not all(dkimpy.verify(one(), dnsfunc=dns) for one in signed.values()):
        raise RuntimeError("a signature does not verify")
    rates = best(args.rounds, args.signatures, signed)
    report("DKIM RSA-2048, cryptography", rates["herald"], "signatures", rates["dkimpy"])


if __name__ == "__main__":
    run(main)
