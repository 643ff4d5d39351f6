"""The scale engine on a real broker (Tansu): relay → Kafka → partitioned workers build what the embedded
runtime builds, two workers share the partitions, and a worker killed mid-run loses and doubles nothing.

The same commands run twice, with the same clock and id seed: once with the
in-process runtime drained between steps, once with `herald relay` and two
`herald worker`s running as processes over a data directory, the test waiting
for their stores between steps. The read models, read merged across the
partition stores, must have the embedded runtime's checksums.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from herald.api.routes.reports import run_report
from herald.api.wiring import Herald, build
from herald.domain import campaigns as cp
from herald.domain import senders as sd
from herald.domain import templates as tp
from herald.domain.scenario_capture import ImportCapture
from herald.domain.statuses import Status
from herald.domain.stop_lists import PLATFORM_INVALID_LIST_ID, stop_list_stream
from herald.domain.subscriptions import Cause, ChangeSubscriptionStatus
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.infra.log_names import KEY_FILE
from herald.processors.relay import ensure_topic
from herald.projections.clickhouse_sink import TABLE_COLUMNS, table_contents
from herald.projections.message_rollup import ROLLUP_TABLE
from herald.reports.base import Period, ReportRequest
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.builders import create_resource, customers
from tests.conftest import START
from tests.scale_cluster import ScaleCluster
from tests.scenario_builders import campaign_node, graph, messages_of, pause_node, ready, scenario, trigger
from tests.smtp_sink import MessageCounter, smtp_server
from tests.tansu import running_tansu

CTX = CommandContext(actor="test", source="test")
PARTITIONS = 3
ADMIN_TOKEN = "scale-admin-token"
OFF = {"HERALD_REPORTS_ENGINE": "off"}
Settle = Callable[[], object]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_tansu(tmp_path_factory.mktemp("tansu")) as bootstrap:
        yield bootstrap


# One names key for both engines' data directories, as a deployment's copies share theirs: the
# stop-list entries' read-model rows are keyed by digests under it (`infra/sealed_entries.py`).
NAMES_KEY = base64.urlsafe_b64encode(bytes(range(32))) + b"\n"


def _herald(data: Path, engine: str = "embedded", **reports: Any) -> Herald:
    data.mkdir(parents=True, exist_ok=True)
    if not (data / KEY_FILE).exists():
        (data / KEY_FILE).write_bytes(NAMES_KEY)
    settings = Settings(
        data_dir=data,
        admin_token=ADMIN_TOKEN,
        engine=engine,
        kafka_partitions=PARTITIONS,
        **({"reports_engine": "off"} | reports),
    )
    return build(settings, clock=ManualClock(START), ids=IdSource(7))


# --- the input: the same commands for both engines -----------------------------------------------


def _rows(start: int, count: int, generation: int) -> list[dict[str, object]]:
    return [
        {
            "email": f"user{i}@example.org",
            "_fname": f"Name{i}-{generation}",
            "crm_id": f"C{i}",
            "subscriptions": [
                {
                    "resource_id": "7",
                    "channel": "email",
                    "email": f"user{i}@example.org",
                    "priority": generation,
                }
            ],
        }
        for i in range(start, start + count)
    ]


def _import(herald: Herald, start: int, count: int, generation: int) -> list[str]:
    results = herald.profiles.import_rows("1", _rows(start, count, generation), ImportOptions(), CTX)
    assert all(r.status in ("created", "updated") for r in results), results
    return [str(r.profile_id) for r in results]


def _change_status(herald: Herald, profile_id: str, n: int, status: Status, cause: Cause) -> None:
    command = ChangeSubscriptionStatus(
        resource_id="7",
        channel="email",
        contact=f"user{n}@example.org",
        at=herald.clock.now(),
        status=status,
        cause=cause,
    )
    herald.profiles.execute(profile_id, command, CTX)


def _catalog_and_profiles(herald: Herald, settle: Settle) -> list[str]:
    """Databases, resources, profiles imported and re-imported, unsubscribes, one hard bounce."""
    customers(herald)
    create_resource(herald)
    settle()
    ids: list[str] = []
    for start in range(0, 90, 30):
        ids += _import(herald, start, 30, generation=0)
        settle()  # an import matches rows against the profiles read model
    _import(herald, 0, 90, generation=1)
    settle()
    for n in range(10):
        _change_status(herald, ids[n], n, Status.UNSUBSCRIBED, Cause.API)
    _change_status(herald, ids[42], 42, Status.HARD_BOUNCED, Cause.HARD_BOUNCE)
    settle()
    return ids


def _broadcast(herald: Herald, settle: Settle, smtp_port: int | None = None) -> str:
    """A broadcast of one email with one link to database 1's subscribers of resource 7, not started;
    sent through an SMTP relay at `smtp_port` when one is given."""
    if smtp_port is not None:
        relay = sd.SmtpRelaySettings(host="127.0.0.1", port=smtp_port, starttls="never")
        sender = sd.SenderSettings(name="sink", relay=relay, rate_per_second=10_000, connections=4)
        herald.senders.set_sender("main", sender, sd.SenderSecrets(), CTX, create=True)
        rules = (sd.RouteRule(targets=(sd.RouteTarget(sender_id="main", percent=100),)),)
        herald.senders.set_virtual_sender("default", "Default", rules, CTX)
    content = tp.TemplateContent(
        email=tp.EmailContent(subject="Hi", html='<a href="https://x.example/">x {lead.email}</a>')
    )
    template_id, _ = herald.templates.create_template(tp.TemplateCard(name="Hi"), content, False, CTX)
    settings = cp.CampaignSettings(
        name="Spring",
        type=cp.CampaignType.BROADCAST,
        channel="email",
        resource_id="7",
        template_ids=(template_id,),
        audience=cp.Audience(id="1"),
    )
    settle()
    campaign_id, _ = herald.campaigns.create(settings, CTX)
    return campaign_id


def _stop_list_events(herald: Herald) -> list[str]:
    return [e.type for e in herald.store.read_stream(stop_list_stream(PLATFORM_INVALID_LIST_ID))]


def _types(herald: Herald) -> Counter[str]:
    return Counter(e.type for e in herald.store.read_all(1))


def _embedded(tmp_path: Path, write: Callable[[Herald, Settle], object]) -> Herald:
    herald = _herald(tmp_path / "embedded")
    write(herald, herald.runtime.drain)
    herald.runtime.drain()
    return herald


@pytest.fixture
def cluster(tmp_path: Path, broker: str, request: pytest.FixtureRequest) -> Iterator[ScaleCluster]:
    logs = tmp_path / "logs"
    logs.mkdir()
    topic = f"herald-events-{request.node.name.replace('_', '-')[:40]}"
    cluster = ScaleCluster(
        tmp_path / "scale", broker, topic, PARTITIONS, logs, OFF | {"HERALD_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    try:
        yield cluster
    finally:
        cluster.stop()


def _two_workers(cluster: ScaleCluster, herald: Herald) -> Settle:
    """The relay and two workers started and sharing the partitions; the wait for all to settle."""
    cluster.start_relay()
    cluster.start_worker()
    cluster.start_worker()
    pids = {w.pid for w in cluster.workers}
    cluster.wait_for(
        lambda: len(cluster.owners()) == PARTITIONS and set(cluster.owners().values()) == pids,
        "two workers each holding partitions",
    )
    return lambda: cluster.wait_for(lambda: cluster.caught_up(herald.store), "caught up with the log")


def _but_timed(checksums: dict[str, str]) -> dict[str, str]:
    """The read models' checksums but the audit's: its rows hold each event's time, and the workers'
    processors append theirs with their own processes' system clock, not the test's."""
    return {name: digest for name, digest in checksums.items() if name != "audit"}


# --- the tests -------------------------------------------------------------------------------------


def test_two_workers_share_the_partitions_and_build_the_read_models_the_embedded_runtime_builds(
    tmp_path: Path, cluster: ScaleCluster
) -> None:
    embedded = _embedded(tmp_path, _catalog_and_profiles)
    expected, expected_types = embedded.projections.checksums(), _types(embedded)
    embedded_stop_list = _stop_list_events(embedded)
    embedded.close()

    herald = _herald(cluster.data, engine="scale")
    try:
        settle = _two_workers(cluster, herald)
        _catalog_and_profiles(herald, settle)
        settle()
        assert _but_timed(herald.projections.checksums()) == _but_timed(expected)
        assert _types(herald) == expected_types
        assert _stop_list_events(herald) == embedded_stop_list
        entries = herald.projections.catalog.entries(PLATFORM_INVALID_LIST_ID)
        assert [(e["value"], e["reason"]) for e in entries] == [("user42@example.org", "hard_bounce")]
        assert set(cluster.owners().values()) == {w.pid for w in cluster.workers}  # both still share
    finally:
        herald.close()


def test_the_relay_refuses_a_topic_with_another_partition_count(broker: str) -> None:
    asyncio.run(ensure_topic(broker, "herald-events-resized", PARTITIONS))
    asyncio.run(ensure_topic(broker, "herald-events-resized", PARTITIONS))  # the right size is fine
    with pytest.raises(RuntimeError, match="has 3 partitions, the configuration says 6"):
        asyncio.run(ensure_topic(broker, "herald-events-resized", 6))


# --- a worker killed mid-run ------------------------------------------------------------------------

KILL_AT = 150  # messages at the sink when the coordinating worker is killed
AUDIENCE = 600


def _audience_and_launch(herald: Herald, settle: Settle, smtp_port: int) -> list[str]:
    """600 subscribers, then a broadcast to them through the sink at `smtp_port`, launched."""
    ids = _catalog_and_profiles(herald, settle)
    ids += _import(herald, 90, AUDIENCE - 90, generation=0)
    settle()
    campaign_id = _broadcast(herald, settle, smtp_port)
    herald.campaigns.launch_now(campaign_id, CTX)
    return ids


def _while_it_runs(herald: Herald) -> None:
    """Every profile imported again (new names) while the run is queued and sent."""
    _import(herald, 0, AUDIENCE, generation=2)


def _send_all(herald: Herald) -> None:
    """The embedded engine's sender, to the end of the queue."""

    async def send() -> None:
        try:
            while herald.projections.send_queue.waiting():
                await herald.email.run_once()
                herald.runtime.drain()
        finally:
            await herald.email.close()

    asyncio.run(send())


def _processor_events(herald: Herald) -> set[tuple[str, str]]:
    """(id, type) of every event a processor appended: ids derive from their causes, so equal sets mean
    nothing lost and nothing made twice."""
    return {
        (str(e.event_id), e.type)
        for e in herald.store.read_all(1)
        if str(e.metadata.get("actor", "")).startswith("processor:")
    }


def _sent_history(herald: Herald) -> Counter[tuple[str, str]]:
    """Which profile had which send action recorded (their times are the sending process's clock)."""
    rows = herald.projections.membership.conn.execute("SELECT profile_id, action FROM segmem_history")
    return Counter((str(profile), str(action)) for profile, action in rows)


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(tmp_path: Path, cluster: ScaleCluster) -> None:
    embedded_sink, scale_sink = MessageCounter(), MessageCounter()
    with smtp_server(embedded_sink) as port:
        embedded = _embedded(tmp_path, lambda h, settle: _audience_and_launch(h, settle, port))
        _while_it_runs(embedded)
        embedded.runtime.drain()
        _send_all(embedded)
    expected = embedded.projections.checksums()
    expected_events, expected_history = _processor_events(embedded), _sent_history(embedded)
    embedded.close()
    assert len(embedded_sink.ids) == AUDIENCE - 11  # ten unsubscribed, one hard bounced

    herald = _herald(cluster.data, engine="scale")
    try:
        with smtp_server(scale_sink) as port:
            settle = _two_workers(cluster, herald)
            _audience_and_launch(herald, settle, port)
            cluster.wait_for(lambda: scale_sink.received >= KILL_AT, f"{KILL_AT} messages sent")
            coordinator = next(w for w in cluster.workers if w.pid == cluster.coordinator())
            cluster.kill(coordinator)
            assert scale_sink.received < AUDIENCE, "the run was over before the kill"
            _while_it_runs(herald)
            survivor = next(w.pid for w in cluster.workers if w is not coordinator)
            cluster.wait_for(
                lambda: set(cluster.owners().values()) == {survivor} == {cluster.coordinator()},
                "the survivor holding every partition and coordinating",
            )
            settle()
            cluster.wait_for(lambda: herald.projections.send_queue.waiting() == 0, "every message sent")
            settle()

        assert [m for m, count in scale_sink.ids.items() if count > 1] == []
        assert set(scale_sink.ids) == set(embedded_sink.ids)
        assert _processor_events(herald) == expected_events
        assert _sent_history(herald) == expected_history
        found = herald.projections.checksums()
        assert {k: v for k, v in _but_timed(found).items() if k != "segment_membership"} == {
            k: v for k, v in _but_timed(expected).items() if k != "segment_membership"
        }
    finally:
        herald.close()


# --- timers and reports -----------------------------------------------------------------------------


def test_the_coordinator_fires_due_timers(cluster: ScaleCluster) -> None:
    """A broadcast activated with no schedule has one run due at once: only a timer tick starts it."""
    herald = _herald(cluster.data, engine="scale")
    try:
        cluster.start_relay()
        cluster.start_worker()

        def settle() -> None:
            cluster.wait_for(lambda: cluster.caught_up(herald.store), "caught up with the log")

        _catalog_and_profiles(herald, settle)
        campaign_id = _broadcast(herald, settle)
        herald.campaigns.activate(campaign_id, CTX)
        assert _queued(herald) == 0  # this process fires no timers: the coordinating worker does
        cluster.wait_for(lambda: _queued(herald) > 0, "messages of the timer's run")
        settle()
        assert herald.campaigns.campaign(campaign_id).status is cp.CampaignStatus.COMPLETED
    finally:
        herald.close()


def _queued(herald: Herald) -> int:
    return sum(e.type == "MessageQueued" for e in herald.store.read_all(1))


def _campaign_and_engagement(herald: Herald, settle: Settle) -> None:
    """Profiles, then a broadcast to them, then opens and clicks on the first five messages."""
    _catalog_and_profiles(herald, settle)
    campaign_id = _broadcast(herald, settle)
    herald.campaigns.launch_now(campaign_id, CTX)
    settle()
    queued = sorted(e.data["message_id"] for e in herald.store.read_all(1) if e.type == "MessageQueued")
    at = herald.clock.now()
    for message_id in queued[:5]:
        herald.deliveries.hit(message_id, "open", "203.0.113.9", "Mozilla/5.0", None, at)
        link = {"l": "html.1", "u": "https://x.example/"}
        herald.deliveries.hit(message_id, "click", "203.0.113.9", "Mozilla/5.0", None, at, link)
    settle()


def _report_tables(herald: Herald) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of every report table but the rollup: each partition adds its own counts and markers
    there, so it is compared by the summary report read from it."""
    assert herald.clickhouse is not None
    return {
        table: table_contents(herald.clickhouse, table) for table in TABLE_COLUMNS if table != ROLLUP_TABLE
    }


def _without_sends(
    tables: dict[str, list[tuple[Any, ...]]], logged: set[str]
) -> tuple[dict[str, list[tuple[Any, ...]]], set[str]]:
    """The report rows of the events in `logged` without their log positions, and the types of the
    message rows left out. The workers send the messages they queue (the embedded run here sends none),
    so their log holds sends besides, and the events after them sit at other positions."""
    kept: dict[str, list[tuple[Any, ...]]] = {}
    left_out: set[str] = set()
    for table, rows in tables.items():
        columns = TABLE_COLUMNS[table]
        place = {name: n for n, name in enumerate(columns)}
        if table == "message_events":
            left_out |= {row[place["event_type"]] for row in rows if row[0] not in logged}
            rows = [row for row in rows if row[0] in logged]
        kept[table] = sorted(tuple(v for n, v in enumerate(row) if columns[n] != "position") for row in rows)
    return kept, left_out


def _summary_request() -> ReportRequest:
    return ReportRequest(
        period=Period(START.date(), START.date()),
        group_by="campaign",
        metrics=("email_queued", "email_opens", "email_unique_clicks"),
    )


def test_the_workers_fill_clickhouse_server_with_the_report_rows_the_embedded_runtime_makes(
    tmp_path: Path, broker: str, clickhouse_server: tuple[str, int]
) -> None:
    host, port = clickhouse_server
    server = {"reports_engine": "server", "clickhouse_host": host, "clickhouse_port": port}
    embedded = _herald(tmp_path / "embedded", **server, clickhouse_database="embedded_reports")
    try:

        def drain() -> None:
            embedded.runtime.drain()
            assert embedded.reports_runtime is not None
            embedded.reports_runtime.drain()

        _campaign_and_engagement(embedded, drain)
        expected = _report_tables(embedded)
        expected_summary = run_report(embedded.clickhouse, "summary", _summary_request())
        embedded_log = list(embedded.store.read_all(1))
        assert len(expected["message_events"]) > 90 and expected["subscription_changes"]
    finally:
        embedded.close()

    env = {
        "HERALD_ADMIN_TOKEN": ADMIN_TOKEN,
        "HERALD_REPORTS_ENGINE": "server",
        "HERALD_CLICKHOUSE_HOST": host,
        "HERALD_CLICKHOUSE_PORT": str(port),
        "HERALD_CLICKHOUSE_DATABASE": "scale_reports",
    }
    herald = _herald(tmp_path / "scale", "scale", **server, clickhouse_database="scale_reports")
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = ScaleCluster(herald.settings.data_dir, broker, "herald-events-reports", PARTITIONS, logs, env)
    try:
        settle = _two_workers(cluster, herald)
        _campaign_and_engagement(herald, settle)
        # the workers' senders try each message on their own passes: the outcomes reach the sink after
        cluster.wait_for(lambda: herald.projections.send_queue.waiting() == 0, "every message tried")
        settle()
        logged = {str(e.event_id) for e in embedded_log}
        found, extra = _without_sends(_report_tables(herald), logged)
        assert found == _without_sends(expected, logged)[0]
        assert extra == {"not_delivered"}  # the workers tried to send: no virtual sender is set up
        assert run_report(herald.clickhouse, "summary", _summary_request()) == expected_summary
    finally:
        cluster.stop()
        herald.close()


# --- scenarios: journeys live in their profile's partition ------------------------------------------

SCENARIO_PROFILES = 30


def _welcome_scenario(herald: Herald, settle: Settle) -> tuple[str, str, str]:
    """A scenario every import enters: the Welcome campaign, a one-minute pause, the Later campaign; 30
    profiles imported into it. (welcome, later, scenario id)."""
    ready(herald)
    settle()
    welcome, later = trigger(herald, "Welcome"), trigger(herald, "Later")
    settle()
    the_graph = graph(
        campaign_node("2", welcome, "3"),
        pause_node("3", "4", kind="relative", minutes=1),
        campaign_node("4", later),
    )
    scenario_id = scenario(herald, the_graph, capture=ImportCapture(via="any"))
    settle()
    _import(herald, 0, SCENARIO_PROFILES, generation=0)
    settle()
    return welcome, later, scenario_id


def _journeys(herald: Herald, scenario_id: str) -> Counter[tuple[str, ...]]:
    """How many profiles went through each sequence of journey events."""
    streams: dict[str, list[str]] = {}
    for event in herald.store.read_all(1):
        if event.stream.startswith(f"journey-{scenario_id}-"):
            streams.setdefault(event.stream, []).append(event.type)
    return Counter(tuple(types) for types in streams.values())


def test_scenario_journeys_run_in_their_profiles_partitions_and_the_coordinator_ends_their_waits(
    tmp_path: Path, cluster: ScaleCluster
) -> None:
    embedded = _herald(tmp_path / "embedded")
    try:
        welcome, later, sid = _welcome_scenario(embedded, embedded.runtime.drain)
        assert len(messages_of(embedded, later)) == 0  # still pausing
        embedded.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
        embedded.scenarios.timers.fire_due(embedded.clock.now())
        embedded.runtime.drain()
        expected = (set(messages_of(embedded, welcome)), set(messages_of(embedded, later)))
        expected_journeys = _journeys(embedded, sid)
    finally:
        embedded.close()
    assert len(expected[0]) == len(expected[1]) == SCENARIO_PROFILES

    herald = _herald(cluster.data, engine="scale")
    try:
        settle = _two_workers(cluster, herald)
        welcome, later, sid = _welcome_scenario(herald, settle)
        # the workers' clock is the system's, past the commands' (START): the waits are due at once
        cluster.wait_for(lambda: len(messages_of(herald, later)) == SCENARIO_PROFILES, "the Later messages")
        settle()
        assert (set(messages_of(herald, welcome)), set(messages_of(herald, later))) == expected
        assert _journeys(herald, sid) == expected_journeys
        assert all(len(ids) == 1 for ids in messages_of(herald, later).values())  # each made once
    finally:
        herald.close()
