"""`emit-metric`: a custom metric for Application Insights. As in API Management it goes where the
request's `applicationinsights` diagnostic logs, when that diagnostic has `metrics` on: Portico's
sink for every logger is the local JSON-lines file (portico/gateway/diagnostics.py), one
`{"type": "metric", ...}` line per metric, not sampled. Without such a diagnostic nothing is sent,
as in Azure."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from portico.gateway.expressions import ExpressionError, Value, is_expression
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

MAX_DIMENSIONS = 10


def _user(ctx: Context) -> Any:
    user = ctx.user()
    return user.get("_id") if user is not None else None


# dimensions that may be named without a value: API Management fills them in
DEFAULT_DIMENSIONS: dict[str, Any] = {
    "api id": lambda ctx: ctx.api.name if ctx.api is not None else None,
    "operation id": lambda ctx: ctx.operation.name if ctx.operation is not None else None,
    "product id": lambda ctx: ctx.product.name if ctx.product is not None else None,
    "user id": _user,
    "subscription id": lambda ctx: ctx.subscription.name if ctx.subscription is not None else None,
    "location": lambda ctx: ctx.service.location,
    "gateway id": lambda ctx: "managed",
}


def _literal(node: Node, name: str, default: str | None) -> str | None:
    raw = node.attrs.get(name, default)
    if raw is not None and is_expression(raw):
        raise PolicyDocumentError(f"attribute '{name}' does not allow policy expressions.", node)
    return raw


@policy
class EmitMetric(Policy):
    tag = "emit-metric"
    sections = frozenset({"inbound", "outbound", "backend", "on-error"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"name", "value", "namespace"})
        node.check_children({"dimension"})
        node.require("name")
        self.name = _literal(node, "name", None) or ""
        self.namespace = _literal(node, "namespace", "API Management") or "API Management"
        value = node.value("value", default="1")
        assert value is not None
        if value.constant and "{{" not in value.literal:
            try:
                float(value.literal)
            except ValueError:
                raise PolicyDocumentError(
                    f"attribute 'value' must be a number, got '{value.literal[:40]}'.", node
                ) from None
        self.value = value
        if not node.children:
            raise PolicyDocumentError("at least one <dimension> is required.", node)
        if len(node.children) > MAX_DIMENSIONS:
            raise PolicyDocumentError(f"at most {MAX_DIMENSIONS} <dimension> elements are allowed.", node)
        self.dimensions: list[tuple[Value, Value | None]] = []
        for child in node.children:
            child.check_attrs({"name", "value"})
            child.check_children(frozenset())
            dim = child.value("name", required=True)
            assert dim is not None
            dim_value = child.value("value")
            if dim_value is None and dim.constant and dim.literal.strip().lower() not in DEFAULT_DIMENSIONS:
                raise PolicyDocumentError(
                    f"dimension '{dim.literal[:60]}' needs a 'value' (only these may omit it: "
                    "API ID, Operation ID, Product ID, User ID, Subscription ID, Location, Gateway ID).",
                    child,
                )
            self.dimensions.append((dim, dim_value))

    def run(self, ctx: Context) -> Any:
        diag = ctx.diag
        sink = ctx.service.compiling.log_sink
        if diag is None or sink is None:
            return None
        loggers = [d.logger for d in diag.diagnostics if d.metrics]
        if not loggers:
            return None
        raw = self.value.get(ctx)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ExpressionError(f"emit-metric value must be a number, got '{str(raw)[:30]}'") from None
        dimensions: dict[str, Any] = {}
        for name_value, dim_value in self.dimensions:
            name = name_value.text(ctx)
            if dim_value is not None:
                dimensions[name] = dim_value.text(ctx)
                continue
            default = DEFAULT_DIMENSIONS.get(name.strip().lower())
            if default is None:
                raise ExpressionError(f"dimension '{name[:60]}' needs a value")
            dimensions[name] = default(ctx)
        record = {
            "type": "metric",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "requestId": ctx.request_id,
            "namespace": self.namespace,
            "name": self.name,
            "value": value,
            "dimensions": dimensions,
        }
        for logger in loggers:
            sink.write(ctx.service.name, logger, record)
        return None


__all__ = ["EmitMetric"]
