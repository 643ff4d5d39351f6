"""Jobs: start one, cancel it, and do its next chunk when the job processor wakes it.

The job processor (`processors/jobs.py`) calls `wake(job_id, after_chunk)` for
every `JobStarted` and `JobChunkDone`; the job's runner (by kind: import,
export, mass update, clearing) does the next chunk and records it with
`chunk_append`, appended atomically with the chunk's effects under the job
stream's version. A wake-up for a chunk already done, or for a job that
ended, does nothing; a chunk another worker recorded first makes this one's
append fail its version check, and it is dropped. A runner's DomainError
(the database was deleted, the file is unreadable) fails the job with that
reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import JsonValue

from herald.domain import jobs
from herald.domain.errors import DomainError, NotFound
from herald.infra.event_store import StreamAppend, WrongExpectedVersion
from herald.projections.jobs import JobsProjection
from herald.services.aggregates import Aggregates, CommandContext, Loaded, Outcome


class JobRunner(Protocol):
    def run_chunk(self, job: Loaded[jobs.JobState], context: CommandContext) -> None:
        """Do the job's next chunk and record it (`JobService.chunk_append`), or complete the job."""
        ...


class JobService:
    def __init__(self, aggregates: Aggregates, projection: JobsProjection) -> None:
        self.aggregates = aggregates
        self.projection = projection
        self.runners: dict[jobs.JobKind, JobRunner] = {}

    def start(
        self,
        kind: jobs.JobKind,
        database_id: str,
        spec: Mapping[str, JsonValue],
        context: CommandContext,
        job_id: str | None = None,
    ) -> tuple[str, Outcome]:
        job_id = job_id or self.aggregates.ids.token(12)
        command = jobs.StartJob(job_id, kind, database_id, spec, self.aggregates.clock.now(), context.actor)
        outcome = self.aggregates.execute(jobs.job_decider, jobs.job_stream(job_id), command, context)
        return job_id, outcome

    def load(self, job_id: str) -> Loaded[jobs.JobState]:
        loaded = self.aggregates.load(jobs.job_decider, jobs.job_stream(job_id))
        if not loaded.state.started:
            raise NotFound(f"there is no job {job_id!r}", "job_id")
        return loaded

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as the jobs list shows it, from its own stream (never behind the read model)."""
        state = self.load(job_id).state
        return {
            "job_id": state.job_id,
            "kind": str(state.kind),
            "database_id": state.database_id,
            "status": str(state.status),
            "chunks": state.chunks,
            "counts": dict(state.counts),
            "errors": state.errors,
            "progress": dict(state.progress),
            "result": dict(state.result),
            "reason": state.reason or None,
            "started_by": state.started_by,
            "started_at": state.started_at,
            "finished_at": state.finished_at,
        }

    def cancel(self, job_id: str, context: CommandContext) -> Outcome:
        self.load(job_id)
        command = jobs.CancelJob(self.aggregates.clock.now())
        return self.aggregates.execute(jobs.job_decider, jobs.job_stream(job_id), command, context)

    def chunk_append(
        self, job: Loaded[jobs.JobState], command: jobs.RecordChunk, context: CommandContext
    ) -> StreamAppend:
        """The chunk's record, to append with the chunk's effects at the job's loaded version."""
        events = jobs.decide(command, job.state)
        stream = jobs.job_stream(job.state.job_id)
        return StreamAppend(stream, self.aggregates.new_events(stream, events, context), job.version)

    def complete(self, job_id: str, context: CommandContext, result: Mapping[str, JsonValue] = {}) -> None:
        command = jobs.CompleteJob(self.aggregates.clock.now(), result)
        self.aggregates.execute(jobs.job_decider, jobs.job_stream(job_id), command, context)

    def wake(self, job_id: str, after_chunk: int) -> None:
        """Do the chunk after `after_chunk` if the job is still there (the job processor's port)."""
        loaded = self.aggregates.load(jobs.job_decider, jobs.job_stream(job_id))
        state = loaded.state
        if not state.running or state.chunks != after_chunk or state.kind not in self.runners:
            return
        context = CommandContext(
            actor=state.started_by or "system", source=f"job:{state.kind}", extra={"job_id": job_id}
        )
        try:
            self.runners[state.kind].run_chunk(loaded, context)
        except WrongExpectedVersion as conflict:
            if conflict.stream != jobs.job_stream(job_id):
                raise
            # another worker recorded this chunk (or the job was cancelled) first: nothing to do
        except DomainError as error:
            command = jobs.FailJob(error.reason, self.aggregates.clock.now())
            self.aggregates.execute(jobs.job_decider, jobs.job_stream(job_id), command, context)
