"""glibc's malloc told to hand large blocks back to the kernel when they are freed.

glibc serves a request above its mmap threshold (128 KiB at first) with a
mapping of its own, unmapped on free; but each time it frees such a block it
raises the threshold to that block's size (up to 32 MiB), so later blocks of
that size come from the heap and stay in the process once freed. A long-running
Herald allocates numpy arrays of many MiB again and again (the event-id
index's merges, report batches): measured over 3M appended ids, the process
grew 65 bytes an id with the dynamic threshold and 17 with a fixed one
(`bench/bench_event_id_index.py`). Setting the threshold (`mallopt
M_MMAP_THRESHOLD`) also stops its raising. Elsewhere (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
THRESHOLD = 1 << 20  # blocks of 1 MiB and more get their own mapping


def return_large_blocks(threshold: int = THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
