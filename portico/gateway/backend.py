"""The backend seam: how a request reaches its backend. `Gateway` gives each request's `Context`
one when the request begins (portico/gateway/proxy.py's `Forwarder`, over the pooled client of
portico/gateway/upstream/); forward-request calls it, and unit tests give a fake instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from portico.gateway.context import Context
    from portico.gateway.outcome import Reject


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


__all__ = ["Backend"]
