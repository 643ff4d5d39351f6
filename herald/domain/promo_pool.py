"""A loyalty program's pool of promo codes (stream `promopool-<program_id>`): issued, held, activated,
withdrawn.

Every code of a program has a sequence number in the order it was issued
(generated, imported, or made on demand by a campaign or scenario). Codes are
issued in batches (`PromoCodesIssued`: the codes, their shared expiry, their
fields) and given to profiles by `PromoCodesBound` events:

- a personal code is handed out once: the pool's cursor is the first number
  never handed out, and binding takes the next usable numbers after it
  (skipping withdrawn and expired codes) and moves the cursor past them;
- a universal program gives every profile its first active code (issued
  first, not withdrawn, not expired); the cursor does not move;
- the pool knows which code each profile holds (`holders`), so a profile that
  holds a usable code is never bound again: "one code per profile and
  program", and an assignment repeated is a no-op.

Every append of the pool is version-checked, so two processes giving codes
out at once never hand out one number twice nor give one profile two codes:
the slower one is refused by the store, reloads and decides again. Why one
stream and not a stream per code or per profile: a broadcast giving 100,000
codes appends one event per chunk of 1,000 recipients instead of 100,000 or
200,000, and the state stays small: a few numbers, the batches' bounds, and
the holders in a persistent map (`immutables.Map`, a HAMT) that takes a
chunk's holdings without copying the others. The code strings are in the
issuing events and the read model, looked up by number.

Activation (the customer used the code: "Активирован", with who and when) is
recorded here too, per profile: a universal code is activated once per
profile.

Rules from the guide: an expired code cannot be attached, sent or activated.

Decisions where the guide is silent:
- A withdrawn (deleted) code is never handed out again and its holders lose
  it; a code once handed out is never handed out to another profile, even if
  its holder later gives it up: it was sent to someone.
- A profile whose code expired (or was withdrawn) gets a new one the next time
  it is given one; an activated code stays the profile's until it expires.
- Activating twice is refused (409) with the first activation's time; an
  activation must name the code the profile holds.
- When a binding leaves fewer free codes than the program's
  `low_stock_threshold`, the pool reports it once (`PromoCodesRunningLow`);
  the next issue re-arms the report.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from immutables import Map
from pydantic import BaseModel, ConfigDict, Field

from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound, RuleViolated
from herald.domain.events import Event, registry
from herald.domain.loyalty import ProgramState

CodeSource = Literal["generated", "imported", "campaign", "scenario", "api"]
CauseKind = Literal["campaign", "scenario", "api", "manual"]
ReleaseReason = Literal["withdrawn", "unbound"]


def pool_stream(program_id: str) -> str:
    """The stream of one program's promo codes: issues, bindings, activations, withdrawals."""
    return f"promopool-{program_id}"


class BindingCause(BaseModel):
    """Who gave the code out: a campaign's message, a scenario's node, an API call, a user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CauseKind
    id: str = ""  # the campaign, scenario or request id
    name: str = ""  # the campaign or scenario name (sent to an external generator)


class Release(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    profile_id: str


# --- events ------------------------------------------------------------------------------------


@registry.register("PromoCodesIssued")
class PromoCodesIssued(Event):
    program_id: str
    first_seq: int
    codes: list[str]
    fields: list[dict[str, Any]] | None = None  # per code, when the program keeps fields in codes
    expires_at: datetime | None = None
    source: CodeSource
    job_id: str | None = None
    at: datetime


@registry.register("PromoCodesBound")
class PromoCodesBound(Event):
    """Codes given to profiles: `seqs[i]` to `profile_ids[i]`, carried by `message_ids[i]` (campaigns).

    Parallel lists, not a list of objects: a chunk's event holds a thousand bindings, and lists of
    plain values encode and decode several times faster.
    """

    program_id: str
    seqs: list[int]
    profile_ids: list[str]
    message_ids: list[str | None] | None = None
    universal: bool = False
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


@registry.register("PromoCodeWithdrawn")
class PromoCodeWithdrawn(Event):
    program_id: str
    seq: int
    code: str
    released: list[Release] = Field(default_factory=list)  # the holders who lose it
    at: datetime


@registry.register("PromoCodesReleased")
class PromoCodesReleased(Event):
    """Profiles gave their codes up (unbound): each may be given a new one; the codes are not reused."""

    program_id: str
    released: list[Release]
    reason: ReleaseReason
    at: datetime


@registry.register("PromoCodesRunningLow")
class PromoCodesRunningLow(Event):
    program_id: str
    free: int
    threshold: int
    at: datetime


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """Codes issued together: numbers `first_seq` ..< `first_seq + count`, issued at pool `version`."""

    first_seq: int
    count: int
    expires_at: datetime | None
    version: int

    @property
    def end(self) -> int:
        return self.first_seq + self.count

    def expired(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at


@dataclass(frozen=True, slots=True)
class Holding:
    """The code a profile holds: its number, expiry, when it was given, and its activation."""

    seq: int
    expires_at: datetime | None
    held_at: datetime
    activated_at: datetime | None = None
    activated_by: str = ""

    def usable(self, at: datetime) -> bool:
        return self.expires_at is None or at < self.expires_at


def _no_holders() -> Map[str, Holding]:
    return Map()


@dataclass(frozen=True, slots=True)
class PoolState:
    batches: tuple[Batch, ...] = ()
    starts: tuple[int, ...] = ()  # each batch's first number, to find a code's batch by bisection
    next_seq: int = 0  # codes issued so far (the next code's number)
    cursor: int = 0  # personal codes: the first number never handed out
    withdrawn: frozenset[int] = field(default_factory=frozenset)
    holders: Map[str, Holding] = field(default_factory=_no_holders)
    low_reported: bool = False
    version: int = 0  # events folded: the pool stream's version

    @property
    def count(self) -> int:
        """Codes the program holds now ("текущее количество"): issued and not withdrawn."""
        return self.next_seq - len(self.withdrawn)

    def batch_of(self, seq: int) -> Batch | None:
        index = bisect.bisect_right(self.starts, seq) - 1
        if index < 0 or seq >= self.batches[index].end:
            return None
        return self.batches[index]

    def expires_at(self, seq: int) -> datetime | None:
        batch = self.batch_of(seq)
        return batch.expires_at if batch is not None else None

    def held(self, profile_id: str, at: datetime) -> Holding | None:
        """The usable code the profile holds at `at`, or None."""
        holding = self.holders.get(profile_id)
        return holding if holding is not None and holding.usable(at) else None

    def free(self, at: datetime) -> int:
        """Personal codes never handed out and still usable at `at`."""
        total = 0
        for batch in self.batches:
            start = max(batch.first_seq, self.cursor)
            if start >= batch.end or batch.expired(at):
                continue
            total += batch.end - start - sum(1 for s in self.withdrawn if start <= s < batch.end)
        return total

    def take(self, count: int, at: datetime) -> list[int]:
        """The next `count` (or fewer) personal codes to hand out, in issue order."""
        taken: list[int] = []
        for batch in self.batches:
            if len(taken) >= count:
                break
            if batch.end <= self.cursor or batch.expired(at):
                continue
            for seq in range(max(batch.first_seq, self.cursor), batch.end):
                if seq not in self.withdrawn:
                    taken.append(seq)
                    if len(taken) >= count:
                        break
        return taken

    def first_active(self, at: datetime) -> int | None:
        """A universal program's code to give: the first issued that is usable at `at`."""
        for batch in self.batches:
            if batch.expired(at):
                continue
            for seq in range(batch.first_seq, batch.end):
                if seq not in self.withdrawn:
                    return seq
        return None


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssueCodes:
    """Add codes (already unique: the caller claimed each string) to the program's pool."""

    program: ProgramState
    codes: tuple[str, ...]
    source: CodeSource
    at: datetime
    fields: tuple[dict[str, Any], ...] | None = None
    ignore_limit: bool = False
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class BindCodes:
    """Give a code to each profile that holds no usable one, in order, as far as codes last.

    `message_ids`, when given, name the message that carries each profile's code.
    """

    program: ProgramState
    profile_ids: tuple[str, ...]
    cause: BindingCause
    at: datetime
    message_ids: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class ActivateCode:
    program: ProgramState
    profile_id: str
    seq: int
    code: str
    at: datetime
    by: str = ""


@dataclass(frozen=True, slots=True)
class WithdrawCode:
    program: ProgramState
    seq: int
    code: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseCodes:
    """Take their codes from profiles (unbind): they may be given new ones."""

    program: ProgramState
    profile_ids: tuple[str, ...]
    at: datetime


PoolCommand = IssueCodes | BindCodes | ActivateCode | WithdrawCode | ReleaseCodes


def room(program: ProgramState, state: PoolState, ignore_limit: bool = False) -> int | None:
    """How many more codes the program may hold (None: no limit)."""
    assert program.settings is not None
    limit = program.settings.max_codes
    return None if limit is None or ignore_limit else max(0, limit - state.count)


def decide(command: PoolCommand, state: PoolState) -> list[Event]:
    """The events `command` causes on the pool, or a DomainError."""
    program = command.program
    if not program.exists:
        raise NotFound(f"no loyalty program {program.program_id!r}", "program_id")
    assert program.settings is not None
    match command:
        case IssueCodes():
            return _issue(command, state)
        case BindCodes():
            return _bind(command, state)
        case ActivateCode():
            return [_activation(command, state)]
        case WithdrawCode():
            if not 0 <= command.seq < state.next_seq or command.seq in state.withdrawn:
                raise NotFound(f"no promo code {command.code!r} in this program", "code")
            released = [
                Release(seq=h.seq, profile_id=p) for p, h in state.holders.items() if h.seq == command.seq
            ]
            return [
                PromoCodeWithdrawn(
                    program_id=program.program_id,
                    seq=command.seq,
                    code=command.code,
                    released=sorted(released, key=lambda r: r.profile_id),
                    at=command.at,
                )
            ]
        case ReleaseCodes():
            given = [(p, state.holders.get(p)) for p in dict.fromkeys(command.profile_ids)]
            released = [Release(seq=h.seq, profile_id=p) for p, h in given if h is not None]
            if not released:
                return []
            return [
                PromoCodesReleased(
                    program_id=program.program_id, released=released, reason="unbound", at=command.at
                )
            ]
    raise AssertionError(command)


def _issue(command: IssueCodes, state: PoolState) -> list[Event]:
    settings = command.program.settings
    assert settings is not None
    if not command.codes:
        return []
    left = room(command.program, state, command.ignore_limit)
    if left is not None and len(command.codes) > left:
        raise RuleViolated(
            f"the program holds at most {settings.max_codes:,} codes and has {state.count:,}: "
            f"{len(command.codes):,} more do not fit (or ignore the limit)",
            "count",
        )
    ttl = settings.code_ttl_minutes
    return [
        PromoCodesIssued(
            program_id=command.program.program_id,
            first_seq=state.next_seq,
            codes=list(command.codes),
            fields=list(command.fields) if command.fields is not None else None,
            expires_at=command.at + timedelta(minutes=ttl) if ttl else None,
            source=command.source,
            job_id=command.job_id,
            at=command.at,
        )
    ]


def _bind(command: BindCodes, state: PoolState) -> list[Event]:
    program = command.program
    settings = program.settings
    assert settings is not None
    refusal = program.refusal(command.at)
    if refusal is not None:
        raise RuleViolated(refusal, "program_id")
    messages = command.message_ids or (None,) * len(command.profile_ids)
    wanting = [
        (p, m)
        for p, m in dict(zip(command.profile_ids, messages, strict=True)).items()
        if not state.held(p, command.at)
    ]
    if not wanting:
        return []
    ids = {"program_id": program.program_id, "cause": command.cause, "at": command.at}
    if settings.universal:
        seq = state.first_active(command.at)
        if seq is None:
            return []
        return [_bound(ids, [seq] * len(wanting), wanting, universal=True)]
    seqs = state.take(len(wanting), command.at)
    if not seqs:
        return []
    events: list[Event] = [_bound(ids, seqs, wanting[: len(seqs)])]
    left = state.free(command.at) - len(seqs)
    if left < settings.low_stock_threshold and not state.low_reported:
        events.append(
            PromoCodesRunningLow(
                program_id=program.program_id,
                free=left,
                threshold=settings.low_stock_threshold,
                at=command.at,
            )
        )
    return events


def _bound(
    ids: dict[str, Any], seqs: list[int], given: list[tuple[str, str | None]], universal: bool = False
) -> PromoCodesBound:
    messages = [m for _, m in given]
    return PromoCodesBound(
        **ids,
        seqs=seqs,
        profile_ids=[p for p, _ in given],
        message_ids=messages if any(messages) else None,
        universal=universal,
    )


def _activation(command: ActivateCode, state: PoolState) -> PromoCodeActivated:
    holding = state.holders.get(command.profile_id)
    if holding is None:
        raise RuleViolated("the profile holds no promo code of this program", "profile_id")
    if holding.seq != command.seq:
        raise RuleViolated(f"the profile holds another code of this program, not {command.code!r}", "code")
    if holding.activated_at is not None:
        raise AlreadyExists(f"the code was activated already at {holding.activated_at.isoformat()}", "code")
    if not holding.usable(command.at):
        assert holding.expires_at is not None
        raise RuleViolated(f"the code expired at {holding.expires_at.isoformat()}", "code")
    return PromoCodeActivated(
        program_id=command.program.program_id,
        profile_id=command.profile_id,
        seq=command.seq,
        code=command.code,
        by=command.by,
        at=command.at,
    )


def evolve(state: PoolState, event: Event) -> PoolState:
    state = replace(state, version=state.version + 1)
    match event:
        case PromoCodesIssued():
            batch = Batch(event.first_seq, len(event.codes), event.expires_at, state.version)
            return replace(
                state,
                batches=(*state.batches, batch),
                starts=(*state.starts, batch.first_seq),
                next_seq=batch.end,
                low_reported=False,
            )
        case PromoCodesBound():
            with state.holders.mutate() as holders:
                for seq, profile_id in zip(event.seqs, event.profile_ids, strict=True):
                    holders[profile_id] = Holding(seq, state.expires_at(seq), event.at)
                held = holders.finish()
            cursor = state.cursor
            if not event.universal and event.seqs:
                cursor = max(cursor, max(event.seqs) + 1)
            return replace(state, holders=held, cursor=cursor)
        case PromoCodeActivated():
            holding = state.holders.get(event.profile_id)
            if holding is None:
                return state
            activated = replace(holding, activated_at=event.at, activated_by=event.by)
            return replace(state, holders=state.holders.set(event.profile_id, activated))
        case PromoCodeWithdrawn():
            return replace(
                state,
                withdrawn=state.withdrawn | {event.seq},
                holders=_without(state.holders, event.released),
            )
        case PromoCodesReleased():
            return replace(state, holders=_without(state.holders, event.released))
        case PromoCodesRunningLow():
            return replace(state, low_reported=True)
    return state


def _without(holders: Map[str, Holding], released: list[Release]) -> Map[str, Holding]:
    with holders.mutate() as left:
        for r in released:
            if r.profile_id in left:
                del left[r.profile_id]
        kept: Map[str, Holding] = left.finish()
    return kept


pool_decider: Decider[PoolCommand, PoolState] = Decider(PoolState(), decide, evolve)
