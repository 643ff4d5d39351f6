"""External segment sets: POST URL answers from a real local HTTP server, and uploaded CSV files."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from herald.domain.errors import NotFound
from herald.domain.segments import PostUrlSource
from herald.infra.external_sets import ExternalSetFailed, ExternalSets, parse_answer
from herald.infra.remote_content import RemoteContentPolicy
from herald.infra.segment_files import SegmentFiles

# path → (status, content type, body)
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/json": (200, "application/json", b'{"segment": {"emails": ["ann@example.com", "bob@example.com"]}}'),
    "/array": (200, "application/json", b'["1", 2, 3.5]'),
    "/xml": (
        200,
        "application/xml",
        b"<?xml version='1.0'?><names><name>Ann</name><name> Bob </name><other>x</other></names>",
    ),
    "/lines": (200, "text/plain; charset=utf-8", "ann@example.com\r\n\r\n  Бob@example.com \nc\n".encode()),
    "/garbage": (200, "application/octet-stream", b"\x00\x9f\x92\x96 binary"),
    "/broken-xml": (200, "application/xml", b"<names><name>Ann</names>"),
    "/bomb": (200, "application/xml", b'<!DOCTYPE n [<!ENTITY a "aaaa">]><names><name>&a;</name></names>'),
    "/missing": (404, "text/plain", b"no such list"),
    "/objects": (200, "application/json", b'{"segment": {"emails": [{"email": "a@b.c"}]}}'),
}


RECEIVED: list[tuple[str, str]] = []  # (method, Content-Length) of every request the server answered


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def do_POST(self) -> None:
        RECEIVED.append((self.command, self.headers.get("Content-Length", "")))
        if self.path == "/slow":
            type(self).release.wait(10)  # held until the test is over: the client must give up first
        status, content_type, body = ANSWERS.get(self.path, (200, "text/plain", b""))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve() -> Iterator[str]:
    """A local HTTP server answering `ANSWERS`, in a thread; its base URL."""
    handler = type("Handler", (_Handler,), {"release": threading.Event()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[str]:
    with serve() as base:
        yield base


LOOPBACK = RemoteContentPolicy(timeout_seconds=0.5, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture
def sets() -> Iterator[ExternalSets]:
    with ExternalSets(LOOPBACK) as fetcher:
        yield fetcher


def fetch(sets: ExternalSets, base: str, path: str, answer_path: str = "") -> list[str]:
    return sets.post_url(PostUrlSource(url=base + path, path=answer_path), "query.sources.0.rules.2.source")


def test_a_json_answer_at_a_dotted_path(sets: ExternalSets, server: str) -> None:
    assert fetch(sets, server, "/json", "segment.emails") == ["ann@example.com", "bob@example.com"]


def test_a_json_array_as_the_whole_answer(sets: ExternalSets, server: str) -> None:
    assert fetch(sets, server, "/array") == ["1", "2", "3.5"]


def test_an_xml_answer_at_a_slash_path(sets: ExternalSets, server: str) -> None:
    assert fetch(sets, server, "/xml", "names/name") == ["Ann", "Bob"]
    assert fetch(sets, server, "/xml", "name") == ["Ann", "Bob"]  # the root's tag may be left out


def test_plain_lines(sets: ExternalSets, server: str) -> None:
    assert fetch(sets, server, "/lines") == ["ann@example.com", "Бob@example.com", "c"]


def test_the_request_is_an_empty_post(sets: ExternalSets, server: str) -> None:
    fetch(sets, server, "/array")
    assert RECEIVED[-1] == ("POST", "0")


@pytest.mark.parametrize(
    ("path", "answer_path", "reason"),
    [
        pytest.param("/garbage", "", "not text", id="binary"),
        pytest.param("/broken-xml", "names/name", "not valid XML", id="broken xml"),
        pytest.param("/bomb", "names/name", "document type declaration", id="entities"),
        pytest.param("/json", "segment.phones", "has no 'segment.phones'", id="json path missing"),
        pytest.param("/json", "", "is not a list", id="json object without a path"),
        pytest.param("/objects", "segment.emails", "not a text or a number", id="objects in the list"),
        pytest.param("/lines", "names/name", "neither JSON nor XML", id="lines with a path"),
        pytest.param("/xml", "", "give the path", id="xml without a path"),
        pytest.param("/missing", "", "HTTP 404", id="not found"),
    ],
)
def test_an_answer_that_cannot_be_read_fails_naming_the_rule(
    sets: ExternalSets, server: str, path: str, answer_path: str, reason: str
) -> None:
    with pytest.raises(ExternalSetFailed) as failed:
        fetch(sets, server, path, answer_path)
    assert reason in failed.value.reason
    assert failed.value.path.startswith("query.sources.0.rules.2.source")


def test_a_slow_server_times_out(sets: ExternalSets, server: str) -> None:
    with pytest.raises(ExternalSetFailed) as failed:
        fetch(sets, server, "/slow")
    assert "did not answer within 0.5 s" in failed.value.reason


def test_loopback_is_refused_unless_the_policy_allows_it(server: str) -> None:
    with (
        ExternalSets(RemoteContentPolicy(timeout_seconds=2)) as strict,
        pytest.raises(ExternalSetFailed) as failed,
    ):
        fetch(strict, server, "/json", "segment.emails")
    assert "loopback" in failed.value.reason


def test_parse_answer_without_a_server() -> None:
    assert parse_answer(b"\xef\xbb\xbfa\nb\n", None, "") == ["a", "b"]  # a byte order mark is skipped
    assert parse_answer(b"", None, "") == []
    assert parse_answer(b"<r><a><b>1</b></a><a><b>2</b></a></r>", None, "r/a/b") == ["1", "2"]
    assert parse_answer("x\ny".encode("cp1251"), "windows-1251", "") == ["x", "y"]


# --- CSV files -----------------------------------------------------------------------------------


def test_a_stored_csv_is_read_by_column(tmp_path: Path) -> None:
    files = SegmentFiles.in_data_dir(tmp_path)
    content = b"email;name\nann@example.com;Ann\n\nbob@example.com; Bob \ncarl@example.com\n"
    file_id = files.store(content)
    assert files.store(content) == file_id and len(list((tmp_path / "segment-files").iterdir())) == 1
    assert files.column(file_id, 1) == ["ann@example.com", "bob@example.com", "carl@example.com"]
    assert files.column(file_id, 2) == ["Ann", "Bob"]  # a row too short for the column is skipped
    assert files.column(file_id, 1, header=False)[0] == "email"


def test_csv_delimiters_and_encodings(tmp_path: Path) -> None:
    files = SegmentFiles(tmp_path / "files")
    commas = files.store(b'id,name\n1,"Smith, Ann"\n2,Bob\n')
    assert files.column(commas, 2) == ["Smith, Ann", "Bob"]
    single = files.store(b"ann@example.com\nbob@example.com\n")
    assert files.column(single, 1, header=False) == ["ann@example.com", "bob@example.com"]
    windows = files.store("имя\tгород\nАнна\tКазань\n".encode("cp1251"))
    assert files.column(windows, 2) == ["Казань"]


def test_an_unknown_file_is_not_found(tmp_path: Path) -> None:
    files = SegmentFiles(tmp_path)
    for unknown in ("0" * 64, "../../etc/passwd", ""):
        with pytest.raises(NotFound) as missing:
            files.column(unknown, 1, path="query.sources.0.rules.0.source")
        assert missing.value.path == "query.sources.0.rules.0.source.file_id"
