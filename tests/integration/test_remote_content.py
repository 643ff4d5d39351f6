"""Render-time fetches against a real HTTP server on loopback: limits, refusals and per-message reuse."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from herald.domain.templating import RenderContext, compile_template
from herald.infra.remote_content import (
    MIB,
    GuardedTransport,
    RemoteContentError,
    RemoteContentFetcher,
    RemoteContentPolicy,
)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
HUGE = 100 * MIB
JSON_CONTENT = {
    "number": 10,
    "text": "Hello!",
    "list": ["One", "Two", "Three"],
    "object": {"model": "x17", "price": "$99"},
}
GZIP_BOMB = gzip.compress(b"\0" * (20 * MIB))  # about 20 KiB on the wire


class _Server(ThreadingHTTPServer):
    """Records every request; handlers that wait stop waiting when the fixture sets `release`."""

    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads: nothing outlives the test

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        self.streamed = 0
        self.stream_done = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers.items())))
        route = urlsplit(self.path).path
        handler = _ROUTES.get(route) or _ROUTES.get("/" + route.split("/")[1], _Handler.not_found)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up, as it should
            handler(self)

    def reply(self, body: bytes, content_type: str = "text/html; charset=utf-8", status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def not_found(self) -> None:
        self.reply(b"no such page", status=404)

    def html(self) -> None:
        self.reply("<p>Привет, {lead._fname}</p>".encode())

    def latin1(self) -> None:
        self.reply("<p>café</p>".encode("latin-1"), "text/html; charset=iso-8859-1")

    def bad_utf8(self) -> None:
        self.reply(b"<p>caf\xe9</p>", "text/html")

    def gzipped(self) -> None:
        body = gzip.compress(b"<p>zipped</p>")
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def gzip_bomb(self) -> None:
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(GZIP_BOMB)))
        self.end_headers()
        self.wfile.write(GZIP_BOMB)

    def json(self) -> None:
        self.reply(orjson.dumps(JSON_CONTENT), "application/json")

    def json_array(self) -> None:
        self.reply(b'["One", "Two"]', "application/json")

    def not_json(self) -> None:
        self.reply(b"<html>oops</html>", "application/json")

    def error(self) -> None:
        self.reply(b"boom", status=500)

    def slow(self) -> None:
        self.server.release.wait(10)
        self.reply(b"too late")

    def drip(self) -> None:
        """One byte at a time: every read is quick, the whole body never ends."""
        self.send_response(200)
        self.end_headers()
        while not self.server.release.wait(0.05):
            self.wfile.write(b".")
            self.wfile.flush()

    def huge(self) -> None:
        self.stream(declare_length=False)

    def huge_declared(self) -> None:
        self.stream(declare_length=True)

    def stream(self, declare_length: bool) -> None:
        """100 MB in 64 KiB writes; records how much the client let through before hanging up."""
        self.send_response(200)
        if declare_length:
            self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        chunk = b"x" * 65536
        try:
            while self.server.streamed < HUGE and not self.server.release.is_set():
                self.wfile.write(chunk)
                self.server.streamed += len(chunk)
        finally:
            self.server.stream_done.set()

    def redirect_to(self) -> None:
        self.redirect(parse_qs(urlsplit(self.path).query)["to"][0])

    def loop(self) -> None:
        self.redirect(f"/loop/{int(self.path.rsplit('/', 1)[1]) + 1}")

    def echo_host(self) -> None:
        self.reply(self.headers["Host"].encode(), "text/plain")

    def set_cookie(self) -> None:
        self.send_response(200)
        self.send_header("Set-Cookie", "session=secret; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def echo_cookie(self) -> None:
        self.reply(self.headers.get("Cookie", "").encode(), "text/plain")


_ROUTES: dict[str, Callable[[_Handler], None]] = {
    "/html": _Handler.html,
    "/latin1": _Handler.latin1,
    "/bad-utf8": _Handler.bad_utf8,
    "/gzipped": _Handler.gzipped,
    "/gzip-bomb": _Handler.gzip_bomb,
    "/json": _Handler.json,
    "/json-array": _Handler.json_array,
    "/not-json": _Handler.not_json,
    "/error": _Handler.error,
    "/slow": _Handler.slow,
    "/drip": _Handler.drip,
    "/huge": _Handler.huge,
    "/huge-declared": _Handler.huge_declared,
    "/redirect": _Handler.redirect_to,
    "/loop": _Handler.loop,
    "/echo-host": _Handler.echo_host,
    "/set-cookie": _Handler.set_cookie,
    "/echo-cookie": _Handler.echo_cookie,
}


def _serving(httpd: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serving(_Server())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[_Server, ssl.SSLContext]]:
    """The test server behind TLS with a certificate for content.herald.test, and a client context
    trusting the certificate authority that signed it."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Herald test CA", ca_key, "Herald test CA", ca_key, ca=True)
    leaf = _certificate("content.herald.test", leaf_key, "Herald test CA", ca_key, ca=False)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    httpd = _Server()
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    client_context = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    for running in _serving(httpd):
        yield running, client_context


def _fetcher(**policy: Any) -> Iterator[RemoteContentFetcher]:
    with RemoteContentFetcher(RemoteContentPolicy(**policy)) as fetcher:
        yield fetcher


@pytest.fixture
def local() -> Iterator[RemoteContentFetcher]:
    """A fetcher whose policy allows loopback (the test server), like a configured intranet range."""
    yield from _fetcher(allowed_networks=LOOPBACK, timeout_seconds=5.0)


@pytest.fixture
def hasty() -> Iterator[RemoteContentFetcher]:
    yield from _fetcher(allowed_networks=LOOPBACK, timeout_seconds=0.3)


@pytest.fixture
def default() -> Iterator[RemoteContentFetcher]:
    yield from _fetcher()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every TCP connection attempted from here on; only those to the test server are made."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(tuple(address[:2]))
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a connection to {address} was attempted")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Fake DNS names (name → addresses); every other name goes to the real resolver."""
    names: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in names:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


def _failure(fetch: Callable[[str], object], url: str) -> RemoteContentError:
    with pytest.raises(RemoteContentError) as caught:
        fetch(url)
    assert caught.value.url == url
    return caught.value


# --- what a fetch returns ---------------------------------------------------------------------


def test_html_is_returned_as_sent_with_herald_s_user_agent(
    local: RemoteContentFetcher, server: _Server
) -> None:
    assert local.fetch_html(server.url("/html")) == "<p>Привет, {lead._fname}</p>"
    (_, headers), *_ = server.requests
    assert headers["User-Agent"].startswith("Herald/")


def test_text_is_decoded_with_the_response_charset_else_utf8_with_replacement(
    local: RemoteContentFetcher, server: _Server
) -> None:
    assert local.fetch_html(server.url("/latin1")) == "<p>café</p>"
    assert local.fetch_html(server.url("/bad-utf8")) == "<p>caf\ufffd</p>"


def test_a_gzip_encoded_body_is_decoded(local: RemoteContentFetcher, server: _Server) -> None:
    assert local.fetch_html(server.url("/gzipped")) == "<p>zipped</p>"


def test_json_content_is_the_object_sent(local: RemoteContentFetcher, server: _Server) -> None:
    assert local.fetch_json(server.url("/json")) == JSON_CONTENT


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/json-array", "not a JSON object (got an array)"),
        ("/not-json", "not valid JSON"),
    ],
)
def test_json_content_must_be_an_object(
    local: RemoteContentFetcher, server: _Server, path: str, reason: str
) -> None:
    assert _failure(local.fetch_json, server.url(path)).reason.startswith(reason)


def test_an_http_error_status_fails_the_fetch_with_the_status(
    local: RemoteContentFetcher, server: _Server
) -> None:
    url = server.url("/error")
    error = _failure(local.fetch_html, url)
    assert error.reason == "HTTP 500"
    assert str(error) == f"could not fetch {url}: HTTP 500"


def test_cookies_set_by_one_fetch_are_not_sent_with_the_next(
    local: RemoteContentFetcher, server: _Server
) -> None:
    local.fetch_html(server.url("/set-cookie"))
    assert local.fetch_html(server.url("/echo-cookie")) == ""


# --- time and size limits -------------------------------------------------------------------------


def test_a_slow_server_times_out(hasty: RemoteContentFetcher, server: _Server) -> None:
    started = time.monotonic()
    assert _failure(hasty.fetch_html, server.url("/slow")).reason == "timed out after 0.3 s"
    assert time.monotonic() - started < 2


def test_the_timeout_bounds_the_whole_fetch_not_each_read(
    hasty: RemoteContentFetcher, server: _Server
) -> None:
    started = time.monotonic()
    assert _failure(hasty.fetch_html, server.url("/drip")).reason == "timed out after 0.3 s"
    assert time.monotonic() - started < 2


def test_an_oversized_body_is_cut_off_not_read(local: RemoteContentFetcher, server: _Server) -> None:
    started = time.monotonic()
    assert _failure(local.fetch_html, server.url("/huge")).reason == f"response larger than {MIB} bytes"
    assert time.monotonic() - started < 5
    assert server.stream_done.wait(10)  # the server's write failed once the client hung up
    assert server.streamed < HUGE // 4  # 1 MiB read plus what the socket buffers held


def test_a_declared_oversized_body_is_refused_before_reading(
    local: RemoteContentFetcher, server: _Server
) -> None:
    assert (
        _failure(local.fetch_html, server.url("/huge-declared")).reason == f"response larger than {MIB} bytes"
    )
    assert server.stream_done.wait(10)
    assert server.streamed < HUGE // 4


def test_a_gzip_bomb_is_cut_off_at_the_decoded_size(local: RemoteContentFetcher, server: _Server) -> None:
    assert _failure(local.fetch_html, server.url("/gzip-bomb")).reason == f"response larger than {MIB} bytes"


# --- redirects ------------------------------------------------------------------------------------


def test_a_redirect_is_followed(local: RemoteContentFetcher, server: _Server) -> None:
    assert local.fetch_html(server.url("/redirect?to=/html")) == "<p>Привет, {lead._fname}</p>"
    assert server.paths() == ["/redirect?to=/html", "/html"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://[::1]:{port}/html", "refused: ::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "refused: 169.254.169.254 is a link-local address"),
        (
            "http://intranet.herald.test/",
            "refused: intranet.herald.test resolves to 10.0.0.1, which is a private",
        ),
        ("file:///etc/passwd", "refused: the 'file' scheme is not allowed (only http and https)"),
    ],
)
def test_each_redirect_hop_is_checked_against_the_policy(
    local: RemoteContentFetcher,
    server: _Server,
    resolver: dict[str, list[str]],
    connections: list[object],
    target: str,
    reason: str,
) -> None:
    resolver["intranet.herald.test"] = ["10.0.0.1"]
    target = target.format(port=server.port)
    error = _failure(local.fetch_html, server.url("/redirect?to=" + target))
    assert error.reason.startswith(reason)
    # httpx writes a URL without a host as file:/etc/passwd
    assert error.reason.endswith(f"(after a redirect to {target.replace('///', '/')})")
    assert server.paths() == ["/redirect?to=" + target]
    assert connections == [("127.0.0.1", server.port)]  # the first hop only


def test_too_many_redirects_fail_the_fetch(local: RemoteContentFetcher, server: _Server) -> None:
    assert _failure(local.fetch_html, server.url("/loop/0")).reason == "too many redirects (more than 3)"
    assert server.paths() == ["/loop/0", "/loop/1", "/loop/2", "/loop/3"]


# --- where a fetch may go -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/html", "refused: 127.0.0.1 is a loopback address"),
        ("http://localhost:{port}/html", "refused: localhost resolves to "),
        ("http://[::1]:{port}/html", "refused: ::1 is a loopback address"),
        ("http://intranet.herald.test:{port}/html", "refused: intranet.herald.test resolves to 127.0.0.1"),
        ("http://rebound.herald.test:{port}/html", "refused: rebound.herald.test resolves to 127.0.0.1"),
        ("http://0.0.0.0:{port}/html", "refused: 0.0.0.0 is an unspecified address"),
        ("http://[::ffff:127.0.0.1]:{port}/html", "refused: ::ffff:7f00:1 is a loopback address"),
        ("http://10.0.0.1/", "refused: 10.0.0.1 is a private address"),
        ("http://192.168.1.1/", "refused: 192.168.1.1 is a private address"),
        ("http://100.64.0.1/", "refused: 100.64.0.1 is a shared (CGNAT) address"),
        ("http://169.254.169.254/latest/meta-data/", "refused: 169.254.169.254 is a link-local address"),
        ("http://[fd00::1]/", "refused: fd00::1 is a private address"),
        ("http://224.0.0.1/", "refused: 224.0.0.1 is a multicast address"),
    ],
)
def test_the_default_policy_refuses_non_public_addresses_without_connecting(
    default: RemoteContentFetcher,
    server: _Server,
    resolver: dict[str, list[str]],
    connections: list[object],
    url: str,
    reason: str,
) -> None:
    resolver["intranet.herald.test"] = ["127.0.0.1"]
    # DNS rebinding: one public address beside a loopback one; every address is checked.
    resolver["rebound.herald.test"] = ["93.184.215.14", "127.0.0.1"]
    url = url.format(port=server.port)
    error = _failure(default.fetch_html, url)
    assert error.reason.startswith(reason)
    assert connections == []
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/file.html", "gopher://example.com/", "//example.com/page"],
)
def test_only_http_and_https_are_fetched(
    default: RemoteContentFetcher, connections: list[object], url: str
) -> None:
    reason = _failure(default.fetch_html, url).reason
    assert reason.startswith("refused: ") and reason.endswith("not allowed (only http and https)")
    assert connections == []


def test_a_name_is_connected_to_at_its_checked_address_with_its_own_host_header(
    local: RemoteContentFetcher, server: _Server, resolver: dict[str, list[str]]
) -> None:
    resolver["content.herald.test"] = ["127.0.0.1"]
    assert local.fetch_html(server.url("/echo-host", "content.herald.test")) == (
        f"content.herald.test:{server.port}"
    )


def test_https_verifies_the_certificate_against_the_name_while_connecting_to_the_checked_address(
    tls_server: tuple[_Server, ssl.SSLContext], resolver: dict[str, list[str]], connections: list[object]
) -> None:
    server, trusted = tls_server
    resolver["content.herald.test"] = ["127.0.0.1"]
    resolver["other.herald.test"] = ["127.0.0.1"]
    policy = RemoteContentPolicy(allowed_networks=LOOPBACK)
    with RemoteContentFetcher(policy, GuardedTransport(policy, ssl_context=trusted)) as fetcher:
        url = f"https://content.herald.test:{server.port}/echo-host"
        assert fetcher.fetch_html(url) == f"content.herald.test:{server.port}"
        # The same server reached under a name its certificate does not carry is not trusted.
        error = _failure(fetcher.fetch_html, f"https://other.herald.test:{server.port}/echo-host")
    assert error.reason.startswith("could not connect") and "certificate" in error.reason
    assert connections == [("127.0.0.1", server.port)] * 2
    assert server.paths() == ["/echo-host"]


def test_a_name_that_does_not_resolve_fails_clearly(
    default: RemoteContentFetcher, resolver: dict[str, list[str]]
) -> None:
    resolver["gone.herald.test"] = []
    assert _failure(default.fetch_html, "http://gone.herald.test/").reason == (
        "could not resolve the host 'gone.herald.test'"
    )


def test_a_password_in_the_url_is_not_shown_in_the_error(
    local: RemoteContentFetcher, server: _Server
) -> None:
    error = _failure(local.fetch_html, f"http://user:hunter2@127.0.0.1:{server.port}/error")
    assert "hunter2" not in str(error)


# --- one message --------------------------------------------------------------------------------


def test_the_same_url_is_fetched_once_per_message(local: RemoteContentFetcher, server: _Server) -> None:
    url = server.url("/html")
    template = compile_template("{for json.list}{[" + url + "]}{end}")
    for _ in range(2):
        fetches = local.for_message()
        context = RenderContext(json=fetches.json(server.url("/json")), fetch_remote=fetches)
        assert template.render(context) == "<p>Привет, {lead._fname}</p>" * 3
    assert server.paths() == ["/json", "/html", "/json", "/html"]  # once per message, not per item


def test_a_message_may_fetch_only_so_many_distinct_urls(server: _Server) -> None:
    with RemoteContentFetcher(RemoteContentPolicy(allowed_networks=LOOPBACK, max_fetches_per_message=2)) as f:
        fetches = f.for_message()
        fetches(server.url("/html"))
        fetches.json(server.url("/json"))
        fetches(server.url("/html"))  # already fetched: no new request
        error = _failure(fetches, server.url("/latin1"))
    assert error.reason == "more than 2 different URLs fetched for one message"
    assert server.paths() == ["/html", "/json"]


def test_a_failed_fetch_fails_the_render_with_the_fetch_error(
    local: RemoteContentFetcher, server: _Server
) -> None:
    url = server.url("/error")
    template = compile_template("<p>{[" + url + "]}</p>")
    with pytest.raises(RemoteContentError, match="HTTP 500"):
        template.render(RenderContext(fetch_remote=local.for_message()))
