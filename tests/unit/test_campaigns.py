"""The campaign aggregate as tables: given events, when a command, then events (or an error)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from herald.domain import campaigns as cp
from herald.domain.errors import RuleViolated, ValidationFailed
from herald.domain.schedules import DailySchedule
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NO_PROBLEMS = cp.CampaignChecks()
DAILY = DailySchedule(kind="daily", time=time(10, 0), timezone="UTC")


def settings(**overrides: object) -> cp.CampaignSettings:
    values: dict[str, object] = {
        "name": "Spring",
        "type": cp.CampaignType.BROADCAST,
        "channel": "email",
        "resource_id": "7",
        "template_ids": ("1",),
        "audience": cp.Audience(id="1"),
        **overrides,
    }
    return cp.CampaignSettings.model_validate(values)


def created(**overrides: object) -> cp.CampaignCreated:
    return cp.CampaignCreated(campaign_id="c", settings=settings(**overrides), at=T0)


def activate(at: datetime = T0) -> cp.ActivateCampaign:
    return cp.ActivateCampaign("c", NO_PROBLEMS, "UTC", at)


def timer(number: int, due: datetime, phase: str = "run") -> cp.CampaignRunScheduled:
    return cp.CampaignRunScheduled(campaign_id="c", run_number=number, due_at=due, phase=phase)  # type: ignore[arg-type]


def started(
    number: int, at: datetime, limit: int | None = None, due: datetime | None = None
) -> cp.CampaignRunStarted:
    return cp.CampaignRunStarted(
        campaign_id="c", run_id=f"c-{number}", run_number=number, phase="run", limit=limit, due_at=due, at=at
    )


def finished(number: int, queued: int, exhausted: bool, at: datetime) -> cp.CampaignRunFinished:
    return cp.CampaignRunFinished(
        campaign_id="c",
        run_id=f"c-{number}",
        audience=queued,
        queued=queued,
        suppressed=0,
        failed=0,
        exhausted=exhausted,
        at=at,
    )


def progressed(number: int, offset: int) -> cp.CampaignRunProgressed:
    return cp.CampaignRunProgressed(
        campaign_id="c", run_id=f"c-{number}", offset=offset, queued=offset, suppressed=0, failed=0
    )


@pytest.mark.parametrize(
    ("bad", "error", "path"),
    [
        (settings(template_ids=()), ValidationFailed, "template_ids"),
        (settings(template_ids=tuple(str(i) for i in range(17))), ValidationFailed, "template_ids"),
        (settings(template_ids=("1", "1")), ValidationFailed, "template_ids"),
        (settings(audience=None), ValidationFailed, "audience"),
        (settings(type=cp.CampaignType.REGULAR), ValidationFailed, "schedule"),
        (settings(type=cp.CampaignType.TRIGGER, audience=None), ValidationFailed, "database_id"),
        (settings(type=cp.CampaignType.TRIGGER, database_id="1"), ValidationFailed, "audience"),
        (settings(type=cp.CampaignType.SPLIT_TEST, template_ids=("1", "2")), ValidationFailed, "split_test"),
        (
            settings(start_after_campaign_id="b", type=cp.CampaignType.REGULAR, schedule=DAILY),
            ValidationFailed,
            "start_after_campaign_id",
        ),
    ],
)
def test_settings_a_campaign_cannot_run_with_are_refused(
    bad: cp.CampaignSettings, error: type, path: str
) -> None:
    then_error(cp.campaign_decider, [], cp.CreateCampaign("c", bad, NO_PROBLEMS, T0), error, path)


def test_the_callers_checks_are_refused_with_their_path() -> None:
    checks = cp.CampaignChecks((("template_ids.0", "template 1 has no email content"),))
    then_error(
        cp.campaign_decider,
        [],
        cp.CreateCampaign("c", settings(), checks, T0),
        RuleViolated,
        "template_ids.0",
    )


def test_activation_sets_the_first_timer_from_the_schedule() -> None:
    events = then(cp.campaign_decider, [created(schedule=DAILY)], activate())
    assert events == [cp.CampaignActivated(campaign_id="c", at=T0), timer(1, T0.replace(hour=10))]
    assert then(cp.campaign_decider, [created(schedule=DAILY), *events], activate()) == []


def test_a_due_timer_starts_its_run_once() -> None:
    given = [
        created(schedule=DAILY, limit=cp.RunLimit(per_run=100)),
        cp.CampaignActivated(campaign_id="c", at=T0),
        timer(1, T0),
    ]
    events = then(cp.campaign_decider, given, cp.StartScheduledRun("c", 1, "UTC", T0))
    assert events == [started(1, T0, limit=100, due=T0)]
    assert then(cp.campaign_decider, [*given, *events], cp.StartScheduledRun("c", 1, "UTC", T0)) == []


def test_a_run_later_than_its_deadline_is_dropped_and_the_next_scheduled() -> None:
    given = [
        created(schedule=DAILY, run_deadline_minutes=10),
        cp.CampaignActivated(campaign_id="c", at=T0),
        timer(1, T0),
    ]
    late = T0 + timedelta(minutes=30)
    [dropped, following] = then(cp.campaign_decider, given, cp.StartScheduledRun("c", 1, "UTC", late))
    assert isinstance(dropped, cp.CampaignRunDropped) and "30 min late" in dropped.reason
    assert following == timer(2, T0.replace(hour=10))


def test_a_full_portion_grows_the_limit_and_an_exhausted_broadcast_completes() -> None:
    limit = cp.RunLimit(per_run=100, increase=50, increase_percent=True)
    base = [created(schedule=DAILY, limit=limit), cp.CampaignActivated(campaign_id="c", at=T0), timer(1, T0)]
    run = [started(1, T0, limit=100), progressed(1, 100)]
    [done, next_timer] = then(
        cp.campaign_decider, [*base, *run], cp.FinishRun("c", "c-1", 100, False, "p9", "UTC", T0)
    )
    assert (
        isinstance(done, cp.CampaignRunFinished)
        and done.queued == 100
        and isinstance(next_timer, cp.CampaignRunScheduled)
    )
    state = cp.campaign_decider.fold([*base, *run, done, next_timer])
    assert (state.current_limit, state.cursor, state.status) == (150, "p9", cp.CampaignStatus.WAITING)
    second = [started(2, T0 + timedelta(days=1), limit=150), progressed(2, 40)]
    last = then(
        cp.campaign_decider,
        [*base, *run, done, next_timer, *second],
        cp.FinishRun("c", "c-2", 40, True, "p1", "UTC", T0),
    )
    assert [type(e) for e in last] == [cp.CampaignRunFinished, cp.CampaignCompleted]


def test_pause_stops_between_chunks_and_deactivation_cancels_the_run() -> None:
    running = [created(), cp.CampaignActivated(campaign_id="c", at=T0), started(1, T0)]
    paused = then(cp.campaign_decider, running, cp.PauseCampaign("c", T0))
    assert paused == [cp.CampaignPaused(campaign_id="c", at=T0)]
    assert cp.campaign_decider.fold([*running, *paused]).status is cp.CampaignStatus.PAUSED
    resumed = then(cp.campaign_decider, [*running, *paused], cp.ResumeCampaign("c", T0))
    assert cp.campaign_decider.fold([*running, *paused, *resumed]).status is cp.CampaignStatus.RUNNING
    stopped = then(cp.campaign_decider, running, cp.DeactivateCampaign("c", T0))
    assert [type(e) for e in stopped] == [cp.CampaignRunCancelled, cp.CampaignDeactivated]


def test_launch_now_is_refused_during_a_run_and_for_triggers() -> None:
    running = [created(), cp.CampaignActivated(campaign_id="c", at=T0), started(1, T0)]
    then_error(cp.campaign_decider, running, cp.LaunchCampaignNow("c", NO_PROBLEMS, T0), RuleViolated)
    trigger = created(type=cp.CampaignType.TRIGGER, audience=None, database_id="1")
    then_error(cp.campaign_decider, [trigger], cp.LaunchCampaignNow("c", NO_PROBLEMS, T0), RuleViolated)


def test_a_completed_campaign_cannot_be_activated_again() -> None:
    done = [
        created(),
        cp.CampaignActivated(campaign_id="c", at=T0),
        cp.CampaignCompleted(campaign_id="c", at=T0),
    ]
    then_error(cp.campaign_decider, done, activate(), RuleViolated)


def test_a_split_test_winner_needs_its_test_slice_sent_and_one_of_its_templates() -> None:
    split = cp.SplitTest(sample_from_pct=0, sample_to_pct=10, winner_by="manual")
    base = [created(type=cp.CampaignType.SPLIT_TEST, template_ids=("1", "2"), split_test=split)]
    choose = cp.SelectWinner("c", "2", "manual", {}, "UTC", T0)
    then_error(cp.campaign_decider, base, choose, RuleViolated)
    test_run = cp.CampaignRunStarted(campaign_id="c", run_id="c-1", run_number=1, phase="test", at=T0)
    tested = [*base, cp.CampaignActivated(campaign_id="c", at=T0), test_run, finished(1, 10, False, T0)]
    assert cp.campaign_decider.fold(tested).status is cp.CampaignStatus.AWAITING_DECISION
    then_error(
        cp.campaign_decider,
        tested,
        cp.SelectWinner("c", "9", "manual", {}, "UTC", T0),
        ValidationFailed,
        "template_id",
    )
    [selected, winner_timer] = then(cp.campaign_decider, tested, choose)
    assert selected == cp.SplitTestWinnerSelected(
        campaign_id="c", template_id="2", mode="manual", values={}, at=T0
    )
    assert winner_timer == timer(2, T0, phase="winner")
