"""Jobs ("Задания"): long work done in chunks — file imports, exports, mass updates, clearing a database.

A job's stream (`job-<id>`) is its whole life: `JobStarted` with what it is to
do (`kind` and a kind-specific `spec`), one `JobChunkDone` per committed
chunk (where the cursor stands, the counts it added, the rows it refused),
then `JobCompleted`, `JobFailed` or `JobCancelled`. A chunk's event is
appended atomically with the chunk's own effects (the profiles it imported,
updated or erased), under the job stream's expected version, so a chunk is
done exactly once however often a worker is woken or restarted, and a
restarted job resumes at its last committed chunk (`cursor`).

Decisions where the guide is silent:
- Chunks are numbered from 1 and must come in order: recording chunk N again
  changes nothing (a redelivered wake-up), skipping one is refused.
- A cancelled job records no more chunks; what its committed chunks did stays.
- The counts are per kind (`created`/`updated`/`unchanged`/`error` for an
  import, `exported` for an export, …) and summed over the chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated
from herald.domain.events import Event, registry


def job_stream(job_id: str) -> str:
    return f"job-{job_id}"


class JobKind(StrEnum):
    IMPORT = "import"
    EXPORT = "export"
    MASS_UPDATE = "mass_update"
    CLEAR_DATABASE = "clear_database"


class JobStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RowError(BaseModel):
    """One refused row: its number in the source (from 1), the column and field path, why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    row: int
    column: str | None = None
    path: str = ""
    reason: str
    status: int = 422


# --- events --------------------------------------------------------------------------------------


@registry.register("JobStarted")
class JobStarted(Event):
    job_id: str
    kind: JobKind
    database_id: str
    spec: dict[str, JsonValue]
    started_by: str = ""  # the actor whose rights the job's chunks act with
    at: datetime


@registry.register("JobChunkDone")
class JobChunkDone(Event):
    job_id: str
    chunk: int
    cursor: str  # where the next chunk starts (rows read, the last profile id passed, …)
    counts: dict[str, int]
    errors: tuple[RowError, ...] = ()
    progress: dict[str, int] = Field(default_factory=dict)  # gauges: bytes read of bytes total, …
    at: datetime


@registry.register("JobCompleted")
class JobCompleted(Event):
    job_id: str
    at: datetime
    result: dict[str, JsonValue] = Field(default_factory=dict)  # what the job made (an export's file)


@registry.register("JobFailed")
class JobFailed(Event):
    job_id: str
    reason: str
    at: datetime


@registry.register("JobCancelled")
class JobCancelled(Event):
    job_id: str
    at: datetime


# --- state ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobState:
    job_id: str = ""
    kind: JobKind | None = None
    database_id: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict)
    started_by: str = ""
    status: JobStatus | None = None
    chunks: int = 0
    cursor: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    errors: int = 0
    progress: Mapping[str, int] = field(default_factory=dict)
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def started(self) -> bool:
        return self.status is not None

    @property
    def running(self) -> bool:
        return self.status is JobStatus.RUNNING


def _added(counts: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    total = dict(counts)
    for name, count in more.items():
        total[name] = total.get(name, 0) + count
    return total


def evolve(state: JobState, event: Event) -> JobState:
    match event:
        case JobStarted():
            return JobState(
                job_id=event.job_id,
                kind=event.kind,
                database_id=event.database_id,
                spec=event.spec,
                started_by=event.started_by,
                status=JobStatus.RUNNING,
                started_at=event.at,
            )
        case JobChunkDone():
            return replace(
                state,
                chunks=event.chunk,
                cursor=event.cursor,
                counts=_added(state.counts, event.counts),
                errors=state.errors + len(event.errors),
                progress={**state.progress, **event.progress},
            )
        case JobCompleted():
            return replace(state, status=JobStatus.COMPLETED, result=event.result, finished_at=event.at)
        case JobFailed():
            return replace(state, status=JobStatus.FAILED, reason=event.reason, finished_at=event.at)
        case JobCancelled():
            return replace(state, status=JobStatus.CANCELLED, finished_at=event.at)
    return state


# --- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartJob:
    job_id: str
    kind: JobKind
    database_id: str
    spec: Mapping[str, JsonValue]
    at: datetime
    started_by: str = ""


@dataclass(frozen=True, slots=True)
class RecordChunk:
    chunk: int
    cursor: str
    counts: Mapping[str, int]
    at: datetime
    errors: tuple[RowError, ...] = ()
    progress: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompleteJob:
    at: datetime
    result: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FailJob:
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CancelJob:
    at: datetime


JobCommand = StartJob | RecordChunk | CompleteJob | FailJob | CancelJob


def decide(command: JobCommand, state: JobState) -> list[Event]:
    if isinstance(command, StartJob):
        if state.started:
            if state.spec == command.spec and state.kind is command.kind:
                return []  # the same start again (a retried request)
            raise AlreadyExists(f"job {command.job_id!r} exists already", "job_id")
        return [
            JobStarted(
                job_id=command.job_id,
                kind=command.kind,
                database_id=command.database_id,
                spec=dict(command.spec),
                started_by=command.started_by,
                at=command.at,
            )
        ]
    if not state.started:
        raise NotFound("there is no such job", "job_id")
    match command:
        case RecordChunk():
            return _chunk(command, state)
        case CompleteJob() if state.running:
            return [JobCompleted(job_id=state.job_id, at=command.at, result=dict(command.result))]
        case FailJob() if state.running:
            return [JobFailed(job_id=state.job_id, reason=command.reason, at=command.at)]
        case CancelJob():
            if state.status is JobStatus.CANCELLED:
                return []
            _require_running(state)
            return [JobCancelled(job_id=state.job_id, at=command.at)]
    return []  # completing or failing a job that already ended: the first end stands


def _require_running(state: JobState) -> None:
    if not state.running:
        raise RuleViolated(f"the job is {state.status}, not running", "status")


def _chunk(command: RecordChunk, state: JobState) -> list[Event]:
    if command.chunk <= state.chunks:
        return []  # this chunk is recorded already: a redelivered wake-up
    _require_running(state)
    if command.chunk != state.chunks + 1:
        raise RuleViolated(f"chunk {state.chunks + 1} comes next, not {command.chunk}", "chunk")
    return [
        JobChunkDone(
            job_id=state.job_id,
            chunk=command.chunk,
            cursor=command.cursor,
            counts=dict(command.counts),
            errors=command.errors,
            progress=dict(command.progress),
            at=command.at,
        )
    ]


job_decider: Decider[JobCommand, JobState] = Decider(JobState(), decide, evolve)
