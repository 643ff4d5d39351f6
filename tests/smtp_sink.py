"""A real SMTP server on loopback (aiosmtpd) for the tests that send mail: start it, get its port, stop it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

# How long a lost connection's session may go on reading what had already arrived.
_FINISH_SECONDS = 0.5


class _TakesWhatArrived(SMTP):
    """aiosmtpd's session, except that a client gone right after its final dot still has its message
    taken, as a real MTA takes a message once the dot has arrived.

    aiosmtpd ends a session the moment its connection is lost, dropping a message it already holds
    whole (its final dot read into the buffer, not yet handled). The kill -9 tests kill the sender
    right after it writes a dot; Herald then rightly counts that message as sent, so the sink must
    not drop it. The session reads what is buffered first and is ended a moment later.
    """

    def connection_lost(self, error: Exception | None) -> None:
        asyncio.get_running_loop().call_later(_FINISH_SECONDS, super().connection_lost, error)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _TakesWhatArrived(self.handler, **self.SMTP_kwargs)


@contextmanager
def smtp_server(handler: Any) -> Iterator[int]:
    """Run `handler` (aiosmtpd's `handle_DATA` protocol) on a free loopback port; yields the port."""
    with (
        socket.socket() as probe
    ):  # aiosmtpd's controller checks readiness by connecting: it needs a real port
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = _Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class MessageCounter:
    """An aiosmtpd handler counting what it received per Herald message id (`X-Herald-Message-ID`), and
    the connections (client addresses) it came over."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.peers: set[Any] = set()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        header = next(line for line in content.split(b"\r\n") if line.startswith(b"X-Herald-Message-ID:"))
        with self.lock:
            self.ids[header.split(b":", 1)[1].strip().decode()] += 1
            self.peers.add(session.peer)
        return "250 2.0.0 queued"

    @property
    def received(self) -> int:
        with self.lock:
            return sum(self.ids.values())
