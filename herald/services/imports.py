"""File imports: a file's preview and suggested mapping, starting the job, and each chunk of it.

A chunk reads the next `chunk_rows` rows of the file from the job's cursor
(the rows consumed so far) — from the reader the job's previous chunk left open when it is at
that cursor (`_KeptReaders`; re-reading the file from its start for every chunk made a 1M-row
import read 100 million rows), else from a newly opened file skipped to it — turns each into a
batch import row through the checked mapping, and imports them with `ProfileService.import_rows` — the
batch API's own path — with the job's chunk record appended in the same
transaction. Rows the file itself spoils (not CSV, not UTF-8) and rows the
import refuses become the chunk's `RowError`s; the error report is those
rows with their cells, kept per chunk beside the file (`ImportFiles`) so a
chunk done again writes its part again instead of adding to it. When the
file has no rows left the job completes and the uploaded file is deleted
(the error report stays until the job is deleted).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from herald.domain import jobs
from herald.domain.errors import AlreadyExists, DomainError, NotFound
from herald.domain.import_spec import ImportSpec, MappedTable, check_spec, suggest_columns
from herald.domain.subscriptions import Cause
from herald.infra.import_files import ImportFiles, Table, TableRow, open_table
from herald.reports.export import csv_text
from herald.services.aggregates import CommandContext, Loaded
from herald.services.catalog import CatalogService
from herald.services.jobs import JobService
from herald.services.profiles import ImportOptions, ProfileService, RowResult

CHUNK_ROWS = 5000
PREVIEW_ROWS = 10
_STATUSES = ("created", "updated", "unchanged", "error")


@dataclass(slots=True)
class _Kept:
    table: Table
    rows: Iterator[TableRow]
    at: int  # the rows consumed so far: where `rows` continues


class _KeptReaders:
    """The open reader of each running file import, kept between its chunks.

    A chunk continues from the kept reader only if it stopped exactly at the job's cursor, so a
    chunk done again (its append refused, the process restarted) opens the file afresh and skips
    to the cursor, as before. A few readers are kept (one per job that ran lately); the oldest is
    closed when more are opened.
    """

    LIMIT = 8

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}

    def take(
        self, file_id: str, open_at: int, opener: Callable[[], Table], count: int
    ) -> tuple[list[TableRow], Table]:
        """The next `count` rows after the first `open_at`, and the table they came from (still open)."""
        kept = self._kept.pop(file_id, None)
        if kept is not None and kept.at != open_at:
            kept.table.close()
            kept = None
        if kept is None:
            table = opener()
            kept = _Kept(table, islice(table.rows(), open_at, None), open_at)
        taken = list(islice(kept.rows, count))
        kept.at += len(taken)
        self._kept[file_id] = kept
        while len(self._kept) > self.LIMIT:
            self._kept.pop(next(iter(self._kept))).table.close()
        return taken, kept.table

    def close(self, file_id: str) -> None:
        kept = self._kept.pop(file_id, None)
        if kept is not None:
            kept.table.close()


@dataclass(frozen=True, slots=True)
class _Pending:
    """A row about to be imported: where it is in the file, its cells, its batch import row."""

    number: int
    cells: list[str]
    row: dict[str, Any]


class ImportService:
    def __init__(
        self,
        job_service: JobService,
        catalog: CatalogService,
        profiles: ProfileService,
        files: ImportFiles,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.jobs = job_service
        self.catalog = catalog
        self.profiles = profiles
        self.files = files
        self.chunk_rows = chunk_rows
        self._readers = _KeptReaders()
        job_service.runners[jobs.JobKind.IMPORT] = self

    # --- before the job -------------------------------------------------------------------------

    def preview(self, database_id: str, file_id: str, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
        """The first rows, each column with its first values, and the columns matched to fields."""
        stored = self.files.stored(file_id)
        database = self.catalog.database(database_id)
        with open_table(self.files.path(file_id), stored.format) as table:
            first = [r.cells for r in islice(table.rows(), rows + 1) if r.error is None]
        header = first[0] if first else []
        width = max((len(r) for r in first), default=0)
        columns = [
            {
                "number": n + 1,
                "header": header[n] if n < len(header) else "",
                "values": [r[n] if n < len(r) else "" for r in first[1:]],
            }
            for n in range(width)
        ]
        suggested = suggest_columns(header, database)
        return {
            "file_id": file_id,
            "format": stored.format,
            "rows": first[:rows],
            "columns": columns,
            "suggested_columns": [c.model_dump() for c in suggested],
            # the guide's "Найдено совпадений с полями базы данных: N. Колонок в файле, кроме совпавших: M."
            "matched": len(suggested),
            "unmatched": width - len(suggested),
        }

    def spec_for(self, file_id: str, settings: dict[str, Any]) -> ImportSpec:
        """The job's spec: the request's settings and what the kept file is."""
        stored = self.files.stored(file_id)
        return ImportSpec.model_validate(
            {**settings, "file_id": file_id, "format": stored.format, "size": stored.size}
        )

    def start(
        self, database_id: str, spec: ImportSpec, context: CommandContext, job_id: str | None = None
    ) -> tuple[str, Any]:
        """Check the spec against the file and the database, then start the job."""
        self._mapped(database_id, spec)
        for i, source in enumerate(spec.subscriptions):
            self.catalog.resource(source.resource_id, f"subscriptions.{i}.resource_id")
        spec_json = spec.model_dump(mode="json")
        return self.jobs.start(jobs.JobKind.IMPORT, database_id, spec_json, context, job_id)

    def _mapped(self, database_id: str, spec: ImportSpec) -> MappedTable:
        database = self.catalog.database(database_id)
        with open_table(self.files.path(spec.file_id), spec.format) as table:
            first = next((r for r in table.rows() if r.error is None), None)
        header = first.cells if first is not None and spec.header else []
        return check_spec(spec, database, header)

    # --- the job's chunks -----------------------------------------------------------------------

    def run_chunk(self, job: Loaded[jobs.JobState], context: CommandContext) -> None:
        state = job.state
        spec = ImportSpec.model_validate(state.spec)
        mapped = self._mapped(state.database_id, spec)
        consumed = int(state.cursor or 0)
        skipped = (1 if spec.header else 0) + spec.skip_rows
        path = self.files.path(spec.file_id)
        taken, table = self._readers.take(
            spec.file_id, consumed, lambda: open_table(path, spec.format), self.chunk_rows
        )
        gauge = {"done": table.done, "total": table.total}
        unit = table.unit
        if not taken:
            self._readers.close(spec.file_id)
            self.jobs.complete(state.job_id, context)
            self.files.delete(spec.file_id)
            return
        pending, errors, empty = self._rows(taken, mapped, skipped)
        chunk = state.chunks + 1
        options = _options(spec, mapped)

        def record(results: list[RowResult]) -> list[Any]:
            refused = errors + [_row_error(pending[r.index], r, mapped) for r in results if r.error]
            counts = dict.fromkeys(_STATUSES, 0)
            for result in results:
                counts[result.status] += 1
            counts["error"] += len(errors)
            counts["empty"] = empty
            cells = {row.number: row.cells for row in taken}
            self.files.write_errors(state.job_id, chunk, _error_lines(refused, cells))
            command = jobs.RecordChunk(
                chunk=chunk,
                cursor=str(consumed + len(taken)),
                counts=counts,
                at=self.jobs.aggregates.clock.now(),
                errors=tuple(sorted(refused, key=lambda e: e.row)),
                progress={f"{unit}_done": gauge["done"], f"{unit}_total": gauge["total"]},
            )
            return [self.jobs.chunk_append(job, command, context)]

        self.profiles.import_rows(state.database_id, [p.row for p in pending], options, context, along=record)

    def _rows(
        self, taken: list[TableRow], mapped: MappedTable, skipped: int
    ) -> tuple[list[_Pending], list[jobs.RowError], int]:
        pending: list[_Pending] = []
        errors: list[jobs.RowError] = []
        empty = 0
        for row in taken:
            if row.number <= skipped:
                continue
            if row.error is not None:
                errors.append(jobs.RowError(row=row.number, reason=row.error))
                continue
            try:
                made = mapped.row(row.cells)
            except DomainError as error:
                errors.append(jobs.RowError(row=row.number, reason=error.reason))
                continue
            if made is None:
                empty += 1
            else:
                pending.append(_Pending(row.number, row.cells, made))
        return pending, errors, empty

    # --- the error report -----------------------------------------------------------------------

    def error_report(self, job_id: str) -> Iterator[bytes]:
        """The refused rows as CSV: row, column, field, reason, then the row's own cells."""
        self.jobs.load(job_id)
        return self.files.error_report(job_id)


def _options(spec: ImportSpec, mapped: MappedTable) -> ImportOptions:
    return ImportOptions(
        mode=spec.mode,
        match=spec.match,
        field_name=spec.field_name,
        ignore_empty=mapped.ignore_empty,
        resubscribe=spec.resubscribe,
        source=spec.source,
        cause=Cause.IMPORT,
    )


def _row_error(pending: _Pending, result: RowResult, mapped: MappedTable) -> jobs.RowError:
    error: DomainError = result.error  # type: ignore[assignment]
    return jobs.RowError(
        row=pending.number,
        column=mapped.column_of(error.path, pending.cells),
        path=error.path,
        reason=error.reason,
        status=_status(error),
    )


def _status(error: DomainError) -> int:
    return 404 if isinstance(error, NotFound) else 409 if isinstance(error, AlreadyExists) else 422


def _error_lines(errors: list[jobs.RowError], cells: dict[int, list[str]]) -> bytes:
    """The chunk's part of the error report (no header: the report adds it)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    for error in sorted(errors, key=lambda e: e.row):
        writer.writerow(
            [
                error.row,
                error.column or "",
                error.path,
                error.reason,
                *map(csv_text, cells.get(error.row, [])),
            ]
        )
    return out.getvalue().encode()
