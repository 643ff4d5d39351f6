"""Promo codes: made (pattern or external service), issued, given out, activated and withdrawn.

The command path over the pool (`domain/promo_pool.py`) and the code claims
(`domain/claims.py`):
- issuing claims each code string (stream `unique-loyalty-<program>-code-<code>`,
  owned by the code's number) in the same atomic append as the pool's
  `PromoCodesIssued`, so a code is in a program at most once, and duplicates
  (within a request or with codes issued before) are reported, not issued;
- giving out (`PoolSession`) decides on the pool and appends with its expected
  version; a conflict (another process gave codes out meanwhile) makes the
  caller decide again on the new state;
- withdrawing releases the code's claim along with the pool's
  `PromoCodeWithdrawn` (which takes the code from its holders).

Decisions where the guide is silent:
- A generation of up to `SYNC_GENERATION` codes is done in the request; a
  larger one is a job (`domain/promo_jobs.py`) done in chunks of `CHUNK`.
  Pattern codes that collide with codes the program has are drawn again; an
  external service's duplicates are reported.
- When a campaign or scenario may create codes and the pool has none free, it
  makes `ON_DEMAND` codes at a time (one for a universal program), asking the
  external service with its own id and name, within the program's maximum.
- Codes are given out by the API, by campaigns and scenarios; the API never
  creates codes to do so.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from random import Random
from typing import Any, TypeVar

from herald.domain import claims
from herald.domain import loyalty as ly
from herald.domain import promo_jobs as pj
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.events import Event
from herald.domain.promo_patterns import parse_pattern
from herald.domain.promo_pool import (
    ActivateCode,
    BindCodes,
    BindingCause,
    CodeSource,
    IssueCodes,
    PoolState,
    PromoCodesBound,
    PromoCodesIssued,
    ReleaseCodes,
    WithdrawCode,
    pool_decider,
    pool_stream,
    room,
)
from herald.infra.event_store import StreamAppend, WrongExpectedVersion
from herald.infra.promo_generator import CodeRequest, ExternalCodeGenerator, GeneratedCode, GeneratorFailed
from herald.infra.stream_locks import StreamLocks
from herald.projections.loyalty import LoyaltyProjection
from herald.services.aggregates import Aggregates, CommandContext, Outcome
from herald.services.loyalty import LoyaltyPrograms

_T = TypeVar("_T")

SYNC_GENERATION = 1000
CHUNK = 1000
ON_DEMAND = 100
QUEUE = 1000  # personal codes a session looks ahead at a time
MAX_GENERATION = 1_000_000
_ATTEMPTS = 16  # conflicts with writers that do not take turns (campaign chunks) before giving up
_REDRAWS = 5
_BATCH_CACHE = 512


def code_claim_stream(program_id: str, code: str) -> str:
    """The claim stream that keeps `code` unique in its program."""
    return claims.claim_stream(_namespace(program_id), "code", code)


def _namespace(program_id: str) -> str:
    return f"loyalty-{program_id}"


@dataclass(frozen=True, slots=True)
class IssueResult:
    issued: int
    duplicates: tuple[tuple[int, str], ...] = ()  # (place in the request, code) of codes not issued


@dataclass(frozen=True, slots=True)
class Assigned:
    """A profile's code of a program; `new`: given out by this call."""

    program_id: str
    profile_id: str
    code: str
    seq: int
    expires_at: datetime | None
    new: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "profile_id": self.profile_id,
            "code": self.code,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "new": self.new,
        }


Pending = tuple[str, list[Event], int]
"""One stream's part of an append: (stream, events, expected version)."""


class CodeMaker:
    """Makes codes for a program: from its pattern, or by asking its external service."""

    def __init__(self, external: ExternalCodeGenerator | None, rng: Random, account_id: str) -> None:
        self.external = external
        self.rng = rng
        self.account_id = account_id

    def make(
        self,
        program: ly.ProgramState,
        count: int,
        fields: Mapping[str, Any],
        cause: BindingCause | None = None,
        is_test: bool = False,
    ) -> list[GeneratedCode]:
        """`count` codes (an external service may give fewer), each with the fields it came with."""
        settings = program.settings
        assert settings is not None
        generator = settings.generator
        if isinstance(generator, ly.PatternGenerator):
            pattern = parse_pattern(generator.pattern, "generator.pattern")
            pattern.check_count(count)
            return [GeneratedCode(code) for code in pattern.generate(self.rng, count)]
        if isinstance(generator, ly.ExternalGenerator):
            if self.external is None:
                raise GeneratorFailed("this server calls no external services", "generator.url")
            made: list[GeneratedCode] = []
            while len(made) < count:
                size = min(generator.max_batch, count - len(made))
                request = self._request(program, size, fields, cause, is_test)
                answer = self.external.request(generator.url, request)
                made += answer
                if len(answer) < size:
                    break  # the service gave what it has
            return made
        raise RuleViolated("the program makes no codes: import them, or give it a generator", "generator")

    def _request(
        self,
        program: ly.ProgramState,
        count: int,
        fields: Mapping[str, Any],
        cause: BindingCause | None,
        is_test: bool,
    ) -> CodeRequest:
        settings = program.settings
        assert settings is not None
        by_campaign = cause is not None and cause.kind == "campaign"
        by_scenario = cause is not None and cause.kind == "scenario"
        return CodeRequest(
            account_id=self.account_id,
            loyalty_id=program.program_id,
            loyalty_name=settings.name,
            loyalty_shortcode=settings.shortcode,
            count=count,
            is_test=is_test,
            fields=dict(fields),
            campaign_id=cause.id if by_campaign and cause else "",
            campaign_name=cause.name if by_campaign and cause else "",
            workflow_id=cause.id if by_scenario and cause else "",
            workflow_name=cause.name if by_scenario and cause else "",
        )


class PromoCodeService:
    def __init__(
        self,
        aggregates: Aggregates,
        programs: LoyaltyPrograms,
        projection: LoyaltyProjection,
        maker: CodeMaker,
        locks: StreamLocks,
    ) -> None:
        self.aggregates = aggregates
        self.programs = programs
        self.projection = projection
        self.maker = maker
        self.locks = locks  # processes take turns at a pool; the version check still guards it
        self._batches: OrderedDict[tuple[str, int], list[str]] = OrderedDict()

    # --- reading -------------------------------------------------------------------------------

    def pool(self, program_id: str) -> tuple[PoolState, int]:
        loaded = self.aggregates.load(pool_decider, pool_stream(program_id))
        return loaded.state, loaded.version

    def code_of(self, program_id: str, pool: PoolState, seq: int) -> str:
        """The text of code number `seq` (its issuing batch read once, from the read model or the log)."""
        batch = pool.batch_of(seq)
        assert batch is not None, seq
        key = (program_id, batch.first_seq)
        codes = self._batches.get(key)
        if codes is None:
            found = self.projection.codes_between(program_id, batch.first_seq, batch.end)
            if len(found) == batch.count:
                codes = [found[s] for s in range(batch.first_seq, batch.end)]
            else:  # the read model has not caught up with the batch yet: its issuing event has the codes
                codes = self._issued_codes(program_id, batch.version)
            self._batches[key] = codes
            if len(self._batches) > _BATCH_CACHE:
                self._batches.popitem(last=False)
        self._batches.move_to_end(key)
        return codes[seq - batch.first_seq]

    def _issued_codes(self, program_id: str, version: int) -> list[str]:
        event = self.aggregates.decode(self.aggregates.store.read_stream(pool_stream(program_id), version)[0])
        assert isinstance(event, PromoCodesIssued)
        return event.codes

    def seq_of(self, program_id: str, code: str) -> int:
        """The number of `code` in the program; NotFound when the program has no such code."""
        owner = self.aggregates.load(claims.claim_decider, code_claim_stream(program_id, code)).state.owner
        if owner is None:
            raise NotFound(f"the program has no promo code {code!r}", "code")
        return int(owner)

    # --- issuing -------------------------------------------------------------------------------

    def issue(
        self,
        program_id: str,
        made: Sequence[GeneratedCode],
        source: CodeSource,
        context: CommandContext,
        ignore_limit: bool = False,
        values: Mapping[str, Any] | None = None,
        also: Callable[[IssueResult], Sequence[StreamAppend]] = lambda _: (),
    ) -> IssueResult:
        """Issue the codes the program does not have yet; `also` adds appends made atomic with it."""

        def attempt() -> IssueResult:
            program = self.programs.program(program_id)
            pool, version = self.pool(program_id)
            result, pending = self.issue_pending(program, pool, version, made, source, ignore_limit, values)
            appends = [self._append(p, context) for p in pending]
            appends += also(result)
            if appends:
                self.aggregates.store.append_many(appends)
            return result

        return self._in_turn(program_id, attempt)

    def _in_turn(self, program_id: str, attempt: Callable[[], _T]) -> _T:
        """`attempt` (decide on the pool, append) in the pool's turn; again on a conflict.

        Herald's processes take turns at a pool, so a conflict comes only from a writer that does
        not (a campaign chunk's appends, another machine's process)."""
        with self.locks.holding(pool_stream(program_id)):
            for tries in range(_ATTEMPTS):
                try:
                    return attempt()
                except WrongExpectedVersion:
                    if tries == _ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    def issue_pending(
        self,
        program: ly.ProgramState,
        pool: PoolState,
        version: int,
        made: Sequence[GeneratedCode],
        source: CodeSource,
        ignore_limit: bool = False,
        values: Mapping[str, Any] | None = None,
        at: datetime | None = None,
        taken: frozenset[str] = frozenset(),
    ) -> tuple[IssueResult, list[Pending]]:
        """What issuing `made` appends: the pool's event and each new code's claim, or nothing.

        Codes in `taken` (claimed by the caller's pending appends) count as duplicates too.
        """
        at = at or self.aggregates.clock.now()
        settings = program.settings
        assert settings is not None
        fresh: list[GeneratedCode] = []
        duplicates: list[tuple[int, str]] = []
        seen: set[str] = set(taken)
        claimed: list[tuple[str, int]] = []  # (claim stream, its version)
        for index, item in enumerate(made):
            stream = code_claim_stream(program.program_id, item.code)
            claim_version = self._free_claim(stream)
            if item.code in seen or claim_version is None:
                duplicates.append((index, item.code))
                continue
            seen.add(item.code)
            fresh.append(item)
            claimed.append((stream, claim_version))
        kept = settings.save_fields or any(item.fields for item in fresh)
        fields = tuple({**((values or {}) if settings.save_fields else {}), **item.fields} for item in fresh)
        command = IssueCodes(
            program, tuple(i.code for i in fresh), source, at, fields if kept else None, ignore_limit
        )
        events = pool_decider.decide(command, pool)
        if not events:
            return IssueResult(0, tuple(duplicates)), []
        issued = events[0]
        assert isinstance(issued, PromoCodesIssued)
        pending: list[Pending] = [(pool_stream(program.program_id), list(events), version)]
        for offset, (stream, claim_version) in enumerate(claimed):
            claim = claims.UniqueValueClaimed(
                database_id=_namespace(program.program_id),
                kind="code",
                value=fresh[offset].code,
                profile_id=str(issued.first_seq + offset),
            )
            pending.append((stream, [claim], claim_version))
        return IssueResult(len(fresh), tuple(duplicates)), pending

    def _free_claim(self, stream: str) -> int | None:
        """The claim stream's version if the code is free there (never claimed, or released), else None."""
        version = self.aggregates.store.stream_version(stream)
        if version == 0:
            return 0
        loaded = self.aggregates.load(claims.claim_decider, stream)
        return loaded.version if loaded.state.owner is None else None

    def generate(
        self,
        program_id: str,
        count: int,
        ignore_limit: bool,
        given_fields: Mapping[str, Any],
        context: CommandContext,
    ) -> IssueResult | str:
        """Generate `count` codes now (a result), or start a job for a large generation (its id)."""
        program = self.programs.program(program_id)
        settings = program.settings
        assert settings is not None
        if not 1 <= count <= MAX_GENERATION:
            raise RuleViolated(f"generate 1 to {MAX_GENERATION:,} codes at once", "count")
        values = ly.field_values(settings, dict(given_fields))
        pool, _ = self.pool(program_id)
        left = room(program, pool, ignore_limit)
        if left is not None and count > left:
            raise RuleViolated(
                f"the program holds at most {settings.max_codes:,} codes and has {pool.count:,}: "
                f"{count:,} more do not fit (or ignore the limit)",
                "count",
            )
        if settings.generator is None:
            raise RuleViolated("the program makes no codes: import them, or give it a generator", "generator")
        if isinstance(settings.generator, ly.PatternGenerator):
            parse_pattern(settings.generator.pattern, "generator.pattern").check_count(count)
        if count > SYNC_GENERATION:
            return self._start_job(program_id, count, ignore_limit, values, context)
        return self._generate_now(program, count, ignore_limit, values, context)

    def _generate_now(
        self,
        program: ly.ProgramState,
        count: int,
        ignore_limit: bool,
        values: Mapping[str, Any],
        context: CommandContext,
    ) -> IssueResult:
        made = self.maker.make(program, count, values)
        result = self.issue(program.program_id, made, "generated", context, ignore_limit, values)
        redraws = 0
        pattern = isinstance(program.settings.generator if program.settings else None, ly.PatternGenerator)
        while pattern and result.duplicates and redraws < _REDRAWS:  # drawn codes the program has: draw again
            redraws += 1
            more = self.maker.make(program, len(result.duplicates), values)
            again = self.issue(program.program_id, more, "generated", context, ignore_limit, values)
            result = IssueResult(result.issued + again.issued, again.duplicates)
        return result

    def _start_job(
        self,
        program_id: str,
        count: int,
        ignore_limit: bool,
        values: Mapping[str, Any],
        context: CommandContext,
    ) -> str:
        job_id = self.aggregates.ids.uuid().hex
        start = pj.StartJob(
            job_id, program_id, count, ignore_limit, dict(values), self.aggregates.clock.now()
        )
        self.aggregates.execute(pj.job_decider, pj.job_stream(job_id), start, context)
        return job_id

    def job_chunk(self, job_id: str, done: int) -> None:
        """Issue the job's next chunk if the job is at `done` (a redelivered, older progress does nothing)."""
        loaded = self.aggregates.load(pj.job_decider, pj.job_stream(job_id))
        job = loaded.state
        if job.status != "running" or job.done != done:
            return
        context = CommandContext(actor="processor:promo-code-jobs", source="job", correlation_id=job_id)
        now = self.aggregates.clock.now()
        if job.remaining == 0:
            self.aggregates.execute(pj.job_decider, loaded.stream, pj.EndJob("done", now), context)
            return
        values = dict(job.fields)
        try:
            program = self.programs.program(job.program_id)
            made = self.maker.make(program, min(CHUNK, job.remaining), values)
            # Codes the program has already are not drawn again here: the next chunk makes up for them.
            result = self.issue(
                job.program_id,
                made,
                "generated",
                context,
                job.ignore_limit,
                values,
                also=lambda result: self._job_progress(loaded.stream, loaded.version, job, result, context),
            )
        except (RuleViolated, NotFound) as failure:
            end = pj.EndJob("failed", now, failure.reason)
            self.aggregates.execute(pj.job_decider, loaded.stream, end, context)
            return
        if result.issued == 0:
            end = pj.EndJob("failed", now, "the generator made only codes the program has already")
            self.aggregates.execute(pj.job_decider, loaded.stream, end, context)

    def _job_progress(
        self, stream: str, version: int, job: pj.JobState, result: IssueResult, context: CommandContext
    ) -> list[StreamAppend]:
        if result.issued == 0:
            return []
        command = pj.RecordChunk(result.issued, len(result.duplicates), self.aggregates.clock.now())
        return [self._append((stream, pj.decide(command, job), version), context)]

    def import_codes(
        self, program_id: str, codes: Sequence[tuple[int, str]], context: CommandContext
    ) -> tuple[int, list[dict[str, Any]]]:
        """Issue imported codes (row number, code) in chunks; (imported, the rows skipped with why)."""
        imported = 0
        skipped: list[dict[str, Any]] = []
        for start in range(0, len(codes), CHUNK):
            chunk = codes[start : start + CHUNK]
            made = [GeneratedCode(code) for _, code in chunk]
            result = self.issue(program_id, made, "imported", context)
            imported += result.issued
            skipped += [
                {"row": chunk[index][0], "code": code, "reason": "the program has this code already"}
                for index, code in result.duplicates
            ]
        return imported, skipped

    def preview(self, program_id: str) -> str:
        """A sample code: a pattern's draw, or a fake code the external service makes (`is_test`)."""
        program = self.programs.program(program_id)
        assert program.settings is not None
        made = self.maker.make(program, 1, ly.field_values(program.settings, {}), is_test=True)
        if not made:
            raise GeneratorFailed("the code service answered no code for the preview", "generator.url")
        return made[0].code

    # --- giving out, activating, withdrawing ---------------------------------------------------

    def session(
        self, program: ly.ProgramState, cause: BindingCause, at: datetime, sending: bool = False
    ) -> PoolSession:
        """A session giving out the program's codes at `at` for `cause`; `sending`: for messages."""
        assert program.settings is not None
        may_create = (cause.kind == "campaign" and program.settings.campaign_may_create) or (
            cause.kind == "scenario" and program.settings.scenario_may_create
        )
        pool, version = self.pool(program.program_id)
        return PoolSession(self, program, pool, version, cause, at, may_create, sending)

    def assign(
        self,
        program_id: str,
        profile_id: str,
        cause_id: str,
        cause: BindingCause | None = None,
        context: CommandContext | None = None,
        sending: bool = False,
        message_id: str | None = None,
    ) -> Assigned:
        """Give the profile its code of the program: the one it holds, else the next free one.

        The port of the scenario node, the API and a trigger's render: `cause_id` makes a repeated
        call append nothing new; `cause` defaults to a scenario's; `message_id` is the message that
        carries the code. Refused (RuleViolated, with the reason) when the program is stopped or out
        of its period, or has no free code and may not create one.
        """
        cause = cause or BindingCause(kind="scenario", id=cause_id)
        context = context or CommandContext(actor=f"{cause.kind}:{cause.id}", source=cause.kind)
        context = CommandContext(
            context.actor, context.source, context.correlation_id, f"promo:{cause_id}", context.extra
        )

        def attempt() -> Assigned:
            program = self.programs.program(program_id)
            session = self.session(program, cause, self.aggregates.clock.now(), sending)
            assigned = session.assign(profile_id, message_id)
            self.commit(session.pending(), context)
            return assigned

        return self._in_turn(program_id, attempt)

    def commit(self, pending: Sequence[Pending], context: CommandContext) -> None:
        if pending:
            self.aggregates.store.append_many([self._append(p, context) for p in pending])

    def activate(
        self,
        program_id: str,
        code: str,
        profile_id: str | None,
        at: datetime | None,
        by: str,
        context: CommandContext,
    ) -> Outcome:
        """Record that the code was used (by the profile holding it, or the one named), with who and when."""
        program = self.programs.program(program_id)
        seq = self.seq_of(program_id, code)
        if profile_id is None:
            if program.settings and program.settings.universal:
                raise RuleViolated(
                    "a universal code is held by many: name the profile who used it", "profile_id"
                )
            # the read model finds the holder by its index; the pool decides whether it is one
            holders = self.projection.holders_of(program_id, seq)
            if not holders:
                raise RuleViolated(f"the code {code!r} is not given to anyone", "code")
            profile_id = holders[0]
        command = ActivateCode(program, profile_id, seq, code, at or self.aggregates.clock.now(), by)
        with self.locks.holding(pool_stream(program_id)):
            return self.aggregates.execute(pool_decider, pool_stream(program_id), command, context)

    def release(self, program_id: str, profile_ids: Sequence[str], context: CommandContext) -> Outcome:
        """Take their codes from profiles (unbind): they may be given new ones; the codes are not reused."""
        program = self.programs.program(program_id)
        command = ReleaseCodes(program, tuple(profile_ids), self.aggregates.clock.now())
        with self.locks.holding(pool_stream(program_id)):
            return self.aggregates.execute(pool_decider, pool_stream(program_id), command, context)

    def withdraw(self, program_id: str, code: str, context: CommandContext) -> None:
        """Delete a code: it is never given out again, and its holders lose it."""

        def attempt() -> None:
            program = self.programs.program(program_id)
            seq = self.seq_of(program_id, code)
            pool, version = self.pool(program_id)
            withdrawn = pool_decider.decide(
                WithdrawCode(program, seq, code, self.aggregates.clock.now()), pool
            )
            claim = self.aggregates.load(claims.claim_decider, code_claim_stream(program_id, code))
            release = claims.ReleaseValue(_namespace(program_id), "code", code, str(seq))
            pending: list[Pending] = [
                (pool_stream(program_id), list(withdrawn), version),
                (claim.stream, list(claims.decide(release, claim.state)), claim.version),
            ]
            self.commit(pending, context)

        self._in_turn(program_id, attempt)

    def _append(self, pending: Pending, context: CommandContext) -> StreamAppend:
        stream, events, version = pending
        return StreamAppend(stream, self.aggregates.new_events(stream, events, context), version)


@dataclass
class PoolSession:
    """Codes one caller gives out at one instant: a chunk of a broadcast, or one API or scenario call.

    Each profile that holds no usable code (the pool knows who holds what) is handed the next code
    of the pool as this session leaves it, so a chunk hands out consecutive codes. The pool's own
    decision is made once, in `pending()`, for every profile handed a code in order: the same
    codes, one `PromoCodesBound` for the chunk. `pending()` is what to append, with each stream's
    expected version: all of it at once, or (on a conflict, another process gave codes out
    meanwhile) none, and the caller decides again on the pool as it is then.
    """

    service: PromoCodeService
    program: ly.ProgramState
    pool: PoolState  # as loaded, with the codes this session issued folded in (not its bindings)
    version: int
    cause: BindingCause
    at: datetime
    may_create: bool
    sending: bool = False  # a message carries the codes: a stopped program sends none, held or not
    _issued: list[Event] = field(default_factory=list)
    _handed: list[tuple[str, str | None, int]] = field(default_factory=list)  # (profile, message, seq)
    _queue: list[int] = field(default_factory=list)  # personal codes to hand next, in order
    _claims: list[Pending] = field(default_factory=list)
    _assigned: dict[str, Assigned] = field(default_factory=dict)
    _new_codes: dict[int, str] = field(default_factory=dict)

    def assign(self, profile_id: str, message_id: str | None = None) -> Assigned:
        """The profile's code: the one it holds, else one given out now; RuleViolated when none can be."""
        if profile_id in self._assigned:
            return self._assigned[profile_id]
        refusal = self.program.refusal(self.at)
        if refusal is not None and self.sending:
            raise RuleViolated(refusal, "program_id")
        program_id = self.program.program_id
        holding = self.pool.held(profile_id, self.at)
        if holding is not None:
            code = self.service.code_of(program_id, self.pool, holding.seq)
            found = Assigned(program_id, profile_id, code, holding.seq, holding.expires_at, False)
            self._assigned[profile_id] = found
            return found
        if refusal is not None:
            raise RuleViolated(refusal, "program_id")
        seq = self._next()
        if seq is None and self.may_create:
            self._create()
            seq = self._next()
        if seq is None:
            raise RuleViolated(self._shortage(), "program_id")
        code = self._new_codes.get(seq) or self.service.code_of(program_id, self.pool, seq)
        expires_at = self.pool.expires_at(seq)
        self._handed.append((profile_id, message_id, seq))
        assigned = Assigned(program_id, profile_id, code, seq, expires_at, True)
        self._assigned[profile_id] = assigned
        return assigned

    def _next(self) -> int | None:
        """The code to hand next: the pool's first active one (universal), or the next free one."""
        assert self.program.settings is not None
        if self.program.settings.universal:
            return self.pool.first_active(self.at)
        if not self._queue:
            handed = len(self._handed)  # the pool's cursor has not moved past them: skip as many
            self._queue = self.pool.take(handed + QUEUE, self.at)[handed:][::-1]
        return self._queue.pop() if self._queue else None

    def _create(self) -> None:
        """Make codes on demand (a campaign or scenario may create them when short)."""
        settings = self.program.settings
        assert settings is not None
        count = 1 if settings.universal else ON_DEMAND
        if isinstance(settings.generator, ly.ExternalGenerator):
            count = min(count, settings.generator.max_batch)  # one request to the service
        left = room(self.program, self.pool)
        if left is not None:
            count = min(count, left)
        if count <= 0:
            return
        values = ly.field_values(settings, {})
        made = self.service.maker.make(self.program, count, values, self.cause)
        source: CodeSource = "campaign" if self.cause.kind == "campaign" else "scenario"
        taken = frozenset(self._new_codes.values())
        result, pending = self.service.issue_pending(
            self.program, self.pool, self.version, made, source, values=values, at=self.at, taken=taken
        )
        if not result.issued:
            return
        _, events, _ = pending[0]
        issued = events[0]
        assert isinstance(issued, PromoCodesIssued)
        self._new_codes.update((issued.first_seq + i, code) for i, code in enumerate(issued.codes))
        self.pool = pool_decider.fold(events, self.pool)
        self._issued.extend(events)
        self._claims.extend(pending[1:])
        self._queue = []

    def _shortage(self) -> str:
        assert self.program.settings is not None
        name = self.program.settings.name
        if self.program.settings.universal:
            return f"loyalty program {name!r} has no active code to give"
        return f"loyalty program {name!r} has no free promo codes left"

    def pending(self) -> list[Pending]:
        """What to append: the pool's issues, its one decision for the codes handed out; claims; holdings."""
        pool_events = list(self._issued)
        if self._handed:
            profiles = tuple(p for p, _, _ in self._handed)
            messages = tuple(m for _, m, _ in self._handed)
            bound = pool_decider.decide(
                BindCodes(self.program, profiles, self.cause, self.at, messages), self.pool
            )
            first = bound[0]
            assert isinstance(first, PromoCodesBound)
            assert first.seqs == [s for _, _, s in self._handed], "the pool moved"
            pool_events += bound
        pending: list[Pending] = []
        if pool_events:
            pending.append((pool_stream(self.program.program_id), pool_events, self.version))
        pending += self._claims
        return pending
