"""`herald mailbox`: a local SMTP server that keeps every message it receives in a folder, for trying Herald.

Point a sender at it (`"relay": {"host": "127.0.0.1", "port": 2525}`) and each
message lands in the folder as `<n>.eml` (the message as received), `<n>.html`
and `<n>.txt` (its HTML and text parts, decoded, when it has them), numbered
after the files already there; one line per message is printed. It accepts
every sender and recipient, offers no TLS and asks no password: it listens on
loopback by default and is no relay for real mail. aiosmtpd (Herald's own test
relay) speaks the protocol.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import signal
import sys
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class Mailbox:
    """The aiosmtpd handler: writes each message's files, then accepts it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.stem) for p in folder.glob("*.eml") if p.stem.isdigit()]
        self.last = max(numbers, default=0)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.last += 1
        base = self.folder / str(self.last)
        base.with_suffix(".eml").write_bytes(raw)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        subject = ""
        if isinstance(message, EmailMessage):
            subject = str(message.get("Subject", ""))
            for subtype in ("html", "plain"):
                part = message.get_body((subtype,))
                if part is not None:
                    suffix = ".html" if subtype == "html" else ".txt"
                    base.with_suffix(suffix).write_text(str(part.get_content()), encoding="utf-8")
        recipients = ", ".join(str(r) for r in envelope.rcpt_tos)
        print(f"{base}.eml  from {envelope.mail_from} to {recipients}: {subject}", flush=True)
        return "250 2.0.0 kept"


async def _serve(host: str, port: int, folder: Path, on_bound: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()
    handler = Mailbox(folder)
    server = await loop.create_server(lambda: SMTP(handler, hostname="herald-mailbox"), host, port)
    bound = server.sockets[0].getsockname()
    on_bound(f"{bound[0]}:{bound[1]}")
    stop = asyncio.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    async with server:
        await stop.wait()


def run_mailbox(host: str, port: int, folder: Path) -> bool:
    """Serve until interrupted; False when the address cannot be bound (said in one line)."""

    def bound(address: str) -> None:
        print(f"Herald mailbox on {address}: each message received goes to {folder}/", flush=True)

    try:
        asyncio.run(_serve(host, port, folder, bound))
    except OSError as error:
        print(f"herald: the mailbox cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return False
    return True
