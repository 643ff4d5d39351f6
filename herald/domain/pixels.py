"""The pixel aggregate (stream `pixel-<id>`), and a pixel's trigger re-fire block per visitor.

A pixel (guide "Пиксели") is what a site's tracking codes report to: a name
and description, the profile database its visitors are looked up and
imported in ("Все базы данных" when none), a re-fire block ("Блокировать
повторное срабатывание триггеров", 0–43,200 minutes) and whether a hit may
create and update profiles ("Разрешить импорт данных на пикселе"). Every
pixel has a key, made when it is created: the `k` of its tracking URLs.

The re-fire block suppresses triggers and scenarios on repeated hits: a hit
fires them only if no hit by the same visitor (profile, or anonymous visitor)
fired them in the last `block_retrigger_minutes`. Each firing is a
`PixelTriggersFired` on the stream `pixelfire-<pixel>-<visitor>`, appended
with the hit's goals under that stream's expected version, so two hits racing
fire once. The goals themselves are always recorded (reports count every
visit); a hit that does not fire carries `fires_triggers: false`.

Decisions where the guide is silent: names are 1–255 characters; a deleted
pixel's key answers nothing (its hits get 404) and stays taken.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated, ValidationFailed
from herald.domain.events import Event, registry

MAX_BLOCK_MINUTES = 43_200


def pixel_stream(pixel_id: str) -> str:
    return f"pixel-{pixel_id}"


def refire_stream(pixel_id: str, visitor: str) -> str:
    """The stream of a pixel's trigger firings for one visitor (a profile id or an anonymous id)."""
    return f"pixelfire-{pixel_id}-{visitor}"


class PixelSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    description: str = Field("", max_length=5000)
    database_id: str | None = Field(None, description="None: all databases")
    block_retrigger_minutes: int = Field(0, ge=0, le=MAX_BLOCK_MINUTES)
    allow_import: bool = Field(False, description="hits may create and update profiles")


@registry.register("PixelCreated")
class PixelCreated(Event):
    pixel_id: str
    key: str
    settings: PixelSettings
    at: datetime


@registry.register("PixelChanged")
class PixelChanged(Event):
    pixel_id: str
    settings: PixelSettings
    at: datetime


@registry.register("PixelDeleted")
class PixelDeleted(Event):
    pixel_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PixelState:
    pixel_id: str = ""
    key: str = ""
    settings: PixelSettings | None = None
    deleted: bool = False
    created_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.settings is not None and not self.deleted


@dataclass(frozen=True, slots=True)
class CreatePixel:
    pixel_id: str
    key: str
    settings: PixelSettings
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangePixel:
    pixel_id: str
    settings: PixelSettings
    at: datetime


@dataclass(frozen=True, slots=True)
class DeletePixel:
    pixel_id: str
    at: datetime


PixelCommand = CreatePixel | ChangePixel | DeletePixel


def _checked(settings: PixelSettings) -> PixelSettings:
    name = settings.name.strip()
    if not name:
        raise ValidationFailed("the pixel needs a name", "name")
    return settings.model_copy(update={"name": name, "description": settings.description.strip()})


def decide(command: PixelCommand, state: PixelState) -> list[Event]:
    if isinstance(command, CreatePixel):
        if state.settings is not None:
            raise RuleViolated(f"pixel {command.pixel_id!r} exists already", "pixel_id")
        settings = _checked(command.settings)
        return [PixelCreated(pixel_id=command.pixel_id, key=command.key, settings=settings, at=command.at)]
    if isinstance(command, DeletePixel) and state.deleted:
        return []
    if not state.exists:
        raise NotFound(f"no pixel {command.pixel_id!r}", "pixel_id")
    if isinstance(command, ChangePixel):
        settings = _checked(command.settings)
        if settings == state.settings:
            return []
        return [PixelChanged(pixel_id=command.pixel_id, settings=settings, at=command.at)]
    return [PixelDeleted(pixel_id=command.pixel_id, at=command.at)]


def evolve(state: PixelState, event: Event) -> PixelState:
    match event:
        case PixelCreated():
            return PixelState(event.pixel_id, event.key, event.settings, created_at=event.at)
        case PixelChanged():
            return replace(state, settings=event.settings)
        case PixelDeleted():
            return replace(state, deleted=True)
    return state


pixel_decider: Decider[PixelCommand, PixelState] = Decider(PixelState(), decide, evolve)


# --- the re-fire block -------------------------------------------------------------------------


@registry.register("PixelTriggersFired")
class PixelTriggersFired(Event):
    pixel_id: str
    visitor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RefireState:
    last_fired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FireTriggers:
    pixel_id: str
    visitor: str
    block_minutes: int
    at: datetime


def decide_fire(command: FireTriggers, state: RefireState) -> list[Event]:
    """Fire (one event) unless the visitor's last firing is within the block."""
    last = state.last_fired_at
    if last is not None and command.at < last + timedelta(minutes=command.block_minutes):
        return []
    return [PixelTriggersFired(pixel_id=command.pixel_id, visitor=command.visitor, at=command.at)]


def evolve_fire(state: RefireState, event: Event) -> RefireState:
    return RefireState(event.at) if isinstance(event, PixelTriggersFired) else state


refire_decider: Decider[FireTriggers, RefireState] = Decider(RefireState(), decide_fire, evolve_fire)
