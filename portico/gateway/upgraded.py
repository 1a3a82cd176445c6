"""The client's side of a connection the gateway's HTTP server (http1.py) handed over after a
101 Switching Protocols: a byte stream for the app (the WebSocket relay, websocket.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

HIGH_WATER = 64 * 1024  # bytes of an upgraded connection read ahead of the app


class Connection(Protocol):
    """What the stream needs of http1.HttpProtocol."""

    closed: bool
    transport: asyncio.Transport

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def drain(self) -> None: ...


class UpgradedStream:
    """The client's connection after a 101: bytes both ways, reading paused while the app has not
    taken `HIGH_WATER` bytes (so nothing buffers without bound)."""

    __slots__ = ("_buffer", "_conn", "_eof", "_size", "_waiter")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._buffer: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def lost(self) -> None:
        self._eof = True
        self._wake()

    async def read(self) -> bytes:
        """What the client sent since the last read; b"" once it closed the connection."""
        while not self._buffer and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        if not self._buffer:
            return b""
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self._conn.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if not self._conn.closed and not self._conn.transport.is_closing():
            self._conn.transport.write(data)

    async def drain(self) -> None:
        await self._conn.drain()

    def close(self) -> None:
        if not self._conn.transport.is_closing():
            self._conn.transport.close()
