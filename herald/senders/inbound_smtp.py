"""The inbound SMTP listener: takes mail for any recipient and hands the raw bytes to a handler.

It does not parse: the handler decides what the mail is (`senders/inbound.py`
reads it) and stores it. Built on aiosmtpd's threaded `Controller`.

Decisions:
- Every recipient is accepted. The guide's inbound server receives mail for
  any mailbox of the domain (ARF reports at `abusemaster@`, DSNs at the
  bounce address, replies anywhere), so there is nothing to refuse at RCPT.
- 250 is answered only after the handler returned, so a message is
  acknowledged once it was stored. Any exception from the handler answers
  `451 4.3.0` (the sending MTA keeps the message and retries later) and is
  logged with its traceback.
- `max_size` (10 MiB by default) is advertised in EHLO (SIZE, RFC 1870);
  a `MAIL FROM ... SIZE=` above it, or DATA beyond it, answers 552. Reports
  are small; a report carrying a whole large original is still well under.
- The handler runs on the listener's own thread and event loop (aiosmtpd's
  `Controller` starts both). A coroutine handler that must run on the
  application's loop hops there itself (`asyncio.run_coroutine_threadsafe`
  and await the wrapped future); a plain function runs on the listener's loop
  and should be quick (an append to the log).
- Port 0 asks the OS for a free port; `port` says which after `start()`.
- SMTPUTF8 is enabled (RFC 6531 senders may send internationalised DSNs);
  no STARTTLS and no AUTH: a bounce or feedback loop sender needs neither,
  and TLS can be put in front (or added here) when the deployment wants it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 10 * 1024 * 1024

# raw message bytes, envelope sender ("<>" for bounces), envelope recipients
InboundHandler = Callable[[bytes, str, list[str]], Awaitable[None] | None]

ACCEPTED = "250 2.0.0 OK: message accepted"
HANDLER_FAILED = "451 4.3.0 Requested action aborted: local error in processing, try again later"


class _Hooks:
    """aiosmtpd's handler object: only DATA needs a hook (MAIL and RCPT accept everything)."""

    def __init__(self, handler: InboundHandler) -> None:
        self._handler = handler

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            result = self._handler(raw, envelope.mail_from or "", list(envelope.rcpt_tos))
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "inbound mail handler failed (from %r to %r, %d bytes); answered 451 so the sender retries",
                envelope.mail_from,
                envelope.rcpt_tos,
                len(raw),
            )
            return HANDLER_FAILED
        return ACCEPTED


class _Controller(Controller):
    def _trigger_server(self) -> None:
        # aiosmtpd connects to `self.port` to start its protocol; with port 0, learn the bound one first.
        server: Any = self.server
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class InboundServer:
    """An SMTP server on `host:port` that passes every message to `handler`; `start()` and `stop()` it."""

    def __init__(
        self, host: str, port: int, handler: InboundHandler, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        self._controller = _Controller(
            _Hooks(handler),
            hostname=host,
            port=port,
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
        )

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    @property
    def port(self) -> int:
        """The listening port (the one the OS chose, after start(), when 0 was asked for)."""
        return int(self._controller.port)

    def start(self) -> None:
        """Bind and serve on a background thread; returns once the server answers."""
        self._controller.start()

    def stop(self) -> None:
        """Close the listener and end its thread."""
        self._controller.stop()

    def __enter__(self) -> InboundServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
