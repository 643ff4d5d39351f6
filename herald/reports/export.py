"""A report's table as a file: CSV (stdlib `csv`) or XLSX (openpyxl), as the UI's "Выгрузить отчёт".

The export is the table (columns and rows); the chart's series stays in the JSON answer. Values keep
their kind: numbers stay numbers, dates are dates in XLSX and ISO text in CSV, NULL is an empty cell.
Text from outside (bounce responses, link URLs) is never read as a formula: XLSX cells are typed as
text, and CSV text starting with = + - @ gets a leading apostrophe (OWASP's CSV-injection advice).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

from herald.reports.base import ReportResult

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(result: ReportResult) -> bytes:
    """The table as CSV: a header row, then one line per row; UTF-8 with a BOM so Excel reads Cyrillic."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([csv_text(column) for column in result.columns])
    for row in result.rows:
        writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue().encode("utf-8-sig")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)  # every digit: the file gives back the number the JSON gives
    if isinstance(value, int):
        return str(value)
    return csv_text(str(value))


def csv_text(text: str) -> str:
    """Text as a CSV cell no spreadsheet reads as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def to_xlsx(result: ReportResult, title: str = "report") -> bytes:
    """The table as one XLSX sheet named `title`: a header row, then the rows."""
    # Deferred: only exports need openpyxl, and it takes a while to import.
    from openpyxl import Workbook  # type: ignore[import-untyped]
    from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])  # Excel's limit on sheet names

    def cell(value: Any) -> Any:
        if isinstance(value, datetime):
            value = value.replace(tzinfo=None)  # Excel has no time zones; report times are UTC
        made = WriteOnlyCell(sheet, value=None if value is None else value)
        if isinstance(value, str):
            made.data_type = "s"  # text, never a formula
        return made

    sheet.append([cell(column) for column in result.columns])
    for row in result.rows:
        sheet.append([cell(value) for value in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
