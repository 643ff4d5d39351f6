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
