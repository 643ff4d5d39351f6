"""Request limits, each a clear 4xx: body size (413, while streaming), media type (415), JSON depth,
strings and 64-bit integers (422 at the place), and errors that name `body` and never echo a
megabyte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.request_body import MAX_JSON_DEPTH, MAX_STRING_CHARS
from herald.api.wiring import Herald
from herald.domain.fields import MAX_TEXT_CHARS
from herald.infra.clock import ManualClock
from herald.infra.config import settings_from_env
from tests.builders import DB, create_profile, customers, import_rows
from tests.conftest import admin_client, herald_with

TRACK = "/api/v1/track/batch"
DATABASES = "/api/v1/databases"
IMPORT = f"/api/v1/databases/{DB}/profiles/import"
SMALL_LIMIT = 64 * 1024


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


def _event(properties: Any, event_id: str = "e-1") -> dict[str, Any]:
    return {
        "event": "Viewed",
        "profile": {"email": "ann@example.org"},
        "properties": properties,
        "event_id": event_id,
    }


def _batch(*events: dict[str, Any]) -> bytes:
    # the standard library writes any depth (orjson stops at 254), as a client might
    return json.dumps({"database_id": DB, "events": list(events)}).encode()


@pytest.fixture
def limited(tmp_path: Path, clock: ManualClock) -> Iterator[Herald]:
    with herald_with(tmp_path / "data", clock, 3, max_body_bytes=SMALL_LIMIT) as herald:
        yield herald


@pytest.fixture
async def small(limited: Herald) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(limited) as client:
        yield client


async def _with_ann(api: httpx.AsyncClient, herald: Herald) -> None:
    customers(herald)
    await create_profile(api, {"email": "ann@example.org"})
    herald.runtime.drain()


# --- body size ---------------------------------------------------------------------------------


def test_the_body_limit_is_configured_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_MAX_BODY_BYTES", "1234")
    assert settings_from_env().max_body_bytes == 1234
    monkeypatch.delenv("HERALD_MAX_BODY_BYTES")
    assert settings_from_env().max_body_bytes == 16 * 1024 * 1024


async def test_a_body_declared_over_the_limit_is_413_and_writes_nothing(
    small: httpx.AsyncClient, limited: Herald
) -> None:
    body = json.dumps({"name": "x" * SMALL_LIMIT}).encode()
    response = await small.post(DATABASES, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == {
        "status": 413,
        "reason": f"the body is over the limit of {SMALL_LIMIT:,} bytes",
        "path": "body",
    }
    assert limited.store.head_position() == 0


async def test_a_streamed_body_is_cut_off_once_over_the_limit_not_read_to_the_end(
    small: httpx.AsyncClient, limited: Herald
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows only while reading
        nonlocal sent
        yield b'{"name": "'
        for _ in range(1000):
            sent += 1
            yield b"x" * 1024
        yield b'"}'

    response = await small.post(DATABASES, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert sent <= SMALL_LIMIT // 1024 + 2  # stopped a chunk past the limit, not after 1,000 KiB
    assert limited.store.head_position() == 0


async def test_a_body_under_the_limit_is_taken(small: httpx.AsyncClient) -> None:
    response = await small.post(DATABASES, json={"name": "Shop", "description": "x" * (SMALL_LIMIT // 2)})
    assert response.status_code == 201, response.text


async def test_uploads_keep_their_own_limit_above_the_json_one(small: httpx.AsyncClient) -> None:
    csv = b"email\n" + b"a@example.org\n" * (SMALL_LIMIT // 8)
    response = await small.post("/api/v1/segment-files", content=csv, headers={"content-type": "text/csv"})
    assert response.status_code == 201, response.text


# --- media type --------------------------------------------------------------------------------


@pytest.mark.parametrize("media", ["text/plain", "application/xml", "multipart/form-data; boundary=x"])
async def test_a_json_body_sent_as_another_media_type_is_415(api: httpx.AsyncClient, media: str) -> None:
    response = await api.post(DATABASES, content=b'{"name": "Shop"}', headers={"content-type": media})
    assert response.status_code == 415
    assert response.json()["error"]["path"] == "body"


@pytest.mark.parametrize(
    "media",
    ["application/json", "application/json; charset=utf-8", "application/merge-patch+json", None,
     "application/x-www-form-urlencoded"],  # what `curl -d` sends: read as JSON all the same
)  # fmt: skip
async def test_json_and_curls_default_are_taken(api: httpx.AsyncClient, media: str | None) -> None:
    headers = {"content-type": media} if media else {}
    response = await api.post(DATABASES, content=b'{"name": "Shop"}', headers=headers)
    assert response.status_code == 201, response.text


async def test_an_upload_sent_as_json_is_415(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/segment-files", content=b"email\n", headers={"content-type": "application/json"}
    )
    assert response.status_code == 415


# --- JSON nesting ------------------------------------------------------------------------------


async def test_properties_nested_up_to_the_limit_are_stored_and_the_log_reads_back(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    await _with_ann(api, herald)
    # the batch's own levels (body, events, the event, properties) count towards the limit
    body = _batch(_event(_nested(MAX_JSON_DEPTH - 3)))
    response = await api.post(TRACK, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["counts"]["accepted"] == 1, response.text
    assert (await api.get("/api/v1/events", params={"limit": 1000})).status_code == 200


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH - 2, 100, 250, 252, 253, 300, 5000])
async def test_properties_nested_too_deep_are_422_at_their_place_and_nothing_is_stored(
    api: httpx.AsyncClient, herald: Herald, levels: int
) -> None:
    await _with_ann(api, herald)
    head = herald.store.head_position()
    body = _batch(_event(_nested(levels))) if levels < 900 else b'{"a":' * levels + b"1" + b"}" * levels
    response = await api.post(TRACK, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["reason"] == f"JSON nests at most {MAX_JSON_DEPTH} levels deep"
    # past the parser's own limit (about 200 levels) the place is not known: the whole body is named
    assert error["path"].startswith("events.0.properties.a.a") if levels < 200 else error["path"] == "body"
    herald.runtime.drain()
    assert herald.store.head_position() == head
    assert (await api.get("/api/v1/events", params={"limit": 1000})).status_code == 200


async def test_a_json_field_given_as_text_nests_no_deeper_than_a_body(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    from herald.domain.fields import FieldDefinition, FieldType
    from tests.builders import create_database

    create_database(herald, "5", (FieldDefinition(name="doc", type=FieldType.JSON),))
    deep_text = json.dumps(_nested(40))
    result = await import_rows(api, [{"email": "a@example.org", "doc": deep_text}], database_id="5")
    error = result["results"][0]["error"]
    assert (error["status"], error["path"].split(".")[:3]) == (422, ["rows", "0", "doc"])
    assert "nests at most 32" in error["reason"]


# --- integers past 64 bits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "param"),
    [("/api/v1/events", "after"), ("/api/v1/streams/database-1", "from_version"),
     ("/api/v1/stop-lists/platform-invalid/entries", "limit")],
)  # fmt: skip
@pytest.mark.parametrize("value", ["9223372036854775808", "99999999999999999999", "-9223372036854775809"])
async def test_query_integers_past_64_bits_are_422_naming_the_parameter(
    api: httpx.AsyncClient, url: str, param: str, value: str
) -> None:
    response = await api.get(url, params={param: value})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["path"] == param


@pytest.mark.parametrize("number", ["9223372036854775808", "18446744073709551616", "-9223372036854775809"])
async def test_body_integers_past_64_bits_are_422_at_their_place(
    api: httpx.AsyncClient, herald: Herald, number: str
) -> None:
    await _with_ann(api, herald)
    body = _batch(_event({"n": 1})).replace(b'"n": 1', f'"n": {number}'.encode())
    response = await api.post(TRACK, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["path"] == "events.0.properties.n"
    assert "64 bits" in response.json()["error"]["reason"]


# --- strings -----------------------------------------------------------------------------------


async def test_a_string_field_over_its_limit_is_a_row_error_that_does_not_echo_the_value(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    rows = [{"email": "a@example.org", "crm_id": "c" * (MAX_TEXT_CHARS + 1)}, {"email": "b@example.org"}]
    response = await api.post(IMPORT, json={"rows": rows})
    assert response.status_code == 200
    counts, results = response.json()["counts"], response.json()["results"]
    assert (counts["created"], counts["error"]) == (1, 1)
    assert results[0]["error"]["path"] == "rows.0.crm_id"
    assert f"at most {MAX_TEXT_CHARS:,}" in results[0]["error"]["reason"]
    assert len(response.content) < 1000


async def test_a_megabyte_value_in_a_row_error_is_cut_in_the_middle(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    response = await api.post(IMPORT, json={"rows": [{"email": "x" * (MAX_STRING_CHARS - 100)}]})
    assert response.status_code == 200
    reason = response.json()["results"][0]["error"]["reason"]
    assert len(response.content) < 2000
    assert reason.startswith("'xxxx") and "characters left out" in reason  # both ends kept
    assert reason.endswith("is not an email address") or "email" in reason[-100:]


async def test_a_string_over_a_mebibyte_anywhere_in_a_body_is_422(api: httpx.AsyncClient) -> None:
    body = {"name": "Shop", "description": "d" * (MAX_STRING_CHARS + 1)}
    response = await api.post(DATABASES, json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["path"] == "description" and f"at most {MAX_STRING_CHARS:,}" in error["reason"]
    assert len(response.content) < 1000


# --- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("{for $x = lead.l}" * 21 + "{end}" * 21, 273),
        ("{if lead.x}" * 99 + "{end}" * 99, 177),
        ("{lead." + ".".join(["a"] * 5000) + "}", 2),
    ],
    ids=["for-21", "if-99", "long-path"],
)
async def test_template_nesting_past_the_limits_is_422_with_line_and_column(
    api: httpx.AsyncClient, source: str, column: int
) -> None:
    for url, body in [
        ("/api/v1/templates/validate", {"content": {"sms": {"body": source}}}),
        ("/api/v1/templates", {"name": "Deep", "content": {"sms": {"body": source}}}),
    ]:
        response = await api.post(url, json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert (error["path"], error["line"], error["column"]) == ("content.sms.body", 1, column)


# --- errors about the whole body ---------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   ", b"[]", b'"x"', b"null", b"{", b"\xff"])
async def test_errors_about_the_whole_body_name_body(api: httpx.AsyncClient, body: bytes) -> None:
    for url in (DATABASES, TRACK):
        response = await api.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["path"] in ("body", "database_id"), error  # a batch not an object names what it lacks
        assert all(e["path"] for e in error.get("errors", [])), error
