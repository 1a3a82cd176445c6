"""The pool: keep-alive connections per (scheme, host, port), a request in its awaited form
(`Upstream.request`) and its callback form (`Upstream.request_nowait`), and the response handed
to the proxy (`UpstreamResponse`)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable

from portico.gateway.upstream._connection import Connection
from portico.gateway.upstream._errors import Reusable, UpstreamError, UpstreamTimeout
from portico.gateway.upstream._tls import BackendTls, client_context
from portico.gateway.upstream._wire import request_bytes

IDLE_SECONDS = 4.0  # below the usual 5 s keep-alive timeout of servers (uvicorn's default)
MAX_IDLE_PER_HOST = 256


class UpstreamResponse:
    """Status, headers and a streamed body. Read the body to the end (or `close()`) exactly once."""

    __slots__ = ("_conn", "_pool", "_released", "headers", "reason", "status")

    def __init__(self, pool: Upstream, conn: Connection) -> None:
        assert conn.head is not None
        self.status, self.reason, self.headers = conn.head
        self._pool = pool
        self._conn = conn
        self._released = False

    def ready_body(self) -> bytes | None:
        """The whole body when it has already arrived (the common small-response case), else None."""
        data = self._conn.whole_body()
        if data is not None:
            self.close()
        return data

    async def iter_body(self) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await self._conn.read_chunk()
                if chunk is None:
                    break
                yield chunk
        finally:
            self.close()

    async def read(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.iter_body():
            size += len(chunk)
            if size > limit:
                self.close()
                raise UpstreamError("backend response body too large to buffer")
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        self._pool.release(self._conn)


class Upstream:
    """One pool of keep-alive connections per (scheme, host, port)."""

    def __init__(self, connect_timeout: float = 10.0) -> None:
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        # pools of connections made with another TLS profile than the default (see _tls.py)
        self._idle_tls: dict[BackendTls, dict[tuple[str, str, int], list[Connection]]] = {}
        self._contexts: dict[BackendTls | None, ssl.SSLContext] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # connects of request_nowait (the loop holds weak refs)
        self.opened = 0

    def _ssl(self, tls: BackendTls | None) -> ssl.SSLContext:
        ctx = self._contexts.get(tls)
        if ctx is None:
            if len(self._contexts) >= 256:  # profiles of certificates since replaced
                self._contexts.clear()
            ctx = self._contexts[tls] = client_context(tls)
        return ctx

    def ssl_context(self, tls: BackendTls | None) -> ssl.SSLContext:
        """The client context of a TLS profile (shared with the pool's connections)."""
        return self._ssl(tls)

    def _idle_of(self, tls: BackendTls | None) -> dict[tuple[str, str, int], list[Connection]]:
        if tls is None:
            return self._idle
        idle = self._idle_tls.get(tls)
        if idle is None:
            idle = self._idle_tls[tls] = {}
        return idle

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        for pools in [self._idle, *self._idle_tls.values()]:
            for conns in pools.values():
                for c in conns:
                    c.close()
        self._idle.clear()
        self._idle_tls.clear()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            cutoff = time.monotonic() - IDLE_SECONDS
            for tls, pools in [(None, self._idle), *self._idle_tls.items()]:
                for key, conns in list(pools.items()):
                    keep = [c for c in conns if not c.closed and c.idle_since > cutoff]
                    for c in conns:
                        if c not in keep:
                            c.close()
                    if keep:
                        pools[key] = keep
                    else:
                        del pools[key]
                if tls is not None and not pools:
                    del self._idle_tls[tls]

    def release(self, conn: Connection) -> None:
        if conn.closed or not conn.keep_alive or not conn.body_done:
            conn.close()
            return
        conn.reset()
        conn.idle_since = time.monotonic()
        idle = self._idle_of(conn.tls).setdefault(conn.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn.close()
            return
        idle.append(conn)

    def release_idle(self, conn: Connection) -> None:
        """A connection opened for a request that no longer wants it: pool it unused."""
        conn.body_done = True
        self.release(conn)

    def _pooled(self, key: tuple[str, str, int], tls: BackendTls | None) -> Connection | None:
        idle = (self._idle if tls is None else self._idle_of(tls)).get(key)
        cutoff = time.monotonic() - IDLE_SECONDS
        while idle:
            c = idle.pop()
            if not c.closed and c.idle_since > cutoff:
                return c
            c.close()
        return None

    async def _connect(
        self, key: tuple[str, str, int], tls: BackendTls | None, server_hostname: str | None
    ) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        ssl_ctx = self._ssl(tls) if scheme == "https" else None
        try:
            _t, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(key, tls),
                    host,
                    port,
                    ssl=ssl_ctx,
                    server_hostname=(server_hostname or host) if ssl_ctx else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to the backend timed out after {self.connect_timeout:g}s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamError(
                f"TLS handshake with the backend failed: {exc.reason or type(exc).__name__}"
            ) from None
        except OSError as exc:
            raise UpstreamError(
                f"cannot connect to the backend: {exc.strerror or type(exc).__name__}"
            ) from None
        self.opened += 1
        return conn

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
        timeout: float,  # noqa: ASYNC109 - a deadline for the response head, not for the whole call
        *,
        tls: BackendTls | None = None,
        content_length: int | None = None,
    ) -> UpstreamResponse:
        """Send one request; returns once the response head arrived (body streams after)."""
        key = (scheme, host, port)
        deadline = time.monotonic() + timeout
        replayable = not isinstance(body, AsyncIterator)
        for attempt in (0, 1):
            conn = self._pooled(key, tls) if attempt == 0 else None
            if conn is None:
                conn = await self._connect(key, tls, None)
            try:
                await self._send(
                    conn, method, host, port, scheme, target, headers, body, content_length, deadline
                )
                return UpstreamResponse(self, conn)
            except Reusable:
                conn.close()
                if replayable and attempt == 0:
                    continue
                raise UpstreamError("backend closed the connection") from None
            except BaseException:
                conn.keep_alive = False
                conn.close()
                raise
        raise UpstreamError("backend closed the connection")  # pragma: no cover

    async def _send(
        self,
        conn: Connection,
        method: str,
        host: str,
        port: int,
        scheme: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
        content_length: int | None,
        deadline: float,
    ) -> None:
        assert conn.transport is not None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        conn.expect_head(method, waiter=waiter)
        streaming = isinstance(body, AsyncIterator)
        conn.transport.write(
            request_bytes(
                method,
                scheme,
                host,
                port,
                target,
                headers,
                None if streaming else body,  # type: ignore[arg-type]
                content_length if streaming else None,
                chunked=streaming and content_length is None,
            )
        )
        if streaming:
            assert isinstance(body, AsyncIterator)
            sent = 0
            async for chunk in body:
                if not chunk:
                    continue
                if waiter.done():  # the backend answered before the body was sent: stop sending
                    conn.keep_alive = False
                    break
                sent += len(chunk)
                if content_length is None:
                    conn.transport.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    conn.transport.write(chunk)
                await conn.drain()
            else:
                if content_length is None:
                    conn.transport.write(b"0\r\n\r\n")
                elif sent != content_length:
                    raise UpstreamError("request body shorter than its Content-Length")
        if waiter.done():
            waiter.result()
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout("the backend did not answer in time")
        # a timer instead of asyncio.wait_for(shield(...)): no extra task or future per request
        timer = loop.call_later(remaining, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    # --- the callback form, for the gateway's fast path ----------------------------------------
    def request_nowait(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        timeout: float,
        done: Callable[[UpstreamResponse | None, BaseException | None], None],
        *,
        tls: BackendTls | None = None,
    ) -> None:
        """`request` without a task or future: `done(response, None)` runs once the response head
        arrived (with the body too when it came in the same read: `ready_body()`), or
        `done(None, error)` once it cannot (UpstreamError / UpstreamTimeout). `done` is never
        called before this returns."""
        _CallbackRequest(
            self, method, (scheme, host, port), target, headers, body, timeout, tls, done
        ).start()


class _CallbackRequest:
    """One request of `Upstream.request_nowait`: a pooled connection when there is one (written at
    once), else a new connection (a task: connecting is rare); one retry on a fresh connection when
    a pooled one turns out to be closed before any byte came back; the head deadline as a timer."""

    __slots__ = (
        "body",
        "conn",
        "deadline",
        "done",
        "headers",
        "key",
        "method",
        "pool",
        "pooled",
        "target",
        "timer",
        "tls",
    )

    def __init__(
        self,
        pool: Upstream,
        method: str,
        key: tuple[str, str, int],
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        timeout: float,
        tls: BackendTls | None,
        done: Callable[[UpstreamResponse | None, BaseException | None], None],
    ) -> None:
        self.pool = pool
        self.method = method
        self.key = key
        self.target = target
        self.headers = headers
        self.body = body
        self.deadline = time.monotonic() + timeout
        self.tls = tls
        self.done = done
        self.conn: Connection | None = None
        self.pooled = False
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(loop.time() + (self.deadline - time.monotonic()), self._expired)
        conn = self.pool._pooled(self.key, self.tls)
        if conn is None:
            self._connect_later()
            return
        self.pooled = True
        try:
            self._write(conn)
        except Exception as exc:  # done() must not run before request_nowait returns
            conn.close()
            loop.call_soon(self._finish, None, UpstreamError(f"writing to the backend failed: {exc}"))

    def _connect_later(self) -> None:
        task = asyncio.get_running_loop().create_task(self._connect())
        self.pool._tasks.add(task)
        task.add_done_callback(self.pool._tasks.discard)

    async def _connect(self) -> None:
        try:
            conn = await self.pool._connect(self.key, self.tls, None)
        except UpstreamError as exc:
            self._finish(None, exc)
            return
        if self.done is None:  # timed out meanwhile: the connection is fresh, keep it
            self.pool.release_idle(conn)
            return
        try:
            self._write(conn)
        except Exception as exc:
            conn.close()
            self._finish(None, UpstreamError(f"writing to the backend failed: {exc}"))

    def _write(self, conn: Connection) -> None:
        assert conn.transport is not None
        self.conn = conn
        conn.expect_head(self.method, on_head=self._on_head)
        scheme, host, port = self.key
        conn.transport.write(
            request_bytes(self.method, scheme, host, port, self.target, self.headers, self.body, None)
        )

    def _on_head(self, err: BaseException | None) -> None:
        conn = self.conn
        assert conn is not None
        if err is None:
            self._finish(UpstreamResponse(self.pool, conn), None)
            return
        conn.keep_alive = False
        conn.close()
        if isinstance(err, Reusable) and self.pooled:  # a stale pooled connection: once more, fresh
            self.pooled = False
            self.conn = None
            self._connect_later()
            return
        self._finish(
            None, UpstreamError("backend closed the connection") if isinstance(err, Reusable) else err
        )

    def _expired(self) -> None:
        self.timer = None
        conn = self.conn
        if conn is not None:
            conn.forget_head()
            conn.keep_alive = False
            conn.close()
        self._finish(None, UpstreamTimeout("the backend did not answer in time"))

    def _finish(self, response: UpstreamResponse | None, err: BaseException | None) -> None:
        done = self.done
        if done is None:
            return
        self.done = None  # type: ignore[assignment]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        done(response, err)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("the backend did not answer in time"))
