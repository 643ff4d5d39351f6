"""Promo codes in campaigns: `{loyalty.<name>.promocode}` gives each recipient a code of their own with the
chunk that queues the message, sends that same code, and fails a message that cannot have one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald, build
from herald.domain import messages as ms
from herald.infra.event_store import NewEvent, StreamAppend, WrongExpectedVersion
from herald.messages.rendering import RenderedEmail
from herald.processors.runtime import Emission
from tests.code_service import CodeService, serving
from tests.integration.test_campaigns import (
    CS,
    EMAILS,
    audience,
    campaign,
    decisions,
    post,
    template,
    wiring_reactors,
)

__all__ = ["audience"]  # the fixture, used by name

P = "/api/v1/loyalty-programs"
HTML = "<p>Your code: <b>{loyalty.spring.promocode}</b></p>"


async def program(api: httpx.AsyncClient, herald: Herald, codes: int = 20, **settings: Any) -> str:
    body = {"name": "Spring", "shortcode": "spring", "generator": {"kind": "pattern", "pattern": "{L4}{D6}"}}
    response = await api.post(P, json={**body, **settings})
    assert response.status_code == 201, response.text
    program_id = str(response.json()["program_id"])
    if codes:
        generated = await api.post(f"{P}/{program_id}/codes/generate", json={"count": codes})
        assert generated.status_code == 200, generated.text
    herald.runtime.drain()
    return program_id


def queued(herald: Herald, cid: str) -> dict[str, ms.MessageQueued]:
    """The campaign's queued messages by profile."""
    found: dict[str, ms.MessageQueued] = {}
    for made in decisions(herald, cid):
        if made["outcome"] != "queued":
            continue
        message_id = ms.message_id(cid, made["run_id"], made["profile_id"])
        [event] = herald.store.read_stream(ms.message_stream(message_id))
        decoded = herald.aggregates.decode(event)
        assert isinstance(decoded, ms.MessageQueued)
        found[made["profile_id"]] = decoded
    return found


def html_of(herald: Herald, message: ms.MessageQueued) -> str:
    body = herald.queued.render_queued(message).body
    assert isinstance(body, RenderedEmail)
    return body.html


async def test_each_recipient_gets_a_code_of_their_own_and_keeps_it(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    program_id = await program(api, herald)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    messages = queued(herald, cid)
    codes = {p: m.promo_codes["spring"] for p, m in messages.items() if m.promo_codes}
    assert len(codes) == 8 == len(set(codes.values()))  # the 2 suppressed got none
    for profile_id, message in messages.items():
        assert f"<b>{codes[profile_id]}</b>" in html_of(herald, message)  # sent as queued
    held = herald.projections.loyalty
    assert all(held.holding(program_id, p)["code"] == c for p, c in codes.items())  # type: ignore[index]
    bound = [e for e in herald.store.read_stream(f"promopool-{program_id}") if e.type == "PromoCodesBound"]
    assert len(bound) == 1 and len(bound[0].data["seqs"]) == 8  # one event for the chunk
    assert set(bound[0].data["message_ids"]) == {m.message_id for m in messages.values()}

    again = await campaign(api, [tpl], name="Again")
    await post(api, herald, f"{CS}/{again}/launch")
    herald.runtime.drain()
    later = {p: m.promo_codes for p, m in queued(herald, again).items()}
    assert later == {p: {"spring": c} for p, c in codes.items()}  # one code per profile and program
    pool = [e for e in herald.store.read_stream(f"promopool-{program_id}") if e.type == "PromoCodesBound"]
    assert len(pool) == 1
    report = (await api.get(f"{P}/report")).json()["programs"][0]
    assert (report["bound"], report["free"]) == (8, 12)


async def test_a_message_without_a_code_to_give_fails_with_the_reason(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    await program(api, herald, codes=5)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    made = decisions(herald, cid)
    failed = [d for d in made if d["outcome"] == "errors"]
    assert len(queued(herald, cid)) == 5 and len(failed) == 3
    assert all("no free promo codes" in d["reason"] for d in failed)


async def test_a_campaign_may_create_codes_when_short(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    program_id = await program(api, herald, codes=3, campaign_may_create=True)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    codes = [m.promo_codes for m in queued(herald, cid).values()]
    assert len(codes) == 8 and len({c["spring"] for c in codes if c}) == 8
    rows = (await api.get(f"{P}/{program_id}/codes", params={"limit": 1000})).json()["codes"]
    assert {r["source"] for r in rows} == {"generated", "campaign"}


@pytest.fixture
def service(herald: Herald) -> Iterator[CodeService]:
    """A local code service the programs may call."""
    with serving(herald) as running:
        yield running


async def test_codes_made_for_a_campaign_name_it_to_the_external_service(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str], service: CodeService
) -> None:
    generator = {"kind": "external", "url": service.url(), "max_batch": 50}
    await program(api, herald, codes=0, generator=generator, campaign_may_create=True)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    assert sorted(m.promo_codes["spring"] for m in queued(herald, cid).values() if m.promo_codes) == sorted(
        f"EXT-{i}" for i in range(1, 9)
    )
    [request] = service.bodies()  # one request of at most max_batch
    assert (request["campaign_id"], request["campaign_name"], request["count"]) == (cid, "Spring", 50)


async def test_a_failing_service_fails_the_messages_not_the_run(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str], service: CodeService
) -> None:
    generator = {"kind": "external", "url": service.url("/garbage")}
    await program(api, herald, codes=0, generator=generator, campaign_may_create=True)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    failed = [d for d in decisions(herald, cid) if d["outcome"] == "errors"]
    assert len(failed) == 8 and all("not JSON" in d["reason"] for d in failed)
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "completed"


async def test_a_stopped_program_sends_no_code_even_one_held(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    program_id = await program(api, herald)
    ann = audience[EMAILS[0]]
    assert (await api.post(f"{P}/{program_id}/assignments", json={"profile_id": ann})).status_code == 200
    await post(api, herald, f"{P}/{program_id}/stop")
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    made = {d["profile_id"]: d for d in decisions(herald, cid)}
    assert made[ann]["outcome"] == "errors" and "stopped" in made[ann]["reason"]


async def test_a_trigger_gives_the_code_at_once_and_a_retry_gives_the_same(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    program_id = await program(api, herald)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl], audience=None, type="trigger", database_id="1", trigger={})
    await post(api, herald, f"{CS}/{cid}/activate")
    fire = {"profiles": [{"email": EMAILS[0]}], "request_id": "order-1"}
    first = await post(api, herald, f"{CS}/{cid}/fire", **fire)
    again = await post(api, herald, f"{CS}/{cid}/fire", **fire)
    [repeated] = again["messages"]
    assert repeated["status"] == "duplicate" and repeated["first"] == first["messages"][0]
    [event] = herald.store.read_stream(ms.message_stream(first["messages"][0]["message_id"]))
    code = event.data["promo_codes"]["spring"]
    holding = herald.projections.loyalty.holding(program_id, audience[EMAILS[0]])
    assert holding is not None and holding["code"] == code


async def test_a_test_send_and_a_preview_show_codes_without_giving_any(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    program_id = await program(api, herald)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    ann = audience[EMAILS[0]]
    sent = await post(api, herald, f"{CS}/{cid}/test", profile_ids=[ann])
    [event] = herald.store.read_stream(ms.message_stream(sent["messages"][0]["message_id"]))
    assert len(event.data["promo_codes"]["spring"]) == 10
    preview = await api.post(
        f"/api/v1/templates/{tpl}/preview", json={"channel": "email", "profile_id": ann, "resource_id": "7"}
    )
    assert preview.status_code == 200, preview.text
    herald.runtime.drain()
    assert herald.projections.loyalty.holding(program_id, ann) is None
    assert (await api.get(f"{P}/report")).json()["programs"][0]["bound"] == 0
    given = (await api.post(f"{P}/{program_id}/assignments", json={"profile_id": ann})).json()["code"]
    shown = await api.post(
        f"/api/v1/templates/{tpl}/preview", json={"channel": "email", "profile_id": ann, "resource_id": "7"}
    )
    assert given in shown.text  # the profile's own code once it holds one


async def test_a_chunk_whose_codes_were_taken_meanwhile_is_decided_again(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str], tmp_path: Any
) -> None:
    """Another process gives codes of the pool out between a chunk's decisions and its append: the
    append is refused whole, and the chunk decided again gives out other codes."""
    program_id = await program(api, herald)
    tpl = await template(api, email={"subject": "Hi", "html": HTML})
    cid = await campaign(api, [tpl])
    runner = next(r for r in wiring_reactors(herald) if r.name == "campaign-runs")
    response = await api.post(f"{CS}/{cid}/launch")
    assert response.status_code == 200
    start = herald.store.read_stream(f"campaign-{cid}")[-1]
    decided = [r for r in runner.handle(start) if isinstance(r, Emission)]
    assert any(r.type == "PromoCodesBound" for r in decided)

    other = build(herald.settings, clock=herald.clock)  # a second server over the same files
    try:
        taken = other.promo_codes.assign(program_id, audience[EMAILS[0]], "elsewhere")
    finally:
        other.close()
    with pytest.raises(WrongExpectedVersion):  # the chunk's append, as the runtime would make it
        herald.store.append_many([_append(e) for e in decided])
    herald.runtime.drain()  # the runtime decides the chunk on the pool as it is now
    codes = [m.promo_codes["spring"] for m in queued(herald, cid).values() if m.promo_codes]
    assert len(codes) == 8 == len(set(codes))
    mine = queued(herald, cid)[audience[EMAILS[0]]].promo_codes
    assert mine == {"spring": taken.code}  # the profile the other server served keeps that code


def _append(emission: Emission) -> StreamAppend:
    new = NewEvent(emission.event_id or uuid.uuid4(), emission.type, emission.data, emission.occurred_at)
    return StreamAppend(emission.stream, [new], emission.expected_version)
