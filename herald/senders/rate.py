"""A send rate shared by every gateway: at most N sends start in any one second.

The rate is a sliding one-second window (a log of start times), not a plain
token bucket: a token bucket holding a second's worth lets twice the rate
start in the first second after an idle spell, and a provider's limit must
never be exceeded in any second. A burst of one second's worth may still
start at once. A fractional rate r admits floor(r) sends per floor(r)/r
seconds (0.5 per second: one every two seconds).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class SendRate:
    """At most `per_second` sends start in any one second; a second's worth may start at once."""

    def __init__(
        self, per_second: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        if not per_second > 0:
            raise ValueError("a send rate must be above zero")
        self._count = max(1, math.floor(per_second))
        self._window = self._count / per_second
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()  # waiters queue in order instead of racing for each free place

    async def acquire(self) -> None:
        """Wait until one more send may start, and count it as started."""
        async with self._lock:
            now = self._clock()
            while self._starts and self._starts[0] <= now - self._window:
                self._starts.popleft()
            if len(self._starts) >= self._count:
                frees_at = self._starts.popleft() + self._window
                await self._sleep(frees_at - now)
                # A sleep may end a hair early (float rounding, timer resolution): start no sooner.
                now = max(self._clock(), frees_at)
            self._starts.append(now)
