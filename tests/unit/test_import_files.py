"""Reading import files: encodings, delimiters, broken rows that do not stop the reading, JSON sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.domain.errors import ValidationFailed
from herald.infra.import_files import MAX_CELL, ImportFiles, json_to_csv, open_table


def rows(path: Path, content: bytes) -> list[tuple[int, list[str], str | None]]:
    path.write_bytes(content)
    with open_table(path, "csv") as table:
        return [(r.number, r.cells, r.error) for r in table.rows()]


def test_windows_1251_with_semicolons_and_utf8_with_a_bom_are_read(tmp_path: Path) -> None:
    assert rows(tmp_path / "a", "Имя;Город\nАнна;Москва\n".encode("cp1251")) == [
        (1, ["Имя", "Город"], None),
        (2, ["Анна", "Москва"], None),
    ]
    assert rows(tmp_path / "b", "\ufeffName\tCity\nЁлка\tX\n".encode()) == [
        (1, ["Name", "City"], None),
        (2, ["Ёлка", "X"], None),
    ]


def test_a_row_of_bad_bytes_after_the_sniffed_start_or_with_a_huge_cell_is_an_error_and_reading_goes_on(
    tmp_path: Path,
) -> None:
    filler = b"".join(b"a%d@example.org,x\n" % i for i in range(4000))  # past the 64 KiB sniffed
    content = (
        filler + b"bad@example.org,\xff\xfe\n" + b"big," + b"y" * (MAX_CELL + 1) + b"\nlast@example.org,z\n"
    )
    read = rows(tmp_path / "c", content)
    assert len(read) == 4003
    assert read[4000] == (4001, [], "the row holds bytes that are not UTF-8 text")
    assert read[4001][2] is not None and "longer than" in read[4001][2]
    assert read[4002] == (4003, ["last@example.org", "z"], None)


def test_an_old_xls_is_refused_and_a_stored_file_knows_its_format(tmp_path: Path) -> None:
    files = ImportFiles(tmp_path / "imports")
    with pytest.raises(ValidationFailed):
        files.store([bytes.fromhex("d0cf11e0a1b11ae1") + b"rest"], 1000)
    stored = files.store([b"PK\x03\x04", b"zip"], 1000)
    assert (stored.format, stored.size, files.stored(stored.file_id).format) == ("xlsx", 7, "xlsx")
    assert [p.name for p in (tmp_path / "imports").iterdir()] == [stored.file_id]


def test_json_arrays_and_json_lines_become_a_table_of_every_key(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(
        b'[{"email": "a@x.org", "age": 3}, {"email": "b@x.org", "tags": ["p", "q"], "ok": true}]'
    )
    json_to_csv(tmp_path / "a.json", tmp_path / "a.csv")
    table = (tmp_path / "a.csv").read_bytes().decode()
    assert table == 'email,age,tags,ok\r\na@x.org,3,,\r\nb@x.org,,"[""p"",""q""]",true\r\n'
    (tmp_path / "b.json").write_bytes(b'{"email": "a@x.org"}\n\n{"email": "b@x.org", "age": null}\n')
    json_to_csv(tmp_path / "b.json", tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_bytes().decode() == "email,age\r\na@x.org,\r\nb@x.org,\r\n"
    (tmp_path / "c.json").write_bytes(b"[1, 2]")
    with pytest.raises(ValidationFailed):
        json_to_csv(tmp_path / "c.json", tmp_path / "c.csv")
