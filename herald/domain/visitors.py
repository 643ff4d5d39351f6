"""Erasing an anonymous visitor (GDPR) that no `identify` ever linked to a profile.

A visitor's tracked events (`anonymous-<id>`) are sealed under a key of its own; erasing a profile
destroys the keys of the visitors linked to it. A visitor never linked has no profile to erase, so
it is erased by its own command: `EraseVisitor` records `VisitorErased` on its stream, after which
the caller destroys its key. Rules:
- only a visitor with tracked events can be erased (else 404: there is nothing to erase);
- a visitor identified as a profile is erased with that profile, not alone (its events were carried
  to the profile, whose erasure covers both): the command names the profiles, and is refused;
- erasing an erased visitor records nothing again (the caller's scrubs may run again, harmlessly).
Events tracked for the same id after its erasure are stored with erased values (its key is gone),
as for an erased profile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from herald.domain.decider import Decider
from herald.domain.errors import NotFound, RuleViolated
from herald.domain.events import Event, registry
from herald.domain.tracking import ActivityTracked


@registry.register("VisitorErased")
class VisitorErased(Event):
    """The visitor's key is destroyed: its tracked events' properties and context read as erased."""

    anonymous_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class VisitorState:
    tracked: bool = False
    erased: bool = False


def evolve(state: VisitorState, event: Event) -> VisitorState:
    match event:
        case ActivityTracked():
            return replace(state, tracked=True)
        case VisitorErased():
            return replace(state, erased=True)
        case _:
            return state


@dataclass(frozen=True, slots=True)
class EraseVisitor:
    """Erase the visitor; `linked_to` is the profiles it was identified as (a snapshot of the links)."""

    anonymous_id: str
    at: datetime
    linked_to: tuple[str, ...] = ()


def decide(command: EraseVisitor, state: VisitorState) -> list[Event]:
    if not state.tracked:
        raise NotFound(f"no anonymous visitor {command.anonymous_id!r} was tracked", "anonymous_id")
    if command.linked_to:
        profiles = ", ".join(command.linked_to)
        raise RuleViolated(
            f"the visitor was identified as profile {profiles}: erase the profile, which erases the visitor",
            "anonymous_id",
        )
    if state.erased:
        return []
    return [VisitorErased(anonymous_id=command.anonymous_id, at=command.at)]


visitor_decider: Decider[EraseVisitor, VisitorState] = Decider(VisitorState(), decide, evolve)
