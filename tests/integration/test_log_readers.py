"""What the processors read back from the log: only what they fold.

Tracked events are nearly all of a busy log and no read model folds them, bar
goals; a pass over the log must not even read the others (every consumer
declares what it folds, so the store filters them out without decoding).
The scenario engine reads every tracked event of a profile (these are an
anonymous visitor's): a scenario may start on any tracked event by its name,
and a journey waiting on a condition is re-checked on any event of its profile.
It reads the events about profiles, journeys and scenarios, not a campaign's
run, the catalog or promo pools. Scoring rules read every tracked event too (a
rule may score any event by its name); narrowing that to the names the rules in
force name is still to do.
"""

from __future__ import annotations

from herald.api.wiring import Herald
from herald.services.aggregates import CommandContext
from herald.services.tracking import TrackInput
from tests.builders import DB, customers


def test_no_processor_reads_an_ordinary_tracked_event_back(reporting: Herald) -> None:
    customers(reporting)
    plain = TrackInput(name="Viewed", anonymous_id="v-1", properties={"sku": "a1"})
    goal = TrackInput(name="Bought", anonymous_id="v-1", properties={"goal": "purchase", "value": 9})
    reporting.tracking.track(DB, [plain, goal], CommandContext(actor="test"))
    runtimes = [reporting.runtime, reporting.reports_runtime]
    consumers = [c for runtime in runtimes if runtime for c in runtime.consumers()]
    assert [c.name for c in consumers if getattr(c, "consumes", None) is None] == []
    tracked = [e for e in reporting.store.read_all() if e.type == "ActivityTracked"]
    assert [e.data["name"] for e in tracked] == ["Viewed", "Bought"]
    reads = {
        c.name: [c.consumes.matches(e) for e in tracked]  # type: ignore[attr-defined]
        for c in consumers
    }
    assert {name: read for name, read in reads.items() if any(read)} == {
        "clickhouse_sink": [False, True],
        "scoring-rules": [True, True],
        "segment_membership": [False, True],
    }
