"""The summary report's rollup: message events counted per day and dimension, and the sink's checkpoint.

`message_rollup` (migration `0005_message_rollup`) is a SummingMergeTree: one row per day and
combination of the dimensions the summary groups or filters by, with `events` counting the message
events of that combination. The report sink adds a batch's counts in one INSERT together with a
marker row (day 1970-01-01, every dimension empty) whose `log_positions` is the number of log
positions the batch covered, so the sum of the markers is the checkpoint up to which the rollup has
counted: the INSERT that adds counts also moves the checkpoint, atomically (see the sink's docstring).

Counts may be taken back: a delivery whose message hard-bounces later (a DSN after the relay accepted
it) is not delivered, so the bounce adds -1 under the delivery's key (`message_deliveries` keeps the
keys the deliveries were counted under).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from operator import itemgetter
from typing import Any

from herald.infra.clickhouse import ClickHouse

ROLLUP_TABLE = "message_rollup"
MARKER_DAY = date(1970, 1, 1)

DIMENSIONS = (
    "day",
    "campaign_id",
    "template_id",
    "scenario_id",
    "database_id",
    "resource_id",
    "channel",
    "event_type",
    "is_unique",
    "is_bot",
    "is_test",
    "domain_group",
    "recipient_domain",
    "sender_id",
    "vendor",
)
"""The rollup's key: the columns of a message event row it keeps (vendor: the profile's, at the event)."""

ROLLUP_COLUMNS = (*DIMENSIONS, "events", "log_positions")
DELIVERY_COLUMNS = ("message_id", "position", "bounced", *DIMENSIONS)
"""`message_deliveries`: a delivery (bounced 0) with the key it was counted under, or a hard bounce (1)."""

Key = tuple[Any, ...]
_MARKER_KEY = (MARKER_DAY, *("" for _ in range(7)), 0, 0, 0, "", "", "", "")
NO_KEY = _MARKER_KEY
"""The key columns of a hard bounce's `message_deliveries` row (it was counted under none)."""


def key_getter(columns: Sequence[str]) -> Callable[[Sequence[Any], str], Key]:
    """The rollup key of a message event row in `columns` order, given the profile's vendor."""
    pick = itemgetter(*(columns.index(name) for name in DIMENSIONS[:-1]))
    return lambda row, vendor: (*pick(row), vendor)


def rollup_rows(counts: Iterable[tuple[Key, int]]) -> list[tuple[Any, ...]]:
    """The summed counts per key, as rollup rows (none where they cancel); the sink adds the marker."""
    summed: Counter[Key] = Counter()
    for key, count in counts:
        summed[key] += count
    return [(*key, events, 0) for key, events in summed.items() if events]


def marker_row(span: int, sink: str = "") -> tuple[Any, ...]:
    """The row saying that `span` more log positions are counted by `sink` (the embedded sink is "";
    each partition of the scale engine has its own, named in the marker's `campaign_id`)."""
    return (MARKER_DAY, sink, *_MARKER_KEY[2:], 0, span)


def stored_checkpoint(ch: ClickHouse, sink: str = "") -> int:
    """The log position up to which `sink` has committed its rows and counts: its markers' sum."""
    rows = ch.query(
        f"SELECT sum(log_positions) AS position FROM {ROLLUP_TABLE} "
        "WHERE day = {marker:Date} AND campaign_id = {sink:String}",
        {"marker": MARKER_DAY, "sink": sink},
    )
    return int(rows[0]["position"]) if rows else 0
