"""What a file import does with a table: columns mapped to fields, subscription sources, mode and match.

The guide's file import form: each column is mapped to a database field or
skipped ("Пропустить"), with "Игнорировать пустые" per column; "Пропустить
строк" skips leading rows; "Источник подписки" takes a column's contact into
a subscription to a resource on a channel with a status; the mode and match
key are the batch import's. A column is named by its number (from 1) or, in
a file with a header row, by its header text (case-insensitively).

`check_spec` resolves the names against the header and the database and
refuses a bad mapping with the path of its mistake; `MappedTable.row` turns
one row of cells into the batch import's row (field values and
`subscriptions`), and `MappedTable.column_of` names the column an import
error's path points at, for the error report.

Decisions where the guide is silent:
- A header row (`header`, default true) names the columns and is not imported;
  `skip_rows` skips further rows after it.
- A column mapped to no known field is refused (a typo would otherwise drop
  the column silently); so is one field mapped from two columns.
- An empty contact cell adds no subscription; a row whose cells are all empty
  is skipped (spreadsheets end in such rows) and counted as `empty`. A row
  shorter than the mapping leaves the fields of its missing cells as they are
  (a cut-off line must not clear data), where a present empty cell clears;
  a row with more filled cells than the header is refused (a stray delimiter
  would shift its values into the wrong fields).
- Auto-matching ("Автоподбор колонок") maps a header to the field whose name
  or alias it is, case-insensitively (`Email`, `FirstName`, `crm_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.databases import DatabaseState
from herald.domain.errors import ValidationFailed
from herald.domain.matching import MatchMode
from herald.domain.profiles import ImportMode
from herald.domain.statuses import Status

TableFormat = Literal["csv", "xlsx"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnMapping(_Value):
    column: int | str = Field(description="the column's number (from 1) or its header text")
    field: str = Field(description="the database field (canonical name or alias) it fills")
    ignore_empty: bool = Field(False, description="an empty cell leaves the field as it is")


class SubscriptionSource(_Value):
    column: int | str = Field(description="the column holding the contact (email, phone or token)")
    resource_id: str
    channel: str
    status: Status | None = Field(None, description="default subscribed; unconfirmed for double opt-in")
    provider: str | None = Field(None, description="the push provider, for push tokens")


class TableMapping(_Value):
    """How a table's columns become profiles: what a file import and a scheduled import share."""

    header: bool = True
    skip_rows: int = Field(0, ge=0)
    columns: tuple[ColumnMapping, ...] = Field(min_length=1)
    subscriptions: tuple[SubscriptionSource, ...] = ()
    mode: ImportMode = ImportMode.ADD_AND_UPDATE
    match: MatchMode = MatchMode.EMAIL
    field_name: str | None = None
    resubscribe: bool = False


class ImportSpec(TableMapping):
    """A file import's settings (the job's spec, kept in `JobStarted`)."""

    file_id: str
    format: TableFormat
    file_name: str = ""
    size: int = 0
    source: str = "file"


@dataclass(frozen=True, slots=True)
class _Column:
    index: int  # from 0
    name: str  # what the report calls it: its header, or its number


@dataclass(frozen=True, slots=True)
class MappedTable:
    """A checked spec: which cell fills which field, which cell subscribes where."""

    fields: tuple[tuple[_Column, str], ...]
    subscriptions: tuple[tuple[_Column, SubscriptionSource], ...]
    ignore_empty: frozenset[str]
    width: int | None = None  # the header's cells, when the file has a header

    def row(self, cells: Sequence[str]) -> dict[str, Any] | None:
        """The batch import row of `cells`, or None when every cell is empty; refuses a row wider
        than the header (a stray delimiter would shift its values into the wrong fields)."""
        if not any(cell.strip() for cell in cells):
            return None
        if self.width is not None and any(cell.strip() for cell in cells[self.width :]):
            raise ValidationFailed(f"the row has {len(cells)} cells, the header {self.width}", "")
        # A row shorter than the mapping has no cell for some fields: those are left as they are,
        # where an empty cell (present, blank) clears its field unless the column ignores empties.
        row: dict[str, Any] = {
            name: cells[column.index] for column, name in self.fields if column.index < len(cells)
        }
        subscriptions = [
            _subscription(source, contact)
            for column, source in self.subscriptions
            if (contact := _cell(cells, column).strip())
        ]
        if subscriptions:
            row["subscriptions"] = subscriptions
        return row

    def column_of(self, path: str, cells: Sequence[str]) -> str | None:
        """The column an error at `path` (relative to the row of `cells`) came from, if one did."""
        head, _, rest = path.partition(".")
        if head == "subscriptions":
            given = [column for column, _ in self.subscriptions if _cell(cells, column).strip()]
            index = rest.partition(".")[0]
            return given[int(index)].name if index.isdigit() and int(index) < len(given) else None
        for column, name in self.fields:
            if name.casefold() == head.casefold():
                return column.name
        return None


def _cell(cells: Sequence[str], column: _Column) -> str:
    return cells[column.index] if column.index < len(cells) else ""


def _subscription(source: SubscriptionSource, contact: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource_id": source.resource_id,
        "channel": source.channel,
        "contact": contact,
    }
    if source.status is not None:
        entry["status"] = str(source.status)
    if source.provider is not None:
        entry["provider"] = source.provider
    return entry


def check_spec(spec: ImportSpec, database: DatabaseState, header: Sequence[str]) -> MappedTable:
    """The spec resolved against the file's header and the database; refuses a bad mapping."""
    if spec.match is MatchMode.CUSTOM and not spec.field_name:
        raise ValidationFailed("matching by a custom field needs its field_name", "field_name")
    fields: list[tuple[_Column, str]] = []
    seen: dict[str, int] = {}
    for i, mapping in enumerate(spec.columns):
        column = _resolve(mapping.column, spec.header, header, f"columns.{i}.column")
        name = database.canonical_name(mapping.field)
        if name is None:
            raise ValidationFailed(
                f"database {database.database_id} has no field {mapping.field!r}", f"columns.{i}.field"
            )
        if name in seen:
            raise ValidationFailed(f"field {name!r} is mapped from two columns", f"columns.{i}.field")
        seen[name] = i
        fields.append((column, name))
    subscriptions = tuple(
        (_resolve(s.column, spec.header, header, f"subscriptions.{i}.column"), s)
        for i, s in enumerate(spec.subscriptions)
    )
    ignored = frozenset(name for (_, name), m in zip(fields, spec.columns, strict=True) if m.ignore_empty)
    return MappedTable(tuple(fields), subscriptions, ignored, len(header) if spec.header else None)


def _resolve(column: int | str, has_header: bool, header: Sequence[str], path: str) -> _Column:
    if isinstance(column, int):
        if column < 1:
            raise ValidationFailed("columns are numbered from 1", path)
        index = column - 1
        named = header[index].strip() if has_header and index < len(header) else ""
        return _Column(index, named or str(column))
    if not has_header:
        raise ValidationFailed("without a header row, name columns by number", path)
    wanted = column.strip().casefold()
    for index, name in enumerate(header):
        if name.strip().casefold() == wanted:
            return _Column(index, name.strip())
    raise ValidationFailed(f"the header has no column {column!r}", path)


def suggest_columns(header: Sequence[str], database: DatabaseState) -> list[ColumnMapping]:
    """The guide's "Автоподбор колонок": each header that names a field, mapped to it."""
    suggested: list[ColumnMapping] = []
    taken: set[str] = set()
    for number, name in enumerate(header, start=1):
        field = database.canonical_name(name.strip()) if name.strip() else None
        if field is not None and field not in taken:
            taken.add(field)
            suggested.append(ColumnMapping(column=number, field=field))
    return suggested
