"""Synthetic GraphQL APIs: a request (POST JSON or `application/graphql`, GET `?query=`) parsed,
validated and executed with graphql-core against the API's schema. A field with a resolver is
resolved by its data source (datasource.py); any other field is the parent object's property of
the same name. The GraphQL API's `Backend` (`GraphqlBackend`) stands where forward-request sends
the request, so the API's policies run around it as around any backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationType,
    build_schema,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from portico.gateway.client_body import BodyTooLarge, request_body
from portico.gateway.context import HeaderMap, Response
from portico.gateway.gql.datasource import MAX_RESPONSE_BYTES, DataSource
from portico.gateway.gql.values import json_default
from portico.gateway.outcome import Reject

if TYPE_CHECKING:
    from portico.gateway.backend import Backend, SideRequest, SideResponse
    from portico.gateway.context import Context

log = logging.getLogger("portico.gateway")

MAX_TOKENS = 20_000  # a query's size in tokens (graphql-core stops parsing beyond)
MAX_ERRORS = 50  # validation errors reported
MAX_CALLS = 1_000  # data source calls per request
MAX_READ_BYTES = 64 * 1024 * 1024  # data source answers buffered per request
CONCURRENT_CALLS = 16  # data source calls in flight per request


class RequestError(Exception):
    """A request that is not a GraphQL request (answered with a GraphQL `errors` block)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class GraphqlRequest:
    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


def _optional(doc: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = doc.get(name)
    if value is not None and not isinstance(value, kind):
        raise RequestError(400, f"'{name}' must be {what}.")
    return value


def request_from_json(doc: Any) -> GraphqlRequest:
    if not isinstance(doc, dict):
        raise RequestError(
            400, "The request body must be a JSON object with a 'query' (batches are not supported)."
        )
    query = doc.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestError(400, "'query' is required and must be a string.")
    return GraphqlRequest(
        query,
        _optional(doc, "variables", dict, "an object"),
        _optional(doc, "operationName", str, "a string"),
    )


async def read_request(ctx: Context, limit: int) -> GraphqlRequest:
    """The GraphQL request in `ctx`: GET with `query`, `variables`, `operationName` in the URL, or a
    POST body (`application/json`, or `application/graphql`: the query itself)."""
    if ctx.method == "GET":
        q = ctx.query_map()
        variables = q.get("variables")
        try:
            parsed = orjson.loads(variables) if variables else None
        except orjson.JSONDecodeError:
            raise RequestError(400, "'variables' must be a JSON object.") from None
        return request_from_json(
            {"query": q.get("query"), "variables": parsed, "operationName": q.get("operationName")}
        )
    if ctx.method != "POST":
        raise RequestError(405, "GraphQL requests are sent with POST or GET.")
    body = ctx.request_body
    if body is None:
        try:
            body = b"".join([chunk async for chunk in request_body(ctx, limit)])
        except BodyTooLarge:
            raise RequestError(413, f"Request body exceeds the limit of {limit} bytes.") from None
        ctx.request_body = body  # kept: a fallback endpoint is sent the request as it came
    ctype = (ctx.headers.get("content-type") or "application/json").split(";", 1)[0].strip().lower()
    if ctype == "application/graphql":
        return GraphqlRequest(body.decode("utf-8", "replace"))
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise RequestError(
            415, f"Content type '{ctype[:60]}' is not a GraphQL request (send application/json)."
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "The request body is not valid JSON.") from None
    return request_from_json(doc)


_schemas: dict[str, GraphQLSchema | str] = {}


def schema_of(sdl: str) -> GraphQLSchema | str:
    """The schema built from `sdl` (shared by every API and generation with the same text), or why not."""
    built = _schemas.get(sdl)
    if built is None:
        try:
            built = build_schema(sdl)
        except (GraphQLError, TypeError) as exc:
            built = f"the GraphQL schema is invalid: {str(exc).splitlines()[0][:200]}"
        if len(_schemas) > 256:
            _schemas.clear()
        _schemas[sdl] = built
    return built


@dataclass(eq=False)
class GraphqlEndpoint:
    """A GraphQL API as the gateway serves it: executed here (synthetic) or passed through to its
    serviceUrl. `resolvers`: (type, field) → the compiled data source, or why it cannot run."""

    schema: GraphQLSchema | str | None
    resolvers: dict[tuple[str, str], DataSource | str] = field(default_factory=dict)
    synthetic: bool = True
    fallback: bool = False  # the API's serviceUrl takes the operations none of whose fields has a resolver

    def backend(self, forwarder: Backend) -> GraphqlBackend:
        return GraphqlBackend(self, forwarder)


def _errors(errors: list[GraphQLError]) -> list[dict[str, Any]]:
    return [dict(e.formatted) for e in errors[:MAX_ERRORS]]


class _Run:
    """One request's execution: what resolvers need, and the bounds on data source calls."""

    def __init__(self, endpoint: GraphqlEndpoint, ctx: Context, forwarder: Backend) -> None:
        self.endpoint = endpoint
        self.ctx = ctx
        self.forwarder = forwarder
        self.calls = 0
        self.remaining = MAX_READ_BYTES
        self.slots = asyncio.Semaphore(CONCURRENT_CALLS)

    async def call(self, ds: DataSource, arguments: dict[str, Any], parent: Any, where: str) -> Any:
        self.calls += 1
        if self.calls > MAX_CALLS:
            raise GraphQLError(f"The request needs more than {MAX_CALLS} resolver calls.")
        async with self.slots:
            if self.remaining <= 0:
                raise GraphQLError(f"The request's data sources answered more than {MAX_READ_BYTES} bytes.")
            try:
                value, size = await ds.resolve(
                    self.ctx, self.forwarder, arguments, parent, min(MAX_RESPONSE_BYTES, self.remaining)
                )
                self.remaining -= size
                return value
            except GraphQLError:
                raise
            except Exception:
                log.exception("gateway: resolver %s failed", where)
                raise GraphQLError("The resolver failed unexpectedly.") from None


def _resolve(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
    run: _Run = info.context
    key = (info.parent_type.name, info.field_name)
    ds = run.endpoint.resolvers.get(key)
    if ds is None:  # no resolver: the parent's property of the same name
        if run.endpoint.fallback and not info.path.prev and not key[1].startswith("__"):
            raise GraphQLError(
                f"{key[0]}/{key[1]} has no resolver: the fallback endpoint takes only operations "
                "none of whose fields has a resolver."
            )
        return source.get(info.field_name) if isinstance(source, dict) else None
    if isinstance(ds, str):
        raise GraphQLError(f"The resolver of {key[0]}/{key[1]} cannot run: {ds}")
    return run.call(ds, arguments, source, f"{key[0]}/{key[1]}")


def for_fallback(endpoint: GraphqlEndpoint, req: GraphqlRequest) -> bool:
    """Whether the request goes to the API's fallback endpoint as it came: an operation none of
    whose top-level fields has a resolver (anything unclear is executed here)."""
    schema = endpoint.schema
    if not endpoint.fallback or not isinstance(schema, GraphQLSchema):
        return False
    try:
        operation = get_operation_ast(parse(req.query, max_tokens=MAX_TOKENS), req.operation_name)
    except GraphQLError:
        return False
    if operation is None:
        return False
    root = schema.get_root_type(operation.operation)
    if root is None:
        return False
    selections = operation.selection_set.selections
    return all(
        isinstance(sel, FieldNode) and (root.name, sel.name.value) not in endpoint.resolvers
        for sel in selections
    )


async def execute_request(
    endpoint: GraphqlEndpoint, ctx: Context, forwarder: Backend, req: GraphqlRequest
) -> tuple[int, dict[str, Any]]:
    """(status, GraphQL response): 400 and `errors` only for a request that cannot be executed
    (syntax, validation, variables), else 200 with `data` and any field `errors`."""
    schema = endpoint.schema
    if not isinstance(schema, GraphQLSchema):
        why = schema or "the API has no GraphQL schema"
        return 500, {"errors": [{"message": f"The GraphQL API cannot be served: {why}."}]}
    try:
        document = parse(req.query, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        return 400, {"errors": _errors([exc])}
    errors = validate(schema, document, max_errors=MAX_ERRORS)
    if errors:
        return 400, {"errors": _errors(errors)}
    operation = get_operation_ast(document, req.operation_name)
    if operation is None:
        what = (
            f"'{req.operation_name[:60]}'" if req.operation_name else "to run (name one with operationName)"
        )
        return 400, {"errors": [{"message": f"Unknown operation {what}."}]}
    if operation.operation == OperationType.SUBSCRIPTION:
        return 400, {"errors": [{"message": "Subscriptions are not served over HTTP by this gateway."}]}
    if operation.operation == OperationType.MUTATION and ctx.method == "GET":
        return 405, {"errors": [{"message": "Mutations must be sent with POST."}]}
    result = execute(
        schema,
        document,
        root_value={},
        context_value=_Run(endpoint, ctx, forwarder),
        variable_values=req.variables,
        operation_name=req.operation_name,
        field_resolver=_resolve,
    )
    if isawaitable(result):
        result = await result
    if result.errors and result.data is None and all(e.path is None for e in result.errors):
        return 400, {"errors": _errors(result.errors)}  # e.g. variables that do not fit
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = _errors(result.errors)
    return 200, out


class GraphqlBackend:
    """The backend of a synthetic GraphQL API (portico/gateway/backend.py): executes the request;
    its resolvers call their data sources through `forwarder`, the gateway's own backend client."""

    __slots__ = ("endpoint", "forwarder")

    def __init__(self, endpoint: GraphqlEndpoint, forwarder: Backend) -> None:
        self.endpoint = endpoint
        self.forwarder = forwarder

    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109 - the policy's
        t0 = time.perf_counter()
        limit = getattr(self.forwarder, "max_body_bytes", 64 * 1024 * 1024)
        try:
            req = await read_request(ctx, limit)
            if for_fallback(self.endpoint, req):
                await self.forwarder.forward(ctx, timeout)
                return
            if timeout is not None:
                status, doc = await asyncio.wait_for(
                    execute_request(self.endpoint, ctx, self.forwarder, req), timeout
                )
            else:
                status, doc = await execute_request(self.endpoint, ctx, self.forwarder, req)
        except RequestError as exc:
            status, doc = exc.status, {"errors": [{"message": str(exc)}]}
        except TimeoutError:
            raise Reject(
                504,
                "The GraphQL request did not complete in time.",
                source="forward-request",
                reason="Timeout",
            ) from None
        if ctx.response is not None:
            ctx.response.drop_upstream()
        h = HeaderMap()
        h.set("Content-Type", ["application/json; charset=utf-8"])
        ctx.response = Response(status, h, orjson.dumps(doc, default=json_default))
        ctx.backend_status = status
        ctx.backend_ms = (time.perf_counter() - t0) * 1000.0

    async def buffer_body(self, ctx: Context) -> None:
        await self.forwarder.buffer_body(ctx)

    async def send(
        self,
        ctx: Context,
        request: SideRequest,
        timeout: float,  # noqa: ASYNC109 - the policy's timeout, for the whole exchange
        limit: int,
    ) -> SideResponse:
        return await self.forwarder.send(ctx, request, timeout, limit)

    def forward_nowait(
        self, ctx: Context, timeout: float | None, done: Callable[[Reject | None], None]
    ) -> None:
        task = asyncio.get_running_loop().create_task(self.forward(ctx, timeout))
        _pending.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            _pending.discard(t)
            exc = (
                t.exception()
                if not t.cancelled()
                else Reject(500, "Internal server error", source="forward-request", reason="Cancelled")
            )
            if exc is None or isinstance(exc, Reject):
                done(exc)
                return
            log.error("gateway: GraphQL execution failed", exc_info=exc)
            done(
                Reject(
                    500, "Internal server error", source="forward-request", reason="GraphQLExecutionFailure"
                )
            )

        task.add_done_callback(finished)


_pending: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly


__all__ = [
    "GraphqlBackend",
    "GraphqlEndpoint",
    "GraphqlRequest",
    "RequestError",
    "execute_request",
    "read_request",
    "schema_of",
]
