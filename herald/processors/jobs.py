"""The job processor: wakes a job for its next chunk when it starts and after each chunk.

A chunk and its record are one atomic append (`services/jobs.py`), and the
record is the event that wakes the next chunk, so a job is a chain of small
appends like a campaign run: it yields to the other processors between
chunks, and after a crash the replayed wake-up of the last committed chunk
resumes it there. A wake-up for a chunk already done does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from herald.infra.event_store import EventFilter, RecordedEvent
from herald.processors.runtime import Reaction

NAME = "jobs"


class JobPorts(Protocol):
    def wake(self, job_id: str, after_chunk: int) -> None:
        """Do the job's chunk after `after_chunk`, if the job is still at it."""
        ...


class JobProcessor:
    name = NAME
    consumes = EventFilter(frozenset({"JobStarted", "JobChunkDone"}))  # the runtime reads no others for it

    def __init__(self, ports: JobPorts) -> None:
        self.ports = ports

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type == "JobStarted":
            self.ports.wake(event.data["job_id"], 0)
        elif event.type == "JobChunkDone":
            self.ports.wake(event.data["job_id"], event.data["chunk"])
        return []
