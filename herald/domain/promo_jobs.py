"""A background generation of promo codes (stream `promojob-<job_id>`): asked for, chunk by chunk, ended.

The guide: small generations show at once, large ones "become a task". A job
records what was asked (count, the limit ignored or not, field values), each
chunk's progress (codes issued so far, duplicates the generator made), and
how it ended. Its chunks are issued by the job processor
(`processors/promo_jobs.py`), each appended atomically with the job's progress
under the job stream's expected version, so a chunk delivered twice is
issued once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from herald.domain.decider import Decider
from herald.domain.errors import RuleViolated
from herald.domain.events import Event, registry

JobStatus = Literal["running", "done", "failed"]


def job_stream(job_id: str) -> str:
    return f"promojob-{job_id}"


@registry.register("PromoCodeJobStarted")
class PromoCodeJobStarted(Event):
    job_id: str
    program_id: str
    count: int
    ignore_limit: bool = False
    fields: dict[str, Any] = Field(default_factory=dict)
    at: datetime


@registry.register("PromoCodeJobProgressed")
class PromoCodeJobProgressed(Event):
    job_id: str
    program_id: str
    done: int  # codes issued so far
    duplicates: int  # codes the generator made that the program had already
    at: datetime


@registry.register("PromoCodeJobEnded")
class PromoCodeJobEnded(Event):
    job_id: str
    program_id: str
    status: JobStatus
    reason: str | None = None
    at: datetime


@dataclass(frozen=True, slots=True)
class JobState:
    job_id: str = ""
    program_id: str = ""
    requested: int = 0
    ignore_limit: bool = False
    fields: tuple[tuple[str, Any], ...] = ()
    done: int = 0
    duplicates: int = 0
    status: JobStatus | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.requested - self.done) if self.status == "running" else 0


@dataclass(frozen=True, slots=True)
class StartJob:
    job_id: str
    program_id: str
    count: int
    ignore_limit: bool
    fields: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordChunk:
    issued: int
    duplicates: int
    at: datetime


@dataclass(frozen=True, slots=True)
class EndJob:
    status: JobStatus
    at: datetime
    reason: str | None = None


JobCommand = StartJob | RecordChunk | EndJob


def decide(command: JobCommand, state: JobState) -> list[Event]:
    match command:
        case StartJob():
            if state.status is not None:
                return []
            return [
                PromoCodeJobStarted(
                    job_id=command.job_id,
                    program_id=command.program_id,
                    count=command.count,
                    ignore_limit=command.ignore_limit,
                    fields=command.fields,
                    at=command.at,
                )
            ]
        case RecordChunk():
            if state.status != "running":
                raise RuleViolated(f"job {state.job_id} has ended", "job_id")
            return [
                PromoCodeJobProgressed(
                    job_id=state.job_id,
                    program_id=state.program_id,
                    done=state.done + command.issued,
                    duplicates=state.duplicates + command.duplicates,
                    at=command.at,
                )
            ]
        case EndJob():
            if state.status != "running":
                return []
            return [
                PromoCodeJobEnded(
                    job_id=state.job_id,
                    program_id=state.program_id,
                    status=command.status,
                    reason=command.reason,
                    at=command.at,
                )
            ]
    raise AssertionError(command)


def evolve(state: JobState, event: Event) -> JobState:
    match event:
        case PromoCodeJobStarted():
            fields = tuple(sorted(event.fields.items()))
            return JobState(
                event.job_id, event.program_id, event.count, event.ignore_limit, fields, status="running"
            )
        case PromoCodeJobProgressed():
            return replace(state, done=event.done, duplicates=event.duplicates)
        case PromoCodeJobEnded():
            return replace(state, status=event.status)
    return state


job_decider: Decider[JobCommand, JobState] = Decider(JobState(), decide, evolve)
