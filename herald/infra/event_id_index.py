"""Which event ids the log holds: 64-bit hashes of every stored id, with the positions they sit at.

The store's exactly-once rule needs "is this id stored?" for every appended
event. A unique B-tree index on 16 random bytes answers it, but every append
then inserts into a random place of a tree that grows without bound (measured:
a third of the raw insert rate, falling further once the tree outgrows the page
cache). Here the log's only key is its position, and this in-memory index maps
`hash64(event id)` to the positions of the events with that hash:

- a hash not in the index means the id is not stored (no false negatives:
  every stored event's hash is added once its append commits, and a writer
  catches up on other processes' appends before it decides);
- a hash in the index names candidate positions; the store reads those rows
  and compares the full 16-byte ids, so two ids that share a hash (about one
  pair in 10^10 among 10^5 events) are told apart, never confused.

Memory: the latest additions in a dict, merged in bulk into sorted numpy
arrays (16 bytes an event); once those hold `spill_at` events they move to
disk (`event_id_runs.py`), leaving about 2 bytes an event in memory, so the
index no longer grows the process by 16 bytes for every event ever stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from herald.infra.event_id_runs import Keys, SpilledRuns

IdHash = Callable[[Sequence[bytes]], list[int]]
"""16-byte event ids → their 64-bit hashes (unsigned); replaceable so tests can force collisions."""

_MERGE_AT = 65_536  # recent entries kept in a dict before they join the sorted arrays
_VECTOR_FROM = 32  # below this many ids, numpy's call overhead costs more than a Python loop
_SPILL_AT = 1 << 19  # sorted entries held in memory (8 MiB) before they move to disk


def uuid_hash(event_ids: Sequence[bytes]) -> list[int]:
    """The two 64-bit halves of each id XORed: ids are already uniformly random (uuid4, uuid5)."""
    if len(event_ids) < _VECTOR_FROM:
        return [int.from_bytes(i[:8], "little") ^ int.from_bytes(i[8:], "little") for i in event_ids]
    halves = np.frombuffer(b"".join(event_ids), dtype="<u8").reshape(-1, 2)
    return (halves[:, 0] ^ halves[:, 1]).tolist()  # type: ignore[no-any-return]


class EventIdIndex:
    """hash → positions for every event up to `covered`; see the module docstring."""

    def __init__(
        self, id_hash: IdHash = uuid_hash, spill_dir: Path | None = None, spill_at: int | None = None
    ) -> None:
        self.id_hash = id_hash
        self._spill_at = spill_at or _SPILL_AT
        self._spilled = SpilledRuns(spill_dir)
        self.covered = 0  # every event at or below this position is indexed
        self._keys = np.empty(0, dtype=np.uint64)  # sorted
        self._positions = np.empty(0, dtype=np.int64)  # aligned with _keys
        # Recent additions: a hash's first position, and the rare further ones (a hash collision)
        # apart, so a batch of new hashes joins in one `dict.update` instead of a loop per event.
        self._recent: dict[int, int] = {}
        self._more: dict[int, list[int]] = {}

    def __len__(self) -> int:
        in_memory = len(self._keys) + len(self._recent) + sum(len(p) for p in self._more.values())
        return in_memory + len(self._spilled)

    def add(self, hashes: Sequence[int], positions: Sequence[int], covered: int) -> None:
        """Index events (hash, position) and mark every position up to `covered` as indexed."""
        if len(hashes) != len(positions):
            raise ValueError("one position per hash")
        recent = self._recent
        if recent.keys().isdisjoint(hashes) and len(set(hashes)) == len(hashes):
            recent.update(zip(hashes, positions, strict=True))
        else:
            for key, position in zip(hashes, positions, strict=True):
                if key in recent:
                    self._more.setdefault(key, []).append(position)
                else:
                    recent[key] = position
        self.covered = max(self.covered, covered)
        if len(recent) >= max(_MERGE_AT, len(self._keys) // 32):
            self._merge()

    def candidates(self, hashes: Sequence[int]) -> dict[int, list[int]]:
        """For each of `hashes` that the index holds: the positions of events with that hash."""
        wanted = np.asarray(hashes, dtype=np.uint64)  # once, for both parts
        found = self._in_memory(hashes, wanted)
        self._spilled.candidates(hashes, wanted, found)
        return found

    def close(self) -> None:
        self._spilled.close()

    def _in_memory(self, hashes: Sequence[int], wanted: Keys) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        recent = self._recent
        for key in hashes:
            held = recent.get(key)
            if held is not None:
                found[key] = [held, *self._more.get(key, ())]
        keys = self._keys
        if not len(keys):
            return found
        if len(hashes) < _VECTOR_FROM:
            for key in hashes:
                left = int(keys.searchsorted(key))
                if left < len(keys) and keys[left] == key:
                    right = int(keys.searchsorted(key, side="right"))
                    found.setdefault(key, []).extend(self._positions[left:right].tolist())
            return found
        lefts = keys.searchsorted(wanted, side="left")
        rights = keys.searchsorted(wanted, side="right")
        for i in np.nonzero(rights > lefts)[0].tolist():
            found.setdefault(hashes[i], []).extend(self._positions[lefts[i] : rights[i]].tolist())
        return found

    def _merge(self) -> None:
        more = [(key, position) for key, held in self._more.items() for position in held]
        new_keys = np.fromiter(self._recent.keys(), np.uint64, len(self._recent))
        new_positions = np.fromiter(self._recent.values(), np.int64, len(self._recent))
        keys = np.concatenate([self._keys, new_keys, np.fromiter((k for k, _ in more), np.uint64, len(more))])
        positions = np.concatenate(
            [self._positions, new_positions, np.fromiter((p for _, p in more), np.int64, len(more))]
        )
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._positions = positions[order]
        self._recent = {}
        self._more = {}
        if len(self._keys) >= self._spill_at:
            self._spilled.spill(self._keys, self._positions)
            self._keys = np.empty(0, dtype=np.uint64)
            self._positions = np.empty(0, dtype=np.int64)
