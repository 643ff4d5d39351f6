"""A broadcast to N subscribed profiles: time from launch to every message queued (gated and rendered).

Herald: a broadcast campaign with one personalised email template (links,
an `{if}`, a fragment) is launched over N profiles subscribed to its
resource; the clock runs from the launch command until the processors have
decided every recipient (frozen the audience, passed the send gate with its
stop-list and policy checks, rendered the message with tracked links, and
appended each decision atomically with the run's progress) and the campaign
has completed.

Baseline, same run, same data: reading the audience alone, i.e. the
audience query over the read model plus loading every recipient's profile
state from the log, the least any send of these messages must do.

    python bench/bench_campaign.py [--profiles 1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import time

from common import (
    DATABASE_ID,
    RESOURCE_ID,
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
from herald.domain.profiles import profile_decider, profile_stream
from herald.services.aggregates import CommandContext

CONTEXT = CommandContext(actor="bench", source="bench")
HTML = """<html><head><style>p { font-family: Arial }</style></head><body>
<h1>Hello, {lead._fname}!</h1>
<p>Your plan: {lead.plan}. You have {format(lead.points ",")} points.</p>
{if lead.points gte 500}<p>You are a gold member: <a href="https://shop.example.com/gold?u={lead._id}">claim</a></p>
{else}<p><a href="https://shop.example.com/points">Earn more points</a></p>{end}
<p><a href="https://shop.example.com/sale" name="sale">Spring sale</a></p>
{fragment.footer}
</body></html>"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    print(machine(), f"; {args.profiles:,} profiles", flush=True)
    with temp_dir("bench-campaign") as data, herald_in_process(data) as herald:
        create_catalog(herald)
        setup = timed(lambda: subscribed_profiles(herald, args.profiles, args.batch))
        print(f"setup: {args.profiles:,} profiles imported and projected in {setup:,.0f} s", flush=True)
        campaign_id = _campaign(herald)

        started = time.perf_counter()
        herald.campaigns.launch_now(campaign_id, CONTEXT)
        herald.runtime.drain()
        elapsed = time.perf_counter() - started
        state = herald.campaigns.campaign(campaign_id)
        counters = herald.projections.campaigns.counters(campaign_id)
        assert state.status is cp.CampaignStatus.COMPLETED, state.status
        assert counters.get("queued", 0) == args.profiles, counters

        baseline = timed(lambda: _read_audience(herald))
        print(f"launch to all {args.profiles:,} messages queued: {elapsed:,.1f} s", flush=True)
        report("broadcast, messages queued", args.profiles / elapsed, "messages", args.profiles / baseline)


def _campaign(herald: Herald) -> str:
    footer = fr.FragmentContent(name="Footer", content='<p><a href="{unsubscribe}">Unsubscribe</a></p>')
    herald.templates.change_fragment(fr.CreateFragment("footer", footer), CONTEXT)
    return broadcast(herald, HTML)


def _read_audience(herald: Herald) -> None:
    ids = herald.projections.profiles.audience(DATABASE_ID, RESOURCE_ID, "email")
    load = herald.aggregates.load
    for profile_id in ids:
        load(profile_decider, profile_stream(profile_id))


if __name__ == "__main__":
    run(main)
