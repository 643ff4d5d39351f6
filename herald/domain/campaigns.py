"""The campaign aggregate (stream `campaign-<id>`): settings, state, schedule timers and runs.

A campaign turns an audience and 1–16 templates into messages over one
channel of one resource (guide "Кампании"). Broadcasts send each recipient
one message and complete when the audience is exhausted; regular campaigns
send on every run and never complete; triggers wait for API calls (or for
profiles entering a segment, `TriggerOptions.segment_id`); split
tests (A/B/n) send a test slice, pick a winner, then send it to the rest.

The campaign's stream holds its timers: `CampaignRunScheduled` names the
next run's due time (a durable timer the scheduler fires when the clock
reaches it), and each run's start, progress and finish are events here, so
a crashed run resumes from its last recorded chunk.

Decisions where the guide is silent:
- States: inactive → active (waiting) ⇄ active (running) → completed
  (broadcasts and split tests); paused stops a running run between chunks
  until resumed; deactivating cancels a running run. A completed campaign
  cannot be activated again: clone it.
- Validation happens at save and again at activation (a template may have
  lost its channel, a schedule its future): the caller passes what it looked
  up (`CampaignChecks`) and the decider refuses with the path.
- A run that starts later than its due time plus `run_deadline_minutes`
  is dropped and recorded (`CampaignRunDropped`), and the next one scheduled.
- The per-run limit grows after each run that sent its whole portion, by
  `increase` messages or `increase` percent of the current limit.
- A split test's slice is chosen by a hash of the profile id (stable across
  runs), split evenly across the templates by rank; the winner is the
  template with most total opens (or clicks) per delivered message, ties to
  the lowest template id; in manual mode the user decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.schedules import Schedule, check_schedule, pending_runs

MAX_TEMPLATES = 16


class CampaignType(StrEnum):
    BROADCAST = "broadcast"
    REGULAR = "regular"
    TRIGGER = "trigger"
    SPLIT_TEST = "split_test"


class CampaignStatus(StrEnum):
    INACTIVE = "inactive"
    WAITING = "active_waiting"
    RUNNING = "active_running"
    PAUSED = "paused"
    AWAITING_DECISION = "active_awaiting_decision"  # a manual split test, after its test slice
    COMPLETED = "completed"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Audience(_Value):
    """Where recipients come from: a profile database, or (once segments exist) a segment."""

    kind: Literal["database", "segment"] = "database"
    id: str


class RunLimit(_Value):
    """At most `per_run` recipients per run, growing by `increase` (messages or %) after each full run."""

    per_run: int = Field(ge=1)
    increase: int = Field(0, ge=0)
    increase_percent: bool = False


class SplitTest(_Value):
    sample_from_pct: float = Field(ge=0, le=100)
    sample_to_pct: float = Field(gt=0, le=100)
    winner_by: Literal["opens", "clicks", "manual"] = "opens"
    wait_hours: int = Field(3, ge=1, le=24 * 30)
    test_start_at: datetime | None = Field(None, description="default: at activation")


class TriggerOptions(_Value):
    delay_days: int = Field(0, ge=0)
    delay_hours: int = Field(0, ge=0, le=23)
    delay_minutes: int = Field(0, ge=0, le=59)
    high_priority: bool = False
    segment_id: str | None = Field(
        None, description="also fire for every profile that enters this segment while the trigger is active"
    )

    @property
    def delay(self) -> timedelta:
        return timedelta(days=self.delay_days, hours=self.delay_hours, minutes=self.delay_minutes)


class CampaignSettings(_Value):
    name: str
    description: str = ""
    subid: str = Field("", description="a free reporting tag (SUBID)")
    tags: tuple[str, ...] = ()
    type: CampaignType
    channel: Literal["email", "sms", "push", "telegram_bot"]
    resource_id: str
    template_ids: tuple[str, ...]
    audience: Audience | None = Field(None, description="broadcast, regular and split tests")
    database_id: str | None = Field(
        None, description="triggers: the database whose profiles may be fired for"
    )
    schedule: Schedule | None = None
    limit: RunLimit | None = None
    sending_policy_id: str | None = Field(None, description="the campaign's own sending policy")
    apply_resource_policy: bool = Field(True, description="use the resource's policy, not the campaign's")
    check_contact_uniqueness: bool = True
    virtual_sender_id: str | None = Field(
        None, description='email: the routing of its messages; default "default"'
    )
    start_after_campaign_id: str | None = Field(
        None, description="broadcasts: activate when that one completes"
    )
    run_deadline_minutes: int | None = Field(None, ge=1, description="a run later than this is dropped")
    split_test: SplitTest | None = None
    trigger: TriggerOptions | None = Field(
        None, description="triggers: delay, priority, segment; the guide's defaults (no delay) when left out"
    )

    @model_validator(mode="before")
    @classmethod
    def _trigger_defaults(cls, data: Any) -> Any:
        # The guide (seed000-C §1.2, §6): a trigger's delay is 0/0/0 and its priority normal unless set,
        # so a trigger saved without options has those, in the log and on its card.
        is_trigger = isinstance(data, dict) and data.get("type") in (CampaignType.TRIGGER, "trigger")
        return {**data, "trigger": {}} if is_trigger and data.get("trigger") is None else data


# --- events ------------------------------------------------------------------------------------


@registry.register("CampaignCreated")
class CampaignCreated(Event):
    campaign_id: str
    settings: CampaignSettings
    at: datetime


@registry.register("CampaignUpdated")
class CampaignUpdated(Event):
    campaign_id: str
    settings: CampaignSettings
    at: datetime


@registry.register("CampaignActivated")
class CampaignActivated(Event):
    campaign_id: str
    at: datetime


@registry.register("CampaignDeactivated")
class CampaignDeactivated(Event):
    campaign_id: str
    at: datetime


@registry.register("CampaignRunScheduled")
class CampaignRunScheduled(Event):
    """A durable timer: run `run_number` is due at `due_at`.

    For a schedule in the profiles' time zones, `wall` is the run's local time
    and `closes_at` when its window ends: the timer fires when the window
    opens (the wall time at UTC+14) and each message falls due at the wall
    time in its profile's zone.
    """

    campaign_id: str
    run_number: int
    due_at: datetime
    phase: Literal["run", "test", "winner"] = "run"
    wall: datetime | None = None
    closes_at: datetime | None = None


@registry.register("CampaignRunStarted")
class CampaignRunStarted(Event):
    campaign_id: str
    run_id: str
    run_number: int
    phase: Literal["run", "test", "winner", "launch_now"]
    limit: int | None = None
    due_at: datetime | None = None
    wall: datetime | None = None  # a run in the profiles' time zones: its local wall time
    closes_at: datetime | None = None
    at: datetime


@registry.register("CampaignRunProgressed")
class CampaignRunProgressed(Event):
    """A chunk of the run is done: recipients up to `offset` of the frozen audience are decided."""

    campaign_id: str
    run_id: str
    offset: int
    queued: int
    suppressed: int
    failed: int
    skipped: int = 0  # profiles whose local time had passed: they wait for the next run


@registry.register("CampaignRunFinished")
class CampaignRunFinished(Event):
    campaign_id: str
    run_id: str
    audience: int
    queued: int
    suppressed: int
    failed: int
    exhausted: bool  # nobody left to send to (a broadcast completes)
    cursor: str | None = None  # regular campaigns: the last profile id reached, for the next portion
    at: datetime


@registry.register("CampaignRunDropped")
class CampaignRunDropped(Event):
    campaign_id: str
    run_number: int
    due_at: datetime
    reason: str
    at: datetime


@registry.register("CampaignPaused")
class CampaignPaused(Event):
    campaign_id: str
    at: datetime


@registry.register("CampaignResumed")
class CampaignResumed(Event):
    campaign_id: str
    at: datetime


@registry.register("CampaignRunCancelled")
class CampaignRunCancelled(Event):
    campaign_id: str
    run_id: str
    at: datetime


@registry.register("SplitTestWinnerSelected")
class SplitTestWinnerSelected(Event):
    campaign_id: str
    template_id: str
    mode: Literal["opens", "clicks", "manual"]
    values: dict[str, float]
    at: datetime


@registry.register("CampaignCompleted")
class CampaignCompleted(Event):
    campaign_id: str
    at: datetime


@registry.register("CampaignDeleted")
class CampaignDeleted(Event):
    campaign_id: str
    at: datetime


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunState:
    run_id: str
    run_number: int
    phase: str
    limit: int | None
    wall: datetime | None = None
    closes_at: datetime | None = None
    started_at: datetime | None = None
    offset: int = 0
    queued: int = 0
    suppressed: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class CampaignState:
    campaign_id: str = ""
    settings: CampaignSettings | None = None
    status: CampaignStatus = CampaignStatus.INACTIVE
    deleted: bool = False
    runs_started: int = 0
    next_run: CampaignRunScheduled | None = None
    current_run: RunState | None = None
    current_limit: int | None = None
    cursor: str | None = None
    winner_template_id: str | None = None
    test_done: bool = False
    next_window_after: datetime | None = None  # the last profile-time-zone run's window end

    @property
    def exists(self) -> bool:
        return self.settings is not None and not self.deleted

    @property
    def active(self) -> bool:
        return self.status in (
            CampaignStatus.WAITING,
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
            CampaignStatus.AWAITING_DECISION,
        )

    def run_id(self, number: int) -> str:
        return f"{self.campaign_id}-{number}"


def existing_settings(state: CampaignState) -> CampaignSettings:
    """The settings of a campaign that exists (raises NotFound for one that does not, or was deleted)."""
    if not state.exists or state.settings is None:
        raise NotFound(f"no campaign {state.campaign_id!r}", "campaign_id")
    return state.settings


# --- what the decider is told about the outside world ----------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignChecks:
    """What the caller looked up for validation: problems with the resource, templates and audience.

    Each entry is (path, reason); the decider refuses the first one.
    """

    problems: tuple[tuple[str, str], ...] = ()


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateCampaign:
    campaign_id: str
    settings: CampaignSettings
    checks: CampaignChecks
    at: datetime


@dataclass(frozen=True, slots=True)
class UpdateCampaign:
    campaign_id: str
    settings: CampaignSettings
    checks: CampaignChecks
    at: datetime


@dataclass(frozen=True, slots=True)
class ActivateCampaign:
    campaign_id: str
    checks: CampaignChecks
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeactivateCampaign:
    campaign_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LaunchCampaignNow:
    """Start one run now, outside the schedule."""

    campaign_id: str
    checks: CampaignChecks
    at: datetime


@dataclass(frozen=True, slots=True)
class StartScheduledRun:
    """The scheduler's call when a run's timer is due."""

    campaign_id: str
    run_number: int
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class FinishRun:
    campaign_id: str
    run_id: str
    audience: int
    exhausted: bool
    cursor: str | None
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PauseCampaign:
    campaign_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ResumeCampaign:
    campaign_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SelectWinner:
    campaign_id: str
    template_id: str
    mode: Literal["opens", "clicks", "manual"]
    values: dict[str, float]
    account_timezone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteCampaign:
    campaign_id: str
    at: datetime


CampaignCommand = (
    CreateCampaign
    | UpdateCampaign
    | ActivateCampaign
    | DeactivateCampaign
    | LaunchCampaignNow
    | StartScheduledRun
    | FinishRun
    | PauseCampaign
    | ResumeCampaign
    | SelectWinner
    | DeleteCampaign
)


# --- validation --------------------------------------------------------------------------------


def check_settings(
    settings: CampaignSettings,
    checks: CampaignChecks,
    now: datetime | None = None,
    account_timezone: str = "UTC",
) -> None:
    """Refuse settings a campaign cannot run with; `now` adds the checks that depend on time."""
    if not settings.name.strip():
        raise ValidationFailed("a campaign needs a name", "name")
    count = len(settings.template_ids)
    if not 1 <= count <= MAX_TEMPLATES:
        raise ValidationFailed(f"a campaign has 1 to {MAX_TEMPLATES} templates, not {count}", "template_ids")
    if len(set(settings.template_ids)) != count:
        raise ValidationFailed("a template is listed twice", "template_ids")
    _check_type(settings, now, account_timezone)
    for path, reason in checks.problems:
        raise RuleViolated(reason, path)


def _check_type(settings: CampaignSettings, now: datetime | None, account_timezone: str) -> None:
    kind = settings.type
    if kind is CampaignType.TRIGGER:
        if settings.database_id is None:
            raise ValidationFailed("a trigger names the database whose profiles it fires for", "database_id")
        for name in ("audience", "schedule", "limit", "split_test"):
            if getattr(settings, name) is not None:
                raise ValidationFailed(f"a trigger has no {name}: it waits for API calls", name)
        return
    if settings.audience is None:
        raise ValidationFailed(f"a {kind} campaign needs an audience", "audience")
    if settings.trigger is not None:
        raise ValidationFailed("only triggers have trigger options", "trigger")
    if kind is CampaignType.REGULAR and settings.schedule is None:
        raise ValidationFailed("a regular campaign runs on a schedule", "schedule")
    if kind is CampaignType.SPLIT_TEST:
        split = settings.split_test
        if split is None:
            raise ValidationFailed("a split test needs its test slice and winner rule", "split_test")
        if split.sample_from_pct >= split.sample_to_pct:
            raise ValidationFailed(
                "the test slice's start must be below its end", "split_test.sample_from_pct"
            )
        if len(settings.template_ids) < 2:
            raise ValidationFailed("a split test compares 2 to 16 templates", "template_ids")
    elif settings.split_test is not None:
        raise ValidationFailed("only split tests have a test slice", "split_test")
    if settings.start_after_campaign_id is not None and kind is not CampaignType.BROADCAST:
        raise ValidationFailed("only a broadcast starts after another completes", "start_after_campaign_id")
    if settings.schedule is not None:
        check_schedule(settings.schedule, path="schedule", now=now, account_timezone=account_timezone)


# --- decide ------------------------------------------------------------------------------------


def decide(command: CampaignCommand, state: CampaignState) -> list[Event]:
    if isinstance(command, CreateCampaign):
        if state.settings is not None:
            raise AlreadyExists(f"campaign {command.campaign_id!r} exists", "campaign_id")
        check_settings(command.settings, command.checks)
        return [CampaignCreated(campaign_id=command.campaign_id, settings=command.settings, at=command.at)]
    if not state.exists or state.settings is None:
        raise NotFound(f"no campaign {command.campaign_id!r}", "campaign_id")
    handler = _HANDLERS[type(command)]
    return handler(command, state, state.settings)


def _update(command: UpdateCampaign, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if command.settings.type is not settings.type:
        raise RuleViolated("a campaign's type cannot change: create another", "type")
    if state.status is CampaignStatus.RUNNING:
        raise RuleViolated("the campaign is sending: pause or deactivate it first", "campaign_id")
    check_settings(command.settings, command.checks)
    if command.settings == settings:
        return []
    return [CampaignUpdated(campaign_id=state.campaign_id, settings=command.settings, at=command.at)]


def _activate(command: ActivateCampaign, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if state.status is CampaignStatus.COMPLETED:
        raise RuleViolated("the campaign has completed: clone it to send again", "campaign_id")
    if state.active:
        return []
    check_settings(settings, command.checks, now=command.at, account_timezone=command.account_timezone)
    events: list[Event] = [CampaignActivated(campaign_id=state.campaign_id, at=command.at)]
    timer = _first_timer(state, settings, command.at, command.account_timezone)
    if timer is not None:
        events.append(timer)
    return events


def _first_timer(
    state: CampaignState, settings: CampaignSettings, now: datetime, timezone: str
) -> CampaignRunScheduled | None:
    number = state.runs_started + 1
    if settings.type is CampaignType.SPLIT_TEST and not state.test_done:
        split = settings.split_test
        assert split is not None
        due = max(split.test_start_at or now, now)
        return CampaignRunScheduled(
            campaign_id=state.campaign_id, run_number=number, due_at=due, phase="test"
        )
    if settings.type is CampaignType.SPLIT_TEST and state.winner_template_id is None:
        return None
    return _next_timer(state, settings, now, timezone, number)


def _next_timer(
    state: CampaignState, settings: CampaignSettings, after: datetime, timezone: str, number: int
) -> CampaignRunScheduled | None:
    phase: Literal["run", "winner"] = "winner" if settings.type is CampaignType.SPLIT_TEST else "run"
    if settings.schedule is None:
        if settings.type is CampaignType.TRIGGER or (state.runs_started and phase == "run"):
            return None
        return CampaignRunScheduled(
            campaign_id=state.campaign_id, run_number=number, due_at=after, phase=phase
        )
    if state.next_window_after is not None and state.next_window_after > after:
        after = state.next_window_after  # the previous run's window is still open in the far west
    upcoming = pending_runs(settings.schedule, after=after, count=1, account_timezone=timezone)
    if not upcoming:
        return None
    run = upcoming[0]
    if not settings.schedule.profile_timezone:
        return CampaignRunScheduled(
            campaign_id=state.campaign_id, run_number=number, due_at=run.at, phase=phase
        )
    return CampaignRunScheduled(
        campaign_id=state.campaign_id,
        run_number=number,
        due_at=max(run.opens_at, after),
        phase=phase,
        wall=run.wall,
        closes_at=run.closes_at,
    )


def _deactivate(command: DeactivateCampaign, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if not state.active:
        return []
    events: list[Event] = []
    if state.current_run is not None:
        events.append(
            CampaignRunCancelled(
                campaign_id=state.campaign_id, run_id=state.current_run.run_id, at=command.at
            )
        )
    events.append(CampaignDeactivated(campaign_id=state.campaign_id, at=command.at))
    return events


def _launch_now(command: LaunchCampaignNow, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if settings.type is CampaignType.TRIGGER:
        raise RuleViolated("a trigger sends when it is fired, not on launch", "campaign_id")
    if state.status is CampaignStatus.COMPLETED:
        raise RuleViolated("the campaign has completed: clone it to send again", "campaign_id")
    if state.current_run is not None:
        raise RuleViolated("a run is in progress", "campaign_id")
    check_settings(settings, command.checks)
    events: list[Event] = []
    if not state.active:
        events.append(CampaignActivated(campaign_id=state.campaign_id, at=command.at))
    phase: Literal["test", "launch_now"] = (
        "test" if settings.type is CampaignType.SPLIT_TEST and not state.test_done else "launch_now"
    )
    events.append(_run_started(state, state.runs_started + 1, phase, None, command.at))
    return events


def _run_started(
    state: CampaignState,
    number: int,
    phase: Literal["run", "test", "winner", "launch_now"],
    timer: CampaignRunScheduled | None,
    at: datetime,
) -> CampaignRunStarted:
    return CampaignRunStarted(
        campaign_id=state.campaign_id,
        run_id=state.run_id(number),
        run_number=number,
        phase=phase,
        limit=None if phase == "test" else state.current_limit,
        due_at=timer.due_at if timer else None,
        wall=timer.wall if timer else None,
        closes_at=timer.closes_at if timer else None,
        at=at,
    )


def _start_scheduled(
    command: StartScheduledRun, state: CampaignState, settings: CampaignSettings
) -> list[Event]:
    timer = state.next_run
    if timer is None or timer.run_number != command.run_number or state.status is not CampaignStatus.WAITING:
        return []  # fired twice, or the campaign moved on: nothing to do
    deadline = settings.run_deadline_minutes
    if deadline is not None and command.at > timer.due_at + timedelta(minutes=deadline):
        late = command.at - timer.due_at
        dropped = CampaignRunDropped(
            campaign_id=state.campaign_id,
            run_number=timer.run_number,
            due_at=timer.due_at,
            reason=f"started {int(late.total_seconds() // 60)} min late; the deadline is {deadline} min",
            at=command.at,
        )
        after = evolve(state, dropped)
        following = _next_timer(after, settings, command.at, command.account_timezone, timer.run_number + 1)
        return [dropped] if following is None else [dropped, following]
    return [_run_started(state, timer.run_number, timer.phase, timer, command.at)]


def _finish(command: FinishRun, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    run = state.current_run
    if run is None or run.run_id != command.run_id:
        return []
    finished = CampaignRunFinished(
        campaign_id=state.campaign_id,
        run_id=run.run_id,
        audience=command.audience,
        queued=run.queued,
        suppressed=run.suppressed,
        failed=run.failed,
        exhausted=command.exhausted,
        cursor=command.cursor,
        at=command.at,
    )
    events: list[Event] = [finished]
    after = replace(evolve(state, finished), runs_started=run.run_number)
    if _completes(settings, run.phase, command.exhausted):
        events.append(CampaignCompleted(campaign_id=state.campaign_id, at=command.at))
        return events
    if run.phase == "test":
        due = command.at + timedelta(hours=settings.split_test.wait_hours if settings.split_test else 0)
        if settings.split_test is not None and settings.split_test.winner_by != "manual":
            events.append(
                CampaignRunScheduled(
                    campaign_id=state.campaign_id, run_number=run.run_number + 1, due_at=due, phase="winner"
                )
            )
        return events
    timer = _next_timer(after, settings, command.at, command.account_timezone, run.run_number + 1)
    if timer is not None:
        events.append(timer)
    return events


def _completes(settings: CampaignSettings, phase: str, exhausted: bool) -> bool:
    if settings.type is CampaignType.BROADCAST:
        return exhausted
    if settings.type is CampaignType.SPLIT_TEST:
        return exhausted and phase in ("winner", "launch_now")
    return False


def _pause(command: PauseCampaign, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if state.status is CampaignStatus.PAUSED:
        return []
    if not state.active:
        raise RuleViolated("only an active campaign can be paused", "campaign_id")
    return [CampaignPaused(campaign_id=state.campaign_id, at=command.at)]


def _resume(command: ResumeCampaign, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if state.status is not CampaignStatus.PAUSED:
        return []
    return [CampaignResumed(campaign_id=state.campaign_id, at=command.at)]


def _select_winner(command: SelectWinner, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    if settings.type is not CampaignType.SPLIT_TEST:
        raise RuleViolated("only a split test has a winner", "campaign_id")
    if state.winner_template_id is not None:
        return []
    if not state.test_done:
        raise RuleViolated("the test slice has not been sent yet", "campaign_id")
    if command.template_id not in settings.template_ids:
        raise ValidationFailed(
            f"template {command.template_id!r} is not one of the campaign's", "template_id"
        )
    selected = SplitTestWinnerSelected(
        campaign_id=state.campaign_id,
        template_id=command.template_id,
        mode=command.mode,
        values=command.values,
        at=command.at,
    )
    events: list[Event] = [selected]
    after = evolve(state, selected)
    if state.next_run is None and state.active:
        timer = _next_timer(after, settings, command.at, command.account_timezone, state.runs_started + 1)
        if timer is not None:
            events.append(timer)
    return events


def _delete(command: DeleteCampaign, state: CampaignState, settings: CampaignSettings) -> list[Event]:
    events = _deactivate(DeactivateCampaign(state.campaign_id, command.at), state, settings)
    return [*events, CampaignDeleted(campaign_id=state.campaign_id, at=command.at)]


_HANDLERS: dict[type, Callable[[Any, CampaignState, CampaignSettings], list[Event]]] = {
    UpdateCampaign: _update,
    ActivateCampaign: _activate,
    DeactivateCampaign: _deactivate,
    LaunchCampaignNow: _launch_now,
    StartScheduledRun: _start_scheduled,
    FinishRun: _finish,
    PauseCampaign: _pause,
    ResumeCampaign: _resume,
    SelectWinner: _select_winner,
    DeleteCampaign: _delete,
}


# --- evolve ------------------------------------------------------------------------------------


def evolve(state: CampaignState, event: Event) -> CampaignState:
    if isinstance(event, CampaignCreated):
        limit = event.settings.limit.per_run if event.settings.limit else None
        return CampaignState(event.campaign_id, event.settings, current_limit=limit)
    if isinstance(event, CampaignUpdated):
        return _updated(state, event.settings)
    if isinstance(event, CampaignActivated | CampaignResumed):
        running = state.current_run is not None
        return replace(state, status=CampaignStatus.RUNNING if running else CampaignStatus.WAITING)
    if isinstance(event, CampaignDeactivated):
        return replace(state, status=CampaignStatus.INACTIVE, next_run=None, current_run=None)
    if isinstance(event, CampaignRunScheduled):
        return replace(state, next_run=event)
    if isinstance(event, CampaignRunStarted):
        run = RunState(
            event.run_id, event.run_number, event.phase, event.limit, event.wall, event.closes_at, event.at
        )
        return replace(
            state,
            status=CampaignStatus.RUNNING,
            current_run=run,
            next_run=None,
            runs_started=event.run_number,
        )
    if isinstance(event, CampaignRunProgressed) and state.current_run is not None:
        run = replace(
            state.current_run,
            offset=event.offset,
            queued=state.current_run.queued + event.queued,
            suppressed=state.current_run.suppressed + event.suppressed,
            failed=state.current_run.failed + event.failed,
            skipped=state.current_run.skipped + event.skipped,
        )
        return replace(state, current_run=run)
    if isinstance(event, CampaignRunFinished):
        return _finished(state, event)
    if isinstance(event, CampaignRunDropped):
        return replace(state, next_run=None, runs_started=event.run_number)
    if isinstance(event, CampaignRunCancelled):
        return replace(state, current_run=None)
    if isinstance(event, CampaignPaused):
        return replace(state, status=CampaignStatus.PAUSED)
    if isinstance(event, SplitTestWinnerSelected):
        return replace(state, winner_template_id=event.template_id, status=_waiting(state))
    if isinstance(event, CampaignCompleted):
        return replace(state, status=CampaignStatus.COMPLETED, next_run=None)
    if isinstance(event, CampaignDeleted):
        return replace(state, deleted=True, status=CampaignStatus.INACTIVE)
    return state


def _waiting(state: CampaignState) -> CampaignStatus:
    return CampaignStatus.WAITING if state.status is CampaignStatus.AWAITING_DECISION else state.status


def _updated(state: CampaignState, settings: CampaignSettings) -> CampaignState:
    limit = state.current_limit
    if settings.limit is None:
        limit = None
    elif state.settings is None or state.settings.limit != settings.limit:
        limit = settings.limit.per_run
    return replace(state, settings=settings, current_limit=limit)


def _finished(state: CampaignState, event: CampaignRunFinished) -> CampaignState:
    run = state.current_run
    settings = state.settings
    limit = state.current_limit
    if run is not None and settings is not None and settings.limit is not None and limit is not None:
        full = run.limit is not None and event.queued + event.suppressed + event.failed >= run.limit
        if full and run.phase in ("run", "winner", "launch_now"):
            grow = settings.limit.increase
            limit += limit * grow // 100 if settings.limit.increase_percent else grow
    status = state.status
    if status is CampaignStatus.RUNNING:
        manual = (
            settings is not None
            and settings.split_test is not None
            and settings.split_test.winner_by == "manual"
        )
        status = (
            CampaignStatus.AWAITING_DECISION
            if run is not None and run.phase == "test" and manual
            else CampaignStatus.WAITING
        )
    return replace(
        state,
        status=status,
        current_run=None,
        current_limit=limit,
        cursor=event.cursor,
        test_done=state.test_done or (run is not None and run.phase == "test"),
        next_window_after=run.closes_at if run is not None and run.closes_at else state.next_window_after,
    )


campaign_decider: Decider[CampaignCommand, CampaignState] = Decider(CampaignState(), decide, evolve)


def campaign_stream(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"
