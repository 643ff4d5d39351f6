"""The coordinator: the little that one worker does for every partition at once.

What truly needs the whole log in order, and so stays out of the partitions:
- the campaign run processor and the chain of broadcasts: a run freezes its
  audience over every profile (its limit, its split-test slice, the cursor the
  next run resumes from are places in one ordered list), and each chunk is
  gated by the sends of the chunks before it, in every partition;
- the durable timers' tick: campaign runs, static segment recalculations,
  membership windows, delayed unsubscribes, delivery waits (each read from the
  merged read models, each fired once).

They run in the worker holding `coordinator.lock`; the others stand by and
one takes over when it dies. The processors read the events from the store
(not from a partition) with their own checkpoints, and apply an event they
consume only once every partition has folded the log up to it (every
partition receives every global event, so each has then folded everything
before it); other events they pass. That is the whole of the old sequencer:
a barrier for the few events that read across partitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from herald.infra.data_dir_lock import FileLock
from herald.infra.event_store import EventFilter, EventStore
from herald.processors.partition_worker import pause
from herald.processors.runtime import InProcessRuntime

log = logging.getLogger(__name__)
_SCAN = 5000  # positions looked at past the barrier per pass for one the coordinator must wait at
_IDLE_SECONDS = 0.05
_STANDBY_SECONDS = 1.0


class Coordinator:
    """Runs the cross-partition processors behind the partitions, and the timers, while it holds the lock."""

    def __init__(
        self,
        store: EventStore,
        runtime: InProcessRuntime,
        consumed: frozenset[str],
        folded: Callable[[], int],
        tick: Callable[[], None],
        lock: FileLock,
        tick_seconds: float = 5.0,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.runtime = runtime
        self._store = store
        self._filter = EventFilter(consumed)  # the event types the runtime's processors act on
        self._folded = folded  # the position every partition has folded through
        self._tick = tick
        self.lock = lock
        self._tick_seconds = tick_seconds
        self._last_tick: float | None = None
        self._monotonic = monotonic

    def run_once(self) -> int:
        """Process what every partition has folded far enough for; how many events were passed."""
        head = self._store.head_position()
        return self.runtime.drain(until=self._until(head))

    def _until(self, head: int) -> int:
        """The last position the processors may reach now: before the first event they consume that
        some partition has not folded yet, else the head (looking at most `_SCAN` positions past the
        barrier, and at only the events of the types they consume: the store filters, so a pass over a
        bulk of profile events they pass builds none of them)."""
        start = min(self.runtime.positions().values(), default=head)
        seen = max(start, self._folded())
        if seen >= head:
            return head
        last = min(seen + _SCAN, head)
        waiting = self._store.read_range(seen + 1, last, self._filter)
        return waiting[0].position - 1 if waiting else last

    def tick_if_due(self, now: float) -> None:
        if self._last_tick is not None and now - self._last_tick < self._tick_seconds:
            return
        self._last_tick = now
        try:
            self._tick()
        except Exception:  # a failing timer must not stop the others; the next tick retries it
            log.exception("timers failed")

    async def run(self, stopping: asyncio.Event) -> None:
        """Stand by until the lock is free, then coordinate until `stopping`."""
        loop = asyncio.get_running_loop()
        clock = self._monotonic or loop.time
        while not stopping.is_set():
            if not self.lock.try_acquire():
                await pause(stopping, _STANDBY_SECONDS)
                continue
            try:
                done = self.run_once()
            except Exception:  # a poisoned batch must not stop the coordinator; the next pass retries it
                log.exception("coordinated processors failed")
                done = 0
            self.tick_if_due(clock())
            await pause(stopping, 0 if done else _IDLE_SECONDS)
        self.lock.release()
