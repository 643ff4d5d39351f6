"""The commit marks of the messages about to leave, recorded together: one transaction for a turn's.

A gateway awaits its message's mark right before the bytes that commit it leave
(`senders/gateway.py`); nothing leaves until the mark is stored. The first
message to reach its mark leads: it lets the event loop run the other sends
that are ready (`GATHER_TURNS` turns: a batch's sends reach their marks in the
same turns), then appends every mark waiting (`Aggregates.execute_on_many`,
each stream checked against the version its message holds) and hands each
message its state after the mark. So a batch of messages costs one mark
transaction, not one each, and no message leaves before its own mark is
durable: a crash (kill -9) before the append leaves them all unmarked (sent
again on restart, none of them left), after it leaves them all marked (none
sent twice).

A conflict (a message's stream moved on since the attempt: a tracker's hit)
stores nothing of the append: that message's mark is decided on its stream
read again, and the rest are appended together again; an error of the store
is every waiting message's (none of them is sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from herald.domain import deliveries as dl
from herald.infra.aggregates import Aggregates, CommandContext, Loaded
from herald.infra.clock import Clock
from herald.infra.event_store import WrongExpectedVersion

GATHER_TURNS = 2  # event-loop turns the leader waits for the rest of its batch to reach their marks

Decided = Callable[[Loaded[dl.DeliveryState], dl.DeliveryCommand], Loaded[dl.DeliveryState]]


@dataclass(eq=False, slots=True)
class _Waiting:
    loaded: Loaded[dl.DeliveryState]
    marked: asyncio.Future[Loaded[dl.DeliveryState]]


class CommitMarks:
    def __init__(self, aggregates: Aggregates, clock: Clock, context: CommandContext, one: Decided) -> None:
        self.aggregates = aggregates
        self.clock = clock
        self.context = context
        self.one = one  # one message's command decided on its own (read again on a conflict)
        self._waiting: list[_Waiting] = []

    async def mark(self, loaded: Loaded[dl.DeliveryState]) -> Loaded[dl.DeliveryState]:
        """`MessageCommitting` recorded for the message held as `loaded`; its state after the mark."""
        waiting = _Waiting(loaded, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if len(self._waiting) == 1:  # the leader: the others join while it lets them run
            try:
                for _ in range(GATHER_TURNS):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:  # its message will not leave: no mark for it
                self._waiting.remove(waiting)
                raise
            finally:
                batch, self._waiting = self._waiting, []
                self._record(batch)
        return await waiting.marked

    def _record(self, batch: list[_Waiting]) -> None:
        """Every waiting mark in one append; each message its state, or the error (then it is not sent)."""
        command = dl.MarkCommitting(self.clock.now())
        while batch:
            work = [(w.loaded, (command,)) for w in batch]
            try:
                states = self.aggregates.execute_on_many(dl.delivery_decider, work, self.context)
            except WrongExpectedVersion as conflict:  # nothing was stored: the rest again without it
                moved = [w for w in batch if w.loaded.stream == conflict.stream]
                if moved:
                    batch = [w for w in batch if w.loaded.stream != conflict.stream]
                    for waiting in moved:
                        self._alone(waiting, command)
                    continue
                error: BaseException = conflict
            except BaseException as failed:  # a failed store, or the process dying: none of them leaves
                error = failed
            else:
                for waiting, state in zip(batch, states, strict=True):
                    waiting.marked.set_result(state)
                return
            for waiting in batch:
                waiting.marked.set_exception(error)
            return

    def _alone(self, waiting: _Waiting, command: dl.DeliveryCommand) -> None:
        """One message's mark decided on its stream read again (it moved on since its attempt)."""
        try:
            fresh = self.aggregates.load(dl.delivery_decider, waiting.loaded.stream)
            waiting.marked.set_result(self.one(fresh, command))
        except BaseException as error:
            waiting.marked.set_exception(error)
