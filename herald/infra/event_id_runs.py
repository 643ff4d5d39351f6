"""The event-id index's cold part: sorted runs of (hash, position) on disk, behind one Bloom filter.

Held in memory, the index of every stored id grows by 16 bytes an event for
as long as the log grows (the 30-minute soak's whole RSS growth: 2,022 events/s
× 16 bytes = 1.9 MB/min, measured 2.1). So the index keeps only its newest
entries in memory (`event_id_index.py`) and spills the older ones here, as
runs: each a sorted array of hashes followed by their positions, in one
unlinked temporary file (the kernel's page cache holds it, not the process;
it vanishes with the process however it ends, and the index is rebuilt from
the log on the next start anyway).

What stays in memory: a Bloom filter over every spilled hash (12 bits a hash,
8 probes: about 0.3 % false positives when full; made again half as large
again when it is, reading the runs back) and each run's fences (its every
512th hash). A new event's hash (nearly always absent) is answered by the
filter alone. A hash the filter may hold is looked up in every run: the
fences name the 4 KiB block it would be in, read with one `pread`. Runs are
not merged: a duplicate older than the memory part costs one read per run
(half a million events a run), the rare case of a very late resend.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

Keys = npt.NDArray[np.uint64]
Positions = npt.NDArray[np.int64]

_BLOCK = 512  # hashes read at once: 4 KiB
_BITS_PER_KEY = 12
_PROBES = 8  # the optimum for 12 bits a key: k = 12 ln 2; about 0.3 % false positives when full
_GROWTH = 1.5  # a full filter is made again for this many times the hashes it must hold
_LOW = np.uint64(0xFFFFFFFF)
_HIGH = np.uint64(32)
_ONE = np.uint64(1)
_SEVEN = np.uint64(7)
_THREE = np.uint64(3)
_REBUILD_CHUNK = 1 << 20


class BloomFilter:
    """Which 64-bit hashes may have been added: never a false "no", rarely a false "maybe"."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._size = np.uint64(max(64, capacity * _BITS_PER_KEY))
        self._bits = np.zeros(int(self._size) // 8 + 1, dtype=np.uint8)

    def add(self, keys: Keys) -> None:
        for byte, bit in self._probes(keys):
            np.bitwise_or.at(self._bits, byte, bit)

    def may_hold(self, keys: Keys) -> npt.NDArray[np.bool_]:
        held = np.ones(len(keys), dtype=bool)
        for byte, bit in self._probes(keys):
            held &= (self._bits[byte] & bit) != 0
        return held

    def _probes(self, keys: Keys) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]]:
        # Double hashing (Kirsch–Mitzenmacher) over the two halves: the hashes are uniform already.
        first = keys & _LOW
        step = (keys >> _HIGH) | _ONE
        for probe in range(_PROBES):
            spot = (first + np.uint64(probe) * step) % self._size
            yield (spot >> _THREE).astype(np.intp), (np.uint8(1) << (spot & _SEVEN).astype(np.uint8))


class _Run:
    """One spilled, sorted array of hashes and their positions, at `offset` in the runs' file."""

    def __init__(self, file: IO[bytes], keys: Keys, positions: Positions) -> None:
        self.count = len(keys)
        self.fences = keys[::_BLOCK].copy()
        self._fd = file.fileno()
        self._offset = file.seek(0, os.SEEK_END)
        file.write(keys.astype("<u8").tobytes())
        file.write(positions.astype("<i8").tobytes())
        file.flush()

    def find(self, key: int) -> list[int]:
        """The positions stored under `key` (usually none; more than one only for a hash collision)."""
        block = max(0, int(self.fences.searchsorted(np.uint64(key), side="left")) - 1)
        start = block * _BLOCK
        keys = self._keys(start, _BLOCK)
        # The block before the first fence >= key: the key starts in it or at the next fence, and a
        # hash that several events share may run on past a block's end.
        while len(keys) and keys[-1] <= key and start + len(keys) < self.count:
            keys = np.concatenate([keys, self._keys(start + len(keys), _BLOCK)])
        left, right = keys.searchsorted(np.uint64(key), "left"), keys.searchsorted(np.uint64(key), "right")
        if left == right:
            return []
        at = self._offset + 8 * (self.count + start + int(left))
        found = os.pread(self._fd, 8 * int(right - left), at)
        return np.frombuffer(found, dtype="<i8").tolist()  # type: ignore[no-any-return]

    def chunks(self) -> Iterator[Keys]:
        """Every hash of the run, a chunk at a time."""
        for start in range(0, self.count, _REBUILD_CHUNK):
            yield self._keys(start, _REBUILD_CHUNK)

    def _keys(self, start: int, count: int) -> Keys:
        count = min(count, self.count - start)
        read = os.pread(self._fd, 8 * count, self._offset + 8 * start)
        return np.frombuffer(read, dtype="<u8").astype(np.uint64)


class SpilledRuns:
    """The runs and their filter: spill a sorted array, find hashes in all of them."""

    def __init__(self, directory: Path | None = None, initial_capacity: int = 1 << 20) -> None:
        self.directory = directory
        self._file: IO[bytes] | None = None  # opened on the first spill: one descriptor for every run
        self._runs: list[_Run] = []
        self._filter = BloomFilter(initial_capacity)

    def __len__(self) -> int:
        return sum(run.count for run in self._runs)

    def spill(self, keys: Keys, positions: Positions) -> None:
        """Keep sorted `keys` and their aligned `positions` on disk from now on."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self.directory, prefix="herald-event-ids-")  # noqa: SIM115
        self._runs.append(_Run(self._file, keys, positions))
        total = len(self)
        if total > self._filter.capacity:
            self._filter = self._rebuilt(int(_GROWTH * total))
        else:
            self._filter.add(keys)

    def candidates(self, hashes: Sequence[int], wanted: Keys, found: dict[int, list[int]]) -> None:
        """Add to `found` the spilled positions of each of `hashes` (`wanted`: the same as an array)."""
        if not self._runs:
            return
        for i in np.nonzero(self._filter.may_hold(wanted))[0].tolist():
            key = hashes[i]
            for run in self._runs:
                held = run.find(key)
                if held:
                    found.setdefault(key, []).extend(held)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._runs = []

    def _rebuilt(self, capacity: int) -> BloomFilter:
        grown = BloomFilter(capacity)
        for run in self._runs:
            for chunk in run.chunks():
                grown.add(chunk)
        return grown
