"""The gateway's HTTP/1.1 server (portico/gateway/http1.py) over real sockets, with small ASGI apps."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from portico.gateway.http1 import HttpServer
from portico.gateway.serving import bind

pytestmark = pytest.mark.slow


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it received; paths pick special behaviours."""
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("app failure")
    if path == "/bad-header":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nx-injected: 1")]}
        )
        return
    if path == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for i in range(3):
            await send({"type": "http.response.body", "body": f"part{i};".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/early":  # answers before reading the body (as a gateway's 413 does)
        body = b'{"statusCode": 413}'
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/wait-disconnect":
        message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
        DISCONNECTS.append(path)
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = (
        f"{scope['method']} {scope['path']} q={scope['query_string'].decode()} body={body.decode()}".encode()
    )
    headers = [(b"content-type", b"text/plain")]
    if path != "/no-length":
        headers.append((b"content-length", str(len(text)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


DISCONNECTS: list[str] = []


class FastEcho:
    """echo_app plus the synchronous entry the gateway has (`handle_nowait`, Gateway's fast path):
    paths under /fast/ are answered from it, at once or from a later callback; others decline."""

    def __init__(self) -> None:
        self.fast: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo_app(scope, receive, send)

    def handle_nowait(self, cycle: Any) -> bool:
        scope = cycle.scope
        path = scope["path"]
        if not path.startswith("/fast/"):
            return False
        if path == "/fast/boom":
            raise RuntimeError("app failure")
        self.fast.append(path)
        body = b"".join(cycle.body)
        text = f"{scope['method']} {path} fast body={body.decode()}".encode()

        def answer() -> None:
            cycle.respond(200, [(b"content-length", b"%d" % len(text))], text, True)
            cycle.finish()

        if path.startswith("/fast/later"):
            asyncio.get_running_loop().call_later(0.05, answer)
        else:
            answer()
        return True


@pytest.fixture(params=["asgi", "fast"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[HttpServer, int]]:
    sock = bind("127.0.0.1", 0)
    assert sock is not None
    port = sock.getsockname()[1]
    fast = FastEcho() if request.param == "fast" else None
    srv = HttpServer(
        fast or echo_app,
        fast=fast.handle_nowait if fast else None,
        max_header_bytes=4096,
        keep_alive=0.5,
        graceful=1.0,
    )
    task = asyncio.get_running_loop().create_task(srv.serve([sock]))
    await asyncio.sleep(0.05)
    yield srv, port
    srv.should_exit = True
    await asyncio.wait_for(task, 5)


async def exchange(port: int, data: bytes, *, until_close: bool = True, wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), wait)
            if not chunk:
                break
            out += chunk
            if not until_close:
                break
    except TimeoutError:
        pass
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return out


async def test_keep_alive_and_pipelining(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    two = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    out = await exchange(port, two, wait=1.0)
    first = out.index(b"GET /a q=x=1 body=")
    second = out.index(b"POST /b q= body=abc")
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2 and first < second


async def test_chunked_request_and_streamed_response(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    req = (
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    out = await exchange(port, req)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"body=abcde")
    assert b"connection: close" in out
    out = await exchange(port, b"GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in out and out.endswith(b"6\r\npart2;\r\n0\r\n\r\n")
    # an HTTP/1.0 client gets the unknown-length body delimited by the end of the connection
    out = await exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
    assert b"transfer-encoding" not in out and out.endswith(b"part0;part1;part2;")
    # a whole body without a length gets one
    out = await exchange(port, b"GET /no-length HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert b"content-length: %d\r\n" % len(b"GET /no-length q= body=") in out


async def test_expect_continue(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    final = await asyncio.wait_for(reader.readuntil(b"body=ok"), 2)
    assert final.startswith(b"HTTP/1.1 200 OK")
    writer.close()


async def test_bad_requests(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    out = await exchange(port, b"\x00\x01garbage\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Invalid HTTP request" in out
    out = await exchange(port, b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ") and b"too large" in out
    # a header flood that never ends is cut off at the limit, not buffered
    out = await exchange(port, b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 2000)
    assert out.startswith(b"HTTP/1.1 431 ")


async def _until_closed(port: int, data: bytes) -> bytes:
    """Everything the server answers to `data` until it closes the connection (which it must)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()


BAD_CHUNKS = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\nxx\r\n"


async def test_malformed_chunked_body_is_a_400(server: tuple[HttpServer, int]) -> None:
    """A bad chunk gets a 400 with Connection: close (the app is told through receive), whether the
    request is the one being answered or waits behind another one (answered at once, or later by
    the fast path)."""
    _srv, port = server
    before = (
        b"",
        b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /fast/later HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz",
    )
    for first in before:
        out = await _until_closed(port, first + BAD_CHUNKS)
        assert out.count(b"HTTP/1.1 ") == (2 if first else 1), out
        if first:
            assert out.startswith(b"HTTP/1.1 200 OK\r\n")
        last = out[out.rindex(b"HTTP/1.1 ") :]
        assert last.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out
        assert b"connection: close\r\n" in last.lower() and b"malformed chunked" in last
        assert b"body=ok" not in out  # the part before the bad chunk never passes for the body


async def test_answer_before_the_body_is_read_is_not_lost(server: tuple[HttpServer, int]) -> None:
    """An answer sent before the request body was read (a 413) reaches a client that is still
    sending: the server reads and drops the rest, then ends the connection cleanly; closing at once
    would make the kernel reset it, and the client could lose the answer."""
    _srv, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /early HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head
    for _ in range(32):  # the client goes on sending its body after the answer
        writer.write(b"10000\r\n" + b"y" * 65536 + b"\r\n")
        await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 5)  # then the end of the connection: no reset
    assert rest == b'{"statusCode": 413}'
    writer.close()


async def test_app_failures(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    out = await exchange(port, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500 ") and out.endswith(b'Internal server error"}')
    # header injection is refused, never written
    out = await exchange(port, b"GET /bad-header HTTP/1.1\r\nHost: h\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500 ") and b"x-injected" not in out


async def test_disconnect_and_idle_timeout(server: tuple[HttpServer, int]) -> None:
    srv, port = server
    DISCONNECTS.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # (a body over 64 KiB: a smaller one is read whole before an app with a fast path starts)
    writer.write(b"POST /wait-disconnect HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    for _ in range(50):
        if DISCONNECTS:
            break
        await asyncio.sleep(0.02)
    assert DISCONNECTS == ["/wait-disconnect"]
    # an idle keep-alive connection is closed after the keep-alive timeout (0.5 s here)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"body="), 2)
    assert await asyncio.wait_for(reader.read(), 3) == b""  # EOF from the server
    writer.close()
    # a request head that never completes (slowloris) is cut off after the same time
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: h\r\n")
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    for _ in range(50):
        if not srv.connections:
            break
        await asyncio.sleep(0.02)
    assert not srv.connections


def test_bind_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert bind("127.0.0.1", taken.getsockname()[1]) is None


@pytest.fixture
async def fast_server() -> AsyncIterator[tuple[FastEcho, int]]:
    sock = bind("127.0.0.1", 0)
    assert sock is not None
    port = sock.getsockname()[1]
    app = FastEcho()
    srv = HttpServer(app, fast=app.handle_nowait, max_header_bytes=4096, keep_alive=0.5, graceful=1.0)
    task = asyncio.get_running_loop().create_task(srv.serve([sock]))
    await asyncio.sleep(0.05)
    yield app, port
    srv.should_exit = True
    await asyncio.wait_for(task, 5)


async def test_fast_path_answers_in_order(fast_server: tuple[FastEcho, int]) -> None:
    app, port = fast_server
    # pipelined: answered at once, from a later callback, through ASGI, at once - in request order
    reqs = (
        b"GET /fast/a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /fast/later HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
        b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /fast/b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    out = await exchange(port, reqs, wait=1.0)
    marks = [
        b"GET /fast/a fast body=",
        b"POST /fast/later fast body=xyz",
        b"GET /slow q= body=",
        b"GET /fast/b",
    ]
    positions = [out.index(m) for m in marks]
    assert positions == sorted(positions) and out.count(b"HTTP/1.1 200 OK\r\n") == 4
    assert app.fast == ["/fast/a", "/fast/later", "/fast/b"]


async def test_fast_path_gets_whole_small_bodies_only(fast_server: tuple[FastEcho, int]) -> None:
    app, port = fast_server
    # a small body arriving in pieces: the fast path starts once it is all in
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /fast/x HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(0.1)
    assert app.fast == []
    writer.write(b"def")
    out = await asyncio.wait_for(reader.readuntil(b"body=abcdef"), 2)
    assert out.startswith(b"HTTP/1.1 200 OK") and app.fast == ["/fast/x"]
    writer.close()
    # over 64 KiB, chunked, or Expect: 100-continue: streamed through ASGI instead
    big = b"a" * 70000
    out = await exchange(
        port,
        b"POST /fast/big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
        % (len(big), big),
    )
    assert out.endswith(b"q= body=" + big)
    out = await exchange(
        port,
        b"POST /fast/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
    )
    assert out.endswith(b"q= body=ok")
    assert app.fast == ["/fast/x"]


async def test_fast_path_failure_is_a_500(fast_server: tuple[FastEcho, int]) -> None:
    _app, port = fast_server
    out = await exchange(
        port, b"GET /fast/boom HTTP/1.1\r\nHost: h\r\n\r\nGET /fast/a HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 500 ") and out.count(b"HTTP/1.1") == 1  # and the connection ends
