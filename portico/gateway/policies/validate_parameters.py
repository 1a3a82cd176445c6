"""`validate-parameters` (the request's path, query and header parameters), `validate-headers`
(the response's headers) and `validate-status-code` (the response's status) against the
operation's definition: its template parameters, query parameters and headers, and its responses
(status codes, `default` and ranges such as `2XX`, and their headers). A parameter's value is
checked against its type, its allowed values and, when it names one, its definition in the API's
schemas (portico/gateway/schemas.py). All three are synchronous: the fast path serves them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.validation import (
    INTERNAL,
    Finding,
    action_value,
    conclude,
    errors_variable,
    resolve_action,
    response_definition,
)
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.schemas import SchemaMissing

if TYPE_CHECKING:
    from portico.gateway.context import Context, HeaderMap
    from portico.gateway.expressions import Value

# parameter kind → (label in messages, validation error Type)
PATH = ("path parameter", "PathParameter")
QUERY = ("query parameter", "QueryParameter")
HEADER = ("header", "RequestHeader")
RESPONSE_HEADER = ("header", "ResponseHeader")


class _Overrides:
    """A `<headers>`, `<query>` or `<path>` element (or `<validate-headers>` itself): its actions
    and its per-parameter actions (names folded when `fold`)."""

    def __init__(self, node: Node | None, child_tag: str, *, unspecified: bool, fold: bool) -> None:
        self.fold = fold
        self.specified: Value | None = None
        self.unspecified: Value | None = None
        self.named: dict[str, Value] = {}
        if node is None:
            return
        allowed = {"specified-parameter-action"} | (
            {"unspecified-parameter-action"} if unspecified else set()
        )
        node.check_attrs(allowed)
        node.check_children({child_tag})
        self.specified = action_value(node, "specified-parameter-action", required=False)
        if unspecified:
            self.unspecified = action_value(node, "unspecified-parameter-action", required=False)
        for child in node.children:
            self.add(child)

    def add(self, child: Node) -> None:
        child.check_attrs({"name", "action"})
        child.check_children(frozenset())
        name = child.require("name")
        action = action_value(child, "action", required=True)
        assert action is not None
        self.named[self.key(name)] = action

    def key(self, name: str) -> str:
        return name.lower() if self.fold else name

    def action(self, ctx: Context, name: str, specified: bool, default: Value) -> str:
        value = self.named.get(self.key(name))
        if value is None:
            value = (self.specified if specified else self.unspecified) or default
        return resolve_action(value, ctx, "action")


def _check(
    ctx: Context,
    contract: dict[str, Any],
    name: str,
    values: list[str],
    kind: tuple[str, str],
    action: str,
    request_side: bool,
) -> Finding | None:
    """What is wrong with a declared parameter's values (None: nothing)."""
    label, type_ = kind
    typ = str(contract.get("type") or "string").lower()
    if not values:
        if contract.get("required"):
            details = (
                f"Value of the {label} {name} does not conform to the definition.\n\nA value is required."
            )
            public = "The v" + details[1:] if request_side else INTERNAL
            return Finding(name, type_, "IncorrectMessage", details, public, action)
        return None
    if len(values) > 1 and typ != "array":
        side = "Request" if request_side else "Response"
        details = f"{side} cannot contain multiple values for the {label} {name}."
        return Finding(name, type_, "IncorrectMessage", details, _public(details, request_side), action)
    value = values[0]
    parsed: Any = value
    try:
        parsed = _parsed(value, typ)
    except ValueError as exc:
        details = f"Value of the {label} {name} cannot be parsed according to the definition.\n\n{exc}"
        public = f"Value of the {label} {name} couldn't be parsed according to the definition.\n\n{exc}"
        return Finding(name, type_, "IncorrectMessage", details, public if request_side else INTERNAL, action)
    problems: list[str] = []
    allowed = [str(v) for v in contract.get("values") or []]
    if allowed and value not in allowed:
        problems.append(f"The value must be one of: {', '.join(allowed)[:300]}.")
    type_name = contract.get("typeName")
    if not problems and type_name and ctx.api is not None and typ not in ("array", "object"):
        try:
            compiled = ctx.service.schemas.definition(ctx.api.name, contract.get("schemaId"), str(type_name))
        except SchemaMissing as exc:
            if not exc.definition:
                return Finding("", "ApiSchema", "", str(exc), INTERNAL, action)
            details = (
                f"API's schema does not contain definition {type_name}, which is associated with the "
                f"{label} {name}."
            )
            return Finding(name, type_, "MissingDefinition", details, INTERNAL, action)
        problems = compiled.errors(parsed)
    if not problems:
        return None
    details = f"Value of the {label} {name} does not conform to the definition.\n\n" + "\n".join(problems)
    public = f"The value of the {label} {name} does not conform to the definition.\n\n" + "\n".join(problems)
    return Finding(name, type_, "IncorrectMessage", details, public if request_side else INTERNAL, action)


def _parsed(value: str, typ: str) -> Any:
    if typ == "integer":
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"'{value[:60]}' is not an integer.") from None
    if typ == "number":
        try:
            n = float(value.strip())
        except ValueError:
            n = math.nan
        if not math.isfinite(n):
            raise ValueError(f"'{value[:60]}' is not a number.")
        return int(n) if n.is_integer() and "." not in value and "e" not in value.lower() else n
    if typ == "boolean":
        low = value.strip().lower()
        if low not in ("true", "false"):
            raise ValueError(f"'{value[:60]}' is not a boolean (true or false).")
        return low == "true"
    return value


def _public(details: str, request_side: bool) -> str:
    return details if request_side else INTERNAL


def _header_findings(
    ctx: Context,
    declared: dict[str, dict[str, Any]],
    headers: HeaderMap,
    overrides: _Overrides,
    defaults: tuple[Value, Value],
    kind: tuple[str, str],
    request_side: bool,
    skip: str = "",
) -> list[Finding]:
    """Headers (names folded) against their declarations, request or response side: the declared
    ones checked, the others (but `skip`, the API's key header) reported as unspecified."""
    specified, unspecified = defaults
    out: list[Finding] = []
    for low, p in declared.items():
        action = overrides.action(ctx, p["name"], True, specified)
        if action != "ignore":
            found = _check(ctx, p, p["name"], headers.get_all(low), kind, action, request_side)
            if found is not None:
                out.append(found)
    for low, (display, _values) in list(headers.d.items()):
        if low in declared or low == skip:
            continue
        action = overrides.action(ctx, display, False, unspecified)
        if action != "ignore":
            out.append(_unspecified(display, kind, action, request_side))
    return out


def _unspecified(name: str, kind: tuple[str, str], action: str, request_side: bool) -> Finding:
    label, type_ = kind
    details = f"Unspecified {label} {name} is not allowed."
    return Finding(name, type_, "Unspecified", details, _public(details, request_side), action)


def _contracts(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [p for p in items if isinstance(p, dict) and isinstance(p.get("name"), str)]


@policy
class ValidateParameters(Policy):
    tag = "validate-parameters"
    sections = frozenset({"inbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {"specified-parameter-action", "unspecified-parameter-action", "errors-variable-name"}
        )
        node.check_children({"headers", "query", "path"})
        specified = action_value(node, "specified-parameter-action", required=True)
        unspecified = action_value(node, "unspecified-parameter-action", required=True)
        assert specified is not None and unspecified is not None
        self.specified, self.unspecified = specified, unspecified
        self.variable = errors_variable(node)
        found: dict[str, Node] = {}
        for child in node.children:
            if child.tag in found:
                raise PolicyDocumentError(f"<{child.tag}> may appear only once.", child)
            found[child.tag] = child
        self.headers = _Overrides(found.get("headers"), "parameter", unspecified=True, fold=True)
        self.query = _Overrides(found.get("query"), "parameter", unspecified=True, fold=False)
        self.path = _Overrides(found.get("path"), "parameter", unspecified=False, fold=True)

    def run(self, ctx: Context) -> Any:
        op, api = ctx.operation, ctx.api
        findings: list[Finding] = []
        if op is None or api is None:
            return conclude(self.tag, self.section, ctx, self.variable, findings)
        data = op.data
        request = data.get("request") or {}
        template = _contracts(data.get("templateParameters") or [])
        path_names = {n.lower() for n in op.param_names}
        # path parameters (those of the URL template's path; the others are query parameters)
        for p in template:
            name = p["name"]
            if name.lower() not in path_names:
                continue
            action = self.path.action(ctx, name, True, self.specified)
            if action == "ignore":
                continue
            raw = next((v for k, v in ctx.params.items() if k.lower() == name.lower()), None)
            found = _check(ctx, p, name, [] if raw is None else [unquote(raw)], PATH, action, True)
            if found is not None:
                findings.append(found)
        # query parameters
        declared = {p["name"]: p for p in _contracts(request.get("queryParameters") or [])}
        for p in template:
            if p["name"].lower() not in path_names:
                declared.setdefault(p["name"], p)
        query = ctx.query_map()
        own = {api.key_query}
        for name, p in declared.items():
            action = self.query.action(ctx, name, True, self.specified)
            if action != "ignore":
                found = _check(ctx, p, name, query.get_all(name), QUERY, action, True)
                if found is not None:
                    findings.append(found)
        for name, _values in list(query.d.values()):
            if name in declared or name in own:
                continue
            action = self.query.action(ctx, name, False, self.unspecified)
            if action != "ignore":
                findings.append(_unspecified(name, QUERY, action, True))
        # headers (names ignore case)
        declared_h = {p["name"].lower(): p for p in _contracts(request.get("headers") or [])}
        findings += _header_findings(
            ctx,
            declared_h,
            ctx.headers,
            self.headers,
            (self.specified, self.unspecified),
            HEADER,
            True,
            skip=api.key_header.decode("latin-1"),
        )
        return conclude(self.tag, self.section, ctx, self.variable, findings)


@policy
class ValidateHeaders(Policy):
    tag = "validate-headers"
    sections = frozenset({"outbound", "on-error"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"specified-header-action", "unspecified-header-action", "errors-variable-name"})
        node.check_children({"header"})
        specified = action_value(node, "specified-header-action", required=True)
        unspecified = action_value(node, "unspecified-header-action", required=True)
        assert specified is not None and unspecified is not None
        self.specified, self.unspecified = specified, unspecified
        self.variable = errors_variable(node)
        self.overrides = _Overrides(None, "header", unspecified=True, fold=True)
        for child in node.children:
            self.overrides.add(child)

    def run(self, ctx: Context) -> Any:
        findings: list[Finding] = []
        r = ctx.response
        if r is None or ctx.operation is None:
            return conclude(self.tag, self.section, ctx, self.variable, findings)
        chosen = response_definition(ctx)
        declared = {p["name"].lower(): p for p in _contracts((chosen or {}).get("headers") or [])}
        findings += _header_findings(
            ctx,
            declared,
            r.header_map(),
            self.overrides,
            (self.specified, self.unspecified),
            RESPONSE_HEADER,
            False,
        )
        return conclude(self.tag, self.section, ctx, self.variable, findings)


@policy
class ValidateStatusCode(Policy):
    tag = "validate-status-code"
    sections = frozenset({"outbound", "on-error"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"unspecified-status-code-action", "errors-variable-name"})
        node.check_children({"status-code"})
        unspecified = action_value(node, "unspecified-status-code-action", required=True)
        assert unspecified is not None
        self.unspecified = unspecified
        self.variable = errors_variable(node)
        self.codes: dict[int, Value] = {}
        for child in node.children:
            child.check_attrs({"code", "action"})
            child.check_children(frozenset())
            code = child.integer("code", required=True, minimum=100)
            if code is None or code > 599:
                raise PolicyDocumentError("attribute 'code' must be an HTTP status code (100-599).", child)
            action = action_value(child, "action", required=True)
            assert action is not None
            self.codes[code] = action

    def run(self, ctx: Context) -> Any:
        findings: list[Finding] = []
        r = ctx.response
        if r is None or ctx.operation is None:
            return conclude(self.tag, self.section, ctx, self.variable, findings)
        chosen = response_definition(ctx)
        if chosen is None:
            override = self.codes.get(r.status)
            action = resolve_action(override or self.unspecified, ctx, "action")
            if action != "ignore":
                details = f"Response status code {r.status} is not allowed."
                findings.append(
                    Finding(str(r.status), "StatusCode", "Unspecified", details, INTERNAL, action)
                )
        return conclude(self.tag, self.section, ctx, self.variable, findings)


__all__ = ["ValidateHeaders", "ValidateParameters", "ValidateStatusCode"]
