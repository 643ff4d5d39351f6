"""Profile export ("Выгрузка"): a database's or a segment's profiles as CSV, XLSX or JSON lines.

An export names its source (as a mass update does), the fields to write
(default: every field of the database, standard and custom), whether and
which subscriptions to include, and the format. The guide: subscriptions are
exported "only in encrypted form", all of them by default, or those of chosen
resources.

Decisions where the guide is silent:
- A subscription's contact is written as the SHA-256 of its normalised form
  (hex): a one-way form lets the receiver match addresses it already holds
  without the file disclosing any; its resource, channel, status and priority
  are written as they are. In CSV and XLSX the subscriptions are one JSON cell.
- Every row starts with `profile_id` and ends with `global_status`.
- Values are written in their stored form; lists (phones, tags) as JSON text in
  CSV and XLSX, as arrays in JSON lines.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from herald.domain.databases import DatabaseState
from herald.domain.errors import ValidationFailed
from herald.domain.mass_updates import Source

ExportFormat = Literal["csv", "xlsx", "jsonl"]


class ExportSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Source
    fields: tuple[str, ...] | None = None
    subscriptions: bool = True
    resource_ids: tuple[str, ...] | None = None  # only these resources' subscriptions; None: all
    format: ExportFormat = "csv"


def check_export(spec: ExportSpec, database: DatabaseState) -> ExportSpec:
    """The spec with the field list resolved to canonical names (every field when none is given)."""
    if spec.fields is None:
        return spec.model_copy(update={"fields": tuple(f.name for f in database.fields())})
    names: list[str] = []
    for i, given in enumerate(spec.fields):
        name = database.canonical_name(given)
        if name is None:
            raise ValidationFailed(f"database {database.database_id} has no field {given!r}", f"fields.{i}")
        if name not in names:
            names.append(name)
    return spec.model_copy(update={"fields": tuple(names)})


def columns(spec: ExportSpec) -> list[str]:
    """The file's header."""
    return [
        "profile_id",
        *(spec.fields or ()),
        "global_status",
        *(["subscriptions"] if spec.subscriptions else []),
    ]
