"""The conversion funnel ("Воронка конверсии"): how many profiles reach each of up to 32 ordered steps,
each step narrowing the profiles of the step before.

Request: `params["steps"]`, a list of 1 to 32 steps, each a mapping with a `kind`, the `id` of the
object it names, and its other fields:
- "template_action": `id` (the template), `action`, optional `channel` ("email", "sms", "push");
- "campaign_action": `id` (the campaign), `action`, optional `channel`;
  `action` is "sent" (the sender attempted the message, as the summary's `sent`), "delivered",
  "open" or "click" (a bot's opens and clicks do not count); the guide's several actions of one
  template are several steps here, one action each;
- "pixel_visit": `id` (the pixel), optional `min_value`: any goal event of the pixel;
- "goal": `goal` (its name), optional `id` (the pixel; any pixel without), optional `min_value`;
- "subscription": `id` (the resource), optional `channel`: a subscription to the resource became
  active (a change to "subscribed" from any other status, new subscriptions included);
- "segment": `id` (the segment): membership now, see below.
`include_tests` counts test sends and test subscriptions too. No grouping, metrics or filters.

Ordering semantics (the guide leaves them open; notes seed000-D §3.4). Events are ordered by time,
then by log position (two events in the same second keep the order they were recorded in), and only
events within the period count:
- a profile reaches step 1 with an event that matches it: the first step defines the group;
- it reaches step k if it has events matching steps 1..k in that order, each strictly after the one
  before: an out-of-order step does not count, and one event completes at most one step (a click
  that matches both "campaign c1 click" and "template t1 click" is one step, not two);
- a step with `min_value` ("Общая прибыль, не менее") is matched by those events of its pixel or
  goal at which the running total of their values in the period (from its start, in event order)
  has reached `min_value`; values may be negative, so the total can fall back below it;
- a "segment" step is a live filter (the guide: it ignores the period and works in real time): the
  profile must be a member of the segment now, and the step consumes no event, so the next step
  only needs to follow the step before the segment. As step 1 it makes the segment's members the
  group, with events or without.
Anonymous visitors (goal events without a profile) are not in funnels: a funnel counts profiles.

Result, one row per step: `step` (1-based), `kind`, `profiles` (how many reached it), `of_first`
(profiles / the first step's) and `of_previous` (profiles / the previous step's; None for the first
step), fractions (0.25 = 25 %) as every rate, None where the divisor is 0.

How it runs, in time linear in the number of steps: the period's events that match any step become
one row each, with a bit per step matched; each profile's rows become arrays in (time, position)
order, where `min_value` steps clear their bit on events whose running total is short; each event
becomes one row per step it matches on a per-profile clock (its rank, then its steps in reverse
order, so no event completes two steps of one chain); `windowFunnel` over the whole clock gives each
profile how many event steps it reached in order, and its segment memberships cut that short.
Steps are never chained through aliases or one subquery per step: ClickHouse plans those in time
that grows much faster than the number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any

from herald.domain.errors import NotFound
from herald.domain.templates import Channel
from herald.infra.clickhouse import ClickHouse
from herald.reports.base import (
    ReportError,
    ReportRequest,
    ReportResult,
    check_choice,
    check_keys,
    check_period,
)

SegmentMembers = Callable[[str], Collection[str]]
"""The segments port: the ids of the profiles in a segment now (raises NotFound for an unknown one)."""

MAX_STEPS = 32  # windowFunnel's limit of conditions; a step is also a bit of a 64-bit mask

# The message event of each action ("Отправлено / Доставлено / Открыто / Клики").
ACTIONS = {"sent": "sent", "delivered": "delivered", "open": "open", "click": "click"}
CHANNELS = tuple(channel.value for channel in Channel)


@dataclass(frozen=True)
class StepKind:
    """What a kind of step reads: its table, the column its `id` names, its fields, what its rows meet."""

    table: str  # "" for segments, which read no table
    id_column: str  # "" for segments: their id names the segment
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    condition: str = ""


KINDS = {
    "template_action": StepKind("message_events", "template_id", ("id", "action"), ("channel",)),
    "campaign_action": StepKind("message_events", "campaign_id", ("id", "action"), ("channel",)),
    "pixel_visit": StepKind("goal_events", "pixel_id", ("id",), ("min_value",)),
    "goal": StepKind("goal_events", "pixel_id", ("goal",), ("id", "min_value")),
    # A subscription that became active: added as subscribed, or changed to it from another status.
    "subscription": StepKind(
        "subscription_changes",
        "resource_id",
        ("id",),
        ("channel",),
        "status = 'subscribed' AND status_before != 'subscribed'",
    ),
    "segment": StepKind("", "", ("id",)),
}

# The condition a row meets for each field a step gives; $p is the step's parameter prefix ("s3_").
FIELD_CONDITIONS = {
    "id": Template("$column = {${p}id:String}"),
    "action": Template("event_type = {${p}action:String}"),
    "channel": Template("channel = {${p}channel:String}"),
    "goal": Template("goal = {${p}goal:String}"),
}

# Which rows of each table may take part: the period, a known profile, no test unless asked,
# no bot's opens or clicks. $mask is the sum of the bits of the steps the row matches. No FINAL: the
# copies of one event a retried batch may leave are alike, and PROFILES_SQL keeps one per log position.
SOURCES_SQL = {
    "message_events": Template("""
    SELECT profile_id, at, position, $mask AS mask, toFloat64(0) AS amount
    FROM message_events
    WHERE day >= {start:Date} AND day <= {end:Date} AND profile_id != ''
      AND ({include_tests:UInt8} = 1 OR is_test = 0) AND is_bot = 0 AND mask != 0"""),
    "goal_events": Template("""
    SELECT profile_id, at, position, $mask AS mask, value AS amount
    FROM goal_events
    WHERE day >= {start:Date} AND day <= {end:Date} AND profile_id != '' AND mask != 0"""),
    "subscription_changes": Template("""
    SELECT profile_id, at, position, $mask AS mask, toFloat64(0) AS amount
    FROM subscription_changes
    WHERE day >= {start:Date} AND day <= {end:Date} AND profile_id != ''
      AND ({include_tests:UInt8} = 1 OR is_test = 0) AND mask != 0"""),
}
# A first step that is a segment puts every member in the funnel, with no event (mask 0).
MEMBERS_SOURCE_SQL = """
    SELECT arrayJoin({s1_members:Array(String)}) AS profile_id, toDateTime(0, 'UTC') AS at,
           toUInt64(0) AS position, toUInt64(0) AS mask, toFloat64(0) AS amount"""

# Each profile's events in (time, position) order, each once. $totals: for each min_value step, the running
# total of its matching events' values; $qualified: the masks less the bits of min_value steps whose
# running total is short at that event.
PROFILES_SQL = Template("""
SELECT
    profile_id,
    arrayMap(event -> tupleElement(event, 3), events) AS masks,
    arrayMap(event -> tupleElement(event, 4), events) AS amounts,$totals
    $qualified AS qualified_masks
FROM (
    SELECT profile_id, arraySort(arrayDistinct(groupArray((at, position, mask, amount)))) AS events
    FROM ($sources)
    GROUP BY profile_id
)""")
TOTAL_SQL = Template("""
    arrayCumSum(arrayMap((mask, amount) -> if(bitTest(mask, $bit), amount, toFloat64(0)), masks, amounts))
        AS totals_$step,""")
# Lambda parameters are named apart from the arrays: on 18.16 a parameter named like an alias reads the alias.
QUALIFIED_SQL = Template("arrayMap((mask$totals) -> mask$short, masks$arrays)")
SHORT_SQL = Template(" - if(bitTest(mask, $bit) AND total_$step < {s${step}_min_value:Float64}, $value, 0)")

# One row per (event, step it matches) on the profile's clock: rank * 64, plus 63 less the step's
# bit, so an event's rows come in reverse step order. An event matching no step (a segment member's
# placeholder, or a total still short) keeps its profile in the funnel as a row for no step (63).
STEP_ROWS_SQL = Template("""
SELECT profile_id, toUInt32(rank * 64 + 63 - step_bit) AS clock, step_bit
FROM (
    SELECT
        profile_id,
        arrayJoin(if(mask = 0, [toUInt8(63)], arrayFilter(bit -> bitTest(mask, bit), range($steps))))
            AS step_bit,
        rank
    FROM (
        SELECT profile_id, arrayJoin(arrayEnumerate(qualified_masks)) AS rank, qualified_masks[rank] AS mask
        FROM ($profiles)
    )
)""")

# Per profile: level, how many event steps it reached in order over the whole clock (the window spans
# the clock's range); next_event_step, the number of the first event step it did not reach (33:
# none); first_missing, the first segment step it is not a member of (33: none). It reached every
# step before both: steps_reached.
FUNNEL_SQL = Template("""
SELECT
    $counts
FROM (
    SELECT
        profile_id,
        windowFunnel(2147483647)(clock, $conditions) AS level,
        [$event_steps][level + 1] AS next_event_step,
        arrayReduce('min', [toUInt8(33)$segments]) AS first_missing,
        least(next_event_step, first_missing) - 1 AS steps_reached
    FROM ($step_rows)
    GROUP BY profile_id
)""")
SEGMENT_SQL = Template(", if(profile_id IN (SELECT arrayJoin({s${step}_members:Array(String)})), 33, $step)")
# profiles reaching step k (one condition per count: a compound one makes planning slow on chDB).
COUNT_SQL = Template("countIf(steps_reached >= $step) AS reached_$step")


@dataclass(frozen=True)
class Step:
    """One validated step: its kind, the fields given, and its position (1-based)."""

    number: int
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"s{self.number}_"

    @property
    def bit(self) -> int:
        return self.number - 1


class FunnelReport:
    """Profiles reaching each step of an ordered funnel, each step narrowing the one before."""

    name = "funnel"

    def __init__(self, segment_members: SegmentMembers | None = None) -> None:
        self._segment_members = segment_members

    def run(self, ch: ClickHouse, request: ReportRequest) -> ReportResult:
        """One row per step: profiles reaching it and their share of the first and previous step."""
        steps = self._check(request)
        tables = {KINDS[step.kind].table for step in steps}
        params: dict[str, Any] = {}
        if tables - {""}:  # some step reads events (a funnel of segments only reads none)
            params.update(start=request.period.start, end=request.period.end)
        if tables & {"message_events", "subscription_changes"}:
            params["include_tests"] = int(request.include_tests)
        for step in steps:
            params.update(self._step_params(step))
        reached = ch.query(funnel_sql(steps), params)[0]
        counts = [reached[f"reached_{step.number}"] for step in steps]
        rows = tuple(
            (
                step.number,
                step.kind,
                count,
                fraction(count, counts[0]),
                fraction(count, counts[step.number - 2]) if step.number > 1 else None,
            )
            for step, count in zip(steps, counts, strict=True)
        )
        return ReportResult(("step", "kind", "profiles", "of_first", "of_previous"), rows)

    def _check(self, request: ReportRequest) -> list[Step]:
        check_period(request.period)
        if request.group_by is not None:
            raise ReportError("the funnel has no grouping", "group_by")
        if request.metrics:
            raise ReportError("the funnel has no metrics to choose", "metrics.0")
        check_keys(request.filters, (), "filters")
        check_keys(request.params, ("steps",), "params")
        given = request.params.get("steps")
        if not isinstance(given, Sequence) or isinstance(given, str) or not given:
            raise ReportError("give the funnel's steps as a list of 1 to 32 steps", "params.steps")
        if len(given) > MAX_STEPS:
            raise ReportError(f"a funnel has at most {MAX_STEPS} steps, {len(given)} given", "params.steps")
        return [self._check_step(index, step) for index, step in enumerate(given)]

    def _check_step(self, index: int, given: Any) -> Step:
        path = f"params.steps.{index}"
        if not isinstance(given, Mapping):
            raise ReportError("a step is an object with a kind and its fields", path)
        kind = given.get("kind")
        if not isinstance(kind, str):
            raise ReportError("give the step's kind", f"{path}.kind")
        spec = KINDS[check_choice(kind, KINDS, f"{path}.kind")]
        if kind == "segment" and self._segment_members is None:
            raise ReportError(
                "segment steps need segments, which this server does not have yet", f"{path}.kind"
            )
        fields = {key: value for key, value in given.items() if key != "kind"}
        for key in fields:
            check_choice(key, (*spec.required, *spec.optional), f"{path}.{key}")
        for key in spec.required:
            if key not in fields:
                raise ReportError(f"a {kind} step needs its {key}", f"{path}.{key}")
        for key, value in fields.items():
            fields[key] = check_field(key, value, f"{path}.{key}")
        return Step(index + 1, kind, fields)

    def _step_params(self, step: Step) -> dict[str, Any]:
        if step.kind == "segment":
            assert self._segment_members is not None  # _check_step refused segment steps without the port
            try:
                members = self._segment_members(step.fields["id"])
            except NotFound as error:
                raise ReportError(error.reason, f"params.steps.{step.number - 1}.id") from error
            return {f"{step.prefix}members": sorted(members)}
        return {f"{step.prefix}{key}": value for key, value in step.fields.items()}


def check_field(key: str, value: Any, path: str) -> Any:
    """A step field's value in the form its SQL parameter takes, or ReportError at `path`."""
    if key == "min_value":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ReportError("the minimum value is a number", path)
        if value < 0:
            raise ReportError(f"the minimum value cannot be negative, {value} given", path)
        return float(value)
    if not isinstance(value, str) or not value:
        raise ReportError(f"give the step's {key} as a non-empty string", path)
    if key == "action":
        return ACTIONS[check_choice(value, ACTIONS, path)]
    if key == "channel":
        return check_choice(value, CHANNELS, path)
    return value


def funnel_sql(steps: Sequence[Step]) -> str:
    """The funnel's query: a row per step matched, per-profile order and totals, windowFunnel, counts."""
    tables = [table for table in SOURCES_SQL if any(KINDS[step.kind].table == table for step in steps)]
    sources = [SOURCES_SQL[table].substitute(mask=_mask_sql(table, steps)) for table in tables]
    if steps[0].kind == "segment":
        sources.append(MEMBERS_SOURCE_SQL)
    profiles = PROFILES_SQL.substitute(
        sources="\n    UNION ALL".join(sources), totals=_totals_sql(steps), qualified=_qualified_sql(steps)
    )
    event_steps = [step for step in steps if step.kind != "segment"]
    return FUNNEL_SQL.substitute(
        counts=",\n    ".join(COUNT_SQL.substitute(step=step.number) for step in steps),
        event_steps=", ".join([*(str(step.number) for step in event_steps), "toUInt8(33)"]),
        # windowFunnel needs a condition: a funnel of segments only gets one no row meets.
        conditions=", ".join(f"step_bit = {step.bit}" for step in event_steps) or "step_bit = 64",
        segments="".join(
            SEGMENT_SQL.substitute(step=step.number) for step in steps if step.kind == "segment"
        ),
        step_rows=STEP_ROWS_SQL.substitute(steps=len(steps), profiles=profiles),
    )


def _valued(steps: Sequence[Step]) -> list[Step]:
    return [step for step in steps if "min_value" in step.fields]


def _totals_sql(steps: Sequence[Step]) -> str:
    return "".join(TOTAL_SQL.substitute(bit=step.bit, step=step.number) for step in _valued(steps))


def _qualified_sql(steps: Sequence[Step]) -> str:
    valued = _valued(steps)
    if not valued:
        return "masks"
    return QUALIFIED_SQL.substitute(
        totals="".join(f", total_{step.number}" for step in valued),
        arrays="".join(f", totals_{step.number}" for step in valued),
        short="".join(
            SHORT_SQL.substitute(bit=step.bit, step=step.number, value=1 << step.bit) for step in valued
        ),
    )


def _mask_sql(table: str, steps: Sequence[Step]) -> str:
    """The sum of the bits of the steps (reading `table`) that a row matches."""
    bits = [
        f"if({_condition(step)}, {1 << step.bit}, 0)" for step in steps if KINDS[step.kind].table == table
    ]
    return f"toUInt64({' + '.join(bits)})"


def _condition(step: Step) -> str:
    """What a row meets to match `step`: its kind's condition and one per field it gives."""
    kind = KINDS[step.kind]
    fields = [
        FIELD_CONDITIONS[key].substitute(p=step.prefix, column=kind.id_column)
        for key in step.fields
        if key in FIELD_CONDITIONS
    ]
    return " AND ".join(filter(None, [*fields, kind.condition]))


def fraction(part: int, whole: int) -> float | None:
    """`part` of `whole`, None when `whole` is 0."""
    return part / whole if whole else None
