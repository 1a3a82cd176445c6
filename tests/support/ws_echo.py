"""A small WebSocket backend for gateway tests (the `websockets` library's server, in a thread).

On connect it sends one JSON message describing the opening handshake it received (path, query,
headers, subprotocol); then it echoes every message back. The text "close-me" makes it close with
code 4000; "handshake-403" paths are refused with 403 before any upgrade. The close codes it
received from its clients are kept in `closes`."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass
class EchoBackend:
    port: int = 0
    closes: list[int | None] = field(default_factory=list)
    tls: bool = False

    @property
    def url(self) -> str:
        return f"wss://localhost:{self.port}" if self.tls else f"ws://127.0.0.1:{self.port}"


def _refuse(connection: ServerConnection, request: Request) -> Response | None:
    if "handshake-403" in request.path:
        return connection.respond(HTTPStatus.FORBIDDEN, "refused by the backend\n")
    return None


@contextmanager
def echo_backend(tls: ssl.SSLContext | None = None) -> Iterator[EchoBackend]:
    """The backend on 127.0.0.1; `tls`: its server context (wss://localhost)."""
    backend = EchoBackend(tls=tls is not None)
    ready = threading.Event()
    stop: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        req = ws.request
        assert req is not None
        path, _, query = req.path.partition("?")
        await ws.send(
            json.dumps(
                {
                    "path": path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in req.headers.raw_items()},
                    "subprotocol": ws.subprotocol,
                }
            )
        )
        try:
            async for message in ws:
                if message == "close-me":
                    await ws.close(4000, "backend says bye")
                    break
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            backend.closes.append(ws.close_code)

    async def main() -> None:
        async with serve(
            handler,
            "127.0.0.1",
            0,
            max_size=None,
            ssl=tls,
            process_request=_refuse,
            subprotocols=["chat.v1", "chat.v2", "graphql-transport-ws"],  # type: ignore[list-item]
            select_subprotocol=lambda _conn, offered: offered[0] if offered else None,
        ) as server:
            backend.port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            stop["stop"] = lambda: loop.call_soon_threadsafe(done.set_result, None)
            ready.set()
            await done

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the echo backend did not start"
    try:
        yield backend
    finally:
        stop["stop"]()
        thread.join(10)
