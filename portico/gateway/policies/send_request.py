"""Requests a policy sends itself: `send-request` (the answer, read whole, lands in a context variable
as an IResponse that expressions read: `((IResponse)context.Variables["r"]).Body.As<JObject>()`) and
`send-one-way-request` (fire and forget). Both go out through the gateway's own backend client
(ctx.backend.send: the pool, TLS checks and trusted CAs of forward-request)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from portico.gateway.backend import SideRequest, SideRequestFailed, SideResponse
from portico.gateway.context import HeaderMap
from portico.gateway.expressions import ExpressionError, MessageBody, Value
from portico.gateway.outcome import Reject
from portico.gateway.outgoing import backend_url, request_headers
from portico.gateway.policies.base import ALL, CompileContext, Policy, policy
from portico.gateway.policies.certificates import AuthenticationCertificate
from portico.gateway.policies.transform import SetBody, SetHeader, SetMethod, plain_set_body
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.upstream import BackendTls

if TYPE_CHECKING:
    from portico.gateway.context import Context

log = logging.getLogger("portico.gateway")

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # the most of an answer held in a variable (larger: an error)
ONE_WAY_READ_BYTES = 64 * 1024  # a one-way answer is read (to reuse the connection) and dropped
ONE_WAY_PENDING = 512  # one-way requests in flight per worker; more are dropped with a warning
DEFAULT_TIMEOUT = "60"
MODES = ("new", "copy")


class SentResponse:
    """The IResponse of send-request: StatusCode, StatusReason, Headers, Body."""

    __slots__ = ("body", "headers", "reason", "status")
    expr_type = "IResponse"

    def __init__(self, r: SideResponse) -> None:
        self.status = r.status
        self.reason = r.reason
        self.headers = HeaderMap.from_raw(r.headers)
        self.body = MessageBody(r.body)

    def expr_member(self, name: str) -> Any:
        if name == "StatusCode":
            return self.status
        if name == "StatusReason":
            return self.reason
        if name == "Headers":
            return self.headers
        if name == "Body":
            return self.body
        raise ExpressionError(f"'IResponse' does not contain a definition for '{name}'.")

    def expr_text(self) -> str:
        return "Microsoft.WindowsAzure.ApiManagement.Proxy.Gateway.Policies.IResponse"


def _seconds(value: Value, ctx: Context, what: str) -> float:
    text = value.text(ctx).strip()
    try:
        n = float(text)
    except ValueError:
        raise ExpressionError(f"{what} must be a number of seconds, got '{text[:30]}'") from None
    if not n > 0:
        raise ExpressionError(f"{what} must be a positive number of seconds, got '{text[:30]}'")
    return n


class OutgoingRequest:
    """The request described by a send-request's attributes and children: set-url, set-method,
    set-header, set-body, authentication-certificate."""

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        node.check_children(
            {
                "set-url",
                "set-method",
                "set-header",
                "set-body",
                "authentication-certificate",
                "authentication-managed-identity",
                "proxy",
            }
        )
        self.section = section
        mode = node.value("mode", default="new")
        assert mode is not None
        literal = mode.constant and "{{" not in mode.literal  # named values are checked once substituted
        if literal and mode.literal.strip().lower() not in MODES:
            raise PolicyDocumentError(
                f"attribute 'mode' has invalid value '{mode.literal[:40]}' (allowed: new, copy).", node
            )
        self.mode = mode
        timeout = node.value("timeout", default=DEFAULT_TIMEOUT)
        assert timeout is not None
        if timeout.constant:
            node.integer("timeout", minimum=1)
        self.timeout = timeout
        self.url: Value | None = None
        self.method: Value | None = None
        self.headers: list[SetHeader] = []
        self.body: SetBody | None = None
        self.certificate: AuthenticationCertificate | None = None
        for child in node.children:
            if child.tag in ("authentication-managed-identity", "proxy"):
                what = "managed identities" if child.tag != "proxy" else "sending through an HTTP proxy"
                raise PolicyDocumentError(
                    f"<{child.tag}> inside <{node.tag}> is not supported by this gateway ({what}).", child
                )
            if child.tag == "set-url":
                if self.url is not None:
                    raise PolicyDocumentError(f"<set-url> may appear only once in <{node.tag}>.", child)
                child.check_attrs(frozenset())
                child.check_children(frozenset())
                self.url = child.text_value()
                if self.url.constant and not self.url.literal:
                    raise PolicyDocumentError("<set-url> needs a URL.", child)
            elif child.tag == "set-method":
                if self.method is not None:
                    raise PolicyDocumentError(f"<set-method> may appear only once in <{node.tag}>.", child)
                self.method = SetMethod(child, "inbound", cc).value
            elif child.tag == "set-header":
                self.headers.append(SetHeader(child, "inbound", cc))
            elif child.tag == "set-body":
                if self.body is not None:
                    raise PolicyDocumentError(f"<set-body> may appear only once in <{node.tag}>.", child)
                self.body = plain_set_body(
                    child, "inbound", cc, node.tag, "its body is built from text or an expression"
                )
            else:
                if self.certificate is not None:
                    raise PolicyDocumentError(
                        f"<authentication-certificate> may appear only once in <{node.tag}>.", child
                    )
                self.certificate = AuthenticationCertificate(child, "inbound", cc)
        if literal and mode.literal.strip().lower() == "new" and self.url is None:
            raise PolicyDocumentError(f'<{node.tag} mode="new"> needs a <set-url>.', node)
        # copy in inbound/backend sends the client's body: it is read first (the stream is read once)
        self.needs_body = section != "outbound" and (not literal or mode.literal.strip().lower() == "copy")

    def copies(self, ctx: Context) -> bool:
        mode = self.mode.text(ctx).strip().lower()
        if mode not in MODES:
            raise ExpressionError(f"send-request mode must be 'new' or 'copy', got '{mode[:20]}'")
        return mode == "copy"

    async def build(self, ctx: Context) -> SideRequest:
        if self.needs_body and self.copies(ctx) and self.section != "outbound":
            await ctx.backend.buffer_body(ctx)
        return self.prepare(ctx)

    def prepare(self, ctx: Context) -> SideRequest:
        """The request, once a copied body (if any) is in ctx.request_body."""
        headers = HeaderMap()
        if self.copies(ctx):
            for name, value in request_headers(ctx):
                if not name.startswith(b"x-forwarded-"):
                    headers.add(name.decode("latin-1"), value.decode("latin-1"))
            method = ctx.method
            url = backend_url(ctx) if self.url is None else ""
            body = ctx.request_body if self.section != "outbound" else None
        else:
            method, url, body = "GET", "", None
        if self.url is not None:
            url = self.url.text(ctx).strip()
        if not url:
            raise ExpressionError("send-request needs a URL (<set-url> evaluated to an empty string)")
        if self.method is not None:
            method = self.method.text(ctx).strip().upper()
            if not method.isalpha() or len(method) > 20:
                raise ExpressionError(f"'{method[:30]}' is not an HTTP method")
        for h in self.headers:
            h.apply(headers, ctx)
        if self.body is not None:
            body = self.body.body(ctx)
            headers.delete("content-length")
        tls = BackendTls().with_client(self.certificate.certificate(ctx)) if self.certificate else None
        raw = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers.to_raw()]
        return SideRequest(method, url, raw, body, tls)


@policy
class SendRequest(Policy):
    tag = "send-request"
    sections = ALL
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"mode", "response-variable-name", "timeout", "ignore-error"})
        variable = node.value("response-variable-name", required=True)
        assert variable is not None
        self.variable = variable
        self.ignore_error = node.boolean("ignore-error", False)
        self.request = OutgoingRequest(node, section, cc)

    async def run(self, ctx: Context) -> Any:
        name = self.variable.text(ctx)
        timeout = _seconds(self.request.timeout, ctx, "send-request timeout")
        req = await self.request.build(ctx)
        try:
            answer = await ctx.backend.send(ctx, req, timeout, MAX_RESPONSE_BYTES)
        except SideRequestFailed as exc:
            if self.ignore_error:
                ctx.variables[name] = None
                return None
            if exc.timeout:
                raise Reject(
                    504,
                    f"send-request did not get an answer in time ({exc}).",
                    source=self.tag,
                    reason="Timeout",
                ) from None
            raise Reject(
                502, f"send-request failed ({exc}).", source=self.tag, reason="SendRequestFailure"
            ) from None
        ctx.variables[name] = SentResponse(answer)
        return None


_one_way: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly


@policy
class SendOneWayRequest(Policy):
    """Sent in the background: the request goes on at once, its answer (or failure) is dropped."""

    tag = "send-one-way-request"
    sections = ALL

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"mode", "timeout"})
        self.request = OutgoingRequest(node, section, cc)
        # only a copied client body needs awaiting; otherwise it is started synchronously (fast path)
        self.is_async = self.request.needs_body

    def run(self, ctx: Context) -> Any:
        if self.is_async:
            return self._run_async(ctx)
        self._start(ctx, self.request.prepare(ctx))
        return None

    async def _run_async(self, ctx: Context) -> Any:
        self._start(ctx, await self.request.build(ctx))
        return None

    def _start(self, ctx: Context, req: SideRequest) -> None:
        timeout = _seconds(self.request.timeout, ctx, "send-one-way-request timeout")
        if len(_one_way) >= ONE_WAY_PENDING:
            log.warning("gateway: send-one-way-request dropped: %d already in flight", len(_one_way))
            return
        task = asyncio.get_running_loop().create_task(_send_and_forget(ctx, req, timeout))
        _one_way.add(task)
        task.add_done_callback(_one_way.discard)


async def _send_and_forget(ctx: Context, req: SideRequest, timeout: float) -> None:  # noqa: ASYNC109
    try:
        await ctx.backend.send(ctx, req, timeout, ONE_WAY_READ_BYTES)
    except SideRequestFailed as exc:
        log.info("gateway: send-one-way-request failed: %s", exc)
    except Exception:  # never the request's problem: it has been answered already
        log.exception("gateway: send-one-way-request failed")


__all__ = ["MAX_RESPONSE_BYTES", "OutgoingRequest", "SendOneWayRequest", "SendRequest", "SentResponse"]
