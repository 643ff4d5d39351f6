"""Jobs over many profiles: their frozen audience, mass updates, and clearing a database.

A job over a database or a segment freezes the profile ids it covers when its
first chunk runs (`JobAudience`, in `runs.sqlite` beside the campaign runs'
audiences), so every chunk reads the same list however the segment moves
meanwhile, and a resumed job goes on over exactly that list; the cursor is
the place in it. Each chunk decides its profiles with
`ProfileService.decide_many` and appends their events, their uniqueness
claims and the chunk's record in one transaction, with event ids derived from
the job, chunk and profile (so a chunk redone after a crash appends nothing
twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from herald.domain import jobs
from herald.domain.errors import ValidationFailed
from herald.domain.mass_updates import MassUpdateSpec, Source, check_spec, commands_for
from herald.domain.profiles import DeleteProfile, ProfileState
from herald.infra.run_audiences import RunAudiences
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import CommandContext, Loaded, Outcome
from herald.services.catalog import CatalogService
from herald.services.jobs import JobService
from herald.services.profiles import ProfileService, RowResult

CHUNK = 1000
_PAGE = 1000


class JobAudience:
    """The profile ids a job covers, frozen at its first chunk."""

    def __init__(
        self,
        audiences: RunAudiences,
        profiles: ProfilesProjection,
        segment_members: Callable[[str], frozenset[str]],
    ) -> None:
        self.audiences = audiences
        self.profiles = profiles
        self.segment_members = segment_members

    def page(self, job: jobs.JobState, source: Source, offset: int, limit: int) -> tuple[list[str], int]:
        """Ids `offset`.. of the job's audience and its size (frozen on the first call)."""
        key = f"job-{job.job_id}"
        size = self.audiences.size(key)
        if size is None:
            size = self.audiences.freeze(key, self._ids(job.database_id, source))
        return self.audiences.page(key, offset, limit), size

    def _ids(self, database_id: str, source: Source) -> Iterator[str]:
        if source.kind == "segment":
            members = self.segment_members(source.id)
            yield from sorted(p for p in members if self._in(p, database_id))
            return
        after = ""
        while page := self.profiles.list_profiles(database_id, after, _PAGE):
            yield from (card["profile_id"] for card in page)
            after = page[-1]["profile_id"]

    def _in(self, profile_id: str, database_id: str) -> bool:
        card = self.profiles.card(profile_id)
        return card is not None and card["database_id"] == database_id


class ProfilesJob:
    """What a mass update and a clearing share: a chunk of the audience, decided and recorded at once."""

    kind: jobs.JobKind
    done = "updated"  # what the counts call a profile the job changed

    def __init__(self, job_service: JobService, profiles: ProfileService, audience: JobAudience) -> None:
        self.jobs = job_service
        self.profiles = profiles
        self.audience = audience
        self.chunk = CHUNK
        job_service.runners[self.kind] = self

    def page(self, job: jobs.JobState, offset: int) -> tuple[list[str], int]:
        """The chunk's profile ids from `offset` on, and how many the job covers."""
        return self.audience.page(job, Source(kind="database", id=job.database_id), offset, self.chunk)

    def commands(self, job: jobs.JobState) -> Callable[[ProfileState], Sequence[Any]]:
        raise NotImplementedError

    def run_chunk(self, job: Loaded[jobs.JobState], context: CommandContext) -> None:
        state = job.state
        offset = int(state.cursor or 0)
        ids, size = self.page(state, offset)
        if not ids:
            self.jobs.complete(state.job_id, context)
            return
        chunk = state.chunks + 1
        # ids derived from job and chunk: a chunk redone after a crash re-appends the same events
        chunk_context = CommandContext(
            actor=context.actor,
            source=context.source,
            request_id=f"job-{state.job_id}-{chunk}",
            extra=context.extra,
        )

        def record(results: list[RowResult]) -> list[Any]:
            counts: dict[str, int] = {}
            for result in results:
                status = self.done if result.status == "updated" else result.status
                counts[status] = counts.get(status, 0) + 1
            errors = tuple(
                jobs.RowError(
                    row=offset + r.index + 1, column=r.profile_id, path=r.error.path, reason=r.error.reason
                )
                for r in results
                if r.error is not None
            )
            command = jobs.RecordChunk(
                chunk=chunk,
                cursor=str(offset + len(ids)),
                counts=counts,
                at=self.jobs.aggregates.clock.now(),
                errors=errors,
                progress={"profiles_done": offset + len(ids), "profiles_total": size},
            )
            return [self.jobs.chunk_append(job, command, chunk_context)]

        self.profiles.decide_many(state.database_id, ids, self.commands(state), chunk_context, along=record)


class MassUpdates(ProfilesJob):
    kind = jobs.JobKind.MASS_UPDATE

    def __init__(
        self,
        job_service: JobService,
        profiles: ProfileService,
        audience: JobAudience,
        catalog: CatalogService,
    ) -> None:
        super().__init__(job_service, profiles, audience)
        self.catalog = catalog

    def start(self, database_id: str, spec: MassUpdateSpec, context: CommandContext) -> tuple[str, Outcome]:
        database = self.catalog.database(database_id)
        checked = check_spec(spec, database)
        if spec.source.kind == "database" and spec.source.id != database_id:
            raise ValidationFailed("a database source is the job's own database", "source.id")
        if spec.source.kind == "segment":
            self.audience.segment_members(spec.source.id)  # NotFound for an unknown segment
        return self.jobs.start(self.kind, database_id, checked.model_dump(mode="json"), context)

    def commands(self, job: jobs.JobState) -> Callable[[ProfileState], Sequence[Any]]:
        spec = MassUpdateSpec.model_validate(job.spec)
        database = self.catalog.database(job.database_id)
        at = self.jobs.aggregates.clock.now()
        return lambda state: commands_for(spec, database, state, at)

    def page(self, job: jobs.JobState, offset: int) -> tuple[list[str], int]:
        spec = MassUpdateSpec.model_validate(job.spec)
        ids, size = self.audience.page(job, spec.source, offset, self.chunk)
        if spec.limit is not None:
            ids = ids[: max(0, spec.limit - offset)]
            size = min(size, spec.limit)
        return ids, size


class DatabaseClearing(ProfilesJob):
    """Clearing a database (API only, as in the guide): every profile deleted, its unique values freed."""

    kind = jobs.JobKind.CLEAR_DATABASE
    done = "deleted"

    def start(
        self, database_id: str, context: CommandContext, catalog: CatalogService
    ) -> tuple[str, Outcome]:
        catalog.database(database_id)
        return self.jobs.start(
            self.kind, database_id, {"source": {"kind": "database", "id": database_id}}, context
        )

    def commands(self, job: jobs.JobState) -> Callable[[ProfileState], Sequence[Any]]:
        at = self.jobs.aggregates.clock.now()
        return lambda state: [DeleteProfile(state.profile_id, at)]
