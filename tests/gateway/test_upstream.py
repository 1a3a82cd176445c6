"""The gateway's backend client (portico/gateway/upstream/), both forms: `request` (awaited, the
ASGI path) and `request_nowait` (callbacks, the fast path), against a raw socket server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from portico.gateway.upstream import Upstream, UpstreamError, UpstreamResponse, UpstreamTimeout

pytestmark = pytest.mark.slow

ANSWERS = {
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"/bare-lf": b"HTTP/1.1 200 OK\r\nX-A: 1\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
    b"/space-before-colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",
    b"/two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
    b"/close-after": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


class Backend:
    """Answers by path; /slow never answers; /close-after answers, then closes the idle connection
    (a server whose keep-alive timeout ran out)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/slow":
                    await asyncio.sleep(5)
                    return
                writer.write(ANSWERS[path])
                await writer.drain()
                if path == b"/close-after":
                    await asyncio.sleep(0.05)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def pool() -> AsyncIterator[Upstream]:
    up = Upstream(connect_timeout=2.0)
    up.start()
    yield up
    await up.aclose()


async def call(
    pool: Upstream, form: str, port: int, path: str, head_timeout: float = 2.0
) -> UpstreamResponse:
    if form == "awaited":
        return await pool.request("GET", "http", "127.0.0.1", port, path, [], None, head_timeout)
    done: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
    returned = False

    def answered(response: UpstreamResponse | None, exc: BaseException | None) -> None:
        assert returned, "done() ran before request_nowait returned"
        if exc is not None:
            done.set_exception(exc)
        else:
            assert response is not None
            done.set_result(response)

    pool.request_nowait("GET", "http", "127.0.0.1", port, path, [], None, head_timeout, answered)
    returned = True
    return await done


FORMS = ["awaited", "nowait"]


@pytest.mark.parametrize("form", FORMS)
async def test_answers_and_keep_alive(pool: Upstream, form: str) -> None:
    async with Backend() as be:
        for _ in range(3):
            r = await call(pool, form, be.port, "/ok")
            assert (r.status, r.headers) == (200, [(b"content-length", b"2"), (b"x-a", b"1")])
            assert r.ready_body() == b"ok"
        r = await call(pool, form, be.port, "/chunked")
        assert b"".join([c async for c in r.iter_body()]) == b"abcde"
        assert be.connections == 1 and pool.opened == 1


@pytest.mark.parametrize("form", FORMS)
async def test_stale_pooled_connection_is_retried_once_fresh(pool: Upstream, form: str) -> None:
    async with Backend() as be:
        r = await call(pool, form, be.port, "/close-after")
        assert r.ready_body() == b"ok"  # the connection goes back to the pool...
        await asyncio.sleep(0.2)  # ...and the server closes it meanwhile
        r = await call(pool, form, be.port, "/ok")
        assert r.ready_body() == b"ok" and be.connections == 2


@pytest.mark.parametrize("form", FORMS)
async def test_failures(pool: Upstream, form: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(UpstreamError, match="cannot connect"):
        await call(pool, form, closed, "/ok")
    async with Backend() as be:
        with pytest.raises(UpstreamTimeout):
            await call(pool, form, be.port, "/slow", head_timeout=0.3)
        # a bare LF could split the response when passed on: the whole head is refused
        for path in ("/bare-lf", "/space-before-colon"):
            with pytest.raises(UpstreamError, match="malformed backend header"):
                await call(pool, form, be.port, path)
        with pytest.raises(UpstreamError, match="conflicting Content-Length"):
            await call(pool, form, be.port, "/two-lengths")
        assert (await call(pool, form, be.port, "/ok")).ready_body() == b"ok"  # and nothing is stuck


async def test_timed_out_connect_is_kept_for_later(pool: Upstream) -> None:
    """A request that timed out while its connection was still being opened leaves that (fresh)
    connection in the pool rather than dropping it."""
    async with Backend() as be:
        results: list[Any] = []
        pool.request_nowait(
            "GET", "http", "127.0.0.1", be.port, "/ok", [], None, 0.0, lambda r, e: results.append(e)
        )
        for _ in range(100):
            if results and pool._idle:
                break
            await asyncio.sleep(0.01)
        assert isinstance(results[0], UpstreamTimeout)
        assert len(pool._idle[("http", "127.0.0.1", be.port)]) == 1
        r = await call(pool, "nowait", be.port, "/ok")
        assert r.ready_body() == b"ok" and pool.opened == 1
