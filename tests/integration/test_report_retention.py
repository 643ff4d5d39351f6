"""Report retention as a setting: rows of days past it go at the tick, newer ones stay."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from herald.api.wiring import build
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from tests.builders import CTX, DB, customers
from tests.conftest import ADMIN_TOKEN, START


def test_report_rows_past_the_retention_are_deleted_at_the_tick(tmp_path: Path) -> None:
    clock = ManualClock(START)
    settings = Settings(
        data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, reports_engine="chdb", report_retention_days=30
    )
    herald = build(settings, clock=clock, ids=IdSource(5))
    try:
        customers(herald)
        herald.profiles.create(DB, {"email": "old@example.org"}, CTX)
        clock.advance(timedelta(days=20))
        herald.profiles.create(DB, {"email": "new@example.org"}, CTX)
        herald.runtime.drain()
        assert herald.reports_runtime is not None and herald.clickhouse is not None
        herald.reports_runtime.drain()

        def created() -> int:
            # the deletes are mutations the engine applies in the background: wait for them (bounded)
            for _ in range(200):
                pending = herald.clickhouse.query(  # type: ignore[union-attr]
                    "SELECT count() AS n FROM system.mutations WHERE is_done = 0"
                )
                if pending[0]["n"] == 0:
                    break
                time.sleep(0.05)
            rows = herald.clickhouse.query("SELECT count() AS n FROM profile_creations FINAL")  # type: ignore[union-attr]
            return int(rows[0]["n"])

        herald.tick()
        assert created() == 2  # 20 days: both within 30
        clock.advance(timedelta(days=15))  # the first is 35 days old, the second 15
        herald.tick()
        assert created() == 1
    finally:
        herald.close()
