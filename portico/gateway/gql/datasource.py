"""Resolver policies: an `<http-data-source>` document compiled into the HTTP call that resolves
one GraphQL field. Its request and response steps are the gateway's own policies (set-method,
set-header, set-body, set-backend-service, authentication-certificate, forward-request), run on
a `ResolverContext` (and, on the response, xml-to-json, json-to-xml and find-and-replace);
`set-url` is the data source's own element. What the gateway cannot honour
is refused when the document is saved, naming the element."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError

from portico.gateway.expressions import ExpressionError
from portico.gateway.gql.liquid import LiquidBody
from portico.gateway.gql.values import ResolverContext
from portico.gateway.outcome import Reject
from portico.gateway.policies import pipeline  # noqa: F401 - registers the policies
from portico.gateway.policies.base import REGISTRY, CompileContext, Policy, run_list
from portico.gateway.policies.xmltree import Node, PolicyDocumentError, parse
from portico.gateway.upstream import UpstreamError, split_url

if TYPE_CHECKING:
    from portico.gateway.backend import Backend
    from portico.gateway.context import Context

ROOT = "http-data-source"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # a data source's answer is buffered whole to be parsed
OTHER_DATA_SOURCES = ("cosmosdb-data-source", "sql-data-source")

# element → how many times it may appear (None: any number)
_REQUEST: dict[str, int | None] = {
    "set-backend-service": 1,
    "set-method": 1,
    "set-url": 1,
    "set-header": None,
    "set-body": 1,
    "authentication-certificate": 1,
    "include-fragment": None,
}
_RESPONSE: dict[str, int | None] = {
    "set-header": None,
    "set-body": 1,
    "include-fragment": None,
    "xml-to-json": None,
    "json-to-xml": None,
    "find-and-replace": None,
}
_UNSUPPORTED = {
    "get-authorization-context": "credential manager connections are not available in this gateway",
    "authentication-managed-identity": "managed identities are not available in this gateway",
    "publish-event": "GraphQL subscriptions are not served by this gateway",
}


class SetUrl(Policy):
    """`<set-url>`: the data source's URL, absolute, or relative to a `set-backend-service` base."""

    tag = "set-url"

    def __init__(self, node: Node, section: str, cc: CompileContext, *, has_base: bool) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(frozenset())
        node.check_children(frozenset())
        self.value = node.text_value()
        if self.value.constant:
            url = self.value.literal
            if not url:
                raise PolicyDocumentError("the URL is required.", node)
            if not _absolute(url) and not has_base and "{{" not in url:
                raise PolicyDocumentError(
                    "the URL must be an absolute http or https URL (or relative to a <set-backend-service>).",
                    node,
                )

    def run(self, ctx: Context) -> Any:
        url = self.value.text(ctx).strip()
        path, _, query = url.partition("?")
        if _absolute(url):
            try:
                split_url(url)
            except ValueError as exc:
                raise ExpressionError(f"'{url[:80]}' is not a valid URL: {exc}") from None
            ctx.backend_base, ctx.backend_suffix, ctx.query_text = url, "", ""
        elif ctx.backend_base:
            ctx.backend_suffix, ctx.query_text = "/" + path.lstrip("/"), query
        else:
            raise ExpressionError(f"'{url[:80]}' is not an absolute http or https URL")
        ctx.query = None
        return None


def _absolute(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _steps(node: Node, allowed: dict[str, int | None], section: str, cc: CompileContext) -> list[Any]:
    node.check_attrs(frozenset())
    seen: dict[str, int] = {}
    has_base = any(c.tag == "set-backend-service" for c in node.children)
    out: list[Any] = []
    for child in node.children:
        tag = child.tag
        if tag in _UNSUPPORTED:
            raise PolicyDocumentError(f"<{tag}> is not supported: {_UNSUPPORTED[tag]}.", child)
        if tag not in allowed:
            listing = ", ".join(sorted(allowed))
            raise PolicyDocumentError(
                f"element <{tag}> is not allowed inside <{node.tag}> (allowed: {listing}).", child
            )
        seen[tag] = seen.get(tag, 0) + 1
        most = allowed[tag]
        if most is not None and seen[tag] > most:
            raise PolicyDocumentError(f"<{tag}> may appear only once inside <{node.tag}>.", child)
        if tag == "set-body" and child.get("template") is not None:
            out.append(LiquidBody(child, section, cc))
        elif tag == "set-url":
            out.append(SetUrl(child, section, cc, has_base=has_base))
        else:
            out.append(REGISTRY[tag](child, section, cc))
    return out


class DataSource:
    """A compiled `<http-data-source>`: `await resolve(...)` calls it and returns the field's value."""

    def __init__(self, xml: str, cc: CompileContext) -> None:
        root = parse(xml)
        if root.tag != ROOT:
            if root.tag in OTHER_DATA_SOURCES:
                raise PolicyDocumentError(
                    f"<{root.tag}> resolvers are not supported by this gateway (only <{ROOT}>).", root
                )
            raise PolicyDocumentError(
                f"a resolver policy's root element must be <{ROOT}>, found <{root.tag}>.", root
            )
        root.check_attrs(frozenset())
        order = ("http-request", "backend", "http-response")
        found: dict[str, Node] = {}
        for child in root.children:
            if child.tag in _UNSUPPORTED:
                raise PolicyDocumentError(
                    f"<{child.tag}> is not supported: {_UNSUPPORTED[child.tag]}.", child
                )
            if child.tag not in order:
                raise PolicyDocumentError(
                    f"element <{child.tag}> is not allowed inside <{ROOT}> (allowed: {', '.join(order)}).",
                    child,
                )
            if child.tag in found:
                raise PolicyDocumentError(f"<{child.tag}> may appear only once.", child)
            if any(order.index(t) > order.index(child.tag) for t in found):
                raise PolicyDocumentError(
                    f"<{child.tag}> is out of order (expected {', '.join(order)}).", child
                )
            found[child.tag] = child
        request = found.get("http-request")
        if request is None:
            raise PolicyDocumentError("<http-request> is required.", root)
        self.request = _steps(request, _REQUEST, "inbound", cc)
        for needed in ("set-method", "set-url"):
            if not any(c.tag == needed for c in request.children):
                raise PolicyDocumentError(f"<{needed}> is required inside <http-request>.", request)
        self.forward: Any = None
        backend = found.get("backend")
        if backend is not None:
            backend.check_attrs(frozenset())
            backend.check_children({"forward-request"})
            if len(backend.children) > 1:
                raise PolicyDocumentError("<forward-request> may appear only once.", backend.children[1])
            if backend.children:
                self.forward = REGISTRY["forward-request"](backend.children[0], "backend", cc)
        response = found.get("http-response")
        self.response = _steps(response, _RESPONSE, "outbound", cc) if response is not None else []

    async def resolve(
        self,
        client: Context,
        backend: Backend,
        arguments: dict[str, Any],
        parent: Any,
        limit: int = MAX_RESPONSE_BYTES,
    ) -> tuple[Any, int]:
        """Run the data source for one field: (the field's value, the size of the answer read, at
        most `limit` bytes). A failure is a GraphQLError (a field error)."""
        size = 0
        ctx = ResolverContext(client, backend, arguments, parent)
        try:
            await run_list(self.request, ctx)
            if self.forward is not None:
                await self.forward.run(ctx)
            else:
                await backend.forward(ctx, None)
            r = ctx.response
            assert r is not None
            if r.upstream is not None:
                upstream, r.upstream = r.upstream, None
                r.body = await upstream.read(limit)
            size = len(r.body)
            if size > limit:
                raise GraphQLError("The resolver's data source answered with too large a body.")
            if r.status >= 400:
                raise GraphQLError(f"The resolver's data source answered with status {r.status}.")
            await run_list(self.response, ctx)
        except Reject as exc:
            raise GraphQLError(f"The resolver's data source failed: {exc.message}") from None
        except ExpressionError as exc:
            raise GraphQLError(f"A resolver policy expression failed: {exc}") from None
        except UpstreamError as exc:
            raise GraphQLError(f"The resolver's data source failed: {exc}") from None
        except TimeoutError:
            raise GraphQLError("The resolver's data source did not answer in time.") from None
        finally:
            if ctx.response is not None:
                ctx.response.drop_upstream()
        return _value(ctx.response.body if ctx.response is not None else b""), size


def _value(body: bytes) -> Any:
    """The field's value: the body's JSON, or the body as a string when it is not JSON (none: null)."""
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def validate_data_source(xml: str) -> None:
    """Raise PolicyDocumentError when `xml` is not a resolver policy the gateway can run."""
    DataSource(xml, CompileContext(validate_only=True, scope="validate"))


__all__ = ["MAX_RESPONSE_BYTES", "DataSource", "validate_data_source"]
