"""The report sink: folds the log into flat ClickHouse rows for reports, one batch per commit.

Tables (migrations `0002_report_tables` to `0005_message_rollup`):
- `message_events`: one row per message event, denormalised (campaign, template and version, database,
  resource, channel, profile, recipient domain and domain group, sender, link, bounce class and text,
  reason, unique/test/bot flags). Event types: `queued`, `suppressed`, `failed` (the send gate),
  `sent` (the first send attempt: the message left for the relay), `delivered`, `soft_bounce` (every
  one, so the soft-bounce report counts attempts), `hard_bounce`, `not_delivered`, `open`, `read`,
  `click`, `unsubscribe`, `complaint`;
- `message_rollup`: the summary report's counts, message events per day and every dimension the summary
  groups or filters by (the profile's vendor when the event happened among them), with the batches'
  log-position markers (below);
- `subscription_changes`: a subscription added (status before = '') or its status changed, with cause;
- `profile_creations`: a profile created, with its source (import, api, manual, segment...);
- `goal_events`: tracked activity that names a `goal` or a `pixel_id` in its properties; a goal carried
  to a profile later (`GoalAttributed`) replaces its row, keyed by the goal's first event;
- `message_sender_changes`, `profile_vendor_changes`, `deleted_objects`: what later rows look up;
- `profile_snapshots` (migration `0004`): each profile's state for the bulk segment evaluator, in
  `reports.segment_sql.snapshot_row`'s encoding: one row for every profile a batch's profile events
  touched, with its state as of the end of the batch, versioned by the position of its last event (so
  a rebuild in other batches writes the same rows). Written only when the sink is given `load_profile`.

Idempotency. The row tables are ReplacingMergeTrees keyed by the event id (or the object), versioned by
the log position: a replayed or retried batch replaces rows and never adds any (reports read them with
FINAL, or count distinct log positions). The rollup sums, so it must see each event exactly once; it
holds the sink's checkpoint for that. ClickHouse has no transactions, but one INSERT of one block into
a table of one partition is one part, visible whole or not at all. `commit` inserts the row tables
first, then, as one INSERT, the batch's rollup rows (only events past the checkpoint) with a marker row
whose `log_positions` is the span since the stored checkpoint (position - the markers' sum). The sum of
the markers is the checkpoint, so the rollup INSERT is the commit point:
- a failure before it commits nothing, and the batch is applied again (rows replace themselves);
- a failure after it (or one the client saw although the server committed) leaves the checkpoint at the
  batch's end, which the sink reads again before going on, so the batch is not applied a second time;
- events at or before the checkpoint (a replay over a filled store) rewrite their rows and add no counts;
- a batch that wrote no rows inserts no marker until `CHECKPOINT_STRIDE` positions have gone by (each
  INSERT is a part): a restart reads those events again, and they write nothing again.
A batch is at most the runtime's batch size (20,000 events in a replay), so its rollup INSERT is far
under the million rows at which ClickHouse cuts an INSERT into blocks (the chDB adapter turns off
parallel parsing, which would cut it by size).

The sender of a message is chosen per attempt (`MessageSendAttempted`) and the events after it
(bounces, opens, clicks) do not repeat it: the sink keeps the latest attempt's sender per message in
a bounded cache, backed by `message_sender_changes` for messages attempted before the cache (or a
restart).
A profile's vendor (`_vendor`) is kept the same way, backed by `profile_vendor_changes`; a message
event counts under the vendor the profile had when it happened (as PostHog's "person properties on
events": the summary then needs no per-profile join).

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
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from itertools import chain
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
from herald.domain.tracking import GOAL_MARKS, ActivityTracked, goal_of
from herald.infra.clickhouse import ClickHouse
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.projections.message_rollup import (
    DELIVERY_COLUMNS,
    DIMENSIONS,
    NO_KEY,
    ROLLUP_COLUMNS,
    ROLLUP_TABLE,
    Key,
    key_getter,
    marker_row,
    rollup_rows,
    stored_checkpoint,
)
from herald.projections.profile_states import PROFILE_STREAM_PREFIX, LoadProfile, ProfileStates
from herald.reports.segment_sql import SNAPSHOT_COLUMNS, snapshot_row

# A batch that wrote no rows moves the stored checkpoint (its marker) only this far past the stored one:
# every INSERT makes a part (chDB kept ≈ 8 KB per part: a marker a pass grew `herald serve` by MB a minute
# under tracked events), and re-reading up to this many events after a restart writes nothing twice.
CHECKPOINT_STRIDE = 50_000
# The caches must hold more keys than a batch can set (one per event at most), so a value set in a
# batch is never evicted before the batch's later rows read it; batches are 20,000 events at most.
SENDER_CACHE_SIZE = 200_000
VENDOR_CACHE_SIZE = 200_000
DELIVERY_CACHE_SIZE = 200_000
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
_PROFILE_ID = MESSAGE_COLUMNS.index("profile_id")
_ROLLUP_KEY = key_getter(MESSAGE_COLUMNS)
_EVENT_TYPE = DIMENSIONS.index("event_type")

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
    ROLLUP_TABLE: ROLLUP_COLUMNS,
    "message_deliveries": DELIVERY_COLUMNS,
    "message_sender_changes": ("message_id", "sender_id", "position"),
    "profile_vendor_changes": ("profile_id", "vendor", "position"),
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
        vendor_cache_size: int = VENDOR_CACHE_SIZE,
        sink: str = "",  # whose checkpoint: the scale engine's partitions keep one each
    ) -> None:
        self._ch = ch
        self._sink = sink
        self._profiles = _Snapshots(load_profile, profile_cache_size) if load_profile else None
        self._pending: dict[str, list[list[Any]]] = {table: [] for table in TABLE_COLUMNS}
        self._senders = _Latest("message_sender_changes", "message_id", "sender_id", sender_cache_size)
        self._vendors = _Latest("profile_vendor_changes", "profile_id", "vendor", vendor_cache_size)
        self._unresolved: list[list[Any]] = []  # message rows whose sender is not in the cache
        self._deliveries = _Deliveries(DELIVERY_CACHE_SIZE)
        self._counted: list[list[Any]] = []  # message rows past the checkpoint: the rollup counts them
        self._counted_vendors: list[str | None] = []  # each one's vendor (None: not in the cache)
        self._fates: list[tuple[str, int, int]] = []  # (message, counted row, position) of deliveries
        # and hard bounces
        self._position: int | None = None  # None: read from the store when asked
        self._stored = 0  # the markers' sum as last read or written (valid while _position is not None)

    # -- the Projection protocol

    def checkpoint(self) -> int:
        if self._position is None:
            self._position = self._stored = stored_checkpoint(self._ch, self._sink)
        return self._position

    @property
    def consumes(self) -> EventFilter:
        """The types it turns into rows, and every profile event when it keeps snapshots.

        Of tracked events only goals make rows: the others (nearly all) are not read at all."""
        prefixes = (PROFILE_STREAM_PREFIX,) if self._profiles is not None else ()
        return EventFilter(_HANDLED, prefixes, {"ActivityTracked": GOAL_MARKS})

    def apply(self, event: RecordedEvent) -> None:
        if self._profiles is not None and event.stream.startswith(PROFILE_STREAM_PREFIX):
            self._profiles.fold(event)
        if event.type not in _HANDLED:
            return
        decoded = registry.decode(event.type, event.schema_version, event.payload)
        self._fold(event, decoded)

    def commit(self, position: int) -> None:
        """Insert the pending rows (one INSERT per table), then the rollup's counts with the checkpoint."""
        try:
            start = self.checkpoint()
            stored = self._stored  # at or before start: batches that wrote nothing left their marker
            self._resolve_senders(start)
            vendors = self._resolved_vendors(start)
            keys = [_ROLLUP_KEY(row, vendor) for row, vendor in zip(self._counted, vendors, strict=True)]
            weights, taken_back, deliveries = self._deliveries.settle(self._ch, start, self._fates, keys)
            self._pending["message_deliveries"] = deliveries
            counted = chain(zip(keys, weights, strict=True), ((key, -1) for key in taken_back))
            counts = rollup_rows(counted)
            if self._profiles is not None:
                self._pending["profile_snapshots"] = self._profiles.touched_rows()
            wrote = False
            for table, rows in self._pending.items():
                if rows:
                    self._ch.insert(table, TABLE_COLUMNS[table], rows)
                    wrote = True
            if position > stored and (wrote or counts or position - stored >= CHECKPOINT_STRIDE):
                # the commit point: the counts and the marker up to `position`, one INSERT
                self._ch.insert(
                    ROLLUP_TABLE, ROLLUP_COLUMNS, [*counts, marker_row(position - stored, self._sink)]
                )
                self._stored = position
        except BaseException:
            # The runtime applies the batch again from the checkpoint, read again from the store (the
            # rollup INSERT may have gone in although the client saw it fail): rows already inserted
            # come again with the same ids and replace themselves.
            self.discard()
            raise
        self._clear()
        self._position = max(position, start)

    def discard(self) -> None:
        # The caches may hold senders and vendors of discarded events, newer than the rows applied again
        # next: forget them, and let those rows read the committed ones. Likewise profile states.
        self._senders.clear()
        self._vendors.clear()
        self._deliveries.clear()
        if self._profiles is not None:
            self._profiles.forget()
        self._clear()
        self._position = None

    # -- reading back

    def _resolve_senders(self, checkpoint: int) -> None:
        """Fill the sender of rows whose message the cache did not know when they were applied.

        Their sender is the one committed up to the checkpoint; an attempt later in this batch is newer
        than those rows, so the cache (which has it) is not asked.
        """
        if not self._unresolved:
            return
        messages = {row[_MESSAGE_ID] for row in self._unresolved}
        stored = self._senders.committed(self._ch, messages, checkpoint)
        for row in self._unresolved:
            row[_SENDER] = stored.get(row[_MESSAGE_ID], "")

    def _resolved_vendors(self, checkpoint: int) -> list[str]:
        """Each counted row's vendor: the cache's at the row, else the one committed by the checkpoint."""
        pairs = list(zip(self._counted, self._counted_vendors, strict=True))
        missing = {row[_PROFILE_ID] for row, vendor in pairs if vendor is None}
        stored = self._vendors.committed(self._ch, missing, checkpoint) if missing else {}
        return [stored.get(row[_PROFILE_ID], "") if vendor is None else vendor for row, vendor in pairs]

    def _clear(self) -> None:
        for rows in self._pending.values():
            rows.clear()
        self._unresolved.clear()
        self._counted.clear()
        self._counted_vendors.clear()
        self._fates.clear()
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
        history = self._senders.set(message_id, sender_id, event.position)
        self._pending["message_sender_changes"].append(history)

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
        if event.position > self.checkpoint():  # at or before it, the rollup has counted the event
            if event_type in ("delivered", "hard_bounce"):
                self._fates.append((decoded.message_id, len(self._counted), event.position))
            self._counted.append(row)
            self._counted_vendors.append(self._vendors.get(decoded.profile_id))

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
        history = self._vendors.set(profile_id, vendor, event.position)
        self._pending["profile_vendor_changes"].append(history)

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


class _Latest:
    """The latest value per key (a message's sender, a profile's vendor) as the log stands at each event.

    Values the batch set are in a bounded cache; a key it does not hold is looked up, at commit, in the
    key's history table as of the checkpoint (rows a failed attempt of this batch left there are past it).
    """

    def __init__(self, table: str, key: str, value: str, size: int) -> None:
        self._sql = (
            f"SELECT {key} AS key, argMax({value}, position) AS value FROM {table}"
            f" WHERE {key} IN (SELECT arrayJoin({{keys:Array(String)}}))"  # a set: the key's index serves it
            f" AND position <= {{checkpoint:UInt64}} GROUP BY {key}"
        )
        self._size = size
        self._values: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        """The key's value as of the event being applied; None when the cache cannot say."""
        return self._values.get(key)

    def set(self, key: str, value: str, position: int) -> list[Any]:
        """Remember the key's new value; returns its history row."""
        self._keep(key, value)
        return [key, value, position]

    def committed(self, ch: ClickHouse, keys: Collection[str], checkpoint: int) -> dict[str, str]:
        """The values of `keys` committed up to `checkpoint` ('' for none), cached unless the batch set
        newer ones."""
        found = ch.query(self._sql, {"keys": sorted(keys), "checkpoint": checkpoint})
        stored = dict.fromkeys(keys, "") | {row["key"]: row["value"] for row in found}
        for key, value in stored.items():
            if key not in self._values:
                self._keep(key, value)
        return stored

    def clear(self) -> None:
        self._values.clear()

    def _keep(self, key: str, value: str) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._size:
            self._values.popitem(last=False)


class _Deliveries:
    """Each message's deliveries, with the rollup keys they were counted under, and whether it
    hard-bounced, as the log stands: what batches set in a bounded cache, the rest looked up in
    `message_deliveries` as of the checkpoint. A hard bounce takes the message's deliveries back
    (whenever it came), and a delivery of a message that has hard-bounced counts nothing."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._known: OrderedDict[str, tuple[tuple[Key, ...], bool]] = OrderedDict()
        self._sql = (
            f"SELECT message_id, bounced, {', '.join(DIMENSIONS)} FROM message_deliveries"
            " WHERE message_id IN (SELECT arrayJoin({ids:Array(String)})) AND position <= {checkpoint:UInt64}"
        )

    def settle(
        self, ch: ClickHouse, checkpoint: int, fates: Sequence[tuple[str, int, int]], keys: Sequence[Key]
    ) -> tuple[list[int], list[Key], list[list[Any]]]:
        """For the batch's counted rows (`keys`; `fates` names its deliveries and hard bounces, in log
        order, as (message, row, position)): each row's weight, the keys of the deliveries a bounce
        takes back, and the `message_deliveries` rows to write."""
        weights = [1] * len(keys)
        taken_back: list[Key] = []
        written: list[list[Any]] = []
        self._load(ch, {message_id for message_id, _, _ in fates}, checkpoint)
        for message_id, index, position in fates:
            delivered, bounced = self._known.pop(message_id)
            key = keys[index]
            if key[_EVENT_TYPE] == "delivered":
                if bounced:
                    weights[index] = 0  # the delivery of a message that has hard-bounced
                else:
                    delivered = (*delivered, key)
                    written.append([message_id, position, 0, *key])
            elif not bounced:
                taken_back.extend(delivered)
                bounced = True
                written.append([message_id, position, 1, *NO_KEY])
            self._keep(message_id, (delivered, bounced))
        return weights, taken_back, written

    def clear(self) -> None:
        self._known.clear()

    def _load(self, ch: ClickHouse, message_ids: set[str], checkpoint: int) -> None:
        missing = sorted(message_id for message_id in message_ids if message_id not in self._known)
        if not missing:
            return
        found: dict[str, tuple[tuple[Key, ...], bool]] = dict.fromkeys(missing, ((), False))
        for row in ch.query(self._sql, {"ids": missing, "checkpoint": checkpoint}):
            delivered, bounced = found[row["message_id"]]
            if row["bounced"]:
                found[row["message_id"]] = (delivered, True)
            else:
                found[row["message_id"]] = ((*delivered, tuple(row[c] for c in DIMENSIONS)), bounced)
        for message_id, state in found.items():
            self._keep(message_id, state)

    def _keep(self, message_id: str, state: tuple[tuple[Key, ...], bool]) -> None:
        self._known[message_id] = state
        self._known.move_to_end(message_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)


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
