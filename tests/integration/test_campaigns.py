"""Campaigns end to end through the API: timers, chunked runs, the send gate, triggers, split tests, tests.

The clock is a ManualClock; timers fire when the test moves it and calls
`tick()`; processors run when the test drains them.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald, build
from herald.api.wiring import reactors as wiring_reactors_of
from herald.domain import messages as ms
from herald.domain.deliveries import MessageOpened
from herald.infra.clock import ManualClock
from herald.infra.event_store import NewEvent
from tests.builders import RESOURCE, create_resource, customers, email_subscription, import_rows

CS = "/api/v1/campaigns"
EMAILS = [f"p{i}@example.org" for i in range(10)]
_MESSAGE_FIELDS = (
    "message_id", "campaign_id", "template_id", "template_version", "profile_id", "database_id",
    "resource_id", "channel", "contact",
)  # fmt: skip


@pytest.fixture
async def audience(api: httpx.AsyncClient, herald: Herald) -> dict[str, str]:
    """Ten subscribed profiles; p8 unsubscribed, p9's address on the account stop list."""
    customers(herald)
    create_resource(herald)
    rows = [
        {"email": e, "_fname": f"P{i}", "subscriptions": [email_subscription(e)]}
        for i, e in enumerate(EMAILS)
    ]
    result = await import_rows(api, rows)
    ids = {e: r["profile_id"] for e, r in zip(EMAILS, result["results"], strict=True)}
    status = {"resource_id": RESOURCE, "channel": "email", "contact": EMAILS[8], "status": "unsubscribed"}
    assert (
        await api.post(f"/api/v1/profiles/{ids[EMAILS[8]]}/subscriptions/status", json=status)
    ).status_code == 200
    assert (
        await api.post("/api/v1/stop-lists/global/entries", json={"items": [EMAILS[9]]})
    ).status_code == 200
    herald.runtime.drain()
    return ids


async def template(api: httpx.AsyncClient, name: str = "Hello", **content: Any) -> str:
    body = {
        "name": name,
        "content": content or {"email": {"subject": "Hi {lead._fname}", "html": "<p>Hi</p>"}},
    }
    response = await api.post("/api/v1/templates", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["template_id"])


async def campaign(api: httpx.AsyncClient, templates: list[str], **settings: Any) -> str:
    body = {
        "name": "Spring",
        "type": "broadcast",
        "channel": "email",
        "resource_id": RESOURCE,
        "template_ids": templates,
        "audience": {"kind": "database", "id": "1"},
        **settings,
    }
    response = await api.post(CS, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["campaign_id"])


async def post(api: httpx.AsyncClient, herald: Herald, path: str, **body: Any) -> dict[str, Any]:
    """POST, then let the processors catch up (as the server's runtime would in a moment)."""
    response = await api.post(path, json=body or None)
    assert response.status_code == 200, response.text
    herald.runtime.drain()
    result: dict[str, Any] = response.json()
    return result


def wiring_reactors(herald: Herald) -> list[Any]:
    """Fresh reactor objects over the server's services (as a restarted server would build them)."""
    return wiring_reactors_of(
        herald.campaigns, herald.run_audiences, herald.jobs, herald.promo_codes, herald.store, herald.scoring
    )


def decisions(herald: Herald, campaign_id: str) -> list[dict[str, Any]]:
    rows = herald.projections.campaigns.conn.execute(
        "SELECT profile_id, run_id, outcome, reason, template_id FROM campaign_recipients "
        "WHERE campaign_id = ?",
        (campaign_id,),
    )
    return [
        dict(zip(("profile_id", "run_id", "outcome", "reason", "template_id"), r, strict=True)) for r in rows
    ]


async def test_a_portioned_broadcast_reaches_everyone_once_then_completes(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    schedule = {"kind": "daily", "time": "10:00:00", "timezone": "UTC"}
    cid = await campaign(
        api, [tpl], schedule=schedule, limit={"per_run": 4, "increase": 50, "increase_percent": True}
    )
    await post(api, herald, f"{CS}/{cid}/activate")
    got = (await api.get(f"{CS}/{cid}")).json()
    assert got["status"] == "active_waiting" and got["next_run_at"] == "2026-03-02T10:00:00+00:00"

    assert herald.campaigns.tick() == 0  # 09:00: not due yet
    runs = []
    for _ in range(4):
        clock.advance(timedelta(days=1) if runs else timedelta(hours=1))
        herald.campaigns.tick()
        herald.runtime.drain()
        runs.append((await api.get(f"{CS}/{cid}")).json())
    assert [r["status"] for r in runs] == ["active_waiting", "active_waiting", "completed", "completed"]
    assert [r["current_limit"] for r in runs[:2]] == [6, 9]  # grows 50 % after each full portion
    # three runs started; the third found nobody left and completed the broadcast
    started = [(r["run_id"], r["phase"]) for r in runs[-1]["runs"]]
    assert started == [(f"{cid}-{n}", "run") for n in (1, 2, 3)]

    made = decisions(herald, cid)
    assert Counter(d["run_id"] for d in made) == {f"{cid}-1": 4, f"{cid}-2": 6}
    assert len({d["profile_id"] for d in made}) == 10  # nobody twice
    outcomes = {d["profile_id"]: (d["outcome"], d["reason"]) for d in made}
    assert outcomes[audience[EMAILS[8]]] == ("suppressed", "subscription_status")
    assert outcomes[audience[EMAILS[9]]] == ("suppressed", "stop_list")
    assert sum(o == ("queued", "") for o in outcomes.values()) == 8
    progress = (await api.get(f"{CS}/{cid}/progress")).json()["campaign"]
    assert progress == {
        "queued": 8,
        "suppressed": 2,
        "suppressed.subscription_status": 1,
        "suppressed.stop_list": 1,
    }
    why = (await api.get(f"{CS}/{cid}/recipients/{audience[EMAILS[9]]}")).json()["decisions"]
    assert [(w["outcome"], w["reason"]) for w in why] == [("suppressed", "stop_list")]

    queued = herald.store.read_stream(
        ms.message_stream(ms.message_id(cid, f"{cid}-1", made[0]["profile_id"]))
    )
    assert [e.type for e in queued] in (["MessageQueued"], ["MessageSuppressed"])


async def test_a_rerun_chunk_writes_nothing_twice(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    cid = await campaign(api, [tpl])
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    head = herald.store.head_position()
    runner = next(r for r in herald.runtime.consumers() if r.name == "campaign-runs")
    for event in herald.store.read_all(1):
        runner.apply(event)  # every event redelivered: the same ids, nothing new stored
    assert herald.store.head_position() == head
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "completed"


async def test_pause_stops_between_chunks_and_resume_goes_on(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    cid = await campaign(api, [tpl])
    assert (await api.post(f"{CS}/{cid}/launch")).status_code == 200
    await post(api, herald, f"{CS}/{cid}/pause")
    assert decisions(herald, cid) == []
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "paused"
    await post(api, herald, f"{CS}/{cid}/resume")
    herald.runtime.drain()
    assert len(decisions(herald, cid)) == 10
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "completed"


async def test_a_regular_campaign_wraps_and_never_completes(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    schedule = {"kind": "daily", "time": "09:30:00"}
    cid = await campaign(api, [tpl], type="regular", schedule=schedule, limit={"per_run": 6})
    await post(api, herald, f"{CS}/{cid}/activate")
    for _ in range(3):
        clock.advance(timedelta(days=1) if decisions(herald, cid) else timedelta(minutes=30))
        herald.campaigns.tick()
        herald.runtime.drain()
    made = decisions(herald, cid)
    per_run = Counter(d["run_id"] for d in made)
    assert list(per_run.values()) == [6, 6, 6]
    seen = Counter(d["profile_id"] for d in made)
    assert sorted(seen.values()) == [1, 1] + [2] * 8  # 18 messages over 10 profiles, wrapping
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "active_waiting"


async def test_a_late_run_is_dropped_and_the_next_one_scheduled(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    schedule = {"kind": "daily", "time": "10:00:00"}
    cid = await campaign(api, [tpl], type="regular", schedule=schedule, run_deadline_minutes=15)
    await post(api, herald, f"{CS}/{cid}/activate")
    clock.advance(timedelta(hours=1, minutes=20))  # 10:20, 20 minutes late
    herald.campaigns.tick()
    herald.runtime.drain()
    got = (await api.get(f"{CS}/{cid}")).json()
    assert decisions(herald, cid) == []
    assert got["next_run_at"] == "2026-03-03T10:00:00+00:00"
    dropped = [e for e in herald.store.read_stream(f"campaign-{cid}") if e.type == "CampaignRunDropped"]
    assert dropped[0].data["reason"] == "started 20 min late; the deadline is 15 min"


async def test_a_sending_policy_blocks_a_second_message_the_same_day(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    policy = {"name": "Once a day", "policy": {"per_profile": {"max_messages": 1, "period_days": 1}}}
    response = await api.post("/api/v1/sending-policies", json=policy)
    assert response.status_code == 201, response.text
    chosen = await api.put("/api/v1/account/sending-policy", json={"policy_id": response.json()["policy_id"]})
    assert chosen.status_code == 200, chosen.text
    tpl = await template(api)
    first, second = await campaign(api, [tpl]), await campaign(api, [tpl], name="Again")
    for cid in (first, second):
        await post(api, herald, f"{CS}/{cid}/launch")
        herald.runtime.drain()
    reasons = Counter(d["reason"] for d in decisions(herald, second))
    assert reasons == {"policy": 8, "subscription_status": 1, "stop_list": 1}
    why = (await api.get(f"{CS}/{second}/recipients/{audience[EMAILS[0]]}")).json()["decisions"][0]
    assert why["reason"] == "policy"


async def test_activation_checks_resource_templates_and_drafts(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    create_resource(herald)
    sms_only = await template(api, "SMS", sms={"body": "hi"})
    body = {"name": "x", "type": "broadcast", "channel": "email", "resource_id": RESOURCE}
    body |= {"template_ids": [sms_only], "audience": {"kind": "database", "id": "1"}}
    response = await api.post(CS, json=body)
    assert response.status_code == 422 and response.json()["error"]["path"] == "template_ids.0"
    response = await api.post(CS, json={**body, "resource_id": "404"})
    assert response.status_code == 422 and response.json()["error"]["path"] == "resource_id"
    response = await api.post(CS, json={**body, "type": "regular"})
    assert response.status_code == 422 and response.json()["error"]["path"] == "schedule"
    past = {"kind": "once", "date": "2020-01-01", "time": "10:00:00"}
    draft = await api.post(
        "/api/v1/templates",
        json={"name": "d", "draft": True, "content": {"email": {"subject": "s", "html": "x"}}},
    )
    cid = await campaign(api, [draft.json()["template_id"]], schedule=past)
    response = await api.post(f"{CS}/{cid}/activate")
    assert response.status_code == 422 and response.json()["error"]["path"].startswith("schedule")
    await api.put(f"{CS}/{cid}", json={**body, "template_ids": [draft.json()["template_id"]]})
    response = await api.post(f"{CS}/{cid}/activate")
    assert response.status_code == 422, response.text
    assert (
        response.json()["error"]["path"] == "template_ids.0" and "draft" in response.json()["error"]["reason"]
    )


async def test_a_trigger_fires_once_per_request_id_with_its_content_and_delay(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    tpl = await template(api, email={"subject": "Order {json.order}", "html": "<p>{json.order}</p>"})
    body = {"type": "trigger", "database_id": "1", "trigger": {"delay_minutes": 30, "high_priority": True}}
    cid = await campaign(api, [tpl], audience=None, **body)
    fire = {"profiles": [{"email": EMAILS[0]}, {"profile_id": audience[EMAILS[8]]}], "content": {"order": 42}}
    response = await api.post(f"{CS}/{cid}/fire", json={**fire, "request_id": "r-1"})
    assert response.status_code == 422  # not active yet
    await post(api, herald, f"{CS}/{cid}/activate")
    first = await post(api, herald, f"{CS}/{cid}/fire", **fire, request_id="r-1")
    head = herald.store.head_position()
    again = await post(api, herald, f"{CS}/{cid}/fire", **fire, request_id="r-1")
    assert herald.store.head_position() == head  # nothing sent, nothing recorded again
    assert [m["status"] for m in again["messages"]] == ["duplicate", "duplicate"]
    assert [m["first"] for m in again["messages"]] == first["messages"]
    assert "request 'r-1' already fired the trigger" in again["messages"][0]["reason"]
    queued, suppressed = first["messages"]
    assert (
        queued["status"] == "queued" and queued["due_at"] == (clock.now() + timedelta(minutes=30)).isoformat()
    )
    assert suppressed == {**suppressed, "status": "suppressed", "reason": "subscription_status"}
    [event] = herald.store.read_stream(ms.message_stream(queued["message_id"]))
    assert (event.data["lane"], event.data["content"]) == ("trigger_high", {"order": 42})
    other = await post(api, herald, f"{CS}/{cid}/fire", profiles=[{"email": EMAILS[0]}], request_id="r-2")
    assert other["messages"][0]["message_id"] != queued["message_id"]
    missing = await api.post(f"{CS}/{cid}/fire", json={"profiles": [{"email": "nobody@example.org"}]})
    assert missing.status_code == 404 and missing.json()["error"]["path"] == "profiles.0"


async def test_a_trigger_saved_without_options_has_the_guides_defaults_and_no_fire_answers_500(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    cid = await campaign(api, [tpl], audience=None, type="trigger", database_id="1")
    card = (await api.get(f"{CS}/{cid}")).json()
    assert card["trigger"] == {
        "delay_days": 0,
        "delay_hours": 0,
        "delay_minutes": 0,
        "high_priority": False,
        "segment_id": None,
    }
    await post(api, herald, f"{CS}/{cid}/activate")
    fired = await post(api, herald, f"{CS}/{cid}/fire", profiles=[{"email": EMAILS[0]}])
    [message] = fired["messages"]
    assert message["status"] == "queued" and message["due_at"] == clock.now().isoformat()

    async def fire(campaign_id: str, **body: Any) -> httpx.Response:
        response = await api.post(f"{CS}/{campaign_id}/fire", json=body)
        assert response.status_code < 500, response.text
        return response

    assert (await fire(cid, profiles=[{"email": "nobody@example.org"}])).status_code == 404
    assert (await fire(cid, profiles=[{"profile_id": "no-such-profile"}])).status_code == 404
    assert (await fire(cid, profiles=[{"email": EMAILS[0], "phone": "+79123456789"}])).status_code == 422
    assert (await fire(cid, profiles=[{"shoe_size": "42"}])).status_code == 422
    assert (await fire(cid, profiles=[{}])).status_code == 422
    assert (await fire("999", profiles=[{"email": EMAILS[0]}])).status_code == 404
    broadcast = await campaign(api, [tpl])
    assert (await fire(broadcast, profiles=[{"email": EMAILS[0]}])).status_code == 422
    # the template deleted after activation: that message fails with its reason, the call answers
    assert (await api.delete(f"/api/v1/templates/{tpl}")).status_code == 200
    herald.runtime.drain()
    [failed] = (await fire(cid, profiles=[{"email": EMAILS[1]}])).json()["messages"]
    assert failed["status"] == "failed" and "no template" in failed["reason"]
    await post(api, herald, f"{CS}/{cid}/pause")
    assert (await fire(cid, profiles=[{"email": EMAILS[0]}])).status_code == 422
    assert (await api.delete(f"{CS}/{cid}")).status_code == 200
    assert (await fire(cid, profiles=[{"email": EMAILS[0]}])).status_code == 404


async def test_why_didnt_x_get_it_answers_for_every_profile(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    """Decisions when there are some; else whether the profile is in the audience at all, and why not."""
    outsider = (await import_rows(api, [{"email": "no-subscription@example.org"}]))["results"][0][
        "profile_id"
    ]
    herald.runtime.drain()
    tpl = await template(api)
    cid = await campaign(api, [tpl])

    before = await why_of(api, cid, audience[EMAILS[0]])
    assert before["decisions"] == []
    assert before["audience"] == {"in_audience": True, "reason": "the campaign has not run yet"}
    await post(api, herald, f"{CS}/{cid}/launch")
    reached = await why_of(api, cid, audience[EMAILS[0]])
    assert [d["outcome"] for d in reached["decisions"]] == ["queued"] and "audience" not in reached
    assert reached["decisions"][0]["contact"] == EMAILS[0]
    outside = await why_of(api, cid, outsider)
    assert outside["decisions"] == []
    no_subscription = f"the profile has no email subscription on resource {RESOURCE}"
    assert outside["audience"] == {
        "in_audience": False,
        "reason": f"{no_subscription}, so it is not in the audience",
    }
    unknown = await api.get(f"{CS}/{cid}/recipients/no-such-profile")
    assert unknown.status_code == 404 and unknown.json()["error"]["path"] == "profile_id"
    assert (await api.get(f"{CS}/999/recipients/{outsider}")).status_code == 404

    trigger = await campaign(api, [tpl], audience=None, type="trigger", database_id="1")
    assert (await why_of(api, trigger, outsider))["audience"] == {
        "in_audience": True,
        "reason": "the trigger has not been fired for this profile",
    }


async def why_of(api: httpx.AsyncClient, campaign_id: str, profile_id: str) -> dict[str, Any]:
    response = await api.get(f"{CS}/{campaign_id}/recipients/{profile_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_split_test_sends_its_slice_evenly_then_the_winner_to_the_rest(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    a, b = await template(api, "A"), await template(api, "B")
    split = {"sample_from_pct": 0, "sample_to_pct": 50, "winner_by": "manual"}
    cid = await campaign(api, [a, b], type="split_test", split_test=split)
    await post(api, herald, f"{CS}/{cid}/launch")
    herald.runtime.drain()
    test = decisions(herald, cid)
    assert 1 <= len(test) < 10
    per_template = Counter(d["template_id"] for d in test if d["outcome"] == "queued")
    assert abs(per_template[a] - per_template[b]) <= 1 or len(per_template) < 2
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "active_awaiting_decision"
    await post(api, herald, f"{CS}/{cid}/winner", template_id=b)
    herald.campaigns.tick()
    herald.runtime.drain()
    made = decisions(herald, cid)
    assert len({d["profile_id"] for d in made}) == 10 == len(made)
    rest = [d for d in made if d not in test and d["outcome"] == "queued"]
    assert rest and {d["template_id"] for d in rest} == {b}
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "completed"


async def test_test_sends_are_marked_and_not_counted(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    a, b = await template(api, "A"), await template(api, "B")
    cid = await campaign(api, [a, b])
    sent = await post(api, herald, f"{CS}/{cid}/test", profile_ids=[audience[EMAILS[8]]])
    assert [m["status"] for m in sent["messages"]] == [
        "queued",
        "queued",
    ]  # tests ignore the subscription status
    herald.runtime.drain()
    progress = (await api.get(f"{CS}/{cid}/progress")).json()
    assert progress == {"campaign": {}, "tests": {"queued": 2}}
    history = herald.projections.send_history.profile_history(audience[EMAILS[8]], herald.clock.now().date())
    assert history.entries == ()


async def test_a_schedule_in_the_profiles_time_zones_sends_at_each_local_time(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock
) -> None:
    customers(herald)
    create_resource(herald)
    zones = {"tokyo@example.org": "Asia/Tokyo", "ny@example.org": "America/New_York", "utc@example.org": None}
    rows = [
        {"email": e, **({"_tz": z} if z else {}), "subscriptions": [email_subscription(e)]}
        for e, z in zones.items()
    ]
    ids = {r["profile_id"]: e for e, r in zip(zones, (await import_rows(api, rows))["results"], strict=True)}
    herald.runtime.drain()
    tpl = await template(api)
    schedule = {"kind": "daily", "time": "10:00:00", "timezone": "UTC", "profile_timezone": True}
    cid = await campaign(api, [tpl], schedule=schedule)
    await post(api, herald, f"{CS}/{cid}/activate")  # 09:00 UTC: the 10:00 window is open (UTC+14 to UTC-12)
    herald.campaigns.tick()
    herald.runtime.drain()

    def due() -> dict[str, str]:
        found = {}
        for d in decisions(herald, cid):
            [event] = herald.store.read_stream(
                ms.message_stream(ms.message_id(cid, d["run_id"], d["profile_id"]))
            )
            found[ids[d["profile_id"]]] = event.data["due_at"]
        return found

    # Tokyo's 10:00 (01:00 UTC) passed before the run started: it waits for tomorrow's run.
    assert due() == {"ny@example.org": "2026-03-02T15:00:00Z", "utc@example.org": "2026-03-02T10:00:00Z"}
    got = (await api.get(f"{CS}/{cid}")).json()
    assert (got["status"], got["next_run_at"]) == ("active_waiting", "2026-03-02T22:00:00+00:00")
    clock.advance(timedelta(hours=13))  # 22:00 UTC: tomorrow's window is open, Tokyo's 10:00 is ahead
    herald.campaigns.tick()
    herald.runtime.drain()
    assert due()["tokyo@example.org"] == "2026-03-03T01:00:00Z"
    assert (await api.get(f"{CS}/{cid}")).json()["status"] == "completed"


async def test_an_automatic_split_test_picks_the_template_with_most_opens_per_delivered(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    a, b = await template(api, "A"), await template(api, "B")
    split = {"sample_from_pct": 0, "sample_to_pct": 60, "winner_by": "opens", "wait_hours": 3}
    cid = await campaign(api, [a, b], type="split_test", split_test=split)
    await post(api, herald, f"{CS}/{cid}/launch")
    queued = [d for d in decisions(herald, cid) if d["outcome"] == "queued"]
    # the email channel reports opens; here they are recorded as it would
    for d in queued:
        stream = ms.message_stream(ms.message_id(cid, d["run_id"], d["profile_id"]))
        message = herald.store.read_stream(stream)[0].data
        opened = {name: message[name] for name in _MESSAGE_FIELDS} | {"at": clock.now(), "unique": True}
        for _ in range(2 if d["template_id"] == b else 1):
            herald.store.append(stream, [_raw(herald, "MessageOpened", MessageOpened(**opened).to_data())])
        if d["template_id"] == a:  # a mail scanner opens A's messages again and again: it chooses nothing
            scanned = opened | {"unique": False, "bot": True, "bot_rule": "user_agent"}
            bot_opens = [_raw(herald, "MessageOpened", MessageOpened(**scanned).to_data()) for _ in range(3)]
            herald.store.append(stream, bot_opens)
    herald.runtime.drain()
    got = (await api.get(f"{CS}/{cid}")).json()
    assert got["next_run_at"] == (clock.now() + timedelta(hours=3)).isoformat()
    clock.advance(timedelta(hours=3))
    herald.campaigns.tick()
    herald.runtime.drain()
    got = (await api.get(f"{CS}/{cid}")).json()
    assert got["winner_template_id"] == b and got["status"] == "completed"
    rest = [d for d in decisions(herald, cid) if d not in queued and d["outcome"] == "queued"]
    assert {d["template_id"] for d in rest} == {b}


def _raw(herald: Herald, kind: str, data: dict[str, Any]) -> NewEvent:
    return NewEvent(
        event_id=herald.ids.uuid(),
        type=kind,
        data=data,
        occurred_at=herald.clock.now(),
        metadata={"actor": "tracker", "source": "test"},
    )


async def test_a_broadcast_starts_when_its_predecessor_completes(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    first = await campaign(api, [tpl])
    follower = await campaign(api, [tpl], name="Follow-up", start_after_campaign_id=first)
    await post(api, herald, f"{CS}/{first}/launch")
    assert (await api.get(f"{CS}/{follower}")).json()["status"] == "active_waiting"
    herald.campaigns.tick()  # activated with no schedule: its one run is due at once
    herald.runtime.drain()
    got = (await api.get(f"{CS}/{follower}")).json()
    assert got["status"] == "completed" and len(decisions(herald, follower)) == 10


def chunks_failing_at(herald: Herald, chunk: int, call: int, reason: str) -> None:
    """Runs of `chunk` recipients whose `call`-th message decision (from 1) raises, once."""
    runner = next(c for c in herald.runtime.consumers() if c.name == "campaign-runs")
    runner.reactor.chunk = chunk  # type: ignore[attr-defined]
    decide, calls = herald.campaigns.decide, []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise RuntimeError(reason)
        return decide(*args, **kwargs)

    herald.campaigns.decide = failing  # type: ignore[method-assign]


async def test_a_run_that_crashes_mid_chunk_resumes_without_queueing_anyone_twice(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str], tmp_path: Any
) -> None:
    tpl = await template(api)
    cid = await campaign(api, [tpl])
    chunks_failing_at(herald, 3, 5, "the process died")  # the second chunk, after its first message
    assert (await api.post(f"{CS}/{cid}/launch")).status_code == 200
    herald.runtime.drain()  # the runner fails on the second chunk and waits to try again
    failing = next(s for s in herald.runtime.status() if s.name == "campaign-runs")
    assert failing.failing_at is not None and "RuntimeError: the process died" in failing.last_error
    assert len(decisions(herald, cid)) == 3  # the first chunk only: the second was appended all or nothing

    restarted = build(herald.settings, clock=herald.clock)  # a new process over the same files
    try:
        restarted.runtime.drain()
        made = decisions(restarted, cid)
        assert Counter(d["profile_id"] for d in made) == dict.fromkeys(audience.values(), 1)
        decided = Counter(
            e.data["message_id"]
            for e in restarted.store.read_all(1)
            if e.type in ("MessageQueued", "MessageSuppressed", "MessageFailed")
        )
        assert set(decided.values()) == {1} and len(decided) == 10
        assert restarted.campaigns.campaign(cid).status.value == "completed"
    finally:
        restarted.close()


async def test_a_chunk_tried_again_forgets_the_contacts_its_failed_try_used(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    """Contact uniqueness on (the default): a chunk that failed half-way is tried again with the gate's
    memory of the recorded chunks only, so nobody it had passed the first time is a duplicate now."""
    tpl = await template(api)
    cid = await campaign(api, [tpl])
    chunks_failing_at(herald, 4, 7, "a passing fault")  # the second chunk, after two messages
    await post(api, herald, f"{CS}/{cid}/launch")
    assert len(decisions(herald, cid)) == 4
    clock.advance(timedelta(seconds=1))  # the runner's backoff
    herald.runtime.drain()
    made = decisions(herald, cid)
    assert Counter(d["profile_id"] for d in made) == dict.fromkeys(audience.values(), 1)
    assert Counter((d["outcome"], d["reason"]) for d in made) == {
        ("queued", ""): 8,
        ("suppressed", "subscription_status"): 1,
        ("suppressed", "stop_list"): 1,
    }


async def test_contact_uniqueness_holds_across_chunks_and_restarts(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    """Two profiles subscribed with one address fall in different chunks, and the process dies between
    them: the restarted runner reads the address the run used back and suppresses the second."""
    twins = [
        {"email": f"twin{i}@example.org", "subscriptions": [email_subscription("shared@example.org")]}
        for i in range(2)
    ]
    first, second = sorted(r["profile_id"] for r in (await import_rows(api, twins))["results"])
    herald.runtime.drain()
    tpl = await template(api)
    cid = await campaign(api, [tpl])
    runner = next(c for c in herald.runtime.consumers() if c.name == "campaign-runs")
    runner.reactor.chunk = 1  # type: ignore[attr-defined]
    decide = herald.campaigns.decide

    def dying_at_the_second_twin(draft: Any, gate: Any, profile: Any, *args: Any, **kwargs: Any) -> Any:
        if profile.profile_id == second:
            raise RuntimeError("the process died")
        return decide(draft, gate, profile, *args, **kwargs)

    herald.campaigns.decide = dying_at_the_second_twin  # type: ignore[method-assign]
    await post(api, herald, f"{CS}/{cid}/launch")
    assert {d["profile_id"] for d in decisions(herald, cid)} >= {first}

    restarted = build(herald.settings, clock=herald.clock)
    try:
        restarted.runtime.drain()
        outcomes = {d["profile_id"]: (d["outcome"], d["reason"]) for d in decisions(restarted, cid)}
        assert outcomes[first] == ("queued", "")
        assert outcomes[second] == ("suppressed", "duplicate_contact")
        assert len(outcomes) == 12
    finally:
        restarted.close()


# --- segments as audiences ---------------------------------------------------------------------


async def segment(api: httpx.AsyncClient, kind: str, rules: list[dict[str, Any]], **body: Any) -> str:
    query = {"sources": [{"database_id": "1", "rules": rules}]}
    response = await api.post("/api/v1/segments", json={"name": "S", "kind": kind, "query": query, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["segment_id"])


def _first_names_in(*names: str) -> dict[str, Any]:
    return {"kind": "field", "field": "_fname", "operator": "in", "value": list(names)}


async def test_a_dynamic_segment_audience_is_evaluated_at_launch(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    sid = await segment(api, "dynamic", [_first_names_in("P1", "P2", "P8")])
    tpl = await template(api)
    cid = await campaign(api, [tpl], audience={"kind": "segment", "id": sid})
    # P3 joins after the campaign was saved: a dynamic segment is read when the run starts
    await api.patch(f"/api/v1/profiles/{audience[EMAILS[3]]}", json={"fields": {"_fname": "P2"}})
    herald.runtime.drain()
    await post(api, herald, f"{CS}/{cid}/launch")
    outcomes = {d["profile_id"]: d["outcome"] for d in decisions(herald, cid)}
    expected = {audience[EMAILS[i]]: "queued" for i in (1, 2, 3)} | {audience[EMAILS[8]]: "suppressed"}
    assert outcomes == expected


async def test_a_static_segment_audience_sends_to_its_list_only(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    sid = await segment(api, "static", [_first_names_in("P4", "P5")])
    herald.runtime.drain()
    # a later match does not join a static list until it is recalculated
    await api.patch(f"/api/v1/profiles/{audience[EMAILS[6]]}", json={"fields": {"_fname": "P5"}})
    herald.runtime.drain()
    cid = await campaign(api, [await template(api)], audience={"kind": "segment", "id": sid})
    await post(api, herald, f"{CS}/{cid}/launch")
    assert sorted(d["profile_id"] for d in decisions(herald, cid)) == sorted(
        audience[EMAILS[i]] for i in (4, 5)
    )


async def test_a_campaign_refuses_an_unknown_segment_audience(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    body = {
        "name": "Spring",
        "type": "broadcast",
        "channel": "email",
        "resource_id": RESOURCE,
        "template_ids": [tpl],
        "audience": {"kind": "segment", "id": "404"},
    }
    created = await api.post(CS, json=body)
    assert created.status_code == 422
    assert created.json()["error"] | {"status": 0} == {
        "status": 0,
        "reason": "there is no segment '404'",
        "path": "audience.id",
    }


async def test_a_trigger_fires_for_profiles_entering_its_segment(
    api: httpx.AsyncClient, herald: Herald, clock: ManualClock, audience: dict[str, str]
) -> None:
    sid = await segment(api, "dynamic", [_first_names_in("VIP")])
    await api.patch(f"/api/v1/profiles/{audience[EMAILS[0]]}", json={"fields": {"_fname": "VIP"}})
    herald.runtime.drain()  # p0 is in the segment before the trigger exists: no message for it
    clock.advance(timedelta(minutes=1))
    body = {"type": "trigger", "database_id": "1", "trigger": {"segment_id": sid}}
    cid = await campaign(api, [await template(api)], audience=None, **body)
    await post(api, herald, f"{CS}/{cid}/activate")

    for i in (1, 2):
        await api.patch(f"/api/v1/profiles/{audience[EMAILS[i]]}", json={"fields": {"_fname": "VIP"}})
    herald.runtime.drain()
    fired = {d["profile_id"]: d["outcome"] for d in decisions(herald, cid)}
    assert fired == {audience[EMAILS[1]]: "queued", audience[EMAILS[2]]: "queued"}
    # the reactor handling every entry again (a redelivered batch) sends nothing more, not even
    # for p0, whose entry came before the trigger was activated
    entries = [e for e in herald.store.read_all(1) if e.type == "ProfileEnteredSegment"]
    assert len(entries) == 3
    trigger = next(r for r in wiring_reactors(herald) if r.name == "segment-triggers")
    for entry in entries:
        trigger.handle(entry)
    herald.runtime.drain()
    assert len(decisions(herald, cid)) == 2

    # paused, it fires for nobody; resumed, it fires for entries from then on
    await post(api, herald, f"{CS}/{cid}/pause")
    await api.patch(f"/api/v1/profiles/{audience[EMAILS[3]]}", json={"fields": {"_fname": "VIP"}})
    herald.runtime.drain()
    clock.advance(timedelta(minutes=1))
    await post(api, herald, f"{CS}/{cid}/resume")
    await api.patch(f"/api/v1/profiles/{audience[EMAILS[4]]}", json={"fields": {"_fname": "VIP"}})
    herald.runtime.drain()
    fired = {d["profile_id"] for d in decisions(herald, cid)}
    assert fired == {audience[EMAILS[i]] for i in (1, 2, 4)}


async def test_a_segment_trigger_must_name_a_segment_of_its_database(
    api: httpx.AsyncClient, herald: Herald, audience: dict[str, str]
) -> None:
    tpl = await template(api)
    body = {"type": "trigger", "database_id": "1", "trigger": {"segment_id": "77"}}
    response = await api.post(
        CS, json={"name": "T", "channel": "email", "resource_id": RESOURCE, "template_ids": [tpl], **body}
    )
    assert response.status_code == 422
    assert response.json()["error"] | {"status": 0} == {
        "status": 0,
        "reason": "there is no segment '77'",
        "path": "trigger.segment_id",
    }
