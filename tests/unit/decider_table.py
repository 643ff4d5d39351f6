"""Given events, when a command, then events (or an error): the shape of every domain test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from herald.domain.decider import Decider
from herald.domain.errors import DomainError
from herald.domain.events import Event


def then(decider: Decider[Any, Any], given: Sequence[Event], when: Any) -> list[Event]:
    """The events `decider` decides for `when` after `given`."""
    return list(decider.decide(when, decider.fold(given)))


def then_error(
    decider: Decider[Any, Any], given: Sequence[Event], when: Any, error: type[DomainError], path: str = ""
) -> DomainError:
    """Assert `when` after `given` is refused with `error` (at `path`, if given)."""
    with pytest.raises(error) as caught:
        decider.decide(when, decider.fold(given))
    if path:
        assert caught.value.path == path, caught.value
    return caught.value
