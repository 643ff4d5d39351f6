"""Erasing an anonymous visitor: given events, when `EraseVisitor`, then events or the refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.domain.errors import DomainError, NotFound, RuleViolated
from herald.domain.events import Event
from herald.domain.tracking import ActivityTracked
from herald.domain.visitors import EraseVisitor, VisitorErased, visitor_decider
from tests.unit.decider_table import then, then_error

T0 = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 4, 2, 10, 0, tzinfo=UTC)
VISIT = ActivityTracked(database_id="1", anonymous_id="v1", name="Viewed", at=T0)
ERASED = VisitorErased(anonymous_id="v1", at=T1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [([VISIT], [ERASED]), ([VISIT, ERASED], [])],
    ids=["a tracked visitor is erased", "erasing it again records nothing"],
)
def test_erase_visitor(given: list[Event], expected: list[Event]) -> None:
    assert then(visitor_decider, given, EraseVisitor("v1", T1)) == expected


@pytest.mark.parametrize(
    ("given", "linked_to", "error"),
    [([], (), NotFound), ([VISIT], ("p7",), RuleViolated)],
    ids=["a visitor never tracked", "a visitor identified as a profile goes with the profile"],
)
def test_erase_visitor_refused(
    given: list[Event], linked_to: tuple[str, ...], error: type[DomainError]
) -> None:
    then_error(visitor_decider, given, EraseVisitor("v1", T1, linked_to), error, "anonymous_id")
