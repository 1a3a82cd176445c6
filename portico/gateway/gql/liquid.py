"""`<set-body template="liquid">` in resolver policies, rendered with python-liquid: `body` is the
GraphQL arguments and parent (`{{body.arguments.name}}`) on the request side and the data
source's JSON answer on the response side; `context` offers the request, the response, the
variables and `GraphQL`. API Management's dialect (JSONArrayFor, PascalCase filters) is in
portico/gateway/liquid.py, shared with API policies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from portico.gateway.liquid import TemplateError, compile_template, render
from portico.gateway.policies.base import CompileContext, Policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


class LiquidBody(Policy):
    """set-body with template="liquid" (request or response side of a data source)."""

    tag = "set-body"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"template"})
        node.check_children(frozenset())
        if (node.get("template") or "").lower() != "liquid":
            raise PolicyDocumentError("attribute 'template' must be 'liquid'.", node)
        try:
            self.template = compile_template(node.text.strip())
        except TemplateError as exc:
            raise PolicyDocumentError(str(exc), node) from None
        self.request_side = section == "inbound"

    def run(self, ctx: Context) -> Any:
        graphql = getattr(ctx, "graphql", None)
        arguments = graphql.arguments if graphql is not None else {}
        parent = graphql.parent if graphql is not None else None
        request = {
            "Method": ctx.method,
            "Headers": {name: ",".join(values) for name, values in ctx.headers.d.values()},
            "IpAddress": ctx.client_ip,
        }
        client = getattr(ctx, "client", None)
        if client is not None:  # what the client sent, as the resolver's expressions see it
            request["Method"] = client.method
            request["Headers"] = {name: ",".join(values) for name, values in client.headers.d.values()}
        scope: dict[str, Any] = {
            "Request": request,
            "Variables": dict(ctx.variables),
            "GraphQL": {"Arguments": arguments, "Parent": parent},
        }
        if self.request_side:
            body: Any = {"arguments": arguments, "parent": parent}
        else:
            r = ctx.response
            body = _json_body(r.body) if r is not None else None
            if r is not None:
                scope["Response"] = {
                    "StatusCode": r.status,
                    "Headers": {name: ",".join(values) for name, values in r.header_map().d.values()},
                }
        text = render(self.template, body=body, context=scope)
        data = text.encode()
        if self.request_side:
            ctx.request_body = data
            ctx.headers.delete("content-length")
            ctx.headers.delete("transfer-encoding")
        elif ctx.response is not None:
            ctx.response.body = data
            h = ctx.response.header_map()
            h.delete("content-length")
            h.delete("transfer-encoding")
        return None


__all__ = ["LiquidBody"]
