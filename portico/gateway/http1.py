"""The gateway's HTTP/1.1 server: httptools parsing on asyncio (uvloop) protocols, ASGI to the app.

Why not uvicorn (which the management API uses): on the gateway's hot path every microsecond is
paid per proxied request. This server is the same design as uvicorn's httptools protocol, cut to
what a reverse proxy needs: a response whose body the app hands over whole (the common case: a
small backend answer read in one go) goes out in a single `write` with its head; request headers
are bounded while they arrive (431), before the app sees them; a WebSocket upgrade request goes
to the app through ASGI with `scope["extensions"]["portico.websocket"]` (its `_Cycle`), which may
take the connection over as a byte stream after answering 101 (`_Cycle.upgrade`); nothing else (no
lifespan, no access log, no Date/Server headers). Behaviour kept from uvicorn: keep-alive with an
idle timeout, pipelined requests answered in order, request bodies streamed with back-pressure,
`Expect: 100-continue`, chunked responses when the length is unknown, `http.disconnect` when the
client goes away, 400 for unparsable requests, 500 when the app fails before answering, graceful
shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from portico.gateway.peer_tls import peer_certificate
from portico.gateway.upgraded import HIGH_WATER as _UPGRADED_HIGH_WATER
from portico.gateway.upgraded import UpgradedStream

log = logging.getLogger("portico.gateway")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode()) for s in HTTPStatus if int(s) >= 100
}
_BODY_HIGH_WATER = 256 * 1024  # request body buffered before reading from the client pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_FRAMING = {b"content-length": 1, b"transfer-encoding": 2, b"connection": 3}
_WHOLE_BODY = 64 * 1024  # a request body up to this size is read whole before the app starts
# after an answer sent before its request was read whole, what the client still sends is read
# and dropped for this long at most before the connection ends (see HttpProtocol._linger)
_LINGER_SECONDS = 5.0
_INVALID_BODY = b'{"statusCode": 400, "message": "Invalid request body: malformed chunked encoding."}'


class InvalidRequestBody(Exception):
    """Raised by `receive` when the request's body cannot be parsed (a malformed chunk): the app
    answers 400, and the connection ends with that answer (the rest of the stream has no framing)."""


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def _plain(status: int, body: bytes) -> bytes:
    return (
        _status_line(status)
        + b"content-type: application/json; charset=utf-8\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
        % len(body)
        + body
    )


class _Limits:
    __slots__ = ("header_bytes", "keep_alive", "too_large_body")

    def __init__(self, header_bytes: int, keep_alive: float, too_large_body: bytes) -> None:
        self.header_bytes = header_bytes
        self.keep_alive = keep_alive
        self.too_large_body = too_large_body


class _Cycle:
    """One request/response exchange on a connection."""

    __slots__ = (
        "body",
        "body_invalid",
        "chunked",
        "close_delimited",
        "complete",
        "conn",
        "continue_expected",
        "disconnected",
        "head",
        "head_only",
        "keep_alive",
        "more_body",
        "response_done",
        "scope",
        "started",
        "upgrade_requested",
        "waiter",
    )

    def __init__(self, conn: HttpProtocol, scope: dict[str, Any], keep_alive: bool, expect: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_expected = expect
        self.body: list[bytes] = []
        self.body_invalid = False  # the body turned out malformed: receive raises InvalidRequestBody
        self.more_body = True  # the request body is still arriving
        self.complete = False
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.head: list[bytes] | None = None  # the response head, until it is written
        self.head_only = scope["method"] == "HEAD"
        self.chunked = False
        self.close_delimited = False  # HTTP/1.0 client, length unknown: the body ends with the connection
        self.started = False
        self.response_done = False
        self.upgrade_requested = False  # a WebSocket opening handshake (`Upgrade: websocket`)

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    # --- ASGI receive -------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if self.continue_expected and not self.started:
            self.continue_expected = False
            if not conn.transport.is_closing():
                conn.transport.write(_CONTINUE)
        while not self.body and self.more_body and not self.disconnected and not self.body_invalid:
            conn.resume_reading()
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        if self.body_invalid:  # what arrived before the bad chunk must not pass for the whole body
            self.body = []
            raise InvalidRequestBody()
        if self.disconnected and not self.body:
            return {"type": "http.disconnect"}
        chunks = self.body
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        conn.resume_reading()
        return {"type": "http.request", "body": data, "more_body": self.more_body}

    # --- ASGI send ----------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start_response(int(message["status"]), message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        more = message.get("more_body", False)
        self.write_body(message.get("body", b""), more)
        if more and self.conn.write_paused:
            await self.conn.drain()

    def respond(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, checked: bool = False
    ) -> None:
        """The whole answer at once, with no ASGI messages (the gateway's fast path, which then
        calls `finish`). Raises RuntimeError on an invalid header, before anything is written;
        `checked`: the caller knows no header holds CR, LF (or a colon in a name)."""
        self.start_response(status, headers, checked)
        self.write_body(body, False)

    def finish(self) -> None:
        """The fast path's end of the exchange (what `run` does after the app returns)."""
        if not self.response_done:
            self.keep_alive = False
        self.conn.cycle_done(self)

    def start_response(self, status: int, headers: Any, checked: bool = False) -> None:
        if self.started:
            raise RuntimeError("the response has started already")
        lines = [_status_line(status)]
        length_known = False
        for name, value in headers:
            if not checked and (
                b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name or b":" in name
            ):
                raise RuntimeError("invalid response header")
            special = _FRAMING.get(name)
            if special is None:
                lines.append(name + b": " + value + b"\r\n")
            elif special == 1:  # content-length
                length_known = True
                lines.append(name + b": " + value + b"\r\n")
            elif special == 3 and value.lower() == b"close":  # connection
                self.keep_alive = False
            # transfer-encoding (2): framing is this server's business
        if not length_known and not self.head_only and status >= 200 and status not in (204, 304):
            self.chunked = True  # decided for good when the first body part arrives
        self.head = lines  # written with the first body part
        self.started = True
        self.continue_expected = False

    def write_body(self, body: bytes, more: bool) -> None:
        conn = self.conn
        head = self.head
        if not self.started or self.response_done:
            raise RuntimeError("http.response.body outside of a response")
        transport = conn.transport
        if conn.closed:  # the client is gone: what is left of the answer has nowhere to go
            self.head = None
            if not more:
                self.response_done = True
            return
        if head is not None:
            self.head = None
            if not more and self.chunked:
                # the whole body in one message: a plain Content-Length response
                self.chunked = False
                head.append(b"content-length: %d\r\n" % len(body))
            elif self.chunked and self.scope["http_version"] == "1.0":
                self.chunked = False
                self.close_delimited = True
                self.keep_alive = False
            elif self.chunked:
                head.append(b"transfer-encoding: chunked\r\n")
            if not self.complete:  # answered before its body was read: the connection ends after it
                self.keep_alive = False
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            if self.head_only:
                transport.write(b"".join(head))
            elif self.chunked:
                if body:
                    head.append(b"%x\r\n" % len(body))
                    head.append(body)
                    head.append(b"\r\n")
                if not more:
                    head.append(b"0\r\n\r\n")
                transport.write(b"".join(head))
            else:
                head.append(body)
                transport.write(b"".join(head))
        elif self.head_only:
            pass
        elif self.chunked:
            if body:
                transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            if not more:
                transport.write(b"0\r\n\r\n")
        elif body:
            transport.write(body)
        if not more:
            self.response_done = True

    def upgrade(self, headers: list[tuple[bytes, bytes]]) -> UpgradedStream:
        """Answer 101 Switching Protocols with `headers` and hand the connection over as a byte
        stream; it ends when the app returns (no further request is read from it)."""
        if self.started:
            raise RuntimeError("the response has started already")
        conn = self.conn
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        for name, value in headers:
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name or b":" in name:
                raise RuntimeError("invalid response header")
            head.append(name + b": " + value + b"\r\n")
        head.append(b"\r\n")
        self.started = True
        self.response_done = True
        self.keep_alive = False
        stream = UpgradedStream(conn)
        conn.upgraded = stream
        if not conn.closed:
            conn.transport.write(b"".join(head))
        tail, conn.upgrade_tail = conn.upgrade_tail, b""
        if tail:
            stream.feed(tail)
        if conn.closed:
            stream.lost()
        conn.reading_paused = True  # paused when the parser stopped at the upgrade
        conn.resume_reading()
        return stream

    async def run(self, app: App) -> None:
        conn = self.conn
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if isinstance(exc, InvalidRequestBody):
                answer = _plain(400, _INVALID_BODY)
            else:
                log.exception("gateway: unhandled error in the request handler")
                answer = _plain(500, b'{"statusCode": 500, "message": "Internal server error"}')
            nothing_written = not self.started or self.head is not None
            if nothing_written and not conn.transport.is_closing():
                with contextlib.suppress(Exception):
                    conn.transport.write(answer)
            self.keep_alive = False
            self.response_done = True
        finally:
            if not self.response_done:
                self.keep_alive = False  # the app ended without finishing its answer
            conn.cycle_done(self)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app: App, server: HttpServer, scheme: str) -> None:
        self.app = app
        self.server = server
        self.limits = server.limits
        self.scheme = scheme
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None
        self.peer_certificate: bytes | None = None  # DER of the TLS client's certificate, if it sent one
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.expect = False
        self.body_length = 0  # declared by the request being parsed; -1: chunked
        self.fast = server.fast
        self.pending: _Cycle | None = None  # parsed head, started once its small body is in
        self.parsing: _Cycle | None = None  # the request being parsed
        self.active: _Cycle | None = None  # the request being answered
        self.task: asyncio.Task[None] | None = None  # answering it
        self.queue: deque[_Cycle] = deque()  # pipelined requests waiting for their turn
        self.reading_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.idle_since: float | None = None  # loop time the connection went idle (None: busy)
        self.closed = False
        self.unparsable = False  # the parser failed: nothing more is read
        self.linger_deadline: float | None = None  # lingering close: loop time it ends at
        self.upgraded: UpgradedStream | None = None  # after a 101: what the client sends goes there
        self.upgrade_tail = b""  # bytes after an upgrade request's head, read before the 101

    # --- connection ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        own = transport.get_extra_info("sockname")
        self.sockname = (str(own[0]), int(own[1])) if isinstance(own, tuple) else None
        if self.scheme == "https":  # the handshake is over: what the client presented is known
            self.peer_certificate = peer_certificate(transport)
        self.server.connections.add(self)
        self.idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.upgraded is not None:
            self.upgraded.lost()
        self.server.connections.discard(self)
        for cycle in (self.active, self.parsing, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                cycle._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def close_if_idle(self, now: float) -> None:
        """Called by the server's sweep (no timer per request: they cost on the hot path). Also ends
        a connection whose request head has not arrived whole within the keep-alive time."""
        since = self.idle_since
        if since is not None and now - since >= self.limits.keep_alive and self.active is None:
            if not self.transport.is_closing():
                self.transport.close()
        elif self.linger_deadline is not None and now >= self.linger_deadline:
            self.transport.close()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            with contextlib.suppress(Exception):
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        # a parsed-ahead pipelined request keeps it paused, and a parser that failed reads no more
        if self.reading_paused and not self.queue and not self.unparsable:
            self.reading_paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()

    # --- parsing ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.upgraded is not None:
            self.upgraded.feed(data)
            return
        if self.linger_deadline is not None:
            return  # the connection is ending: the rest of an unread request is dropped
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # the request is answered (a WebSocket handshake may take the connection over, with
            # what followed its head), then the connection ends: nothing more is parsed from it
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            if len(self.upgrade_tail) + len(data) - offset <= _UPGRADED_HIGH_WATER:
                self.upgrade_tail += data[offset:]
            for cycle in (self.parsing, self.active, *self.queue):
                if cycle is not None:
                    cycle.keep_alive = False
            self.pause_reading()
        except httptools.HttpParserError:  # also what an exception raised in a callback becomes
            if self.header_bytes > self.limits.header_bytes:
                self._reject(431, self.limits.too_large_body)
            elif self.parsing is not None:  # the head was parsed: its body is malformed
                self._invalid_body(self.parsing)
            else:
                self._reject(400, b'{"statusCode": 400, "message": "Invalid HTTP request received."}')

    def _invalid_body(self, cycle: _Cycle) -> None:
        """The request (answering, or waiting its turn) is told through `receive`, so that its
        answer is a 400 the app counts like any other; the connection ends after it."""
        self.unparsable = True
        self.transport.pause_reading()
        self.parsing = None
        cycle.body_invalid = True
        cycle.keep_alive = False
        cycle._wake()
        if cycle is self.pending:  # (a body read whole is framed by its length: not expected)
            self.pending = None
            self._start(cycle)

    def _reject(self, status: int, body: bytes) -> None:
        if self.active is None:
            self.transport.write(_plain(status, body))
            self._linger()
        else:  # answer in order: after the request in progress
            self.transport.pause_reading()
            self.parsing = None
            self.queue.clear()
            self.active.keep_alive = False

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.expect = False
        self.body_length = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.limits.header_bytes:
            raise _HeadersTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.header_bytes:
            raise _HeadersTooLarge()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        elif name == b"content-length":
            try:
                self.body_length = int(value)
            except ValueError:
                self.body_length = -1  # the app answers 400
        elif name == b"transfer-encoding":
            self.body_length = -1
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = self.url
        raw_path, _sep, query = url.partition(b"?")
        if raw_path[:1] != b"/":  # absolute-form (proxy) request target: keep only the path
            try:
                parsed = httptools.parse_url(url)
                raw_path = parsed.path or b"/"
                query = parsed.query or b""
            except httptools.HttpParserInvalidURLError:
                raise httptools.HttpParserError("invalid request target") from None
        text = raw_path.decode("latin-1")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": parser.get_http_version(),
            "server": self.sockname,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": unquote(text) if "%" in text else text,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
        }
        if self.peer_certificate is not None:  # both paths read it from here (Gateway._begin)
            scope["client_certificate"] = self.peer_certificate
        cycle = _Cycle(self, scope, parser.should_keep_alive(), self.expect)
        if parser.should_upgrade() and any(
            n == b"upgrade" and v.strip().lower() == b"websocket" for n, v in self.headers
        ):
            cycle.upgrade_requested = True  # served through ASGI, which may take the connection over
            scope["extensions"] = {"portico.websocket": cycle}
        self.parsing = cycle
        if self.active is None:
            if (
                self.fast is not None
                and not self.expect
                and 0 <= self.body_length <= _WHOLE_BODY
                and not cycle.upgrade_requested
            ):
                self.pending = cycle  # the fast path wants the whole request: started when it is in
            else:
                self._start(cycle)
        else:
            self.queue.append(cycle)
            self.pause_reading()  # one pipelined request parsed ahead is enough

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        cycle.body.append(body)
        if sum(map(len, cycle.body)) > _BODY_HIGH_WATER:
            self.pause_reading()
        cycle._wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        cycle.more_body = False
        cycle.complete = True
        self.parsing = None
        cycle._wake()
        if cycle is self.pending:
            self.pending = None
            self._start(cycle)

    # --- request lifecycle --------------------------------------------------------------------
    def _start(self, cycle: _Cycle) -> None:
        if self.transport.is_closing():  # a request parsed after the connection was ended
            return
        self.active = cycle
        self.idle_since = None
        fast = self.fast
        if (
            fast is not None
            and cycle.complete
            and not cycle.continue_expected
            and not cycle.upgrade_requested
        ):
            try:
                if fast(cycle):
                    return  # it answers (now or from a callback) and calls cycle.finish()
            except Exception:
                log.exception("gateway: unhandled error in the request handler")
                if self.active is cycle:
                    if not cycle.started and not self.transport.is_closing():
                        self.transport.write(
                            _plain(500, b'{"statusCode": 500, "message": "Internal server error"}')
                        )
                    cycle.keep_alive = False
                    cycle.response_done = True
                    self.cycle_done(cycle)
                return
        # held here: the loop keeps only weak references to tasks
        self.task = self.loop.create_task(cycle.run(self.app))

    def cycle_done(self, cycle: _Cycle) -> None:
        self.active = None
        self.task = None
        if self.closed:
            return
        if not cycle.complete:
            # an unread request body cannot be skipped reliably: the connection ends with the answer
            self._linger()
            return
        if not cycle.keep_alive or self.server.stopping:
            self.transport.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            self._start(nxt)
            if not self.queue:
                self.resume_reading()
            return
        self.resume_reading()
        self.idle_since = self.loop.time()

    def _linger(self) -> None:
        """Ends the connection after an answer sent before its request was read whole (413, 400,
        431). Closing at once would leave the client's unread bytes in the kernel, which then resets
        the connection, and a client still sending its body may lose the answer with it. So, as
        nginx's lingering close: our side is shut for writing once the answer is out, and what the
        client still sends is read and dropped until it closes, or for `_LINGER_SECONDS` at most
        (the server's sweep ends it, so no timer is armed per request)."""
        transport = self.transport
        if transport.is_closing():
            return
        self.parsing = None
        self.pending = None
        self.queue.clear()
        if self.server.stopping:
            transport.close()
            return
        self.linger_deadline = self.loop.time() + _LINGER_SECONDS
        if transport.can_write_eof():  # not over TLS: there the answer is followed by close only
            with contextlib.suppress(Exception):
                transport.write_eof()
        self.reading_paused = False
        with contextlib.suppress(Exception):
            transport.resume_reading()


class _HeadersTooLarge(Exception):
    """Raised in a parser callback to stop parsing (httptools reports it as a parser error)."""


class HttpServer:
    """Listeners of one scheme; `serve(sockets)` runs until `should_exit`."""

    def __init__(
        self,
        app: App,
        *,
        ssl_context: ssl.SSLContext | None = None,
        fast: Callable[[_Cycle], bool] | None = None,
        max_header_bytes: int = 32 * 1024,
        keep_alive: float = 30.0,
        graceful: float = 2.0,
    ) -> None:
        self.app = app
        # the app's synchronous entry for a whole, small request (Gateway.handle_nowait);
        # False from it: served through ASGI as any other request
        self.fast = fast
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        body = b'{"statusCode": 431, "message": "Request header fields are too large."}'
        self.limits = _Limits(max_header_bytes, keep_alive, body)
        self.graceful = graceful
        self.connections: set[HttpProtocol] = set()
        self.should_exit = False
        self.force_exit = False
        self.stopping = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        servers = []
        for sock in sockets or []:
            srv = await loop.create_server(
                lambda: HttpProtocol(self.app, self, self.scheme),
                sock=sock,
                ssl=self.ssl_context,
                backlog=2048,
            )
            servers.append(srv)
        try:
            ticks = 0
            while not self.should_exit:  # a flag set by run_servers' signal handler, as uvicorn does
                await asyncio.sleep(0.1)
                ticks += 1
                if ticks % 5 == 0:  # idle keep-alive connections end after `keep_alive` (±0.5 s)
                    now = loop.time()
                    for conn in list(self.connections):
                        conn.close_if_idle(now)
        finally:
            self.stopping = True
            for srv in servers:
                srv.close()
            for conn in list(self.connections):  # idle connections end now
                if conn.active is None and not conn.transport.is_closing():
                    conn.transport.close()
            deadline = loop.time() + self.graceful
            while self.connections and loop.time() < deadline and not self.force_exit:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            for conn in list(self.connections):
                conn.transport.abort()
