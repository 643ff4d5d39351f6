"""Wiring: the one place that chooses adapters and builds Herald's parts from settings."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import get_type_hints

from herald.api.access import AccessCheck
from herald.api.auth import Authenticator
from herald.domain.events import registry
from herald.domain.profiles import ProfileState
from herald.domain.scenario_graph import AnyNode
from herald.domain.scenario_instances import Instance
from herald.domain.scenario_steps import EffectOutcome
from herald.domain.scenarios import ScenarioState
from herald.domain.segment_eval import ProfileFacts
from herald.infra.clickhouse import ChdbClickHouse, ClickHouse, ServerClickHouse
from herald.infra.clickhouse_migrations import migrate
from herald.infra.clock import Clock, SystemClock
from herald.infra.config import Settings
from herald.infra.event_store import EventStore, StreamAppend
from herald.infra.export_files import ExportFiles
from herald.infra.external_sets import ExternalSets
from herald.infra.ids import IdSource
from herald.infra.import_files import ImportFiles
from herald.infra.log_names import open_log_names
from herald.infra.parked_events import SqliteParkedEvents
from herald.infra.pixel_signing import PixelSigner
from herald.infra.profile_keys import ProfileKeys
from herald.infra.promo_generator import ExternalCodeGenerator
from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
from herald.infra.remote_content import RemoteContentFetcher, RemoteContentPolicy
from herald.infra.run_audiences import RunAudiences
from herald.infra.sealed_store import SealedEventStore, Sealer
from herald.infra.secret_box import SecretBox, load_secret_box, private_file
from herald.infra.segment_files import SegmentFiles
from herald.infra.signing import TokenSigner
from herald.infra.sqlite_event_store import SqliteEventStore
from herald.infra.stream_locks import StreamLocks
from herald.infra.webhooks import WebhookCaller
from herald.messages.deliveries import DeliveryService
from herald.messages.email import EmailChannel
from herald.messages.push import PushChannel
from herald.messages.queued import QueuedMessages
from herald.messages.rendering import MessageRenderer, current_fragments
from herald.messages.sms import SmsChannel
from herald.messages.telegram import TelegramChannel
from herald.messages.worker import MessageWorker
from herald.processors.backoff import Backoff, RetryPolicy
from herald.processors.bulk_population import BulkMembers
from herald.processors.campaign_chain import CampaignChain
from herald.processors.campaign_runs import CampaignRunner
from herald.processors.goal_carry import GoalCarry
from herald.processors.jobs import JobProcessor
from herald.processors.partition_store import open_partition_store, partition_path
from herald.processors.promo_jobs import PromoCodeJobs
from herald.processors.runtime import InProcessRuntime, Reactor
from herald.processors.scenarios import ScenarioProcessor
from herald.processors.scoring_rules import ScoringRules
from herald.processors.segment_membership import SegmentMembershipProcessor
from herald.processors.segment_triggers import SegmentTriggers
from herald.processors.stop_list_rules import HardBounceRule
from herald.projections.access import AccessProjection
from herald.projections.api_tokens import ApiTokensProjection
from herald.projections.audit import AuditProjection
from herald.projections.campaigns import CampaignsProjection
from herald.projections.catalog import CatalogProjection
from herald.projections.clickhouse_sink import ClickHouseSink
from herald.projections.erasure import ErasureProjection
from herald.projections.jobs import JobsProjection
from herald.projections.loyalty import LoyaltyProjection
from herald.projections.partitioned import MergedConnection, open_merged
from herald.projections.profile_states import profile_loader
from herald.projections.profiles import ProfilesProjection
from herald.projections.scenario_instances import ScenarioInstancesProjection
from herald.projections.scheduled_imports import ScheduledImportsProjection
from herald.projections.segments import SegmentsProjection
from herald.projections.send_history import SendHistoryProjection
from herald.projections.send_queue import SendQueueProjection
from herald.projections.short_links import ShortLinksProjection
from herald.projections.sqlite_projection import SqliteProjection
from herald.reports import report_registry
from herald.reports.base import Report
from herald.reports.bulk_members import CatchUp, ReportStoreMembers
from herald.reports.retention import ReportRetention
from herald.senders.inbound_smtp import InboundServer
from herald.senders.webpush import generate_vapid_key
from herald.services.aggregates import Aggregates
from herald.services.bulk import DatabaseClearing, JobAudience, MassUpdates
from herald.services.campaigns import CampaignService
from herald.services.catalog import CatalogService
from herald.services.device_subscriptions import DeviceSubscriptions
from herald.services.erasure import ErasureService
from herald.services.exports import Exports
from herald.services.goals import GoalService
from herald.services.imports import ImportService
from herald.services.inbound import InboundService
from herald.services.jobs import JobService
from herald.services.loyalty import LoyaltyPrograms
from herald.services.pixels import PixelService
from herald.services.profiles import ProfileService
from herald.services.promo_codes import CodeMaker, PromoCodeService
from herald.services.promo_rendering import CampaignPromoCodes
from herald.services.scenario_effects import ScenarioEffects
from herald.services.scenario_promo import ScenarioPromoCodes
from herald.services.scenario_timers import ScenarioTimers
from herald.services.scenario_webhooks import ScenarioWebhooks
from herald.services.scenarios import ScenarioService
from herald.services.scheduled_imports import ScheduledImportService
from herald.services.scoring import ScoringService
from herald.services.segment_members import (
    FetchedSets,
    InProcessMembers,
    MembersEngine,
    SegmentMembers,
    SqlMembers,
)
from herald.services.segment_urls import opened_url
from herald.services.segments import ProfilesForEvaluation, SegmentService, StoredSegments
from herald.services.senders import SenderService
from herald.services.sending_policies import SendingPolicyService
from herald.services.templates import TemplateService
from herald.services.tokens import TokenService
from herald.services.tracking import TrackingService
from herald.services.users import UserService

log = logging.getLogger(__name__)
LOOPS = (
    "timers",
    "sender",
    "sender_sms",
    "sender_push",
    "sender_telegram_bot",
)  # the server's loops besides the runtimes
TIMER_TICK_SECONDS = 5
SCENARIO_TIMER_IDLE_SECONDS = 0.5  # the longest a new, earlier wait can go unnoticed
SCENARIO_TIMER_MIN_SECONDS = 0.01
SEND_IDLE_SECONDS = 1
CATCH_UP_EVENTS = 100_000


@dataclass
class Projections:
    profiles: ProfilesProjection
    catalog: CatalogProjection
    api_tokens: ApiTokensProjection
    campaigns: CampaignsProjection
    send_history: SendHistoryProjection
    send_queue: SendQueueProjection
    segments: SegmentsProjection
    short_links: ShortLinksProjection
    jobs: JobsProjection
    scheduled_imports: ScheduledImportsProjection
    access: AccessProjection
    audit: AuditProjection
    membership: SegmentMembershipProcessor  # realtime segment membership: folds, and appends its changes
    loyalty: LoyaltyProjection
    scenarios: ScenarioInstancesProjection
    erasure: ErasureProjection  # last: drops an erased profile's rows after the others saw the batch

    def all(self) -> list[SqliteProjection]:
        return [
            self.profiles,
            self.catalog,
            self.api_tokens,
            self.campaigns,
            self.send_history,
            self.send_queue,
            self.segments,
            self.short_links,
            self.jobs,
            self.scheduled_imports,
            self.access,
            self.audit,
            self.membership,
            self.loyalty,
            self.scenarios,
            self.erasure,
        ]

    def checksums(self) -> dict[str, str]:
        return {p.name: p.checksum() for p in self.all()}


@dataclass
class Herald:
    """Everything a running Herald holds: the log, read models, runtime, services."""

    settings: Settings
    clock: Clock
    ids: IdSource
    store: EventStore
    projections: Projections
    runtime: InProcessRuntime
    aggregates: Aggregates
    auth: Authenticator
    catalog: CatalogService
    profiles: ProfileService
    tracking: TrackingService
    tokens: TokenService
    templates: TemplateService
    campaigns: CampaignService
    policies: SendingPolicyService
    segments: SegmentService
    scenarios: ScenarioService
    webhooks: ScenarioWebhooks
    scenario_ports: ScenarioPorts  # what scenario processors act through (one per partition, scaled out)
    deliveries: DeliveryService
    senders: SenderService
    inbound: InboundService
    loyalty: LoyaltyPrograms
    promo_codes: PromoCodeService
    pixels: PixelService
    goals: GoalService
    scoring: ScoringService
    pixel_signer: PixelSigner
    queued: QueuedMessages  # queued messages rendered to be sent, or as they were sent
    email: MessageWorker
    sms: MessageWorker
    push: MessageWorker  # web push, and app push through FCM or APNs
    telegram: MessageWorker  # Telegram bots
    device_subscriptions: DeviceSubscriptions
    signer: TokenSigner
    box: SecretBox  # seals and opens the secrets stored in the log
    vapid_private_key: str  # the account's web push (VAPID) key, PEM, kept in the data directory
    remote: RemoteContentFetcher
    code_generator: ExternalCodeGenerator
    run_audiences: RunAudiences
    clickhouse: ClickHouse | None
    reports: dict[str, Report]  # the report registry, the funnel's segment steps reading segments
    external_sets: ExternalSets
    segment_files: SegmentFiles  # uploaded CSV files that segments' external rules read
    reports_runtime: InProcessRuntime | None
    jobs: JobService
    imports: ImportService
    import_files: ImportFiles
    scheduled_imports: ScheduledImportService
    import_fetcher: RemoteContentFetcher  # scheduled imports' downloads: the guard, the import's limits
    exports: Exports
    export_files: ExportFiles
    mass_updates: MassUpdates
    clearing: DatabaseClearing
    users: UserService
    erasure: ErasureService
    report_retention: ReportRetention | None
    access_check: AccessCheck = field(init=False, repr=False)
    # the server's loops besides the runtimes, each backing off after failures (their metrics too)
    loops: dict[str, Backoff] = field(
        default_factory=lambda: {name: Backoff(name, RetryPolicy(), log) for name in LOOPS}
    )
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    _listener: InboundServer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.access_check = AccessCheck(self)

    def start_processors(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.runtime.run()),
            loop.create_task(self._timers()),
            *(loop.create_task(self._send(worker)) for worker in self.workers),
            loop.create_task(self._scenario_timers()),
            loop.create_task(self._webhook_calls()),
        ]
        if self.reports_runtime is not None:
            # its own loop: a report store that is down delays reports, never sending or read models
            self._tasks.append(loop.create_task(self.reports_runtime.run()))
        if self.settings.inbound_smtp_port is not None:
            self._listener = InboundServer(
                self.settings.host, self.settings.inbound_smtp_port, self._inbound(loop)
            )
            self._listener.start()

    def _inbound(self, loop: asyncio.AbstractEventLoop) -> Callable[[bytes, str, list[str]], None]:
        """The listener's handler: it runs on the listener's thread, the log is written on the app's loop."""

        async def receive(raw: bytes, recipients: list[str]) -> None:
            self.inbound.receive(raw, recipients)

        def handle(raw: bytes, mail_from: str, recipients: list[str]) -> None:
            asyncio.run_coroutine_threadsafe(receive(raw, recipients), loop).result(timeout=30)

        return handle

    def runtimes(self) -> list[InProcessRuntime]:
        """The processor runtimes of this process: the main one, and the report sink's when reports are on."""
        return [self.runtime, *([self.reports_runtime] if self.reports_runtime is not None else [])]

    @property
    def workers(self) -> tuple[MessageWorker, ...]:
        """One sender worker per channel that has one."""
        return (self.email, self.sms, self.push, self.telegram)

    async def _send(self, worker: MessageWorker) -> None:
        """One channel's sender: settle what a previous run left, then send what falls due."""
        backoff = self.loops[_loop_name(worker)]
        while True:
            try:
                await worker.recover()
                break
            except Exception as error:
                await asyncio.sleep(backoff.failed(error, self.clock.now(), "settling").total_seconds())
        while True:
            await asyncio.sleep(await self.send_pass(worker))

    async def send_pass(self, worker: MessageWorker | None = None) -> float:
        """One pass of a channel's sender (default: email's); returns the seconds to wait before the
        next. A message that cannot be made is given up by the worker; a failure of the pass itself
        (the store, a bug) backs off, one log line per failure."""
        worker = worker or self.email
        backoff = self.loops[_loop_name(worker)]
        try:
            sent = await worker.run_once()
        except Exception as error:
            return backoff.failed(error, self.clock.now()).total_seconds()
        backoff.succeeded()
        return 0 if sent else SEND_IDLE_SECONDS

    def tick(self) -> None:
        """Fire every timer that fell due: campaign runs, scheduled imports, delayed unsubscribes, segment
        recalculations, realtime-membership windows, the waits for delivery reports, scenario audience
        runs and waits; and drop audit entries and report rows past their retention."""
        now = self.clock.now()
        self.campaigns.tick(now)
        self.scheduled_imports.tick(now)
        if self.settings.engine != "scale":  # there each worker expires its partitions' copies
            self.projections.audit.expire(now, self.settings.audit_retention_days)
        if self.report_retention is not None:
            self.report_retention.apply(now)
        self.segments.tick(now)
        self.projections.membership.tick(now)
        self.deliveries.apply_due_unsubscribes(self.projections.send_queue.due_unsubscribes(now), now)
        self.deliveries.expire_delivery_waits(self.projections.send_queue.due_delivery_waits(now), now)
        self.scenarios.tick(now)

    async def _scenario_timers(self) -> None:
        """Fire scenario waits when they fall due (not every tick: a pause ends on time, to the second)."""
        timers = self.scenarios.timers
        while True:
            try:
                timers.fire_due(self.clock.now())
                due = timers.next_due()
            except Exception:  # a failing timer must not stop the others; the next round retries it
                log.exception("scenario timers failed")
                due = None
            wait = SCENARIO_TIMER_IDLE_SECONDS if due is None else (due - self.clock.now()).total_seconds()
            await asyncio.sleep(min(max(wait, SCENARIO_TIMER_MIN_SECONDS), SCENARIO_TIMER_IDLE_SECONDS))

    async def _webhook_calls(self) -> None:
        """Make the scenario webhook calls that are due, off the processors."""
        while True:
            try:
                made = await self.webhooks.run_once()
            except Exception:  # one failing call must not stop the others
                log.exception("scenario webhook calls failed")
                made = 0
            await asyncio.sleep(0 if made else SEND_IDLE_SECONDS)

    async def _timers(self) -> None:
        """Fire due timers every `TIMER_TICK_SECONDS` (the runtime does the runs they start)."""
        while True:
            await asyncio.sleep(self.timer_pass())

    def timer_pass(self) -> float:
        """One tick; returns the seconds to wait before the next: longer after each failure in a row
        (one log line per failure) until a tick passes again."""
        backoff = self.loops["timers"]
        try:
            self.tick()
        except Exception as error:
            return max(TIMER_TICK_SECONDS, backoff.failed(error, self.clock.now()).total_seconds())
        backoff.succeeded()
        return TIMER_TICK_SECONDS

    async def stop_processors(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._tasks:
            self.runtime.stop()
            if self.reports_runtime is not None:
                self.reports_runtime.stop()
            # the timer, sender, scenario-timer and webhook loops; the runtimes stop themselves
            for task in self._tasks[1 : 4 + len(self.workers)]:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        for worker in self.workers:
            await worker.close()

    def close(self) -> None:
        if self.clickhouse is not None:
            self.clickhouse.close()
        self.run_audiences.close()
        self.remote.close()
        self.code_generator.close()
        self.import_fetcher.close()
        self.webhooks.close()
        self.external_sets.close()
        self.store.close()
        self.projections.profiles.conn.close()


def _loop_name(worker: MessageWorker) -> str:
    """A channel's sender loop (its backoff and metrics): `sender` for email, as before channels."""
    channel = worker.channel.name
    return "sender" if channel == "email" else f"sender_{channel}"


@dataclass
class ScenarioPorts:
    """What the scenario processor and the webhook worker read and do, over the services."""

    scenarios: ScenarioService
    effects: ScenarioEffects
    membership: SegmentMembershipProcessor
    clock: Clock
    account_timezone: str
    promo: ScenarioPromoCodes | None = None

    def now(self) -> datetime:
        return self.clock.now()

    def scenario(self, scenario_id: str) -> ScenarioState:
        return self.scenarios.scenario(scenario_id)

    def profile(self, profile_id: str) -> ProfileState:
        return self.scenarios.campaigns.profile(profile_id)

    def facts(self, profile_id: str) -> ProfileFacts:
        return self.membership.facts(profile_id)

    def act(
        self, node: AnyNode, scenario: ScenarioState, profile: ProfileState, instance: Instance, step_id: str
    ) -> tuple[EffectOutcome, list[StreamAppend]]:
        return self.effects.act(node, scenario, profile, instance, step_id)

    def settled(self) -> None:
        self.effects.settled()

    def promo_codes(self, profile_id: str) -> Mapping[str, str]:
        return self.promo.held(profile_id) if self.promo is not None else {}


def reactors(
    campaigns: CampaignService,
    audiences: RunAudiences,
    jobs: JobService,
    promo_codes: PromoCodeService,
    store: EventStore,
    scoring: ScoringService,
) -> list[Reactor]:
    """The processors that turn events into further events or commands."""
    return [
        HardBounceRule(campaigns.catalog.stop_lists),
        CampaignRunner(campaigns, audiences),
        CampaignChain(campaigns),
        SegmentTriggers(campaigns),
        PromoCodeJobs(promo_codes),
        GoalCarry(store),
        ScoringRules(scoring),
        JobProcessor(jobs),
    ]


def open_event_store(settings: Settings, clock: Clock) -> SealedEventStore:
    """The log: the SQLite store, profiles' personal data sealed with their keys from the data directory."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = ProfileKeys.in_data_dir(settings.data_dir)
    log = SqliteEventStore(settings.event_store_path, clock)
    names = open_log_names(settings.data_dir, settings.event_store_path)  # after the log's schema is made
    return SealedEventStore(log, Sealer(keys, names))


def build_projections(
    readmodel_path: Path, store: EventStore, account_timezone: str = "UTC", bulk: BulkMembers | None = None
) -> Projections:
    """The read models over one SQLite file; `bulk` lets segment population read the report store."""
    return projections_over(open_readmodel_db(readmodel_path), store, account_timezone, bulk)


def projections_over(
    conn: sqlite3.Connection,
    store: EventStore,
    account_timezone: str = "UTC",
    bulk: BulkMembers | None = None,
) -> Projections:
    """Every read model over one connection: the embedded file, a partition's store, or their merge."""
    return Projections(
        profiles=ProfilesProjection(conn, profile_loader(store)),
        catalog=CatalogProjection(conn),
        api_tokens=ApiTokensProjection(conn),
        campaigns=CampaignsProjection(conn),
        send_history=SendHistoryProjection(conn),
        send_queue=SendQueueProjection(conn),
        segments=SegmentsProjection(conn),
        short_links=ShortLinksProjection(conn),
        jobs=JobsProjection(conn),
        scheduled_imports=ScheduledImportsProjection(conn),
        access=AccessProjection(conn),
        audit=AuditProjection(conn),
        membership=SegmentMembershipProcessor(conn, store, bulk=bulk),
        loyalty=LoyaltyProjection(conn),
        scenarios=ScenarioInstancesProjection(conn, store, account_timezone),
        erasure=ErasureProjection(conn),
    )


def build(settings: Settings, clock: Clock | None = None, ids: IdSource | None = None) -> Herald:
    """A Herald over the embedded default: SQLite log, SQLite read models, in-process runtime."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    ids = ids or IdSource()
    store = open_event_store(settings, clock)
    clickhouse = build_clickhouse(settings)
    if settings.engine == "scale":  # the partitions' sinks write a report server; population folds the log
        projections = projections_over(merged_readmodels(settings), store, settings.account_timezone)
    else:
        # A saved segment is populated from the report store once the embedded sink has caught up; the
        # sink's runtime is made below (it takes the read models' connection), hence the late lookup.
        bulk = ReportStoreMembers(clickhouse, lambda: catch_up()) if clickhouse is not None else None
        projections = build_projections(settings.readmodel_path, store, settings.account_timezone, bulk)
    aggregates = Aggregates(store, registry, clock, ids)
    catalog = CatalogService(aggregates, projections.catalog, store.sealer.names.entry_digest)
    profiles = ProfileService(aggregates, catalog, projections.profiles, store.sealer.names)
    remote = RemoteContentFetcher(remote_content_policy(settings))
    renderer = MessageRenderer(current_fragments(aggregates), remote)
    secret = settings.secret_key or _stored_secret(settings.data_dir, "secret-key")
    signer = TokenSigner(secret)
    box = load_secret_box(settings.secrets_key, settings.data_dir)
    senders = SenderService(aggregates, box)
    conn = projections.profiles.conn
    reports_runtime = (
        InProcessRuntime(
            store,
            SqliteCheckpoints(conn),
            projections=[ClickHouseSink(clickhouse, load_profile=profile_loader(store))],
            clock=clock,
            parked=SqliteParkedEvents(conn),
        )
        if clickhouse is not None
        else None
    )
    external_sets = ExternalSets(remote_content_policy(settings))
    segment_files = SegmentFiles.in_data_dir(settings.data_dir)
    # With the scale engine the worker feeds the sink: nothing here may drive it as well.
    embedded_sink = reports_runtime if settings.engine == "embedded" else None
    catch_up = report_catch_up(store, embedded_sink)
    segments = segment_service(
        settings, aggregates, projections, (clickhouse, embedded_sink), external_sets, segment_files, box
    )
    loyalty = LoyaltyPrograms(aggregates, projections.loyalty)
    code_generator = ExternalCodeGenerator(remote_content_policy(settings))
    promo_codes = PromoCodeService(
        aggregates,
        loyalty,
        projections.loyalty,
        CodeMaker(code_generator, ids.secret_random(), settings.account_id),
        StreamLocks(settings.data_dir / "locks"),
    )
    campaign_codes = CampaignPromoCodes(promo_codes)
    campaigns = CampaignService(
        catalog,
        projections.profiles,
        projections.campaigns,
        projections.send_history,
        renderer,
        signer,
        settings.account_timezone,
        segments,
        campaign_codes,
    )
    audiences = RunAudiences(settings.data_dir / "runs.sqlite")
    deliveries = DeliveryService(aggregates, catalog)
    tracking = TrackingService(aggregates, catalog, projections.profiles)
    pixel_signer = PixelSigner(secret)
    pixels = PixelService(aggregates, profiles, projections.profiles, tracking, deliveries, pixel_signer)
    scoring = ScoringService(catalog)
    scenario_promo = ScenarioPromoCodes(promo_codes)
    queued = QueuedMessages(aggregates, catalog, renderer, signer)
    email = EmailChannel(queued, senders, signer)
    vapid_private_key = _stored_vapid_key(settings.data_dir)
    jobs = JobService(aggregates, projections.jobs)
    import_files = ImportFiles.in_data_dir(settings.data_dir)
    imports = ImportService(jobs, catalog, profiles, import_files)
    import_fetcher = RemoteContentFetcher(import_fetch_policy(settings))
    audience = JobAudience(audiences, projections.profiles, segments.members_now)
    export_files = ExportFiles.in_data_dir(settings.data_dir)
    scenarios = ScenarioService(
        catalog,
        campaigns,
        segments,
        projections.scenarios,
        ScenarioTimers(store, projections.scenarios),
        settings.account_timezone,
        box,
        scenario_promo,
    )
    ports = ScenarioPorts(
        scenarios,
        ScenarioEffects(campaigns, profiles, segments, scenario_promo),
        projections.membership,
        clock,
        settings.account_timezone,
        scenario_promo,
    )
    checkpoints = SqliteCheckpoints(conn)
    runtime = InProcessRuntime(
        store,
        checkpoints,
        # the scenario processor goes last: it reads the read models the pass's batch has updated
        projections=[*projections.all(), ScenarioProcessor(store, checkpoints, ports, projections.scenarios)],
        reactors=reactors(campaigns, audiences, jobs, promo_codes, store, scoring),
        execute=aggregates.execute_request,
        clock=clock,
        parked=SqliteParkedEvents(conn),
    )
    webhooks = ScenarioWebhooks(
        store, projections.scenarios, WebhookCaller(remote_content_policy(settings)), ports, clock, box
    )
    return Herald(
        settings=settings,
        clock=clock,
        ids=ids,
        store=store,
        projections=projections,
        runtime=runtime,
        aggregates=aggregates,
        auth=Authenticator(
            settings.admin_token or _stored_secret(settings.data_dir, "admin-token"),
            projections.api_tokens,
            store,
            projections.access,
            clock,
        ),
        catalog=catalog,
        profiles=profiles,
        tracking=tracking,
        tokens=TokenService(aggregates, projections.api_tokens),
        templates=TemplateService(catalog, profiles, renderer, campaign_codes.preview),
        campaigns=campaigns,
        policies=SendingPolicyService(catalog),
        segments=segments,
        scenarios=scenarios,
        webhooks=webhooks,
        scenario_ports=ports,
        deliveries=deliveries,
        senders=senders,
        inbound=InboundService(deliveries),
        loyalty=loyalty,
        promo_codes=promo_codes,
        pixels=pixels,
        goals=GoalService(pixels, tracking),
        scoring=scoring,
        pixel_signer=pixel_signer,
        queued=queued,
        email=MessageWorker(email, aggregates, projections.send_queue, deliveries, clock),
        sms=MessageWorker(SmsChannel(queued, senders), aggregates, projections.send_queue, deliveries, clock),
        push=MessageWorker(
            PushChannel(queued, senders, vapid_private_key),
            aggregates,
            projections.send_queue,
            deliveries,
            clock,
        ),
        telegram=MessageWorker(
            TelegramChannel(queued, senders), aggregates, projections.send_queue, deliveries, clock
        ),
        device_subscriptions=DeviceSubscriptions(
            catalog, profiles, projections.profiles, settings.allow_http_push_endpoints
        ),
        signer=signer,
        box=box,
        vapid_private_key=vapid_private_key,
        remote=remote,
        code_generator=code_generator,
        run_audiences=audiences,
        clickhouse=clickhouse,
        reports=report_registry(segments.members_now),
        external_sets=external_sets,
        segment_files=segment_files,
        reports_runtime=reports_runtime,
        jobs=jobs,
        imports=imports,
        import_files=import_files,
        scheduled_imports=ScheduledImportService(
            catalog,
            imports,
            import_files,
            import_fetcher,
            projections.scheduled_imports,
            settings.account_timezone,
        ),
        import_fetcher=import_fetcher,
        exports=Exports(jobs, catalog, projections.profiles, audience, export_files),
        export_files=export_files,
        mass_updates=MassUpdates(jobs, profiles, audience, catalog),
        clearing=DatabaseClearing(jobs, profiles, audience),
        users=UserService(aggregates, projections.access),
        erasure=ErasureService(
            profiles,
            store.sealer.keys,
            store.sealer.names,
            clickhouse,
            [import_files.directory, export_files.directory, segment_files.directory],
            catalog.erase_stop_list_entries,
            catch_up,
            projections.profiles.anonymous_ids_of,
            projections.profiles.links_of,
        ),
        report_retention=(
            ReportRetention(clickhouse, settings.report_retention_days)
            if clickhouse is not None and settings.report_retention_days
            else None
        ),
    )


def projection_types() -> list[type[SqliteProjection]]:
    """The classes of every read model `Projections` holds."""
    return list(get_type_hints(Projections).values())


def merged_readmodels(settings: Settings) -> MergedConnection:
    """The scale engine's read models as one database: every partition's store, created if missing."""
    types = projection_types()
    paths = []
    for partition in range(settings.kafka_partitions):
        conn = open_partition_store(settings.partitions_path, partition)
        for projection in types:
            for statement in projection.ddl:
                conn.execute(statement)
        conn.close()
        paths.append(partition_path(settings.partitions_path, partition))
    return open_merged(paths, types)


def build_clickhouse(settings: Settings) -> ClickHouse | None:
    """The report store the settings name, migrated; None when reports are off."""
    if settings.reports_engine == "off":
        return None
    store: ClickHouse
    if settings.reports_engine == "server":
        store = ServerClickHouse(
            settings.clickhouse_host, settings.clickhouse_port, settings.clickhouse_database
        )
    else:
        path = settings.clickhouse_path or settings.data_dir / "clickhouse"
        store = ChdbClickHouse(path, settings.clickhouse_database)
    migrate(store)
    return store


def segment_service(
    settings: Settings,
    aggregates: Aggregates,
    projections: Projections,
    reports: tuple[ClickHouse | None, InProcessRuntime | None],
    external: ExternalSets,
    files: SegmentFiles,
    box: SecretBox,
) -> SegmentService:
    """Segments over the bulk evaluator: SQL on the report store when reports are on, else in process."""
    stored = StoredSegments(aggregates)
    clickhouse, reports_runtime = reports
    engine: MembersEngine = (
        SqlMembers(clickhouse, report_catch_up(aggregates.store, reports_runtime))
        if clickhouse is not None
        else InProcessMembers(
            ProfilesForEvaluation(aggregates, projections.profiles, projections.membership.facts)
        )
    )
    fetched = FetchedSets(lambda s, at: external.post_url(s, at, opened_url(box, s)), files.column)
    evaluator = SegmentMembers(stored, engine, fetched)
    return SegmentService(
        aggregates,
        stored,
        projections.segments,
        projections.profiles,
        evaluator,
        settings.account_timezone,
        box,
    )


def report_catch_up(store: EventStore, runtime: InProcessRuntime | None) -> CatchUp:
    """Before a segment is evaluated over the report store, bring the embedded sink to the log's head,
    so a count or a launch sees the profiles just written (read your writes). A sink further behind
    than `CATCH_UP_EVENTS` (a rebuild) is not waited for; without an embedded sink (the scale engine's
    worker feeds it) evaluation reads what the sink has written. Returns the sink's position (None
    without an embedded sink)."""

    def catch_up() -> int | None:
        if runtime is None:
            return None
        head = store.head_position()
        if head - min(runtime.positions().values(), default=head) <= CATCH_UP_EVENTS:
            runtime.drain(until=head)
        return min(runtime.positions().values(), default=head)

    return catch_up


def remote_content_policy(settings: Settings) -> RemoteContentPolicy:
    """The limits render-time fetches run under, from the settings."""
    networks = settings.remote_allowed_networks
    return RemoteContentPolicy(
        timeout_seconds=settings.remote_timeout_seconds,
        max_bytes=settings.remote_max_bytes,
        allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
    )


def import_fetch_policy(settings: Settings) -> RemoteContentPolicy:
    """Scheduled imports fetch under the same address guard, with the import's size cap and deadline."""
    return dataclasses.replace(
        remote_content_policy(settings),
        timeout_seconds=settings.import_fetch_timeout_seconds,
        max_bytes=settings.import_max_bytes,
    )


def _stored_vapid_key(data_dir: Path) -> str:
    """The web push VAPID private key (P-256, PEM), made on first start and kept beside the other
    secrets: never in the log, so no event carries it."""
    return private_file(data_dir / "vapid-private-key.pem", generate_vapid_key) + "\n"


def _stored_secret(data_dir: Path, name: str) -> str:
    """A secret (admin token, signing key) made on first start and kept in the data directory."""
    return private_file(data_dir / name, lambda: secrets.token_urlsafe(32))
