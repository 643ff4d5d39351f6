"""Segments through HTTP: save and validate with rule paths, count and preview, static lists, membership."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from herald.infra.clock import ManualClock
from tests.builders import DB, create_profile, customers, error_of, log_size

SEG = "/api/v1/segments"
R = "query.sources.0.rules.0"


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)


def query(*rules: dict[str, Any], **source: Any) -> dict[str, Any]:
    return {"sources": [{"database_id": DB, "rules": list(rules), **source}]}


def age(operator: str, value: Any) -> dict[str, Any]:
    return {"kind": "field", "field": "age", "operator": operator, "value": value}


def in_segment(segment_id: str) -> dict[str, Any]:
    return {"kind": "segment", "segment_id": segment_id}


async def create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post(SEG, json={"name": "Adults", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def people(api: httpx.AsyncClient, *ages: int) -> list[str]:
    return [
        await create_profile(api, {"email": f"p{i}-{a}@example.org", "age": a}) for i, a in enumerate(ages)
    ]


async def members(api: httpx.AsyncClient, herald: Herald, segment_id: str, **params: Any) -> list[str]:
    herald.runtime.drain()
    response = await api.get(f"{SEG}/{segment_id}/members", params=params)
    assert response.status_code == 200, response.text
    return [m["profile_id"] for m in response.json()["members"]]


async def edit(api: httpx.AsyncClient, target: str, remove: bool = False, **body: Any) -> httpx.Response:
    return await api.post(f"{SEG}/{target}/members" + ("/remove" if remove else ""), json=body)


# --- dynamic segments --------------------------------------------------------------------------


async def test_a_dynamic_segment_is_saved_checked_read_counted_and_previewed(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    young, old, older = await people(api, 20, 35, 50)
    created = await create(api, query=query(age("gte", "30")))  # the value is coerced to the field's type
    assert created["segment_id"] == "1"
    got = (await api.get(f"{SEG}/1")).json()
    assert (got["kind"], got["name"], got["size"], got["timezone"]) == ("dynamic", "Adults", None, "UTC")
    rule = got["query"]["sources"][0]["rules"][0]
    assert (rule["value"], rule["type"]) == (30, "int")
    herald.runtime.drain()
    assert (await api.get(f"{SEG}/1/count")).json()["count"] == 2
    preview = (await api.get(f"{SEG}/1/preview", params={"limit": 1})).json()["profiles"]
    assert [p["profile_id"] for p in preview] == sorted([old, older])[:1] and preview[0]["fields"][
        "age"
    ] >= 30
    listed = (await api.get(SEG)).json()["segments"]
    assert [(s["segment_id"], s["kind"], s["name"]) for s in listed] == [("1", "dynamic", "Adults")]
    assert young not in [p["profile_id"] for p in preview]

    put = await api.put(f"{SEG}/1", json={"name": "Seniors", "query": query(age("gte", 45))})
    assert put.status_code == 200, put.text
    herald.runtime.drain()
    assert (await api.get(f"{SEG}/1/count")).json()["count"] == 1
    assert (await api.put(f"{SEG}/1", json={"name": "x", "kind": "static"})).status_code == 422


async def test_a_new_dynamic_segment_says_it_is_counting_until_its_membership_is_counted(
    api: httpx.AsyncClient, herald: Herald, monkeypatch: pytest.MonkeyPatch
) -> None:
    await people(api, 20, 35, 50, 61, 72)
    herald.runtime.drain()
    monkeypatch.setattr(herald.projections.membership, "_population_chunk", 2)  # five profiles: 3 steps
    created = await create(api, query=query(age("gte", 30)))
    counting = {"status": "counting", "evaluated": 0, "candidates": None}  # not picked up yet
    assert (created["size"], created["membership"]) == (None, counting)
    assert "entered" not in created  # a static segment's answer, meaningless here
    herald.runtime.drain(until=herald.store.head_position())  # the save and its first step only
    got = (await api.get(f"{SEG}/1")).json()
    assert (got["size"], got["membership"]) == (None, {"status": "counting", "evaluated": 2, "candidates": 5})
    herald.runtime.drain()
    got = (await api.get(f"{SEG}/1")).json()
    assert (got["size"], got["membership"]) == (4, {"status": "ready", "size": 4})

    put = await api.put(f"{SEG}/1", json={"name": "Seniors", "query": query(age("gte", 60))})
    assert (put.json()["size"], put.json()["membership"]["status"]) == (None, "counting")
    herald.runtime.drain()
    assert (await api.get(f"{SEG}/1")).json()["membership"] == {"status": "ready", "size": 2}
    crm = {"kind": "post_url", "url": "https://crm.example/ids", "path": "ids"}
    fetched = query({"kind": "external", "field": "email", "source": crm})
    later = await create(api, name="From the CRM", query=fetched)
    herald.runtime.drain()
    assert (await api.get(f"{SEG}/{later['segment_id']}")).json()["membership"] == {"status": "at_use"}


@pytest.mark.parametrize(
    ("rule", "status", "path", "words"),
    [
        pytest.param(age("about", 3), 422, f"{R}.operator", "unknown operator", id="unknown operator"),
        pytest.param(age("gte", "old"), 422, f"{R}.value", "", id="wrong value type"),
        pytest.param(age("gte", [1, 2]), 422, f"{R}.value", "not a list", id="a list for one value"),
        pytest.param(
            age("contains", "3"), 422, f"{R}.operator", "does not apply", id="operator of another type"
        ),
        pytest.param({**age("gte", 3), "colour": 1}, 422, f"{R}.colour", "not a known key", id="unknown key"),
        pytest.param(
            {"kind": "field", "field": "shoe", "operator": "exists"},
            422,
            f"{R}.field",
            "no field",
            id="unknown field",
        ),
        pytest.param(in_segment("9"), 404, f"{R}.segment_id", "no segment", id="unknown segment"),
    ],
)
async def test_bad_queries_are_refused_naming_the_rule_path_and_nothing_is_written(
    api: httpx.AsyncClient, herald: Herald, rule: dict[str, Any], status: int, path: str, words: str
) -> None:
    before = log_size(herald)
    for response in (
        await api.post(SEG, json={"name": "Bad", "query": query(rule)}),
        await api.post(f"{SEG}/validate", json={"query": query(rule)}),
    ):
        assert response.status_code == status, response.text
        assert error_of(response)["path"] == path
        assert words in error_of(response)["reason"]
    assert log_size(herald) == before


async def test_validate_answers_the_stored_form_and_refuses_nesting_cycles_and_unknown_databases(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    ok = await api.post(f"{SEG}/validate", json={"query": query(age("in", ["3", 3, 4]))})
    assert ok.status_code == 200, ok.text
    assert ok.json()["query"]["sources"][0]["rules"][0]["value"] == [3, 4]
    deep = {"sources": [{"database_id": DB, "groups": [{"rules": [{"rules": [age("gt", 1)]}]}]}]}
    nested = await api.post(f"{SEG}/validate", json={"query": deep})
    assert nested.status_code == 422 and error_of(nested)["path"].startswith(
        "query.sources.0.groups.0.rules.0"
    )
    unknown_db = await api.post(f"{SEG}/validate", json={"query": {"sources": [{"database_id": "77"}]}})
    assert unknown_db.status_code == 404 and error_of(unknown_db)["path"] == "query.sources.0.database_id"

    await create(api, query=query(age("gt", 1)))  # 1
    await create(api, name="Uses 1", query=query(in_segment("1")))  # 2
    herald.runtime.drain()
    itself = await api.post(f"{SEG}/validate", json={"query": query(in_segment("1")), "segment_id": "1"})
    assert itself.status_code == 422 and "cycle" in error_of(itself)["reason"]
    assert error_of(itself)["path"] == f"{R}.segment_id"
    back = await api.put(f"{SEG}/1", json={"name": "Back", "query": query(in_segment("2"))})
    assert back.status_code == 422 and error_of(back)["path"] == f"{R}.segment_id"
    deeper = await api.post(SEG, json={"name": "Deeper", "query": query(in_segment("2"))})
    assert deeper.status_code == 422 and "one level" in error_of(deeper)["reason"]
    used = await api.delete(f"{SEG}/1")
    assert used.status_code == 422 and "2" in error_of(used)["reason"]
    empty = await api.post(SEG, json={"name": "No query", "kind": "dynamic"})
    assert empty.status_code == 422 and error_of(empty)["path"] == "query.sources"


# --- static segments ---------------------------------------------------------------------------


async def test_a_static_segment_is_built_on_creation_and_recalculated_on_demand(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    young, old = await people(api, 20, 40)
    herald.runtime.drain()  # evaluation reads the profiles' read model
    created = await create(api, kind="static", query=query(age("gte", 30)))
    assert (created["entered"], created["left"], created["size"]) == (1, 0, 1)
    assert await members(api, herald, "1") == [old]
    newcomer = await create_profile(api, {"email": "new@example.org", "age": 31})
    assert await members(api, herald, "1") == [old]  # a static list does not follow the data by itself
    assert (await api.get(f"{SEG}/1/count")).json()["count"] == 1

    response = await api.post(f"{SEG}/1/recalculate", headers={"Idempotency-Key": "k1"})
    assert response.status_code == 200, response.text
    assert (response.json()["entered"], response.json()["size"]) == (1, 2)
    again = await api.post(f"{SEG}/1/recalculate", headers={"Idempotency-Key": "k1"})
    assert again.json() == response.json()
    assert await members(api, herald, "1") == sorted([old, newcomer])
    history = (await api.get(f"{SEG}/1/history")).json()["history"]
    assert [(h["kind"], h["reason"], h["entered"], h["left"], h["size"]) for h in history] == [
        ("recalculation", "created", 1, 0, 1),
        ("recalculation", "manual", 1, 0, 2),
    ]
    assert young not in await members(api, herald, "1")
    card = next(s for s in (await api.get(SEG)).json()["segments"] if s["segment_id"] == "1")
    assert (card["kind"], card["size"], card["recalculations"]) == ("static", 2, 2)


async def test_a_scheduled_recalculation_runs_when_the_fake_clock_reaches_it(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    schedule = {"kind": "daily", "time": "06:00:00"}
    await create(api, kind="static", query=query(age("gte", 30)), recalculation=schedule)
    got = (await api.get(f"{SEG}/1")).json()
    assert got["next_recalculation_at"] == "2026-03-03T06:00:00+00:00"
    adult = (await people(api, 44))[0]
    herald.runtime.drain()
    clock.advance(timedelta(hours=20, minutes=59))  # 05:59 the next day
    herald.tick()
    assert await members(api, herald, "1") == []
    clock.advance(timedelta(minutes=1))
    herald.tick()
    herald.runtime.drain()
    herald.tick()  # the read model caught up; the segment's stream says it is not due again
    assert await members(api, herald, "1") == [adult]
    history = (await api.get(f"{SEG}/1/history")).json()["history"]
    assert [h["reason"] for h in history] == ["created", "schedule"]
    assert (await api.get(f"{SEG}/1")).json()["next_recalculation_at"] == "2026-03-04T06:00:00+00:00"


async def test_profiles_are_added_and_removed_by_hand_and_a_retry_adds_nothing(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    a, b, c = await people(api, 20, 30, 40)
    await create(api, name="By hand", kind="static")
    added = await edit(api, "1", profile_ids=[a, b, a], request_id="r1")
    assert added.status_code == 200, added.text
    assert (added.json()["added"], added.json()["size"]) == (2, 2)
    before = log_size(herald)
    retried = await edit(api, "1", profile_ids=[a, b, c], request_id="r1")
    assert retried.json() == added.json() and log_size(herald) == before
    assert await members(api, herald, "1") == sorted([a, b])

    unknown = await edit(api, "1", profile_ids=[c, "nobody", "ghost"])
    assert unknown.status_code == 422 and error_of(unknown)["path"] == "profile_ids.1"
    assert "'nobody'" in error_of(unknown)["reason"] and "'ghost'" in error_of(unknown)["reason"]
    assert log_size(herald) == before  # nothing half-applied
    both = await edit(api, "1", profile_ids=[a], segment_id="1")
    assert both.status_code == 422 and error_of(both)["path"] == "profile_ids"

    removed = await edit(api, "1", remove=True, profile_ids=[a, c])
    assert (removed.json()["removed"], removed.json()["size"]) == (1, 1)
    assert await members(api, herald, "1") == [b]
    history = (await api.get(f"{SEG}/1/history")).json()["history"]
    assert [(h["how"], h["added"], h["removed"], h["size"]) for h in history] == [
        ("hand", 2, 0, 2),
        ("hand", 0, 1, 1),
    ]
    assert (await api.post(f"{SEG}/1/recalculate")).status_code == 422  # a hand-built list has no query


async def test_profiles_are_added_and_removed_by_another_segments_conditions(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    young, mid, old = await people(api, 20, 35, 60)
    await create(api, name="List", kind="static")
    await create(api, name="Over 30", query=query(age("gt", 30)))
    await create(api, name="Over 50", query=query(age("gt", 50)))
    herald.runtime.drain()
    added = await edit(api, "1", segment_id="2")
    assert added.status_code == 200, added.text
    assert await members(api, herald, "1") == sorted([mid, old])
    removed = await edit(api, "1", remove=True, segment_id="3")
    assert removed.json()["removed"] == 1
    assert await members(api, herald, "1") == [mid]
    history = (await api.get(f"{SEG}/1/history")).json()["history"]
    assert [(h["how"], h["source_segment_id"]) for h in history] == [("segment", "2"), ("segment", "3")]
    assert (await edit(api, "2", profile_ids=[young])).status_code == 422  # a dynamic segment is not edited
    assert (await edit(api, "1", segment_id="99")).status_code == 404


async def test_a_profiles_segments_now_and_as_of_an_instant(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    (ann,) = await people(api, 33)
    await create(api, name="One", kind="static")
    await create(api, name="Two", kind="static")
    start = clock.now()
    await edit(api, "1", profile_ids=[ann])
    clock.advance(timedelta(hours=1))
    await edit(api, "2", profile_ids=[ann])
    clock.advance(timedelta(hours=1))
    await edit(api, "1", remove=True, profile_ids=[ann])
    herald.runtime.drain()

    async def segments_of(as_of: str | None = None) -> list[str]:
        params = {"as_of": as_of} if as_of else {}
        response = await api.get(f"/api/v1/profiles/{ann}/segments", params=params)
        assert response.status_code == 200, response.text
        return [s["segment_id"] for s in response.json()["segments"]]

    assert await segments_of() == ["2"]
    assert await segments_of((start - timedelta(seconds=1)).isoformat()) == []
    assert await segments_of((start + timedelta(minutes=30)).isoformat()) == ["1"]
    assert await segments_of((start + timedelta(minutes=90)).isoformat()) == ["1", "2"]
    as_of = (start + timedelta(minutes=30)).isoformat()
    assert await members(api, herald, "1", as_of=as_of) == [ann]
    assert await members(api, herald, "1") == []
    naive = await api.get(f"/api/v1/profiles/{ann}/segments", params={"as_of": "2026-03-02T09:00:00"})
    assert naive.status_code == 422 and error_of(naive)["path"] == "as_of"


async def test_deleting_a_static_segment_makes_its_members_leave(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    (ann,) = await people(api, 33)
    herald.runtime.drain()
    await create(api, kind="static", query=query(age("gt", 30)))
    herald.runtime.drain()
    version = (await api.get(f"{SEG}/1")).json()["version"]
    assert (await api.delete(f"{SEG}/1", params={"expected_version": version - 1})).status_code == 409
    clock.advance(timedelta(minutes=5))
    deleted = await api.delete(f"{SEG}/1")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["left"] == 1
    herald.runtime.drain()
    assert (await api.get(f"{SEG}/1")).status_code == 404
    assert (await api.get(SEG)).json()["segments"] == []
    assert herald.projections.segments.segments_of(ann) == []
    assert herald.projections.segments.intervals("1", ann)[0]["left_at"] is not None


async def test_an_uploaded_csv_column_feeds_an_external_rule(api: httpx.AsyncClient, herald: Herald) -> None:
    await people(api, 20, 30, 40)
    emails = ["p0-20@example.org", "p2-40@example.org", "nobody@example.org"]
    body = "name;email\n" + "".join(f"x;{e}\n" for e in emails)
    uploaded = await api.post("/api/v1/segment-files", content=body.encode())
    assert uploaded.status_code == 201, uploaded.text
    source = {"kind": "csv", "file_id": uploaded.json()["file_id"], "column": 2}
    rule = {"kind": "external", "field": "email", "operator": "in", "source": source}
    segment = await create(api, query=query(rule))
    herald.runtime.drain()
    assert (await api.get(f"{SEG}/{segment['segment_id']}/count")).json()["count"] == 2
    empty = await api.post("/api/v1/segment-files", content=b"")
    assert empty.status_code == 422 and error_of(empty)["path"] == "body"
    unknown = {**rule, "source": {**source, "file_id": "0" * 64}}
    gone = await create(api, query=query(unknown))
    refused = await api.get(f"{SEG}/{gone['segment_id']}/count")
    assert refused.status_code == 404 and error_of(refused)["path"].endswith("rules.0.source.file_id")
