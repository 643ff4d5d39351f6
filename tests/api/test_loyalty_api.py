"""Loyalty programs and promo codes through HTTP: settings, generation (now and as a job), import, export,
view and delete, assignment, activation, expiry, the codes report and the running-low event."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from openpyxl import Workbook  # type: ignore[import-untyped]

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import create_profile, customers, error_of, log_size
from tests.code_service import CodeService, serving

P = "/api/v1/loyalty-programs"
PATTERN = "{L4}-{D6}"
CODE = re.compile(r"^[A-Z]{4}-\d{6}$")


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)


@pytest.fixture
def service(herald: Herald) -> Iterator[CodeService]:
    """A local code service the programs may call."""
    with serving(herald) as running:
        yield running


async def program(api: httpx.AsyncClient, **settings: Any) -> str:
    body = {"name": "Spring", "shortcode": "spring", "generator": {"kind": "pattern", "pattern": PATTERN}}
    response = await api.post(P, json={**body, **settings})
    assert response.status_code == 201, response.text
    return str(response.json()["program_id"])


async def post(api: httpx.AsyncClient, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def codes(
    api: httpx.AsyncClient, herald: Herald, program_id: str, **params: Any
) -> list[dict[str, Any]]:
    herald.runtime.drain()
    response = await api.get(f"{P}/{program_id}/codes", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["codes"]
    return found


async def profiles(api: httpx.AsyncClient, herald: Herald, count: int) -> list[str]:
    made = [await create_profile(api, {"email": f"p{i}@example.org"}) for i in range(count)]
    herald.runtime.drain()  # profiles are found by email through the lookup projection
    return made


def report_of(body: dict[str, Any], program_id: str) -> dict[str, Any]:
    row: dict[str, Any] = next(r for r in body["programs"] if r["program_id"] == program_id)
    return row


# --- programs ----------------------------------------------------------------------------------


async def test_a_program_is_created_with_its_macro_and_listed(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api, max_codes=500, code_ttl_minutes=60 * 24, fields=[
        {"name": "Акция", "type": "string", "default": "Чёрная пятница"}])  # fmt: skip
    card = (await api.get(f"{P}/{program_id}")).json()
    assert card["macro"] == "{loyalty.spring.promocode}" and card["active"] is True
    assert card["codes"] == {"count": 0, "free": 0} and card["max_codes"] == 500
    herald.runtime.drain()
    listed = (await api.get(P)).json()["programs"]
    assert [p["program_id"] for p in listed] == [program_id]


async def test_the_template_name_is_unique_and_freed_by_a_rename(api: httpx.AsyncClient) -> None:
    first = await program(api)
    taken = await api.post(P, json={"name": "Other", "shortcode": "spring"})
    assert taken.status_code == 409 and error_of(taken)["path"] == "shortcode"
    renamed = await api.put(f"{P}/{first}", json={"name": "Spring", "shortcode": "spring-2026"})
    assert renamed.status_code == 200, renamed.text
    assert (await api.post(P, json={"name": "Other", "shortcode": "spring"})).status_code == 201


BACKWARDS = {"valid_from": "2026-04-01T00:00:00Z", "valid_to": "2026-03-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"shortcode": "a b"}, "shortcode"),
        ({"generator": {"kind": "pattern", "pattern": "{D2}"}}, "generator.pattern"),
        ({"generator": {"kind": "external", "url": "file:///etc"}}, "generator.url"),
        (
            {"generator": {"kind": "external", "url": "http://a.b", "max_batch": 0}},
            "generator.external.max_batch",
        ),
        ({"max_codes": 0}, "max_codes"),
        ({"period": BACKWARDS}, "period.valid_to"),
    ],
)
async def test_bad_settings_are_a_422_at_their_path(
    api: httpx.AsyncClient, settings: dict[str, Any], path: str
) -> None:
    before = (await api.get(P)).json()["programs"]
    response = await api.post(P, json={"name": "X", "shortcode": "x", **settings})
    assert response.status_code == 422, response.text
    assert error_of(response)["path"] == path
    assert (await api.get(P)).json()["programs"] == before


# --- generation --------------------------------------------------------------------------------


async def test_small_generations_are_issued_at_once(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api)
    body = await post(api, f"{P}/{program_id}/codes/generate", {"count": 25})
    assert body == {"issued": 25, "duplicates": []}
    found = await codes(api, herald, program_id)
    assert len(found) == 25 and len({c["code"] for c in found}) == 25
    assert all(CODE.match(c["code"]) and c["source"] == "generated" and c["holders"] == 0 for c in found)
    preview = (await api.get(f"{P}/{program_id}/codes/preview")).json()["code"]
    assert CODE.match(preview) and preview not in {c["code"] for c in found}


async def test_a_large_generation_is_a_job_with_progress(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api)
    started = await post(api, f"{P}/{program_id}/codes/generate", {"count": 2500}, status=202)
    herald.runtime.drain(until=herald.store.head_position())  # the start and the first chunk only
    job = (await api.get(f"{P}/{program_id}/jobs/{started['job_id']}")).json()
    assert job["status"] == "running" and job["done"] == 0
    herald.runtime.drain()
    job = (await api.get(f"{P}/{program_id}/jobs/{started['job_id']}")).json()
    assert (job["status"], job["done"], job["requested"]) == ("done", 2500, 2500)
    assert (await api.get(f"{P}/{program_id}")).json()["codes"]["count"] == 2500
    last = herald.store.read_stream(f"promojob-{started['job_id']}")[-2]
    assert last.type == "PromoCodeJobProgressed"
    herald.promo_codes.job_chunk(started["job_id"], last.data["done"])  # redelivered: nothing more
    herald.promo_codes.job_chunk(started["job_id"], 1000)  # an older progress: nothing
    assert (await api.get(f"{P}/{program_id}")).json()["codes"]["count"] == 2500


async def test_the_maximum_is_kept_unless_ignored(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api, max_codes=10)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 8})
    over = await api.post(f"{P}/{program_id}/codes/generate", json={"count": 3})
    assert over.status_code == 422 and error_of(over)["path"] == "count"
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 3, "ignore_limit": True})
    assert (await api.get(f"{P}/{program_id}")).json()["codes"]["count"] == 11


async def test_a_program_without_a_generator_cannot_generate(api: httpx.AsyncClient) -> None:
    program_id = await program(api, generator=None)
    response = await api.post(f"{P}/{program_id}/codes/generate", json={"count": 3})
    assert response.status_code == 422 and error_of(response)["path"] == "generator"


async def test_fields_are_kept_in_codes_when_asked(api: httpx.AsyncClient, herald: Herald) -> None:
    fields = [{"name": "Акция", "default": "Чёрная пятница"}, {"name": "level", "type": "int"}]
    program_id = await program(api, fields=fields, save_fields=True)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 2, "fields": {"level": "3"}})
    found = await codes(api, herald, program_id)
    assert [c["fields"] for c in found] == [{"Акция": "Чёрная пятница", "level": 3}] * 2
    bad = await api.post(f"{P}/{program_id}/codes/generate", json={"count": 2, "fields": {"level": "x"}})
    assert bad.status_code == 422 and error_of(bad)["path"] == "fields.level"


# --- external service --------------------------------------------------------------------------


async def test_an_external_service_makes_the_codes(
    api: httpx.AsyncClient, herald: Herald, service: CodeService
) -> None:
    generator = {"kind": "external", "url": service.url("/objects"), "max_batch": 2}
    program_id = await program(api, generator=generator, fields=[{"name": "Акция", "default": "BF"}])
    body = await post(api, f"{P}/{program_id}/codes/generate", {"count": 5})
    assert body["issued"] == 5
    requests = service.bodies("/objects")
    assert [r["count"] for r in requests] == [2, 2, 1]  # at most max_batch per request
    assert requests[0]["loyalty_id"] == program_id and requests[0]["loyalty_shortcode"] == "spring"
    assert requests[0]["fields"] == {"Акция": "BF"} and requests[0]["is_test"] is False
    found = await codes(api, herald, program_id)
    assert [c["code"] for c in found] == [f"EXT-{i}" for i in range(1, 6)]
    assert found[0]["fields"] == {"batch": "b1"}  # fields the service returns are kept
    preview = (await api.get(f"{P}/{program_id}/codes/preview")).json()["code"]
    assert preview.startswith("TEST-") and service.bodies("/objects")[-1]["is_test"] is True
    assert len(await codes(api, herald, program_id)) == 5  # the preview issued nothing


@pytest.mark.parametrize(("path", "reason"), [("/slow", "no answer within"), ("/garbage", "not JSON"),
                                              ("/broken", "failed 3 times")])  # fmt: skip
async def test_a_failing_service_fails_the_request_and_issues_nothing(
    api: httpx.AsyncClient, herald: Herald, service: CodeService, path: str, reason: str
) -> None:
    program_id = await program(api, generator={"kind": "external", "url": service.url(path)})
    before = log_size(herald)
    response = await api.post(f"{P}/{program_id}/codes/generate", json={"count": 3})
    assert response.status_code == 422, response.text
    assert error_of(response)["path"] == "generator.url" and reason in error_of(response)["reason"]
    assert log_size(herald) == before and await codes(api, herald, program_id) == []


# --- import and export -------------------------------------------------------------------------


def _xlsx(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_codes_are_imported_from_csv_with_the_skipped_rows_listed(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    program_id = await program(api, generator=None)
    await api.post(f"{P}/{program_id}/codes/import", content=b"code\nOLD-1\n")
    text = "promo_code;regdate;vip\nA-1;2019-01-02;TRUE\n;2019-02-12;FALSE\nA-2;x;y\nA-1;x;y\nOLD-1;x;y\n"
    response = await api.post(f"{P}/{program_id}/codes/import", params={"column": "promo_code"},
                              content=text.encode())  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == {
        "imported": 2,
        "skipped": [
            {"row": 3, "code": "", "reason": "the code's cell is empty"},
            {"row": 5, "code": "A-1", "reason": "the code is in the file twice"},
            {"row": 6, "code": "OLD-1", "reason": "the program has this code already"},
        ],
    }
    found = await codes(api, herald, program_id, sort="code")
    assert [(c["code"], c["source"]) for c in found] == [("A-1", "imported"), ("A-2", "imported"),
                                                          ("OLD-1", "imported")]  # fmt: skip


async def test_codes_are_imported_from_xlsx_by_column_number(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api, generator=None)
    content = _xlsx([["id", "code"], [1, "X-1"], [2, 12345], [3, None]])
    response = await api.post(f"{P}/{program_id}/codes/import", params={"column": "2"}, content=content)
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 2 and response.json()["skipped"][0]["row"] == 4
    assert {c["code"] for c in await codes(api, herald, program_id)} == {"X-1", "12345"}


async def test_a_bad_import_is_refused_at_its_path(api: httpx.AsyncClient) -> None:
    program_id = await program(api, generator=None)
    missing = await api.post(
        f"{P}/{program_id}/codes/import", params={"column": "promo"}, content=b"code\nA\n"
    )
    assert missing.status_code == 422 and error_of(missing)["path"] == "column"
    xls = await api.post(
        f"{P}/{program_id}/codes/import", content=bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 8
    )
    assert xls.status_code == 422 and error_of(xls)["path"] == "body"


async def test_export_joins_the_holders_profile_fields(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api, generator=None)
    await api.post(f"{P}/{program_id}/codes/import", content=b"code\nA-1\nA-2\n")
    ann = await create_profile(api, {"email": "ann@example.org", "_fname": "Ann"})
    herald.runtime.drain()
    await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    herald.runtime.drain()
    response = await api.get(f"{P}/{program_id}/codes/export", params={"profile_fields": "email,_fname"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["code"], r["profile_id"], r["email"], r["_fname"]) for r in rows] == [
        ("A-1", ann, "ann@example.org", "Ann"),
        ("A-2", "", "", ""),
    ]


# --- assignment, activation, deletion, expiry, report ------------------------------------------


async def test_assignment_is_one_code_per_profile_and_idempotent(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    program_id = await program(api)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 3})
    ann, bob = await profiles(api, herald, 2)
    first = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    again = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    other = await post(
        api, f"{P}/{program_id}/assignments", {"database_id": "1", "profile": {"email": "p1@example.org"}}
    )
    assert first["new"] is True and again == {**first, "new": False}
    assert other["profile_id"] == bob and other["code"] != first["code"]
    herald.runtime.drain()
    held = (await api.get(f"/api/v1/profiles/{ann}/promo-codes")).json()["promo_codes"]
    assert [(h["program_id"], h["code"], h["cause_kind"]) for h in held] == [
        (program_id, first["code"], "api")
    ]
    item = (await api.get(f"{P}/{program_id}/codes/item", params={"code": first["code"]})).json()
    assert item["holders"] == 1 and [h["profile_id"] for h in item["holdings"]] == [ann]


async def test_no_free_code_or_a_stopped_program_refuses_assignment(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    program_id = await program(api)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 1})
    ann, bob = await profiles(api, herald, 2)
    await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    dry = await api.post(f"{P}/{program_id}/assignments", json={"profile_id": bob})
    assert dry.status_code == 422 and "no free promo codes" in error_of(dry)["reason"]
    await post(api, f"{P}/{program_id}/stop")
    stopped = await api.post(f"{P}/{program_id}/assignments", json={"profile_id": bob})
    assert stopped.status_code == 422 and "stopped" in error_of(stopped)["reason"]
    kept = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    assert kept["new"] is False  # a code already given stays the profile's
    unknown = await api.post(f"{P}/{program_id}/assignments", json={"profile_id": "nobody"})
    assert unknown.status_code == 404 and error_of(unknown)["path"] == "profile_id"


async def test_a_universal_program_gives_everyone_its_first_active_code(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    program_id = await program(api, universal=True, generator=None)
    await api.post(f"{P}/{program_id}/codes/import", content=b"code\nALL-1\nALL-2\n")
    people = await profiles(api, herald, 3)
    given = [(await post(api, f"{P}/{program_id}/assignments", {"profile_id": p}))["code"] for p in people]
    assert given == ["ALL-1"] * 3
    herald.runtime.drain()
    item = (await api.get(f"{P}/{program_id}/codes/item", params={"code": "ALL-1"})).json()
    assert item["holders"] == 3
    activation = await api.post(f"{P}/{program_id}/activations", json={"code": "ALL-1"})
    assert activation.status_code == 422 and error_of(activation)["path"] == "profile_id"


async def test_activation_records_who_and_when_once(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    program_id = await program(api)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 2})
    ann, bob = await profiles(api, herald, 2)
    code = (await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann}))["code"]
    herald.runtime.drain()
    body = {"code": code, "at": "2026-03-02T08:30:00Z", "by": "shop 3"}
    await post(api, f"{P}/{program_id}/activations", body)
    twice = await api.post(f"{P}/{program_id}/activations", json=body)
    assert twice.status_code == 409 and "2026-03-02T08:30:00" in error_of(twice)["reason"]
    not_his = await api.post(f"{P}/{program_id}/activations", json={"code": code, "profile_id": bob})
    assert not_his.status_code == 422
    unknown = await api.post(f"{P}/{program_id}/activations", json={"code": "NOPE"})
    assert unknown.status_code == 404 and error_of(unknown)["path"] == "code"
    herald.runtime.drain()
    holding = (await api.get(f"/api/v1/profiles/{ann}/promo-codes")).json()["promo_codes"][0]
    assert holding["activated_by"] == "shop 3" and holding["activated_at"].startswith("2026-03-02T08:30:00")


async def test_an_expired_code_cannot_be_activated_and_is_replaced(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    program_id = await program(api, code_ttl_minutes=60)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 3})
    (ann,) = await profiles(api, herald, 1)
    first = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    herald.runtime.drain()
    clock.advance(timedelta(hours=2))
    expired = await api.post(f"{P}/{program_id}/activations", json={"code": first["code"]})
    herald.runtime.drain()
    assert expired.status_code == 422 and "expired" in error_of(expired)["reason"]
    dry = await api.post(f"{P}/{program_id}/assignments", json={"profile_id": ann})
    assert dry.status_code == 422  # every code of the batch has expired: none can be given
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 1})
    fresh = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    assert fresh["new"] is True and fresh["code"] != first["code"]


async def test_a_released_profile_gets_a_new_code_and_the_old_one_is_not_reused(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    program_id = await program(api)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 3})
    ann, bob = await profiles(api, herald, 2)
    first = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    await post(api, f"{P}/{program_id}/releases", {"profile_ids": [ann]})
    again = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    other = await post(api, f"{P}/{program_id}/assignments", {"profile_id": bob})
    assert len({first["code"], again["code"], other["code"]}) == 3
    herald.runtime.drain()
    report = (await api.get(f"{P}/report")).json()["programs"][0]
    assert (report["bound"], report["free"]) == (3, 0)


async def test_deleting_a_code_takes_it_from_its_holder(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 2})
    (ann,) = await profiles(api, herald, 1)
    code = (await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann}))["code"]
    herald.runtime.drain()
    deleted = await api.delete(f"{P}/{program_id}/codes", params={"code": code})
    assert deleted.status_code == 200, deleted.text
    herald.runtime.drain()
    assert code not in {c["code"] for c in await codes(api, herald, program_id)}
    assert (await api.get(f"/api/v1/profiles/{ann}/promo-codes")).json()["promo_codes"] == []
    assert (await api.delete(f"{P}/{program_id}/codes", params={"code": code})).status_code == 404
    again = await post(api, f"{P}/{program_id}/assignments", {"profile_id": ann})
    assert again["code"] != code


async def test_the_report_counts_codes_by_state(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    short = await program(api, code_ttl_minutes=60)
    await post(api, f"{P}/{short}/codes/generate", {"count": 5})
    ann, bob = await profiles(api, herald, 2)
    code = (await post(api, f"{P}/{short}/assignments", {"profile_id": ann}))["code"]
    await post(api, f"{P}/{short}/assignments", {"profile_id": bob})
    herald.runtime.drain()
    await post(api, f"{P}/{short}/activations", {"code": code})
    herald.runtime.drain()
    report = (await api.get(f"{P}/report")).json()
    assert report_of(report, short) == {"program_id": short, "name": "Spring", "issued": 5, "bound": 2,
                                        "activated": 1, "expired": 0, "free": 3}  # fmt: skip
    clock.advance(timedelta(hours=2))
    later = report_of((await api.get(f"{P}/report")).json(), short)
    assert (later["expired"], later["free"]) == (5, 0)


async def test_running_low_is_an_event_and_shows_on_the_card(api: httpx.AsyncClient, herald: Herald) -> None:
    program_id = await program(api, low_stock_threshold=2)
    await post(api, f"{P}/{program_id}/codes/generate", {"count": 3})
    people = await profiles(api, herald, 2)
    for person in people:
        await post(api, f"{P}/{program_id}/assignments", {"profile_id": person})
    herald.runtime.drain()
    low = [e for e in herald.store.read_stream(f"promopool-{program_id}") if e.type == "PromoCodesRunningLow"]
    assert [(e.data["free"], e.data["threshold"]) for e in low] == [(1, 2)]
    assert (await api.get(f"{P}/{program_id}")).json()["low_stock"]["free"] == 1
