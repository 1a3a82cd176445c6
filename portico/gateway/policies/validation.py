"""What the content validation policies share (validate-content, validate-parameters,
validate-headers, validate-status-code): their actions (ignore | prevent | detect), the errors
they record (API Management's `{Name, Type, ValidationRule, Details, Action}`), and how `prevent`
ends a request: 400 on the request side, 502 on the response side, with the gateway's error body
carrying the public message, and the details in `context.LastError` and the errors variable."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portico.gateway.context import HeaderMap, Response
from portico.gateway.expressions import ExpressionError
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.proxy import error_body

if TYPE_CHECKING:
    from portico.gateway.context import Context
    from portico.gateway.expressions import Value

log = logging.getLogger("portico.gateway")

ACTIONS = ("ignore", "prevent", "detect")
INTERNAL = "The request could not be processed due to an internal error. Contact the API owner."
REQUEST_SIDE = frozenset({"inbound"})
INFORMATION = 1  # the severity of detected errors among the request's traces (policies/logs.py)


@dataclass(slots=True)
class Finding:
    """One validation error: API Management's fields, and what the client is told under prevent."""

    name: str
    type: str
    rule: str
    details: str
    public: str
    action: str = ""

    def record(self) -> dict[str, str]:
        return {
            "Name": self.name,
            "Type": self.type,
            "ValidationRule": self.rule,
            "Details": self.details,
            "Action": self.action,
        }


def action_value(node: Node, name: str, *, required: bool) -> Value | None:
    """An action attribute: ignore | prevent | detect, or an expression that gives one."""
    value = node.value(name, required=required)
    if value is not None and value.constant:
        _action(value.literal, name, node)
    return value


def resolve_action(value: Value, ctx: Context, name: str) -> str:
    return _action(value.text(ctx), name, None)


def _action(text: str, name: str, node: Node | None) -> str:
    low = text.strip().lower()
    if low not in ACTIONS:
        message = f"attribute '{name}' must be one of ignore, prevent, detect, got '{text[:30]}'."
        if node is not None:
            raise PolicyDocumentError(message, node)
        raise ExpressionError(message)
    return low


def errors_variable(node: Node) -> str | None:
    """`errors-variable-name`: a plain name (policy expressions aren't allowed there)."""
    name = node.get("errors-variable-name")
    if name is not None and (name.strip().startswith("@") or not name.strip()):
        raise PolicyDocumentError(
            "attribute 'errors-variable-name' must be a variable name (policy expressions aren't allowed).",
            node,
        )
    return name.strip() if name is not None else None


def conclude(tag: str, section: str, ctx: Context, variable: str | None, findings: list[Finding]) -> Any:
    """Record what a validation found and act on it: errors with `detect` are logged and go on;
    the first with `prevent` ends the request (on-error: replaces its answer). None or STOP."""
    if not findings:
        return None
    if variable:  # set only when there are errors: policies test it with ContainsKey
        ctx.variables[variable] = [f.record() for f in findings]
    for f in findings:
        log.info(
            "gateway: %s on %s %s: %s %s (%s)", tag, ctx.method, ctx.path[:200], f.type, f.rule, f.action
        )
        if ctx.diag is not None:
            ctx.diag.traces.append(
                (
                    INFORMATION,
                    {"source": tag, "severity": "information", "message": f.details, "metadata": f.record()},
                )
            )
    prevented = next((f for f in findings if f.action == "prevent"), None)
    if prevented is None:
        return None
    request_side = section in REQUEST_SIDE
    status = 400 if request_side else 502
    reason = "Bad request" if request_side else "Response not allowed"
    if section == "on-error":  # the error answer itself is refused: it is replaced, nothing runs after
        if ctx.response is not None:
            ctx.response.drop_upstream()
        h = HeaderMap()
        h.set("Content-Type", ["application/json; charset=utf-8"])
        ctx.response = Response(status, h, error_body(status, prevented.public))
        ctx.stopped_by = tag
        if ctx.last_error is not None:
            ctx.last_error = {**ctx.last_error, "source": tag, "reason": reason, "message": prevented.details}
        return STOP
    raise Reject(status, prevented.public, source=tag, reason=reason, detail=prevented.details)


def response_definition(ctx: Context) -> dict[str, Any] | None:
    """The operation's definition of the answer's status: a numeric status, else its range such as
    `2XX`, else `default` (None: the definition does not list it)."""
    op, r = ctx.operation, ctx.response
    if op is None or r is None:
        return None
    data = op.data
    numeric = [x for x in data.get("responses") or [] if isinstance(x, dict)]
    others = {
        str(x.get("status") or "").upper(): x for x in data.get("otherResponses") or [] if isinstance(x, dict)
    }
    chosen = next((x for x in numeric if x.get("statusCode") == r.status), None)
    if chosen is None:
        chosen = others.get(f"{r.status // 100}XX") or others.get("DEFAULT")
    return chosen


__all__ = [
    "ACTIONS",
    "INTERNAL",
    "Finding",
    "action_value",
    "conclude",
    "errors_variable",
    "resolve_action",
    "response_definition",
]
