"""Analytics store fixtures: a ClickHouse server on loopback, and a fresh store per test on each adapter."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herald.infra.clickhouse import ChdbClickHouse, ClickHouse, ServerClickHouse
from tests.clickhouse_server import INSTALL_HINT, ClickHouseServer, server_binary

ClickHouseOpener = Callable[[], ClickHouse]

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """Debian's clickhouse-server on a free loopback port for the whole session: (host, port)."""
    binary = server_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT)
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse-server"), binary)
    server.start()
    try:
        yield server.host, server.port
    finally:
        server.stop()


@pytest.fixture(params=["chdb", "server"])
def open_clickhouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseOpener]:
    """Opens connections to one fresh store of this test (a new chDB directory, or a new server database).

    Every connection opened is closed at teardown; the server database is dropped.
    """
    opened: list[ClickHouse] = []
    if request.param == "chdb":
        path = tmp_path / "clickhouse"

        def open_one() -> ClickHouse:
            opened.append(ChdbClickHouse(path))
            return opened[-1]

    else:
        host, port = request.getfixturevalue("clickhouse_server")
        database = f"herald_test_{next(_database_numbers)}"

        def open_one() -> ClickHouse:
            opened.append(ServerClickHouse(host, port, database))
            return opened[-1]

    yield open_one
    if request.param == "server" and opened:
        opened[-1].execute(f"DROP DATABASE IF EXISTS {database}")
    for connection in opened:
        connection.close()


@pytest.fixture
def clickhouse(open_clickhouse: ClickHouseOpener) -> ClickHouse:
    """A connection to a fresh, empty store, once per adapter ("chdb", "server")."""
    return open_clickhouse()
