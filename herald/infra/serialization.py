"""JSON in and out with orjson (the chosen serializer), with Herald's conventions."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)


def dumps_sorted(value: Any) -> bytes:
    """Canonical JSON (sorted keys): for checksums that must not depend on dict order."""
    return orjson.dumps(value, option=_OPTIONS | orjson.OPT_SORT_KEYS)


loads = orjson.loads
