"""The comparison words of `{if}`: equal, like, contains, in, gt/gte/lt/lte and their negations.

- `equal` compares numbers as numbers when either side is a number (`5 equal length("par 3")`,
  `lead.age equal "18"` with age 18); dates as instants when either side is a date; anything
  else by its printed text, case-sensitively (a missing value equals `""`).
- `like`: printed texts equal ignoring case. `contains`: the right text occurs in the left
  ignoring case; on a list (a Tags field), some item is `like` the right value.
- `in`: the left value `equal`s an item of the right list, is a key of the right object, or
  occurs (case-sensitively) in the right text.
- `gt`, `gte`, `lt`, `lte`: numbers (and strings spelling numbers) numerically, else dates
  (and ISO strings) in time order; values that are neither are never ordered (false).
- A missing left value contains nothing and is in nothing; the `not_` forms are the negations.
Truth (`{if lead.x}`, `and`, `or`, `not`) is Python's: missing, "", 0, false and empty lists
or objects are false; any other value, including the string "0", is true.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from herald.domain.templating.values import is_number, moment, number, to_text


def equal(left: Any, right: Any) -> bool:
    """`left equal right`."""
    if is_number(left) or is_number(right):
        a, b = number(left), number(right)
        if a is not None and b is not None:
            return a == b
    if isinstance(left, date) or isinstance(right, date):
        x, y = moment(left), moment(right)
        if x is not None and y is not None:
            return x == y
    return to_text(left) == to_text(right)


def like(left: Any, right: Any) -> bool:
    """`left like right`: equal texts, ignoring case."""
    return to_text(left).casefold() == to_text(right).casefold()


def contains(left: Any, right: Any) -> bool:
    """`left contains right`: a substring ignoring case, or a list item `like` right."""
    if left is None:
        return False
    if isinstance(left, list | tuple):
        return any(like(item, right) for item in left)
    return to_text(right).casefold() in to_text(left).casefold()


def member(left: Any, right: Any) -> bool:
    """`left in right`: an item of a list, a key of an object, or a substring of a text."""
    if left is None or right is None:
        return False
    if isinstance(right, list | tuple):
        return any(equal(left, item) for item in right)
    if isinstance(right, Mapping):
        return any(equal(left, key) for key in right)
    return to_text(left) in to_text(right)


def _ordered(left: Any, right: Any, holds: Callable[[Any, Any], bool]) -> bool:
    a, b = number(left), number(right)
    if a is not None and b is not None:
        return holds(a, b)
    x, y = moment(left), moment(right)
    return x is not None and y is not None and holds(x, y)


COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "equal": equal,
    "not_equal": lambda left, right: not equal(left, right),
    "like": like,
    "not_like": lambda left, right: not like(left, right),
    "contains": contains,
    "not_contains": lambda left, right: not contains(left, right),
    "in": member,
    "not_in": lambda left, right: not member(left, right),
    "gt": lambda left, right: _ordered(left, right, lambda a, b: a > b),
    "gte": lambda left, right: _ordered(left, right, lambda a, b: a >= b),
    "lt": lambda left, right: _ordered(left, right, lambda a, b: a < b),
    "lte": lambda left, right: _ordered(left, right, lambda a, b: a <= b),
}
