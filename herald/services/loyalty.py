"""Loyalty programs: create, change, activate, stop and delete, each short name claimed by one program.

Decisions where the guide is silent:
- Program ids are short sequential numbers, like other catalog objects.
- The template short name is unique: it is claimed (`domain/claims.py`, in the
  `loyalty` namespace) in the same atomic append as the program event, so two
  programs racing for one name cannot both take it; a rename releases the old
  name and claims the new one at once; a deleted program keeps its name.
"""

from __future__ import annotations

from datetime import datetime

from herald.domain import claims
from herald.domain import loyalty as ly
from herald.domain.decider import Decider
from herald.domain.errors import AlreadyExists, NotFound
from herald.domain.events import Event
from herald.infra.event_store import StreamAppend, WrongExpectedVersion
from herald.projections.loyalty import LoyaltyProjection
from herald.services.aggregates import Aggregates, CommandContext, Loaded, Outcome

NAMESPACE = "loyalty"
SHORTCODE = "shortcode"
_ATTEMPTS = 5


def shortcode_stream(shortcode: str) -> str:
    return claims.claim_stream(NAMESPACE, SHORTCODE, shortcode)


class LoyaltyPrograms:
    def __init__(self, aggregates: Aggregates, projection: LoyaltyProjection) -> None:
        self.aggregates = aggregates
        self.projection = projection

    # --- reading -------------------------------------------------------------------------------

    def loaded(self, program_id: str, path: str = "program_id") -> Loaded[ly.ProgramState]:
        """The program and its stream version; NotFound unless it exists."""
        loaded = self.aggregates.load(ly.program_decider, ly.loyalty_stream(program_id))
        if not loaded.state.exists:
            raise NotFound(f"no loyalty program {program_id!r}", path)
        return loaded

    def program(self, program_id: str, path: str = "program_id") -> ly.ProgramState:
        return self.loaded(program_id, path).state

    def by_shortcode(self, shortcode: str) -> ly.ProgramState | None:
        """The live program whose template name is `shortcode` (the macro `{loyalty.<it>.promocode}`)."""
        owner = self.aggregates.load(claims.claim_decider, shortcode_stream(shortcode)).state.owner
        if owner is None:
            return None
        state = self.aggregates.load(ly.program_decider, ly.loyalty_stream(owner)).state
        return state if state.exists else None

    # --- commands ------------------------------------------------------------------------------

    def create(
        self, settings: ly.ProgramSettings, active: bool, context: CommandContext
    ) -> tuple[str, Outcome]:
        """Create a program under the next free id, claiming its short name."""
        number = self.projection.count_programs()
        now = self.aggregates.clock.now()
        for _ in range(_ATTEMPTS * 20):
            number += 1
            program_id = str(number)
            stream = ly.loyalty_stream(program_id)
            if self.aggregates.store.stream_version(stream) != 0:
                continue
            events = ly.decide(ly.CreateProgram(program_id, settings, now, active), ly.ProgramState())
            try:
                return program_id, self._append(program_id, stream, 0, events, context, None)
            except WrongExpectedVersion as conflict:
                if conflict.stream == stream:
                    continue  # another request took this id between the probe and the append
                raise
        raise AssertionError("no free program id")

    def change(
        self,
        program_id: str,
        settings: ly.ProgramSettings,
        context: CommandContext,
        expected_version: int | None = None,
    ) -> Outcome:
        """Change the settings; a new short name is claimed and the old one released, atomically."""
        for attempt in range(_ATTEMPTS):
            loaded = self.loaded(program_id)
            if expected_version is not None and loaded.version != expected_version:
                raise WrongExpectedVersion(loaded.stream, expected_version, loaded.version)
            events = ly.decide(
                ly.ChangeProgram(program_id, settings, self.aggregates.clock.now()), loaded.state
            )
            before = loaded.state.settings
            assert before is not None
            try:
                return self._append(
                    program_id, loaded.stream, loaded.version, events, context, before.shortcode
                )
            except WrongExpectedVersion:
                if expected_version is not None or attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def activate(self, program_id: str, context: CommandContext) -> Outcome:
        return self._execute(program_id, ly.ActivateProgram(program_id, self._now()), context)

    def stop(self, program_id: str, context: CommandContext) -> Outcome:
        return self._execute(program_id, ly.StopProgram(program_id, self._now()), context)

    def delete(self, program_id: str, context: CommandContext) -> Outcome:
        return self._execute(program_id, ly.DeleteProgram(program_id, self._now()), context)

    def _execute(self, program_id: str, command: ly.ProgramCommand, context: CommandContext) -> Outcome:
        decider: Decider[ly.ProgramCommand, ly.ProgramState] = ly.program_decider
        return self.aggregates.execute(decider, ly.loyalty_stream(program_id), command, context)

    def _now(self) -> datetime:
        return self.aggregates.clock.now()

    def _append(
        self,
        program_id: str,
        stream: str,
        version: int,
        events: list[Event],
        context: CommandContext,
        old_shortcode: str | None,
    ) -> Outcome:
        """The program's events with the short name's claim (and the old name's release) in one append."""
        if not events:
            return Outcome(stream, (), version)
        first = events[0]
        new = (
            first.settings if isinstance(first, ly.LoyaltyProgramCreated | ly.LoyaltyProgramChanged) else None
        )
        appends = [StreamAppend(stream, self.aggregates.new_events(stream, events, context), version)]
        if new is not None and new.shortcode != old_shortcode:
            appends.append(self._claim(program_id, new.shortcode, context))
            if old_shortcode is not None:
                appends.append(self._release(program_id, old_shortcode, context))
        results = self.aggregates.store.append_many(appends)
        envelopes = appends[0].events
        return Outcome(stream, tuple(e.event_id for e in envelopes), results[0].stream_version, tuple(events))

    def _claim(self, program_id: str, shortcode: str, context: CommandContext) -> StreamAppend:
        claim_stream = shortcode_stream(shortcode)
        loaded = self.aggregates.load(claims.claim_decider, claim_stream)
        command = claims.ClaimValue(NAMESPACE, SHORTCODE, shortcode, program_id, "shortcode")
        try:
            claimed = claims.decide(command, loaded.state)
        except AlreadyExists:
            raise AlreadyExists(
                f"the template name {shortcode!r} is taken by loyalty program {loaded.state.owner}",
                "shortcode",
            ) from None
        return StreamAppend(
            claim_stream, self.aggregates.new_events(claim_stream, claimed, context), loaded.version
        )

    def _release(self, program_id: str, shortcode: str, context: CommandContext) -> StreamAppend:
        claim_stream = shortcode_stream(shortcode)
        loaded = self.aggregates.load(claims.claim_decider, claim_stream)
        released = claims.decide(
            claims.ReleaseValue(NAMESPACE, SHORTCODE, shortcode, program_id), loaded.state
        )
        return StreamAppend(
            claim_stream, self.aggregates.new_events(claim_stream, released, context), loaded.version
        )
