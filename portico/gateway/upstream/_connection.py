"""One keep-alive connection to a backend (an asyncio protocol): writes a request, frames the
response with llhttp (httptools.HttpResponseParser: status line, headers, Content-Length / chunked
/ until-close body) and buffers its body with back-pressure.

llhttp parses strictly: a bare CR or LF, a space before a header's colon, an obsolete line fold or
a second Content-Length (even an equal one) is refused (502), so a head that was parsed is free of
CR/LF and its headers need no per-header check on the way out (http1.py). It replaced a parser
written in Python, for ~10% fewer instructions per gateway request (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from portico.gateway.upstream._errors import Reusable, UpstreamError
from portico.gateway.upstream._tls import BackendTls

READ_HIGH_WATER = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024


class _Unexpected(Exception):
    """Raised by a callback when a second answer follows the first one in a read."""


class _HeadOnly(Exception):
    """Raised by a callback to stop the parser at the end of a head that has no body to follow
    (the answer to HEAD, which llhttp cannot know of)."""


def _head_error(exc: HttpParserError) -> str:
    """The gateway's words for llhttp's complaint about a response head."""
    text = str(exc)
    if "Content-Length" in text:
        return (
            "conflicting Content-Length from backend"
            if "Duplicate" in text
            else "invalid Content-Length from backend"
        )
    if "status" in text.lower():
        return "malformed backend status code"
    if "HTTP/" in text or "version" in text.lower():
        return "malformed backend status line"
    return "malformed backend header"


class Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_waiter",
        "_drain_waiter",
        "_head_bytes",
        "_head_only",
        "_head_ready",
        "_head_waiter",
        "_headers",
        "_interim",
        "_on_head",
        "_parser",
        "_paused_reading",
        "_paused_writing",
        "_reason",
        "_received_any",
        "_state",
        "_until_close",
        "body_done",
        "closed",
        "head",
        "idle_since",
        "keep_alive",
        "key",
        "tls",
        "transport",
    )

    def __init__(self, key: tuple[str, str, int], tls: BackendTls | None = None) -> None:
        self.key = key
        self.tls = tls  # the TLS profile it was made with: it goes back to that profile's pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._head_only = False
        self._parser = self._new_parser()
        self.reset()

    def _new_parser(self) -> HttpResponseParser:
        parser = HttpResponseParser(self)
        # Transfer-Encoding: chunked beside a Content-Length: chunked framing wins (RFC 9112 §6.3)
        parser.set_dangerous_leniencies(lenient_chunked_length=True)
        return parser

    def reset(self) -> None:
        self._state = "idle"  # idle | head | body | done
        self._head_waiter: asyncio.Future[None] | None = None
        self._on_head: Callable[[BaseException | None], None] | None = None  # the waiter's callback form
        self._head_ready = False
        self._head_bytes = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._interim = False
        self._until_close = False
        self._body: deque[bytes] = deque()
        self._body_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._paused_reading = False
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
            if self._until_close:
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
        state = self._state
        if state == "head":
            self._head_bytes += len(data)
        elif state != "body":  # bytes outside a response: the connection cannot be trusted any more
            self.keep_alive = False
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except HttpParserCallbackError as exc:
            stopped = exc.__context__
            if isinstance(stopped, _Unexpected):  # another answer after this one's end
                self.keep_alive = False
            elif not isinstance(stopped, _HeadOnly):
                raise
            self._parser = self._new_parser()  # stopped mid-message: the next answer needs a fresh one
        except HttpParserUpgrade:  # 101 Switching Protocols: its head, no body, then the connection goes
            self.keep_alive = False
        except HttpParserError as exc:
            self._parse_failed(exc)
            return
        if self._state == "head" and self._head_bytes > MAX_HEAD_BYTES:
            self._fail_head("backend response headers too large")
            return
        if self._head_ready:
            # after the bytes that came with the head: a callback sees a small body complete
            self._head_ready = False
            on_head = self._on_head
            if on_head is not None:
                self._on_head = None
                on_head(None)
            elif self._head_waiter is not None and not self._head_waiter.done():
                self._head_waiter.set_result(None)

    # --- llhttp's callbacks -----------------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        if self._state != "head":  # a second answer to one request
            raise _Unexpected()
        self._reason += reason  # in pieces when the status line is split over reads

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value.rstrip()))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # interim response (100 Continue, 103 Early Hints): wait for the real one
            self._interim = True
            self._headers = []
            self._reason = b""
            return
        headers = self._headers
        self.keep_alive = parser.should_keep_alive()
        self.head = (status, self._reason, headers)
        self._state = "body"
        self._head_ready = True
        if self._head_only or status in (204, 304):
            self._finish_body()
            if self._head_only:
                raise _HeadOnly()
            return
        length = chunked = False
        for name, value in headers:
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
        if not (length or chunked):
            self._until_close = True  # the body ends when the backend closes the connection
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self._push(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._finish_body()

    # --- framing ----------------------------------------------------------------------------
    def _parse_failed(self, exc: HttpParserError) -> None:
        state = self._state
        if state == "head":
            self._fail_head(_head_error(exc))
        elif state == "body":
            self._break()
        else:  # bytes after the answer: the connection cannot be trusted any more
            self.keep_alive = False
            self._parser = self._new_parser()

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

    def _break(self) -> None:
        """The body broke off (bad chunk framing): the reader sees it ended early."""
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
