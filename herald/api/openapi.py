"""The OpenAPI 3.1 document, generated from the endpoint list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from herald.api.endpoints import Endpoint

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "reason": {"type": "string"},
                "path": {"type": "string", "description": "the offending field, dotted"},
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
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald API",
            "version": version,
            "description": "Customer profiles, subscriptions, stop lists and tracked events. "
            "Commands return the new events' ids and stream version; errors name the field.",
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
        "operationId": f"{endpoint.method.lower()}_{endpoint.path}".replace("/", "_").replace("{", "").replace("}", ""),
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(endpoint.path)
        ],
        "responses": {
            str(endpoint.status): {"description": "success"},
            "404": _error_response("unknown id"),
            "409": _error_response("stale expected_version or duplicate"),
            "422": _error_response("invalid input, naming the field"),
        },
    }
    if endpoint.role != "public":
        op["security"] = [{"bearer": []}]
        op["responses"]["401"] = _error_response("missing or unknown token")
        op["responses"]["403"] = _error_response(f"the token lacks the {endpoint.role!r} role")
    if endpoint.query is not None:
        op["parameters"] += _query_parameters(endpoint.query)
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema_ref(endpoint.body, components)}},
        }
    return op


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]
