"""The OpenAPI document: served, true to the routes, valid, and the same as `herald openapi` prints."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from herald.api.app import create_app
from herald.api.cli import main
from herald.api.wiring import Herald

OPENAPI = "/api/v1/openapi.json"
_DOC = "urn:herald:openapi"


async def _served(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get(OPENAPI)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


def _resolver(document: dict[str, Any]) -> Any:
    """A resolver over the whole document, so `#/components/schemas/...` refs can be looked up."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(_DOC, resource).resolver(_DOC)


async def test_the_document_lists_every_route_of_the_app_and_nothing_else(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    document = await _served(api)
    app = create_app(herald, run_processors=False)
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"  # Starlette adds HEAD to every GET
    }
    assert _documented(document) == served
    assert ("GET", OPENAPI) in served


async def test_the_document_is_valid_openapi_3_1(api: httpx.AsyncClient) -> None:
    document = await _served(api)
    assert document["openapi"].startswith("3.1")
    validate(document)  # resolves every $ref too


async def test_every_request_body_and_parameter_is_a_valid_schema_whose_refs_resolve(
    api: httpx.AsyncClient,
) -> None:
    document = await _served(api)
    resolver = _resolver(document)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    bodies = 0
    for method, path, op in _operations(document):
        schemas = [p["schema"] for p in op.get("parameters", [])]
        if "requestBody" in op:
            bodies += 1
            schemas += [media["schema"] for media in op["requestBody"]["content"].values()]
        for schema in schemas:
            Draft202012Validator.check_schema(schema)
            for ref in _refs(schema):
                assert ref.startswith("#/components/schemas/"), (method, path, ref)
                resolver.lookup(_DOC + ref)  # raises if it dangles
    assert bodies >= 20


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = [schema["$ref"]] if isinstance(schema.get("$ref"), str) else []
        return found + [r for v in schema.values() for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/databases/{database_id}/profiles/import", {"rows": [{"email": "ann@example.org"}]}),
        ("/api/v1/profiles/{profile_id}", {"fields": {"age": 3}, "expected_version": 2}),
        ("/api/v1/track/batch", {"database_id": "1", "events": [{"event": "view", "anonymous_id": "a"}]}),
    ],
)
async def test_request_bodies_the_api_accepts_validate_against_their_documented_schema(
    api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    document = await _served(api)
    op = next(op for op in document["paths"][path].values() if "requestBody" in op)
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)


async def test_the_cli_prints_the_served_document(
    api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    served = await _served(api)
    assert main(["openapi"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == served


async def test_the_document_is_public_and_unknown_routes_are_json_404(herald: Herald) -> None:
    transport = httpx.ASGITransport(app=create_app(herald, run_processors=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as anonymous:
        assert (await anonymous.get(OPENAPI)).status_code == 200
        missing = await anonymous.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == 404


async def test_bodies_read_as_bytes_are_documented_with_their_media_type(api: httpx.AsyncClient) -> None:
    document = await _served(api)
    uploads = {
        ("POST", "/api/v1/segment-files"): ("text/csv", "application/vnd.ms-excel"),
        ("POST", "/api/v1/inbound"): ("message/rfc822", "text/plain"),
        ("POST", "/t/unsubscribe/{token}"): ("application/x-www-form-urlencoded",),
    }
    for (method, path), media in uploads.items():
        body = document["paths"][path][method.lower()]["requestBody"]
        assert body["required"] is True
        assert next(iter(body["content"])) == media[0]  # the body's own type first, then the others taken
        assert set(media) <= set(body["content"])
        for name, entry in body["content"].items():
            assert entry == {"schema": {"type": "string", "contentMediaType": name}}


async def test_every_body_taking_operation_documents_413_and_its_limit(api: httpx.AsyncClient) -> None:
    document = await _served(api)
    with_body = [(m, p, op) for m, p, op in _operations(document) if "requestBody" in op]
    assert len(with_body) > 40
    for method, path, op in with_body:
        assert "413" in op["responses"], (method, path)
        assert "bytes" in op["responses"]["413"]["description"]
    json_bodies = [op for _, _, op in with_body if "application/json" in op["requestBody"]["content"]]
    assert all("HERALD_MAX_BODY_BYTES" in op["responses"]["413"]["description"] for op in json_bodies)
    assert all("415" in op["responses"] for op in json_bodies)
    assert "nest at most 32" in document["info"]["description"]
