"""How template values print, and how they read as numbers and dates.

Printing (`to_text`): a missing value (None) prints as nothing; booleans as
`true`/`false`; whole floats without `.0` (8000.0 → `8000`); dates as ISO
(`2020-06-22`), datetimes as RFC 3339 with `Z` for UTC; lists as their items
joined by `, ` (`{lead.phones}` → `+7900…, +7901…`); objects as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_NUMERIC = re.compile(r"[+-]?\d+(?:\.\d+)?")


def to_text(value: Any) -> str:
    """The value as it is inserted into a message."""
    if type(value) is str:  # the common cases, tested first by exact type
        return value
    if value is None:
        return ""
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return plain_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return plain_number(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(to_text(item) for item in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), ensure_ascii=False, default=to_text)
    return str(value)


def plain_number(value: int | float | Decimal) -> str:
    """A number in plain decimal digits: no exponent, no `.0` on whole values."""
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        text = repr(value)  # the shortest digits that read back as the value
        # Only an exponent (`1e-07`) or inf/nan need Decimal's spelling; the rest is plain already.
        return text if "e" not in text and "n" not in text else format(Decimal(text), "f")
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def is_number(value: Any) -> bool:
    """True for int, float and Decimal values (booleans are not numbers)."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def numeric_text(value: Any) -> str | None:
    """A string that spells a decimal number (`"8000"`, `"-1.50"`), stripped; else None."""
    if isinstance(value, str) and _NUMERIC.fullmatch(text := value.strip()):
        return text
    return None


def number(value: Any) -> int | float | Decimal | None:
    """The value as a number: numbers themselves and strings that spell one; else None."""
    if is_number(value):
        return value  # type: ignore[no-any-return]
    text = numeric_text(value)
    if text is None:
        return None
    return float(text) if "." in text else int(text)


def date_value(value: Any) -> date | datetime | None:
    """The value as a date or datetime: those themselves and ISO 8601 strings; else None."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def moment(value: Any) -> datetime | None:
    """The value as an aware datetime (dates at midnight, naive times as UTC), for comparisons."""
    found = date_value(value)
    if found is None:
        return None
    if not isinstance(found, datetime):
        found = datetime(found.year, found.month, found.day)
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def is_empty(value: Any) -> bool:
    """True for a value the per-template defaults replace: missing, "" or an empty list/object."""
    return value is None or value == "" or (isinstance(value, list | tuple | Mapping) and not value)
