"""Promo codes in a broadcast: what giving every recipient a code of their own adds to the broadcast's time.

Time is the processor's CPU time (`time.process_time`: the launch runs in this one thread), printed with
the wall time beside it: on a machine other sessions share, the wall time of two identical broadcasts
differs by half, the CPU time by a few per cent.

The same broadcast (bench_campaign's personalised template) is launched three
times over N subscribed profiles in one run: without the macro, with
`{loyalty.bench.promocode}` (each recipient is given a code of a pool of N:
one pool event and N holdings appended with the chunks, N messages carrying
their code), and without it again. The baseline is the mean of the two runs
without the macro, so the log growing between runs weighs on both sides.
Goal: the macro adds at most 10 %.

    python bench/bench_promo.py [--profiles 100000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import time

from bench_campaign import HTML
from common import (
    Herald,
    broadcast,
    create_catalog,
    herald_in_process,
    machine,
    report,
    run,
    subscribed_profiles,
    temp_dir,
    timed,
)

from herald.domain import campaigns as cp
from herald.domain import fragments as fr
from herald.domain import loyalty as ly
from herald.services.aggregates import CommandContext

CONTEXT = CommandContext(actor="bench", source="bench")
PROMO = "<p>Your personal code: <b>{loyalty.bench.promocode}</b></p>\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    print(machine(), f"; {args.profiles:,} profiles", flush=True)
    with temp_dir("bench-promo") as data, herald_in_process(data) as herald:
        create_catalog(herald)
        setup = timed(lambda: subscribed_profiles(herald, args.profiles, args.batch))
        print(f"setup: {args.profiles:,} profiles imported and projected in {setup:,.0f} s", flush=True)
        footer = fr.FragmentContent(name="Footer", content='<p><a href="{unsubscribe}">Unsubscribe</a></p>')
        herald.templates.change_fragment(fr.CreateFragment("footer", footer), CONTEXT)
        made = timed(lambda: _codes(herald, args.profiles))
        print(f"setup: {args.profiles:,} codes generated (a background job) in {made:,.0f} s", flush=True)

        with_macro = HTML.replace("{fragment.footer}", PROMO + "{fragment.footer}")
        plain = _launch(herald, HTML, args.profiles)
        print(f"broadcast without the macro: {plain:,.1f} s CPU", flush=True)
        with_codes = _launch(herald, with_macro, args.profiles)
        print(f"broadcast with {{loyalty.bench.promocode}}: {with_codes:,.1f} s CPU", flush=True)
        again = _launch(herald, HTML, args.profiles)
        print(f"broadcast without the macro, again: {again:,.1f} s CPU", flush=True)

        report_codes = herald.projections.loyalty.report(herald.clock.now(), ["1"])["1"]
        assert report_codes["bound"] == args.profiles and report_codes["free"] == 0, report_codes
        baseline = (plain + again) / 2
        print(
            f"the macro adds {with_codes / baseline - 1:+.1%} to the broadcast (goal: at most +10 %)",
            flush=True,
        )
        report(
            "broadcast with a promo code each",
            args.profiles / with_codes,
            "messages",
            args.profiles / baseline,
        )


def _codes(herald: Herald, count: int) -> None:
    settings = ly.ProgramSettings(
        name="Bench", shortcode="bench", generator=ly.PatternGenerator(pattern="{X4}-{X4}-{X4}")
    )
    program_id, _ = herald.loyalty.create(settings, True, CONTEXT)
    herald.promo_codes.generate(program_id, count, False, {}, CONTEXT)
    herald.runtime.drain()
    pool, _ = herald.promo_codes.pool(program_id)
    assert pool.count == count, pool.count


def _launch(herald: Herald, html: str, count: int) -> float:
    """The broadcast's CPU seconds, from launch to every message decided (wall seconds printed)."""
    campaign_id = broadcast(herald, html)
    started, wall = time.process_time(), time.perf_counter()
    herald.campaigns.launch_now(campaign_id, CONTEXT)
    herald.runtime.drain()
    elapsed = time.process_time() - started
    print(f"  (wall {time.perf_counter() - wall:,.1f} s)", flush=True)
    state = herald.campaigns.campaign(campaign_id)
    counters = herald.projections.campaigns.counters(campaign_id)
    assert state.status is cp.CampaignStatus.COMPLETED, state.status
    assert counters.get("queued", 0) == count, counters
    return elapsed


if __name__ == "__main__":
    run(main)
