"""A real SMTP server on loopback (aiosmtpd) for the tests that send mail: start it, get its port, stop it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller


@contextmanager
def smtp_server(handler: Any) -> Iterator[int]:
    """Run `handler` (aiosmtpd's `handle_DATA` protocol) on a free loopback port; yields the port."""
    with (
        socket.socket() as probe
    ):  # aiosmtpd's controller checks readiness by connecting: it needs a real port
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
