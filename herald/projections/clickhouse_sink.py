"""The report sink: folds the log into flat ClickHouse rows for reports, one batch per commit.

Tables (migrations `0002_report_tables`, `0003_report_sink_state`):
- `message_events`: one row per message event, denormalised (campaign, template and version, database,
  resource, channel, profile, recipient domain and domain group, sender, link, bounce class and text,
  reason, unique/test/bot flags). Event types: `queued`, `suppressed`, `failed` (the send gate),
  `sent` (the first send attempt: the message left for the relay), `delivered`, `soft_bounce` (every
  one, so the soft-bounce report counts attempts), `hard_bounce`, `not_delivered`, `open`, `read`,
  `click`, `unsubscribe`, `complaint`;
- `subscription_changes`: a subscription added (status before = '') or its status changed, with cause;
- `profile_creations`: a profile created, with its source (import, api, manual, segment...);
- `goal_events`: tracked activity that names a `goal` or a `pixel_id` in its properties; a goal carried
  to a profile later (`GoalAttributed`) replaces its row, keyed by the goal's first event;
- `message_senders`, `profile_vendors`, `deleted_objects`: what later rows and reports look up;
- `profile_snapshots` (migration `0004`): each profile's state for the bulk segment evaluator, in
  `reports.segment_sql.snapshot_row`'s encoding: one row for every profile a batch's profile events
  touched, with its state as of the end of the batch, versioned by the position of its last event (so
  a rebuild in other batches writes the same rows). Written only when the sink is given `load_profile`.

Idempotency: every table is a ReplacingMergeTree keyed by the event id (or the object), versioned by
the log position, and reports read it with FINAL, so a replay or a retried batch replaces rows and
never adds any. ClickHouse has no transactions: `commit` inserts the rows first and then writes the
checkpoint (`herald_meta`, key `sink_checkpoint`); a crash in between re-inserts the same ids, which
is harmless. Checkpoints only move forward, so the stored one is the largest value written.

The sender of a message is chosen per attempt (`MessageSendAttempted`) and the events after it
(bounces, opens, clicks) do not repeat it: the sink keeps the latest attempt's sender per message in
a bounded cache, backed by `message_senders` for messages attempted before the cache (or a restart).

A scenario's sends carry `scenario_id` from the decision on through every delivery and tracking
event, so the summary report groups and filters by scenario.

Gaps where the log has no data yet: suppressed and failed messages carry no database (and suppressed
no template);
`is_test` of subscription changes and profile creations is 0 (test subscribers are flagged on the
profile, later, by `ProfileTestSubscriberSet`); goal browser/OS come from the tracker's context as
given (no user-agent parsing).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from herald.domain import deliveries as dl
from herald.domain.campaigns import CampaignDeleted
from herald.domain.databases import DatabaseDeleted
from herald.domain.events import Event, registry
from herald.domain.goals import GoalAttributed
from herald.domain.messages import MessageFailed, MessageQueued, MessageSuppressed
from herald.domain.profiles import ProfileAbsorbed, ProfileCreated, ProfileFieldsUpdated
from herald.domain.resources import ResourceDeleted
from herald.domain.scenarios import ScenarioDeleted
from herald.domain.subscriptions import SubscriptionAdded, SubscriptionStatusChanged
from herald.domain.templates import TemplateDeleted
from herald.domain.tracking import ActivityTracked, goal_of
from herald.infra.clickhouse import ClickHouse
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.projections.profile_states import PROFILE_STREAM_PREFIX, LoadProfile, ProfileStates
from herald.reports.segment_sql import SNAPSHOT_COLUMNS, snapshot_row

CHECKPOINT_KEY = "sink_checkpoint"
# A batch that wrote no rows stores its checkpoint only this far past the stored one: every INSERT makes
# a part (chDB kept ≈ 8 KB per part: one checkpoint row a pass grew `herald serve` by MB a minute under
# tracked events), and re-reading up to this many events after a restart writes nothing twice.
CHECKPOINT_STRIDE = 50_000
SENDER_CACHE_SIZE = 200_000
PROFILE_CACHE_SIZE = 100_000
VENDOR_FIELD = "_vendor"

MESSAGE_COLUMNS = (
    "event_id",
    "position",
    "event_type",
    "at",
    "day",
    "message_id",
    "campaign_id",
    "run_id",
    "scenario_id",
    "template_id",
    "template_version",
    "database_id",
    "resource_id",
    "channel",
    "profile_id",
    "recipient_domain",
    "domain_group",
    "sender_id",
    "link_id",
    "link_url",
    "link_name",
    "bounce_class",
    "bounce_text",
    "reason",
    "is_unique",
    "is_test",
    "is_bot",
)
_SENDER = MESSAGE_COLUMNS.index("sender_id")
_MESSAGE_ID = MESSAGE_COLUMNS.index("message_id")

TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "message_events": MESSAGE_COLUMNS,
    "subscription_changes": (
        "event_id",
        "position",
        "at",
        "day",
        "profile_id",
        "database_id",
        "resource_id",
        "channel",
        "contact",
        "status_before",
        "status",
        "cause",
        "is_test",
    ),
    "profile_creations": (
        "event_id",
        "position",
        "at",
        "day",
        "profile_id",
        "database_id",
        "source",
        "is_test",
    ),
    "goal_events": (
        "event_id",
        "position",
        "at",
        "day",
        "profile_id",
        "anonymous_id",
        "database_id",
        "pixel_id",
        "goal",
        "value",
        "referrer",
        "browser",
        "os",
        "country",
        "city",
    ),
    "message_senders": ("message_id", "sender_id", "position"),
    "profile_vendors": ("profile_id", "vendor", "position"),
    "deleted_objects": ("kind", "object_id", "position", "at"),
    "profile_snapshots": SNAPSHOT_COLUMNS,
}
"""Every table the sink writes, with the columns in the order its rows hold them."""

# The log's event types the sink reads; others are skipped without decoding.
_HANDLED = frozenset(
    {
        "MessageQueued",
        "MessageSuppressed",
        "MessageFailed",
        "MessageSendAttempted",
        "MessageDelivered",
        "MessageSoftBounced",
        "MessageHardBounced",
        "MessageNotDelivered",
        "MessageOpened",
        "MessageRead",
        "LinkClicked",
        "MessageAcknowledged",
        "MessageUnsubscribed",
        "ComplaintReceived",
        "SubscriptionAdded",
        "SubscriptionStatusChanged",
        "ProfileCreated",
        "ProfileFieldsUpdated",
        "ProfileAbsorbed",
        "ActivityTracked",
        "GoalAttributed",
        "CampaignDeleted",
        "TemplateDeleted",
        "DatabaseDeleted",
        "ResourceDeleted",
        "ScenarioDeleted",
    }
)

# ------------------------------------------------------------------ domain groups

# Mailbox providers by exact domain; "Other" for everything not listed here or in _GROUP_BY_LABEL.
_GROUP_BY_DOMAIN: Mapping[str, str] = {
    "gmail.com": "Google",
    "googlemail.com": "Google",
    "mail.ru": "Mail.ru",
    "inbox.ru": "Mail.ru",
    "list.ru": "Mail.ru",
    "bk.ru": "Mail.ru",
    "ya.ru": "Yandex",
    "icloud.com": "Apple",
    "me.com": "Apple",
    "mac.com": "Apple",
}
# Providers with a domain per country (yandex.ru, yandex.com.tr, hotmail.co.uk, yahoo.fr...): by the
# domain's first label.
_GROUP_BY_LABEL: Mapping[str, str] = {
    "yandex": "Yandex",
    "outlook": "Microsoft",
    "hotmail": "Microsoft",
    "live": "Microsoft",
    "msn": "Microsoft",
    "yahoo": "Yahoo",
}
OTHER_GROUP = "Other"


def recipient_domain(channel: str, contact: str) -> str:
    """The domain of an email contact, lower-cased; '' for other channels' contacts."""
    if channel != "email" or "@" not in contact:
        return ""
    return contact.rsplit("@", 1)[1].strip().lower()


def domain_group(domain: str) -> str:
    """The mailbox provider a recipient domain belongs to (Google, Mail.ru, Yandex, ...), or "Other"."""
    if not domain:
        return ""
    exact = _GROUP_BY_DOMAIN.get(domain)
    if exact is not None:
        return exact
    return _GROUP_BY_LABEL.get(domain.split(".", 1)[0], OTHER_GROUP)


# ------------------------------------------------------------------------- the sink


class ClickHouseSink:
    """A projection (see `herald.processors.runtime.Projection`) writing report rows to ClickHouse."""

    name = "clickhouse_sink"

    def __init__(
        self,
        ch: ClickHouse,
        sender_cache_size: int = SENDER_CACHE_SIZE,
        load_profile: LoadProfile | None = None,
        profile_cache_size: int = PROFILE_CACHE_SIZE,
    ) -> None:
        self._ch = ch
        self._profiles = _Snapshots(load_profile, profile_cache_size) if load_profile else None
        self._pending: dict[str, list[list[Any]]] = {table: [] for table in TABLE_COLUMNS}
        self._senders: OrderedDict[str, str] = OrderedDict()
        self._sender_cache_size = sender_cache_size
        self._unresolved: list[list[Any]] = []  # message rows whose sender is not in the cache
        self._position = self._stored = self._stored_checkpoint()

    # -- the Projection protocol

    def checkpoint(self) -> int:
        return self._position

    @property
    def consumes(self) -> EventFilter:
        """The types it turns into rows, and every profile event when it keeps snapshots."""
        return EventFilter(_HANDLED, (PROFILE_STREAM_PREFIX,) if self._profiles is not None else ())

    def apply(self, event: RecordedEvent) -> None:
        if self._profiles is not None and event.stream.startswith(PROFILE_STREAM_PREFIX):
            self._profiles.fold(event)
        if event.type not in _HANDLED:
            return
        decoded = registry.decode(event.type, event.schema_version, event.payload)
        self._fold(event, decoded)

    def commit(self, position: int) -> None:
        """Insert the pending rows (one INSERT per table), then store the checkpoint."""
        try:
            self._resolve_senders()
            if self._profiles is not None:
                self._pending["profile_snapshots"] = self._profiles.touched_rows()
            wrote = False
            for table, rows in self._pending.items():
                if rows:
                    self._ch.insert(table, TABLE_COLUMNS[table], rows)
                    wrote = True
            if position != self._stored and (wrote or position - self._stored >= CHECKPOINT_STRIDE):
                self._ch.insert(
                    "herald_meta",
                    ("key", "value", "updated_at"),
                    [(CHECKPOINT_KEY, str(position), datetime.now(UTC))],
                )
                self._stored = position
        except BaseException:
            # The runtime applies the batch again from the checkpoint: rows already inserted come
            # again with the same ids, and replace themselves.
            self.discard()
            raise
        self._clear()
        self._position = position

    def discard(self) -> None:
        # The cache may hold senders of discarded attempts, newer than the rows applied again next:
        # forget it, and let those rows read the committed senders. Likewise profile states.
        self._senders.clear()
        if self._profiles is not None:
            self._profiles.forget()
        self._clear()

    # -- reading back

    def _stored_checkpoint(self) -> int:
        # The largest value, not the latest row: checkpoints only grow, and two writes in one second
        # would tie on `updated_at`.
        rows = self._ch.query(
            "SELECT max(toUInt64(value)) AS position FROM herald_meta WHERE key = {key:String}",
            {"key": CHECKPOINT_KEY},
        )
        return int(rows[0]["position"]) if rows else 0

    def _resolve_senders(self) -> None:
        """Fill the sender of rows whose message the cache did not know when they were applied.

        Their sender is the one stored by earlier commits; an attempt later in this batch is newer
        than those rows, so the cache (which has it) is not asked.
        """
        if not self._unresolved:
            return
        found = self._ch.query(
            "SELECT message_id AS message_id, argMax(sender_id, position) AS sender_id"
            " FROM message_senders WHERE has({ids:Array(String)}, message_id) GROUP BY message_id",
            {"ids": sorted({row[_MESSAGE_ID] for row in self._unresolved})},
        )
        stored = {item["message_id"]: item["sender_id"] for item in found}
        for row in self._unresolved:
            row[_SENDER] = stored.get(row[_MESSAGE_ID], "")
        for message_id, sender_id in stored.items():
            if message_id not in self._senders:
                self._remember_sender(message_id, sender_id)

    def _remember_sender(self, message_id: str, sender_id: str) -> None:
        self._senders[message_id] = sender_id
        self._senders.move_to_end(message_id)
        while len(self._senders) > self._sender_cache_size:
            self._senders.popitem(last=False)

    def _clear(self) -> None:
        for rows in self._pending.values():
            rows.clear()
        self._unresolved.clear()
        if self._profiles is not None:
            self._profiles.clear_touched()

    # -- mapping events to rows

    def _fold(self, event: RecordedEvent, decoded: Event) -> None:
        if isinstance(decoded, MessageQueued | MessageSuppressed | MessageFailed):
            self._message_row(event, decoded, _DECISION_TYPES[type(decoded)])
        elif isinstance(decoded, dl.MessageSendAttempted):
            self._attempt(event, decoded)
        elif isinstance(decoded, dl.MessageDelivered):
            self._sender(event, decoded.message_id, decoded.sender_id)
            self._message_row(event, decoded, "delivered")
        elif type(decoded) in _OUTCOME_TYPES:
            self._message_row(event, decoded, _OUTCOME_TYPES[type(decoded)])
        else:
            self._other_row(event, decoded)

    def _attempt(self, event: RecordedEvent, attempted: dl.MessageSendAttempted) -> None:
        self._sender(event, attempted.message_id, attempted.sender_id)
        if attempted.attempt == 1:  # later attempts are retries of a message already sent
            self._message_row(event, attempted, "sent")

    def _sender(self, event: RecordedEvent, message_id: str, sender_id: str) -> None:
        """The message's sender from here on: for the rows after it in this batch and in later ones."""
        self._remember_sender(message_id, sender_id)
        self._pending["message_senders"].append([message_id, sender_id, event.position])

    def _message_row(self, event: RecordedEvent, decoded: Any, event_type: str) -> None:
        at: datetime = decoded.at
        # the event's fields by name: a field some message events lack reads as its default, without
        # the cost of pydantic's attribute fallback
        fields = decoded.__dict__
        domain = recipient_domain(decoded.channel, decoded.contact)
        details = _details(decoded)
        row = [
            str(event.event_id),
            event.position,
            event_type,
            at,
            _day(at),
            decoded.message_id,
            decoded.campaign_id,
            fields.get("run_id", ""),
            fields.get("scenario_id") or "",
            fields.get("template_id", ""),
            fields.get("template_version", 0),
            fields.get("database_id", ""),
            decoded.resource_id,
            decoded.channel,
            decoded.profile_id,
            domain,
            domain_group(domain),
            details.get("sender_id", ""),
            details.get("link_id", ""),
            details.get("link_url", ""),
            details.get("link_name", ""),
            details.get("bounce_class", ""),
            details.get("bounce_text", ""),
            details.get("reason", ""),
            int(bool(fields.get("unique", False))),
            int(decoded.is_test),
            int(bool(fields.get("bot", False))),
        ]
        if event_type in _AFTER_ATTEMPT and not row[_SENDER]:
            cached = self._senders.get(decoded.message_id)
            if cached is None:
                self._unresolved.append(row)
            else:
                row[_SENDER] = cached
        self._pending["message_events"].append(row)

    def _other_row(self, event: RecordedEvent, decoded: Event) -> None:
        if isinstance(decoded, SubscriptionAdded | SubscriptionStatusChanged):
            self._subscription_row(event, decoded)
        elif isinstance(decoded, ProfileCreated):
            at = decoded.at
            self._pending["profile_creations"].append(
                [str(event.event_id), event.position, at, _day(at), decoded.profile_id, decoded.database_id,
                 decoded.source, 0]
            )  # fmt: skip
            self._vendor(event, decoded.profile_id, decoded.fields.get(VENDOR_FIELD))
        elif isinstance(decoded, ProfileFieldsUpdated | ProfileAbsorbed):
            change = decoded.changes.get(VENDOR_FIELD)
            if change is not None:
                self._vendor(event, decoded.profile_id, change.new, cleared=True)
        elif isinstance(decoded, ActivityTracked):
            self._goal_row(event, decoded)
        elif isinstance(decoded, GoalAttributed):
            self._carried_goal_row(event, decoded)
        else:
            deleted = _deleted_object(decoded)
            if deleted is not None:
                kind, object_id = deleted
                self._pending["deleted_objects"].append([kind, object_id, event.position, event.occurred_at])

    def _subscription_row(
        self, event: RecordedEvent, changed: SubscriptionAdded | SubscriptionStatusChanged
    ) -> None:
        # Subscription events carry no time of their own: the time they were recorded is theirs.
        at = event.occurred_at
        before, after = (
            ("", changed.status)
            if isinstance(changed, SubscriptionAdded)
            else (changed.from_status, changed.to_status)
        )
        self._pending["subscription_changes"].append(
            [str(event.event_id), event.position, at, _day(at), changed.profile_id, changed.database_id,
             changed.resource_id, changed.channel, changed.contact, str(before), str(after),
             str(changed.cause), 0]
        )  # fmt: skip

    def _vendor(self, event: RecordedEvent, profile_id: str, value: Any, cleared: bool = False) -> None:
        if value is None and not cleared:
            return
        vendor = "" if value is None else str(value)
        self._pending["profile_vendors"].append([profile_id, vendor, event.position])

    def _goal_row(self, event: RecordedEvent, tracked: ActivityTracked) -> None:
        goal = goal_of(tracked)
        if goal is None:
            return  # an ordinary tracked action, not a goal or a pixel visit
        at = tracked.at
        self._pending["goal_events"].append(
            [str(event.event_id), event.position, at, _day(at), tracked.profile_id or "",
             tracked.anonymous_id or "", tracked.database_id, goal.pixel_id, goal.goal, goal.value,
             goal.referrer, goal.browser, goal.os, goal.country, goal.city]
        )  # fmt: skip

    def _carried_goal_row(self, event: RecordedEvent, carried: GoalAttributed) -> None:
        """A goal carried to a profile: its first row again (same key, later position), now the profile's,
        so the visit moves from anonymous to the profile and is counted once."""
        goal, at = carried.reached(), carried.reached_at
        self._pending["goal_events"].append(
            [carried.goal_event_id, event.position, at, _day(at), carried.profile_id,
             carried.from_anonymous_id or "", carried.database_id, goal.pixel_id, goal.goal, goal.value,
             goal.referrer, goal.browser, goal.os, goal.country, goal.city]
        )  # fmt: skip


class _Snapshots:
    """The profiles a batch touched, for the snapshot rows, their states folded as of each event."""

    def __init__(self, load_profile: LoadProfile, size: int) -> None:
        self._load = load_profile
        self._states = ProfileStates(load_profile, size)
        self._touched: dict[str, int] = {}  # profile id → the position of its last event in the batch

    def fold(self, event: RecordedEvent) -> None:
        self._states.fold(event)
        self._touched[event.stream[len(PROFILE_STREAM_PREFIX) :]] = event.position

    def touched_rows(self) -> list[Any]:
        """The snapshot rows of the profiles the batch touched, each versioned by its last event."""
        rows: list[Any] = []
        for profile_id, position in self._touched.items():
            state = self._states.held(profile_id)
            if state is None:  # evicted within the batch: load it as of its last event, inclusive
                state = self._load(profile_id, position + 1)
            rows.append(list(snapshot_row(state, position)))
        return rows

    def clear_touched(self) -> None:
        self._touched.clear()

    def forget(self) -> None:
        self._states.clear()
        self._touched.clear()


_DECISION_TYPES: Mapping[type, str] = {
    MessageQueued: "queued",
    MessageSuppressed: "suppressed",
    MessageFailed: "failed",
}
_OUTCOME_TYPES: Mapping[type, str] = {
    dl.MessageSoftBounced: "soft_bounce",
    dl.MessageHardBounced: "hard_bounce",
    dl.MessageNotDelivered: "not_delivered",
    dl.MessageOpened: "open",
    dl.MessageRead: "read",
    dl.LinkClicked: "click",
    dl.MessageAcknowledged: "push_delivered",  # the device's `ack` link
    dl.MessageUnsubscribed: "unsubscribe",
    dl.ComplaintReceived: "complaint",
}
# Rows that take the sender of the message's latest attempt.
_AFTER_ATTEMPT = frozenset({"delivered", *_OUTCOME_TYPES.values()})


def _details(decoded: Any) -> dict[str, str]:
    """The columns only some message events fill: sender, link, bounce class and text, reason."""
    if isinstance(decoded, MessageSuppressed):
        return {"reason": str(decoded.reason), "bounce_text": decoded.detail}
    if isinstance(decoded, MessageFailed):
        return {"reason": decoded.reason}
    if isinstance(decoded, dl.MessageSendAttempted | dl.MessageDelivered):
        return {"sender_id": decoded.sender_id}
    if isinstance(decoded, dl.MessageSoftBounced):
        return {"bounce_class": "soft", "bounce_text": decoded.response}
    if isinstance(decoded, dl.MessageHardBounced):
        return {"bounce_class": "hard", "bounce_text": decoded.response, "reason": decoded.reason}
    if isinstance(decoded, dl.MessageNotDelivered):
        return {"reason": decoded.reason, "bounce_text": decoded.detail}
    if isinstance(decoded, dl.LinkClicked):
        return {"link_id": decoded.link_id, "link_url": decoded.url, "link_name": decoded.link_name}
    return {}


def _deleted_object(decoded: Event) -> tuple[str, str] | None:
    if isinstance(decoded, CampaignDeleted):
        return "campaign", decoded.campaign_id
    if isinstance(decoded, TemplateDeleted):
        return "template", decoded.template_id
    if isinstance(decoded, DatabaseDeleted):
        return "database", decoded.database_id
    if isinstance(decoded, ResourceDeleted):
        return "resource", decoded.resource_id
    if isinstance(decoded, ScenarioDeleted):
        return "scenario", decoded.scenario_id
    return None


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def table_contents(ch: ClickHouse, table: str) -> list[tuple[Any, ...]]:
    """Every row of a sink table as the reports see it (FINAL), in a total order: for replay checks."""
    columns: Sequence[str] = TABLE_COLUMNS[table]
    listed = ", ".join(columns)
    rows = ch.query(f"SELECT {listed} FROM {table} FINAL ORDER BY {listed}")
    return [tuple(row[column] for column in columns) for row in rows]
