"""Policies' own requests through the gateway's backend client (proxy.Forwarder.send: what
send-request and send-one-way-request use) and reading a client body for replay
(Forwarder.buffer_body: retry, send-request mode="copy"), against a raw socket server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from portico.gateway.backend import SideRequest, SideRequestFailed
from portico.gateway.outcome import Reject
from portico.gateway.proxy import Forwarder
from portico.gateway.upstream import Upstream
from tests.gateway.unit.harness import request, service

pytestmark = pytest.mark.slow


class Server:
    """/ok echoes the request head and body size; /big answers 10,000 bytes; /slow never answers."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.bodies.append(await reader.readexactly(length) if length else b"")
                path = head.split(b" ", 2)[1]
                if path == b"/slow":
                    await asyncio.sleep(10)
                    return
                body = b"x" * 10_000 if path == b"/big" else b'{"seen":%d}' % length
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-A: 1\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def _forwarder() -> Forwarder:
    up = Upstream()
    up.start()
    return Forwarder(up, max_body_bytes=1000, default_timeout=30)


async def test_send_reads_the_answer_and_reuses_the_connection() -> None:
    svc = service()
    fwd = _forwarder()
    ctx = request(svc, fwd)
    async with Server() as srv:
        url = f"http://127.0.0.1:{srv.port}/ok?x=1"
        headers = [("X-Mine", "m"), ("Connection", "close"), ("Content-Length", "99")]
        answer = await fwd.send(ctx, SideRequest("POST", url, headers, b"hello"), 5, 1000)
        assert (answer.status, answer.reason, answer.body) == (201, "Created", b'{"seen":5}')
        assert (b"x-a", b"1") in answer.headers
        head = srv.heads[0].lower()
        assert head.startswith(b"post /ok?x=1 http/1.1") and b"x-mine: m" in head
        assert b"connection: close" not in head and head.count(b"content-length") == 1
        assert srv.bodies == [b"hello"]
        again = await fwd.send(ctx, SideRequest("GET", url, [], None), 5, 1000)
        assert again.status == 201 and srv.connections == 1  # the pooled connection
    await fwd.upstream.aclose()


async def test_send_bounds_the_answer_and_the_time() -> None:
    svc = service()
    fwd = _forwarder()
    ctx = request(svc, fwd)
    async with Server() as srv:
        with pytest.raises(SideRequestFailed) as err:
            await fwd.send(ctx, SideRequest("GET", f"http://127.0.0.1:{srv.port}/big", [], None), 5, 1000)
        assert not err.value.timeout and "too large" in str(err.value)
        t0 = time.monotonic()
        with pytest.raises(SideRequestFailed) as err:
            await fwd.send(ctx, SideRequest("GET", f"http://127.0.0.1:{srv.port}/slow", [], None), 0.3, 1000)
        assert err.value.timeout and time.monotonic() - t0 < 5
        with pytest.raises(SideRequestFailed, match="URL"):
            await fwd.send(ctx, SideRequest("GET", "ftp://nowhere/", [], None), 1, 1000)
    await fwd.upstream.aclose()


def _receiving(chunks: list[bytes]) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


async def test_buffer_body_reads_the_stream_once_within_the_limit() -> None:
    svc = service()
    fwd = _forwarder()
    ctx = request(svc, fwd, method="POST", headers={"Content-Length": "6"})
    ctx.receive = _receiving([b"abc", b"def"])
    await fwd.buffer_body(ctx)
    assert ctx.request_body == b"abcdef"
    await fwd.buffer_body(ctx)  # read already: nothing more is received
    assert ctx.request_body == b"abcdef"
    big = request(svc, fwd, method="POST", headers={"Transfer-Encoding": "chunked"})
    big.receive = _receiving([b"x" * 600, b"y" * 600])
    with pytest.raises(Reject) as err:
        await fwd.buffer_body(big)
    assert err.value.status == 413
    none = request(svc, fwd, method="GET")
    await fwd.buffer_body(none)
    assert none.request_body is None
    await fwd.upstream.aclose()
