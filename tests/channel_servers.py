"""Local servers speaking the providers' protocols, for the channel gateway tests (loopback only).

- `BulkSmsServer`: BulkSMS JSON REST v1 (`POST /v1/messages`, Basic auth, deduplication-id).
- `TelegramServer`: the Bot API's `POST /bot<token>/sendMessage`.
- `FcmServer`: Google's OAuth token endpoint (JWT bearer grant, the assertion's RS256 signature
  checked against the service account's public key) and FCM HTTP v1 `messages:send`.
- `PushService`: an RFC 8030 push service that checks the VAPID JWT (RFC 8292) and decrypts the
  aes128gcm body (RFC 8291) with the browser's private key, as a browser would.
- `ApnsServer`: APNs over HTTP/2 with TLS (h2, a test CA made with `cryptography`), checking the
  ES256 provider token.

Each records what it received in `received` (decoded) and answers by `behaviour`: address →
"gone" (the address does not exist), "invalid" (a refused request), "throttle" (the rate limit),
"down" (a server error); `per_second` throttles beyond that many requests in a second.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import http_ece
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from herald.senders.apns import ApnsSettings


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    address: str
    key: str | None  # the idempotency key the request carried, if the protocol has one
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Behaviour:
    behaviour: dict[str, str] = field(default_factory=dict)
    per_second: int | None = None
    received: list[Received] = field(default_factory=list)
    _starts: list[float] = field(default_factory=list)

    def started(self) -> None:
        """Called once the server listens (its port known)."""

    def verdict(self, address: str) -> str:
        """What to answer for `address`: its set behaviour, "throttle" over the rate, else "ok"."""
        if address in self.behaviour:
            return self.behaviour[address]
        if self.per_second is not None:
            now = time.monotonic()
            self._starts = [t for t in self._starts if t > now - 1.0]
            if len(self._starts) >= self.per_second:
                return "throttle"
            self._starts.append(now)
        return "ok"


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(port)


# --- BulkSMS -----------------------------------------------------------------------------------


@dataclass
class BulkSmsServer(_Behaviour):
    username: str = "token-id"
    password: str = "token-secret"
    port: int = 0
    _next: int = 0
    _seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def messages(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return _problem(401, "Unauthorized", "bad credentials")
        body = await request.json()
        key = request.query.get("deduplication-id")
        address = body["to"]
        self.received.append(Received(address, key, body))
        if key in self._seen:  # the provider's own guard: the same submission is not sent again
            return web.json_response(self._seen[key], status=201)
        verdict = self.verdict(address)
        if verdict == "throttle":
            return _problem(429, "Too Many Requests", "slow down", {"Retry-After": "2"})
        if verdict == "down":
            return _problem(503, "Service Unavailable", "maintenance")
        if verdict in ("invalid", "gone"):
            return _problem(400, "Bad Request", f"the number {address} is not a valid recipient")
        self._next += 1
        created = [
            {
                "id": f"{self._next:010d}",
                "type": "SENT",
                "to": address,
                "from": body.get("from"),
                "body": body["body"],
                "encoding": body.get("encoding", "TEXT"),
                "numberOfParts": body.get("longMessageMaxParts", 1),
                "userSuppliedId": body.get("userSuppliedId"),
                "status": {"id": "ACCEPTED.null", "type": "ACCEPTED", "subtype": None},
            }
        ]
        if key is not None:
            self._seen[key] = created
        return web.json_response(created, status=201)

    def report(self, provider_id: str, kind: str = "DELIVERED", subtype: str | None = None) -> bytes:
        """The body of the webhook call BulkSMS makes when a message's status becomes final."""
        sent = next(m for v in self._seen.values() for m in v if m["id"] == provider_id)
        status = {"id": f"{kind}.{subtype}", "type": kind, "subtype": subtype}
        return json.dumps(
            [{**sent, "status": status, "statusDatetime": "2026-03-02T09:00:05+00:00"}]
        ).encode()


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "type": "https://developer.bulksms.com/json/v1/errors",
        "title": title,
        "status": status,
        "detail": detail,
    }
    return web.json_response(body, status=status, headers=headers)


# --- Telegram ----------------------------------------------------------------------------------


@dataclass
class TelegramServer(_Behaviour):
    token: str = "123456:TEST-token"
    port: int = 0
    _next: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = await request.json()
        chat = str(body["chat_id"])
        self.received.append(Received(chat, None, body))
        verdict = self.verdict(chat)
        answers = {
            "gone": (403, "Forbidden: bot was blocked by the user", None),
            "invalid": (400, "Bad Request: message text is empty", None),
            "throttle": (429, "Too Many Requests: retry after 3", {"retry_after": 3}),
            "down": (502, "Bad Gateway", None),
        }
        if verdict in answers:
            status, description, parameters = answers[verdict]
            answer: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
            if parameters:
                answer["parameters"] = parameters
            return web.json_response(answer, status=status)
        self._next += 1
        result = {
            "message_id": self._next,
            "chat": {"id": int(chat), "type": "private"},
            "date": 0,
            "text": body["text"],
        }
        return web.json_response({"ok": True, "result": result})


# --- FCM ---------------------------------------------------------------------------------------


def service_account(token_uri: str) -> dict[str, str]:
    """A fresh service-account key (RSA 2048) in the JSON shape Google issues."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "herald-test",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "push@herald-test.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }


@dataclass
class FcmServer(_Behaviour):
    port: int = 0
    account: dict[str, str] = field(default_factory=dict)
    tokens_issued: int = 0
    _tokens: set[str] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def started(self) -> None:
        self.account = self.account or service_account(f"{self.base_url}/token")

    async def token(self, request: web.Request) -> web.Response:
        form = parse_qs((await request.read()).decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        public = serialization.load_pem_private_key(self.account["private_key"].encode(), None).public_key()
        try:
            claims = jwt.decode(
                form["assertion"][0], public, algorithms=["RS256"], audience=self.account["token_uri"]
            )
        except jwt.PyJWTError as error:
            return web.json_response({"error": "invalid_grant", "error_description": str(error)}, status=400)
        if claims["iss"] != self.account["client_email"] or "firebase.messaging" not in claims["scope"]:
            return web.json_response({"error": "invalid_scope"}, status=400)
        self.tokens_issued += 1
        token = f"ya29.{uuid.uuid4().hex}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def send(self, request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self._tokens:
            return _fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
        if request.match_info["project"] != self.account["project_id"]:
            return _fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
        message = (await request.json())["message"]
        address = message["token"]
        key = message["android"].get("collapse_key")
        self.received.append(Received(address, key, message))
        verdict = self.verdict(address)
        errors = {
            "gone": (404, "NOT_FOUND", "UNREGISTERED"),
            "invalid": (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
            "throttle": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
            "down": (503, "UNAVAILABLE", "UNAVAILABLE"),
        }
        if verdict in errors:
            return _fcm_error(*errors[verdict])
        name = f"projects/{self.account['project_id']}/messages/0:{uuid.uuid4().hex[:16]}"
        return web.json_response({"name": name})


def _fcm_error(status: int, code: str, fcm_code: str) -> web.Response:
    error = {
        "code": status,
        "message": f"{fcm_code.lower().replace('_', ' ')}",
        "status": code,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}],
    }
    headers = {"Retry-After": "5"} if status == 429 else None
    return web.json_response({"error": error}, status=status, headers=headers)


# --- web push ----------------------------------------------------------------------------------


@dataclass
class Browser:
    """A browser's push subscription: its ECDH key pair and auth secret, as PushManager makes them."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}

    def address(self) -> str:
        return json.dumps(self.subscription())


@dataclass
class PushService(_Behaviour):
    port: int = 0
    browsers: dict[str, Browser] = field(default_factory=dict)

    def browser(self) -> Browser:
        browser_id = uuid.uuid4().hex
        browser = Browser(f"http://127.0.0.1:{self.port}/push/{browser_id}")
        self.browsers[browser_id] = browser
        return browser

    async def push(self, request: web.Request) -> web.Response:
        browser = self.browsers.get(request.match_info["id"])
        address = browser.address() if browser else ""
        vapid = _vapid_claims(request.headers.get("Authorization", ""), f"http://127.0.0.1:{self.port}")
        if vapid is None:
            return web.Response(status=401, text="bad VAPID authorization")
        if request.headers.get("Content-Encoding") != "aes128gcm" or "TTL" not in request.headers:
            return web.Response(status=400, text="aes128gcm and TTL required")
        verdict = self.verdict(address) if browser else "gone"
        statuses = {"gone": 410, "invalid": 400, "throttle": 429, "down": 503}
        if verdict in statuses:
            if browser:
                self.received.append(
                    Received(address, request.headers.get("Topic"), {}, dict(request.headers))
                )
            headers = {"Retry-After": "4"} if verdict == "throttle" else None
            return web.Response(status=statuses[verdict], text=verdict, headers=headers)
        assert browser is not None
        plain = http_ece.decrypt(
            await request.read(),
            private_key=browser.private_key,
            auth_secret=browser.auth,
            version="aes128gcm",
        )
        self.received.append(
            Received(
                address,
                request.headers.get("Topic"),
                json.loads(plain),
                {k.lower(): v for k, v in request.headers.items()} | {"vapid-sub": str(vapid.get("sub"))},
            )
        )
        return web.Response(status=201, headers={"Location": f"/message/{uuid.uuid4().hex}"})


def _vapid_claims(authorization: str, audience: str) -> dict[str, Any] | None:
    """The claims of a valid `vapid t=<jwt>, k=<public key>` header (RFC 8292 §3), else None."""
    if not authorization.startswith("vapid "):
        return None
    fields = dict(part.strip().split("=", 1) for part in authorization[6:].split(","))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    try:
        return dict(jwt.decode(fields["t"], public, algorithms=["ES256"], audience=audience))
    except jwt.PyJWTError:
        return None


def vapid_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# --- APNs (HTTP/2 over TLS) --------------------------------------------------------------------


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Herald test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class ApnsServer(_Behaviour):
    team_id: str = "TEAM123456"
    key_id: str = "KEY1234567"
    topic: str = "com.example.app"
    signing_key: str = field(default_factory=vapid_key_pem)  # an ES256 (P-256) key, as a .p8 holds
    port: int = 0
    connections: int = 0

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or not path.startswith("/3/device/"):
            return 404, {}, b'{"reason":"BadPath"}'
        token = headers.get("authorization", "").removeprefix("bearer ")
        public = serialization.load_pem_private_key(self.signing_key.encode(), None).public_key()
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, public, algorithms=["ES256"])
        except jwt.PyJWTError:
            return 403, {}, b'{"reason":"InvalidProviderToken"}'
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return 403, {}, b'{"reason":"InvalidProviderToken"}'
        if headers.get("apns-topic") != self.topic:
            return 400, {}, b'{"reason":"DeviceTokenNotForTopic"}'
        address = path.removeprefix("/3/device/")
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        self.received.append(Received(address, apns_id, json.loads(body), headers))
        verdict = self.verdict(address)
        refusals = {
            "gone": (410, b'{"reason":"Unregistered","timestamp":1700000000000}'),
            "invalid": (400, b'{"reason":"PayloadEmpty"}'),
            "throttle": (429, b'{"reason":"TooManyRequests"}'),
            "down": (503, b'{"reason":"ServiceUnavailable"}'),
        }
        if verdict in refusals:
            status, text = refusals[verdict]
            return status, {"apns-id": apns_id}, text
        return 200, {"apns-id": apns_id}, b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = {_s(k): _s(v) for k, v in event.headers}
                        streams[event.stream_id] = (headers, bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        status, extra, text = self.answer(headers, bytes(body))
                        response = [(":status", str(status)), *extra.items()]
                        connection.send_headers(event.stream_id, response, end_stream=not text)
                        if text:
                            connection.send_data(event.stream_id, text, end_stream=True)
                writer.write(connection.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def _s(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- starting them ------------------------------------------------------------------------------


S = TypeVar("S", bound=_Behaviour)


@asynccontextmanager
async def _running(server: S, routes: dict[str, Any]) -> AsyncIterator[S]:
    """Serve `routes` (path → handler of a POST) on a free loopback port (`server.port`)."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner, server.port = await _serve(app)
    server.started()
    try:
        yield server
    finally:
        await runner.cleanup()


def bulksms_server(server: BulkSmsServer | None = None) -> AbstractAsyncContextManager[BulkSmsServer]:
    server = server or BulkSmsServer()
    return _running(server, {"/v1/messages": server.messages})


def telegram_server(server: TelegramServer | None = None) -> AbstractAsyncContextManager[TelegramServer]:
    server = server or TelegramServer()
    return _running(server, {"/bot{token}/sendMessage": server.send_message})


def fcm_server(server: FcmServer | None = None) -> AbstractAsyncContextManager[FcmServer]:
    server = server or FcmServer()
    return _running(server, {"/token": server.token, "/v1/projects/{project}/messages:send": server.send})


def push_service(server: PushService | None = None) -> AbstractAsyncContextManager[PushService]:
    server = server or PushService()
    return _running(server, {"/push/{id}": server.push})


@asynccontextmanager
async def apns_server(
    directory: Path, server: ApnsServer | None = None
) -> AsyncIterator[tuple[ApnsServer, Path]]:
    """Run APNs over TLS on loopback; yields the server and the CA bundle a client must trust."""
    server = server or ApnsServer()
    ca, cert, key = tls_files(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server, ca
    finally:
        listener.close()
        await listener.wait_closed()


def apns_settings(server: ApnsServer, ca: Path, **changes: Any) -> ApnsSettings:
    """Settings of an APNs gateway for `server`, trusting its test CA."""
    values: dict[str, Any] = {
        "key_id": server.key_id,
        "team_id": server.team_id,
        "topic": server.topic,
        "signing_key": server.signing_key,
        "base_url": f"https://127.0.0.1:{server.port}",
        "verify": str(ca),
    }
    return ApnsSettings(**(values | changes))
