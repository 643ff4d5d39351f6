"""A profile's promo code of one program (stream `promoholder-<program_id>-<profile_id>`).

The holding is what makes "one code per profile and program" safe: giving a
profile a code appends `PromoCodeHeld` here with the stream's expected
version, atomically with the pool's `PromoCodesBound`, so two assignments
racing for one profile cannot both win (the slower one reloads and finds the
code the faster one gave). An assignment to a profile that holds a usable
code decides nothing: the caller hands out the code held (idempotent).

Activation (the customer used the code: "Активирован", with who and when)
is recorded here too, for personal and universal codes alike: a universal
code is activated once per profile.

Rules from the guide: an expired code cannot be attached, sent or activated.

Decisions where the guide is silent:
- A profile whose code expired (or was deleted) gets a new one the next time
  it is given one; an activated code stays the profile's until it expires.
- Activating twice is refused (409) with the first activation's time; an
  activation must name the code the profile holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, RuleViolated
from herald.domain.events import Event, registry
from herald.domain.promo_pool import BindingCause

ReleaseReason = Literal["withdrawn", "unbound"]


def holder_stream(program_id: str, profile_id: str) -> str:
    """The stream of one profile's promo code in one program."""
    return f"promoholder-{program_id}-{profile_id}"


@registry.register("PromoCodeHeld")
class PromoCodeHeld(Event):
    program_id: str
    profile_id: str
    seq: int
    code: str
    expires_at: datetime | None = None
    cause: BindingCause
    at: datetime


@registry.register("PromoCodeActivated")
class PromoCodeActivated(Event):
    program_id: str
    profile_id: str
    seq: int
    code: str
    by: str = ""  # who reports the use: a shop, a till, a partner (free text)
    at: datetime  # when the customer used it


@registry.register("PromoCodeReleased")
class PromoCodeReleased(Event):
    program_id: str
    profile_id: str
    seq: int
    code: str
    reason: ReleaseReason
    at: datetime


@dataclass(frozen=True, slots=True)
class HolderState:
    seq: int | None = None
    code: str = ""
    expires_at: datetime | None = None
    held_at: datetime | None = None
    activated_at: datetime | None = None
    activated_by: str = ""

    def usable(self, at: datetime) -> bool:
        """Whether the profile holds a code that has not expired at `at`."""
        return self.seq is not None and (self.expires_at is None or at < self.expires_at)


@dataclass(frozen=True, slots=True)
class HoldCode:
    program_id: str
    profile_id: str
    seq: int
    code: str
    expires_at: datetime | None
    cause: BindingCause
    at: datetime


@dataclass(frozen=True, slots=True)
class ActivateCode:
    program_id: str
    profile_id: str
    code: str
    at: datetime
    by: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseCode:
    program_id: str
    profile_id: str
    reason: ReleaseReason
    at: datetime


HolderCommand = HoldCode | ActivateCode | ReleaseCode


def decide(command: HolderCommand, state: HolderState) -> list[Event]:
    ids = {"program_id": command.program_id, "profile_id": command.profile_id, "at": command.at}
    match command:
        case HoldCode():
            if state.usable(command.at):
                return []
            return [
                PromoCodeHeld(
                    **ids,
                    seq=command.seq,
                    code=command.code,
                    expires_at=command.expires_at,
                    cause=command.cause,
                )
            ]
        case ActivateCode():
            return [_activation(command, state)]
        case ReleaseCode():
            if state.seq is None:
                return []
            return [PromoCodeReleased(**ids, seq=state.seq, code=state.code, reason=command.reason)]
    raise AssertionError(command)


def _activation(command: ActivateCode, state: HolderState) -> PromoCodeActivated:
    if state.seq is None:
        raise RuleViolated("the profile holds no promo code of this program", "profile_id")
    if state.code != command.code:
        raise RuleViolated(f"the profile holds another code of this program, not {command.code!r}", "code")
    if state.activated_at is not None:
        raise AlreadyExists(f"the code was activated already at {state.activated_at.isoformat()}", "code")
    if state.expires_at is not None and state.expires_at <= command.at:
        raise RuleViolated(f"the code expired at {state.expires_at.isoformat()}", "code")
    return PromoCodeActivated(
        program_id=command.program_id,
        profile_id=command.profile_id,
        seq=state.seq,
        code=state.code,
        by=command.by,
        at=command.at,
    )


def evolve(state: HolderState, event: Event) -> HolderState:
    match event:
        case PromoCodeHeld():
            return HolderState(event.seq, event.code, event.expires_at, event.at)
        case PromoCodeActivated():
            return replace(state, activated_at=event.at, activated_by=event.by)
        case PromoCodeReleased():
            return HolderState()
    return state


holder_decider: Decider[HolderCommand, HolderState] = Decider(HolderState(), decide, evolve)
