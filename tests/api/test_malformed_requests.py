"""Property-style: malformed requests thrown at every endpoint of the route list never answer 5xx.

Each endpoint gets bad path parameters, bad query values for every parameter its query model
has, and (when it takes a body) bodies that are empty, not JSON, the wrong JSON type, nested
too deep, holding numbers past 64 bits, megabyte strings, wrong-typed fields, or sent with the
wrong media type. The cases are drawn from a seeded generator, so a failure reproduces.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from herald.api.app import endpoints
from herald.api.endpoints import Endpoint
from herald.api.wiring import Herald
from herald.domain.fields import FieldDefinition, FieldType
from herald.infra.clock import ManualClock
from tests.builders import create_database, create_resource, customers, email_subscription, import_rows
from tests.conftest import admin_client, herald_with

SEED = 13
JSON_DB = "9"  # a database with a json field, whose text values are parsed
_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
BAD_SCALARS: list[Any] = [
    "",
    "x",
    "99999999999999999999",
    "-99999999999999999999",
    "1e309",
    "NaN",
    "\u0000",
    "ü" * 3000,
    "[",
    "{}",
]
BAD_PATH_PARAMS = [
    "x",
    "0",
    "99999999999999999999",
    "-1",
    "a" * 3000,
    "%00",
    "..%2F..",
    "%F0%9F%92%A9",
    "%FF",
    "%ED%A0%80",
]


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # the standard library writes deeper than orjson's 254 levels


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def _wrong_typed(model: type[BaseModel] | None, rng: random.Random) -> list[bytes]:
    """Bodies with every field of `model` set to a wrong or extreme value."""
    names = list(model.model_fields) if model is not None else ["x"]
    wrong: list[Any] = [
        [[]],
        {"$": [1]},
        18446744073709551615,
        -9223372036854775809,
        "x" * 70_000,
        1.5e308,
        None,
        True,
        _deep(40),
        "",
        "2026-13-45T99:99:99Z",
    ]
    bodies = [_dumps({n: value for n in names}) for value in wrong]
    bodies += [_dumps({n: rng.choice(wrong) for n in names}) for _ in range(4)]
    return bodies


def _bodies(endpoint: Endpoint, rng: random.Random) -> list[tuple[bytes, str]]:
    """(body, media type) pairs for an endpoint that takes a body."""
    if endpoint.bytes_body is not None:
        junk = bytes(rng.randrange(256) for _ in range(512))
        return [(b"", endpoint.bytes_body), (junk, endpoint.bytes_body), (b"{}", "application/json")]
    plain = [b"", b"{", b"[]", b"null", b'"x"', b"1", b"{}", b"\xff\xfe", b'{"a": 1}{"b": 2}']
    cases = [(body, "application/json") for body in plain]
    cases += [(_dumps(_deep(300)), "application/json"), (_dumps(_deep(251)), "application/json")]
    cases += [(_dumps({"x": "y" * (1024 * 1024 + 1)}), "application/json")]
    cases += [(b'{"x": 18446744073709551615}', "application/json"), (b"{}", "text/plain")]
    cases += [(b, "application/json") for b in _wrong_typed(endpoint.body, rng)]
    return cases


# Valid requests whose every leaf is then replaced by a malformed value: the shape is right, so the
# bad value travels as far as it can (into a stored event, a profile field, a trigger's content).
EXAMPLES: list[tuple[str, str, dict[str, str], Any]] = [
    (
        "POST",
        "/api/v1/databases",
        {},
        {
            "name": "Shop",
            "custom_fields": [
                {"name": "doc", "title": "Doc", "type": "json"},
                {"name": "n", "title": "N", "type": "int"},
            ],
        },
    ),
    (
        "POST",
        "/api/v1/databases/1/profiles/import",
        {},
        {
            "mode": "add_and_update",
            "match": "email",
            "rows": [{"email": "bob@example.org", "_fname": "Bob", "age": 30, "crm_id": "C-9"}],
        },
    ),
    (
        "POST",
        f"/api/v1/databases/{JSON_DB}/profiles/import",
        {},
        {"rows": [{"email": "dee@example.org", "doc": {"a": [1, "b"]}}]},
    ),
    ("POST", "/api/v1/databases/1/profiles/upsert", {}, {"row": {"email": "cy@example.org", "age": 3}}),
    (
        "POST",
        "/api/v1/track/batch",
        {},
        {
            "database_id": "1",
            "events": [
                {
                    "event": "View",
                    "profile": {"email": "ann@example.org"},
                    "properties": {"sku": "A-1", "n": [1]},
                    "event_id": "e",
                }
            ],
        },
    ),
    (
        "POST",
        "/api/v1/track/segment/track",
        {"database_id": "1"},
        {
            "userId": "ann@example.org",
            "event": "Order",
            "properties": {"total": 120},
            "context": {"ip": "1.2.3.4"},
            "messageId": "m",
        },
    ),
    (
        "POST",
        "/api/v1/track/segment/identify",
        {"database_id": "1"},
        {"userId": "ann@example.org", "traits": {"_fname": "Ann", "age": 4}},
    ),
    (
        "POST",
        "/api/v1/templates",
        {},
        {
            "name": "W",
            "content": {
                "email": {"subject": "Hi {lead._fname}", "html": "<p>{lead.x}</p>"},
                "defaults": {"lead._fname": "friend"},
            },
        },
    ),
    (
        "POST",
        "/api/v1/segments",
        {},
        {
            "name": "S",
            "kind": "dynamic",
            "query": {
                "sources": [
                    {
                        "database_id": "1",
                        "rules": [{"kind": "field", "field": "age", "operator": "gte", "value": 3}],
                    }
                ]
            },
        },
    ),
    ("POST", "/api/v1/stop-lists/check-contact", {}, {"channel": "email", "contact": "a@b.co"}),
]
MALFORMED_LEAVES: list[Any] = [
    _deep(251),
    _deep(300),
    2**63,
    2**64 - 1,
    2**64 + 1,  # orjson would read this one as a float
    -(2**63) - 1,
    "x" * (1024 * 1024 + 1),
    "y" * 70_000,
    {"z": [[{}]]},
    None,
    [],
    "[" * 3000 + "]" * 3000,  # for a json field: text that parses to JSON nested too deep
    "[18446744073709551616]",
]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _mutated_examples() -> Iterator[dict[str, Any]]:
    for method, url, params, body in EXAMPLES:
        for leaf in _leaves(body):
            for bad in MALFORMED_LEAVES:
                content = _dumps(_replaced(body, leaf, bad))
                yield {"method": method, "url": url, "params": params, "content": content}


def _path(endpoint: Endpoint, value: str) -> str:
    return _PARAM.sub(value, endpoint.path)


def _queries(endpoint: Endpoint, rng: random.Random) -> list[dict[str, str]]:
    if endpoint.query is None:
        return []
    names = list(endpoint.query.model_fields)
    one_each = [{name: str(value)} for name in names for value in BAD_SCALARS]
    mixed = [{name: str(rng.choice(BAD_SCALARS)) for name in names} for _ in range(3)]
    return one_each + mixed


def _requests(endpoint: Endpoint, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Every malformed request for one endpoint, as `httpx.AsyncClient.request` arguments."""
    method = endpoint.method
    for value in BAD_PATH_PARAMS:
        yield {"method": method, "url": _path(endpoint, value)}
    url = _path(endpoint, "1")
    for params in _queries(endpoint, rng):
        yield {"method": method, "url": url, "params": params}
    if endpoint.body is not None or endpoint.bytes_body is not None:
        for body, media in _bodies(endpoint, rng):
            yield {"method": method, "url": url, "content": body, "headers": {"content-type": media}}


@pytest.fixture
def loaded(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    """A Herald with reports on (so report endpoints answer rather than 503) and some data to hit."""
    with herald_with(tmp_path / "data", clock, 7, reports_engine="chdb") as herald:
        customers(herald)
        create_database(herald, JSON_DB, (FieldDefinition(name="doc", type=FieldType.JSON),))
        create_resource(herald)
        yield herald


@pytest.fixture
async def client(loaded: Herald) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(loaded, raise_app_exceptions=False) as c:
        yield c


async def test_no_malformed_request_to_any_endpoint_answers_5xx(
    client: httpx.AsyncClient, loaded: Herald
) -> None:
    await import_rows(
        client, [{"email": "ann@example.org", "subscriptions": [email_subscription("ann@example.org")]}]
    )
    loaded.runtime.drain()
    rng = random.Random(SEED)
    failures: list[str] = []
    sent = 0
    for endpoint in endpoints():
        for request in _requests(endpoint, rng):
            response = await client.request(**request)
            sent += 1
            if response.status_code >= 500:
                shown = {k: (v[:80] if isinstance(v, bytes | str) else v) for k, v in request.items()}
                failures.append(f"{response.status_code} {endpoint.method} {endpoint.path} {shown}")
        loaded.runtime.drain()  # what a request wrote must not make a processor fail either
    for request in _mutated_examples():
        response = await client.request(**request, headers={"content-type": "application/json"})
        sent += 1
        if response.status_code >= 500:
            failures.append(
                f"{response.status_code} {request['method']} {request['url']} {request['content'][:200]!r}"
            )
    loaded.runtime.drain()
    failures += await _log_read_back(client, loaded)
    assert sent > 3000
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} in all)"


async def _log_read_back(client: httpx.AsyncClient, herald: Herald) -> list[str]:
    """Whatever the requests stored can be read back: every page of the log and every stream."""
    failures = []
    after, head = 0, herald.store.head_position()
    while after < head:
        response = await client.get("/api/v1/events", params={"after": after, "limit": 50})
        if response.status_code != 200:
            return [f"{response.status_code} GET /api/v1/events?after={after}"]
        after = response.json()["next_after"]
    # a unique field's claim stream is named after its value, which may be longer than a URL can be;
    # its events were read back on the log's pages above
    for stream in sorted({e.stream for e in herald.store.read_all(1) if len(e.stream) < 4000}):
        response = await client.get(f"/api/v1/streams/{stream}")
        if response.status_code != 200:
            failures.append(f"{response.status_code} GET /api/v1/streams/{stream}")
    return failures
