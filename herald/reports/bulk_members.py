"""The report store as the membership processor's bulk evaluator (`processors.bulk_population.BulkMembers`).

A population step asks it for the members of a range of profiles as of a log position; the
processor trusts the answer only for profiles whose snapshot is their state there (not `stale`) and
only once the sink has committed every event before that position (`reached`). The sink's own
position says so best: after batches that wrote no rows, the markers it stores lag behind it (by up to
`CHECKPOINT_STRIDE` events), and a step would then be left to the profile-by-profile path for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Protocol

from herald.domain.segments import SegmentQuery
from herald.infra.clickhouse import ClickHouse
from herald.projections.message_rollup import stored_checkpoint
from herald.reports.segment_sql import Scope, members_in_scope, stale_snapshots

CatchUp = Callable[[], int | None]
"""Brings an embedded sink up to the log's head and returns the position it has committed through;
None when no sink runs in this process (then the store's markers say how far it is)."""


class ReportStoreMembers:
    """Members and snapshots from ClickHouse; `catch_up` brings an embedded sink to the log's head first."""

    def __init__(self, ch: ClickHouse, catch_up: CatchUp) -> None:
        self._ch = ch
        self._catch_up = catch_up

    def reached(self, position: int) -> bool:
        done = self._catch_up()
        return (stored_checkpoint(self._ch) if done is None else done) >= position - 1

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


class SinkRuntime(Protocol):
    def drain(self) -> int: ...

    def positions(self) -> dict[str, int]: ...


def draining(runtime: SinkRuntime) -> CatchUp:
    """The catch-up of a runtime that runs the sink alone: drain it to the head, return its position."""

    def catch_up() -> int:
        runtime.drain()
        return min(runtime.positions().values())

    return catch_up
