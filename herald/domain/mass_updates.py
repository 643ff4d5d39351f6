"""Mass update ("Массовое обновление профилей"): field changes over a database or a segment, as a job.

A mass update names its source (a database, or a segment within one
database: a segment spanning several is updated per database, as the guide
says), the field operations (set a value, or delete it), and the options
"Включая небезопасные статусы" (by default only profiles whose global status
is not unsafe are touched) and "Полностью и глобально отписать выбранных"
(set the global status to unsubscribed). `commands_for` is what one profile
gets; the job applies it chunk by chunk, every chunk's profile events
appended with the chunk's record, their ids derived from the job, so the job
is idempotent by its id.

Decisions where the guide is silent: values are checked against the field's
type when the job starts (a bad value refuses the whole job, naming
`fields.N.value`); "Лимит" caps how many profiles of the source are taken, in
profile id order; subscription and promo code operations are not part of it yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald.domain.databases import DatabaseState
from herald.domain.errors import ValidationFailed
from herald.domain.fields import coerce_value
from herald.domain.profiles import ChangeGlobalStatus, ProfileState, UpdateProfile
from herald.domain.statuses import Status
from herald.domain.subscriptions import Cause


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Value):
    """Which profiles: a database's, or a segment's members in the job's database."""

    kind: Literal["database", "segment"] = "database"
    id: str


class FieldOperation(_Value):
    field: str
    op: Literal["set", "delete"] = "set"
    value: JsonValue = None


class MassUpdateSpec(_Value):
    source: Source
    fields: tuple[FieldOperation, ...] = ()
    include_unsafe: bool = False
    unsubscribe_globally: bool = False
    limit: int | None = Field(None, ge=1)


def check_spec(spec: MassUpdateSpec, database: DatabaseState) -> MassUpdateSpec:
    """The spec with canonical field names and stored values; refuses a field or value that is wrong."""
    if not spec.fields and not spec.unsubscribe_globally:
        raise ValidationFailed("a mass update changes a field or unsubscribes", "fields")
    checked: list[FieldOperation] = []
    seen: set[str] = set()
    for i, operation in enumerate(spec.fields):
        name = database.canonical_name(operation.field)
        if name is None:
            raise ValidationFailed(
                f"database {database.database_id} has no field {operation.field!r}", f"fields.{i}.field"
            )
        if name in seen:
            raise ValidationFailed(f"field {name!r} is changed twice", f"fields.{i}.field")
        seen.add(name)
        value = None
        if operation.op == "set":
            definition = database.field(name)
            assert definition is not None
            value = coerce_value(definition, operation.value, f"fields.{i}.value")
            if value is None:
                raise ValidationFailed("set needs a value (use delete to clear a field)", f"fields.{i}.value")
        checked.append(FieldOperation(field=name, op=operation.op, value=value))
    return spec.model_copy(update={"fields": tuple(checked)})


def commands_for(
    spec: MassUpdateSpec, database: DatabaseState, state: ProfileState, at: datetime
) -> Sequence[Any]:
    """What the mass update does to one profile (nothing to one whose status it must not touch)."""
    if state.status.is_unsafe and not spec.include_unsafe:
        return []
    commands: list[Any] = []
    if spec.fields:
        values = {operation.field: operation.value for operation in spec.fields}
        commands.append(UpdateProfile(state.profile_id, database, values, at, source="mass_update"))
    if spec.unsubscribe_globally:
        commands.append(ChangeGlobalStatus(state.profile_id, Status.UNSUBSCRIBED, at, Cause.MASS_UPDATE))
    return commands
