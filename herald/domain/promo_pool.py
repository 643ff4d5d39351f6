"""A loyalty program's pool of promo codes (stream `promopool-<program_id>`): issued, handed out, withdrawn.

Every code of a program has a sequence number in the order it was issued
(generated, imported, or made on demand by a campaign or scenario). Codes are
issued in batches (`PromoCodesIssued`: the codes, their shared expiry, their
fields) and handed out by `PromoCodesBound` events:

- a personal code is handed out once: the pool's cursor is the first sequence
  number never handed out, and binding takes the next usable numbers after it
  (skipping withdrawn and expired codes) and moves the cursor past them. The
  pool stream is appended with its expected version, so two binders racing on
  one pool never hand out one number twice: the slower one is refused by the
  store, reloads and takes the numbers after the faster one's. A binding is
  appended atomically with each profile's holding (`promo_holders.py`), which
  makes "one code per profile and program" safe the same way;
- a universal program gives every profile its first active code (issued
  first, not withdrawn, not expired); the cursor does not move.

Why a cursor and not a stream per code: a broadcast binding 100,000 codes
appends one pool event per chunk of 1,000 recipients instead of 1,000, and
the pool's state stays a few numbers however many codes it holds (the code
strings are in the issuing events and the read model, looked up by number).

A code that is withdrawn (deleted) is never handed out again, and a code once
handed out is never handed out to another profile, even if its holder later
gives it up: it was sent to someone. When a binding leaves fewer free codes
than the program's `low_stock_threshold`, the pool reports it once
(`PromoCodesRunningLow`); the next issue re-arms the report.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.events import Event, registry
from herald.domain.loyalty import ProgramState

CodeSource = Literal["generated", "imported", "campaign", "scenario", "api"]
CauseKind = Literal["campaign", "scenario", "api", "manual"]


def pool_stream(program_id: str) -> str:
    """The stream of one program's promo codes: issues, bindings, withdrawals."""
    return f"promopool-{program_id}"


class BindingCause(BaseModel):
    """Who gave the code out: a campaign's message, a scenario's node, an API call, a user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CauseKind
    id: str = ""  # the campaign, scenario or request id
    name: str = ""  # the campaign or scenario name (sent to an external generator)


class Binding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    profile_id: str
    message_id: str | None = None  # the campaign message that carried the code


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
    program_id: str
    bindings: list[Binding]
    universal: bool = False
    cause: BindingCause
    at: datetime


@registry.register("PromoCodeWithdrawn")
class PromoCodeWithdrawn(Event):
    program_id: str
    seq: int
    code: str
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
class PoolState:
    batches: tuple[Batch, ...] = ()
    starts: tuple[int, ...] = ()  # each batch's first number, to find a code's batch by bisection
    next_seq: int = 0  # codes issued so far (the next code's number)
    cursor: int = 0  # personal codes: the first number never handed out
    withdrawn: frozenset[int] = field(default_factory=frozenset)
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

    def usable(self, seq: int, at: datetime) -> bool:
        """Whether code `seq` exists, is not withdrawn and has not expired at `at`."""
        batch = self.batch_of(seq)
        return batch is not None and seq not in self.withdrawn and not batch.expired(at)

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
    """Give a code to each profile (in order, as far as codes last); the caller checked they hold none.

    `message_ids`, when given, name the message that carries each profile's code.
    """

    program: ProgramState
    profile_ids: tuple[str, ...]
    cause: BindingCause
    at: datetime
    message_ids: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class WithdrawCode:
    program: ProgramState
    seq: int
    code: str
    at: datetime


PoolCommand = IssueCodes | BindCodes | WithdrawCode


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
        case WithdrawCode():
            if not 0 <= command.seq < state.next_seq or command.seq in state.withdrawn:
                raise NotFound(f"no promo code {command.code!r} in this program", "code")
            return [
                PromoCodeWithdrawn(
                    program_id=program.program_id, seq=command.seq, code=command.code, at=command.at
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
    if not command.profile_ids:
        return []
    ids = {"program_id": program.program_id, "cause": command.cause, "at": command.at}
    messages = command.message_ids or (None,) * len(command.profile_ids)
    if settings.universal:
        seq = state.first_active(command.at)
        if seq is None:
            return []
        bindings = [
            Binding(seq=seq, profile_id=p, message_id=m)
            for p, m in zip(command.profile_ids, messages, strict=True)
        ]
        return [PromoCodesBound(**ids, bindings=bindings, universal=True)]
    seqs = state.take(len(command.profile_ids), command.at)
    if not seqs:
        return []
    given = zip(seqs, command.profile_ids, messages, strict=False)
    events: list[Event] = [
        PromoCodesBound(**ids, bindings=[Binding(seq=s, profile_id=p, message_id=m) for s, p, m in given])
    ]
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
        case PromoCodesBound() if not event.universal and event.bindings:
            return replace(state, cursor=max(state.cursor, max(b.seq for b in event.bindings) + 1))
        case PromoCodeWithdrawn():
            return replace(state, withdrawn=state.withdrawn | {event.seq})
        case PromoCodesRunningLow():
            return replace(state, low_reported=True)
    return state


pool_decider: Decider[PoolCommand, PoolState] = Decider(PoolState(), decide, evolve)
