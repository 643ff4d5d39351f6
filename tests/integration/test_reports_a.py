"""Report sink and reports (summary, growth, click map, soft bounces, non-deliveries) on both engines.

A log of a few hundred events (built from the domain's own event classes, with a seeded generator
over hand-written scenarios) goes through the sink; every report's numbers are then checked against
values the test computes in Python from the same event list, by its own reading of the metric
definitions. The sink is idempotent (the same events twice change nothing) and a rebuild in other
batch sizes, by sinks restarted between batches, gives identical tables.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import httpx
import openpyxl
import pytest
from starlette.applications import Starlette

from herald.api.principal import Principal
from herald.api.routes import reports as report_routes
from herald.domain import deliveries as dl
from herald.domain.access import Rights
from herald.domain.campaigns import CampaignDeleted
from herald.domain.events import Event
from herald.domain.messages import MessageFailed, MessageQueued, MessageSuppressed, Suppression
from herald.domain.profiles import FieldChange, ProfileCreated, ProfileFieldsUpdated
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause, SubscriptionAdded, SubscriptionStatusChanged
from herald.domain.templates import TemplateDeleted
from herald.domain.tracking import ActivityTracked
from herald.infra.clickhouse import ChdbClickHouse, ClickHouse, ServerClickHouse
from herald.infra.clickhouse_migrations import MIGRATIONS, checksum, migrate
from herald.infra.event_store import RecordedEvent
from herald.projections.clickhouse_sink import (
    CHECKPOINT_STRIDE,
    TABLE_COLUMNS,
    ClickHouseSink,
    domain_group,
    table_contents,
)
from herald.projections.message_rollup import stored_checkpoint
from herald.reports import REPORTS
from herald.reports.base import Period, ReportError, ReportRequest, ReportResult
from herald.reports.export import to_csv, to_xlsx

T0 = datetime(2024, 4, 28, 6, 0, tzinfo=UTC)  # a Sunday, before the period
PERIOD = Period(date(2024, 5, 1), date(2024, 5, 14))

# campaign → (channel, template, database, resource)
CAMPAIGNS = {
    "c1": ("email", "t1", "db1", "r1"),
    "c2": ("email", "t2", "db1", "r2"),
    "c3": ("email", "t3", "db2", "r2"),  # deleted at the end
    "c4": ("sms", "t4", "db2", "r1"),
    "c5": ("push", "t5", "db1", "r1"),
}
DELETED_CAMPAIGNS = {"c3"}
DELETED_TEMPLATES = {"t2"}
SENDERS = ("s1", "s2", "s3")
EMAIL_DOMAINS = (
    "gmail.com",
    "googlemail.com",
    "mail.ru",
    "bk.ru",
    "yandex.ru",
    "yandex.com",
    "hotmail.co.uk",
    "outlook.com",
    "yahoo.fr",
    "icloud.com",
    "me.com",
    "example.org",
)
LINKS = {1: ("l1", "l2", "l3"), 2: ("l1", "l4")}  # template version → link ids
SOURCES = ("import", "api", "manual", "segment", "tilda")
VENDORS = (None, "tilda-form-1", "partner")


# --------------------------------------------------------------------------- the log


class Log:
    """The event list as a store would hand it over, and the domain events it was made from."""

    def __init__(self) -> None:
        self.records: list[RecordedEvent] = []
        self.events: list[Event] = []
        self._versions: Counter[str] = Counter()

    def add(self, event: Event, stream: str, occurred_at: datetime | None = None) -> None:
        at = occurred_at or event.at  # type: ignore[attr-defined]
        position = len(self.records) + 1
        self._versions[stream] += 1
        self.records.append(
            RecordedEvent(
                uuid5(NAMESPACE_URL, f"herald-test-event-{position}"),
                stream,
                self._versions[stream],
                position,
                event.type_name,
                event.schema_version,
                at,
                at,
                event.to_data(),
                {},
            )
        )
        self.events.append(event)


@dataclass
class Profile:
    profile_id: str
    database_id: str
    email: str
    phone: str
    token: str


def build_log(seed: int = 5) -> Log:
    """Profiles, subscriptions, messages with their fates, goals and deletions, in time order."""
    rng = random.Random(seed)
    timed: list[tuple[datetime, int, Event, str]] = []  # (time, tie-break, event, stream)
    order = itertools.count()

    def emit(at: datetime, event: Event, stream: str) -> None:
        timed.append((at, next(order), event, stream))

    profiles = [
        Profile(
            f"p{n:02}",
            "db1" if n % 3 else "db2",
            f"user{n}@{EMAIL_DOMAINS[n % len(EMAIL_DOMAINS)]}",
            f"+7900{n:07}",
            f"token-{n}",
        )
        for n in range(30)
    ]
    for profile in profiles:
        _profile_history(rng, emit, profile)
    for number in range(90):
        campaign = rng.choice(sorted(CAMPAIGNS))
        database = CAMPAIGNS[campaign][2]
        candidates = [p for p in profiles if p.database_id == database]
        _message_history(rng, emit, number, campaign, rng.choice(candidates))
    for n in range(12):
        _goal(rng, emit, n, rng.choice(profiles))
    end = T0 + timedelta(days=22)
    emit(end, CampaignDeleted(campaign_id="c3", at=end), "campaign-c3")
    emit(end, TemplateDeleted(template_id="t2"), "template-t2")
    log = Log()
    for at, _, event, stream in sorted(timed, key=lambda item: (item[0], item[1])):
        log.add(event, stream, at)
    return log


Emit = Callable[[datetime, Event, str], None]


def _profile_history(rng: random.Random, emit: Emit, profile: Profile) -> None:
    created = T0 + timedelta(days=rng.randrange(0, 18), minutes=rng.randrange(0, 1440))
    vendor = rng.choice(VENDORS)
    fields: dict[str, Any] = {"email": profile.email}
    if vendor is not None:
        fields["_vendor"] = vendor
    stream = f"profile-{profile.profile_id}"
    ref = {"profile_id": profile.profile_id, "database_id": profile.database_id}
    emit(
        created,
        ProfileCreated(
            **ref,
            md5_id=f"m{profile.profile_id}",
            xxh_id=f"x{profile.profile_id}",
            fields=fields,
            source=rng.choice(SOURCES),
            at=created,
        ),
        stream,
    )
    if rng.random() < 0.3:
        later = created + timedelta(days=rng.randrange(1, 5))
        new = rng.choice([v for v in VENDORS if v != vendor])
        change = {"_vendor": FieldChange(old=vendor, new=new)}
        emit(later, ProfileFieldsUpdated(**ref, changes=change, source="api", at=later), stream)
    for channel, contact in (("email", profile.email), ("sms", profile.phone)):
        resource = rng.choice(["r1", "r2"])
        status = rng.choice([Status.SUBSCRIBED, Status.SUBSCRIBED, Status.UNCONFIRMED])
        at = created + timedelta(minutes=1)
        sub = {**ref, "resource_id": resource, "channel": channel, "contact": contact}
        added = SubscriptionAdded(
            **sub,
            status=status,
            priority=0,
            registered_at=at,
            cause=rng.choice([Cause.IMPORT, Cause.API, Cause.FORM, Cause.MANUAL]),
        )
        emit(at, added, stream)
        for _ in range(rng.randrange(0, 3)):
            at += timedelta(days=rng.randrange(1, 6), hours=rng.randrange(0, 24))
            target, cause = _next_status(rng, status)
            emit(
                at,
                SubscriptionStatusChanged(**sub, from_status=status, to_status=target, cause=cause),
                stream,
            )
            status = target


def _next_status(rng: random.Random, status: Status) -> tuple[Status, Cause]:
    if status == Status.SUBSCRIBED:
        return rng.choice(
            [
                (Status.UNSUBSCRIBED, Cause.UNSUBSCRIBE_LINK),
                (Status.UNSUBSCRIBED, Cause.LIST_UNSUBSCRIBE),
                (Status.UNSUBSCRIBED, Cause.API),
                (Status.COMPLAINER, Cause.COMPLAINT),
                (Status.HARD_BOUNCED, Cause.HARD_BOUNCE),
                (Status.SUSPENDED, Cause.MANUAL),
            ]
        )
    if status == Status.UNCONFIRMED:
        return Status.SUBSCRIBED, Cause.DOI_CONFIRMED
    return rng.choice(
        [(Status.SUBSCRIBED, Cause.MANUAL), (Status.SUBSCRIBED, Cause.FORM), (Status.INVALID, Cause.API)]
    )


def _message_history(rng: random.Random, emit: Emit, number: int, campaign: str, profile: Profile) -> None:
    channel, template, database, resource = CAMPAIGNS[campaign]
    contact = {"email": profile.email, "sms": profile.phone, "push": profile.token}[channel]
    at = T0 + timedelta(days=rng.randrange(0, 20), hours=rng.randrange(0, 24), minutes=rng.randrange(0, 60))
    version = 1 if at < T0 + timedelta(days=9) or template != "t1" else 2
    message_id = f"m{number:03}"
    stream = f"message-{message_id}"
    is_test = rng.random() < 0.1
    common = {
        "message_id": message_id,
        "campaign_id": campaign,
        "profile_id": profile.profile_id,
        "resource_id": resource,
        "channel": channel,
        "contact": contact,
        "is_test": is_test,
    }
    decision = rng.random()
    if decision < 0.07:
        reason = rng.choice([Suppression.STOP_LIST, Suppression.POLICY])
        emit(
            at,
            MessageSuppressed(**common, run_id="run1", reason=reason, detail=f"{reason} rule", at=at),
            stream,
        )
        return
    if decision < 0.12:
        failed = MessageFailed(
            **common,
            run_id="run1",
            template_id=template,
            template_version=version,
            reason="fetch failed",
            at=at,
        )
        emit(at, failed, stream)
        return
    queued = MessageQueued(
        **common,
        run_id="run1",
        database_id=database,
        template_id=template,
        template_version=version,
        due_at=at,
        local_day=at.date(),
        at=at,
    )
    emit(at, queued, stream)
    ref = {**common, "database_id": database, "template_id": template, "template_version": version}
    if rng.random() < 0.08:
        at += timedelta(hours=1)
        emit(at, dl.MessageNotDelivered(**ref, reason="campaign_stopped", detail="stopped", at=at), stream)
        return
    _delivery(rng, emit, stream, ref, at, version)


def _delivery(
    rng: random.Random, emit: Emit, stream: str, ref: dict[str, Any], at: datetime, version: int
) -> None:
    attempt = 1
    at += timedelta(minutes=5)
    emit(at, dl.MessageSendAttempted(**ref, attempt=attempt, sender_id=rng.choice(SENDERS), at=at), stream)
    while rng.random() < 0.25 and attempt < 4:  # soft bounces, each followed by a retry (maybe elsewhere)
        at += timedelta(minutes=20)
        text = rng.choice(
            ["421 4.7.0 Not allowed.", "452 mailbox full", "Sorry, the service is currently .."]
        )
        emit(at, dl.MessageSoftBounced(**ref, attempt=attempt, code=421, response=text, at=at), stream)
        attempt += 1
        at += timedelta(hours=rng.randrange(1, 30))
        emit(
            at, dl.MessageSendAttempted(**ref, attempt=attempt, sender_id=rng.choice(SENDERS), at=at), stream
        )
    fate = rng.random()
    at += timedelta(seconds=30)
    if fate < 0.1:
        text = rng.choice(["550 5.1.1 user unknown", "550 no such domain"])
        emit(at, dl.MessageHardBounced(**ref, code=550, response=text, reason="user_unknown", at=at), stream)
        return
    if fate < 0.16:
        detail = rng.choice(["Max retry times are reached", "DNSBL"])
        emit(
            at,
            dl.MessageNotDelivered(
                **ref, reason=rng.choice(["expired", "sender_error"]), detail=detail, at=at
            ),
            stream,
        )
        return
    emit(at, dl.MessageDelivered(**ref, sender_id="s-final", code=250, response="250 ok", at=at), stream)
    if rng.random() < 0.06:  # the relay accepted it, then a DSN: the mailbox does not exist
        at += timedelta(hours=rng.choice([1, 30]))
        bounce = dl.MessageHardBounced(
            **ref, code=0, response="5.1.1 user unknown", status="5.1.1", source="dsn", at=at
        )
        emit(at, bounce, stream)
        return
    _tracking(rng, emit, stream, ref, at, version)


def _tracking(
    rng: random.Random, emit: Emit, stream: str, ref: dict[str, Any], at: datetime, version: int
) -> None:
    """Opens, reads, clicks, an unsubscribe or a complaint, with the decider's uniqueness rule applied."""
    last_unique: dict[str, datetime] = {}
    hits = []
    for action in ("open", "open", "read", "click", "click", "open", "click"):
        if rng.random() < 0.45:
            at += timedelta(hours=rng.choice([1, 3, 20, 30]))
            hits.append((action, at))
    for action, hit_at in hits:
        bot = rng.random() < 0.1
        last = last_unique.get(action)
        unique = not bot and (last is None or hit_at - last >= timedelta(hours=24))
        if unique:
            last_unique[action] = hit_at
        tracked = {**ref, "unique": unique, "bot": bot, "at": hit_at}
        if action == "open":
            emit(hit_at, dl.MessageOpened(**tracked), stream)
        elif action == "read":
            emit(hit_at, dl.MessageRead(**tracked), stream)
        else:
            link = rng.choice(LINKS[version])
            url = f"https://shop.example/{link}"
            emit(hit_at, dl.LinkClicked(**tracked, link_id=link, url=url, link_name=link.upper()), stream)
    at += timedelta(hours=2)
    if rng.random() < 0.06:
        emit(at, dl.MessageUnsubscribed(**ref, via="link", at=at), stream)
    if rng.random() < 0.04:
        emit(at, dl.ComplaintReceived(**ref, feedback_type="abuse", at=at), stream)


def _goal(rng: random.Random, emit: Emit, n: int, profile: Profile) -> None:
    at = T0 + timedelta(days=rng.randrange(0, 20), hours=rng.randrange(0, 24))
    properties: dict[str, Any] = {
        "goal": rng.choice(["purchase", "signup"]),
        "value": rng.choice([100, -20, 7.5]),
    }
    if n % 4 == 0:
        properties = {"sku": "a1"}  # an ordinary tracked action: no goal, no pixel
    elif n % 4 == 1:
        properties = {"pixel_id": "px1"}
    context = {"page": {"referrer": "https://ref.example/"}, "location": {"country": "RU", "city": "Kazan"}}
    tracked = ActivityTracked(
        database_id=profile.database_id, profile_id=profile.profile_id, name="buy", properties=properties,
        context=context, at=at,
    )  # fmt: skip
    emit(at, tracked, f"activity-{profile.profile_id}")


LOG = build_log()


# ---------------------------------------------------- the test's own reading of the log


@dataclass(frozen=True)
class Fact:
    """One message event as the reports count it, derived here from the domain events."""

    kind: str
    day: date
    channel: str
    campaign: str
    template: str
    version: int
    database: str
    resource: str
    domain: str
    domain_group: str
    sender: str
    vendor: str
    profile: str
    unique: bool
    bot: bool
    test: bool
    bounced_later: bool = False  # its message hard-bounced (a DSN may follow the delivery)
    text: str = ""
    reason: str = ""
    link: str = ""
    url: str = ""
    link_name: str = ""


_KINDS: Mapping[type, str] = {
    MessageQueued: "queued",
    MessageSuppressed: "suppressed",
    MessageFailed: "failed",
    dl.MessageDelivered: "delivered",
    dl.MessageSoftBounced: "soft_bounce",
    dl.MessageHardBounced: "hard_bounce",
    dl.MessageNotDelivered: "not_delivered",
    dl.MessageOpened: "open",
    dl.MessageRead: "read",
    dl.LinkClicked: "click",
    dl.MessageUnsubscribed: "unsubscribe",
    dl.ComplaintReceived: "complaint",
}

GROUP_NAMES = {
    "gmail.com": "Google",
    "googlemail.com": "Google",
    "mail.ru": "Mail.ru",
    "bk.ru": "Mail.ru",
    "yandex.ru": "Yandex",
    "yandex.com": "Yandex",
    "hotmail.co.uk": "Microsoft",
    "outlook.com": "Microsoft",
    "yahoo.fr": "Yahoo",
    "icloud.com": "Apple",
    "me.com": "Apple",
    "example.org": "Other",
}


def note_vendor(vendors: dict[str, str], event: Event) -> None:
    """The profile's vendor from `event` on, if the event sets it."""
    if isinstance(event, ProfileCreated) and "_vendor" in event.fields:
        vendors[event.profile_id] = str(event.fields["_vendor"])
    elif isinstance(event, ProfileFieldsUpdated) and "_vendor" in event.changes:
        new = event.changes["_vendor"].new
        vendors[event.profile_id] = "" if new is None else str(new)


def message_facts(events: Sequence[Event]) -> list[Fact]:
    vendors: dict[str, str] = {}  # each profile's vendor as the log stands at the event read
    sender: dict[str, str] = {}
    facts: list[Fact] = []
    bounced = {e.message_id for e in events if isinstance(e, dl.MessageHardBounced)}
    for event in events:
        note_vendor(vendors, event)
        if isinstance(event, dl.MessageSendAttempted):
            sender[event.message_id] = event.sender_id
            if event.attempt > 1:
                continue
            kind = "sent"
        elif type(event) in _KINDS:
            kind = _KINDS[type(event)]
        else:
            continue
        if isinstance(event, dl.MessageDelivered):
            sender[event.message_id] = event.sender_id
        e: Any = event
        domain = e.contact.split("@")[1] if e.channel == "email" else ""
        before_sending = kind in ("queued", "suppressed", "failed")
        facts.append(
            Fact(
                kind=kind,
                day=e.at.date(),
                channel=e.channel,
                campaign=e.campaign_id,
                template=getattr(e, "template_id", ""),
                version=getattr(e, "template_version", 0),
                database=getattr(e, "database_id", ""),
                resource=e.resource_id,
                domain=domain,
                domain_group=GROUP_NAMES[domain] if domain else "",
                sender="" if before_sending else sender.get(e.message_id, ""),
                vendor=vendors.get(e.profile_id, ""),
                profile=e.profile_id,
                unique=bool(getattr(e, "unique", False)),
                bot=bool(getattr(e, "bot", False)),
                test=e.is_test,
                bounced_later=e.message_id in bounced,
                text=getattr(e, "response", "") or getattr(e, "detail", ""),
                reason=str(getattr(e, "reason", "")),
                link=getattr(e, "link_id", ""),
                url=getattr(e, "url", ""),
                link_name=getattr(e, "link_name", ""),
            )
        )
    return facts


FACTS = message_facts(LOG.events)

# The summary's counters, read from the metric definitions: counter → which facts it counts.
COUNTS: Mapping[str, Callable[[Fact], bool]] = {
    "queued": lambda f: f.kind == "queued",
    "suppressed": lambda f: f.kind == "suppressed",
    "failed": lambda f: f.kind == "failed",
    "sent": lambda f: f.kind == "sent",
    "delivered": lambda f: f.kind == "delivered" and not f.bounced_later,
    "soft_bounces": lambda f: f.kind == "soft_bounce",
    "hard_bounces": lambda f: f.kind == "hard_bounce",
    "not_delivered": lambda f: f.kind == "not_delivered",
    "opens": lambda f: f.kind == "open" and not f.bot,
    "unique_opens": lambda f: f.kind == "open" and f.unique,
    "clicks": lambda f: f.kind == "click" and not f.bot,
    "unique_clicks": lambda f: f.kind == "click" and f.unique,
    "reads": lambda f: f.kind == "read" and not f.bot,
    "unique_reads": lambda f: f.kind == "read" and f.unique,
    "bot_opens": lambda f: f.kind == "open" and f.bot,
    "bot_clicks": lambda f: f.kind == "click" and f.bot,
    "bot_reads": lambda f: f.kind == "read" and f.bot,
    "unsubscribes": lambda f: f.kind == "unsubscribe",
    "complaints": lambda f: f.kind == "complaint",
}
RATIOS: Mapping[str, tuple[str, str]] = {
    "delivery_rate": ("delivered", "sent"),
    "open_rate": ("unique_opens", "delivered"),
    "click_rate": ("unique_clicks", "delivered"),
    "click_to_open_rate": ("unique_clicks", "unique_opens"),
    "read_rate": ("unique_reads", "delivered"),
    "soft_bounce_rate": ("soft_bounces", "sent"),
    "hard_bounce_rate": ("hard_bounces", "sent"),
    "not_delivered_rate": ("not_delivered", "sent"),
    "unsubscribe_rate": ("unsubscribes", "delivered"),
    "complaint_rate": ("complaints", "delivered"),
}
SUMMARY_CHANNELS = ("email", "sms", "push", "telegram_bot")
ALL_SUMMARY_METRICS = tuple(
    f"{channel}_{name}" for channel in SUMMARY_CHANNELS for name in (*COUNTS, *RATIOS)
)


def expected_metric(facts: Sequence[Fact], metric: str) -> Any:
    channel = next(c for c in SUMMARY_CHANNELS if metric.startswith(f"{c}_"))
    name = metric.removeprefix(f"{channel}_")
    mine = [f for f in facts if f.channel == channel]
    if name in COUNTS:
        return sum(1 for f in mine if COUNTS[name](f))
    top, bottom = (sum(1 for f in mine if COUNTS[part](f)) for part in RATIOS[name])
    return top / bottom if bottom else None


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


GROUP_KEYS: Mapping[str, Callable[[Fact], Any]] = {
    "campaign": lambda f: f.campaign,
    "scenario": lambda f: "",
    "database": lambda f: f.database,
    "template": lambda f: f.template,
    "resource": lambda f: f.resource,
    "domain_group": lambda f: f.domain_group,
    "domain": lambda f: f.domain,
    "vendor": lambda f: f.vendor,
    "sender": lambda f: f.sender,
    "day": lambda f: f.day,
    "week": lambda f: monday(f.day),
    "month": lambda f: f.day.replace(day=1),
}


def in_report(
    f: Fact, period: Period = PERIOD, include_tests: bool = False, include_deleted: bool = False
) -> bool:
    if not period.start <= f.day <= period.end or (f.test and not include_tests):
        return False
    return include_deleted or (f.campaign not in DELETED_CAMPAIGNS and f.template not in DELETED_TEMPLATES)


def expected_summary(
    group_by: str | None, metrics: Sequence[str], facts: Sequence[Fact]
) -> list[tuple[Any, ...]]:
    if group_by is None:
        return [tuple(expected_metric(facts, m) for m in metrics)]
    groups: dict[Any, list[Fact]] = defaultdict(list)
    for f in facts:
        groups[GROUP_KEYS[group_by](f)].append(f)
    return [(key, *(expected_metric(groups[key], m) for m in metrics)) for key in sorted(groups)]


# ------------------------------------------------------------------------ fixtures


def fill(ch: ClickHouse, records: Sequence[RecordedEvent], batch: int = 1000, restart: bool = False) -> None:
    """Run the sink over `records` in batches as the runtime does (apply each, commit the batch)."""
    sink = ClickHouseSink(ch)
    for start in range(0, len(records), batch):
        if restart:
            sink = ClickHouseSink(ch)  # a restarted process: empty caches, the stored checkpoint
        chunk = records[start : start + batch]
        for record in chunk:
            sink.apply(record)
        sink.commit(chunk[-1].position)


@pytest.fixture
def store(clickhouse: ClickHouse) -> ClickHouse:
    """A migrated store holding the whole log."""
    migrate(clickhouse)
    fill(clickhouse, LOG.records)
    return clickhouse


@pytest.fixture
def fresh_store(
    clickhouse: ClickHouse, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ClickHouse]:
    """Another, empty database on the same engine as `clickhouse`."""
    if isinstance(clickhouse, ChdbClickHouse):
        other: ClickHouse = ChdbClickHouse(tmp_path / "clickhouse", database="herald_rebuild")
    else:
        host, port = request.getfixturevalue("clickhouse_server")
        other = ServerClickHouse(host, port, f"herald_rebuild_{id(clickhouse)}")
    yield other
    if isinstance(other, ServerClickHouse):
        other.execute(f"DROP DATABASE IF EXISTS herald_rebuild_{id(clickhouse)}")
    other.close()


def run(ch: ClickHouse, name: str, **request: Any) -> ReportResult:
    return REPORTS[name].run(ch, ReportRequest(period=request.pop("period", PERIOD), **request))


# -------------------------------------------------------------------------- the sink


def test_the_log_covers_every_case() -> None:
    kinds = Counter(f.kind for f in FACTS)
    assert 200 <= len(LOG.records) <= 1000
    assert all(kinds[k] > 0 for k in (*_KINDS.values(), "sent"))
    assert {f.channel for f in FACTS} == {"email", "sms", "push"}
    assert any(f.test for f in FACTS) and any(f.bot for f in FACTS)
    assert any(f.kind == "delivered" and f.bounced_later for f in FACTS)
    assert any(f.day < PERIOD.start for f in FACTS) and any(f.day > PERIOD.end for f in FACTS)
    vendors_seen: dict[str, set[str]] = defaultdict(set)
    for f in FACTS:
        vendors_seen[f.profile].add(f.vendor)
    assert any(len(seen) > 1 for seen in vendors_seen.values())  # messages before and after a new vendor


def test_the_sink_writes_one_row_per_event_and_fills_the_sender(store: ClickHouse) -> None:
    rows = store.query(
        "SELECT event_type AS event_type, sender_id AS sender_id, count() AS n"
        " FROM message_events FINAL GROUP BY event_type, sender_id"
    )
    written = Counter({(r["event_type"], r["sender_id"]): r["n"] for r in rows})
    assert written == Counter((f.kind, f.sender) for f in FACTS)


def test_the_sink_maps_every_column_of_a_click(store: ClickHouse) -> None:
    click = next(e for e in LOG.records if e.type == "LinkClicked" and e.data["channel"] == "email")
    [row] = store.query(
        "SELECT * FROM message_events FINAL WHERE event_id = {id:String}", {"id": str(click.event_id)}
    )
    data = click.data
    assert row["position"] == click.position
    assert row["at"] == click.occurred_at.replace(microsecond=0)
    assert (row["message_id"], row["campaign_id"], row["template_id"]) == (
        data["message_id"], data["campaign_id"], data["template_id"],
    )  # fmt: skip
    assert (row["template_version"], row["link_id"], row["link_url"], row["link_name"]) == (
        data["template_version"], data["link_id"], data["url"], data["link_name"],
    )  # fmt: skip
    domain = data["contact"].split("@")[1]
    assert (row["recipient_domain"], row["domain_group"]) == (domain, GROUP_NAMES[domain])
    assert (row["is_unique"], row["is_bot"], row["is_test"]) == (
        int(data["unique"]), int(data.get("bot", False)), int(data.get("is_test", False)),
    )  # fmt: skip


def test_the_sink_writes_subscription_changes_creations_goals_and_deletions(store: ClickHouse) -> None:
    changes = [e for e in LOG.events if isinstance(e, SubscriptionAdded | SubscriptionStatusChanged)]
    creations = [e for e in LOG.events if isinstance(e, ProfileCreated)]
    goals = [
        e for e in LOG.events if isinstance(e, ActivityTracked) and {"goal", "pixel_id"} & e.properties.keys()
    ]
    assert len(table_contents(store, "subscription_changes")) == len(changes)
    assert Counter(r[6] for r in table_contents(store, "profile_creations")) == Counter(
        e.source for e in creations
    )
    goal_rows = table_contents(store, "goal_events")
    assert sorted((r[7], r[8], r[9]) for r in goal_rows) == sorted(
        (e.properties.get("pixel_id", ""), e.properties.get("goal", ""), float(e.properties.get("value", 0)))
        for e in goals
    )
    assert {(r[10], r[13], r[14]) for r in goal_rows} == {("https://ref.example/", "RU", "Kazan")}
    assert {(r[0], r[1]) for r in table_contents(store, "deleted_objects")} == {
        ("campaign", "c3"),
        ("template", "t2"),
    }


def test_the_checkpoint_is_stored_with_the_rollup(store: ClickHouse) -> None:
    assert ClickHouseSink(store).checkpoint() == LOG.records[-1].position
    assert stored_checkpoint(store) == LOG.records[-1].position


def test_batches_that_write_no_rows_store_the_checkpoint_only_every_stride(fresh_store: ClickHouse) -> None:
    """Each INSERT makes a part: a pass that wrote nothing (tracked events, say) does not write its
    checkpoint alone, except every CHECKPOINT_STRIDE events; a restart re-reads those, writing nothing."""
    migrate(fresh_store)
    sink = ClickHouseSink(fresh_store)
    for position in range(1000, CHECKPOINT_STRIDE, 1000):
        sink.commit(position)
    assert sink.checkpoint() == CHECKPOINT_STRIDE - 1000
    assert fresh_store.query("SELECT count() AS n FROM message_rollup")[0]["n"] == 0
    assert ClickHouseSink(fresh_store).checkpoint() == 0
    sink.commit(CHECKPOINT_STRIDE)
    assert ClickHouseSink(fresh_store).checkpoint() == CHECKPOINT_STRIDE
    # A batch with rows after ones without: its marker spans them too, and its event is counted once.
    sink.commit(CHECKPOINT_STRIDE + 400)
    queued = next(r for r in LOG.records if r.type == "MessageQueued")
    sink.apply(_at_position(queued, CHECKPOINT_STRIDE + 500))
    sink.commit(CHECKPOINT_STRIDE + 600)
    assert stored_checkpoint(fresh_store) == CHECKPOINT_STRIDE + 600
    counted = fresh_store.query("SELECT sum(events) AS n FROM message_rollup WHERE event_type = 'queued'")
    assert counted[0]["n"] == 1


def _at_position(record: RecordedEvent, position: int) -> RecordedEvent:
    return RecordedEvent(
        record.event_id,
        record.stream,
        record.version,
        position,
        record.type,
        record.schema_version,
        record.occurred_at,
        record.recorded_at,
        record.data,
        record.metadata,
    )


def test_the_sink_is_idempotent(store: ClickHouse) -> None:
    before = {table: table_contents(store, table) for table in TABLE_COLUMNS}
    report = run(store, "summary", group_by="campaign", params={"preset": "all"})
    sink = ClickHouseSink(store)
    for record in LOG.records:  # the whole log again, past the checkpoint
        sink.apply(record)
    sink.commit(LOG.records[-1].position)
    assert {table: table_contents(store, table) for table in TABLE_COLUMNS} == before
    assert run(store, "summary", group_by="campaign", params={"preset": "all"}) == report


def test_a_rebuild_in_other_batches_by_restarted_sinks_gives_the_same_tables(
    store: ClickHouse, fresh_store: ClickHouse
) -> None:
    migrate(fresh_store)
    fill(fresh_store, LOG.records, batch=37, restart=True)
    for table in TABLE_COLUMNS:
        assert table_contents(fresh_store, table) == table_contents(store, table), table


class _FailingOnce:
    """A store whose second insert into `table` fails, as a server going away would: before the rows
    went in, or after (the server committed them, the client saw the connection drop)."""

    def __init__(self, ch: ClickHouse, table: str, after: bool) -> None:
        self._ch = ch
        self._table = table
        self._after = after
        self._seen = 0
        self.failed = False

    def insert(self, table: str, columns: Sequence[str], rows: Any) -> None:
        if table == self._table:
            self._seen += 1
        if self._seen == 2 and not self.failed and table == self._table:
            self.failed = True
            if self._after:
                self._ch.insert(table, columns, rows)
            raise OSError("connection reset")
        self._ch.insert(table, columns, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ch, name)


def drive(sink: ClickHouseSink, records: Sequence[RecordedEvent], batch: int) -> int:
    """Feed `records` to the sink as the runtime does: each pass from the sink's checkpoint, a failed
    pass again; returns how many passes failed."""
    failures = 0
    for start in range(0, len(records), batch):
        last = records[min(start + batch, len(records)) - 1].position
        while (begin := sink.checkpoint()) < last:
            try:
                for record in records[start : start + batch]:
                    if record.position > begin:
                        sink.apply(record)
                sink.commit(last)
            except OSError:
                sink.discard()
                failures += 1
    return failures


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("table", ["message_events", "subscription_changes", "message_rollup"])
def test_a_failed_commit_is_retried_from_the_checkpoint(
    clickhouse: ClickHouse, fresh_store: ClickHouse, table: str, after: bool
) -> None:
    """A commit that fails anywhere, even one that went in although the client saw it fail, leaves the
    tables as a run without failures: no row twice, no event counted twice or lost."""
    migrate(clickhouse)
    fill(clickhouse, LOG.records)
    migrate(fresh_store)
    flaky = _FailingOnce(fresh_store, table, after)
    sink = ClickHouseSink(flaky)  # type: ignore[arg-type]
    assert drive(sink, LOG.records, batch=len(LOG.records) // 3) == 1
    assert flaky.failed and ClickHouseSink(fresh_store).checkpoint() == LOG.records[-1].position
    for name in TABLE_COLUMNS:
        assert table_contents(fresh_store, name) == table_contents(clickhouse, name), name
    facts = [f for f in FACTS if in_report(f)]
    report = run(fresh_store, "summary", group_by="campaign", params={"preset": "all"})
    assert list(report.rows) == expected_summary("campaign", ALL_SUMMARY_METRICS, facts)


def test_a_replay_over_a_filled_store_counts_nothing_twice(store: ClickHouse) -> None:
    """A sink started from the log's start over tables already filled (a replay without emptying them):
    the rows replace themselves and the rollup, which has counted every event, adds nothing."""
    before = {table: table_contents(store, table) for table in TABLE_COLUMNS}
    sink = ClickHouseSink(store)
    for start in range(0, len(LOG.records), 50):
        batch = LOG.records[start : start + 50]
        for record in batch:
            sink.apply(record)
        sink.commit(batch[-1].position)
    assert {table: table_contents(store, table) for table in TABLE_COLUMNS} == before


def _age(ch: ClickHouse, checkpoint: int) -> None:
    """Turn a store the current sink filled into what the sink before migration 0005 left: its checkpoint
    in herald_meta, the latest vendor and sender only, no rollup, migrations 0001-0004 recorded."""
    old_tables = [
        statement
        for statement in MIGRATIONS[2].statements
        if "message_senders" in statement or "profile_vendors" in statement
    ]
    for statement in old_tables:
        ch.execute(statement)
    ch.execute(
        "INSERT INTO message_senders SELECT message_id, argMax(sender_id, position), max(position)"
        " FROM message_sender_changes GROUP BY message_id"
    )
    ch.execute(
        "INSERT INTO profile_vendors SELECT profile_id, argMax(vendor, position), max(position)"
        " FROM profile_vendor_changes GROUP BY profile_id"
    )
    for table in ("message_rollup", "message_deliveries", "message_sender_changes", "profile_vendor_changes"):
        ch.execute(f"DROP TABLE {table}")
    ch.insert("herald_meta", ("key", "value", "updated_at"), [("sink_checkpoint", str(checkpoint), T0)])
    ch.execute("TRUNCATE TABLE schema_migrations")
    ch.insert(
        "schema_migrations",
        ("id", "checksum", "applied_at"),
        [(m.id, checksum(m), T0) for m in MIGRATIONS[:4]],
    )


def test_an_old_store_migrates_and_the_sink_goes_on(store: ClickHouse, fresh_store: ClickHouse) -> None:
    """Migration 0005 fills the rollup from the rows the old sink committed (not from rows a failed
    commit left past its checkpoint, which the sink applies again) and takes over its checkpoint; the
    sink then goes on from there. Events counted at migration keep the profile's vendor at that time."""
    migrate(fresh_store)
    half = len(LOG.records) // 2
    # The old sink's last commit failed at message_senders: the event tables hold rows past its checkpoint.
    flaky = _FailingOnce(fresh_store, "message_sender_changes", after=False)
    sink = ClickHouseSink(flaky)  # type: ignore[arg-type]
    for batch in (LOG.records[:half], LOG.records[half : half + 40]):
        with contextlib.suppress(OSError):
            for record in batch:
                sink.apply(record)
            sink.commit(batch[-1].position)
    checkpoint = LOG.records[half - 1].position
    leftovers = fresh_store.query(
        "SELECT count() AS n FROM message_events WHERE position > {p:UInt64}", {"p": checkpoint}
    )
    assert flaky.failed and leftovers[0]["n"] > 0
    _age(fresh_store, checkpoint)

    assert migrate(fresh_store) == ["0005_message_rollup", "0006_old_sink_state"]
    resumed = ClickHouseSink(fresh_store)
    assert resumed.checkpoint() == checkpoint
    drive(resumed, LOG.records, batch=60)

    for table in ("message_events", "subscription_changes", "profile_creations", "goal_events"):
        assert table_contents(fresh_store, table) == table_contents(store, table), table
    facts = message_facts(LOG.events)
    migrated = len(message_facts(LOG.events[:half]))
    vendors: dict[str, str] = {}
    for event in LOG.events[:half]:
        note_vendor(vendors, event)
    at_migration = [replace(f, vendor=vendors.get(f.profile, "")) for f in facts[:migrated]]
    assert at_migration != facts[:migrated]  # some profile's vendor changed before the checkpoint
    facts[:migrated] = at_migration
    shown = [f for f in facts if in_report(f)]
    for group_by in (None, *GROUP_KEYS):
        result = run(fresh_store, "summary", group_by=group_by, params={"preset": "all"})
        assert list(result.rows) == expected_summary(group_by, ALL_SUMMARY_METRICS, shown), group_by


def _fates_log() -> Log:
    """Messages of campaign c1 delivered on 2 May, most hard-bounced later by DSN, in every order."""
    log = Log()
    at = datetime(2024, 5, 2, 10, tzinfo=UTC)
    ref = {"campaign_id": "c1", "template_id": "t1", "template_version": 1, "profile_id": "p1",
           "database_id": "db1", "resource_id": "r1", "channel": "email",
           "contact": "a@gmail.com"}  # fmt: skip

    def delivered(message_id: str) -> None:
        event = dl.MessageDelivered(
            **ref, message_id=message_id, sender_id="s1", code=250, response="ok", at=at
        )
        log.add(event, f"message-{message_id}")

    def bounced(message_id: str) -> None:
        event = dl.MessageHardBounced(**ref, message_id=message_id, code=0, response="5.1.1 user unknown",
                                      status="5.1.1", source="dsn", at=at + timedelta(hours=30))  # fmt: skip
        log.add(event, f"message-{message_id}")

    for message_id in ("early", "same", "twice", "kept"):
        delivered(message_id)
    delivered("twice")  # delivered twice (a repeated outcome): both go back
    bounced("same")  # in the same batch as its delivery
    bounced("backwards")  # a bounce before the delivery it undoes
    delivered("backwards")
    for _ in range(4):  # filler so that the bounces below fall in later batches
        log.add(dl.MessageOpened(**ref, message_id="kept", unique=False, at=at), "message-kept")
    bounced("early")  # batches after its delivery
    bounced("twice")
    return log


FATES = _fates_log()


@pytest.mark.parametrize("batch", [1, 3, len(FATES.records)])
def test_a_hard_bounce_takes_its_messages_deliveries_back_in_any_batch(
    clickhouse: ClickHouse, batch: int
) -> None:
    migrate(clickhouse)
    fill(clickhouse, FATES.records, batch=batch, restart=True)
    assert _fates_summary(clickhouse) == FATES_SUMMARY


FATES_SUMMARY = [(date(2024, 5, 2), 1, 0), (date(2024, 5, 3), 0, 4)]  # only "kept" stays delivered


def _fates_summary(ch: ClickHouse) -> list[tuple[Any, ...]]:
    return list(run(ch, "summary", metrics=("email_delivered", "email_hard_bounces"), group_by="day").rows)


def test_a_bounce_after_the_migration_takes_back_a_delivery_made_before_it(clickhouse: ClickHouse) -> None:
    """Migration 0005 keeps the deliveries the old sink committed, with their keys, for later bounces."""
    migrate(clickhouse)
    checkpoint = FATES.records[-3].position  # both bounces of delivered messages come after it
    fill(clickhouse, FATES.records[:-2])
    _age(clickhouse, checkpoint)
    migrate(clickhouse)
    drive(ClickHouseSink(clickhouse), FATES.records, batch=5)
    assert _fates_summary(clickhouse) == FATES_SUMMARY


def test_domain_groups() -> None:
    domains = ("gmail.com", "list.ru", "inbox.ru", "yandex.kz", "live.com", "mac.com", "yahoo.co.jp")
    groups = ["Google", "Mail.ru", "Mail.ru", "Yandex", "Microsoft", "Apple", "Yahoo"]
    assert [domain_group(d) for d in domains] == groups
    assert (domain_group("corp.example"), domain_group("")) == ("Other", "")


# ------------------------------------------------------------------------ the reports


def test_summary_by_every_grouping(store: ClickHouse) -> None:
    facts = [f for f in FACTS if in_report(f)]
    for group_by in (None, *GROUP_KEYS):
        result = run(store, "summary", group_by=group_by, params={"preset": "all"})
        assert result.columns == ((group_by,) if group_by else ()) + ALL_SUMMARY_METRICS
        assert list(result.rows) == expected_summary(group_by, ALL_SUMMARY_METRICS, facts), group_by


def test_summary_tests_deleted_objects_and_filters(store: ClickHouse) -> None:
    metrics = ("email_sent", "email_delivered", "email_unique_opens", "email_open_rate", "sms_sent")
    cases: list[tuple[dict[str, Any], Callable[[Fact], bool]]] = [
        ({"include_tests": True}, lambda f: in_report(f, include_tests=True)),
        ({"params": {"include_deleted": "true"}}, lambda f: in_report(f, include_deleted=True)),
        ({"filters": {"campaign": "c1"}}, lambda f: in_report(f) and f.campaign == "c1"),
        ({"filters": {"domain_group": "Google"}}, lambda f: in_report(f) and f.domain_group == "Google"),
        ({"filters": {"vendor": "partner"}}, lambda f: in_report(f) and f.vendor == "partner"),
        (
            {"filters": {"sender": "s2", "database": "db1"}},
            lambda f: in_report(f) and f.sender == "s2" and f.database == "db1",
        ),
    ]
    for request, keep in cases:
        result = run(store, "summary", group_by="day", metrics=metrics, **request)
        expected = expected_summary("day", metrics, [f for f in FACTS if keep(f)])
        assert list(result.rows) == expected, request


def test_summary_presets_and_its_chart(store: ClickHouse) -> None:
    facts = [f for f in FACTS if in_report(f)]
    sms = run(store, "summary", params={"preset": "sms"})
    assert all(c.startswith("sms_") for c in sms.columns) and "sms_delivery_rate" in sms.columns
    assert list(sms.rows) == expected_summary(None, sms.columns, facts)
    email = run(store, "summary")  # the email preset by default
    assert email.columns == tuple(m for m in ALL_SUMMARY_METRICS if m.startswith("email_"))
    metrics = ("email_delivered", "email_click_rate")
    for interval, first, count in (
        ("day", PERIOD.start, 14),
        ("week", date(2024, 4, 29), 3),
        ("month", date(2024, 5, 1), 1),
    ):
        result = run(store, "summary", metrics=metrics, params={"interval": interval})
        buckets = [bucket for bucket, *_ in result.series]
        assert buckets[0] == first and len(buckets) == count and buckets == sorted(set(buckets))
        by_bucket = {key: rest for key, *rest in expected_summary(interval, metrics, facts)}
        empty = [0, None]
        assert [list(rest) for _, *rest in result.series] == [by_bucket.get(b, empty) for b in buckets]


def test_growth(store: ClickHouse) -> None:
    def changes(keep: Callable[[Event], bool]) -> list[tuple[date, str, str, bool, bool]]:
        """(day, database, cause, gain, loss) of every subscription change in the period."""
        out = []
        for record, event in zip(LOG.records, LOG.events, strict=True):
            if not isinstance(event, SubscriptionAdded | SubscriptionStatusChanged) or not keep(event):
                continue
            before = "" if isinstance(event, SubscriptionAdded) else event.from_status
            after = event.status if isinstance(event, SubscriptionAdded) else event.to_status
            day = record.occurred_at.date()
            if PERIOD.start <= day <= PERIOD.end:
                gain = after == "subscribed" and before != "subscribed"
                loss = before == "subscribed" and after != "subscribed"
                out.append((day, event.database_id, str(event.cause), gain, loss))
        return out

    creations = [
        (e.at.date(), e.database_id, e.source)
        for e in LOG.events
        if isinstance(e, ProfileCreated) and PERIOD.start <= e.at.date() <= PERIOD.end
    ]
    for group_by, key_of in (
        ("day", lambda d, db: d),
        ("week", lambda d, db: monday(d)),
        ("database", lambda d, db: db),
    ):
        for filters, keep in (
            ({}, lambda e: True),
            (
                {"resource": "r2", "channel": "email"},
                lambda e: e.resource_id == "r2" and e.channel == "email",
            ),
        ):
            result = run(store, "growth", group_by=group_by, filters=filters)
            expected: dict[Any, Counter[str]] = defaultdict(Counter)
            for day, db, source in creations:
                row = expected[key_of(day, db)]
                row["new_profiles"] += 1
                row[
                    f"new_profiles_{source if source in ('import', 'api', 'manual', 'segment') else 'other'}"
                ] += 1
            for day, db, cause, gain, loss in changes(keep):
                row = expected[key_of(day, db)]
                row["gains"] += gain
                row["losses"] += loss
                row["growth"] += gain - loss
                row[f"gain_{cause}"] += gain
                row[f"loss_{cause}"] += loss
            assert result.columns[0] == group_by
            assert [r[0] for r in result.rows] == sorted(expected)
            for row in result.rows:
                assert dict(zip(result.columns[1:], row[1:], strict=True)) == {
                    m: expected[row[0]][m] for m in result.columns[1:]
                }, (group_by, filters, row[0])
    assert sum(r[result.columns.index("loss_unsubscribe_link")] for r in run(store, "growth").rows) > 0


def test_click_map(store: ClickHouse) -> None:
    clicks = [f for f in FACTS if in_report(f) and f.template == "t1" and f.channel == "email"]
    for version in (1, 2):
        result = run(store, "click_map", filters={"template": "t1", "template_version": str(version)})
        mine = [f for f in clicks if f.version == version]
        opens = sum(1 for f in mine if f.kind == "open" and f.unique)
        total = sum(1 for f in mine if f.kind == "click" and f.unique)
        per_link: dict[str, list[Fact]] = defaultdict(list)
        for f in mine:
            if f.kind == "click":
                per_link[f.link].append(f)
        expected = [
            (link, fs[0].url, fs[0].link_name, unique, sum(1 for f in fs if not f.bot),
             unique / total if total else None, unique / opens if opens else None)
            for link, fs in per_link.items()
            for unique in [sum(1 for f in fs if f.unique)]
        ]  # fmt: skip
        expected.sort(key=lambda row: (-row[3], row[0]))
        assert result.columns == (
            "link_id",
            "link_url",
            "link_name",
            "unique_clicks",
            "clicks",
            "click_share",
            "ctr",
        )
        assert list(result.rows) == expected and len(expected) == len(LINKS[version])
        assert sum(row[3] for row in result.rows) == total
    panel = [
        (v, sum(1 for f in clicks if f.version == v and f.kind == "open" and f.unique),
         sum(1 for f in clicks if f.version == v and f.kind == "click" and f.unique),
         sum(1 for f in clicks if f.version == v and f.kind == "unsubscribe"))
        for v in (1, 2)
    ]  # fmt: skip
    latest = run(store, "click_map", filters={"template": "t1"}, metrics=("unique_clicks",))
    assert list(latest.series) == panel
    assert latest.columns == ("link_id", "link_url", "link_name", "unique_clicks")
    assert {row[0] for row in latest.rows} == set(LINKS[2])


@pytest.mark.parametrize(
    ("group_by", "campaign"), [(None, ""), ("sender", ""), ("campaign", "c1"), ("domain_group", "")]
)
def test_soft_bounces_and_non_deliveries(store: ClickHouse, group_by: str | None, campaign: str) -> None:
    key = GROUP_KEYS[group_by] if group_by else (lambda f: None)
    filters = {"campaign": campaign} if campaign else {}
    wanted = [
        f
        for f in FACTS
        if in_report(f, include_deleted=True)
        and f.channel == "email"
        and f.campaign == (campaign or f.campaign)
    ]
    strip = 0 if group_by else 1  # no group column without a grouping

    soft = Counter((key(f), f.text, f.domain) for f in wanted if f.kind == "soft_bounce")
    result = run(store, "soft_bounces", group_by=group_by, filters=filters)
    expected = sorted(((*k, n) for k, n in soft.items()), key=lambda r: (-r[-1], *r[:-1]))
    assert list(result.rows) == [r[strip:] for r in expected]
    assert result.columns == ((group_by,) if group_by else ()) + (
        "bounce_text",
        "recipient_domain",
        "bounces",
    )

    failed = Counter(
        (key(f), "hard_bounce" if f.kind == "hard_bounce" else f.reason, f.domain, f.text)
        for f in wanted
        if f.kind in ("hard_bounce", "not_delivered")
    )
    result = run(store, "non_deliveries", group_by=group_by, filters=filters)
    expected = sorted(((*k, n) for k, n in failed.items()), key=lambda r: (-r[-1], *r[:-1]))
    assert list(result.rows) == [r[strip:] for r in expected]
    if not campaign:
        assert {"campaign_stopped", "hard_bounce", "expired"} <= {row[-4] for row in result.rows}


def test_the_event_reports_count_a_retried_batchs_copies_once(store: ClickHouse) -> None:
    """Reports over message_events read no FINAL: the copies a retried batch leaves count once."""
    reports: list[tuple[str, dict[str, Any]]] = [
        ("click_map", {"filters": {"template": "t1", "template_version": "1"}}),
        ("soft_bounces", {"group_by": "sender"}),
        ("non_deliveries", {}),
    ]
    before = [run(store, name, **args) for name, args in reports]
    copies = table_contents(store, "message_events")
    store.insert("message_events", TABLE_COLUMNS["message_events"], copies)
    assert [run(store, name, **args) for name, args in reports] == before


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("name", "request_args", "path"),
    [
        ("summary", {"group_by": "planet"}, "group_by"),
        ("summary", {"metrics": ("email_sent", "email_delivered", "email_teleported")}, "metrics.2"),
        ("summary", {"period": Period(date(2024, 5, 2), date(2024, 5, 1))}, "period.end"),
        ("summary", {"period": Period(date(2020, 1, 1), date(2024, 5, 1))}, "period.start"),
        ("summary", {"params": {"preset": "fax"}}, "params.preset"),
        ("summary", {"params": {"colour": "red"}}, "params.colour"),
        ("summary", {"filters": {"planet": "mars"}}, "filters.planet"),
        ("summary", {"params": {"include_deleted": "maybe"}}, "params.include_deleted"),
        ("growth", {"group_by": "campaign"}, "group_by"),
        ("growth", {"metrics": ("gains", "opens")}, "metrics.1"),
        ("click_map", {}, "filters.template"),
        ("click_map", {"filters": {"template": "t1", "template_version": "two"}}, "filters.template_version"),
        ("soft_bounces", {"group_by": "day"}, "group_by"),
        ("non_deliveries", {"metrics": ("bounces",)}, "metrics.0"),
    ],
)
def test_bad_requests_name_the_parameter(
    clickhouse: ClickHouse, name: str, request_args: dict[str, Any], path: str
) -> None:
    migrate(clickhouse)
    with pytest.raises(ReportError) as raised:
        run(clickhouse, name, **request_args)
    assert raised.value.path == path


# ------------------------------------------------------------------- API and exports


class _Auth:
    """A read-role service token, whoever asks."""

    def authenticate(self, request: Any) -> Principal:
        return Principal("tester", "read", Rights())


def client_for(herald: Any) -> httpx.AsyncClient:
    """An HTTP client on an app serving only the report endpoints over `herald`'s parts."""
    app = Starlette(routes=[e.route(herald) for e in report_routes.ENDPOINTS])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://herald.test")


def csv_text(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


URL = "/api/v1/reports/summary?start=2024-05-01&end=2024-05-14&group_by=campaign"
QUERY = "&metrics=email_sent,email_open_rate&filter.campaign=c1&interval=week"


async def test_the_route_serves_json_csv_and_xlsx(store: ClickHouse) -> None:
    direct = run(store, "summary", group_by="campaign", metrics=("email_sent", "email_open_rate"),
                 filters={"campaign": "c1"}, params={"interval": "week"})  # fmt: skip
    async with client_for(SimpleNamespace(clickhouse=store, reports=REPORTS, auth=_Auth())) as client:
        answer = await client.get(URL + QUERY)
        exported = await client.get(URL + QUERY + "&format=csv")
        sheet = await client.get(URL + QUERY + "&format=xlsx")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["columns"] == ["campaign", "email_sent", "email_open_rate"]
    assert body["rows"] == [list(r) for r in direct.rows]
    assert body["series"] == [[b.isoformat(), *rest] for b, *rest in direct.series]

    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="summary-2024-05-01-2024-05-14.csv"' in exported.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert lines == [list(direct.columns), *([csv_text(v) for v in r] for r in direct.rows)]

    book = openpyxl.load_workbook(io.BytesIO(sheet.content))
    # openpyxl writes floats with 16 significant digits (Excel shows 15), not Python's shortest repr
    expected_sheet = [direct.columns, *(tuple(pytest.approx(v, rel=1e-15) for v in r) for r in direct.rows)]
    assert [tuple(r) for r in book["summary"].iter_rows(values_only=True)] == expected_sheet


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/api/v1/reports/horoscope?start=2024-05-01&end=2024-05-02", "name"),
        ("/api/v1/reports/summary?start=2024-05-03&end=2024-05-02", "period.end"),
        ("/api/v1/reports/summary?start=2022-01-01&end=2024-05-02", "period.start"),
        ("/api/v1/reports/summary?start=2024-05-01&end=2024-05-02&group_by=planet", "group_by"),
        ("/api/v1/reports/summary?start=2024-05-01&end=2024-05-02&metrics=email_sent,nope", "metrics.1"),
        ("/api/v1/reports/summary?start=2024-05-01&end=2024-05-02&filter.planet=x", "filters.planet"),
        ("/api/v1/reports/summary?start=2024-05-01&end=2024-05-02&preset=fax", "params.preset"),
        ("/api/v1/reports/summary?start=2024-05-01", "end"),
        ("/api/v1/reports/summary?start=2024-05-01&end=2024-05-02&format=pdf", "format"),
    ],
)
async def test_the_route_answers_422_naming_the_parameter(url: str, path: str) -> None:
    # Every one is refused before the store is asked anything.
    async with client_for(SimpleNamespace(clickhouse=object(), reports=REPORTS, auth=_Auth())) as client:
        answer = await client.get(url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["path"] == path


async def test_the_route_answers_503_without_an_analytics_store() -> None:
    async with client_for(SimpleNamespace(clickhouse=None, auth=_Auth())) as client:
        answer = await client.get(URL)
    assert answer.status_code == 503


def test_exports_keep_values_and_never_write_formulas() -> None:
    result = ReportResult(
        columns=("day", "bounce_text", "bounces", "rate"),
        rows=(
            (date(2024, 5, 1), '=HYPERLINK("http://x")', 3, 0.1),
            (date(2024, 5, 2), "421 Not allowed", 0, None),
        ),
    )
    lines = list(csv.reader(io.StringIO(to_csv(result).decode("utf-8-sig"))))
    assert lines == [
        ["day", "bounce_text", "bounces", "rate"],
        ["2024-05-01", '\'=HYPERLINK("http://x")', "3", "0.1"],
        ["2024-05-02", "421 Not allowed", "0", ""],
    ]
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(result, "soft_bounces")))["soft_bounces"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][1:] == ('=HYPERLINK("http://x")', 3, 0.1) and sheet["B2"].data_type == "s"
    assert rows[2][1:] == ("421 Not allowed", 0, None)
    assert rows[1][0] == datetime(2024, 5, 1)
