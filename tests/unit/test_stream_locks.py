"""Turns at a stream: one holder at a time per stream, across threads (each takes its own file)."""

from __future__ import annotations

import threading
from pathlib import Path

from herald.infra.stream_locks import StreamLocks


def test_a_second_holder_of_the_same_stream_waits_for_the_first(tmp_path: Path) -> None:
    locks = StreamLocks(tmp_path / "locks")
    inside, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with locks.holding("promopool-1"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        inside.wait(10)
        with locks.holding("promopool-1"):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    with locks.holding("promopool-2"):  # another stream's turn is free meanwhile
        order.append("other stream")
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "other stream", "first out", "second in"]
