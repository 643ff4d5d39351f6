"""Poison events: one bad profile or one failing processor never stalls the others, and the log stays quiet.

Everything goes through the HTTP API and a real SMTP server on loopback; the
clock is a ManualClock, so the runtime's backoff waits pass when a test moves it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald.api import cli
from herald.api.wiring import Herald
from herald.domain import messages as ms
from herald.infra.clock import ManualClock
from herald.infra.data_dir_lock import hold_processors_lock
from herald.messages.worker import MESSAGE_ATTEMPTS
from herald.processors.backoff import RetryPolicy
from herald.services.campaigns import CampaignService
from tests.builders import import_rows
from tests.integration.test_email_end_to_end import Sink, email_resource, ok, route_to, send_everything
from tests.smtp_sink import smtp_server

PROFILES = 1000
POISONED = 500  # the profile whose cart the template's loops cannot get through
OVERFLOWING = 17  # the profile whose `days` overflowed `adddate` (issue 13): rendered, with no date
HTML = (
    "<p>Hello {lead._fname}, your event is on {adddate(lead.since 0 0 lead.days)}</p>"
    "<p>{for $a = lead.cart}{for $b = lead.cart}.{end}{end}</p>"
)
DEFAULT_ATTEMPTS = RetryPolicy().attempts


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    with smtp_server(handler) as port:
        yield handler, port


async def catalog(api: httpx.AsyncClient, herald: Herald, port: int, profiles: int) -> None:
    """A database (since, days, cart), a resource, `profiles` subscribed profiles, a sender at the sink."""
    fields = [
        {"name": "since", "title": "Since", "type": "date"},
        {"name": "days", "title": "Days", "type": "int"},
        {"name": "cart", "title": "Cart", "type": "json"},
    ]
    await ok(await api.post("/api/v1/databases", json={"name": "Customers", "custom_fields": fields}), 201)
    await email_resource(api)
    rows = [
        {
            "email": f"user{i}@mail.example",
            "_fname": f"Ann{i}",
            "since": "2026-03-01",
            "days": 100000000000 if i == OVERFLOWING else 10,
            "cart": list(range(101 if i == POISONED else 3)),
            "subscriptions": [{"resource_id": "1", "channel": "email", "email": f"user{i}@mail.example"}],
        }
        for i in range(profiles)
    ]
    for start in range(0, profiles, 500):
        await import_rows(api, rows[start : start + 500])
    await route_to(api, port, rate_per_second=10000, connections=4)
    herald.runtime.drain()


async def broadcast(api: httpx.AsyncClient, herald: Herald, html: str) -> str:
    content = {"email": {"subject": "Hi {lead._fname}", "html": html}}
    template = await ok(await api.post("/api/v1/templates", json={"name": "T", "content": content}), 201)
    body = {
        "name": "Spring",
        "type": "broadcast",
        "channel": "email",
        "resource_id": "1",
        "template_ids": [template["template_id"]],
        "audience": {"kind": "database", "id": "1"},
    }
    campaign_id = str((await ok(await api.post("/api/v1/campaigns", json=body), 201))["campaign_id"])
    herald.runtime.drain()
    await ok(await api.post(f"/api/v1/campaigns/{campaign_id}/launch"))
    return campaign_id


async def profile_id(api: httpx.AsyncClient, number: int) -> str:
    query = {"database_id": "1", "by": "email", "value": f"user{number}@mail.example"}
    [found] = (await ok(await api.get("/api/v1/profiles/lookup", params=query)))["profiles"]
    return str(found["profile_id"])


async def test_a_poisoned_profile_among_1000_fails_alone_and_the_log_stays_quiet(
    api: httpx.AsyncClient, herald: Herald, sink: tuple[Sink, int], caplog: pytest.LogCaptureFixture
) -> None:
    relay, port = sink
    await catalog(api, herald, port, PROFILES)
    caplog.clear()
    first = await broadcast(api, herald, HTML)
    await send_everything(herald)

    # 999 went out over SMTP, the overflowing profile among them (its date left empty)
    assert len(relay.messages) == PROFILES - 1
    received = {rcpts[0] for _, rcpts, _ in relay.messages}
    assert f"user{POISONED}@mail.example" not in received
    overflowing = next(
        raw for _, rcpts, raw in relay.messages if rcpts[0] == f"user{OVERFLOWING}@mail.example"
    )
    assert b"your event is on </p>" in overflowing
    # the poisoned one failed, with its reason, where "why didn't X get it" shows it
    progress = (await ok(await api.get(f"/api/v1/campaigns/{first}/progress")))["campaign"]
    assert progress == {"queued": PROFILES - 1, "errors": 1, "delivered": PROFILES - 1, "delivering": 0}
    poisoned = await profile_id(api, POISONED)
    why = await ok(await api.get(f"/api/v1/campaigns/{first}/recipients/{poisoned}"))
    [decision] = why["decisions"]
    assert decision["outcome"] == "errors"
    assert decision["reason"] == "the loops of one message ran more than 10000 iterations"

    # later campaigns are unaffected; no processor failed, none waits, nothing was parked
    later = await broadcast(api, herald, "<p>Hello again {lead._fname}</p>")
    herald.runtime.drain()
    assert (await ok(await api.get(f"/api/v1/campaigns/{later}/progress")))["campaign"] == {
        "queued": PROFILES
    }
    processors = await ok(await api.get("/api/v1/processors"))
    assert processors["parked"] == []
    assert all(p["lag"] == 0 and p["failures"] == 0 for p in processors["processors"].values())

    # the log: nothing at warning or above (a render failure is recorded on its message, not logged)
    assert sum(len(r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING) == 0


async def test_a_processor_failing_on_an_event_parks_it_goes_on_and_re_drives_it_after_the_fix(
    api: httpx.AsyncClient,
    herald: Herald,
    clock: ManualClock,
    sink: tuple[Sink, int],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug (not a render error) fails the campaign runner on one campaign's run: it backs off, parks
    the run's event after its tries, the next campaign runs meanwhile, and a re-drive after the fix
    finishes the first campaign, once."""
    relay, port = sink
    await catalog(api, herald, port, 10)
    decide = herald.campaigns.decide
    buggy = {"campaign": ""}

    def with_a_bug(draft: Any, *args: Any, **kwargs: Any) -> Any:
        if draft.campaign_id == buggy["campaign"]:
            raise KeyError("a bug in the runner")
        return decide(draft, *args, **kwargs)

    monkeypatch.setattr(herald.campaigns, "decide", with_a_bug)
    buggy["campaign"] = "1"
    first = await broadcast(api, herald, "<p>One</p>")
    for attempt in range(1, DEFAULT_ATTEMPTS):
        herald.runtime.drain()
        failing = (await ok(await api.get("/api/v1/processors")))["processors"]["campaign-runs"]
        assert failing["attempts"] == attempt and "KeyError: 'a bug in the runner'" in failing["last_error"]
        clock.advance(RetryPolicy().delay(attempt))
    herald.runtime.drain()  # the last try parks the run's start

    second = await broadcast(api, herald, "<p>Two</p>")
    await send_everything(herald)
    assert (await ok(await api.get(f"/api/v1/campaigns/{second}/progress")))["campaign"] == SENT_10
    processors = await ok(await api.get("/api/v1/processors"))
    [parked] = processors["parked"]
    assert parked["consumer"] == "campaign-runs" and parked["event_type"] == "CampaignRunStarted"
    assert parked["attempts"] == DEFAULT_ATTEMPTS and parked["error"].startswith("KeyError: 'a bug")
    assert processors["processors"]["campaign-runs"]["lag"] == 0  # it went on
    metrics = {
        (s.name, s.labels.get("processor")): s.value
        for family in text_string_to_metric_families((await api.get("/api/v1/metrics")).text)
        for s in family.samples
    }
    assert metrics[("herald_processor_parked_events", "campaign-runs")] == 1
    assert metrics[("herald_processor_failures_total", "campaign-runs")] == DEFAULT_ATTEMPTS
    assert metrics[("herald_processor_lag_events", "profiles")] == 0
    # the log: one line per failure, no traceback
    ours = [r for r in caplog.records if r.name.startswith("herald")]
    assert len(ours) == DEFAULT_ATTEMPTS and not any(r.exc_info for r in ours)

    buggy["campaign"] = ""  # the fix
    path = f"/api/v1/processors/campaign-runs/parked/{parked['position']}"
    detail = await ok(await api.get(path))
    assert "Traceback" in detail["traceback"]
    redriven = await ok(await api.post(f"{path}/redrive"))
    assert redriven["redriven_at"] is not None
    await ok(await api.post(f"{path}/redrive"))  # again: nothing more happens
    await send_everything(herald)
    assert (await ok(await api.get(f"/api/v1/campaigns/{first}/progress")))["campaign"] == SENT_10
    assert len(relay.messages) == 20
    assert (await ok(await api.get("/api/v1/processors")))["parked"] == []
    assert (await api.post("/api/v1/processors/campaign-runs/parked/99999/redrive")).status_code == 404


async def test_the_timer_and_sender_loops_wait_longer_after_each_failure(
    herald: Herald, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("the timers table is gone")

    async def broken_pass(limit: int = 1000) -> int:
        raise RuntimeError("the send queue is gone")

    monkeypatch.setattr(herald, "tick", broken)
    monkeypatch.setattr(herald.email, "run_once", broken_pass)
    assert [herald.timer_pass() for _ in range(5)] == [5, 5, 5, 8, 16]  # never under the 5 s tick
    assert [await herald.send_pass() for _ in range(4)] == [1, 2, 4, 8]
    monkeypatch.undo()
    assert herald.timer_pass() == 5 and herald.loops["timers"].failures == 0
    assert await herald.send_pass() == 1  # nothing to send: the idle wait
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 9 and all("\n" not in line for line in lines)
    assert lines[0].startswith("timers failed: RuntimeError: the timers table is gone")


async def test_herald_parked_lists_and_herald_redrive_applies_parked_events(
    api: httpx.AsyncClient,
    herald: Herald,
    clock: ManualClock,
    sink: tuple[Sink, int],
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """The CLI over the data directory of a server whose campaign runner parked a run's start (a bug,
    fixed since); the CLI opens the directory as a stopped server's would be opened."""
    await catalog(api, herald, sink[1], 3)
    with monkeypatch.context() as bug:
        bug.setattr(CampaignService, "decide", _a_bug)
        campaign_id = await broadcast(api, herald, "<p>Hi</p>")
        for attempt in range(1, DEFAULT_ATTEMPTS + 1):
            herald.runtime.drain()
            clock.advance(RetryPolicy().delay(attempt))
    [parked] = herald.runtime.parked_events()
    data = ["--data-dir", str(herald.settings.data_dir)]

    capsysbinary.readouterr()
    assert cli.main([*data, "parked"]) == 0
    [line] = capsysbinary.readouterr().out.splitlines()
    listed = orjson.loads(line)
    assert (listed["consumer"], listed["position"]) == ("campaign-runs", parked.position)
    assert listed["error"].startswith("KeyError: 'a bug'") and "traceback" not in listed

    with hold_processors_lock(herald.settings.data_dir, "serve"):  # a running server: refused, nothing done
        assert cli.main([*data, "redrive"]) == cli.CANNOT_START
    assert b"already runs Herald's processors" in capsysbinary.readouterr().err
    assert cli.main([*data, "redrive"]) == 0
    assert capsysbinary.readouterr().out == f"campaign-runs {parked.position}: re-driven\n".encode()
    assert cli.main([*data, "parked"]) == 0
    assert capsysbinary.readouterr().out == b""
    herald.runtime.drain()  # the chunk the re-drive decided, read by the server's projections
    assert herald.projections.campaigns.counters(campaign_id) == {"queued": 3}


SENT_10 = {"queued": 10, "delivered": 10, "delivering": 0}


def _a_bug(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("a bug")


async def test_a_message_that_breaks_the_sender_is_given_up_after_its_tries_and_the_others_go_out(
    api: httpx.AsyncClient, herald: Herald, sink: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay, port = sink
    await catalog(api, herald, port, 5)
    campaign_id = await broadcast(api, herald, "<p>Hi</p>")
    herald.runtime.drain()
    victim = ms.message_id(campaign_id, f"{campaign_id}-1", await profile_id(api, 2))
    compose = herald.email.channel.compose

    def breaking(queued: Any, *args: Any) -> Any:
        if queued.message_id == victim:
            raise ValueError("a header nothing expected")
        return compose(queued, *args)

    monkeypatch.setattr(herald.email.channel, "compose", breaking)
    for _ in range(MESSAGE_ATTEMPTS):
        await herald.email.run_once()
        herald.runtime.drain()
    assert len(relay.messages) == 4
    outcome = herald.store.read_stream(ms.message_stream(victim))[-1]
    assert outcome.type == "MessageNotDelivered"
    assert (outcome.data["reason"], outcome.data["detail"]) == (
        "sender_error",
        "ValueError: a header nothing expected",
    )
    assert herald.projections.send_queue.waiting() == 0
