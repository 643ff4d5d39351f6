"""The HTTP server of `herald serve`: uvicorn, telling where it listens only once it does."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp


class _BoundServer(uvicorn.Server):
    """uvicorn's server calling `on_bound` with its real URL (port 0 resolved) after binding."""

    def __init__(self, config: uvicorn.Config, on_bound: Callable[[str], None]) -> None:
        super().__init__(config)
        self.on_bound = on_bound

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.on_bound(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")


def serve(app: ASGIApp, host: str, port: int, on_bound: Callable[[str], None]) -> bool:
    """Serve `app` until stopped; False when the address could not be bound (uvicorn logged why)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    try:
        _BoundServer(config, on_bound).run()
    except SystemExit:  # uvicorn's way of failing to bind (or to start the app's lifespan)
        return False
    return True
