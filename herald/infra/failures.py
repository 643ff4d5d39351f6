"""Unexpected errors: told in one line, and sorted into those worth retrying and those to give up on.

A *transient* failure is one of the surroundings, not of the work: the report
store or a relay cannot be reached, a SQLite file is locked, a disk is full.
Retrying later can cure it, so a processor backs off and retries it without
end, and a render never records it as the message's failure. Anything else
is taken to fail the same way every time (a poison event, a bug), so after a
few tries it is parked or recorded, and work goes on.
"""

from __future__ import annotations

import sqlite3
import traceback
from pathlib import Path

MAX_DESCRIPTION = 500


class Unavailable(Exception):
    """A dependency could not be reached (the report server, a broker): worth retrying later."""


TRANSIENT: tuple[type[BaseException], ...] = (Unavailable, OSError, sqlite3.OperationalError)


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the surroundings failed, so that trying again later may succeed."""
    return isinstance(error, TRANSIENT)


def describe(error: BaseException, where: bool = False) -> str:
    """`Type: message` on one line (cut to `MAX_DESCRIPTION`), with the innermost frame when `where`."""
    text = " ".join(str(error).split()) or "(no message)"
    line = f"{type(error).__name__}: {text}"
    if len(line) > MAX_DESCRIPTION:
        line = line[: MAX_DESCRIPTION - 1] + "…"
    if where and error.__traceback__ is not None:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        line += f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    return line


def formatted(error: BaseException) -> str:
    """The whole traceback, for the record kept of a parked event (never for the log)."""
    return "".join(traceback.format_exception(error))
