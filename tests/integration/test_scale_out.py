"""The scale engine: relay → Kafka (Tansu) → Faust worker builds the read models the runtime builds.

The same commands run twice, with the same clock and id seed: once with the
in-process runtime drained between steps, once with `herald relay` and
`herald worker` running as processes over the data directory and the test
waiting for their checkpoints between steps. The read models' checksums must
be equal. The second test kills the worker with SIGKILL while it is part-way
through the log (the kill point is read off its checkpoints), restarts it,
and checks that nothing was lost (same checksums) and nothing doubled (same
number of events in the log, one stop-list entry event).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import pytest

from herald.api.routes.reports import run_report
from herald.api.wiring import Herald, build
from herald.domain import campaigns as cp
from herald.domain import templates as tp
from herald.domain.statuses import Status
from herald.domain.stop_lists import PLATFORM_INVALID_LIST_ID, stop_list_stream
from herald.domain.subscriptions import Cause, ChangeSubscriptionStatus
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.processors.relay import ensure_topic
from herald.projections.clickhouse_sink import TABLE_COLUMNS, table_contents
from herald.reports.base import Period, ReportRequest
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.builders import create_resource, customers
from tests.conftest import START
from tests.tansu import running_tansu

CTX = CommandContext(actor="test", source="test")
PARTITIONS = 3
ADMIN_TOKEN = "scale-admin-token"
Settle = Callable[[], object]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_tansu(tmp_path_factory.mktemp("tansu")) as bootstrap:
        yield bootstrap


def _herald(data: Path, **reports: Any) -> Herald:
    settings = Settings(data_dir=data, admin_token=ADMIN_TOKEN, **({"reports_engine": "off"} | reports))
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


def _catalog_and_profiles(herald: Herald, settle: Settle) -> None:
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


# --- the scale engine as processes ----------------------------------------------------------------


class ScaleOut:
    """`herald relay` and `herald worker` over one data directory, and their checkpoints."""

    def __init__(
        self, herald: Herald, bootstrap: str, topic: str, logs: Path, env: dict[str, str] | None = None
    ) -> None:
        self.herald = herald
        self._env = env or {}
        self.data = herald.settings.data_dir
        self._args = ["--bootstrap", bootstrap, "--topic", topic, "--partitions", str(PARTITIONS)]
        self._relay_name = f"relay:{topic}"
        self._logs = logs
        self.relay: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._log_files: list[IO[bytes]] = []
        self._runs = 0
        self._killed: subprocess.Popen[bytes] | None = None

    def _start(self, command: str, *extra: str) -> subprocess.Popen[bytes]:
        self._runs += 1
        log = (self._logs / f"{command}-{self._runs}.log").open("wb")
        self._log_files.append(log)
        env = {**os.environ, "HERALD_ADMIN_TOKEN": ADMIN_TOKEN, **self._env}
        argv = [sys.executable, "-m", "herald.api.cli", "--data-dir", str(self.data), command]
        return subprocess.Popen([*argv, *self._args, *extra], env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_relay(self) -> None:
        self.relay = self._start("relay")

    def start_worker(self) -> None:
        # A short session lets the restarted worker take over the killed one's partitions quickly.
        self.worker = self._start("worker", "--session-timeout", "3")

    def kill_worker(self) -> None:
        assert self.worker is not None
        self._killed = self.worker
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()

    def stop(self) -> None:
        for process in (self.worker, self.relay):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self._log_files:
            log.close()

    def checkpoints(self) -> dict[str, int]:
        """Every processor's checkpoint as the worker committed it, and the relay's."""
        found = {name: 0 for name in self.herald.runtime.names}
        found.update(_read_checkpoints(self.data / "readmodels.sqlite"))
        found[self._relay_name] = _read_checkpoints(self.data / "relay.sqlite").get(self._relay_name, 0)
        return found

    def settle(self, seconds: float = 60.0) -> None:
        """Wait until the relay and every processor have reached the head of the log.

        A reactor appends before it saves its checkpoint, so all of them at
        the head means nothing is left to happen.
        """
        self.wait_for(lambda c, head: all(p == head for p in c.values()), "the head of the log", seconds)

    def wait_for(self, done: Callable[[dict[str, int], int], bool], what: str, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            for name, process in (("relay", self.relay), ("worker", self.worker)):
                if process is not None and process is not self._killed and process.poll() is not None:
                    raise AssertionError(f"{name} exited: {self._log_text()}")
            checkpoints, head = self.checkpoints(), self.herald.store.head_position()
            if done(checkpoints, head):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not at {what} ({head}) in {seconds}s: {checkpoints}\n{self._log_text()}"
                )
            time.sleep(0.02)  # polling the checkpoints, not waiting for an outcome

    def _log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self._logs.glob("*.log")))


def _read_checkpoints(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            return {
                name: int(position)
                for name, position in conn.execute("SELECT name, position FROM checkpoints")
            }
        except sqlite3.OperationalError:  # the table is not there yet
            return {}


@pytest.fixture
def scale(tmp_path: Path, broker: str, request: pytest.FixtureRequest) -> Iterator[ScaleOut]:
    herald = _herald(tmp_path / "scale")
    logs = tmp_path / "logs"
    logs.mkdir()
    topic = f"herald-events-{request.node.name.replace('_', '-')[:40]}"
    scale = ScaleOut(herald, broker, topic, logs)
    try:
        yield scale
    finally:
        scale.stop()
        herald.close()


def _embedded(tmp_path: Path, write: Callable[[Herald, Settle], None]) -> tuple[dict[str, str], int, Herald]:
    herald = _herald(tmp_path / "embedded")
    write(herald, herald.runtime.drain)
    herald.runtime.drain()
    return herald.projections.checksums(), herald.store.head_position(), herald


def _stop_list_events(herald: Herald) -> list[str]:
    return [e.type for e in herald.store.read_stream(stop_list_stream(PLATFORM_INVALID_LIST_ID))]


# --- the tests -------------------------------------------------------------------------------------


def test_relay_and_faust_worker_build_the_read_models_the_embedded_runtime_builds(
    tmp_path: Path, scale: ScaleOut
) -> None:
    expected, expected_head, embedded = _embedded(tmp_path, _catalog_and_profiles)
    embedded_stop_list = _stop_list_events(embedded)
    embedded.close()

    scale.start_relay()
    scale.start_worker()
    _catalog_and_profiles(scale.herald, scale.settle)

    assert scale.herald.projections.checksums() == expected
    assert scale.herald.store.head_position() == expected_head
    assert _stop_list_events(scale.herald) == embedded_stop_list
    entries = scale.herald.projections.catalog.entries(PLATFORM_INVALID_LIST_ID)
    assert [(e["value"], e["reason"]) for e in entries] == [("user42@example.org", "hard_bounce")]


def _a_longer_stream(herald: Herald, settle: Settle) -> list[str]:
    customers(herald)
    create_resource(herald)
    settle()
    return _import(herald, 0, 600, generation=0)


def _the_rest(herald: Herald, ids: list[str]) -> None:
    _import(herald, 600, 1200, generation=0)
    _import(herald, 0, 600, generation=1)
    _change_status(herald, ids[5], 5, Status.HARD_BOUNCED, Cause.HARD_BOUNCE)


def _interrupted_input(herald: Herald, settle: Settle) -> None:
    ids = _a_longer_stream(herald, settle)
    settle()
    _the_rest(herald, ids)


def test_a_worker_killed_mid_stream_and_restarted_loses_nothing_and_doubles_nothing(
    tmp_path: Path, scale: ScaleOut
) -> None:
    expected, expected_head, embedded = _embedded(tmp_path, _interrupted_input)
    embedded_stop_list = _stop_list_events(embedded)
    embedded.close()

    scale.start_relay()
    scale.start_worker()
    ids = _a_longer_stream(scale.herald, scale.settle)
    scale.settle()
    before = scale.herald.store.head_position()
    _the_rest(scale.herald, ids)
    after = scale.herald.store.head_position()
    middle = before + (after - before) // 3
    scale.wait_for(lambda c, _: c["profiles"] >= middle, f"a third of the new events ({middle})")
    at_kill = scale.checkpoints()["profiles"]
    scale.kill_worker()
    assert at_kill < scale.herald.store.head_position(), "the worker finished before it was killed"

    scale.start_worker()
    scale.settle()

    assert scale.herald.projections.checksums() == expected
    assert scale.herald.store.head_position() == expected_head
    assert (
        _stop_list_events(scale.herald) == embedded_stop_list == ["StopListCreated", "StopListEntriesAdded"]
    )


def test_the_relay_refuses_a_topic_with_another_partition_count(broker: str) -> None:
    ensure_topic(broker, "herald-events-resized", PARTITIONS)
    ensure_topic(broker, "herald-events-resized", PARTITIONS)  # an existing topic of the right size is fine
    with pytest.raises(RuntimeError, match="has 3 partitions, the configuration says 6"):
        ensure_topic(broker, "herald-events-resized", 6)


# --- reports: the ClickHouse sink as one more agent ------------------------------------------------


def _broadcast(herald: Herald, settle: Settle) -> str:
    """A broadcast of one email with one link to database 1's subscribers of resource 7, not started."""
    content = tp.TemplateContent(
        email=tp.EmailContent(subject="Hi", html='<a href="https://x.example/">x</a>')
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


def _queued(herald: Herald) -> int:
    return sum(e.type == "MessageQueued" for e in herald.store.read_all(1))


def test_the_worker_fires_due_timers(tmp_path: Path, scale: ScaleOut) -> None:
    """A broadcast activated with no schedule has one run due at once: only a timer tick starts it."""
    scale.start_relay()
    scale.start_worker()
    herald = scale.herald
    _catalog_and_profiles(herald, scale.settle)
    campaign_id = _broadcast(herald, scale.settle)
    herald.campaigns.activate(campaign_id, CTX)
    assert _queued(herald) == 0  # this process fires no timers: `herald serve` leaves them to the worker
    scale.wait_for(lambda checkpoints, head: _queued(herald) > 0, "messages of the timer's run")
    scale.settle()
    assert herald.campaigns.campaign(campaign_id).status is cp.CampaignStatus.COMPLETED


def _report_tables(herald: Herald) -> dict[str, list[tuple[Any, ...]]]:
    assert herald.clickhouse is not None
    return {table: table_contents(herald.clickhouse, table) for table in TABLE_COLUMNS}


def test_the_worker_fills_clickhouse_server_with_the_report_rows_the_embedded_runtime_makes(
    tmp_path: Path, broker: str, clickhouse_server: tuple[str, int]
) -> None:
    host, port = clickhouse_server
    server = {"reports_engine": "server", "clickhouse_host": host, "clickhouse_port": port}
    embedded = _herald(tmp_path / "embedded", **server, clickhouse_database="embedded_reports")
    try:

        def settle() -> None:
            embedded.runtime.drain()
            assert embedded.reports_runtime is not None
            embedded.reports_runtime.drain()

        _campaign_and_engagement(embedded, settle)
        expected = _report_tables(embedded)
        expected_summary = run_report(embedded.clickhouse, "summary", _summary_request())
        assert len(expected["message_events"]) > 90 and expected["subscription_changes"]
    finally:
        embedded.close()

    env = {
        "HERALD_REPORTS_ENGINE": "server",
        "HERALD_CLICKHOUSE_HOST": host,
        "HERALD_CLICKHOUSE_PORT": str(port),
        "HERALD_CLICKHOUSE_DATABASE": "scale_reports",
    }
    herald = _herald(tmp_path / "scale", **server, clickhouse_database="scale_reports")
    logs = tmp_path / "logs"
    logs.mkdir()
    scale = ScaleOut(herald, broker, "herald-events-reports", logs, env)
    try:
        scale.start_relay()
        scale.start_worker()
        _campaign_and_engagement(herald, scale.settle)
        assert _report_tables(herald) == expected
        assert run_report(herald.clickhouse, "summary", _summary_request()) == expected_summary
    finally:
        scale.stop()
        herald.close()


def _summary_request() -> ReportRequest:
    return ReportRequest(
        period=Period(START.date(), START.date()),
        group_by="campaign",
        metrics=("email_queued", "email_opens", "email_unique_clicks"),
    )
