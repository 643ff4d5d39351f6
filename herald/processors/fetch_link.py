"""The link between a worker and its fetcher process: framed, pickled messages over a socket pair.

A frame is a 4-byte big-endian length then the pickle of `(kind, id, payload)`. Both ends are
Herald's own processes (the worker starts the fetcher and hands it its end of the pair), so
pickle is safe here, and it is the cheapest way across: unpickling a batch of `(offset, bytes)`
pairs builds them in C, a fraction of the ~10 µs a message aiokafka's unpacking costs.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

_LENGTH = struct.Struct(">I")

Frame = tuple[str, int, Any]
"""A message on the link: its kind, the id its answer carries (0: none expected), its payload."""


def write_frame(writer: asyncio.StreamWriter, kind: str, ident: int, payload: Any) -> None:
    """Queue one frame (no await between its parts: frames written from several tasks never interleave)."""
    body = pickle.dumps((kind, ident, payload), protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(body)))
    writer.write(body)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame; None at the end of the stream (the other side is gone or has finished)."""
    try:
        length = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
        kind, ident, payload = pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        return None
    return str(kind), int(ident), payload


async def open_link(fd: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over one end of the socket pair (by its file descriptor)."""
    return await asyncio.open_connection(sock=socket.socket(fileno=fd))
