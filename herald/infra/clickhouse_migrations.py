"""Schema migrations of the ClickHouse report store: an ordered list, applied on start, each recorded once.

`migrate(ch, MIGRATIONS)` creates `schema_migrations` if needed, then runs, in
list order, every migration not recorded there and records it with a checksum
of its statements. Re-running applies nothing. Editing a migration after it
was applied is refused: add a new one instead.

ClickHouse DDL is not transactional: if a statement fails, the earlier
statements of that migration stay applied and the migration is not recorded,
so the next start runs it again. Write statements to be re-runnable
(`CREATE TABLE IF NOT EXISTS`, `DROP TABLE IF EXISTS`).
Statements keep to what both engines run (see `herald.infra.clickhouse`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from herald.infra.clickhouse import ClickHouse
from herald.infra.clock import Clock, SystemClock


class Migration(NamedTuple):
    """One step of the schema: an id that sorts in order, and its statements (one SQL statement each)."""

    id: str
    statements: tuple[str, ...]


class MigrationError(Exception):
    """The migration list contradicts itself or what the store has recorded."""


# Migration 0005's texts: the rollup's key (projections.message_rollup.DIMENSIONS), and the rows and
# vendors the sink before it had committed (its checkpoint was in herald_meta).
_ROLLUP_KEY = (
    "day, campaign_id, template_id, scenario_id, database_id, resource_id, channel, event_type,"
    " is_unique, is_bot, is_test, domain_group, recipient_domain, sender_id, vendor"
)
_ROLLUP_KEY_COLUMNS = (
    "day Date, campaign_id String, template_id String, scenario_id String, database_id String,"
    " resource_id String, channel String, event_type String, is_unique UInt8, is_bot UInt8,"
    " is_test UInt8, domain_group String, recipient_domain String, sender_id String,"
    " vendor String"  # the profile's `_vendor` when the event happened
)
_NO_KEY = "toDate('1970-01-01'), '', '', '', '', '', '', '', 0, 0, 0, '', '', '', ''"
_OLD_CHECKPOINT = "SELECT max(toUInt64(value)) AS checkpoint FROM herald_meta WHERE key = 'sink_checkpoint'"
_COMMITTED_ROWS = f"SELECT * FROM message_events FINAL WHERE position <= ({_OLD_CHECKPOINT})"
_COMMITTED_BOUNCES = f"{_COMMITTED_ROWS} AND event_type = 'hard_bounce'"
_COMMITTED_VENDORS = (
    "SELECT profile_id, argMax(vendor, position) AS vendor FROM profile_vendor_changes"
    f" WHERE position <= ({_OLD_CHECKPOINT}) GROUP BY profile_id"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_herald_meta",
        (
            # Facts about the store itself (e.g. which projection version filled it); the latest value wins.
            "CREATE TABLE IF NOT EXISTS herald_meta ("
            " key String,"
            " value String,"
            " updated_at DateTime('UTC')"
            ") ENGINE = ReplacingMergeTree(updated_at) ORDER BY key",
        ),
    ),
    Migration(
        "0002_report_tables",
        (
            # One row per message event (queued ... complaint), denormalised for reports. Keyed by the
            # log's event id: a replayed or retried batch replaces rows, never adds (read with FINAL).
            "CREATE TABLE IF NOT EXISTS message_events ("
            " event_id String,"
            " position UInt64,"
            " event_type String,"  # queued suppressed failed delivered soft_bounce hard_bounce
            # not_delivered open read click unsubscribe complaint
            " at DateTime('UTC'),"
            " day Date,"
            " message_id String,"
            " campaign_id String,"
            " run_id String,"
            " scenario_id String,"
            " template_id String,"
            " template_version UInt32,"
            " database_id String,"
            " resource_id String,"
            " channel String,"
            " profile_id String,"
            " recipient_domain String,"
            " domain_group String,"
            " sender_id String,"
            " link_id String,"
            " link_url String,"
            " link_name String,"
            " bounce_class String,"  # hard, soft, or ''
            " bounce_text String,"
            " reason String,"  # suppression, failure or non-delivery reason
            " is_unique UInt8,"
            " is_test UInt8,"
            " is_bot UInt8"
            ") ENGINE = ReplacingMergeTree(position) PARTITION BY toYYYYMM(day) ORDER BY (day, event_id)",
            # Subscription changes with their cause (audience growth: every gain and loss).
            "CREATE TABLE IF NOT EXISTS subscription_changes ("
            " event_id String,"
            " position UInt64,"
            " at DateTime('UTC'),"
            " day Date,"
            " profile_id String,"
            " database_id String,"
            " resource_id String,"
            " channel String,"
            " contact String,"
            " status_before String,"
            " status String,"
            " cause String,"
            " is_test UInt8"
            ") ENGINE = ReplacingMergeTree(position) PARTITION BY toYYYYMM(day) ORDER BY (day, event_id)",
            # Profiles as they were created, with where they came from (cohorts by import date).
            "CREATE TABLE IF NOT EXISTS profile_creations ("
            " event_id String,"
            " position UInt64,"
            " at DateTime('UTC'),"
            " day Date,"
            " profile_id String,"
            " database_id String,"
            " source String,"
            " is_test UInt8"
            ") ENGINE = ReplacingMergeTree(position) PARTITION BY toYYYYMM(day) ORDER BY (day, event_id)",
            # Goals and pixel visits (tracked events with a goal or a pixel), known or anonymous.
            "CREATE TABLE IF NOT EXISTS goal_events ("
            " event_id String,"
            " position UInt64,"
            " at DateTime('UTC'),"
            " day Date,"
            " profile_id String,"
            " anonymous_id String,"
            " database_id String,"
            " pixel_id String,"
            " goal String,"
            " value Float64,"
            " referrer String,"
            " browser String,"
            " os String,"
            " country String,"
            " city String"
            ") ENGINE = ReplacingMergeTree(position) PARTITION BY toYYYYMM(day) ORDER BY (day, event_id)",
        ),
    ),
    Migration(
        "0003_report_sink_state",
        (
            # The sender of each message's latest attempt: the report sink fills `sender_id` on the rows
            # that follow the attempt (bounces, opens, clicks...), also after a restart.
            "CREATE TABLE IF NOT EXISTS message_senders ("
            " message_id String,"
            " sender_id String,"
            " position UInt64"
            ") ENGINE = ReplacingMergeTree(position) ORDER BY message_id",
            # Each profile's vendor (`_vendor`, "Поставщик"): the summary report groups by it.
            "CREATE TABLE IF NOT EXISTS profile_vendors ("
            " profile_id String,"
            " vendor String,"
            " position UInt64"
            ") ENGINE = ReplacingMergeTree(position) ORDER BY profile_id",
            # Deleted campaigns, templates, databases and resources: their statistics stay, and reports
            # leave them out unless asked to show deleted objects.
            "CREATE TABLE IF NOT EXISTS deleted_objects ("
            " kind String,"  # campaign, template, database, resource
            " object_id String,"
            " position UInt64,"
            " at DateTime('UTC')"
            ") ENGINE = ReplacingMergeTree(position) ORDER BY (kind, object_id)",
        ),
    ),
    Migration(
        "0004_profile_snapshots",
        (
            # Each profile's current state, for the bulk segment evaluator (`reports/segment_sql.py`,
            # whose docstring gives the encoding); the row with the latest log position wins.
            # Field values are "entries": one per value (one per phone or tag), owned by the profile
            # (owner 0) or by its k-th subscription (owner k, from 1), with the value in every form a
            # condition may compare. Subscriptions are parallel arrays, one element per subscription.
            "CREATE TABLE IF NOT EXISTS profile_snapshots ("
            " profile_id String,"
            " database_id String,"
            " status String,"
            " `exists` UInt8,"  # created, not deleted, not merged away
            " field_owners Array(UInt32),"
            " field_names Array(String),"
            " field_strings Array(String),"  # the value as text (str())
            " field_lowers Array(String),"  # the text lower-cased by Python, for the case-blind operators
            " field_ints Array(Int64),"  # int; date: days since 1970-01-01; datetime: epoch ms; IPv4; bool
            " field_floats Array(Float64),"  # a number as float
            " field_empties Array(UInt8),"  # 1: the field is held with an empty value
            " sub_resource_ids Array(String),"
            " sub_channels Array(String),"
            " sub_providers Array(String),"  # '' when none
            " sub_contacts Array(String),"
            " sub_statuses Array(String),"
            " sub_priorities Array(Int64),"
            " sub_registered_at Array(DateTime('UTC')),"
            " category_owners Array(UInt32),"  # with category_names: the categories a subscription left
            " category_names Array(String),"
            " position UInt64"
            ") ENGINE = ReplacingMergeTree(position) ORDER BY profile_id",
        ),
    ),
    Migration(
        "0005_message_rollup",
        (
            # Every vendor a profile had and every sender a message was attempted through, by the log
            # position that set it (profile_vendors and message_senders kept only the latest): the sink
            # looks them up as of its checkpoint, which a retried batch's own rows are past.
            "CREATE TABLE IF NOT EXISTS profile_vendor_changes ("
            " profile_id String,"
            " vendor String,"
            " position UInt64"
            ") ENGINE = ReplacingMergeTree ORDER BY (profile_id, position)",
            # Re-runnable: the rows replace themselves by (profile, position).
            "INSERT INTO profile_vendor_changes (profile_id, vendor, position)"
            " SELECT profile_id, vendor, position FROM profile_vendors FINAL",
            "CREATE TABLE IF NOT EXISTS message_sender_changes ("
            " message_id String,"
            " sender_id String,"
            " position UInt64"
            ") ENGINE = ReplacingMergeTree ORDER BY (message_id, position)",
            "INSERT INTO message_sender_changes (message_id, sender_id, position)"
            " SELECT message_id, sender_id, position FROM message_senders FINAL",
            "DROP TABLE IF EXISTS message_rollup",
            # The summary report's counts, kept by the sink: message events per day and every dimension
            # the summary groups or filters by. `events` sums; a batch's rows and its `log_positions`
            # marker (day 1970-01-01, every dimension empty: the log positions the batch covered) go
            # in as one INSERT into one partition, so the marker sum is the sink's checkpoint and a
            # batch is counted once (see projections/clickhouse_sink.py).
            "CREATE TABLE message_rollup ("
            f" {_ROLLUP_KEY_COLUMNS},"
            " events Int64,"  # a delivery a later hard bounce takes back counts -1
            " log_positions UInt64"
            ") ENGINE = SummingMergeTree((events, log_positions))"
            f" ORDER BY ({_ROLLUP_KEY})",
            # Each message's deliveries with the rollup key each was counted under, and its hard
            # bounces (bounced 1, no key): a hard bounce after a delivery takes the delivery back.
            "DROP TABLE IF EXISTS message_deliveries",
            "CREATE TABLE message_deliveries ("
            " message_id String,"
            " position UInt64,"
            " bounced UInt8,"
            f" {_ROLLUP_KEY_COLUMNS}"
            ") ENGINE = ReplacingMergeTree ORDER BY (message_id, position)",
            # Both filled from the rows the old sink had committed (up to its checkpoint; rows past it
            # are applied again by the sink), each under the profile's vendor as of that checkpoint,
            # which is what the summary showed until now. The checkpoint moves into the marker.
            "INSERT INTO message_deliveries"
            f" SELECT message_id, position, 0, {_ROLLUP_KEY}"
            f" FROM ({_COMMITTED_ROWS} AND event_type = 'delivered') AS committed"
            f" ANY LEFT JOIN ({_COMMITTED_VENDORS}) AS vendors USING profile_id"
            " UNION ALL"
            f" SELECT message_id, position, 1, {_NO_KEY}"
            f" FROM ({_COMMITTED_ROWS} AND event_type = 'hard_bounce')",
            "INSERT INTO message_rollup"
            f" SELECT {_ROLLUP_KEY},"
            "  toInt64(countIf(NOT (event_type = 'delivered' AND message_id IN"
            f"  (SELECT message_id FROM ({_COMMITTED_BOUNCES}))))) AS events,"
            " toUInt64(0) AS log_positions"
            f" FROM ({_COMMITTED_ROWS}) AS committed"
            f" ANY LEFT JOIN ({_COMMITTED_VENDORS}) AS vendors USING profile_id"
            f" GROUP BY {_ROLLUP_KEY}"
            " HAVING events != 0"
            " UNION ALL"
            f" SELECT {_NO_KEY}, toInt64(0), checkpoint FROM ({_OLD_CHECKPOINT}) WHERE checkpoint > 0",
        ),
    ),
    Migration(
        "0006_old_sink_state",
        (
            # Apart from 0005 so that a rerun of 0005 still finds the table it copies.
            "DROP TABLE IF EXISTS profile_vendors",
            "DROP TABLE IF EXISTS message_senders",
            "ALTER TABLE herald_meta DELETE WHERE key = 'sink_checkpoint'",
        ),
    ),
)

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " id String,"
    " checksum String,"
    " applied_at DateTime('UTC')"
    # Replacing, keyed by id: two processes migrating at once record a migration twice at worst.
    ") ENGINE = ReplacingMergeTree ORDER BY id"
)


def checksum(migration: Migration) -> str:
    """SHA-256 of the statements, whitespace-insensitive, so reformatting is not a change."""
    normalised = "\n;\n".join(" ".join(statement.split()) for statement in migration.statements)
    return hashlib.sha256(normalised.encode()).hexdigest()


def applied_migrations(ch: ClickHouse) -> dict[str, str]:
    """The ids recorded in the store, with their checksums."""
    rows = ch.query("SELECT id, any(checksum) AS checksum FROM schema_migrations GROUP BY id")
    return {row["id"]: row["checksum"] for row in rows}


def migrate(
    ch: ClickHouse, migrations: Sequence[Migration] = MIGRATIONS, clock: Clock | None = None
) -> list[str]:
    """Apply the migrations the store has not recorded, in order; return the ids applied now."""
    _check_list(migrations)
    clock = clock or SystemClock()
    ch.execute(_SCHEMA_MIGRATIONS)
    applied = applied_migrations(ch)
    done_now: list[str] = []
    for migration in migrations:
        digest = checksum(migration)
        if migration.id in applied:
            if applied[migration.id] != digest:
                raise MigrationError(
                    f"migration {migration.id} changed after it was applied; add a new migration instead"
                )
            continue
        for statement in migration.statements:
            ch.execute(statement)
        ch.insert(
            "schema_migrations", ("id", "checksum", "applied_at"), [(migration.id, digest, clock.now())]
        )
        done_now.append(migration.id)
    return done_now


def _check_list(migrations: Sequence[Migration]) -> None:
    ids = [migration.id for migration in migrations]
    if len(set(ids)) != len(ids):
        raise MigrationError(f"duplicate migration ids in {ids}")
    if ids != sorted(ids):
        raise MigrationError(f"migration ids must sort in the order they apply: {ids}")
    for migration in migrations:
        if not migration.statements or not all(statement.strip() for statement in migration.statements):
            raise MigrationError(f"migration {migration.id} has an empty statement list or statement")
