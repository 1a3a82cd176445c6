"""The backend seam: how a request reaches its backend. `Gateway` gives each request's `Context`
one when the request begins (portico/gateway/proxy.py's `Forwarder`, over the pooled client of
portico/gateway/upstream/); forward-request calls it, and unit tests give a fake instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from portico.gateway.context import Context
    from portico.gateway.outcome import Reject
    from portico.gateway.upstream import BackendTls


@dataclass
class SideRequest:
    """A request a policy sends on its own (send-request, send-one-way-request)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    tls: BackendTls | None = None  # a client certificate (authentication-certificate); None: default checks


@dataclass
class SideResponse:
    """Its answer, read whole (at most the `limit` given to `send`)."""

    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


class SideRequestFailed(Exception):
    """No answer: the URL is unusable, the connection failed, the answer was too large, or (`timeout`)
    it did not come in time. The message names the cause, never the URL (it may carry secrets)."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class Backend(Protocol):
    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109 - the policy's
        """Send the request as `ctx` describes it; the answer's head is in `ctx.response` when this
        returns (its body may still stream). Raises Reject (502, 504, 413...)."""
        ...

    def forward_nowait(
        self, ctx: Context, timeout: float | None, done: Callable[[Reject | None], None]
    ) -> None:
        """`forward` from callbacks (the fast path; the request body, if any, is in
        `ctx.request_body`): `done(None)` once the head is in `ctx.response`, or `done(reject)`,
        never before this returns. Raises Reject when nothing could be sent."""
        ...

    async def buffer_body(self, ctx: Context) -> None:
        """Read the rest of the client's request body into `ctx.request_body` (within the gateway's
        body limit; raises Reject 413/400), so that it can be sent more than once (retry, send-request
        mode="copy")."""
        ...

    async def send(
        self,
        ctx: Context,
        request: SideRequest,
        timeout: float,  # noqa: ASYNC109 - the policy's timeout, for the whole exchange
        limit: int,
    ) -> SideResponse:
        """Send a policy's own request through the gateway's client (its pool, TLS and trusted CAs),
        reading at most `limit` bytes of the answer. Raises SideRequestFailed."""
        ...


__all__ = ["Backend", "SideRequest", "SideRequestFailed", "SideResponse"]
