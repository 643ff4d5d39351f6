"""Files to import: received streamed onto disk, read back row by row (CSV or XLSX), never whole in memory.

`ImportFiles` keeps each file under `<data dir>/imports/<file_id>`; a file is
written aside and renamed, so a reader never sees half of one, and a body
larger than the cap is refused while it streams in. `open_table` reads a file
as rows of text cells with a gauge of how far it has got (bytes for CSV, rows
of the sheet's declared size for XLSX), which a job reports as progress.

Reading decisions (the guide: files are UTF-8; Russian spreadsheets save CSV
in Windows-1251 with `;`):
- CSV text is UTF-8 (a byte order mark skipped) when its first 64 KiB decode
  as UTF-8, else Windows-1251. Bytes that are not UTF-8 further on become
  U+FFFD, and the row holding them is refused (`BAD_TEXT`) rather than
  imported with broken letters.
- The delimiter is whichever of `,` `;` and tab the first non-empty line holds
  most of (`,` when none), as for segment files.
- A cell larger than `MAX_CELL` characters (a runaway quote swallowing the
  file) makes that row an error and reading goes on after it.
- XLSX is the first sheet of the workbook, read by openpyxl in read-only mode
  (it streams the sheet's XML); numbers are written without a trailing `.0`,
  dates as ISO dates (times as ISO date-times). An old binary XLS is refused.
- A scheduled import's JSON (an array of objects, or one object per line) is
  turned into a CSV file whose header is every key met, in order
  (`json_to_csv`); nested values become JSON text, so the same mapping and the
  same reader serve every source.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from collections.abc import AsyncIterable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from herald.domain.errors import NotFound, ValidationFailed
from herald.infra.data_files import DataFolder

MAX_CELL = 65_536
BAD_TEXT = "\ufffd"
ERROR_REPORT_HEADER = "\ufeffrow,column,field,reason,cells\r\n".encode()
_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t"
_ZIP = b"PK\x03\x04"
_OLE = bytes.fromhex("d0cf11e0a1b11ae1")
_FILE_ID = re.compile(r"^[0-9a-z_-]{8,80}$")

Format = Literal["csv", "xlsx"]


@dataclass(frozen=True, slots=True)
class StoredFile:
    file_id: str
    format: Format
    size: int


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of a table: its number in the file (from 1) and its cells, or why it cannot be read."""

    number: int
    cells: list[str]
    error: str | None = None


class TooLarge(ValidationFailed):
    """The body is larger than the import file cap (HTTP 413)."""


class ImportFiles(DataFolder):
    """Import files under one directory."""

    DIRECTORY_NAME = "imports"

    async def receive(self, chunks: AsyncIterable[bytes], max_bytes: int) -> StoredFile:
        """Write a streamed body to a new file; refuse it past `max_bytes` (nothing is kept then)."""
        file_id, handle, part = self._new()
        try:
            with handle:
                size = 0
                async for chunk in chunks:
                    size = _write(handle, chunk, size, max_bytes)
            return self._keep(file_id, part, size)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def store(self, chunks: Iterable[bytes], max_bytes: int, file_id: str | None = None) -> StoredFile:
        """The synchronous `receive`, for fetched files; `file_id` names it (a run's own id)."""
        file_id, handle, part = self._new(file_id)
        try:
            with handle:
                size = 0
                for chunk in chunks:
                    size = _write(handle, chunk, size, max_bytes)
            return self._keep(file_id, part, size)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def path(self, file_id: str, path: str = "file_id") -> Path:
        """The file's place on disk; NotFound when there is none (any more)."""
        target = self._directory / file_id
        if not _FILE_ID.match(file_id) or not target.exists():
            raise NotFound(f"there is no import file {file_id!r}", path)
        return target

    def json_as_table(self, file_id: str) -> StoredFile:
        """Replace a kept JSON file with its CSV table (`json_to_csv`)."""
        source = self.path(file_id)
        part = source.with_suffix(".part")
        try:
            json_to_csv(source, part)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, source)
        return self.stored(file_id)

    def looks_like_json(self, file_id: str) -> bool:
        with self.path(file_id).open("rb") as handle:
            start = handle.read(_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
        return start[:1] in (b"[", b"{")

    def stored(self, file_id: str, path: str = "file_id") -> StoredFile:
        """What a kept file is: its format (by its first bytes) and size."""
        target = self.path(file_id, path)
        with target.open("rb") as handle:
            start = handle.read(8)
        return StoredFile(file_id, "xlsx" if start.startswith(_ZIP) else "csv", target.stat().st_size)

    def delete(self, file_id: str) -> None:
        if _FILE_ID.match(file_id):
            (self._directory / file_id).unlink(missing_ok=True)

    def write_errors(self, job_id: str, chunk: int, lines: bytes) -> None:
        """A chunk's part of a job's error report, replacing what a previous try of it wrote."""
        folder = self._directory / f"{job_id}.errors"
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"{chunk:09d}.part"
        part.write_bytes(lines)
        os.replace(part, folder / f"{chunk:09d}.csv")

    def error_report(self, job_id: str) -> Iterator[bytes]:
        """The job's error report: a header, then every chunk's part in chunk order."""
        yield ERROR_REPORT_HEADER
        folder = self._directory / f"{job_id}.errors"
        if _FILE_ID.match(job_id) and folder.is_dir():
            for part in sorted(folder.glob("*.csv")):
                yield part.read_bytes()

    def delete_errors(self, job_id: str) -> None:
        folder = self._directory / f"{job_id}.errors"
        if _FILE_ID.match(job_id) and folder.is_dir():
            for part in folder.iterdir():
                part.unlink()
            folder.rmdir()

    def _new(self, file_id: str | None = None) -> tuple[str, IO[bytes], Path]:
        self._directory.mkdir(parents=True, exist_ok=True)
        file_id = file_id or secrets.token_hex(16)
        part = self._directory / f"{file_id}.part"
        return file_id, part.open("wb"), part

    def _keep(self, file_id: str, part: Path, size: int) -> StoredFile:
        with part.open("rb") as handle:
            start = handle.read(8)
        if start.startswith(_OLE):
            raise ValidationFailed("old .xls files are not read: save the sheet as .xlsx or .csv", "body")
        os.replace(part, self._directory / file_id)
        return StoredFile(file_id, "xlsx" if start.startswith(_ZIP) else "csv", size)


def _write(handle: IO[bytes], chunk: bytes, size: int, max_bytes: int) -> int:
    size += len(chunk)
    if size > max_bytes:
        raise TooLarge(f"an import file is at most {max_bytes} bytes", "body")
    handle.write(chunk)
    return size


# --- reading ---------------------------------------------------------------------------------------


class Table:
    """A file's rows, with how far reading has got (`done` of `total`, in the gauge's `unit`)."""

    unit: str = "bytes"

    def rows(self) -> Iterator[TableRow]:
        raise NotImplementedError

    @property
    def done(self) -> int:
        raise NotImplementedError

    @property
    def total(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_table(path: Path, format: Format) -> Table:
    return _XlsxTable(path) if format == "xlsx" else _CsvTable(path)


class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return n or 0

    def close(self) -> None:
        self._inner.close()
        super().close()


class _CsvTable(Table):
    def __init__(self, path: Path) -> None:
        self._size = path.stat().st_size
        with path.open("rb") as handle:
            sniff = handle.read(_SNIFF_BYTES)
        encoding = _encoding(sniff)
        self._delimiter = _delimiter(sniff.decode(encoding, errors="replace"))
        self._raw = _Counting(path.open("rb"))
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._raw), encoding=encoding, errors="replace", newline=""
        )

    def rows(self) -> Iterator[TableRow]:
        reader = csv.reader(self._text, delimiter=self._delimiter, strict=True)
        number = 0  # records, not lines: a quoted cell may hold line breaks
        while True:
            number += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield TableRow(number, [], f"the row cannot be read as CSV ({error})")
                continue
            yield _checked(number, cells)

    @property
    def done(self) -> int:
        return min(self._raw.count, self._size)

    @property
    def total(self) -> int:
        return self._size

    def close(self) -> None:
        self._text.close()


def _checked(number: int, cells: list[str]) -> TableRow:
    if any(BAD_TEXT in cell for cell in cells):
        return TableRow(number, [], "the row holds bytes that are not UTF-8 text")
    if any(len(cell) > MAX_CELL for cell in cells):
        return TableRow(number, [], f"a cell is longer than {MAX_CELL} characters (an unclosed quote?)")
    return TableRow(number, cells)


def _encoding(sniff: bytes) -> str:
    try:
        sniff.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(sniff) - 4:  # not just a character cut at the sniff's end
            return "cp1251"
    return "utf-8-sig"


def _delimiter(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: first.count(delimiter) for delimiter in _DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])  # ties: the earlier in _DELIMITERS
    return best if counts[best] else ","


class _XlsxTable(Table):
    unit = "rows"

    def __init__(self, path: Path) -> None:
        from openpyxl import load_workbook  # type: ignore[import-untyped]  # deferred: slow to import

        self._handle = path.open("rb")  # a handle, not the path: openpyxl judges a path by its suffix
        try:
            self._book = load_workbook(self._handle, read_only=True, data_only=True)
            self._sheet = self._book.worksheets[0]
        except Exception as error:  # openpyxl raises many kinds for a file that is not a workbook
            self._handle.close()
            raise ValidationFailed(f"the file is not an .xlsx workbook ({error})", "file_id") from None
        self._done = 0
        self._total = self._sheet.max_row or 0

    def rows(self) -> Iterator[TableRow]:
        for number, values in enumerate(self._sheet.iter_rows(values_only=True), start=1):
            self._done = number
            yield _checked(number, _trimmed([_xlsx_cell(v) for v in values]))

    @property
    def done(self) -> int:
        return self._done

    @property
    def total(self) -> int:
        return max(self._total, self._done)

    def close(self) -> None:
        with suppress(Exception):
            self._book.close()
        self._handle.close()


def _trimmed(cells: list[str]) -> list[str]:
    """Without the empty cells a sheet pads its rows with on the right."""
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _xlsx_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


# --- JSON sources ------------------------------------------------------------------------------------


def json_to_csv(source: Path, target: Path) -> None:
    """Write a JSON array of objects, or JSON lines, as a CSV table with a header of every key met."""
    keys: dict[str, None] = {}
    for record in _json_records(source):
        keys.update(dict.fromkeys(record))
    header = list(keys)
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for record in _json_records(source):
            writer.writerow([_json_cell(record.get(key)) for key in header])


def _json_records(source: Path) -> Iterator[dict[str, Any]]:
    with source.open("rb") as handle:
        start = handle.read(_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
        handle.seek(0)
        if start.startswith(b"["):  # an array is read whole (a fetched file is capped in size)
            try:
                document = orjson.loads(handle.read().removeprefix(b"\xef\xbb\xbf"))
            except orjson.JSONDecodeError as error:
                raise ValidationFailed(f"the JSON is not valid ({error})", "url") from None
            yield from (_record(item, i + 1) for i, item in enumerate(document))
            return
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield _record(orjson.loads(line), number)
                except orjson.JSONDecodeError as error:
                    raise ValidationFailed(f"line {number} is not JSON ({error})", "url") from None


def _record(item: Any, number: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationFailed(f"record {number} is not a JSON object", "url")
    return item


def _json_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()
