"""A real local HTTP server playing a loyalty program's external promo-code service.

It records every request's JSON body and answers by path:
- `/codes`: `count` fresh codes `EXT-<n>` (`is_test`: `TEST-<n>`), as a list of texts;
- `/objects`: the same as objects with fields (`{"code": …, "fields": {"batch": "b1"}}`);
- `/flaky`: HTTP 503 for the first two requests, then as `/codes`;
- `/broken`: always HTTP 500;
- `/slow`: answers nothing until the test is over (the client must give up);
- `/garbage`: a body that is not JSON; `/wrong`: JSON without a "codes" list;
- `/too-many`: one code more than asked for; `/twice`: a code twice;
- `/refuse`: HTTP 400.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from herald.api.wiring import Herald
from herald.infra.promo_generator import ExternalCodeGenerator
from herald.infra.remote_content import RemoteContentPolicy

LOOPBACK = RemoteContentPolicy(timeout_seconds=0.5, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


@dataclass
class CodeService:
    base: str
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, body)

    def url(self, path: str = "/codes") -> str:
        return self.base + path

    def bodies(self, path: str = "/codes") -> list[dict[str, Any]]:
        return [body for at, body in self.requests if at == path]


def _handler(service: CodeService, release: threading.Event) -> type[BaseHTTPRequestHandler]:
    numbers = itertools.count(1)
    flaky = itertools.count()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = orjson.loads(self.rfile.read(length)) if length else {}
            service.requests.append((self.path, body))
            if self.path == "/slow":
                release.wait(10)
                return self._send(200, b'{"codes": []}')
            if self.path == "/broken" or (self.path == "/flaky" and next(flaky) < 2):
                return self._send(503 if self.path == "/flaky" else 500, b"try later")
            if self.path == "/refuse":
                return self._send(400, b'{"error": "bad request"}')
            if self.path == "/garbage":
                return self._send(200, b"<html>not json</html>")
            if self.path == "/wrong":
                return self._send(200, b'{"items": []}')
            count = int(body.get("count", 0))
            prefix = "TEST" if body.get("is_test") else "EXT"
            codes: list[Any] = [f"{prefix}-{next(numbers)}" for _ in range(count)]
            if self.path == "/too-many":
                codes.append("EXTRA")
            if self.path == "/twice" and len(codes) > 1:
                codes[-1] = codes[0]
            if self.path == "/objects":
                codes = [{"code": c, "fields": {"batch": "b1"}} for c in codes]
            return self._send(200, orjson.dumps({"codes": codes}))

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def code_service() -> Iterator[CodeService]:
    """The service on a free loopback port, in a thread, for the `with` block."""
    release = threading.Event()
    service = CodeService("")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service, release))
    httpd.daemon_threads = True
    service.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@contextlib.contextmanager
def serving(herald: Herald) -> Iterator[CodeService]:
    """The service, with `herald`'s programs allowed to call it on loopback (retries without waiting)."""
    client = ExternalCodeGenerator(LOOPBACK, sleep=lambda _: None)
    herald.promo_codes.maker.external = client
    try:
        with code_service() as running:
            yield running
    finally:
        client.close()
