"""Promo codes in messages: what `{loyalty.<name>.promocode}` renders to, and how the code is given out.

- A broadcast chunk (`ChunkCodes`): one session per program for the whole
  chunk; the messages' codes are decided on the pool one after another and
  appended as the chunk's effects, atomically with the chunk's decisions
  (one `PromoCodesBound` per program and chunk, a holding per new profile).
  A conflict (another process gave codes of the pool out meanwhile) fails
  the chunk's append, and the run decides the chunk again.
- A trigger or a single send (`immediate`): the code is given out at once.
- A test send or a preview (`preview`): the code the profile holds, else a
  sample (a pattern's draw, the external service's `is_test` code, or the
  next free code), never given out.
- Sending a queued message (and its web version): the codes it was queued
  with (`MessageQueued.promo_codes`), so the message shows what was given.

A code that cannot be given (no program has the name, it is stopped or out
of its period, no free code and none may be created, the external service
failed) fails that message with the reason (`RenderFailed`), never the chunk.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from herald.domain import loyalty as ly
from herald.domain.errors import RuleViolated
from herald.domain.promo_pool import BindingCause
from herald.domain.templates import RenderFailed
from herald.infra.ids import deterministic_id
from herald.processors.runtime import Emission
from herald.services.aggregates import CommandContext
from herald.services.promo_codes import PoolSession, PromoCodeService


class MessageCodes:
    """One message's codes, each got from `give(program, shortcode)`; `used` is what it rendered."""

    def __init__(
        self, programs: Callable[[str], ly.ProgramState | None], give: Callable[[ly.ProgramState], str]
    ) -> None:
        self._programs = programs
        self._give = give
        self.used: dict[str, str] = {}

    def __call__(self, shortcodes: frozenset[str]) -> Mapping[str, str]:
        for shortcode in sorted(shortcodes - self.used.keys()):
            program = self._programs(shortcode)
            path = f"loyalty.{shortcode}"
            if program is None:
                raise RenderFailed(f"no loyalty program has the template name {shortcode!r}", path)
            try:
                self.used[shortcode] = self._give(program)
            except RuleViolated as refused:
                raise RenderFailed(f"promo code of {shortcode!r}: {refused.reason}", path) from None
        return self.used


class ChunkCodes:
    """The codes a chunk of one campaign run gives out, appended with the chunk's decisions."""

    def __init__(self, service: PromoCodeService, cause: BindingCause, at: datetime) -> None:
        self._service = service
        self._cause = cause
        self._at = at
        self._sessions: dict[str, PoolSession] = {}
        self._programs: dict[str, ly.ProgramState | None] = {}  # by template name, looked up once a chunk

    def message(self, profile_id: str, message_id: str) -> MessageCodes:
        def give(program: ly.ProgramState) -> str:
            session = self._sessions.get(program.program_id)
            if session is None:
                session = self._service.session(program, self._cause, self._at, sending=True)
                self._sessions[program.program_id] = session
            return session.assign(profile_id, message_id).code

        return MessageCodes(self._program, give)

    def _program(self, shortcode: str) -> ly.ProgramState | None:
        if shortcode not in self._programs:
            self._programs[shortcode] = self._service.programs.by_shortcode(shortcode)
        return self._programs[shortcode]

    def emissions(self, seed: str) -> list[Emission]:
        """The chunk's appends as a reactor's emissions, with ids derived from `seed` (the chunk)."""
        found: list[Emission] = []
        for session in self._sessions.values():
            for stream, events, version in session.pending():
                for index, event in enumerate(events):
                    found.append(
                        Emission(
                            stream,
                            event.type_name,
                            event.to_data(),
                            self._at,
                            # the expected version guards the stream's first event of this append
                            version if index == 0 else version + index,
                            event.schema_version,
                            event_id=_event_id(seed, stream, index),
                        )
                    )
        return found


def _event_id(seed: str, stream: str, index: int) -> uuid.UUID:
    return deterministic_id("promo-codes", seed, stream, index)


class CampaignPromoCodes:
    """Makes the promo-code port of a message for each way a campaign renders one."""

    def __init__(self, service: PromoCodeService) -> None:
        self.service = service

    def chunk(self, campaign_id: str, campaign_name: str, at: datetime) -> ChunkCodes:
        cause = BindingCause(kind="campaign", id=campaign_id, name=campaign_name)
        return ChunkCodes(self.service, cause, at)

    def immediate(
        self, campaign_id: str, campaign_name: str, profile_id: str, message_id: str
    ) -> MessageCodes:
        """A trigger's or single send's codes, given out at once (the message id makes a retry a no-op)."""
        cause = BindingCause(kind="campaign", id=campaign_id, name=campaign_name)
        context = CommandContext(actor=f"campaign:{campaign_id}", source="campaign")

        def give(program: ly.ProgramState) -> str:
            program_id = program.program_id
            given = self.service.assign(program_id, profile_id, message_id, cause, context, True, message_id)
            return given.code

        return MessageCodes(self.service.programs.by_shortcode, give)

    def preview(self, profile_id: str | None) -> MessageCodes:
        """Codes to look at, never given out: the profile's own, else a sample."""
        now = self.service.aggregates.clock.now()

        def show(program: ly.ProgramState) -> str:
            pool, _ = self.service.pool(program.program_id)
            held = pool.held(profile_id, now) if profile_id is not None else None
            if held is not None:
                return self.service.code_of(program.program_id, pool, held.seq)
            if program.settings is not None and program.settings.generator is not None:
                return self.service.preview(program.program_id)
            free = pool.first_active(now) if program.settings and program.settings.universal else None
            free = free if free is not None else next(iter(pool.take(1, now)), None)
            if free is None:
                raise RuleViolated("the program has no code to show", "program_id")
            return self.service.code_of(program.program_id, pool, free)

        return MessageCodes(self.service.programs.by_shortcode, show)
