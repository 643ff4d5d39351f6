"""The scenarios read model: cards, every instance's place, due timers, pending webhook calls, statistics.

Tables (committed with the checkpoint):
- `scenario_cards`: each scenario's settings, current version, state and next run, for listing;
- `scenario_instances`: one row per instance (scenario, profile, entry): running, completed or
  terminated (with the reason), its node and what it waits for (`awaiting`, `due_at`);
- `scenario_timers`: the durable timers, one per instance that waits on a pause, a timed
  condition or a retry: `ScenarioTimers` fires the due ones;
- `scenario_calls`: the webhook calls due (the webhook worker's queue);
- `scenario_days` and `scenario_node_days`: the statistics per account-time-zone day: entered,
  completed, terminated, errors, rejected; per node entered, exited by branch, failed.

Journey events are folded with the journey's own `evolve` (`scenario_instances`), from a cache of
states, a state it does not hold being folded from the journey stream up to the event; scenario
events with the aggregate's `evolve`. So the rows say exactly what the deciders see.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo

from herald.domain import scenario_instances as si
from herald.domain import scenarios as sc
from herald.domain.events import registry
from herald.infra.event_store import EventFilter, EventStore, RecordedEvent
from herald.infra.serialization import dumps, loads
from herald.projections.partitioned import FIRST, summed
from herald.projections.sqlite_projection import SqliteProjection

NAME = "scenario_instances"
STATE_CACHE_SIZE = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCENARIO_PREFIX = "scenario-"
S = TypeVar("S")


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def moment(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


class ScenarioInstancesProjection(SqliteProjection):
    name = NAME
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS scenario_cards (scenario_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "database_id TEXT NOT NULL, active INTEGER NOT NULL, deleted INTEGER NOT NULL, "
        "version INTEGER NOT NULL, "
        "next_run_at INTEGER, next_run_number INTEGER, doc BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS scenario_instances (scenario_id TEXT NOT NULL, profile_id TEXT NOT NULL, "
        "entry INTEGER NOT NULL, status TEXT NOT NULL, node_id TEXT, node_type TEXT NOT NULL, "
        "awaiting TEXT, due_at INTEGER, reason TEXT, entered_at INTEGER NOT NULL, "
        "PRIMARY KEY (scenario_id, profile_id, entry)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS scenario_instances_by_state "
        "ON scenario_instances (scenario_id, status, awaiting)",
        "CREATE INDEX IF NOT EXISTS scenario_instances_by_profile "
        "ON scenario_instances (profile_id, awaiting)",
        "CREATE TABLE IF NOT EXISTS scenario_timers (stream TEXT NOT NULL, entry INTEGER NOT NULL, "
        "visit INTEGER NOT NULL, due_at INTEGER NOT NULL, PRIMARY KEY (stream, entry)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS scenario_timers_by_due ON scenario_timers (due_at, stream, entry)",
        "CREATE TABLE IF NOT EXISTS scenario_calls (stream TEXT NOT NULL, entry INTEGER NOT NULL, "
        "visit INTEGER NOT NULL, attempt INTEGER NOT NULL, PRIMARY KEY (stream, entry)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS scenario_days (scenario_id TEXT NOT NULL, day TEXT NOT NULL, "
        "counter TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (scenario_id, day, counter)) "
        "WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS scenario_node_days (scenario_id TEXT NOT NULL, node_id TEXT NOT NULL, "
        "day TEXT NOT NULL, counter TEXT NOT NULL, count INTEGER NOT NULL, "
        "PRIMARY KEY (scenario_id, node_id, day, counter)) WITHOUT ROWID",
    )
    tables: ClassVar = {
        "scenario_cards": "scenario_id",
        "scenario_instances": "scenario_id, profile_id, entry",
        "scenario_timers": "stream, entry",
        "scenario_calls": "stream, entry",
        "scenario_days": "scenario_id, day, counter",
        "scenario_node_days": "scenario_id, node_id, day, counter",
    }

    # instances, their timers and calls live with their profile's partition; the statistics add up
    merge: ClassVar = {
        "scenario_cards": FIRST,
        "scenario_days": summed("scenario_id, day, counter", "count"),
        "scenario_node_days": summed("scenario_id, node_id, day, counter", "count"),
    }

    def __init__(
        self,
        conn: sqlite3.Connection,
        store: EventStore,
        account_timezone: str,
        cache_size: int = STATE_CACHE_SIZE,
    ) -> None:
        self._store = store
        self._zone = ZoneInfo(account_timezone)
        self._cache_size = cache_size
        self._journeys: OrderedDict[str, si.JourneyState] = OrderedDict()
        self._scenarios: dict[str, sc.ScenarioState] = {}
        super().__init__(conn)

    def handlers(self) -> dict[str, Any]:
        return {}

    @property
    def consumes(self) -> EventFilter:
        return EventFilter(stream_prefixes=(si.JOURNEY_PREFIX, _SCENARIO_PREFIX))

    def apply(self, event: RecordedEvent) -> None:
        if event.stream.startswith(si.JOURNEY_PREFIX):
            self._journey_event(event)
        elif event.stream.startswith(_SCENARIO_PREFIX):
            self._scenario_event(event)

    def discard(self) -> None:
        super().discard()
        self._journeys.clear()
        self._scenarios.clear()

    # --- journeys ------------------------------------------------------------------------------

    def _journey_event(self, event: RecordedEvent) -> None:
        decoded = registry.decode(event.type, event.schema_version, event.data)
        before = self._journey(event)
        state = si.evolve(before, decoded)
        self._keep(event.stream, state)
        entry = getattr(decoded, "entry", None)
        if entry is not None:
            self._instance_rows(event.stream, before.instances.get(entry), state.instances.get(entry))
        self._count(decoded)

    def _journey(self, event: RecordedEvent) -> si.JourneyState:
        state = self._journeys.pop(event.stream, None)
        if state is None:
            state = self._folded_before(event, si.evolve, si.JourneyState())
        return state

    def _folded_before(self, event: RecordedEvent, evolve: Callable[[S, Any], S], initial: S) -> S:
        """The stream's state just before `event` (which the cache did not hold), folded from the log."""
        state = initial
        if event.version > 1:
            for earlier in self._store.read_stream(event.stream):
                if earlier.position >= event.position:
                    break
                state = evolve(state, registry.decode(earlier.type, earlier.schema_version, earlier.data))
        return state

    def _keep(self, stream: str, state: si.JourneyState) -> None:
        self._journeys[stream] = state
        while len(self._journeys) > self._cache_size:
            self._journeys.popitem(last=False)

    def _instance_rows(self, stream: str, before: si.Instance | None, after: si.Instance | None) -> None:
        """Write what the event changed of the instance: its row, its timer, its webhook call."""
        if after is None or after == before:
            return
        scenario_id, profile_id = si.journey_key(stream)
        waits = after.awaiting
        self.write(
            "INSERT INTO scenario_instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) "
            "ON CONFLICT (scenario_id, profile_id, entry) DO UPDATE SET status = excluded.status, "
            "node_id = excluded.node_id, node_type = excluded.node_type, awaiting = excluded.awaiting, "
            "due_at = excluded.due_at",
            (
                scenario_id,
                profile_id,
                after.entry,
                after.outcome or "running",
                after.node_id,
                after.node_type,
                waits.kind if waits else None,
                micros(waits.due_at) if waits and waits.due_at else None,
                micros(after.entered_at),
            ),
        )
        timer, had_timer = _timer(after), _timer(before)
        if timer != had_timer:
            if timer is None:
                self.write(
                    "DELETE FROM scenario_timers WHERE stream = ? AND entry = ?", (stream, after.entry)
                )
            else:
                self.write(
                    "INSERT OR REPLACE INTO scenario_timers VALUES (?, ?, ?, ?)",
                    (stream, after.entry, *timer),
                )
        call, had_call = _call(after), _call(before)
        if call != had_call:
            if call is None:
                self.write("DELETE FROM scenario_calls WHERE stream = ? AND entry = ?", (stream, after.entry))
            else:
                self.write(
                    "INSERT OR REPLACE INTO scenario_calls VALUES (?, ?, ?, ?)", (stream, after.entry, *call)
                )

    def _count(self, event: Any) -> None:
        scenario_id, day = event.scenario_id, self._day(event.at)
        match event:
            case si.ProfileEnteredScenario() | si.ScenarioInstanceReset():
                self._bump("scenario_days", (scenario_id, day, "entered"))
            case si.ProfileRejectedByReentryRule():
                self._bump("scenario_days", (scenario_id, day, "rejected"))
            case si.ScenarioInstanceCompleted():
                self._bump("scenario_days", (scenario_id, day, "completed"))
            case si.ScenarioInstanceTerminated():
                self._bump("scenario_days", (scenario_id, day, "terminated"))
                self.write(
                    "UPDATE scenario_instances SET reason = ? "
                    "WHERE scenario_id = ? AND profile_id = ? AND entry = ?",
                    (event.reason, scenario_id, event.profile_id, event.entry),
                )
            case si.ScenarioNodeEntered():
                self._bump("scenario_node_days", (scenario_id, event.node_id, day, "entered"))
            case si.ScenarioNodeExited():
                self._bump("scenario_node_days", (scenario_id, event.node_id, day, f"exited:{event.branch}"))
            case si.ScenarioNodeFailed():
                self._bump("scenario_days", (scenario_id, day, "errors"))
                self._bump("scenario_node_days", (scenario_id, event.node_id, day, "failed"))

    def _bump(self, table: str, key: tuple[str, ...]) -> None:
        marks = ", ".join("?" * (len(key) + 1))
        self.write(
            f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO UPDATE SET count = count + 1",
            (*key, 1),
        )

    def _day(self, at: datetime) -> str:
        return at.astimezone(self._zone).date().isoformat()

    # --- scenarios -----------------------------------------------------------------------------

    def _scenario_event(self, event: RecordedEvent) -> None:
        scenario_id = event.stream[len(_SCENARIO_PREFIX) :]
        state = self._scenarios.get(scenario_id)
        if state is None:
            state = self._folded_before(event, sc.evolve, sc.ScenarioState())
        state = sc.evolve(state, registry.decode(event.type, event.schema_version, event.data))
        self._scenarios[scenario_id] = state
        settings, current = state.settings, state.current
        assert settings is not None
        doc = {
            "scenario_id": scenario_id,
            "settings": settings.model_dump(mode="json"),
            "version": state.version,
            "graph": current.graph.model_dump(mode="json") if current else None,
            "active": state.active,
            "deleted": state.deleted,
            "created_at": state.created_at.isoformat() if state.created_at else None,
            "updated_at": state.updated_at.isoformat() if state.updated_at else None,
        }
        timer = state.next_run
        self.write(
            "INSERT OR REPLACE INTO scenario_cards VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scenario_id,
                settings.name,
                settings.database_id,
                int(state.active),
                int(state.deleted),
                state.version,
                micros(timer.due_at) if timer else None,
                timer.run_number if timer else None,
                dumps(doc),
            ),
        )

    # --- queries -------------------------------------------------------------------------------

    def cards(self) -> list[dict[str, Any]]:
        """Every scenario that is not deleted, with how many profiles it is processing now."""
        rows = self.conn.execute(
            "SELECT c.doc, (SELECT count(*) FROM scenario_instances i WHERE i.scenario_id = c.scenario_id "
            "AND i.status = 'running') FROM scenario_cards c WHERE c.deleted = 0 "
            "ORDER BY CAST(c.scenario_id AS INTEGER)"
        )
        return [{**loads(doc), "in_process": count} for doc, count in rows]

    def scenario_ids(self) -> list[str]:
        return [
            row[0] for row in self.conn.execute("SELECT scenario_id FROM scenario_cards WHERE deleted = 0")
        ]

    def in_process(self, scenario_id: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM scenario_instances WHERE scenario_id = ? AND status = 'running'",
            (scenario_id,),
        ).fetchone()
        return int(row[0])

    def due_runs(self, now: datetime) -> list[tuple[str, int]]:
        """(scenario, run number) of the audience runs due at `now`."""
        rows = self.conn.execute(
            "SELECT scenario_id, next_run_number FROM scenario_cards WHERE active = 1 AND next_run_at <= ? "
            "ORDER BY next_run_at, scenario_id",
            (micros(now),),
        )
        return [(scenario_id, int(number)) for scenario_id, number in rows]

    def due_timers(
        self, until: datetime, after: tuple[int, str, int] | None, limit: int
    ) -> list[tuple[int, str, int, int]]:
        """(due micros, stream, entry, visit) of timers due by `until`, after the key `after`, by due time."""
        start = after or (-1, "", 0)
        rows = self.conn.execute(
            "SELECT due_at, stream, entry, visit FROM scenario_timers WHERE due_at <= ? "
            "AND (due_at, stream, entry) > (?, ?, ?) ORDER BY due_at, stream, entry LIMIT ?",
            (micros(until), *start, limit),
        )
        return [(int(due), stream, int(entry), int(visit)) for due, stream, entry, visit in rows]

    def next_due(self, after: tuple[int, str, int] | None) -> datetime | None:
        """When the earliest timer after the key `after` falls due."""
        start = after or (-1, "", 0)
        row = self.conn.execute(
            "SELECT due_at FROM scenario_timers WHERE (due_at, stream, entry) > (?, ?, ?) "
            "ORDER BY due_at, stream, entry LIMIT 1",
            start,
        ).fetchone()
        return None if row is None else moment(row[0])

    def calls(self, limit: int) -> list[tuple[str, int, int, int]]:
        """(stream, entry, visit, attempt) of the webhook calls due."""
        rows = self.conn.execute(
            "SELECT stream, entry, visit, attempt FROM scenario_calls ORDER BY stream, entry LIMIT ?",
            (limit,),
        )
        return [(stream, int(entry), int(visit), int(attempt)) for stream, entry, visit, attempt in rows]

    def running_profiles(self, scenario_id: str, awaiting: str | None = None) -> list[str]:
        """The profiles with a running instance of the scenario (that waits for `awaiting`, if given)."""
        sql = (
            "SELECT DISTINCT profile_id FROM scenario_instances WHERE scenario_id = ? AND status = 'running'"
        )
        params: tuple[str, ...] = (scenario_id,)
        if awaiting is not None:
            sql, params = sql + " AND awaiting = ?", (scenario_id, awaiting)
        return [row[0] for row in self.conn.execute(sql + " ORDER BY profile_id", params)]

    def misplaced(self, scenario_id: str, nodes: Mapping[str, str]) -> list[str]:
        """The profiles with a running instance at a node that `nodes` (id → type) lacks or has changed."""
        rows = self.conn.execute(
            "SELECT DISTINCT profile_id, node_id, node_type FROM scenario_instances "
            "WHERE scenario_id = ? AND status = 'running' AND node_id IS NOT NULL",
            (scenario_id,),
        )
        return sorted({p for p, node_id, node_type in rows if nodes.get(node_id) != node_type})

    def waiting_on_conditions(self, profile_id: str) -> list[str]:
        """The scenarios in which the profile waits for a timed condition."""
        rows = self.conn.execute(
            "SELECT DISTINCT scenario_id FROM scenario_instances "
            "WHERE profile_id = ? AND awaiting = 'condition'",
            (profile_id,),
        )
        return [row[0] for row in rows]

    def counters(self, scenario_id: str, start: str, end: str) -> dict[str, int]:
        """The scenario's counters over the days `start`…`end` (ISO dates, account time zone)."""
        rows = self.conn.execute(
            "SELECT counter, sum(count) FROM scenario_days WHERE scenario_id = ? AND day >= ? AND day <= ? "
            "GROUP BY counter",
            (scenario_id, start, end),
        )
        return {counter: int(total) for counter, total in rows}

    def node_counters(self, scenario_id: str, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per node: entered, failed and `exited:<branch>` over the days `start`…`end`."""
        rows = self.conn.execute(
            "SELECT node_id, counter, sum(count) FROM scenario_node_days WHERE scenario_id = ? AND day >= ? "
            "AND day <= ? GROUP BY node_id, counter ORDER BY node_id, counter",
            (scenario_id, start, end),
        )
        found: dict[str, dict[str, int]] = {}
        for node_id, counter, total in rows:
            found.setdefault(node_id, {})[counter] = int(total)
        return found


def _timer(instance: si.Instance | None) -> tuple[int, int] | None:
    """(visit, due micros) of the instance's pending timer, if it waits on one."""
    waits = instance.awaiting if instance is not None else None
    if waits is None or waits.kind not in ("timer", "condition") or waits.due_at is None:
        return None
    return waits.visit, micros(waits.due_at)


def _call(instance: si.Instance | None) -> tuple[int, int] | None:
    """(visit, attempt) of the instance's pending webhook call, if it waits on one."""
    waits = instance.awaiting if instance is not None else None
    return None if waits is None or waits.kind != "call" else (waits.visit, waits.attempt)
