"""Exports, mass updates and clearing a database through HTTP, each a job driven by the runtime."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

import httpx
import orjson
import pytest

from herald.api.wiring import Herald
from tests.builders import (
    DB,
    create_profile,
    create_resource,
    customers,
    email_subscription,
    error_of,
    log_size,
)

D = f"/api/v1/databases/{DB}"


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)
    create_resource(herald)


async def people(api: httpx.AsyncClient, herald: Herald, count: int = 5) -> list[str]:
    ids = [
        await create_profile(
            api,
            {
                "email": f"p{i}@example.org",
                "_fname": f"P{i}",
                "age": 20 + i,
                "crm_id": f"c-{i}",
                "phones": ["+7912345670" + str(i)],
                "subscriptions": [email_subscription(f"p{i}@example.org")],
            },
        )
        for i in range(count)
    ]
    herald.runtime.drain()
    return ids


async def run_job(
    api: httpx.AsyncClient, herald: Herald, path: str, body: dict[str, Any] | None
) -> dict[str, Any]:
    started = await api.post(path, json=body) if body is not None else await api.post(path)
    assert started.status_code == 202, started.text
    herald.runtime.drain()
    return (await api.get(f"/api/v1/jobs/{started.json()['job_id']}")).json()


async def test_a_csv_export_writes_chosen_fields_and_hashed_subscriptions_in_chunks(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ids = await people(api, herald)
    herald.exports.chunk = 2
    job = await run_job(
        api,
        herald,
        f"{D}/exports",
        {"source": {"kind": "database", "id": DB}, "fields": ["Email", "age", "phones"]},
    )
    assert (job["status"], job["chunks"], job["counts"]["exported"]) == ("completed", 3, 5)
    assert job["progress"] == {"profiles_done": 5, "profiles_total": 5}
    assert job["result"]["rows"] == 5
    response = await api.get(f"/api/v1/jobs/{job['job_id']}/file")
    assert response.headers["content-type"].startswith("text/csv")
    header, *rows = csv.reader(io.StringIO(response.content.decode("utf-8-sig")))
    assert header == ["profile_id", "email", "age", "phones", "global_status", "subscriptions"]
    assert sorted(r[0] for r in rows) == sorted(ids)
    first = next(r for r in rows if r[1] == "p0@example.org")
    assert (first[2], orjson.loads(first[3]), first[4]) == ("20", ["+79123456700"], "subscribed")
    [subscription] = orjson.loads(first[5])
    assert subscription["contact_sha256"] == hashlib.sha256(b"p0@example.org").hexdigest()
    assert "p0@example.org" not in first[5]  # subscriptions leave only in a one-way form


async def test_xlsx_and_json_lines_exports_of_a_segment(api: httpx.AsyncClient, herald: Herald) -> None:
    ids = await people(api, herald, 4)
    created = await api.post(
        "/api/v1/segments",
        json={
            "name": "Older",
            "kind": "dynamic",
            "query": {
                "sources": [
                    {
                        "database_id": DB,
                        "rules": [{"kind": "field", "field": "age", "operator": "gte", "value": 22}],
                    }
                ]
            },
        },
    )
    segment = {"kind": "segment", "id": created.json()["segment_id"]}
    herald.runtime.drain()
    lines = await run_job(
        api, herald, f"{D}/exports", {"source": segment, "format": "jsonl", "subscriptions": False}
    )
    body = (await api.get(f"/api/v1/jobs/{lines['job_id']}/file")).content
    records = [orjson.loads(line) for line in body.splitlines()]
    assert sorted(r["profile_id"] for r in records) == sorted(ids[2:])
    assert {r["age"] for r in records} == {22, 23} and "subscriptions" not in records[0]
    sheet = await run_job(
        api, herald, f"{D}/exports", {"source": segment, "format": "xlsx", "fields": ["email"]}
    )
    content = (await api.get(f"/api/v1/jobs/{sheet['job_id']}/file")).content
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    rows = list(load_workbook(io.BytesIO(content), read_only=True).worksheets[0].iter_rows(values_only=True))
    assert rows[0] == ("profile_id", "email", "global_status", "subscriptions")
    assert sorted(r[1] for r in rows[1:]) == ["p2@example.org", "p3@example.org"]


async def test_a_mass_update_changes_a_field_over_a_segment_skipping_unsafe_profiles_once_per_job(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ids = await people(api, herald, 4)
    await api.put(f"/api/v1/profiles/{ids[1]}/status", json={"status": "unsubscribed"})
    herald.mass_updates.chunk = 2
    job = await run_job(
        api,
        herald,
        f"{D}/mass-updates",
        {
            "source": {"kind": "database", "id": DB},
            "fields": [{"field": "age", "value": "99"}, {"field": "_fname", "op": "delete"}],
        },
    )
    assert job["status"] == "completed"
    assert job["counts"] == {"updated": 3, "unchanged": 1}
    herald.runtime.drain()
    cards = {i: (await api.get(f"/api/v1/profiles/{i}")).json() for i in ids}
    assert [cards[i]["fields"].get("age") for i in ids] == [99, 21, 99, 99]
    assert "_fname" not in cards[ids[0]]["fields"] and cards[ids[1]]["fields"]["_fname"] == "P1"
    updated = [
        e
        for e in herald.store.read_all()
        if e.type == "ProfileFieldsUpdated" and e.data["source"] == "mass_update"
    ]
    assert len(updated) == 3
    assert {e.metadata["job_id"] for e in updated} == {job["job_id"]}
    # the same chunks done again (a redelivered wake-up, a restart) append nothing
    before = log_size(herald)
    herald.jobs.wake(job["job_id"], 0)
    herald.jobs.wake(job["job_id"], 1)
    assert log_size(herald) == before


async def test_a_mass_update_can_unsubscribe_globally_and_include_unsafe_statuses(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ids = await people(api, herald, 2)
    await api.put(f"/api/v1/profiles/{ids[1]}/status", json={"status": "invalid"})
    job = await run_job(
        api,
        herald,
        f"{D}/mass-updates",
        {
            "source": {"kind": "database", "id": DB},
            "unsubscribe_globally": True,
            "include_unsafe": True,
            "fields": [{"field": "tier", "value": "GOLD"}],
        },
    )
    assert job["counts"] == {"updated": 2}
    herald.runtime.drain()
    statuses = [(await api.get(f"/api/v1/profiles/{i}")).json()["global_status"] for i in ids]
    assert statuses == ["unsubscribed", "unsubscribed"]


async def test_bad_exports_and_mass_updates_are_refused_at_their_field(api: httpx.AsyncClient) -> None:
    db = {"kind": "database", "id": DB}
    cases = [
        (f"{D}/exports", {"source": db, "fields": ["nope"]}, 422, "fields.0"),
        (f"{D}/exports", {"source": db, "format": "pdf"}, 422, "format"),
        (f"{D}/exports", {"source": {"kind": "segment", "id": "404"}}, 404, "segment_id"),
        (f"{D}/exports", {"source": {"kind": "database", "id": "2"}}, 422, "source.id"),
        (
            f"{D}/mass-updates",
            {"source": db, "fields": [{"field": "age", "value": "old"}]},
            422,
            "fields.0.value",
        ),
        (f"{D}/mass-updates", {"source": db, "fields": [{"field": "age"}]}, 422, "fields.0.value"),
        (f"{D}/mass-updates", {"source": db}, 422, "fields"),
        (
            "/api/v1/databases/404/mass-updates",
            {"source": db, "fields": [{"field": "age", "value": 1}]},
            404,
            "database_id",
        ),
    ]
    for path, body, status, where in cases:
        response = await api.post(path, json=body)
        assert response.status_code == status, (body, response.text)
        assert error_of(response)["path"] == where, response.text


async def test_clearing_a_database_deletes_its_profiles_and_frees_their_unique_values(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ids = await people(api, herald, 3)
    herald.clearing.chunk = 2
    job = await run_job(api, herald, f"{D}/clear", None)
    assert (job["status"], job["kind"], job["counts"]) == ("completed", "clear_database", {"deleted": 3})
    herald.runtime.drain()
    assert (await api.get(f"{D}/profiles")).json()["profiles"] == []
    assert [(await api.get(f"/api/v1/profiles/{i}")).status_code for i in ids] == [404, 404, 404]
    again = await create_profile(
        api, {"email": "p0@example.org", "crm_id": "c-0"}
    )  # the values are free again
    assert again not in ids
    assert (await api.get(D)).status_code == 200  # the database itself stays
