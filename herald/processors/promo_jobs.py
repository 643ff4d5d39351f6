"""The promo-code job processor: a large generation issued chunk by chunk, each chunk waking the next.

A job's start and each chunk's progress (`domain/promo_jobs.py`) are the
events that wake it; the chunk is issued through the port, atomically with
the job's next progress under the job stream's expected version, so a chunk
whose event is delivered twice (or an older progress delivered late) is
issued once: the port does nothing unless the job is still at the progress
the event reports. Chunks yield to other processors in between, as campaign
runs do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from herald.infra.event_store import EventFilter, RecordedEvent
from herald.processors.runtime import Reaction

NAME = "promo-code-jobs"


class JobPorts(Protocol):
    def job_chunk(self, job_id: str, done: int) -> None:
        """Issue the job's next chunk if it is still at `done` codes; end it when all are issued."""
        ...


class PromoCodeJobs:
    name = NAME
    consumes = EventFilter(frozenset({"PromoCodeJobStarted", "PromoCodeJobProgressed"}))

    def __init__(self, ports: JobPorts) -> None:
        self.ports = ports

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type == "PromoCodeJobStarted":
            self.ports.job_chunk(event.data["job_id"], 0)
        elif event.type == "PromoCodeJobProgressed":
            self.ports.job_chunk(event.data["job_id"], event.data["done"])
        return []
