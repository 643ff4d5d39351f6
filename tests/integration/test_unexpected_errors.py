"""An unexpected error answers a JSON 500 naming an error id, logs it under that id, and keeps the connection.

The app runs under uvicorn on loopback (an ASGI transport has no connection
to keep); one `httpx.AsyncClient` makes both requests, and the second one must
come over the same TCP connection as the first.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from herald.api.app import create_app
from herald.api.wiring import Herald
from tests.conftest import ADMIN_TOKEN


@pytest.fixture
async def served(herald: Herald) -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        create_app(herald, run_processors=False), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # waiting for the port to be bound, not for a processor
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)


def _local_address(response: httpx.Response) -> object:
    return response.extensions["network_stream"].get_extra_info("client_addr")


async def test_an_unexpected_error_is_a_json_500_with_an_error_id_and_the_connection_stays_open(
    served: str, herald: Herald, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> int:
        raise ZeroDivisionError("a bug")

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as client:
        warm = await client.get("/api/v1/health")
        addresses = [_local_address(warm)]
        monkeypatch.setattr(herald.store, "head_position", broken)
        failed = await client.get("/api/v1/processors")
        addresses.append(_local_address(failed))
        monkeypatch.undo()
        after = await client.get("/api/v1/health")
        addresses.append(_local_address(after))

    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    error = failed.json()["error"]
    assert error["status"] == 500 and len(error["error_id"]) == 16
    assert error["error_id"] in error["reason"] and "ZeroDivisionError" not in error["reason"]
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error["error_id"] in logged.getMessage() and "ZeroDivisionError: a bug" in logged.getMessage()
    assert logged.exc_info is not None  # the traceback is in the log, under the id

    assert after.status_code == 200
    assert addresses[0] == addresses[1] == addresses[2]  # one connection, kept open by the 500
