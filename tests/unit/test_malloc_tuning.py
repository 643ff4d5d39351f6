"""glibc takes the fixed mmap threshold (Herald's machines run glibc)."""

from __future__ import annotations

import platform

from herald.infra.malloc_tuning import return_large_blocks


def test_glibc_takes_the_threshold() -> None:
    assert platform.libc_ver()[0] == "glibc"
    assert return_large_blocks() is True
