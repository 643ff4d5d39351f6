"""The loyalty program aggregate (stream `loyalty-<id>`): a promo-code program's settings and status.

A loyalty program (guide "Программы лояльности"; the only kind is promo codes)
has a name and description, a template short name (`shortcode`: the macro
`{loyalty.<shortcode>.promocode}` and `loyalty_shortcode` in the external
generator's request), a validity period, a status (active or stopped), how
its codes are made (a symbol-class pattern, `promo_patterns.py`, or an
external service), the "Настройки промокодов" flags (scenarios / campaigns may
create codes when short, one code for many profiles), the most codes it may
hold, the codes' lifetime, and additional fields sent to the generator and
kept in the codes.

The codes themselves, and who holds which, live in the program's pool
(`promo_pool.py`).

Rules from the guide: the period limits creating and sending codes in
campaigns and scenarios, not the validity of codes already sent; a code's
lifetime may outlast the period; the generator's "Max batch" is 1–999,999.

Decisions where the guide is silent:
- A program is created active unless asked otherwise; a stopped program keeps
  its codes (they can be generated, imported, viewed and activated) but gives
  none out.
- The short name is 1–64 letters, digits, `_` or `-` (what the template
  language reads after `loyalty.`), unique among programs (the service claims
  it), and exact: `{loyalty.VIP.promocode}` is not `vip`.
- The period is two optional instants (open-ended either side); giving out a
  code at instant t needs `valid_from <= t < valid_to`.
- Lifetime is whole minutes (the guide's д./ч./м.); none means "forever".
- Additional fields: up to 50, names unique (case-blind), each typed, with a
  default that must fit the type.
- A deleted program gives out nothing and refuses every command but a repeated
  delete; its stream (and short name claim) stay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry
from herald.domain.promo_patterns import parse_pattern

MAX_BATCH = 999_999
DEFAULT_BATCH = 1000
MAX_EXTRA_FIELDS = 50
MAX_NAME = 255
SHORTCODE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
FieldKind = Literal["string", "int", "float", "bool", "date"]


def loyalty_stream(program_id: str) -> str:
    """The stream of one loyalty program's settings and status."""
    return f"loyalty-{program_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PatternGenerator(_Model):
    """Codes drawn from a symbol-class pattern (`promo_patterns.py`)."""

    kind: Literal["pattern"] = "pattern"
    pattern: str = Field(min_length=1, max_length=600)


class ExternalGenerator(_Model):
    """Codes asked of an external service: `POST url` with the guide's JSON, `max_batch` at a time."""

    kind: Literal["external"] = "external"
    request_type: Literal["http_json"] = "http_json"
    url: str = Field(min_length=1, max_length=2000)
    max_batch: int = Field(DEFAULT_BATCH, ge=1, le=MAX_BATCH)


Generator = Annotated[PatternGenerator | ExternalGenerator, Field(discriminator="kind")]


class ExtraField(_Model):
    """An additional field ("Дополнительные поля"): sent to the generator, kept in codes if asked."""

    name: str = Field(min_length=1, max_length=64)
    type: FieldKind = "string"
    default: str | int | float | bool | None = None


class Period(_Model):
    """When the program gives codes out: from `valid_from` (inclusive) to `valid_to` (exclusive)."""

    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def contains(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_to is None or at < self.valid_to
        )


class ProgramSettings(_Model):
    """Everything a user edits on a program."""

    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str = Field("", max_length=5000)
    shortcode: str
    period: Period = Period()
    generator: Generator | None = Field(None, description="None: codes are only imported")
    scenario_may_create: bool = False
    campaign_may_create: bool = False
    universal: bool = Field(False, description="one code may be given to many profiles")
    max_codes: int | None = Field(None, ge=1)
    code_ttl_minutes: int | None = Field(None, ge=1, description="None: codes never expire")
    fields: tuple[ExtraField, ...] = ()
    save_fields: bool = Field(False, description="keep the fields' values in each generated code")
    low_stock_threshold: int = Field(100, ge=0, description="free codes below which the pool reports")


# --- events ------------------------------------------------------------------------------------


@registry.register("LoyaltyProgramCreated")
class LoyaltyProgramCreated(Event):
    program_id: str
    settings: ProgramSettings
    active: bool
    at: datetime


@registry.register("LoyaltyProgramChanged")
class LoyaltyProgramChanged(Event):
    program_id: str
    settings: ProgramSettings
    at: datetime


@registry.register("LoyaltyProgramActivated")
class LoyaltyProgramActivated(Event):
    program_id: str
    at: datetime


@registry.register("LoyaltyProgramStopped")
class LoyaltyProgramStopped(Event):
    program_id: str
    at: datetime


@registry.register("LoyaltyProgramDeleted")
class LoyaltyProgramDeleted(Event):
    program_id: str
    at: datetime


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgramState:
    program_id: str = ""
    settings: ProgramSettings | None = None
    active: bool = False
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.settings is not None and not self.deleted

    def refusal(self, at: datetime) -> str | None:
        """Why the program gives no code out at `at` (stopped, outside its period), or None."""
        if self.settings is None or self.deleted:
            return f"there is no loyalty program {self.program_id!r}"
        name = self.settings.name
        if not self.active:
            return f"loyalty program {name!r} is stopped"
        if not self.settings.period.contains(at):
            return f"loyalty program {name!r} gives no codes out at {at.isoformat()} (outside its period)"
        return None


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateProgram:
    program_id: str
    settings: ProgramSettings
    at: datetime
    active: bool = True


@dataclass(frozen=True, slots=True)
class ChangeProgram:
    program_id: str
    settings: ProgramSettings
    at: datetime


@dataclass(frozen=True, slots=True)
class ActivateProgram:
    program_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class StopProgram:
    program_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteProgram:
    program_id: str
    at: datetime


ProgramCommand = CreateProgram | ChangeProgram | ActivateProgram | StopProgram | DeleteProgram


def decide(command: ProgramCommand, state: ProgramState) -> list[Event]:
    """The events `command` causes on the program, or a DomainError."""
    if isinstance(command, CreateProgram):
        if state.settings is not None:
            raise RuleViolated(f"loyalty program {command.program_id!r} exists already", "program_id")
        settings = check_settings(command.settings)
        return [
            LoyaltyProgramCreated(
                program_id=command.program_id, settings=settings, active=command.active, at=command.at
            )
        ]
    if isinstance(command, DeleteProgram) and state.deleted:
        return []
    if not state.exists:
        raise NotFound(f"no loyalty program {command.program_id!r}", "program_id")
    ids = {"program_id": command.program_id, "at": command.at}
    match command:
        case ChangeProgram():
            settings = check_settings(command.settings)
            return [] if settings == state.settings else [LoyaltyProgramChanged(**ids, settings=settings)]
        case ActivateProgram():
            return [] if state.active else [LoyaltyProgramActivated(**ids)]
        case StopProgram():
            return [LoyaltyProgramStopped(**ids)] if state.active else []
        case DeleteProgram():
            return [LoyaltyProgramDeleted(**ids)]
    raise AssertionError(command)


def evolve(state: ProgramState, event: Event) -> ProgramState:
    match event:
        case LoyaltyProgramCreated():
            return ProgramState(
                event.program_id, event.settings, event.active, created_at=event.at, updated_at=event.at
            )
        case LoyaltyProgramChanged():
            return replace(state, settings=event.settings, updated_at=event.at)
        case LoyaltyProgramActivated():
            return replace(state, active=True, updated_at=event.at)
        case LoyaltyProgramStopped():
            return replace(state, active=False, updated_at=event.at)
        case LoyaltyProgramDeleted():
            return replace(state, deleted=True, active=False, updated_at=event.at)
    return state


program_decider: Decider[ProgramCommand, ProgramState] = Decider(ProgramState(), decide, evolve)


# --- validation --------------------------------------------------------------------------------


def check_settings(settings: ProgramSettings) -> ProgramSettings:
    """The settings in stored form (trimmed, defaults coerced), or ValidationFailed at the field's path."""
    name = settings.name.strip()
    if not name:
        raise ValidationFailed("the program needs a name", "name")
    if not SHORTCODE.match(settings.shortcode):
        raise ValidationFailed(
            "the template name is 1-64 letters, digits, '_' or '-' (the macro {loyalty.<name>.promocode})",
            "shortcode",
        )
    period = settings.period
    if period.valid_from and period.valid_to and period.valid_from >= period.valid_to:
        raise ValidationFailed("the period must end after it starts", "period.valid_to")
    for moment, at in ((period.valid_from, "valid_from"), (period.valid_to, "valid_to")):
        if moment is not None and moment.tzinfo is None:
            raise ValidationFailed("give the instant with its offset (e.g. Z)", f"period.{at}")
    match settings.generator:
        case PatternGenerator():
            parse_pattern(settings.generator.pattern, "generator.pattern")
        case ExternalGenerator():
            _check_url(settings.generator.url, "generator.url")
    return settings.model_copy(
        update={"name": name, "description": settings.description.strip(), "fields": _fields(settings.fields)}
    )


def _check_url(url: str, path: str) -> None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("the generator's URL must be an http or https address with a host", path)


def _fields(fields: tuple[ExtraField, ...]) -> tuple[ExtraField, ...]:
    if len(fields) > MAX_EXTRA_FIELDS:
        raise ValidationFailed(f"a program has at most {MAX_EXTRA_FIELDS} additional fields", "fields")
    seen: set[str] = set()
    checked = []
    for index, extra in enumerate(fields):
        name = extra.name.strip()
        if not name or name.casefold() in seen:
            raise ValidationFailed(
                f"field names must be present and unique: {name!r}", f"fields.{index}.name"
            )
        seen.add(name.casefold())
        default = field_value(extra, extra.default, f"fields.{index}.default")
        checked.append(extra.model_copy(update={"name": name, "default": default}))
    return tuple(checked)


def field_value(extra: ExtraField, value: Any, path: str) -> str | int | float | bool | None:
    """`value` in the field's stored form; None stays None; refuses what does not fit the type."""
    if value is None or value == "":
        return None
    try:
        match extra.type:
            case "string":
                return str(value)
            case "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value)
            case "float":
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            case "bool":
                return _boolean(value)
            case "date":
                return date.fromisoformat(str(value)).isoformat()
    except (TypeError, ValueError):
        pass
    raise ValidationFailed(f"{value!r} is not a {extra.type} value for field {extra.name!r}", path)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in ("true", "1", "yes", "да"):
        return True
    if text in ("false", "0", "no", "нет"):
        return False
    raise ValueError(value)


def field_values(settings: ProgramSettings, given: dict[str, Any], path: str = "fields") -> dict[str, Any]:
    """The additional fields' values for a generation: `given` over the defaults, each coerced.

    Unknown names are refused; the result names every field (None where neither is set).
    """
    by_name = {f.name.casefold(): f for f in settings.fields}
    values: dict[str, Any] = {f.name: f.default for f in settings.fields}
    for name, value in given.items():
        extra = by_name.get(name.casefold())
        if extra is None:
            raise ValidationFailed(f"the program has no field {name!r}", f"{path}.{name}")
        values[extra.name] = field_value(extra, value, f"{path}.{name}")
    return values
