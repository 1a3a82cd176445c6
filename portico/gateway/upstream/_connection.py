"""One keep-alive connection to a backend (an asyncio protocol): writes a request, frames the
response (status line, headers, Content-Length / chunked / until-close body) and buffers its body
with back-pressure."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from itertools import repeat

from portico.gateway.upstream._errors import Reusable, UpstreamError

READ_HIGH_WATER = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_waiter",
        "_buf",
        "_chunk_left",
        "_drain_waiter",
        "_framing",
        "_head_only",
        "_head_waiter",
        "_length_left",
        "_on_head",
        "_paused_reading",
        "_paused_writing",
        "_received_any",
        "_state",
        "body_done",
        "closed",
        "head",
        "idle_since",
        "keep_alive",
        "key",
        "transport",
    )

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._head_only = False
        self.reset()

    def reset(self) -> None:
        self._buf = bytearray()
        self._state = "idle"  # idle | head | body | done
        self._head_waiter: asyncio.Future[None] | None = None
        self._on_head: Callable[[BaseException | None], None] | None = None  # the waiter's callback form
        self._body: deque[bytes] = deque()
        self._body_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._paused_reading = False
        self._framing = "none"  # length | chunked | close | none
        self._length_left = 0
        self._chunk_left = -1
        self._received_any = False
        self.head: tuple[int, bytes, list[tuple[bytes, bytes]]] | None = None
        self.body_done = False
        self.keep_alive = True

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == "head":
            self._head_failed(
                Reusable("connection closed")
                if not self._received_any
                else UpstreamError("backend closed the connection")
            )
        elif self._state == "body":
            if self._framing == "close":
                self.body_done = True
                self._state = "done"
            self._wake_body()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(UpstreamError("backend closed the connection"))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if self._state == "head":
            self._buf += data
            self._parse_head()
        elif self._state == "body":
            self._feed_body(data)
        else:  # bytes outside a response: the connection cannot be trusted any more
            self.keep_alive = False
            self.close()

    # --- parsing ----------------------------------------------------------------------------
    def _head_failed(self, err: BaseException) -> None:
        """Tell whoever waits for the response head (a future, or a callback) that it will not come."""
        on_head = self._on_head
        if on_head is not None:
            self._on_head = None
            on_head(err)
        elif self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_exception(err)

    def _fail_head(self, message: str) -> None:
        self.keep_alive = False
        self._head_failed(UpstreamError(message))
        self.close()

    def _parse_head(self) -> None:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD_BYTES:
                    self._fail_head("backend response headers too large")
                return
            raw = bytes(self._buf[:end])
            del self._buf[: end + 4]
            lines = raw.split(b"\r\n")
            if raw.count(b"\n") != len(lines) - 1 or raw.count(b"\r") != len(lines) - 1:
                # a bare CR or LF: never passed on (response splitting); checked once for the whole
                # head, so the headers need no per-header check on the way out (http1.py)
                self._fail_head("malformed backend header")
                return
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                self._fail_head("malformed backend status line")
                return
            try:
                status = int(parts[1])
            except ValueError:
                self._fail_head("malformed backend status code")
                return
            reason = parts[2] if len(parts) > 2 else b""
            # one comprehension over C-level partitions: this runs for every proxied response
            headers = [
                (name.lower(), value.strip())
                for name, sep, value in map(bytes.partition, lines[1:], repeat(b":"))
                if sep and name and name == name.strip()  # "Name : v" or no colon: refused below
            ]
            if len(headers) != len(lines) - 1:
                self._fail_head("malformed backend header")
                return
            length: int | None = None
            chunked = False
            conn_close = parts[0] == b"HTTP/1.0"
            for low, value in headers:
                if low not in _FRAMING:
                    continue
                if low == b"content-length":
                    try:
                        n = int(value)
                    except ValueError:
                        self._fail_head("invalid Content-Length from backend")
                        return
                    if (length is not None and length != n) or n < 0:
                        self._fail_head("conflicting Content-Length from backend")
                        return
                    length = n
                elif low == b"transfer-encoding":
                    chunked = value.lower().endswith(b"chunked")
                else:  # connection
                    tokens = value.lower()
                    if b"close" in tokens:
                        conn_close = True
                    elif b"keep-alive" in tokens and parts[0] == b"HTTP/1.0":
                        conn_close = False
            if 100 <= status < 200 and status != 101:
                continue  # interim response (100 Continue, 103 Early Hints): wait for the real one
            self.keep_alive = not conn_close
            no_body = self._head_only or status in (204, 304)
            if no_body:
                self._framing = "none"
            elif chunked:
                self._framing = "chunked"
            elif length is not None:
                self._framing = "length"
                self._length_left = length
            else:
                self._framing = "close"
                self.keep_alive = False
            self.head = (status, reason, headers)
            self._state = "body"
            if self._framing == "none" or (self._framing == "length" and length == 0):
                self._finish_body()
            rest = bytes(self._buf)
            self._buf = bytearray()
            if rest and self._state == "body":
                self._feed_body(rest)
            elif rest:
                self.keep_alive = False
            # after the bytes that came with the head: a callback sees a small body complete
            on_head = self._on_head
            if on_head is not None:
                self._on_head = None
                on_head(None)
            elif self._head_waiter is not None and not self._head_waiter.done():
                self._head_waiter.set_result(None)
            return

    def _finish_body(self) -> None:
        self.body_done = True
        self._state = "done"
        self._wake_body()

    def _wake_body(self) -> None:
        w = self._body_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _push(self, data: bytes) -> None:
        if data:
            self._body.append(data)
            if (
                not self._paused_reading
                and sum(len(b) for b in self._body) > READ_HIGH_WATER
                and self.transport
            ):
                self._paused_reading = True
                self.transport.pause_reading()
            self._wake_body()

    def _feed_body(self, data: bytes) -> None:
        if self._framing == "length":
            take = data[: self._length_left]
            self._length_left -= len(take)
            self._push(take)
            if self._length_left == 0:
                if len(data) > len(take):
                    self.keep_alive = False
                self._finish_body()
        elif self._framing == "close":
            self._push(data)
        elif self._framing == "chunked":
            self._buf += data
            self._parse_chunks()
        else:
            self.keep_alive = False

    def _parse_chunks(self) -> None:
        buf = self._buf
        while True:
            if self._chunk_left > 0:
                if not buf:
                    return
                take = bytes(buf[: self._chunk_left])
                del buf[: len(take)]
                self._chunk_left -= len(take)
                self._push(take)
                if self._chunk_left > 0:
                    return
                self._chunk_left = -2  # expect CRLF after the chunk
            if self._chunk_left == -2:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    self._break("malformed chunk terminator")
                    return
                del buf[:2]
                self._chunk_left = -1
            if self._chunk_left == -1:
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > 4096:
                        self._break("malformed chunk size")
                    return
                size_text = bytes(buf[:i]).split(b";", 1)[0].strip()
                del buf[: i + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    self._break("malformed chunk size")
                    return
                if size == 0:
                    self._chunk_left = -3
                else:
                    self._chunk_left = size
                    continue
            if self._chunk_left == -3:  # trailers until an empty line
                i = buf.find(b"\r\n")
                if i < 0:
                    return
                line = bytes(buf[:i])
                del buf[: i + 2]
                if not line:
                    if buf:
                        self.keep_alive = False
                    self._finish_body()
                    return

    def _break(self, message: str) -> None:
        self.keep_alive = False
        self.body_done = False
        self._state = "done"
        self._wake_body()
        self.close()

    # --- use --------------------------------------------------------------------------------
    def expect_head(
        self,
        method: str,
        waiter: asyncio.Future[None] | None = None,
        on_head: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """A request of `method` was (or is about to be) written: frame its response, and tell
        `waiter` (a future) or `on_head` (a callback) when its head arrived or will not."""
        self._state = "head"
        self._head_only = method == "HEAD"
        self._head_waiter = waiter
        self._on_head = on_head

    def forget_head(self) -> None:
        """Whoever waited for the response head no longer does."""
        self._on_head = None

    def whole_body(self) -> bytes | None:
        """The whole body when it has already arrived in one piece, else None (nothing taken)."""
        if self.body_done and len(self._body) <= 1:
            return self._body.popleft() if self._body else b""
        return None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    async def drain(self) -> None:
        if self._paused_writing and not self.closed:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
        if self.closed:
            raise UpstreamError("backend closed the connection")

    async def read_chunk(self) -> bytes | None:
        """The next piece of the response body; None at its end. Raises if the body broke."""
        while True:
            if self._body:
                data = self._body.popleft()
                if self._paused_reading and not self._body and self.transport is not None:
                    self._paused_reading = False
                    self.transport.resume_reading()
                return data
            if self.body_done:
                return None
            if self.closed or self._state == "done":
                raise UpstreamError("backend response ended early")
            self._body_waiter = asyncio.get_running_loop().create_future()
            await self._body_waiter
            self._body_waiter = None
