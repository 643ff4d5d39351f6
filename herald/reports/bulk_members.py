"""The report store as the membership processor's bulk evaluator (`processors.bulk_population.BulkMembers`).

A population step asks it for the members of a range of profiles as of a log position; the
processor trusts the answer only for profiles whose snapshot is their state there (not `stale`) and
only once the sink has committed every event before that position (`reached`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from herald.domain.segments import SegmentQuery
from herald.infra.clickhouse import ClickHouse
from herald.projections.message_rollup import stored_checkpoint
from herald.reports.segment_sql import Scope, members_in_scope, stale_snapshots


class ReportStoreMembers:
    """Members and snapshots from ClickHouse; `catch_up` brings an embedded sink to the log's head first."""

    def __init__(self, ch: ClickHouse, catch_up: Callable[[], None]) -> None:
        self._ch = ch
        self._catch_up = catch_up

    def reached(self, position: int) -> bool:
        self._catch_up()
        return stored_checkpoint(self._ch) >= position - 1

    def members(
        self,
        query: SegmentQuery,
        now: datetime,
        timezone: str,
        scope: Scope,
        segments: Mapping[str, Collection[str]],
    ) -> set[str]:
        return members_in_scope(self._ch, query, now, timezone, scope, segments=segments)

    def stale(self, scope: Scope, profile_ids: Collection[str]) -> set[str]:
        return stale_snapshots(self._ch, scope, profile_ids)
