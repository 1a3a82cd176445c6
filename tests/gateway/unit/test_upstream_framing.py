"""Response framing of the backend client's connection (portico/gateway/upstream/_connection.py),
fed bytes directly (no socket): heads, bodies by Content-Length, chunks or close, and what is
refused."""

from __future__ import annotations

from typing import Any

import pytest

from portico.gateway.upstream import Connection, UpstreamError


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def _connection(method: str = "GET") -> tuple[Connection, list[BaseException | None]]:
    conn = Connection(("http", "backend.test", 80))
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    heads: list[BaseException | None] = []
    conn.expect_head(method, on_head=heads.append)
    return conn, heads


def _feed(conn: Connection, *pieces: bytes) -> None:
    for piece in pieces:
        conn.data_received(piece)


async def _body(conn: Connection) -> bytes:
    parts = []
    while (chunk := await conn.read_chunk()) is not None:
        parts.append(chunk)
    return b"".join(parts)


async def test_head_and_body_by_length_in_pieces() -> None:
    conn, heads = _connection()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain \r\nContent-Length: 5\r\n\r\nhello"
    _feed(conn, *(answer[i : i + 7] for i in range(0, len(answer), 7)))
    assert heads == [None]
    assert conn.head == (200, b"OK", [(b"content-type", b"text/plain"), (b"content-length", b"5")])
    assert await _body(conn) == b"hello" and conn.keep_alive


async def test_small_answer_is_whole_when_the_head_is_announced() -> None:
    conn, _heads = _connection()
    seen: list[Any] = []
    conn.expect_head("GET", on_head=lambda err: seen.append(conn.whole_body()))
    _feed(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert seen == [b"ok"]


async def test_chunked_interim_and_close_delimited() -> None:
    conn, heads = _connection()
    _feed(
        conn,
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
    )
    assert heads == [None] and conn.head is not None and conn.head[0] == 200
    _feed(conn, b"c\r\n2\r\nde\r\n0\r\n\r\n")
    assert await _body(conn) == b"abcde" and conn.keep_alive
    conn, heads = _connection()
    _feed(
        conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    )
    assert await _body(conn) == b"x"  # chunked wins over a Content-Length beside it
    conn, heads = _connection()
    _feed(conn, b"HTTP/1.0 200 OK\r\n\r\nuntil ", b"close")
    conn.connection_lost(None)
    assert await _body(conn) == b"until close" and not conn.keep_alive


async def test_no_body_for_head_204_and_304() -> None:
    for method, status in (("HEAD", 200), ("GET", 204), ("GET", 304)):
        conn, heads = _connection(method)
        _feed(conn, b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
        assert heads == [None] and conn.body_done and await _body(conn) == b""
    conn.reset()  # pooled again: the next answer parses from a clean state
    conn.expect_head("GET", on_head=heads.append)
    _feed(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!")
    assert await _body(conn) == b"!"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nX-A: 1\nX-Injected: 1\r\n\r\n", "malformed backend header"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", "malformed backend header"),
        (b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", "malformed backend header"),
        (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", "malformed backend header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),
        (b"HTTX/1.1 200 OK\r\n\r\n", "malformed backend status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed backend status"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000, "too large"),
    ],
)
async def test_refused_heads(answer: bytes, message: str) -> None:
    conn, heads = _connection()
    _feed(conn, answer)
    [err] = heads
    assert isinstance(err, UpstreamError) and message in str(err)
    assert not conn.keep_alive and conn.closed


async def test_broken_chunks_and_bytes_after_the_answer() -> None:
    conn, _heads = _connection()
    _feed(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX")
    with pytest.raises(UpstreamError, match="ended early"):
        await _body(conn)
    conn, _heads = _connection()
    _feed(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
    assert await _body(conn) == b"ok" and not conn.keep_alive  # not reused: it cannot be trusted


async def test_closed_before_any_byte_is_retryable() -> None:
    conn, heads = _connection()
    conn.connection_lost(None)
    [err] = heads
    assert type(err).__name__ == "Reusable"
