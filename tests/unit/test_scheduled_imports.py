"""The scheduled import aggregate: timers from the schedule, run now, each run recorded once."""

from __future__ import annotations

from datetime import UTC, datetime

from herald.domain import scheduled_imports as si
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from tests.unit.decider_table import then, then_error

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TEN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SETTINGS = si.ScheduledImportSettings.model_validate(
    {
        "name": "CRM",
        "database_id": "1",
        "url": "https://crm.example.com/people.csv",
        "columns": [{"column": 1, "field": "email"}],
        "schedule": {"kind": "daily", "time": "10:00:00"},
    }
)
SAVED = si.ScheduledImportSaved(import_id="1", settings=SETTINGS, at=AT)
ACTIVATED = si.ScheduledImportActivated(import_id="1", at=AT)


def timer(number: int, due: datetime) -> si.ScheduledImportRunScheduled:
    return si.ScheduledImportRunScheduled(import_id="1", run_number=number, due_at=due)


def save(**options: object) -> si.SaveScheduledImport:
    return si.SaveScheduledImport("1", SETTINGS, AT, "UTC", **options)  # type: ignore[arg-type]


def test_saving_an_active_import_schedules_its_first_run_or_a_run_at_once() -> None:
    assert then(si.scheduled_import_decider, [], save()) == [SAVED, ACTIVATED, timer(1, TEN)]
    assert then(si.scheduled_import_decider, [], save(run_now=True)) == [SAVED, ACTIVATED, timer(1, AT)]
    assert then(si.scheduled_import_decider, [], save(active=False)) == [SAVED]


def test_a_run_is_recorded_once_when_due_and_the_next_timer_follows() -> None:
    given = [SAVED, ACTIVATED, timer(1, TEN)]
    started = si.RecordRunStarted(1, "scheduled-1-1", TEN, "UTC")
    tomorrow = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    run = si.ScheduledImportRunStarted(import_id="1", run_number=1, job_id="scheduled-1-1", at=TEN)
    assert then(si.scheduled_import_decider, given, started) == [run, timer(2, tomorrow)]
    assert then(si.scheduled_import_decider, [*given, run, timer(2, tomorrow)], started) == []
    early = si.RecordRunStarted(1, "scheduled-1-1", AT, "UTC")
    then_error(si.scheduled_import_decider, given, early, RuleViolated, "run_number")


def test_a_failed_run_keeps_the_plan_and_an_ended_schedule_deactivates() -> None:
    plan = {"kind": "once", "date": "2026-03-02", "time": "10:00:00"}
    once = si.ScheduledImportSettings.model_validate({**SETTINGS.model_dump(mode="json"), "schedule": plan})
    given = [si.ScheduledImportSaved(import_id="1", settings=once, at=AT), ACTIVATED, timer(1, TEN)]
    failed = si.RecordRunFailed(1, "HTTP 404", TEN, "UTC")
    assert then(si.scheduled_import_decider, given, failed) == [
        si.ScheduledImportRunFailed(import_id="1", run_number=1, reason="HTTP 404", at=TEN),
        si.ScheduledImportDeactivated(import_id="1", at=TEN, reason="schedule_ended"),
    ]


def test_refusals() -> None:
    local = SETTINGS.model_copy(
        update={"schedule": SETTINGS.schedule.model_copy(update={"profile_timezone": True})}
    )
    command = si.SaveScheduledImport("1", local, AT, "UTC")
    then_error(si.scheduled_import_decider, [], command, ValidationFailed, "schedule.profile_timezone")
    then_error(si.scheduled_import_decider, [], si.RunScheduledImportNow(AT), NotFound, "import_id")
