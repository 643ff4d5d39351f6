"""Scheduled imports: save, activate, run now, and the tick that fetches a due URL and starts its import.

A due run fetches its URL with the import fetcher (the SSRF-guarded client
with the import's size cap and a fetch deadline), keeps the body as an import
file named after the run, turns JSON into a table, and starts a file import
job whose id is the run's (`scheduled-<id>-<run>`), then records the run on
the scheduled import's stream. A tick repeated after a crash between the two
finds the job already started and only records the run; a fetch or a file
that fails records the run as failed with its reason. Either way the next
run's timer follows.
"""

from __future__ import annotations

from typing import Any

from herald.domain import scheduled_imports as si
from herald.domain.errors import DomainError, NotFound
from herald.domain.import_spec import ImportSpec, check_spec
from herald.domain.jobs import job_stream
from herald.domain.schedules import next_runs
from herald.infra.import_files import ImportFiles, StoredFile
from herald.infra.remote_content import RemoteContentError, RemoteContentFetcher
from herald.projections.scheduled_imports import ScheduledImportsProjection
from herald.services.aggregates import CommandContext, Outcome
from herald.services.catalog import CatalogService
from herald.services.imports import ImportService

UPCOMING = 12  # the guide previews the next 12 runs


class ScheduledImportService:
    def __init__(
        self,
        catalog: CatalogService,
        imports: ImportService,
        files: ImportFiles,
        fetcher: RemoteContentFetcher,
        projection: ScheduledImportsProjection,
        account_timezone: str,
    ) -> None:
        self.catalog = catalog
        self.aggregates = catalog.aggregates
        self.imports = imports
        self.files = files
        self.fetcher = fetcher
        self.projection = projection
        self.account_timezone = account_timezone

    def create(
        self, settings: si.ScheduledImportSettings, active: bool, run_now: bool, context: CommandContext
    ) -> tuple[str, Outcome]:
        self._check(settings)
        now = self.aggregates.clock.now()
        return self.catalog.create_numbered(
            si.scheduled_import_decider,
            si.scheduled_import_stream,
            self.projection.count(),
            lambda i: si.SaveScheduledImport(i, settings, now, self.account_timezone, active, run_now),
            context,
        )

    def replace(
        self,
        import_id: str,
        settings: si.ScheduledImportSettings,
        active: bool,
        run_now: bool,
        context: CommandContext,
    ) -> Outcome:
        self._check(settings)
        now = self.aggregates.clock.now()
        command = si.SaveScheduledImport(
            import_id, settings, now, self.account_timezone, active, run_now, False
        )
        return self.execute(import_id, command, context)

    def _check(self, settings: si.ScheduledImportSettings) -> None:
        """The mapping against the database (names of columns are checked against each fetched file)."""
        database = self.catalog.database(settings.database_id, "database_id")
        named = [m.column for m in (*settings.columns, *settings.subscriptions) if isinstance(m.column, str)]
        spec = ImportSpec.model_validate(
            {**settings.model_dump(include=_SPEC_FIELDS), "file_id": "-", "format": "csv"}
        )
        check_spec(spec, database, named)
        for i, source in enumerate(settings.subscriptions):
            self.catalog.resource(source.resource_id, f"subscriptions.{i}.resource_id")

    def execute(self, import_id: str, command: si.ScheduledImportCommand, context: CommandContext) -> Outcome:
        return self.aggregates.execute(
            si.scheduled_import_decider, si.scheduled_import_stream(import_id), command, context
        )

    def state(self, import_id: str) -> si.ScheduledImportState:
        state = self.aggregates.load(si.scheduled_import_decider, si.scheduled_import_stream(import_id)).state
        if not state.exists:
            raise NotFound(f"there is no scheduled import {import_id!r}", "import_id")
        return state

    def card(self, import_id: str) -> dict[str, Any]:
        """Settings, whether active, the next runs and the last ten runs with their jobs."""
        state = self.state(import_id)
        assert state.settings is not None
        upcoming = []
        if state.active and state.next_run is not None:
            first = state.next_run.due_at
            upcoming = [
                first,
                *next_runs(state.settings.schedule, first, UPCOMING - 1, self.account_timezone),
            ]
        runs = []
        for run in self.projection.runs(import_id):
            job = self.imports.jobs.projection.get(run["job_id"]) if run["job_id"] else None
            runs.append({**run, "job": job})
        return {
            "import_id": import_id,
            "settings": state.settings.model_dump(mode="json"),
            "active": state.active,
            "upcoming": [moment.isoformat() for moment in upcoming],
            "runs": runs,
        }

    # --- the timers ---------------------------------------------------------------------------

    def tick(self, now: Any = None) -> int:
        """Run every scheduled import that is due; returns how many runs were recorded."""
        now = now or self.aggregates.clock.now()
        done = 0
        for import_id, run_number in self.projection.due(now):
            done += self._run(import_id, run_number, now)
        return done

    def _run(self, import_id: str, run_number: int, now: Any) -> int:
        state = self.aggregates.load(si.scheduled_import_decider, si.scheduled_import_stream(import_id)).state
        timer = state.next_run
        if not state.exists or timer is None or timer.run_number != run_number or timer.due_at > now:
            return 0
        assert state.settings is not None
        job_id = f"scheduled-{import_id}-{run_number}"
        context = CommandContext(
            actor="scheduler", source="timer", request_id=f"scheduledimport-{import_id}-{run_number}"
        )
        command: si.ScheduledImportCommand
        try:
            if self.aggregates.store.stream_version(job_stream(job_id)) == 0:
                self._start_job(state.settings, job_id, context)
            command = si.RecordRunStarted(run_number, job_id, now, self.account_timezone)
        except (RemoteContentError, DomainError) as error:
            self.files.delete(job_id)
            command = si.RecordRunFailed(run_number, _reason(error), now, self.account_timezone)
        self.execute(import_id, command, context)
        return 1

    def _start_job(self, settings: si.ScheduledImportSettings, job_id: str, context: CommandContext) -> None:
        stored = self.fetcher.download(
            str(settings.url), lambda chunks: self.files.store(chunks, self.files_limit(), job_id)
        )
        stored = self._as_table(stored, settings.format)
        spec = ImportSpec.model_validate(
            {
                **settings.model_dump(include=_SPEC_FIELDS),
                "file_id": stored.file_id,
                "format": stored.format,
                "size": stored.size,
                "file_name": str(settings.url),
                "source": "schedule",
            }
        )
        job_context = CommandContext(actor=context.actor, source=context.source, request_id=job_id)
        self.imports.start(settings.database_id, spec, job_context, job_id)

    def files_limit(self) -> int:
        return self.fetcher.policy.max_bytes

    def _as_table(self, stored: StoredFile, format: str) -> StoredFile:
        if format == "json" or (
            format == "auto" and stored.format == "csv" and self.files.looks_like_json(stored.file_id)
        ):
            return self.files.json_as_table(stored.file_id)
        return stored


_SPEC_FIELDS = {
    "header",
    "skip_rows",
    "columns",
    "subscriptions",
    "mode",
    "match",
    "field_name",
    "resubscribe",
}


def _reason(error: Exception) -> str:
    if isinstance(error, DomainError):
        return f"{error.path}: {error.reason}" if error.path else error.reason
    return str(error)
