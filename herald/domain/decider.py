"""The decider: an aggregate as three plain things (Chassaing's functional event sourcing).

`decide(command, state) -> events` holds every rule and raises a DomainError;
`evolve(state, event) -> state` never fails and never decides; `initial` is
the state of an empty stream. Commands carry everything impure the decision
needs (the time, new ids, snapshots of other aggregates), so deciders stay pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from herald.domain.events import Event

C = TypeVar("C")
S = TypeVar("S")


@dataclass(frozen=True)
class Decider(Generic[C, S]):
    initial: S
    decide: Callable[[C, S], Sequence[Event]]
    evolve: Callable[[S, Event], S]

    def fold(self, events: Iterable[Event], state: S | None = None) -> S:
        """The state after `events`, starting from `state` (or `initial`)."""
        current = self.initial if state is None else state
        for event in events:
            current = self.evolve(current, event)
        return current
