"""File import through HTTP: upload (raw and multipart, CSV and XLSX), preview, the job, errors, resume."""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald, build
from herald.domain.jobs import job_stream
from tests.builders import DB, create_profile, create_resource, customers, error_of, log_size

UPLOAD = f"/api/v1/databases/{DB}/import-files"
IMPORTS = f"/api/v1/databases/{DB}/imports"
COLUMNS = [
    {"column": "Email", "field": "email"},
    {"column": "FirstName", "field": "_fname"},
    {"column": "age", "field": "age"},
    {"column": "crm_id", "field": "crm_id"},
]


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)
    create_resource(herald)


async def upload(api: httpx.AsyncClient, content: bytes, media: str = "text/csv") -> dict[str, Any]:
    response = await api.post(UPLOAD, content=content, headers={"content-type": media})
    assert response.status_code == 201, response.text
    return response.json()


async def run_import(
    api: httpx.AsyncClient, herald: Herald, content: bytes, **options: Any
) -> dict[str, Any]:
    """Upload, start and drive the job to its end; the job as `/jobs/{id}` then shows it."""
    file_id = (await upload(api, content))["file_id"]
    response = await api.post(IMPORTS, json={"file_id": file_id, "columns": COLUMNS, **options})
    assert response.status_code == 202, response.text
    herald.runtime.drain()
    return (await api.get(f"/api/v1/jobs/{response.json()['job_id']}")).json()


async def profile_by_email(api: httpx.AsyncClient, herald: Herald, email: str) -> dict[str, Any] | None:
    herald.runtime.drain()
    response = await api.get(
        "/api/v1/profiles/lookup", params={"database_id": DB, "by": "email_profile", "value": email}
    )
    found = response.json()["profiles"]
    return found[0] if found else None


async def test_an_upload_answers_a_preview_with_the_columns_matched_to_fields(api: httpx.AsyncClient) -> None:
    body = await upload(api, "Email;Имя;FirstName;crm_id\nann@example.org;Анна;Ann;c-1\n".encode("cp1251"))
    assert body["format"] == "csv"
    assert body["rows"] == [
        ["Email", "Имя", "FirstName", "crm_id"],
        ["ann@example.org", "Анна", "Ann", "c-1"],
    ]
    assert body["columns"][1] == {"number": 2, "header": "Имя", "values": ["Анна"]}
    assert [c["field"] for c in body["suggested_columns"]] == ["email", "_fname", "crm_id"]
    assert (body["matched"], body["unmatched"]) == (3, 1)
    again = await api.get(f"{UPLOAD}/{body['file_id']}/preview", params={"rows": 1})
    assert again.json()["rows"] == [["Email", "Имя", "FirstName", "crm_id"]]


async def test_a_csv_imports_its_rows_with_subscriptions_and_counts_them(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    csv = b"Email,FirstName,age,crm_id\nann@example.org,Ann,30,c-1\nbob@example.org,Bob,41,c-2\n"
    job = await run_import(
        api, herald, csv, subscriptions=[{"column": "Email", "resource_id": "7", "channel": "email"}]
    )
    assert job["status"] == "completed"
    assert job["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "error": 0, "empty": 0}
    assert job["progress"] == {"bytes_done": len(csv), "bytes_total": len(csv)}
    ann = await profile_by_email(api, herald, "ann@example.org")
    assert ann is not None
    assert (ann["fields"]["_fname"], ann["fields"]["age"], ann["source"]) == ("Ann", 30, "file")
    assert [s["contact"] for s in ann["subscriptions"]] == ["ann@example.org"]


@pytest.mark.parametrize(
    ("options", "row", "outcome"),
    [
        ({"mode": "add_only"}, "ann@example.org,Ann2,31,", "unchanged"),
        ({"mode": "update_only"}, "new@example.org,New,31,", "error"),
        ({"mode": "update_only"}, "ANN@example.org,Ann2,31,", "updated"),
        ({"match": "custom", "field_name": "crm_id"}, "other@example.org,Ann2,31,c-1", "updated"),
        ({"match": "email_profile"}, "new@example.org,New,31,", "created"),
    ],
    ids=[
        "add-only-existing",
        "update-only-missing",
        "update-only-existing",
        "custom-key",
        "email-profile-new",
    ],
)
async def test_the_batch_imports_modes_and_match_keys_apply_to_files(
    api: httpx.AsyncClient, herald: Herald, options: dict[str, Any], row: str, outcome: str
) -> None:
    await create_profile(api, {"email": "ann@example.org", "_fname": "Ann", "age": 30, "crm_id": "c-1"})
    job = await run_import(api, herald, f"Email,FirstName,age,crm_id\n{row}\n".encode(), **options)
    assert job["counts"][outcome] == 1, job


async def test_a_malformed_file_reports_its_bad_rows_and_imports_every_valid_one(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    await create_profile(api, {"email": "kept@example.org", "_fname": "Kept", "age": 50, "crm_id": "c-9"})
    lines = [
        b"Email,FirstName,age,crm_id",
        b"ok1@example.org,One,1,c-1",
        b"not-an-email,Two,2,c-2",  # a bad value
        b"ok3@example.org,Three,3,c-3,extra",  # wider than the header: its values may be shifted
        b"ok4@example.org,Four,four,c-4",  # not a number
        b"kept@example.org",  # a short row: its missing cells clear nothing
        b",,,",  # an empty row
        b"ok6@example.org,Six,6,c-1",  # a unique value the first row took
        b'ok7@example.org,"Se""ven",7,c-7',
        b'ok8@example.org,"Eight,8,c-8',  # an unclosed quote swallows the rest of the file
    ]
    job = await run_import(api, herald, b"\n".join(lines) + b"\n")
    assert job["status"] == "completed"
    assert job["counts"] == {"created": 2, "updated": 0, "unchanged": 1, "error": 5, "empty": 1}
    for email, name in (("ok1@example.org", "One"), ("ok7@example.org", 'Se"ven')):
        found = await profile_by_email(api, herald, email)
        assert found is not None and found["fields"]["_fname"] == name
    kept = await profile_by_email(api, herald, "kept@example.org")
    assert kept is not None and kept["fields"]["age"] == 50
    report = await api.get(f"/api/v1/jobs/{job['job_id']}/errors.csv")
    assert report.headers["content-type"].startswith("text/csv")
    header, *lines = csv.reader(io.StringIO(report.text.lstrip("\ufeff")))
    assert header == ["row", "column", "field", "reason", "cells"]
    by_row = {int(line[0]): line for line in lines}
    assert by_row[3][:3] == ["3", "Email", "email"]
    assert by_row[3][4:] == ["not-an-email", "Two", "2", "c-2"]
    assert by_row[4] == ["4", "", "", "the row has 5 cells, the header 4", *lines_of(lines, 4)]
    assert by_row[5][:3] == ["5", "age", "age"]
    assert by_row[8][:3] == ["8", "crm_id", "crm_id"]
    assert by_row[10] == ["10", "", "", "the row cannot be read as CSV (unexpected end of data)"]
    assert job["errors"] == len(by_row) == 5


def lines_of(lines: list[list[str]], row: int) -> list[str]:
    return next(line for line in lines if line[0] == str(row))[4:]


async def test_an_xlsx_upload_in_a_multipart_form_imports_typed_cells(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    book = Workbook()
    sheet = book.active
    sheet.append(["Email", "FirstName", "age", "crm_id"])
    sheet.append(["ann@example.org", "Ann", 30, 1001])
    sheet.append([None, None, None, None])
    sheet.append(["bob@example.org", "Bob", 41.0, "c-2"])
    content = io.BytesIO()
    book.save(content)
    files = {"file": ("people.xlsx", content.getvalue(), "application/octet-stream")}
    response = await api.post(UPLOAD, files=files)
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "xlsx"
    assert response.json()["rows"][1] == ["ann@example.org", "Ann", "30", "1001"]
    started = await api.post(IMPORTS, json={"file_id": response.json()["file_id"], "columns": COLUMNS})
    herald.runtime.drain()
    job = (await api.get(f"/api/v1/jobs/{started.json()['job_id']}")).json()
    assert (job["counts"]["created"], job["counts"]["empty"]) == (2, 1)
    assert job["progress"] == {"rows_done": 4, "rows_total": 4}
    bob = await profile_by_email(api, herald, "bob@example.org")
    assert bob is not None and bob["fields"]["age"] == 41


async def test_a_bad_start_is_refused_at_its_field(api: httpx.AsyncClient) -> None:
    file_id = (await upload(api, b"Email,Nick\na@example.org,x\n"))["file_id"]
    cases = [
        ({"file_id": file_id, "columns": [{"column": "Nick", "field": "nickname"}]}, 422, "columns.0.field"),
        ({"file_id": "0" * 32, "columns": COLUMNS}, 404, "file_id"),
        (
            {
                "file_id": file_id,
                "columns": [{"column": 1, "field": "email"}],
                "subscriptions": [{"column": 1, "resource_id": "404", "channel": "email"}],
            },
            404,
            "subscriptions.0.resource_id",
        ),
        ({"file_id": file_id, "columns": []}, 422, "columns"),
    ]
    for body, status, path in cases:
        response = await api.post(IMPORTS, json=body)
        assert response.status_code == status, (body, response.text)
        assert error_of(response)["path"] == path


async def test_an_empty_or_too_large_upload_is_refused_and_nothing_is_kept(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    empty = await api.post(UPLOAD, content=b"", headers={"content-type": "text/csv"})
    assert empty.status_code == 422
    herald.settings = dataclasses.replace(herald.settings, import_max_bytes=64)
    big = await api.post(
        UPLOAD, content=b"Email\n" + b"a@example.org\n" * 10, headers={"content-type": "text/csv"}
    )
    assert big.status_code == 413
    assert error_of(big)["path"] == "body"
    assert list((herald.settings.data_dir / "imports").iterdir()) == []


def _rows(count: int) -> bytes:
    lines = ["Email,FirstName,age,crm_id"] + [f"p{i}@example.org,P{i},{i},c-{i}" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


async def test_a_job_survives_a_restart_and_resumes_at_its_last_committed_chunk(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    herald.imports.chunk_rows = 4
    file_id = (await upload(api, _rows(10)))["file_id"]
    started = await api.post(IMPORTS, json={"file_id": file_id, "columns": COLUMNS})
    job_id = started.json()["job_id"]
    # the processor takes the start and does one chunk, then the process stops
    herald.runtime.drain(until=herald.store.head_position())
    assert herald.jobs.load(job_id).state.chunks == 1
    # a new process over the same data directory (this one never runs its processors again)
    again = build(herald.settings, clock=herald.clock)
    try:
        again.imports.chunk_rows = 4
        again.runtime.drain()
        job = again.jobs.job(job_id)
        assert (job["status"], job["chunks"], job["counts"]["created"]) == ("completed", 3, 10)
        emails = {e.data["fields"]["email"] for e in again.store.read_all() if e.type == "ProfileCreated"}
        assert emails == {f"p{i}@example.org" for i in range(10)}
        # a wake-up delivered again for a chunk that is done adds nothing
        before = log_size(again)
        again.jobs.wake(job_id, 1)
        again.jobs.wake(job_id, 3)
        assert log_size(again) == before
        assert not (again.settings.data_dir / "imports" / file_id).exists()  # the upload is gone
    finally:
        again.close()


async def test_a_cancelled_job_keeps_its_committed_chunks_and_does_no_more(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    herald.imports.chunk_rows = 3
    file_id = (await upload(api, _rows(9)))["file_id"]
    job_id = (await api.post(IMPORTS, json={"file_id": file_id, "columns": COLUMNS})).json()["job_id"]
    herald.runtime.drain(until=herald.store.head_position())
    cancelled = await api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    herald.runtime.drain()
    job = (await api.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["status"], job["counts"]["created"]) == ("cancelled", 2)  # the header and two rows
    listed = (await api.get("/api/v1/jobs", params={"database_id": DB, "kind": "import"})).json()["jobs"]
    assert [(j["job_id"], j["status"], j["counts"]["created"]) for j in listed] == [(job_id, "cancelled", 2)]
    assert len(herald.store.read_stream(job_stream(job_id))) == 3  # started, one chunk, cancelled
    assert (await api.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 200  # again: no-op
