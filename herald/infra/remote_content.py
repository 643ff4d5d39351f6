"""Fetches a template's dynamic content (`{[url]}` HTML, the JSON content URL) under an SSRF-safe policy.

Every fetch has one deadline (DNS, connect, TLS and body together), a body size cap, a redirect cap,
and an address check made on the IP addresses actually connected to: the host name is resolved by
`socket.getaddrinfo`, every address it returns is checked, and the socket is opened to a checked
address. That check sits in the httpcore network backend under httpx, so each redirect hop, and each
new connection, goes through it; TLS still verifies the certificate against the host name (httpcore
sends the URL's host as SNI and checks it), and the Host header is the URL's. Rewriting the URL to the
IP with a Host header would have to re-implement SNI and certificate checks, so it was not chosen.
"""

from __future__ import annotations

import codecs
import contextvars
import http.cookiejar
import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar, cast

import httpcore
import httpx
import orjson

from herald.domain.secrets import redacted_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MIB = 1024 * 1024
ALLOWED_SCHEMES = frozenset({"http", "https"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
T = TypeVar("T")


def _herald_version() -> str:
    try:
        return metadata.version("herald")
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "0"


USER_AGENT = f"Herald/{_herald_version()} (dynamic template content)"


@dataclass(frozen=True, slots=True)
class RemoteContentPolicy:
    """What a render-time fetch may do: how long, how much, where, and how many times.

    - `timeout_seconds`: the whole fetch, DNS, connect, redirects and body included.
    - `max_bytes`: the largest body kept (after gzip decoding); a larger one fails the fetch.
    - `allowed_networks`: non-public addresses (loopback, private, link-local, CGNAT, ...) that
      may still be fetched from; public unicast addresses are always allowed.
    - `max_redirects`: redirects followed, each hop checked like the first URL.
    - `max_fetches_per_message`: distinct URLs one message may fetch (a `{[url]}` in a loop).
    """

    timeout_seconds: float = 5.0
    max_bytes: int = MIB
    allowed_networks: tuple[IPNetwork, ...] = ()
    max_redirects: int = 3
    max_fetches_per_message: int = 20
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.max_bytes < 0 or self.max_redirects < 0 or self.max_fetches_per_message < 1:
            raise ValueError("max_bytes and max_redirects must be >= 0, max_fetches_per_message >= 1")


class RemoteContentError(Exception):
    """A fetch failed; `reason` is a sentence a user can act on ("timed out after 5 s")."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"could not fetch {_display(self.url)}: {self.reason}"


class _Reason(Exception):
    """Raised below the fetcher with the finished reason; the fetcher adds the URL."""


# --- the address check -------------------------------------------------------------------------

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = ipaddress.IPv4Address("169.254.169.254")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64): it reaches that host."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _special_kind(address: IPAddress) -> str | None:
    """What makes an address unfit to fetch from ("a loopback address"), or None for public unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            kind = _special_kind(inner)
            # A mapped or NAT64 address is only a way to write the IPv4 one: judge that alone.
            if kind is not None or address.ipv4_mapped is not None or address in _NAT64:
                return kind
    # Ordered from the most telling name to the catch-all; Python's flags overlap.
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address == _METADATA, "a link-local address (the cloud metadata endpoint)"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _CGNAT, "a shared (CGNAT) address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((kind for flagged, kind in checks if flagged), None)


def _is_allowed_explicitly(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return any(address in network or (inner is not None and inner in network) for network in networks)


def _check_address(address: IPAddress, policy: RemoteContentPolicy, host: str | None = None) -> None:
    """Raise `_Reason` ("refused: ...") unless the policy lets a fetch connect to `address`."""
    if _is_allowed_explicitly(address, policy.allowed_networks):
        return
    kind = _special_kind(address)
    if kind is not None:
        via = f"{host} resolves to {address}, which is" if host else f"{address} is"
        raise _Reason(f"refused: {via} {kind}")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """The host's addresses, looked up in a thread so a hung resolver cannot outlast the deadline."""
    found: list[IPAddress] = []
    failure: list[OSError] = []

    def lookup() -> None:
        try:
            for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                found.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except OSError as error:
            failure.append(error)

    # A daemon thread: one stuck in the resolver is abandoned and ends when the resolver gives up.
    worker = threading.Thread(target=lookup, name="herald-remote-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} timed out")
    if failure or not found:
        raise _Reason(f"could not resolve the host {host!r}")
    return list(dict.fromkeys(found))


def _checked_addresses(
    host: str, port: int, policy: RemoteContentPolicy, timeout: float | None
) -> list[IPAddress]:
    """Every address of `host`, each checked: one refused address refuses the host (DNS rebinding)."""
    literal = _ip_literal(host)
    if literal is not None:
        _check_address(literal, policy)
        return [literal]
    addresses = _resolve(host, port, timeout)
    for address in addresses:
        _check_address(address, policy, host)
    return addresses


# --- one deadline for the whole fetch ----------------------------------------------------------

# Set by the fetcher for the duration of one fetch; read by the network layer on every socket call.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "herald_remote_deadline", default=None
)


def _budget(timeout: float | None, expired: type[Exception]) -> float | None:
    """The smaller of httpcore's per-call timeout and what is left of the fetch's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the fetch's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the fetch's deadline (a slow drip cannot stall)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Opens TCP connections only to addresses the policy allows, resolved and checked here."""

    def __init__(self, policy: RemoteContentPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _checked_addresses(host, port, self._policy, _budget(timeout, httpcore.ConnectTimeout))
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # connect to the checked address itself, never to the name
            budget = _budget(timeout, httpcore.ConnectTimeout)
            try:
                stream = super().connect_tcp(str(address), port, budget, local_address, socket_options)
            except httpcore.ConnectError as error:
                failure = error
                continue
            return _DeadlineStream(stream)
        raise failure or httpcore.ConnectError(f"no address to connect to for {host}")


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over httpcore whose connections pass the policy's address check.

    No proxy (the check must see the real destination). `ssl_context` replaces
    the default one (certifi's roots) for a deployment with its own certificate authority.
    """

    def __init__(self, policy: RemoteContentPolicy, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            network_backend=_GuardedBackend(policy),
            max_connections=50,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        )
        content = cast(Iterable[bytes], request.stream)
        sent = httpcore.Request(
            request.method, url, headers=request.headers.raw, content=content, extensions=request.extensions
        )
        response = self._pool.handle_request(sent)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(cast(Iterable[bytes], response.stream)),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


# --- reading a body within the limits ------------------------------------------------------------


def _too_large(max_bytes: int) -> _Reason:
    return _Reason(f"response larger than {max_bytes} bytes")


def _capped(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """Chunks until more than `max_bytes` have come, then the size error (the rest is never read)."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        _budget(None, httpcore.ReadTimeout)  # also bounds transports that ignore the deadline
        yield chunk


def _gunzip(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """Inflate gzip, at most `max_bytes + 1` bytes per step, so a small bomb cannot fill memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out = inflater.decompress(data, max_bytes + 1)
                if out:
                    yield out
                if inflater.eof:  # a gzip body may hold several members, one after another
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    data = inflater.unconsumed_tail
    except zlib.error as error:
        raise _Reason(f"the gzip-encoded body is invalid ({error})") from None


def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    return b"".join(_body_chunks(response, max_bytes))


def _body_chunks(response: httpx.Response, max_bytes: int) -> Iterable[bytes]:
    """The body as it arrives, decoded, refused past `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:  # refused before reading a byte of it
        raise _too_large(max_bytes)
    raw = _capped(response.iter_raw(), max_bytes)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        decoded: Iterable[bytes] = _capped(_gunzip(raw, max_bytes), max_bytes)
    elif encoding in ("", "identity"):
        decoded = raw
    else:  # only gzip is asked for; anything else cannot be bounded while decoding here
        raise _Reason(f"unsupported Content-Encoding {encoding!r}")
    return decoded


def _decode_text(body: bytes, charset: str | None) -> str:
    """The body in its declared charset, else UTF-8; undecodable bytes become U+FFFD."""
    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:  # a charset name Python does not know
            pass
    return body.decode("utf-8", errors="replace")


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _parse_json_object(body: bytes, charset: str | None) -> dict[str, Any]:
    is_utf8 = charset is None or _codec_name(charset) in ("utf-8", None)
    source: bytes | str = body.removeprefix(codecs.BOM_UTF8) if is_utf8 else _decode_text(body, charset)
    try:
        value = orjson.loads(source)
    except orjson.JSONDecodeError as error:
        raise _Reason(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise _Reason(f"not a JSON object (got {_JSON_KINDS.get(type(value), 'null')})")
    return value


def _codec_name(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


# --- the fetcher ---------------------------------------------------------------------------------


def _display(url: str) -> str:
    """The URL for messages and logs, its credentials masked (a login, a `token=` parameter)."""
    return redacted_url(url)


def _check_url(url: httpx.URL, policy: RemoteContentPolicy) -> None:
    """What can be refused before any network call: the scheme, a missing host, an IP literal host."""
    if url.scheme not in ALLOWED_SCHEMES:
        shown = f"the {url.scheme!r} scheme is" if url.scheme else "a URL without a scheme is"
        raise _Reason(f"refused: {shown} not allowed (only http and https)")
    if not url.host:
        raise _Reason("not a valid URL (no host)")
    literal = _ip_literal(url.host)
    if literal is not None:
        _check_address(literal, policy)


def _reason_for(error: Exception, policy: RemoteContentPolicy) -> str | None:
    """The user-facing reason for a failure, or None for an error that is a bug (left to propagate)."""
    if isinstance(error, _Reason):
        return str(error)
    if isinstance(error, httpx.TimeoutException | httpcore.TimeoutException):
        return f"timed out after {policy.timeout_seconds:g} s"
    if isinstance(error, httpx.InvalidURL):
        return f"not a valid URL ({error})"
    if isinstance(error, httpx.ConnectError | httpcore.ConnectError):
        return f"could not connect ({error or type(error).__name__})"
    failures = (httpx.HTTPError, httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)
    if isinstance(error, failures):
        return f"the request failed ({error or type(error).__name__})"
    return None


def check_url(url: httpx.URL, policy: RemoteContentPolicy) -> str | None:
    """Why `url` is refused before any network call (scheme, host, an IP-literal host), or None."""
    try:
        _check_url(url, policy)
    except _Reason as reason:
        return str(reason)
    return None


def failure(error: Exception, policy: RemoteContentPolicy) -> tuple[str, bool] | None:
    """A failed request's reason and whether trying again may help (a refused address never will);
    None for an error that is a bug."""
    reason = _reason_for(error, policy)
    if reason is None:
        return None
    return reason, not (isinstance(error, _Reason) and reason.startswith("refused"))


def guarded_client(
    policy: RemoteContentPolicy,
    transport: httpx.BaseTransport | None,
    headers: dict[str, str],
    user_agent_suffix: str = "",
) -> httpx.Client:
    """An HTTP client for fetching from addresses users name, under `policy`.

    No cookies kept between fetches (they would leak one profile's session into another's), no
    proxy, .netrc or certificate settings from the environment, redirects left to the caller.
    """
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(
        transport=transport or GuardedTransport(policy),
        timeout=policy.timeout_seconds,
        follow_redirects=False,
        trust_env=False,
        cookies=no_cookies,
        headers={"User-Agent": policy.user_agent + user_agent_suffix, **headers},
    )


class RemoteContentFetcher:
    """Fetches `{[url]}` HTML and JSON content under a policy; thread-safe, one per process.

    `transport` defaults to `GuardedTransport(policy)`; pass one built with an `ssl_context` for a
    private certificate authority. Any other transport takes over resolving and checking host names
    (the scheme and IP-literal checks still run here).
    """

    def __init__(self, policy: RemoteContentPolicy, transport: httpx.BaseTransport | None = None) -> None:
        self._policy = policy
        self._client = guarded_client(policy, transport, {"Accept-Encoding": "gzip"})

    @property
    def policy(self) -> RemoteContentPolicy:
        return self._policy

    def fetch_html(self, url: str) -> str:
        """The body at `url` as text, to insert into a message as is."""
        body, charset = self._fetch(url, accept="text/html, */*;q=0.5")
        return _decode_text(body, charset)

    def download(self, url: str, consume: Callable[[Iterable[bytes]], T]) -> T:
        """GET `url` and hand its body, chunk by chunk as it arrives, to `consume` (a file on disk)."""
        limit = self._policy.max_bytes
        result: T = self._fetch(url, "*/*", lambda response: consume(_body_chunks(response, limit)))
        return result

    def fetch_json(self, url: str) -> dict[str, Any]:
        """The JSON object at `url` (anything but an object at the top level is an error)."""
        body, charset = self._fetch(url, accept="application/json")
        try:
            return _parse_json_object(body, charset)
        except _Reason as reason:
            raise RemoteContentError(url, str(reason)) from None

    def for_message(self) -> MessageFetches:
        """Fetches for one message: each URL once, at most `max_fetches_per_message` of them."""
        return MessageFetches(self)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteContentFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fetch(self, url: str, accept: str, read: Callable[[httpx.Response], T] | None = None) -> Any:
        token = _DEADLINE.set(time.monotonic() + self._policy.timeout_seconds)
        try:
            return self._follow(url, accept, read or self._body)
        finally:
            _DEADLINE.reset(token)

    def _body(self, response: httpx.Response) -> tuple[bytes, str | None]:
        return _read_body(response, self._policy.max_bytes), response.charset_encoding

    def _follow(self, url: str, accept: str, read: Callable[[httpx.Response], T]) -> T:
        """GET `url`, following up to `max_redirects` redirects, each hop checked as the first."""
        current: httpx.URL | None = None
        for hop in range(self._policy.max_redirects + 1):
            try:
                current = httpx.URL(url) if current is None else current
                outcome = self._get(current, accept, read)
            except Exception as error:
                reason = _reason_for(error, self._policy)
                if reason is None:
                    raise
                after = f" (after a redirect to {_display(str(current))})" if hop else ""
                raise RemoteContentError(url, reason + after) from None
            if not isinstance(outcome, httpx.URL):
                return outcome
            current = outcome
        raise RemoteContentError(url, f"too many redirects (more than {self._policy.max_redirects})")

    def _get(self, url: httpx.URL, accept: str, read: Callable[[httpx.Response], T]) -> T | httpx.URL:
        """One request: what `read` makes of the response, or the URL a redirect points to."""
        _check_url(url, self._policy)
        request = self._client.build_request("GET", url, headers={"Accept": accept})
        response = self._client.send(request, stream=True)
        with closing(response):  # closing an unread body drops the connection instead of draining it
            location = response.headers.get("location")
            if response.status_code in _REDIRECT_STATUSES and location:
                return url.join(location)
            if not response.is_success:
                raise _Reason(f"HTTP {response.status_code}")
            return read(response)


class MessageFetches:
    """The remote content of one message: pass it as `RenderContext.fetch_remote`.

    A `{[url]}` inside a loop asks for the same URL once per item; it is fetched once. A message that
    asks for more distinct URLs than the policy allows fails, rather than hammering remote servers.
    """

    def __init__(self, fetcher: RemoteContentFetcher) -> None:
        self._fetcher = fetcher
        self._html: dict[str, str] = {}
        self._json: dict[str, dict[str, Any]] = {}

    def __call__(self, url: str) -> str:
        if url not in self._html:
            self._count(url)
            self._html[url] = self._fetcher.fetch_html(url)
        return self._html[url]

    def json(self, url: str) -> dict[str, Any]:
        """The JSON content at `url` (the template's JSON content URL), fetched once per message."""
        if url not in self._json:
            self._count(url)
            self._json[url] = self._fetcher.fetch_json(url)
        return self._json[url]

    def _count(self, url: str) -> None:
        limit = self._fetcher.policy.max_fetches_per_message
        if len(self._html) + len(self._json) >= limit:
            raise RemoteContentError(url, f"more than {limit} different URLs fetched for one message")
