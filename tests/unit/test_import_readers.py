"""A file import's reader is kept between its chunks: the next chunk continues it instead of reading
the file again from its start, and a chunk done again (its cursor behind the reader) opens afresh."""

from __future__ import annotations

from pathlib import Path

from herald.infra.import_files import Table, open_table
from herald.services.imports import _KeptReaders


def test_a_chunk_continues_the_reader_its_job_left_at_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\n" + "".join(f"u{n}@example.org\n" for n in range(7)))
    opened: list[Table] = []

    def opener() -> Table:
        opened.append(open_table(path, "csv"))
        return opened[-1]

    readers = _KeptReaders()
    first, _ = readers.take("f1", 0, opener, 3)
    second, _ = readers.take("f1", 3, opener, 3)
    assert [r.cells for r in first + second] == [["email"]] + [[f"u{n}@example.org"] for n in range(5)]
    assert len(opened) == 1  # the second chunk read on from where the first stopped
    again, _ = readers.take("f1", 3, opener, 3)  # the second chunk done again: its cursor is behind
    assert [r.number for r in again] == [4, 5, 6] and len(opened) == 2
    rest, _ = readers.take("f1", 6, opener, 3)
    assert [r.number for r in rest] == [7, 8] and len(opened) == 2
    readers.close("f1")
