"""The job aggregate: start, chunks in order and once, the first end stands, cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from herald.domain import jobs as j
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated
from tests.unit.decider_table import then, then_error

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SPEC = {"file_id": "f1"}
START = j.StartJob("job1", j.JobKind.IMPORT, "1", SPEC, AT, "user:ann")
STARTED = j.JobStarted(
    job_id="job1", kind=j.JobKind.IMPORT, database_id="1", spec=SPEC, started_by="user:ann", at=AT
)


def chunk(n: int, **counts: int) -> j.RecordChunk:
    return j.RecordChunk(chunk=n, cursor=str(n * 10), counts=counts, at=AT)


def done(n: int, **counts: int) -> j.JobChunkDone:
    return j.JobChunkDone(job_id="job1", chunk=n, cursor=str(n * 10), counts=counts, at=AT)


def test_a_job_starts_once_and_a_repeated_start_is_a_no_op() -> None:
    assert then(j.job_decider, [], START) == [STARTED]
    assert then(j.job_decider, [STARTED], START) == []
    other = j.StartJob("job1", j.JobKind.EXPORT, "1", SPEC, AT)
    then_error(j.job_decider, [STARTED], other, AlreadyExists, "job_id")


def test_chunks_come_in_order_and_a_recorded_chunk_is_not_recorded_again() -> None:
    assert then(j.job_decider, [STARTED], chunk(1, created=3)) == [done(1, created=3)]
    assert then(j.job_decider, [STARTED, done(1, created=3)], chunk(1, created=3)) == []
    then_error(j.job_decider, [STARTED], chunk(2), RuleViolated, "chunk")
    then_error(j.job_decider, [], chunk(1), NotFound, "job_id")


def test_counts_add_up_over_chunks_and_the_cursor_moves() -> None:
    state = j.job_decider.fold([STARTED, done(1, created=3, error=1), done(2, created=2, updated=5)])
    assert state.counts == {"created": 5, "error": 1, "updated": 5}
    assert (state.chunks, state.cursor, state.started_by) == (2, "20", "user:ann")


def test_the_first_end_stands_and_a_cancelled_job_records_no_more_chunks() -> None:
    completed = j.JobCompleted(job_id="job1", at=AT)
    assert then(j.job_decider, [STARTED], j.CompleteJob(AT)) == [completed]
    assert then(j.job_decider, [STARTED, completed], j.FailJob("late", AT)) == []
    cancelled = j.JobCancelled(job_id="job1", at=AT)
    assert then(j.job_decider, [STARTED], j.CancelJob(AT)) == [cancelled]
    assert then(j.job_decider, [STARTED, cancelled], j.CancelJob(AT)) == []
    then_error(j.job_decider, [STARTED, cancelled], chunk(1), RuleViolated, "status")
    then_error(j.job_decider, [STARTED, completed], j.CancelJob(AT), RuleViolated, "status")
