"""No promo code is given to two profiles, and no profile gets two codes of a program, when two processes
race on one pool through the real event store (two Heralds over the same SQLite files)."""

from __future__ import annotations

import itertools
import multiprocessing
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from herald.api.wiring import Herald, build
from herald.domain import loyalty as ly
from herald.domain.errors import RuleViolated
from herald.domain.promo_pool import BindingCause
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.builders import customers

PROFILES = 300
CODES = 220
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONTEXT = CommandContext(actor="test", source="test")


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, admin_token="t", secret_key="k", reports_engine="off")


def _prepare(data_dir: Path) -> tuple[str, str, list[str]]:
    """A personal program with CODES codes, a universal one with two, and PROFILES profiles."""
    herald = build(_settings(data_dir), clock=ManualClock(START), ids=IdSource(7))
    try:
        customers(herald)
        rows = [{"email": f"p{i}@example.org"} for i in range(PROFILES)]
        imported = herald.profiles.import_rows("1", rows, ImportOptions(), CONTEXT)
        pattern = ly.PatternGenerator(pattern="{X8}")
        settings = ly.ProgramSettings(name="P", shortcode="p", generator=pattern)
        personal, _ = herald.loyalty.create(settings, True, CONTEXT)
        herald.promo_codes.generate(personal, CODES, False, {}, CONTEXT)
        settings = ly.ProgramSettings(name="U", shortcode="u", universal=True, generator=pattern)
        universal, _ = herald.loyalty.create(settings, True, CONTEXT)
        herald.promo_codes.generate(universal, 2, False, {}, CONTEXT)
        herald.runtime.drain()
        return personal, universal, [str(r.profile_id) for r in imported]
    finally:
        herald.close()


def race(data_dir: str, programs: list[str], profile_ids: list[str], go: Any, name: str) -> dict[str, Any]:
    """One process: give every profile a code of each program, as fast as it can."""
    herald = build(_settings(Path(data_dir)), clock=ManualClock(START))
    given: dict[str, dict[str, str]] = {p: {} for p in programs}
    refused: dict[str, int] = dict.fromkeys(programs, 0)
    go.wait(60)  # both processes are built: start together
    try:
        for profile_id in profile_ids:
            for program_id in programs:
                cause = BindingCause(kind="api", id=f"{name}-{profile_id}")
                try:
                    assigned = herald.promo_codes.assign(program_id, profile_id, cause.id, cause, CONTEXT)
                except RuleViolated:
                    refused[program_id] += 1
                    continue
                given[program_id][profile_id] = assigned.code
    finally:
        herald.close()
    return {"given": given, "refused": refused}


def test_two_processes_racing_on_one_pool_never_share_a_code(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    personal, universal, people = _prepare(data_dir)
    context = multiprocessing.get_context("spawn")
    go = context.Manager().Barrier(2)
    orders = [people, list(reversed(people))]  # both ask for every profile, from opposite ends
    with context.Pool(2) as pool:
        pending = [
            pool.apply_async(race, (str(data_dir), [personal, universal], order, go, f"r{i}"))
            for i, order in enumerate(orders)
        ]
        results = [p.get(timeout=300) for p in pending]

    herald: Herald = build(_settings(data_dir), clock=ManualClock(START))
    try:
        herald.runtime.drain()
        for result in results:
            assert len(result["given"][personal]) + result["refused"][personal] == PROFILES
        # both processes saw the same code for every profile each served: one code per profile
        first, second = (r["given"][personal] for r in results)
        assert all(first[p] == second[p] for p in first.keys() & second.keys())
        served = {**first, **second}
        assert len(served) == CODES and len(set(served.values())) == CODES  # every code once, none shared
        events = [e for e in herald.store.read_stream(f"promopool-{personal}") if e.type == "PromoCodesBound"]
        racers = [e.data["cause"]["id"].split("-")[0] for e in events]
        switches = sum(a != b for a, b in itertools.pairwise(racers))
        assert switches >= 2, racers  # the two really ran at once: their bindings interleave
        seqs = [s for e in events for s in e.data["seqs"]]
        assert len(seqs) == CODES and len(set(seqs)) == CODES
        assert len({p for e in events for p in e.data["profile_ids"]}) == CODES
        holders = herald.projections.loyalty
        assert all(holders.holding(personal, p)["code"] == c for p, c in served.items())  # type: ignore[index]
        # a universal program gives everyone its first code
        every = {code for r in results for code in r["given"][universal].values()}
        assert len(every) == 1 and sum(len(r["given"][universal]) for r in results) == 2 * PROFILES
        counts = Counter(p for e in herald.store.read_stream(f"promopool-{universal}")
                         if e.type == "PromoCodesBound" for p in e.data["profile_ids"])  # fmt: skip
        assert len(counts) == PROFILES and set(counts.values()) == {1}
    finally:
        herald.close()
