"""Policies that change the request or response, route it, or answer it: set-header,
set-query-parameter, set-method, rewrite-uri, set-backend-service, forward-request, set-status,
set-variable, set-body, choose, return-response, mock-response."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from portico.gateway.context import HeaderMap, QueryMap, Response
from portico.gateway.expressions import ExpressionError, Value, truthy
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.base import (
    ALL,
    CompileContext,
    Policy,
    compile_policies,
    policy,
    run_list,
    run_now,
)
from portico.gateway.policies.certificates import apply_backend_tls
from portico.gateway.policies.liquid_body import LiquidSetBody
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.names import fold_name

if TYPE_CHECKING:
    from portico.gateway.context import Context

REQUEST_SIDE = frozenset({"inbound", "backend"})
EXISTS_ACTIONS = ("override", "skip", "append", "delete")
_METHOD = re.compile(r"^[A-Za-z]{1,20}$")


def _values(node: Node) -> list[Value]:
    node.check_children({"value"})
    out = []
    for child in node.children:
        child.check_attrs(frozenset())
        out.append(child.text_value())
    return out


def _response(ctx: Context) -> Response:
    if ctx.response is None:
        ctx.response = Response(200)
    return ctx.response


@policy
class SetHeader(Policy):
    tag = "set-header"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"name", "exists-action"})
        name = node.header_name("name", required=True)
        assert name is not None
        self.name = name
        self.action = node.choice("exists-action", EXISTS_ACTIONS, "override")
        self.values = _values(node)
        self.request_side = section in REQUEST_SIDE

    def run(self, ctx: Context) -> Any:
        self.apply(ctx.headers if self.request_side else _response(ctx).header_map(), ctx)
        return None

    def apply(self, headers: HeaderMap, ctx: Context) -> None:
        """Set this header in `headers` (the request's, the response's, or a send-request's)."""
        if self.action == "delete":
            headers.delete(self.name)
            return
        if self.action == "skip" and self.name in headers:
            return
        values = [v.text(ctx) for v in self.values]
        for v in values:
            if "\r" in v or "\n" in v:
                raise ExpressionError(f"header '{self.name}' value contains a line break")
        if self.action == "append" and self.name in headers:
            for v in values:
                headers.add(self.name, v)
        else:
            headers.set(self.name, values or [""])


@policy
class SetQueryParameter(Policy):
    tag = "set-query-parameter"
    sections = REQUEST_SIDE

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"name", "exists-action"})
        self.name = node.require("name")
        self.action = node.choice("exists-action", EXISTS_ACTIONS, "override")
        self.values = _values(node)

    def run(self, ctx: Context) -> Any:
        q = ctx.query_map()
        if self.action == "delete":
            q.delete(self.name)
        elif self.action == "skip" and self.name in q:
            pass
        else:
            values = [v.text(ctx) for v in self.values]
            if self.action == "append" and self.name in q:
                for v in values:
                    q.add(self.name, v)
            else:
                q.set(self.name, values or [""])
        return None


@policy
class SetMethod(Policy):
    tag = "set-method"
    sections = frozenset({"inbound", "backend", "on-error"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(frozenset())
        node.check_children(frozenset())
        self.value = node.text_value()
        if self.value.constant and not _METHOD.match(self.value.literal):
            raise PolicyDocumentError(f"'{self.value.literal[:30]}' is not an HTTP method.", node)

    def run(self, ctx: Context) -> Any:
        m = self.value.text(ctx).strip().upper()
        if not _METHOD.match(m):
            raise ExpressionError(f"'{m[:30]}' is not an HTTP method")
        ctx.method = m
        return None


_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z0-9_.\-*]+)\}")


@policy
class RewriteUri(Policy):
    tag = "rewrite-uri"
    sections = frozenset({"inbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"template", "copy-unmatched-params"})
        self.template = node.value("template", required=True)
        self.copy = node.boolean("copy-unmatched-params", True)

    def run(self, ctx: Context) -> Any:
        assert self.template is not None
        template = self.template.text(ctx)
        params = ctx.params
        text = _TEMPLATE_PARAM.sub(lambda m: params.get(m.group(1).lstrip("*"), ""), template)
        path, _, query = text.partition("?")
        if not path.startswith("/"):
            path = "/" + path
        new_q = QueryMap.parse(query)
        if self.copy:
            consumed = ctx.operation.query_params if ctx.operation is not None else ()
            for name, values in ctx.query_map().d.values():
                if name in consumed or name in new_q:
                    continue
                new_q.set(name, list(values))
        ctx.backend_suffix = path
        ctx.query = new_q
        return None


def apply_backend_entity(ctx: Context, backend: dict[str, Any]) -> None:
    """The backend's URL and credentials (its TLS profile: `certificates.apply_backend_tls`)."""
    ctx.backend_base = backend["url"]
    creds = backend.get("credentials") or {}
    for name, values in (creds.get("header") or {}).items():
        ctx.headers.set(name, [str(v) for v in values])
    if creds.get("query"):
        q = ctx.query_map()
        for name, values in creds["query"].items():
            q.set(name, [str(v) for v in values])
    auth = creds.get("authorization")
    if auth and auth.get("scheme"):
        ctx.headers.set("Authorization", [f"{auth['scheme']} {auth.get('parameter', '')}".strip()])


@policy
class SetBackendService(Policy):
    tag = "set-backend-service"
    sections = REQUEST_SIDE

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "base-url",
                "backend-id",
                "sf-partition-key",
                "sf-replica-type",
                "sf-resolve-condition",
                "sf-service-instance-name",
                "sf-listener-name",
            }
        )
        for a in node.attrs:
            if a.startswith("sf-"):
                raise PolicyDocumentError(
                    f"attribute '{a}' (Service Fabric) is not supported by this gateway.", node
                )
        self.base_url = node.value("base-url")
        self.backend_id = node.value("backend-id")
        if (self.base_url is None) == (self.backend_id is None):
            raise PolicyDocumentError("exactly one of 'base-url' and 'backend-id' is required.", node)
        if self.base_url is not None and self.base_url.constant and "{{" not in self.base_url.literal:
            if not self.base_url.literal.lower().startswith(("http://", "https://")):
                raise PolicyDocumentError("attribute 'base-url' must be an absolute http or https URL.", node)

    def run(self, ctx: Context) -> Any:
        if self.base_url is not None:
            url = self.base_url.text(ctx)
            if not url.lower().startswith(("http://", "https://")):
                raise ExpressionError(f"base-url '{url[:80]}' is not an absolute http or https URL")
            ctx.backend_base = url
            apply_backend_tls(ctx, None)
            return None
        assert self.backend_id is not None
        bid = self.backend_id.text(ctx)
        backend = ctx.service.backends.get(fold_name(bid))
        if backend is None:
            raise Reject(
                500,
                f"Backend '{bid[:80]}' was not found.",
                source="set-backend-service",
                reason="BackendNotFound",
            )
        apply_backend_tls(ctx, bid)
        apply_backend_entity(ctx, backend)
        return None


@policy
class ForwardRequest(Policy):
    tag = "forward-request"
    sections = frozenset({"backend"})
    is_async = True
    forwards = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "timeout",
                "timeout-ms",
                "follow-redirects",
                "buffer-request-body",
                "buffer-response",
                "fail-on-error-status-code",
                "http-version",
                "continue-timeout",
            }
        )
        node.check_children(frozenset())
        timeout = node.integer("timeout", minimum=0)
        timeout_ms = node.integer("timeout-ms", minimum=0)
        self.timeout: float | None = (
            timeout_ms / 1000.0 if timeout_ms is not None else float(timeout) if timeout is not None else None
        )
        if node.boolean("follow-redirects", False):
            raise PolicyDocumentError(
                "follow-redirects='true' is not supported by this gateway (redirects are returned to the caller).",
                node,
            )
        node.boolean("buffer-request-body", False)
        node.boolean("buffer-response", True)
        self.fail_on_error = node.boolean("fail-on-error-status-code", False)

    async def run(self, ctx: Context) -> Any:
        await ctx.backend.forward(ctx, self.timeout)
        self.check(ctx)
        return None

    def check(self, ctx: Context) -> None:
        """fail-on-error-status-code: the backend's error status goes to on-error."""
        if self.fail_on_error and ctx.response is not None and ctx.response.status >= 400:
            raise Reject(
                ctx.response.status,
                "The backend answered with an error status.",
                source="forward-request",
                reason="BackendError",
            )


@policy
class SetStatus(Policy):
    tag = "set-status"
    sections = frozenset({"inbound", "outbound", "on-error", "backend"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"code", "reason"})
        node.check_children(frozenset())
        self.code = node.value("code", required=True)
        assert self.code is not None
        if self.code.constant and "{{" not in self.code.literal:
            _status(self.code.literal, node)
        self.reason = node.value("reason")

    def run(self, ctx: Context) -> Any:
        assert self.code is not None
        r = _response(ctx)
        r.status = _status(self.code.text(ctx), None)
        r.reason = self.reason.text(ctx) if self.reason else ""
        return None


def _status(text: str, node: Node | None) -> int:
    try:
        code = int(text.strip())
    except ValueError:
        code = 0
    if not 100 <= code <= 599:
        if node is not None:
            raise PolicyDocumentError(
                f"status code must be an integer between 100 and 599, got '{text[:20]}'.", node
            )
        raise ExpressionError(f"status code must be between 100 and 599, got '{text[:20]}'")
    return code


@policy
class SetVariable(Policy):
    tag = "set-variable"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"name", "value"})
        node.check_children(frozenset())
        self.name = node.require("name")
        self.value = node.value("value", required=True)

    def run(self, ctx: Context) -> Any:
        assert self.value is not None
        ctx.variables[self.name] = self.value.get(ctx)
        return None


@policy
class SetBody(Policy):
    tag = "set-body"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"template", "xsi-nil", "parse-date"})
        node.check_children(frozenset())
        self.liquid = LiquidSetBody(node, section, cc) if node.get("template") is not None else None
        if self.liquid is not None:
            self.is_async = True
            return
        self.value = node.compile_value(node.text.strip(), "the body")
        self.request_side = section in REQUEST_SIDE

    def body(self, ctx: Context) -> bytes:
        return self.value.text(ctx).encode()

    def run(self, ctx: Context) -> Any:
        if self.liquid is not None:
            return self.liquid.run(ctx)
        data = self.body(ctx)
        if self.request_side:
            ctx.request_body = data
            ctx.headers.delete("content-length")
            ctx.headers.delete("transfer-encoding")
        else:
            r = _response(ctx)
            r.drop_upstream()
            r.body = data
            h = r.header_map()
            h.delete("content-length")
            h.delete("transfer-encoding")
        return None


def plain_set_body(node: Node, section: str, cc: CompileContext, where: str, why: str) -> SetBody:
    """A set-body inside another element (return-response, send-request): text or an expression."""
    if node.get("template") is not None:
        raise PolicyDocumentError(f"Liquid templates cannot be used inside <{where}> ({why}).", node)
    return SetBody(node, section, cc)


@policy
class Choose(Policy):
    tag = "choose"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(frozenset())
        node.check_children({"when", "otherwise"})
        self.branches: list[tuple[Value | None, list[Any]]] = []
        seen_otherwise = False
        for child in node.children:
            if seen_otherwise:
                raise PolicyDocumentError("<otherwise> must be the last branch of <choose>.", child)
            if child.tag == "when":
                child.check_attrs({"condition"})
                cond = child.value("condition", required=True)
                assert cond is not None
                if cond.constant:
                    raise PolicyDocumentError("attribute 'condition' must be an expression @( ... ).", child)
            else:
                child.check_attrs(frozenset())
                cond = None
                seen_otherwise = True
            self.branches.append((cond, compile_policies(child.children, section, cc, allow_base=False)))
        if not any(c is not None for c, _ in self.branches):
            raise PolicyDocumentError("<choose> needs at least one <when condition=...>.", node)
        self.is_async = any(p.is_async for _, body in self.branches for p in body)

    def run(self, ctx: Context) -> Any:
        if self.is_async:
            return self._run_async(ctx)
        for cond, body in self.branches:
            if cond is None or truthy(cond.get(ctx)):
                return run_now(body, ctx)
        return None

    async def _run_async(self, ctx: Context) -> Any:
        for cond, body in self.branches:
            if cond is None or truthy(cond.get(ctx)):
                return await run_list(body, ctx)
        return None


@policy
class ReturnResponse(Policy):
    tag = "return-response"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"response-variable-name"})
        self.variable = node.get("response-variable-name") or None  # a send-request's answer to start from
        node.check_children({"set-status", "set-header", "set-body"})
        self.status: SetStatus | None = None
        self.headers: list[SetHeader] = []
        self.body: SetBody | None = None
        for child in node.children:
            if child.tag == "set-status":
                self.status = SetStatus(child, "outbound", cc)
            elif child.tag == "set-header":
                self.headers.append(SetHeader(child, "outbound", cc))
            else:
                # the pipeline's body is gone once return-response starts: nothing to bind
                self.body = plain_set_body(child, "outbound", cc, "return-response", "it has no body to read")

    def run(self, ctx: Context) -> Any:
        if ctx.response is not None:
            ctx.response.drop_upstream()
        ctx.response = Response(200, HeaderMap())
        if self.variable is not None:
            sent: Any = ctx.variables.get(self.variable)
            if getattr(sent, "expr_type", None) != "IResponse":
                raise ExpressionError(
                    f"variable '{self.variable[:60]}' does not hold a send-request response"
                )
            kept = HeaderMap.from_raw(sent.headers.to_raw())
            kept.delete("content-length")
            kept.delete("transfer-encoding")
            ctx.response = Response(sent.status, kept, sent.body.data, sent.reason)
        if self.status:
            self.status.run(ctx)
        for h in self.headers:
            h.run(ctx)
        if self.body:
            ctx.response.body = self.body.body(ctx)
        ctx.stopped_by = self.tag
        return STOP


@policy
class MockResponse(Policy):
    tag = "mock-response"
    sections = frozenset({"inbound", "outbound", "on-error"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"status-code", "content-type", "index"})
        node.check_children(frozenset())
        self.status = node.integer("status-code", default=200, minimum=100) or 200
        if self.status > 599:
            raise PolicyDocumentError("attribute 'status-code' must be between 100 and 599.", node)
        self.content_type = node.get("content-type") or "application/json"

    def run(self, ctx: Context) -> Any:
        body = b""
        ctype = self.content_type
        op = ctx.operation
        for resp in (op.data.get("responses") or []) if op is not None else []:
            if resp.get("statusCode") != self.status:
                continue
            for rep in resp.get("representations") or []:
                if (rep.get("contentType") or "").lower() != ctype.lower():
                    continue
                examples = rep.get("examples") or {}
                for ex in examples.values():
                    value = ex.get("value") if isinstance(ex, dict) else ex
                    if value is not None:
                        body = value.encode() if isinstance(value, str) else orjson.dumps(value)
                        break
                if not body and rep.get("sample"):
                    body = str(rep["sample"]).encode()
        if ctx.response is not None:
            ctx.response.drop_upstream()
        h = HeaderMap()
        if body or self.status not in (204, 304):
            h.set("Content-Type", [ctype])
        ctx.response = Response(self.status, h, body)
        ctx.stopped_by = self.tag
        return STOP


__all__ = ["ALL", "apply_backend_entity"]
