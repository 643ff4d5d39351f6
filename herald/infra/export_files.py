"""Export files: written part by part as an export job's chunks run, assembled once at its end.

Each chunk writes its rows to its own part (`<data dir>/exports/<job>.parts/<chunk>`),
replacing what an earlier try of that chunk wrote, so a chunk done again after a crash
never doubles rows. At the end the parts become one file: CSV and JSON lines by
concatenation under the header, XLSX by streaming the parts' rows into openpyxl's
write-only workbook (cells typed as text, never formulas). Parts are then removed.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from herald.domain.errors import NotFound
from herald.infra.data_files import DataFolder
from herald.reports.export import FORMULA_START, csv_text

_JOB_ID = re.compile(r"^[0-9a-z_-]{8,80}$")
SUFFIXES = {"csv": "csv", "xlsx": "xlsx", "jsonl": "jsonl"}


def csv_line(cells: Sequence[Any]) -> bytes:
    """One CSV line, text that spreadsheets would read as a formula defused."""
    out = io.StringIO(newline="")
    csv.writer(out).writerow([csv_text(str(cell)) if cell != "" else "" for cell in cells])
    return out.getvalue().encode()


class ExportFiles(DataFolder):
    DIRECTORY_NAME = "exports"

    def write_part(self, job_id: str, chunk: int, content: bytes) -> None:
        folder = self._parts(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"{chunk:09d}.part"
        part.write_bytes(content)
        os.replace(part, folder / f"{chunk:09d}.rows")

    def assemble(self, job_id: str, format: str, header: Sequence[str]) -> Path:
        """The export's one file from its parts (header first); the parts are removed."""
        target = self._directory / f"{job_id}.{SUFFIXES[format]}"
        partial = target.with_suffix(".part")
        self._directory.mkdir(parents=True, exist_ok=True)
        if format == "xlsx":
            _write_xlsx(partial, header, self._csv_rows(job_id))
        else:
            with partial.open("wb") as out:
                if format == "csv":
                    out.write(b"\xef\xbb\xbf" + csv_line(header))  # a BOM: Excel then reads UTF-8
                for part in self._part_files(job_id):
                    with part.open("rb") as source:
                        shutil.copyfileobj(source, out)
        os.replace(partial, target)
        shutil.rmtree(self._parts(job_id), ignore_errors=True)
        return target

    def path(self, job_id: str, format: str) -> Path:
        target = self._directory / f"{job_id}.{SUFFIXES.get(format, 'csv')}"
        if not _JOB_ID.match(job_id) or not target.exists():
            raise NotFound(f"job {job_id!r} has no export file", "job_id")
        return target

    def delete(self, job_id: str) -> None:
        if _JOB_ID.match(job_id):
            shutil.rmtree(self._parts(job_id), ignore_errors=True)
            for suffix in SUFFIXES.values():
                (self._directory / f"{job_id}.{suffix}").unlink(missing_ok=True)

    def _parts(self, job_id: str) -> Path:
        return self._directory / f"{job_id}.parts"

    def _part_files(self, job_id: str) -> list[Path]:
        folder = self._parts(job_id)
        return sorted(folder.glob("*.rows")) if folder.is_dir() else []

    def _csv_rows(self, job_id: str) -> Iterator[list[str]]:
        for part in self._part_files(job_id):
            with part.open(newline="", encoding="utf-8") as source:
                yield from csv.reader(source)


def _write_xlsx(target: Path, header: Sequence[str], rows: Iterator[list[str]]) -> None:
    from openpyxl import Workbook  # type: ignore[import-untyped]  # deferred: slow to import
    from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]

    book = Workbook(write_only=True)
    sheet = book.create_sheet("profiles")

    def cell(value: str) -> Any:
        # the CSV parts defused formulas with a leading apostrophe; a text cell needs none
        defused = value[:1] == "'" and value[1:2] in FORMULA_START
        made = WriteOnlyCell(sheet, value=value[1:] if defused else value)
        made.data_type = "s"  # text, never a formula
        return made

    sheet.append([cell(name) for name in header])
    for row in rows:
        sheet.append([cell(value) for value in row])
    book.save(target)
