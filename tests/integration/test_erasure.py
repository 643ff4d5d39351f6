"""Erasure on an immutable log: after it, and after a replay, no file of the data directory holds the
profile's personal data — the log, the read models, their WAL files, the key store, chDB's files,
import error reports and exports all searched byte by byte — while the reports keep its counts."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from herald.api.app import create_app
from herald.api.cli import main as cli_main
from herald.api.replay import replay, replay_reports
from herald.api.wiring import Herald, build, open_event_store
from herald.domain.deliveries import LinkClicked
from herald.domain.stop_lists import AddStopListEntries, EntryReason
from herald.infra.clickhouse import ClickHouse
from herald.infra.clock import ManualClock, SystemClock
from herald.infra.config import Settings
from herald.infra.event_store import NewEvent
from herald.infra.ids import IdSource
from herald.infra.log_scrub import scrub_sqlite_log
from herald.reports import REPORTS
from herald.reports.base import Period, ReportRequest
from tests.builders import CTX, DB, create_resource, customers, email_subscription
from tests.conftest import ADMIN_TOKEN

ERIN = {
    "email": "erin.quillfeather@example.org",
    "_fname": "Erinwyndra",
    "phones": "+79031234567",
    "crm_id": "CRM-7731-ERIN",
}
WORK = "erin.at.work.quill@example.net"
ADDRESS = "203.0.113.77"
# and the unkeyed digests of her unique values, which anyone holding a guess can recompute
DIGESTS = [hashlib.sha256(v.encode()).hexdigest() for v in (ERIN["email"], ERIN["crm_id"])]
CLICKED = "CLICKREF-ERIN-77"  # in a personalised link she clicked
VISITED = "VISITOR-NOTE-ERIN"  # in what she did as an anonymous visitor, before she was identified
SECRETS = [*ERIN.values(), "79031234567", WORK, ADDRESS, "Quillbrowser/9.1", *DIGESTS, CLICKED, VISITED]
OTHER = "bob.keeps@example.org"


def found_in(data_dir: Path, values: list[str]) -> dict[str, list[str]]:
    """Which files hold which of `values` (UTF-8 bytes, anywhere in the file)."""
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        content = path.read_bytes()
        there = [v for v in values if v.encode() in content]
        if there:
            hits[str(path.relative_to(data_dir))] = there
    return hits


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, reports_engine="chdb")


@contextlib.asynccontextmanager
async def admin_client(herald: Herald) -> AsyncIterator[httpx.AsyncClient]:
    """The API of `herald` in process, as the admin."""
    transport = httpx.ASGITransport(app=create_app(herald, run_processors=False))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test", headers=headers) as api:
        yield api


@pytest.fixture
async def running(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[Herald, httpx.AsyncClient]]:
    herald = build(settings, clock=clock, ids=IdSource(3))
    customers(herald)
    create_resource(herald)
    async with admin_client(herald) as api:
        try:
            yield herald, api
        finally:
            with contextlib.suppress(OSError):  # the test closes it itself before replaying
                herald.close()


def clicked(herald: Herald, profile_id: str, url: str) -> None:
    """The profile clicked a personalised link of a message (the event the tracker records)."""
    click = LinkClicked(
        message_id=f"m-{profile_id}",
        campaign_id="c1",
        template_id="t1",
        template_version=1,
        profile_id=profile_id,
        database_id=DB,
        resource_id="7",
        channel="email",
        contact=WORK,
        at=herald.clock.now(),
        unique=True,
        link_id="l1",
        url=url,
    )
    event = NewEvent(uuid4(), click.type_name, click.to_data(), click.at, click.schema_version)
    herald.store.append(f"message-m-{profile_id}", [event])


def click_map_urls(herald: Herald) -> list[str]:
    assert herald.clickhouse is not None
    day = herald.clock.now().date()
    request = ReportRequest(Period(day, day), filters={"template": "t1", "template_version": "1"})
    result = REPORTS["click_map"].run(herald.clickhouse, request)
    return [row[result.columns.index("link_url")] for row in result.rows]


def drain(herald: Herald) -> None:
    herald.runtime.drain()
    assert herald.reports_runtime is not None
    herald.reports_runtime.drain()


async def test_an_erased_profile_leaves_no_personal_data_in_any_file_even_after_a_replay(
    running: tuple[Herald, httpx.AsyncClient], settings: Settings
) -> None:
    herald, api = running
    created = await api.post(
        f"/api/v1/databases/{DB}/profiles", json={**ERIN, "subscriptions": [email_subscription(WORK)]}
    )
    erin = created.json()["profile_id"]
    bob = await api.post(f"/api/v1/databases/{DB}/profiles", json={"email": OTHER, "_fname": "Bob"})
    await api.post(
        f"/api/v1/profiles/{erin}/tracked-data", json={"ip": ADDRESS, "user_agent": "Quillbrowser/9.1"}
    )
    await api.patch(f"/api/v1/profiles/{erin}", json={"fields": {"age": 41}})
    await api.post(
        "/api/v1/track/batch",
        json={
            "database_id": DB,
            "events": [
                {
                    "event": "Viewed",
                    "profile": {"email": ERIN["email"]},
                    "properties": {"note": ERIN["_fname"]},
                }
            ],
        },
    )
    clicked(herald, erin, f"https://shop.example.org/welcome?ref={CLICKED}")
    visit = {"event": "Viewed", "anonymous_id": "visitor-erin", "properties": {"note": VISITED}}
    tracked = await api.post("/api/v1/track/batch", json={"database_id": DB, "events": [visit]})
    assert tracked.status_code == 200, tracked.text
    herald.tracking.link_anonymous(DB, erin, "visitor-erin", CTX)
    assert [e.data["properties"] for e in herald.store.read_stream("anonymous-visitor-erin")] == [
        {"note": VISITED}
    ]
    clicked(herald, bob.json()["profile_id"], "https://shop.example.org/welcome?ref=BOB")
    # an import whose refused row is hers, and an export holding her row
    upload = await api.post(
        f"/api/v1/databases/{DB}/import-files",
        content=f"Email,age\n{ERIN['email']},not-a-number\n".encode(),
        headers={"content-type": "text/csv"},
    )
    await api.post(
        f"/api/v1/databases/{DB}/imports",
        json={
            "file_id": upload.json()["file_id"],
            "columns": [{"column": 1, "field": "email"}, {"column": 2, "field": "age"}],
        },
    )
    await api.post(f"/api/v1/databases/{DB}/exports", json={"source": {"kind": "database", "id": DB}})
    custom = await stop_listed(api, [ERIN["email"], ERIN["phones"], OTHER], [WORK])
    drain(herald)
    before = found_in(settings.data_dir, SECRETS)
    assert any(name.startswith("readmodels") for name in before), before  # the search can see them
    assert any(name.startswith("clickhouse") for name in before), before
    assert not any(name.startswith("events.sqlite") for name in before), before  # the log holds them sealed

    erased = await api.post(f"/api/v1/profiles/{erin}/erase")
    assert erased.status_code == 200, erased.text
    drain(herald)
    assert (await api.get(f"/api/v1/profiles/{erin}")).status_code == 404
    # the visitor she was is erased with her: its key is gone, its events read as erased
    assert [e.data["properties"] for e in herald.store.read_stream("anonymous-visitor-erin")] == [{}]
    assert found_in(settings.data_dir, SECRETS) == {}
    assert found_in(settings.data_dir, [OTHER]) != {}  # everyone else's data is all there
    entries = (await api.get("/api/v1/stop-lists/global/entries")).json()["entries"]
    assert erased_listing(entries) == [OTHER, "erased", "erased"]  # hers stay, nameless; Bob's reads as is
    # and so do they in the log, to any reader of it: their keys are gone
    global_list = herald.store.read_stream("stoplist-global")
    [added] = [e for e in global_list if e.type == "StopListEntriesAdded"]
    assert erased_listing(added.data["items"]) == [OTHER, "erased", "erased"]
    # each list holding her entries records them erased on its own stream (global state: every
    # partition of the scale engine learns it), and names no one
    for stream, held in ((global_list, 2), (herald.store.read_stream(f"stoplist-{custom}"), 1)):
        assert stream[-1].type == "StopListEntriesErased"
        assert erased_listing(stream[-1].data["items"]) == ["erased"] * held
    # the reports keep her anonymous counts: her profile's creation is still counted
    assert herald.clickhouse is not None
    created_rows = herald.clickhouse.query("SELECT count() AS n FROM profile_creations FINAL")
    assert created_rows[0]["n"] == 2
    assert click_map_urls(herald) == ["https://shop.example.org/welcome?ref=BOB"]  # hers counts, nameless
    herald.close()

    assert replay(settings) == 0
    assert replay_reports(settings) == 0
    assert found_in(settings.data_dir, SECRETS) == {}
    again = build(settings, clock=herald.clock)
    try:
        assert (
            again.projections.profiles.card(erin) is None or again.projections.profiles.card(erin)["deleted"]
        )
        assert any(c["fields"]["email"] == OTHER for c in again.projections.profiles.list_profiles(DB))
        await stays_suppressed(again, custom)  # last: it brings her work address back
    finally:
        again.close()


async def stop_listed(api: httpx.AsyncClient, on_global: list[str], on_custom: list[str]) -> str:
    """Put `on_global` on the account global list and `on_custom` on a new custom list attached to the
    database; its id."""
    added = await api.post("/api/v1/stop-lists/global/entries", json={"items": on_global})
    assert added.status_code == 200, added.text
    created = await api.post("/api/v1/stop-lists", json={"name": "Complained by phone"})
    custom = str(created.json()["list_id"])
    added = await api.post(f"/api/v1/stop-lists/{custom}/entries", json={"items": on_custom})
    assert added.status_code == 200, added.text
    attached = await api.put(f"/api/v1/databases/{DB}/stop-list", json={"stop_list_id": custom})
    assert attached.status_code == 200, attached.text
    return custom


def erased_listing(entries: list[dict[str, str]]) -> list[str]:
    """The listed values, an erased one as "erased" (what it reads as names nothing), sorted."""
    return sorted("erased" if e["value"].startswith("erased-") else e["value"] for e in entries)


async def blocked_by(api: httpx.AsyncClient, channel: str, contact: str) -> str | None:
    """The stop list that stops a send to `contact` (the send-time check), if any."""
    body = {"channel": channel, "contact": contact, "database_id": DB}
    checked = (await api.post("/api/v1/stop-lists/check-contact", json=body)).json()
    return checked["list_id"] if checked["blocked"] else None


async def stays_suppressed(herald: Herald, custom: str) -> None:
    """Erin's erased entries read as erased, and still stop her addresses, also once re-imported."""
    async with admin_client(herald) as api:
        await _stays_suppressed(herald, api, custom)


async def _stays_suppressed(herald: Herald, api: httpx.AsyncClient, custom: str) -> None:
    entries = (await api.get("/api/v1/stop-lists/global/entries")).json()["entries"]
    assert erased_listing(entries) == [OTHER, "erased", "erased"]
    assert erased_listing((await api.get(f"/api/v1/stop-lists/{custom}/entries")).json()["entries"]) == [
        "erased"
    ]
    assert await blocked_by(api, "email", ERIN["email"].upper()) == "global"
    assert await blocked_by(api, "sms", "+7 903 123-45-67") == "global"
    assert await blocked_by(api, "email", WORK) == custom
    # re-adding an erased address changes nothing; she comes back through an import: still stopped
    again = await api.post("/api/v1/stop-lists/global/entries", json={"items": [ERIN["email"]]})
    assert again.json()["event_ids"] == [], again.text
    imported = await api.post(f"/api/v1/databases/{DB}/profiles/import", json={"rows": [{"email": WORK}]})
    assert imported.status_code == 200, imported.text
    assert await blocked_by(api, "email", WORK) == custom
    # and an operator can still lift an entry by the address, which no one can read from the list
    lifted = await api.post(f"/api/v1/stop-lists/{custom}/entries/remove", json={"items": [WORK]})
    assert lifted.status_code == 200 and lifted.json()["event_ids"] != [], lifted.text
    drain(herald)
    assert await blocked_by(api, "email", WORK) is None


def erin_and_bob(herald: Herald, bob: dict[str, object]) -> str:
    """The usual database and resource, Erin subscribed at work and Bob, both on the global stop list;
    Erin's profile id."""
    customers(herald)
    create_resource(herald)
    erin = herald.profiles.create(DB, {**ERIN, "subscriptions": [email_subscription(WORK)]}, CTX).profile_id
    herald.profiles.create(DB, {"email": OTHER, **bob}, CTX)
    listed = (ERIN["email"], ERIN["phones"], OTHER)
    herald.catalog.change_stop_list(
        AddStopListEntries("global", listed, EntryReason.API, herald.clock.now()), CTX
    )
    drain(herald)
    return str(erin)


def settle_mutations(clickhouse: ClickHouse) -> None:
    """A server applies mutations in the background: wait for them (bounded), as the retention test does."""
    for _ in range(200):
        if clickhouse.query("SELECT count() AS n FROM system.mutations WHERE is_done = 0")[0]["n"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the server's mutations did not finish")


async def test_erasing_reaches_the_report_rows_on_a_clickhouse_server(
    tmp_path: Path, clock: ManualClock, clickhouse_server: tuple[str, int]
) -> None:
    host, port = clickhouse_server
    settings = Settings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        reports_engine="server",
        clickhouse_host=host,
        clickhouse_port=port,
        clickhouse_database="erasure_reports",
    )
    herald = build(settings, clock=clock, ids=IdSource(4))
    ch = herald.clickhouse
    assert ch is not None
    try:
        erin = erin_and_bob(herald, {"subscriptions": [email_subscription(OTHER)]})
        bounce = f"550 5.1.1 <{WORK}>: Recipient address rejected"
        link = f"https://shop.example.org/?who={WORK}"
        rows = [
            ("b1", erin, bounce, ""),
            ("b2", "someone-else", f"550 5.1.1 <{OTHER}>: unknown", ""),
            ("c1", erin, "", link),
            ("c2", "someone-else", "", f"https://shop.example.org/?who={OTHER}"),
        ]
        ch.insert("message_events", ["event_id", "profile_id", "bounce_text", "link_url"], rows)
        params = {"p": erin}
        snapshot = "SELECT count() AS n FROM profile_snapshots WHERE profile_id = {p:String}"
        contacts = "SELECT contact FROM subscription_changes WHERE profile_id = {p:String}"
        assert ch.query(snapshot, params)[0]["n"] >= 1
        assert {r["contact"] for r in ch.query(contacts, params)} == {WORK}

        herald.erasure.erase(erin, CTX)
        drain(herald)
        settle_mutations(ch)
        assert ch.query(snapshot, params)[0]["n"] == 0
        assert {r["contact"] for r in ch.query(contacts, params)} == {""}  # the change is counted, nameless
        assert ch.query("SELECT count() AS n FROM profile_creations FINAL")[0]["n"] == 2
        others = ch.query("SELECT contact FROM subscription_changes WHERE profile_id != {p:String}", params)
        assert {r["contact"] for r in others} == {OTHER}
        kept = ch.query("SELECT event_id, bounce_text, link_url FROM message_events ORDER BY event_id")
        assert [(r["event_id"], OTHER in r["bounce_text"] + r["link_url"]) for r in kept] == [
            ("b1", False),
            ("b2", True),
            ("c1", False),
            ("c2", True),
        ]
        assert kept[0]["bounce_text"] == "" and kept[2]["link_url"] == ""
    finally:
        ch.execute("DROP DATABASE IF EXISTS erasure_reports")
        herald.close()


def unseal(settings: Settings) -> int:
    """Turn the log into what a Herald before sealing wrote: every sealed event stored in clear."""
    store = open_event_store(settings, SystemClock())
    try:
        rows = [
            (e.position, e.schema_version, e.data)
            for e in store.read_all()
            if b'"_sealed"' in (store.inner.read_range(e.position, e.position)[0].stored_data or b"")
        ]
    finally:
        store.close()
    return scrub_sqlite_log(settings.event_store_path, rows)


def checksums_and_log(settings: Settings, clock: ManualClock) -> tuple[dict[str, str], list[tuple]]:
    herald = build(settings, clock=clock)
    try:
        drain(herald)
        log = [(e.position, e.event_id, e.stream, e.version, e.type, e.data) for e in herald.store.read_all()]
        return herald.projections.checksums(), log
    finally:
        herald.close()


def test_resealing_seals_old_clear_events_in_place_so_an_erasure_reaches_them(
    settings: Settings, clock: ManualClock
) -> None:
    herald = build(settings, clock=clock, ids=IdSource(5))
    try:
        erin = erin_and_bob(herald, {"_fname": "Bob"})
    finally:
        herald.close()
    assert unseal(settings) > 0
    assert "events.sqlite" in found_in(settings.data_dir, SECRETS[:4])  # an old log: her values in clear
    before = checksums_and_log(settings, clock)

    assert cli_main(["reseal", "--data-dir", str(settings.data_dir)]) == 0
    assert not any(name.startswith("events.sqlite") for name in found_in(settings.data_dir, SECRETS))
    assert checksums_and_log(settings, clock) == before  # same log, same read models: only the bytes differ

    again = build(settings, clock=clock)
    try:
        again.erasure.erase(erin, CTX)
        drain(again)
    finally:
        again.close()
    assert found_in(settings.data_dir, SECRETS) == {}
    assert found_in(settings.data_dir, [OTHER]) != {}


WANDERER = "visitor-never-known"
WANDERED = ["WANDERER-NOTE-4471", "https://ads.example.net/landing?who=WANDERER-REF-9"]


async def test_erasing_a_visitor_never_identified_leaves_none_of_its_data_even_after_a_replay(
    running: tuple[Herald, httpx.AsyncClient], settings: Settings
) -> None:
    herald, api = running
    note, referrer = WANDERED
    events = [
        {"event": "Viewed", "anonymous_id": WANDERER, "properties": {"note": note}},
        {
            "event": "Purchase",
            "anonymous_id": WANDERER,
            "properties": {"goal": "purchase", "value": 30},
            "context": {"page": {"referrer": referrer}},
        },
        {"event": "Viewed", "anonymous_id": "visitor-other", "properties": {"note": OTHER}},
        {"event": "Viewed", "anonymous_id": "visitor-known", "properties": {"note": "known"}},
    ]
    tracked = await api.post("/api/v1/track/batch", json={"database_id": DB, "events": events})
    assert tracked.status_code == 200, tracked.text
    known = await api.post(f"/api/v1/databases/{DB}/profiles", json={"email": "kim@example.org"})
    herald.tracking.link_anonymous(DB, known.json()["profile_id"], "visitor-known", CTX)
    drain(herald)
    assert "clickhouse" in {name.split("/")[0] for name in found_in(settings.data_dir, [referrer])}

    erased = await api.post(f"/api/v1/erasures/visitors/{WANDERER}")
    assert erased.status_code == 200 and len(erased.json()["event_ids"]) == 1, erased.text
    drain(herald)
    assert found_in(settings.data_dir, WANDERED) == {}
    wandered = herald.store.read_stream(f"anonymous-{WANDERER}")
    assert [(e.type, e.data.get("properties")) for e in wandered] == [
        ("ActivityTracked", {}),
        ("ActivityTracked", {}),
        ("VisitorErased", None),
    ]
    # another visitor's data is all there
    assert [e.data["properties"] for e in herald.store.read_stream("anonymous-visitor-other")] == [
        {"note": OTHER}
    ]
    assert herald.clickhouse is not None  # its goal is still counted, from nowhere
    goals = herald.clickhouse.query(
        "SELECT referrer FROM goal_events WHERE anonymous_id = {a:String}", {"a": WANDERER}
    )
    assert goals == [{"referrer": ""}]
    again = await api.post(f"/api/v1/erasures/visitors/{WANDERER}")
    assert again.status_code == 200 and again.json()["event_ids"] == [], again.text
    refused = await api.post("/api/v1/erasures/visitors/visitor-known")
    assert refused.status_code == 422 and refused.json()["error"]["path"] == "anonymous_id", refused.text
    assert (await api.post("/api/v1/erasures/visitors/visitor-nobody")).status_code == 404
    herald.close()

    assert replay(settings) == 0
    assert replay_reports(settings) == 0
    assert found_in(settings.data_dir, WANDERED) == {}
