"""WebSocket pass-through, as API Management does it for APIs of type websocket: the client's
opening handshake is a request to the API's onHandshake operation, whose inbound policies run as
for any request (keys, rate limits, validate-jwt, set-header...); its backend step (`Connector`,
in place of the HTTP forwarder) opens the backend WebSocket with the handshake's headers as the
policies left them; when the backend accepts, the client gets its 101 and messages are relayed
both ways (`relay`) until either side closes, within the message size and idle limits. A backend
that refuses the handshake has its answer passed on; one that cannot be reached is a 502.

The WebSocket protocol on both connections is wsproto's (sans-IO): frames are parsed and
re-framed, so each side's limits hold, pings are answered per connection, and no extension is
negotiated (both connections carry plain frames)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from portico.gateway.backend import SideRequest, SideResponse
from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.outcome import Reject
from portico.gateway.outgoing import request_headers
from portico.gateway.policies.pipeline import Pipeline
from portico.gateway.proxy import RESPONSE_DROP, Forwarder
from portico.gateway.upstream import BackendTls, split_url

WS_SCHEMES = {"http": "ws", "https": "wss"}
SYNTHETIC_REFUSED = (
    "GraphQL subscriptions over WebSocket are not served by synthetic GraphQL APIs "
    "(only pass-through ones relay them to their serviceUrl)."
)
# API Management's policies that do not apply to onHandshake; inherited from the global or product
# scope they are skipped (the control plane refuses them on onHandshake itself)
UNSUPPORTED_ON_HANDSHAKE = frozenset(
    {
        "mock-response",
        "cache-lookup",
        "cache-store",
        "cross-domain",
        "cors",
        "jsonp",
        "set-method",
        "set-body",
        "xml-to-json",
        "json-to-xml",
        "xsl-transform",
        "validate-content",
        "validate-parameters",
        "validate-headers",
        "validate-status-code",
    }
)
# handshake headers that belong to each connection, not passed from one to the other
_OWN_HEADERS = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"upgrade",
        b"connection",
        b"content-length",
    }
)
_READ = 64 * 1024
_REJECT_BODY = 64 * 1024  # a refusing backend's body passed on, at most
_CLOSE_GRACE = 5.0  # seconds a side has to answer a close before its connection is dropped
_TICK = 1.0  # how often the idle limit is checked


class _Upgrade(Protocol):
    """The HTTP server's side of the handshake (http1._Cycle)."""

    def upgrade(self, headers: list[tuple[bytes, bytes]]) -> Any: ...


def upgrade_of(scope: dict[str, Any]) -> _Upgrade | None:
    """The HTTP server's cycle when the request is a WebSocket opening handshake (http1.py)."""
    extensions = scope.get("extensions")
    return extensions.get("portico.websocket") if extensions else None


def scheme_of(ctx: Context) -> str:
    """The scheme an API's protocols are matched against: ws/wss for a handshake."""
    return WS_SCHEMES.get(ctx.scheme, ctx.scheme) if ctx.tunnel is not None else ctx.scheme


def handshake_pipeline(pipeline: Pipeline) -> Pipeline:
    def keep(items: list[Any]) -> list[Any]:
        return [p for p in items if getattr(p, "tag", "") not in UNSUPPORTED_ON_HANDSHAKE]

    out = Pipeline(
        keep(pipeline.inbound), keep(pipeline.backend), keep(pipeline.outbound), keep(pipeline.on_error)
    )
    out.error = pipeline.error
    return out


def check_handshake(ctx: Context) -> None:
    """RFC 6455 §4.2.1: what a server must find in an opening handshake (the HTTP server checked
    `Upgrade: websocket` and `Connection: upgrade`)."""
    h = ctx.headers
    if ctx.method != "GET":
        raise Reject(
            400, "A WebSocket handshake must be a GET request.", source="websocket", reason="BadHandshake"
        )
    if (h.get("sec-websocket-version") or "").strip() != "13":
        raise Reject(
            426,
            "Unsupported WebSocket version (13 is).",
            source="websocket",
            reason="BadHandshake",
            headers={"Sec-WebSocket-Version": "13"},
        )
    try:
        key = base64.b64decode((h.get("sec-websocket-key") or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 16:
        raise Reject(400, "Invalid Sec-WebSocket-Key header.", source="websocket", reason="BadHandshake")


@dataclass(eq=False)
class Tunnel:
    """A handshake in progress (`accepted` False) or the backend's accepted WebSocket."""

    accepted: bool = False
    backend: WSConnection | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    counted: Connector | None = None  # the connector whose open connections count this one

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.counted is not None:
            self.counted.active -= 1
            self.counted = None


def _fail(status: int, message: str, reason: str) -> Reject:
    return Reject(status, message, source="forward-request", reason=reason)


class Connector:
    """The backend step of a WebSocket handshake (the `Backend` seam, portico/gateway/backend.py);
    a policy's own requests (send-request) go through the HTTP forwarder."""

    __slots__ = ("active", "default_timeout", "forwarder", "max_connections", "upstream")

    def __init__(self, forwarder: Forwarder, default_timeout: float, max_connections: int) -> None:
        self.forwarder = forwarder
        self.upstream = forwarder.upstream
        self.default_timeout = default_timeout
        self.max_connections = max_connections  # of this process, relayed at once
        self.active = 0

    async def buffer_body(self, ctx: Context) -> None:
        ctx.request_body = b""  # an opening handshake has no body (RFC 6455: a GET)

    async def send(
        self,
        ctx: Context,
        request: SideRequest,
        timeout: float,  # noqa: ASYNC109 - the policy's timeout, for the whole exchange
        limit: int,
    ) -> SideResponse:
        return await self.forwarder.send(ctx, request, timeout, limit)

    def forward_nowait(self, ctx: Context, timeout: float | None, done: Any) -> None:
        raise _fail(500, "A WebSocket handshake is not served from callbacks.", "Unsupported")

    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109 - the policy's
        tunnel = ctx.tunnel
        assert tunnel is not None
        tunnel.close()  # a handshake forwarded again (a policy's retry) starts afresh
        tunnel.accepted = False
        if self.active >= self.max_connections:
            raise _fail(
                503,
                f"The gateway relays {self.max_connections} WebSocket connections already; try again later.",
                "WebSocketConnectionLimit",
            )
        base = ctx.backend_base
        if not base:
            raise _fail(500, "Backend service URL is not defined for this API.", "BackendUrlMissing")
        scheme, sep, rest = base.partition("://")
        http_scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(scheme.lower())
        try:
            if not sep or http_scheme is None:
                raise ValueError(f"unsupported URL scheme '{scheme[:20]}'")
            _s, host, port, base_target = split_url(f"{http_scheme}://{rest}")
        except ValueError as exc:
            raise _fail(500, f"Backend URL is invalid: {exc}.", "BackendUrlInvalid") from None
        base_path, _, base_query = base_target.partition("?")
        query = ctx.current_query()
        if base_query:
            query = base_query + ("&" + query if query else "")
        # the handshake goes to the serviceUrl itself (no slash added), as Azure sends it
        suffix = "" if ctx.backend_suffix == "/" else ctx.backend_suffix
        target = ((base_path.rstrip("/") + suffix) or "/") + ("?" + query if query else "")
        tls = http_scheme == "https"
        default_port = 443 if tls else 80
        authority = host if port == default_port else f"{host}:{port}"
        if ":" in host and port == default_port:
            authority = f"[{host}]"
        elif ":" in host:
            authority = f"[{host}]:{port}"
        headers = [(n, v) for n, v in request_headers(ctx) if n not in _OWN_HEADERS]
        offered = [
            p.strip() for p in (ctx.headers.get("sec-websocket-protocol") or "").split(",") if p.strip()
        ]
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=self.upstream.ssl_context(_tls_of(ctx)) if tls else None,
                    server_hostname=host if tls else None,
                    limit=_READ,
                ),
                self.upstream.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            ctx.backend_ms = (time.perf_counter() - t0) * 1000.0
            raise _fail(
                502, f"The backend could not be reached ({_describe(exc)}).", "BackendConnectionFailure"
            ) from None
        tunnel.reader, tunnel.writer = reader, writer
        ws = tunnel.backend = WSConnection(ConnectionType.CLIENT)
        try:
            writer.write(
                ws.send(Request(host=authority, target=target, subprotocols=offered, extra_headers=headers))
            )
            answer = await asyncio.wait_for(
                _handshake_answer(ws, reader), timeout if timeout is not None else self.default_timeout
            )
        except TimeoutError:
            tunnel.close()
            ctx.backend_ms = (time.perf_counter() - t0) * 1000.0
            raise _fail(
                504, "The backend did not answer the WebSocket handshake in time.", "Timeout"
            ) from None
        except (OSError, ssl.SSLError, LocalProtocolError, RemoteProtocolError) as exc:
            tunnel.close()
            ctx.backend_ms = (time.perf_counter() - t0) * 1000.0
            raise _fail(
                502,
                f"The backend's WebSocket handshake failed ({_describe(exc)}).",
                "BackendConnectionFailure",
            ) from None
        ctx.backend_ms = (time.perf_counter() - t0) * 1000.0
        h = HeaderMap()
        if isinstance(answer, AcceptConnection):
            ctx.backend_status = 101
            if answer.subprotocol:
                h.set("Sec-WebSocket-Protocol", [answer.subprotocol])
            for name, value in answer.extra_headers:
                if name.lower() not in _OWN_HEADERS and name.lower() not in RESPONSE_DROP:
                    h.add(name.decode("latin-1"), value.decode("latin-1"))
            tunnel.accepted = True
            tunnel.counted = self
            self.active += 1
            ctx.response = Response(101, h, reason="Switching Protocols")
            return
        status, raw, body = answer
        tunnel.close()
        ctx.backend_status = status
        for name, value in raw:
            if name.lower() not in RESPONSE_DROP and name.lower() != b"content-length":
                h.add(name.decode("latin-1"), value.decode("latin-1"))
        ctx.response = Response(status, h, body)


async def _handshake_answer(
    ws: WSConnection, reader: asyncio.StreamReader
) -> AcceptConnection | tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The backend's acceptance, or (status, headers, body) of its refusal (body cut at
    `_REJECT_BODY`). The backend's response head is bounded by h11 (16 KiB)."""
    refused: RejectConnection | None = None
    body: list[bytes] = []
    size = 0
    while True:
        data = await reader.read(_READ)
        if not data:
            if refused is not None:
                return refused.status_code, list(refused.headers), b"".join(body)
            raise ConnectionError("the backend closed the connection during the handshake")
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return event
            if isinstance(event, RejectConnection):
                refused = event
                if not event.has_body:
                    return event.status_code, list(event.headers), b""
            elif isinstance(event, RejectData) and refused is not None:
                if size < _REJECT_BODY:
                    body.append(bytes(event.data[: _REJECT_BODY - size]))
                    size += len(body[-1])
                if event.body_finished or size >= _REJECT_BODY:
                    return refused.status_code, list(refused.headers), b"".join(body)


def _describe(exc: BaseException) -> str:
    return type(exc).__name__ if not str(exc) else str(exc)[:200]


def _tls_of(ctx: Context) -> BackendTls | None:
    cas = ctx.service.backend_cas
    if cas is None:
        return ctx.backend_tls
    return (ctx.backend_tls or BackendTls()).trusting(cas)


# --- relaying ------------------------------------------------------------------------------------
class _Side:
    """One connection of the relay: its WebSocket state and its byte stream."""

    __slots__ = ("conn", "drain", "gone_code", "read", "write")

    def __init__(
        self, conn: Connection | WSConnection, read: Any, write: Any, drain: Any, gone_code: int
    ) -> None:
        self.conn = conn
        self.read = read
        self.write = write
        self.drain = drain
        self.gone_code = gone_code  # what the other side is told when this one drops without a close

    def send(self, event: Event) -> None:
        state = self.conn.state
        if isinstance(event, CloseConnection):
            if state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                return
        elif state is not ConnectionState.OPEN:
            return
        with contextlib.suppress(LocalProtocolError):
            self.write(self.conn.send(event))


class _Activity:
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = time.monotonic()


async def _pump(src: _Side, dst: _Side, max_message: int, activity: _Activity) -> None:
    """Messages from `src` to `dst` until `src` closes (its close is passed on). Frames that came
    with the backend's 101 are parsed already: events are taken before the first read."""
    size = 0
    while True:
        for event in src.conn.events():
            if isinstance(event, Message):
                data = event.data
                size += len(data) if isinstance(data, bytes | bytearray) else len(data.encode())
                if size > max_message:
                    reason = f"message larger than {max_message} bytes"
                    src.send(CloseConnection(code=1009, reason=reason))
                    dst.send(CloseConnection(code=1009, reason=reason))
                    await dst.drain()
                    return
                kind = TextMessage if isinstance(event, TextMessage) else BytesMessage
                dst.send(kind(data=data, message_finished=event.message_finished))
                if event.message_finished:
                    size = 0
            elif isinstance(event, Ping):
                src.send(event.response())
            elif isinstance(event, CloseConnection):
                src.send(event.response())  # the close handshake's answer (when it was the peer's)
                dst.send(CloseConnection(code=event.code, reason=event.reason))
                await dst.drain()
                return
        await dst.drain()
        received = await src.read()
        if not received:
            dst.send(CloseConnection(code=src.gone_code, reason="connection lost"))
            await dst.drain()
            return
        activity.last = time.monotonic()
        try:
            src.conn.receive_data(received)
        except LocalProtocolError:  # it closed already: what follows its close is dropped
            return


async def relay(ctx: Context, cycle: _Upgrade, max_message: int, idle_seconds: float) -> None:
    """Answer the client's handshake with 101 and relay messages until either side closes."""
    tunnel = ctx.tunnel
    response = ctx.response
    assert tunnel is not None and tunnel.backend is not None and tunnel.writer is not None
    assert tunnel.reader is not None and response is not None
    key = (ctx.headers.get("sec-websocket-key") or "").strip().encode("latin-1")
    head = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", generate_accept_token(key)),
    ]
    for name, value in response.header_map().to_raw():
        low = name.lower()
        if low == b"sec-websocket-protocol" or (low not in _OWN_HEADERS and low not in RESPONSE_DROP):
            head.append((name.lower(), value))
    for extra, text in ctx.extra_headers:
        head.append((extra.lower().encode("latin-1"), text.encode("latin-1", "replace")))
    stream = cycle.upgrade(head)
    writer, reader = tunnel.writer, tunnel.reader

    async def backend_read() -> bytes:
        try:
            return await reader.read(_READ)
        except (OSError, ssl.SSLError):
            return b""

    async def backend_drain() -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.drain()

    client = _Side(Connection(ConnectionType.SERVER), stream.read, stream.write, stream.drain, 1001)
    backend = _Side(tunnel.backend, backend_read, writer.write, backend_drain, 1011)
    activity = _Activity()
    loop = asyncio.get_running_loop()
    tasks = {
        loop.create_task(_pump(client, backend, max_message, activity)),
        loop.create_task(_pump(backend, client, max_message, activity)),
    }
    try:
        while True:
            done, _pending = await asyncio.wait(tasks, timeout=_TICK, return_when=asyncio.FIRST_COMPLETED)
            if done:
                break
            if time.monotonic() - activity.last >= idle_seconds:
                for side in (client, backend):
                    side.send(CloseConnection(code=1001, reason="idle timeout"))
                break
        # the other side has a moment to answer the close, then its connection is dropped
        await asyncio.wait(tasks, timeout=_CLOSE_GRACE)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stream.close()
        tunnel.close()
