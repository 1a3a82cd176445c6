"""Reading the client's request body, bounded by the gateway's body limit.

Below the proxy and the policies that buffer bodies (portico/gateway/policies/bodies.py), which
both read through here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portico.gateway.context import Context


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def request_body(ctx: Context, limit: int) -> AsyncIterator[bytes]:
    receive = ctx.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            ctx.bytes_in += len(chunk)
            if ctx.bytes_in > limit:
                raise BodyTooLarge()
            yield chunk
        if not message.get("more_body", False):
            return
