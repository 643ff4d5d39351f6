"""`herald replay` rebuilds every projection from the log to exactly the live read models.

The live side is driven the way the server drives it: small batches between
commands (and, in the small test, a tiny profile cache so folds resume from
the store). The replay reads the log in large batches. Same checksums means
the read models do not depend on how the log was cut into batches.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.api import replay as replay_module
from herald.api.wiring import Herald, build
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause, ChangeSubscriptionStatus
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.projections import profiles as profiles_projection
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from herald.services.tracking import TrackInput
from tests.builders import create_resource, customers

CTX = CommandContext()


def _setup(herald: Herald) -> None:
    customers(herald)
    create_resource(herald)


def _rows(start: int, count: int, generation: int) -> list[dict[str, object]]:
    return [
        {
            "email": f"user{i}@example.org",
            "_fname": f"Name{i}-{generation}",
            "crm_id": f"C{i}",
            "phones": [f"+7912{i % 10_000_000:07d}"],
            "subscriptions": [
                {
                    "resource_id": "7",
                    "channel": "email",
                    "email": f"user{i}@example.org",
                    "priority": generation,
                }
            ],
        }
        for i in range(start, start + count)
    ]


def _write_history(herald: Herald, profiles: int, tracked_per_batch: int, target_events: int) -> None:
    """Imports, re-imports, status changes, merges, deletes and tracked events, draining as a server would."""
    _setup(herald)
    batch = 500
    ids: list[str] = []
    for generation in (0, 1):
        for start in range(0, profiles, batch):
            results = herald.profiles.import_rows(
                "1", _rows(start, min(batch, profiles - start), generation), ImportOptions(), CTX
            )
            ids += [str(r.profile_id) for r in results] if generation == 0 else []
            herald.runtime.drain()
    for n, profile_id in enumerate(ids[: profiles // 10]):
        command = ChangeSubscriptionStatus(
            resource_id="7",
            channel="email",
            contact=f"user{n}@example.org",
            at=herald.clock.now(),
            status=Status.HARD_BOUNCED,
            cause=Cause.HARD_BOUNCE,
        )
        herald.profiles.execute(profile_id, command, CTX)
    herald.profiles.merge(ids[-1], ids[-2], CTX)
    herald.profiles.delete(ids[-3], CTX)
    herald.runtime.drain()
    n = 0
    while herald.store.head_position() < target_events:
        events = [
            TrackInput(
                name="Viewed",
                profile={"email": f"user{(n + k) % profiles}@example.org"},
                properties={"n": n + k},
                event_id=f"e{n + k}",
            )
            for k in range(tracked_per_batch)
        ]
        herald.tracking.track("1", events, CTX)
        n += tracked_per_batch
        herald.runtime.drain()


def _replay_matches_live(tmp_path: Path, herald: Herald, capsys: pytest.CaptureFixture[str]) -> None:
    live = herald.projections.checksums()
    settings = herald.settings
    herald.close()
    assert replay_module.replay(settings) == 0
    out = capsys.readouterr().out
    assert "checksums identical" in out
    rebuilt = build(settings, clock=ManualClock(), ids=IdSource(1))
    assert rebuilt.projections.checksums() == live
    positions = rebuilt.runtime.positions()
    assert positions["profiles"] == rebuilt.store.head_position()
    assert positions["hard-bounce-to-stop-list"] > 0  # the reactor's progress survives the swap
    rebuilt.close()


def _herald(tmp_path: Path, batch_size: int) -> Herald:
    herald = build(
        Settings(data_dir=tmp_path / "data", admin_token="t", reports_engine="off"),
        clock=ManualClock(),
        ids=IdSource(3),
    )
    herald.runtime._batch_size = batch_size
    return herald


def test_replay_reproduces_the_live_read_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiles_projection, "_CACHE_LIMIT", 5)
    herald = _herald(tmp_path, batch_size=7)
    _write_history(herald, profiles=60, tracked_per_batch=50, target_events=600)
    card = herald.projections.profiles.list_profiles("1", limit=1)[0]
    assert card["fields"]["_fname"].endswith("-1")
    _replay_matches_live(tmp_path, herald, capsys)


def test_replay_reports_a_read_model_that_drifted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    herald = _herald(tmp_path, batch_size=100)
    _write_history(herald, profiles=20, tracked_per_batch=10, target_events=100)
    herald.projections.profiles.conn.execute("UPDATE profile_cards SET global_status = 'invalid'")
    settings = herald.settings
    herald.close()
    assert replay_module.replay(settings, keep_live=True) == 1
    assert "DIFFER" in capsys.readouterr().out


@pytest.mark.slow
def test_replay_of_a_million_events_matches_the_live_read_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    herald = _herald(tmp_path, batch_size=5000)
    _write_history(herald, profiles=20_000, tracked_per_batch=10_000, target_events=1_000_000)
    assert herald.store.head_position() >= 1_000_000
    _replay_matches_live(tmp_path, herald, capsys)
