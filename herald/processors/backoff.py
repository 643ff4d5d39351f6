"""Backing off after failures: how long to wait before the next try, and one log line per failure.

The runtime keeps one `Backoff` per consumer (its failures on one event) and
the server one per loop (timers, sending): after a failure the next try waits
`first_delay`, doubling each time up to `max_delay`, so a failure that keeps
coming costs a log line per wait, never a hot loop or a traceback storm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from herald.infra.failures import describe


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` tries of one event before it is parked, waiting `first_delay`, doubled each time."""

    attempts: int = 5
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)

    def delay(self, failures: int) -> timedelta:
        """The wait after the `failures`-th failure in a row."""
        doubled: timedelta = self.first_delay * 2 ** min(max(failures - 1, 0), 30)
        return min(doubled, self.max_delay)


class Backoff:
    """The failures in a row of one loop or consumer, and when it may try again."""

    def __init__(self, name: str, policy: RetryPolicy, logger: logging.Logger) -> None:
        self.name = name
        self.policy = policy
        self._log = logger
        self.failures = 0  # in a row
        self.failures_total = 0  # since the process started (the metrics' counter)
        self.retry_at: datetime | None = None
        self.last_error = ""

    def failed(self, error: BaseException, now: datetime, what: str = "") -> timedelta:
        """Count a failure, log its one line, and return how long to wait before the next try."""
        self.failures += 1
        self.failures_total += 1
        self.last_error = describe(error, where=True)
        delay = self.policy.delay(self.failures)
        self.retry_at = now + delay
        self._log.warning(
            "%s failed%s: %s; failure %d in a row, next try in %s",
            self.name,
            f" {what}" if what else "",
            self.last_error,
            self.failures,
            _seconds(delay),
        )
        return delay

    def succeeded(self) -> None:
        """The try passed: the next failure starts a new run of waits."""
        if self.failures:
            self._log.info("%s recovered after %d failures in a row", self.name, self.failures)
        self.reset()

    def reset(self) -> None:
        self.failures = 0
        self.retry_at = None
        self.last_error = ""

    def waiting(self, now: datetime) -> bool:
        return self.retry_at is not None and now < self.retry_at


def _seconds(delay: timedelta) -> str:
    return f"{delay.total_seconds():g} s"
