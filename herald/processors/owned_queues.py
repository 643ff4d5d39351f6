"""The send queues of the partitions a worker owns, read as a channel's sender reads one queue.

Each worker sends the messages of its own partitions. A partition taken over
may hold attempts its previous owner left mid-way (it died between recording
an attempt and its outcome), and they may show in the partition's queue only
after the takeover, once the partition has folded them. So every pass of the
sender asks for the attempts still marked in progress (`interrupted`), and
each is checked against its message's stream: in progress there too, it was
left by someone else (the sender runs its passes one at a time, so none of
its own attempts is in flight meanwhile) and is settled; else its outcome is
recorded and only not folded yet, and it is not asked again until this worker
offers it once more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import chain, zip_longest

from herald.projections.send_queue import SendQueueProjection


class OwnedQueues:
    def __init__(
        self, queues: Callable[[], Mapping[int, SendQueueProjection]], in_progress: Callable[[str], bool]
    ) -> None:
        self._queues = queues
        self._in_progress = in_progress  # whether the message's stream says an attempt is under way
        self._outcome_recorded: set[str] = set()

    def interrupted(self, channel: str) -> list[str]:
        """The owned queues' attempts in progress that nobody is making any more."""
        owned = self._queues()
        listed = [m for k in sorted(owned) for m in owned[k].interrupted(channel)]
        self._outcome_recorded &= set(listed)  # the others' outcomes are folded: they left the queue
        left: list[str] = []
        for message_id in listed:
            if message_id in self._outcome_recorded:
                continue
            if self._in_progress(message_id):
                left.append(message_id)
            else:
                self._outcome_recorded.add(message_id)
        return left

    def due(self, channel: str, now: datetime, limit: int) -> list[str]:
        """Due messages of the owned partitions, taken from each in turn."""
        owned = self._queues()
        pages = [owned[k].due(channel, now, limit) for k in sorted(owned)]
        due = [m for m in chain.from_iterable(zip_longest(*pages)) if m is not None][:limit]
        self._outcome_recorded.difference_update(due)  # attempted again: its next outcome is to be seen
        return due

    def message_of(self, sender_id: str, provider_id: str) -> str | None:
        """Our message a delivery report names, in whichever owned partition holds it."""
        owned = self._queues()
        found = (owned[k].message_of(sender_id, provider_id) for k in sorted(owned))
        return next((m for m in found if m is not None), None)

    def waiting(self) -> int:
        return sum(queue.waiting() for queue in self._queues().values())
