"""Scenario waits as durable timers: fire the due ones, and say when the next one falls due.

A wait (a pause, a timed condition, a webhook retry) is a `ScenarioWaitScheduled` on the instance's
journey; the `scenario_timers` read model lists the ones pending by due time. Firing a timer
appends `ScenarioWaitElapsed` to the journey, with an id derived from the journey, the instance,
the step and the due time, so two firings of one timer (two ticks, two processes) append one
event; the journey decider ignores a timer the instance no longer waits for.

`fire_due(now)` walks the due timers from where the last call stopped (`_mark`), so timers fired
but not yet dropped by the read model are not read again and again; every `RESCAN` it starts from
the beginning once, which picks up any timer that was listed late with a due time already passed.
`next_due()` lets a loop sleep until the next timer instead of polling.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herald.domain.scenario_instances import journey_key, wait_elapsed
from herald.infra.event_store import EventStore, NewEvent, StreamAppend
from herald.infra.ids import deterministic_id
from herald.projections.scenario_instances import ScenarioInstancesProjection, moment

ACTOR = "scenario-timers"
PAGE = 5_000
RESCAN = timedelta(seconds=30)


class ScenarioTimers:
    def __init__(self, store: EventStore, instances: ScenarioInstancesProjection) -> None:
        self._store = store
        self._instances = instances
        self._mark: tuple[int, str, int] | None = None
        self._rescanned: datetime | None = None

    def fire_due(self, now: datetime) -> int:
        """Append `ScenarioWaitElapsed` for every timer due at `now`; how many were fired."""
        if self._rescanned is None or now - self._rescanned >= RESCAN:
            self._mark, self._rescanned = None, now
        fired = 0
        while True:
            due = self._instances.due_timers(now, self._mark, PAGE)
            if not due:
                return fired
            appends = []
            for due_micros, stream, entry, visit in due:
                scenario_id, profile_id = journey_key(stream)
                at = moment(due_micros)
                elapsed = wait_elapsed(scenario_id, profile_id, entry, visit, at, now)
                event = NewEvent(
                    event_id=deterministic_id(ACTOR, stream, entry, visit, due_micros),
                    type=elapsed.type_name,
                    data=elapsed.to_data(),
                    occurred_at=at,
                    metadata={"actor": ACTOR},
                )
                appends.append(StreamAppend(stream, [event]))
            self._store.append_many(appends)
            fired += len(due)
            last = due[-1]
            self._mark = (last[0], last[1], last[2])

    def next_due(self) -> datetime | None:
        """When the earliest timer not fired yet falls due (None: none pending)."""
        return self._instances.next_due(self._mark)
