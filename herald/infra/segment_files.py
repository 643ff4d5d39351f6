"""Uploaded CSV files for segments' external rules: stored by content, read back one column at a time.

An `external` rule with a `csv` source (`domain/segments.CsvSource`) names an uploaded file by id and a
column (from 1). `SegmentFiles.store` keeps a file under the data directory named by the SHA-256 of its
bytes, so the id is the content: uploading the same file twice gives one file and one id, and a stored
file never changes under a segment that uses it. `column` reads one column's values.

Decisions where the guide is silent:
- Text and delimiter as `infra/table_files.py` reads them (UTF-8 or Windows-1251; `,` `;` or tab).
  Python's `csv.Sniffer` was not used: rows shorter than the header (a common export) mislead it.
- Values are stripped; empty cells and rows too short to have the column are skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from herald.domain.errors import NotFound, ValidationFailed
from herald.infra.data_files import DataFolder
from herald.infra.table_files import csv_rows, decoded_text

_FILE_ID = re.compile(r"^[0-9a-f]{64}$")


class SegmentFiles(DataFolder):
    """Uploaded CSV files under one directory (`<data dir>/segment-files`), named by their SHA-256."""

    DIRECTORY_NAME = "segment-files"

    def store(self, content: bytes) -> str:
        """Keep `content` and return its file id (its SHA-256, hex); storing it again changes nothing."""
        file_id = hashlib.sha256(content).hexdigest()
        target = self._directory / f"{file_id}.csv"
        if target.exists():
            return file_id
        self._directory.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a reader never sees half a file under its id.
        handle, temporary = tempfile.mkstemp(dir=self._directory, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return file_id

    def exists(self, file_id: str) -> bool:
        return _FILE_ID.match(file_id) is not None and self._path(file_id).exists()

    def column(self, file_id: str, column: int, header: bool = True, path: str = "source") -> list[str]:
        """The values of column `column` (from 1), without the first row when `header`; NotFound if none."""
        if column < 1:
            raise ValidationFailed("columns are numbered from 1", f"{path}.column")
        if not self.exists(file_id):
            raise NotFound(f"there is no uploaded file {file_id!r}", f"{path}.file_id")
        rows = csv_rows(decoded_text(self._path(file_id).read_bytes()))
        if header:
            next(rows, None)
        values = (row[column - 1].strip() for row in rows if len(row) >= column)
        return [value for value in values if value]

    def _path(self, file_id: str) -> Path:
        return self._directory / f"{file_id}.csv"
