"""The OpenAPI 3.1 document, generated from the endpoint list."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from herald.api.endpoints import Endpoint
from herald.api.request_body import MAX_JSON_DEPTH, MAX_STRING_CHARS
from herald.infra.config import DEFAULT_MAX_BODY_BYTES
from herald.infra.serialization import dumps, loads

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
OPENAPI_PATH = "/api/v1/openapi.json"
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "reason": {"type": "string"},
                "path": {"type": "string", "description": "the offending field, dotted"},
                "error_id": {"type": "string", "description": "500: names the error in the server's log"},
            },
            "required": ["status", "reason"],
        }
    },
}


def openapi_document(endpoints: Sequence[Endpoint], version: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = _PARAM.sub(r"{\1}", endpoint.path)
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, components)
    # The document's own route is served by the app, not an Endpoint; it belongs in the list all the same.
    paths[OPENAPI_PATH] = {
        "get": {
            "summary": "This OpenAPI document",
            "tags": ["system"],
            "operationId": "get_openapi",
            "responses": {"200": {"description": "the OpenAPI 3.1 document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald API",
            "version": version,
            "description": "Customer profiles, subscriptions, stop lists and tracked events. "
            "Commands return the new events' ids and stream version; errors name the field. "
            f"JSON bodies nest at most {MAX_JSON_DEPTH} levels deep, hold strings of at most "
            f"{MAX_STRING_CHARS:,} characters and whole numbers in the signed 64-bit range (as do "
            "query parameters); they are sent as application/json (curl's default form type is "
            "read as JSON too). Echoed values in errors are cut to their ends.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(endpoint: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "operationId": _operation_id(endpoint),
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(endpoint.path)
        ],
        "responses": {
            str(endpoint.status): _success(endpoint),
            "404": _error_response("unknown id"),
            "409": _error_response("stale expected_version or duplicate"),
            "422": _error_response("invalid input, naming the field"),
            "500": _error_response("an unexpected error, with the error id the server's log names it by"),
        },
    }
    if endpoint.role != "public":
        op["security"] = [{"bearer": []}]
        op["responses"]["401"] = _error_response("missing or unknown token")
        op["responses"]["403"] = _error_response(
            f"a service token lacks the {endpoint.role!r} role, or a user lacks the right below"
        )
    if endpoint.access is not None and endpoint.role != "public":
        # what a user's token needs: the action on the kind, for the object the parameter names
        access = endpoint.access
        op["x-herald-access"] = {"kind": access.kind, "action": access.action, "object": access.param}
    if endpoint.query is not None:
        op["parameters"] += _query_parameters(endpoint.query, components)
    if endpoint.streams_body:
        limit = "the file is over HERALD_IMPORT_MAX_BYTES (4 GiB of bytes unless configured)"
        op["responses"]["413"] = _error_response(limit)
    if endpoint.takes_body:
        op["responses"]["413"] = _error_response(_too_large(endpoint))
        if endpoint.accepts is not None:
            op["responses"]["415"] = _error_response("the body's media type is not one this endpoint takes")
    if endpoint.body is not None or endpoint.raw_body:
        schema = _schema_ref(endpoint.body, components) if endpoint.body is not None else {"type": "object"}
        media = ("application/json", *(endpoint.accepts or ()))  # other labels it takes the JSON under
        op["requestBody"] = {"required": True, "content": {m: {"schema": schema} for m in media}}
    if endpoint.bytes_body is not None:
        media = (endpoint.bytes_body, *(endpoint.accepts or ()))
        op["requestBody"] = {
            "required": True,
            "content": {m: {"schema": {"type": "string", "contentMediaType": m}} for m in media},
        }
    return op


def _too_large(endpoint: Endpoint) -> str:
    if endpoint.max_body is not None:
        return f"the body is over {endpoint.max_body:,} bytes"
    return f"the body is over HERALD_MAX_BODY_BYTES ({DEFAULT_MAX_BODY_BYTES:,} bytes unless configured)"


def _success(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.produces is None:
        return {"description": "success"}
    return {"description": "success", "content": {endpoint.produces: {"schema": {"type": "string"}}}}


def _operation_id(endpoint: Endpoint) -> str:
    raw = f"{endpoint.method.lower()}_{endpoint.path}"
    return raw.replace("/", "_").replace("{", "").replace("}", "")


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _component_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's schema with its nested definitions (enums, models) moved into the components."""
    schema: dict[str, Any] = loads(_json_schema(model))
    components.update(schema.pop("$defs", {}))
    return schema


@functools.cache
def _json_schema(model: type[BaseModel]) -> bytes:
    # Generating schemas is the slow part of building the document (each app builds it once,
    # tests build many apps); kept serialized so every caller gets its own copy.
    return dumps(model.model_json_schema(ref_template="#/components/schemas/{model}"))


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    components[model.__name__] = _component_schema(model, components)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _component_schema(model, components)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]
