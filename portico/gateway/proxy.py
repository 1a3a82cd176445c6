"""Forwarding to the backend (forward-request) and writing the answer back to the client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from portico.gateway.backend import SideRequest, SideRequestFailed, SideResponse
from portico.gateway.client_body import BodyTooLarge, ClientGone, request_body
from portico.gateway.context import Response
from portico.gateway.http1 import InvalidRequestBody
from portico.gateway.outcome import Reject
from portico.gateway.outgoing import HOP_BY_HOP, backend_target, request_headers
from portico.gateway.policies.cache import MAX_RESPONSE_BYTES, pending_store
from portico.gateway.upstream import (
    BackendTls,
    Upstream,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    split_url,
)

if TYPE_CHECKING:
    from portico.gateway.context import Context

RESPONSE_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)


def _has_body(ctx: Context) -> tuple[bool, int | None]:
    length: int | None = None
    chunked = False
    for name, value in ctx.raw_headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        return True, None
    return (length is not None and length > 0), length


def _failed(ctx: Context, exc: UpstreamError, t0: float) -> Reject:
    ctx.backend_ms = (time.perf_counter() - t0) * 1000.0
    if isinstance(exc, UpstreamTimeout):
        return Reject(
            504, f"The backend did not respond in time ({exc}).", source="forward-request", reason="Timeout"
        )
    return Reject(
        502,
        f"The backend could not be reached ({exc}).",
        source="forward-request",
        reason="BackendConnectionFailure",
    )


def _answered(ctx: Context, upstream: UpstreamResponse, t0: float) -> None:
    ctx.backend_ms = (time.perf_counter() - t0) * 1000.0
    ctx.backend_status = upstream.status
    r = Response(upstream.status, reason=upstream.reason.decode("latin-1", "replace"))
    r.raw_headers = [h for h in upstream.headers if h[0] not in RESPONSE_DROP]  # names arrive lower-cased
    r.upstream = upstream
    ctx.response = r
    if ctx.diag is not None:
        ctx.diag.backend_response = r.raw_headers


class Forwarder:
    """The gateway's backend (portico/gateway/backend.py): requests go out through the pooled
    client, with the gateway's body limit and default timeout."""

    __slots__ = ("default_timeout", "max_body_bytes", "upstream")

    def __init__(self, upstream: Upstream, max_body_bytes: int, default_timeout: float) -> None:
        self.upstream = upstream
        self.max_body_bytes = max_body_bytes
        self.default_timeout = default_timeout

    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109 - the policy's
        scheme, host, port, target = backend_target(ctx)
        headers = request_headers(ctx)
        if ctx.diag is not None:
            ctx.diag.backend_request = headers
        body: bytes | AsyncIterator[bytes] | None
        length: int | None = None
        if ctx.request_body is not None:
            body = ctx.request_body
        else:
            has, length = _has_body(ctx)
            body = request_body(ctx, self.max_body_bytes) if has else None
        if ctx.response is not None:
            ctx.response.drop_upstream()
        t0 = time.perf_counter()
        try:
            upstream = await self.upstream.request(
                ctx.method,
                scheme,
                host,
                port,
                target,
                headers,
                body,
                timeout if timeout is not None else self.default_timeout,
                tls=_tls_of(ctx),
                content_length=length,
            )
        except BodyTooLarge:
            raise Reject(
                413,
                f"Request body exceeds the limit of {self.max_body_bytes} bytes.",
                source="forward-request",
                reason="RequestEntityTooLarge",
            ) from None
        except InvalidRequestBody:
            # as API Management: 400, and the connection ends with it (http1 closes it)
            raise Reject(
                400,
                "Invalid request body: malformed chunked encoding.",
                source="forward-request",
                reason="InvalidRequestBody",
            ) from None
        except ClientGone:
            raise
        except UpstreamError as exc:
            raise _failed(ctx, exc, t0) from None
        _answered(ctx, upstream, t0)

    async def buffer_body(self, ctx: Context) -> None:
        if ctx.request_body is not None:
            return
        has, _length = _has_body(ctx)
        if not has:
            return
        try:
            ctx.request_body = b"".join([chunk async for chunk in request_body(ctx, self.max_body_bytes)])
        except BodyTooLarge:
            raise Reject(
                413,
                f"Request body exceeds the limit of {self.max_body_bytes} bytes.",
                source="request",
                reason="RequestEntityTooLarge",
            ) from None
        except InvalidRequestBody:
            raise Reject(
                400,
                "Invalid request body: malformed chunked encoding.",
                source="request",
                reason="InvalidRequestBody",
            ) from None

    async def send(
        self,
        ctx: Context,
        request: SideRequest,
        timeout: float,  # noqa: ASYNC109 - the policy's timeout, for the whole exchange
        limit: int,
    ) -> SideResponse:
        try:
            scheme, host, port, target = split_url(request.url)
        except ValueError as exc:
            raise SideRequestFailed(f"the URL is not usable ({str(exc).split(':')[0]})") from None
        headers: list[tuple[bytes, bytes]] = []
        for name, value in request.headers:
            n = name.lower().encode("latin-1")
            if n not in HOP_BY_HOP:
                headers.append((n, value.encode("latin-1", "replace")))
        cas = ctx.service.backend_cas
        tls = request.tls if cas is None else (request.tls or BackendTls()).trusting(cas)
        deadline = time.monotonic() + timeout

        async def exchange() -> SideResponse:
            upstream = await self.upstream.request(
                request.method, scheme, host, port, target or "/", headers, request.body, timeout, tls=tls
            )
            try:
                body = await upstream.read(limit)
            finally:
                upstream.close()
            reason = upstream.reason.decode("latin-1", "replace")
            return SideResponse(upstream.status, reason, list(upstream.headers), body)

        try:
            # the head's deadline is the client's; the body must also arrive before the timeout
            return await asyncio.wait_for(exchange(), max(deadline - time.monotonic(), 0.001))
        except (UpstreamTimeout, TimeoutError):
            raise SideRequestFailed(f"no answer within {timeout:g} s", timeout=True) from None
        except UpstreamError as exc:
            raise SideRequestFailed(str(exc)) from None

    def forward_nowait(
        self,
        ctx: Context,
        timeout: float | None,
        done: Callable[[Reject | None], None],
    ) -> None:
        """`forward` for the fast path (Gateway.handle_nowait), whose request body, if any, is in
        `ctx.request_body` already: `done(None)` once the response head is in `ctx.response`, or
        `done(reject)`. Raises Reject (bad backend URL) before anything is sent."""
        scheme, host, port, target = backend_target(ctx)
        headers = request_headers(ctx)
        if ctx.diag is not None:
            ctx.diag.backend_request = headers
        if ctx.response is not None:
            ctx.response.drop_upstream()
        t0 = time.perf_counter()

        def answered(upstream: UpstreamResponse | None, exc: BaseException | None) -> None:
            if upstream is None:
                assert isinstance(exc, UpstreamError)
                done(_failed(ctx, exc, t0))
                return
            _answered(ctx, upstream, t0)
            done(None)

        self.upstream.request_nowait(
            ctx.method,
            scheme,
            host,
            port,
            target,
            headers,
            ctx.request_body,
            timeout if timeout is not None else self.default_timeout,
            answered,
            tls=_tls_of(ctx),
        )


def _tls_of(ctx: Context) -> BackendTls | None:
    cas = ctx.service.backend_cas
    if cas is None:
        return ctx.backend_tls
    return (ctx.backend_tls or BackendTls()).trusting(cas)


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"statusCode": status, "message": message})


def response_parts(ctx: Context) -> tuple[int, list[tuple[bytes, bytes]], bytes | None, bool]:
    """The answer to write: status, headers (names lower-cased), the whole body (or None when the
    backend's body is still streaming in: `ctx.response.upstream.iter_body()`), and whether the
    headers are known to be free of CR/LF (straight from the backend's parsed head: upstream.py)."""
    r = ctx.response
    if r is None:
        r = ctx.response = Response(200)
    checked = r.headers is None and not ctx.extra_headers
    if r.headers is not None:
        headers = [(n.lower(), v) for n, v in r.headers.to_raw()]
    else:
        headers = r.raw_headers or []
    for name, value in ctx.extra_headers:
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1", "replace")))
    upstream = r.upstream
    if upstream is not None:
        whole = upstream.ready_body()
        if whole is not None and ctx.cache is not None:
            keep = pending_store(ctx, upstream)  # cache-store asked for this response
            if keep is not None:
                keep(whole)
        return r.status, headers, whole, checked
    body = r.body
    headers = [(n, v) for n, v in headers if n != b"content-length"]
    headers.append((b"content-length", b"%d" % len(body)))
    return r.status, headers, body, checked


async def send_response(ctx: Context, send: Any) -> None:
    status, headers, whole, _checked = response_parts(ctx)
    if whole is not None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": whole})
        ctx.bytes_out += len(whole)
        return
    await stream_response(ctx, send, status, headers)


async def stream_response(ctx: Context, send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """The backend's answer whose body is still arriving, passed on piece by piece."""
    assert ctx.response is not None and ctx.response.upstream is not None
    upstream = ctx.response.upstream
    keep = pending_store(ctx, upstream) if ctx.cache is not None else None
    kept: list[bytes] | None = [] if keep is not None else None  # the body, for cache-store
    kept_size = 0
    await send({"type": "http.response.start", "status": status, "headers": headers})
    try:
        async for chunk in upstream.iter_body():
            ctx.bytes_out += len(chunk)
            if kept is not None:
                kept.append(chunk)
                kept_size += len(chunk)
                if kept_size > MAX_RESPONSE_BYTES:
                    kept = None  # too large to keep
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError:
        # the backend broke mid-body: the head is gone already, so close the client connection
        raise ClientGone() from None
    finally:
        upstream.close()
    await send({"type": "http.response.body", "body": b""})
    if keep is not None and kept is not None:
        keep(b"".join(kept))
