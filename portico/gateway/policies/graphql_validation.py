"""`validate-graphql-request`: a GraphQL API's request checked before it goes further — its size,
its syntax and validity against the API's schema, its depth, and authorization rules on field
paths (`/Type/field`, `*` wildcards; `/__*` is the introspection system). A request that fails
is answered with a GraphQL `errors` block and no `data`, and its errors are kept in the
`GraphQLErrors` variable (and in `error-variable-name` when given)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    validate,
    visit,
)

from portico.gateway.context import HeaderMap, Response
from portico.gateway.expressions import ExpressionError
from portico.gateway.outcome import STOP
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.names import fold_name

if TYPE_CHECKING:
    from portico.gateway.context import Context
    from portico.gateway.expressions import Value

MAX_SIZE = 102_400
ACTIONS = ("allow", "reject", "ignore", "deny")  # deny: as reject (API Management's examples use it)


class _RequestError(Exception):
    pass


@policy
class ValidateGraphqlRequest(Policy):
    tag = "validate-graphql-request"
    sections = frozenset({"inbound"})
    is_async = True  # reads the request body

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"error-variable-name", "max-size", "max-depth"})
        node.check_children({"authorize"})
        self.error_variable = node.value("error-variable-name")
        node.require("max-size")
        self.max_size = _bounded(node, "max-size", 1, MAX_SIZE)
        self.max_depth = _bounded(node, "max-depth", 1, None, default="6")
        self.rules: list[tuple[str, Any]] = []
        for authorize in node.children:
            authorize.check_attrs(frozenset())
            authorize.check_children({"rule"})
            for rule in authorize.children:
                rule.check_attrs({"path", "action"})
                rule.check_children(frozenset())
                path = rule.require("path")
                if not path.startswith("/"):
                    raise PolicyDocumentError("attribute 'path' must look like '/Type/field'.", rule)
                action = rule.value("action", default="allow")
                assert action is not None
                if action.constant:
                    text = action.literal.strip().lower()
                    if text == "remove":
                        raise PolicyDocumentError(
                            "action 'remove' (removing a field from the request) is not supported by "
                            "this gateway; use 'reject'.",
                            rule,
                        )
                    if text not in ACTIONS:
                        raise PolicyDocumentError(
                            f"attribute 'action' must be one of allow, reject, ignore, got '{text[:30]}'.",
                            rule,
                        )
                self.rules.append((path, action))

    async def run(self, ctx: Context) -> Any:
        try:
            max_size = _limit(self.max_size, ctx, "max-size", MAX_SIZE)
            max_depth = _limit(self.max_depth, ctx, "max-depth", None)
            query = await self._query(ctx, max_size)
            schema = _schema_of(ctx)
            document = parse(query, max_tokens=20_000)
            errors = validate(schema, document, max_errors=50)
            if errors:
                return self._fail(ctx, errors)
            depth = _depth(document)
            if depth > max_depth:
                return self._fail(
                    ctx, [GraphQLError(f"The query is nested {depth} levels deep; at most {max_depth}.")]
                )
            for path in _paths(schema, document):
                if self._action(ctx, path) in ("reject", "deny"):
                    return self._fail(ctx, [GraphQLError(f"Access to '{path}' is not allowed.")])
        except GraphQLError as exc:
            return self._fail(ctx, [exc])
        except _RequestError as exc:
            return self._fail(ctx, [GraphQLError(str(exc))])
        return None

    def _action(self, ctx: Context, path: str) -> str:
        short = "/" + path.rsplit("/", 1)[-1]
        for pattern, action in self.rules:
            if fnmatchcase(path, pattern) or fnmatchcase(short, pattern):
                chosen = str(action.text(ctx)).strip().lower()
                if chosen == "remove":
                    return "reject"  # field removal is refused at save time; an expression's is refused here
                if chosen != "ignore":
                    return chosen
        return "allow"

    async def _query(self, ctx: Context, max_size: int) -> str:
        if ctx.method == "GET":
            query = ctx.query_map().get("query") or ""
            if len(query.encode()) > max_size:
                raise _RequestError(f"The request exceeds the maximum size of {max_size} bytes.")
            return query
        body = ctx.request_body
        if body is None:
            body = await _read(ctx, max_size)
            ctx.request_body = body  # forwarded as it came
        if len(body) > max_size:
            raise _RequestError(f"The request exceeds the maximum size of {max_size} bytes.")
        ctype = (ctx.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if ctype == "application/graphql":
            return body.decode("utf-8", "replace")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _RequestError("The request body is not valid JSON.") from None
        text = doc.get("query") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            raise _RequestError("'query' is required and must be a string.")
        return text

    def _fail(self, ctx: Context, errors: list[GraphQLError]) -> Any:
        formatted = [dict(e.formatted) for e in errors]
        ctx.variables["GraphQLErrors"] = formatted
        name = self.error_variable.text(ctx) if self.error_variable is not None else ""
        if name:
            ctx.variables[name] = formatted
        if ctx.response is not None:
            ctx.response.drop_upstream()
        h = HeaderMap()
        h.set("Content-Type", ["application/json; charset=utf-8"])
        ctx.response = Response(400, h, orjson.dumps({"errors": formatted}))
        ctx.stopped_by = self.tag
        return STOP


def _bounded(node: Node, name: str, low: int, high: int | None, default: str | None = None) -> Value:
    """An integer attribute, or an expression (checked when it runs)."""
    value = node.value(name, default=default)
    assert value is not None
    if value.constant and "{{" not in value.literal:
        _check(value.literal, name, low, high, node)
    return value


def _check(text: str, name: str, low: int, high: int | None, node: Node | None) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        n = low - 1
    if n < low or (high is not None and n > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        message = f"attribute '{name}' must be an integer {bound}, got '{text[:30]}'."
        if node is not None:
            raise PolicyDocumentError(message, node)
        raise ExpressionError(message)
    return n


def _limit(value: Value, ctx: Context, name: str, high: int | None) -> int:
    return _check(value.text(ctx), name, 1, high, None)


async def _read(ctx: Context, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await ctx.receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _RequestError(f"The request exceeds the maximum size of {limit} bytes.")
        parts.append(chunk)
        if message["type"] != "http.request" or not message.get("more_body", False):
            ctx.bytes_in += size
            return b"".join(parts)


def _schema_of(ctx: Context) -> GraphQLSchema:
    endpoints = getattr(ctx.service, "graphql", {})
    endpoint = endpoints.get(fold_name(ctx.api.name)) if ctx.api is not None else None
    schema = getattr(endpoint, "schema", None)
    if not isinstance(schema, GraphQLSchema):
        raise _RequestError("The API has no valid GraphQL schema to validate the request against.")
    return schema


def _depth(document: Any) -> int:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def depth(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                deepest = max(deepest, 1 + depth(sel.selection_set, seen) if sel.selection_set else 1)
            elif isinstance(sel, InlineFragmentNode):
                deepest = max(deepest, depth(sel.selection_set, seen))
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                frag = fragments.get(sel.name.value)
                if frag is not None:
                    deepest = max(deepest, depth(frag.selection_set, seen | {sel.name.value}))
        return deepest

    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return max((depth(op.selection_set, frozenset()) for op in ops), default=0)


def _paths(schema: GraphQLSchema, document: Any) -> list[str]:
    """Every `/Type/field` the document selects (fields of fragments by their type condition)."""
    info = TypeInfo(schema)
    found: list[str] = []

    class _Fields(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            parent = info.get_parent_type()
            found.append(f"/{parent.name if parent is not None else ''}/{node.name.value}")

    visit(document, TypeInfoVisitor(info, _Fields()))
    return found


__all__ = ["ValidateGraphqlRequest"]
