"""The whole body of the request or the response, for the policies that rewrite it.

Bodies normally stream through the gateway; a policy that rewrites one reads it whole first
(bounded by MAX_BODY_BYTES), decoding a gzip or deflate content coding, and puts the new body in
place of the stream (`ctx.request_body`, or the response's `body`)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from portico.gateway.client_body import BodyTooLarge, request_body
from portico.gateway.context import Response
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import ReadsResponseBody
from portico.gateway.policies.cache import pending_store
from portico.gateway.upstream import UpstreamError

if TYPE_CHECKING:
    from portico.gateway.context import Context, HeaderMap

MAX_BODY_BYTES = 8 * 1024 * 1024
REQUEST_SIDE = frozenset({"inbound", "backend"})


def _request_has_body(ctx: Context) -> bool:
    if ctx.headers_touched:
        length = ctx.headers.get("content-length")
        chunked = "transfer-encoding" in ctx.headers
    else:
        raw = dict(ctx.raw_headers)
        length = raw[b"content-length"].decode("latin-1") if b"content-length" in raw else None
        chunked = b"transfer-encoding" in raw
    if chunked:
        return True
    try:
        return length is not None and int(length) > 0
    except ValueError:
        return False


def media_type(ctx: Context, section: str) -> str:
    """The Content-Type of the body a policy in `section` works on (read from the head only)."""
    if section in REQUEST_SIDE:
        value = ctx.headers.get("content-type")
    else:
        value = ctx.response.header_map().get("content-type") if ctx.response is not None else None
    return (value or "").split(";", 1)[0].strip().lower()


def is_media(value: str, kind: str) -> bool:
    """`application/json`, `text/json`, `application/problem+json` are json; `…/xml`, `…+xml` xml."""
    return value.split(";", 1)[0].strip().lower().endswith(("/" + kind, "+" + kind))


class Body:
    """One message's body, read whole: `data` (decoded), its media type and the policy's side."""

    def __init__(self, ctx: Context, request_side: bool, data: bytes) -> None:
        self.ctx = ctx
        self.request_side = request_side
        self.data = data

    def headers(self) -> HeaderMap:
        if self.request_side:
            return self.ctx.headers
        assert self.ctx.response is not None
        return self.ctx.response.header_map()

    def replace(self, data: bytes, content_type: str | None = None) -> None:
        """The new body (and its Content-Type); lengths and codings of the old one no longer hold."""
        h = self.headers()
        for name in ("content-length", "transfer-encoding", "content-encoding", "content-md5"):
            h.delete(name)
        if content_type is not None:
            h.set("Content-Type", [content_type])
        if self.request_side:
            self.ctx.request_body = data
        else:
            assert self.ctx.response is not None
            self.ctx.response.body = data
        self.data = data


async def read_body(ctx: Context, section: str, source: str) -> Body:
    """The body the policy `source` works on in `section`: the request's before the backend,
    else the response's (an empty one when there is no response yet)."""
    if section in REQUEST_SIDE:
        data = ctx.request_body
        if data is None:
            if not _request_has_body(ctx):
                return Body(ctx, True, b"")  # nothing to rewrite: the request goes on without a body
            data = ctx.request_body = await _read_request(ctx, source)  # forwarded as read, or rewritten
            ctx.headers.delete("transfer-encoding")
            ctx.headers.delete("content-length")
        body = Body(ctx, True, data)
    else:
        r = ctx.response
        if r is None:
            r = ctx.response = Response(200)
        if r.upstream is not None:
            if ctx.method == "HEAD" or r.status in (204, 304):
                return Body(ctx, False, b"")  # no body follows the head: nothing to read or rewrite
            # a cache-store before this policy asked for the backend body: it is kept as read here
            keep = pending_store(ctx, r.upstream) if ctx.cache is not None else None
            r.body = await _read_response(r, source)
            if keep is not None:
                keep(r.body)
            h = r.header_map()
            h.delete("content-length")
            h.delete("transfer-encoding")
        body = Body(ctx, False, r.body)
    _decode(body, source)
    return body


async def _read_request(ctx: Context, source: str) -> bytes:
    limit = min(MAX_BODY_BYTES, getattr(ctx.backend, "max_body_bytes", MAX_BODY_BYTES))
    parts: list[bytes] = []
    try:
        async for chunk in request_body(ctx, limit):
            parts.append(chunk)
    except BodyTooLarge:
        raise Reject(
            413,
            f"Request body exceeds the limit of {limit} bytes.",
            source=source,
            reason="RequestEntityTooLarge",
        ) from None
    return b"".join(parts)


async def _read_response(r: Response, source: str) -> bytes:
    assert r.upstream is not None
    upstream, r.upstream = r.upstream, None
    whole = upstream.ready_body()
    if whole is not None:
        return whole
    try:
        return await upstream.read(MAX_BODY_BYTES)
    except UpstreamError as exc:
        raise Reject(
            502,
            f"The backend's response body could not be read whole ({exc}; at most {MAX_BODY_BYTES} bytes).",
            source=source,
            reason="BackendResponseBodyUnreadable",
        ) from None


def _decode(body: Body, source: str) -> None:
    """A gzip or deflate body decoded in place (and its Content-Encoding removed)."""
    h = body.headers()
    coding = (h.get("content-encoding") or "").strip().lower()
    if coding in ("", "identity"):
        return
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise Reject(
            500 if not body.request_side else 415,
            f"The {'request' if body.request_side else 'response'} body's content coding '{coding[:40]}' "
            "cannot be decoded to transform the body (supported: gzip, deflate).",
            source=source,
            reason="UnsupportedContentEncoding",
        )
    # gzip: a gzip header; deflate: a zlib stream (RFC 9110), raw deflate as some servers send
    attempts = (31,) if coding != "deflate" else (15, -15)
    for wbits in attempts:
        d = zlib.decompressobj(wbits)
        try:
            data = d.decompress(body.data, MAX_BODY_BYTES)
        except zlib.error:
            continue
        if d.unconsumed_tail:
            raise Reject(
                413 if body.request_side else 502,
                f"The decoded body exceeds the limit of {MAX_BODY_BYTES} bytes.",
                source=source,
                reason="BodyTooLarge",
            )
        h.delete("content-encoding")
        h.delete("content-length")
        body.data = data
        if body.request_side:
            body.ctx.request_body = data
        else:
            assert body.ctx.response is not None
            body.ctx.response.body = data
        return
    raise Reject(
        400 if body.request_side else 502,
        f"The {'request' if body.request_side else 'response'} body is not valid {coding} data.",
        source=source,
        reason="InvalidContentEncoding",
    )


ReadsResponseBody.reader = read_body

__all__ = ["MAX_BODY_BYTES", "REQUEST_SIDE", "Body", "is_media", "media_type", "read_body"]
