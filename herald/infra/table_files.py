"""Uploaded tables (CSV, TXT or XLSX) read as rows of text cells.

CSV decisions (shared with segment files): text is UTF-8 (a byte order mark
is skipped), or Windows-1251 when it is not UTF-8 (spreadsheets in Russian
save CSV in it); the delimiter is whichever of `,` `;` and tab the first
non-empty line holds most of, `,` when it holds none (a file of one column,
such as a TXT list of codes). XLSX is read with openpyxl, the first sheet,
values as text (numbers without a trailing `.0`). An old binary XLS is
refused with a request to save it as XLSX or CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from herald.domain.errors import ValidationFailed

_DELIMITERS = ",;\t"
_SNIFF_BYTES = 64 * 1024
_ZIP = b"PK\x03\x04"
_OLE = bytes.fromhex("d0cf11e0a1b11ae1")


def decoded_text(content: bytes) -> str:
    """A text file's content: UTF-8 (BOM skipped), else Windows-1251."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1251", errors="replace")


def csv_delimiter(text: str) -> str:
    first = next((line for line in text[:_SNIFF_BYTES].splitlines() if line.strip()), "")
    counts = {delimiter: first.count(delimiter) for delimiter in _DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])  # ties: the earlier in _DELIMITERS
    return best if counts[best] else ","


def csv_rows(text: str) -> Iterator[list[str]]:
    return csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(text))


def read_table(content: bytes, path: str = "body") -> list[list[str]]:
    """Every row of an uploaded CSV, TXT or XLSX file, cells as text."""
    if content.startswith(_OLE):
        raise ValidationFailed("old .xls files are not read: save the sheet as .xlsx or .csv", path)
    if content.startswith(_ZIP):
        return _xlsx_rows(content, path)
    return list(csv_rows(decoded_text(content)))


def _xlsx_rows(content: bytes, path: str) -> list[list[str]]:
    from openpyxl import load_workbook  # type: ignore[import-untyped]  # deferred: slow to import

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a file that is not a workbook
        raise ValidationFailed(f"the file is not an .xlsx workbook ({error})", path) from None
    try:
        sheet = book.worksheets[0]
        return [[_cell(value) for value in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
