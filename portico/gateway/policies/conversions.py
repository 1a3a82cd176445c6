"""Policies that rewrite a message body: xml-to-json, json-to-xml, find-and-replace,
redirect-content-urls and jsonp.

Each reads the body whole (portico/gateway/policies/bodies.py), so each is asynchronous: a
pipeline holding one is served by the gateway's awaited path, never its fast path, and behaves the
same whichever listener took the request. An empty body is left as it is; a body that is not what
the conversion takes is refused (400 for the request's, 500 for the response's), never passed on
half-converted."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from portico.gateway.context import QueryMap
from portico.gateway.expressions import ExpressionError, Value
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.bodies import REQUEST_SIDE, Body, is_media, media_type, read_body
from portico.gateway.policies.xmljson import ConversionError, XmlOptions, json_to_xml, xml_to_json
from portico.gateway.policies.xmltree import NAMED_VALUE, Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

_T = TypeVar("_T")
CONVERSION_SECTIONS = frozenset({"inbound", "outbound", "on-error"})
_BOOLEANS = ("true", "false")


def _option(node: Node, name: str, options: tuple[str, ...], *, default: str | None = None) -> Value:
    """An attribute that takes one of `options` (or an expression, checked when it runs)."""
    value = node.value(name, required=default is None, default=default)
    assert value is not None
    if value.constant and not NAMED_VALUE.search(value.literal):
        node.choice(name, options, None)
    return value


def _pick(value: Value, ctx: Context, name: str, options: tuple[str, ...]) -> str:
    text = value.text(ctx).strip().lower()
    if text not in options:
        raise ExpressionError(f"attribute '{name}' must be one of {', '.join(options)}, got '{text[:40]}'")
    return text


def _accepts(ctx: Context, word: str) -> bool:
    """Whether the client's Accept header asks for a `word` (json, xml) media type (a GraphQL
    resolver's request is the gateway's own: the client's is the one it answers)."""
    client: Context = getattr(ctx, "client", ctx)
    return any(is_media(part, word) for part in (client.headers.get("accept") or "").split(","))


def _failed(body: Body, source: str, problem: str) -> Reject:
    if body.request_side:
        return Reject(
            400, f"The request body cannot be converted: {problem}.", source=source, reason="InvalidBody"
        )
    return Reject(
        500, f"The response body cannot be converted: {problem}.", source=source, reason="InvalidBody"
    )


OFF_LOOP_BYTES = 256 * 1024  # larger bodies are converted in a thread: the event loop keeps serving


async def _off_loop(convert: Callable[..., _T], data: bytes, *args: Any, **kw: Any) -> _T:
    if len(data) < OFF_LOOP_BYTES:
        return convert(data, *args, **kw)
    return await asyncio.to_thread(convert, data, *args, **kw)


class _Conversion(Policy):
    """What xml-to-json and json-to-xml share: when to convert (apply, consider-accept-header)."""

    sections = CONVERSION_SECTIONS
    is_async = True
    applies: tuple[str, str]  # ("always", "content-type-xml" | "content-type-json")
    word: str  # the media type word the source is recognised by
    wanted: str  # the one the client's Accept header asks for

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_children(frozenset())
        self.apply = _option(node, "apply", self.applies)
        self.consider_accept = _option(node, "consider-accept-header", _BOOLEANS, default="true")

    async def _body(self, ctx: Context) -> Body | None:
        """The body to convert, or None when this request's conditions say not to."""
        if _pick(self.consider_accept, ctx, "consider-accept-header", _BOOLEANS) == "true":
            if not _accepts(ctx, self.wanted):
                return None
        if _pick(self.apply, ctx, "apply", self.applies) != "always":
            if not is_media(media_type(ctx, self.section), self.word):
                return None  # decided from the head: a body of another type is not read, it streams
        body = await read_body(ctx, self.section, self.tag)
        return body if body.data.strip() else None


@policy
class XmlToJson(_Conversion):
    tag = "xml-to-json"
    applies = ("always", "content-type-xml")
    word = "xml"
    wanted = "json"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        node.check_attrs({"kind", "apply", "consider-accept-header", "always-array-child-elements"})
        super().__init__(node, section, cc)
        self.kind = _option(node, "kind", ("javascript-friendly", "direct"))
        self.always_array = _option(node, "always-array-child-elements", _BOOLEANS, default="false")

    async def run(self, ctx: Context) -> Any:
        body = await self._body(ctx)
        if body is None:
            return None
        friendly = _pick(self.kind, ctx, "kind", ("javascript-friendly", "direct")) == "javascript-friendly"
        always = _pick(self.always_array, ctx, "always-array-child-elements", _BOOLEANS) == "true"
        try:
            out = await _off_loop(xml_to_json, body.data, friendly=friendly, always_array=always)
        except ConversionError as exc:
            raise _failed(body, self.tag, str(exc)) from None
        body.replace(orjson.dumps(out), "application/json")
        return None


@policy
class JsonToXml(_Conversion):
    tag = "json-to-xml"
    applies = ("always", "content-type-json")
    word = "json"
    wanted = "xml"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        node.check_attrs(
            {
                "apply",
                "consider-accept-header",
                "parse-date",
                "namespace-separator",
                "namespace-prefix",
                "attribute-block-name",
            }
        )
        super().__init__(node, section, cc)
        raw = node.get("parse-date")
        if raw is not None and raw.strip().startswith("@"):
            raise PolicyDocumentError("attribute 'parse-date' does not take policy expressions.", node)
        self.parse_date = node.boolean("parse-date", True)
        self.separator = node.value("namespace-separator", default="_")
        if self.separator is not None and self.separator.constant and len(self.separator.literal) != 1:
            if not NAMED_VALUE.search(self.separator.literal):
                raise PolicyDocumentError("attribute 'namespace-separator' must be a single character.", node)
        self.prefix = node.value("namespace-prefix")
        self.block = node.value("attribute-block-name")

    async def run(self, ctx: Context) -> Any:
        body = await self._body(ctx)
        if body is None:
            return None
        assert self.separator is not None
        separator = self.separator.text(ctx)
        if len(separator) != 1:
            raise ExpressionError("attribute 'namespace-separator' must be a single character")
        options = XmlOptions(
            parse_date=self.parse_date,
            separator=separator,
            namespace_prefix=self.prefix.text(ctx) if self.prefix is not None else "",
            attribute_block=self.block.text(ctx) if self.block is not None else "",
        )
        try:
            out = await _off_loop(json_to_xml, body.data, options)
        except ConversionError as exc:
            raise _failed(body, self.tag, str(exc)) from None
        body.replace(out, "application/xml")
        return None


@policy
class FindAndReplace(Policy):
    tag = "find-and-replace"
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"from", "to"})
        node.check_children(frozenset())
        self.find = node.value("from", required=True)
        if "to" not in node.attrs:
            raise PolicyDocumentError("attribute 'to' is required (empty to remove what 'from' finds).", node)
        self.to = node.value("to")

    async def run(self, ctx: Context) -> Any:
        assert self.find is not None and self.to is not None
        find = self.find.text(ctx).encode()
        if not find:
            raise ExpressionError("attribute 'from' of find-and-replace evaluated to an empty string")
        body = await read_body(ctx, self.section, self.tag)
        if find in body.data:
            body.replace(body.data.replace(find, self.to.text(ctx).encode()))
        return None


def gateway_base(ctx: Context) -> str:
    """The API's URL on the gateway, as the client called it (scheme, Host header, API path)."""
    host = ctx.headers.get("host") or ctx.host
    path = ctx.api.path.strip("/") if ctx.api is not None else ""
    return f"{ctx.scheme}://{host}" + (f"/{path}" if path else "")


@policy
class RedirectContentUrls(Policy):
    """Backend URLs in the response body become the gateway's (inbound: the other way round)."""

    tag = "redirect-content-urls"
    sections = frozenset({"inbound", "outbound"})
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(frozenset())
        node.check_children(frozenset())

    async def run(self, ctx: Context) -> Any:
        backend = (ctx.backend_base or (ctx.api.service_url if ctx.api is not None else "") or "").rstrip("/")
        if not backend:
            return None
        gateway = gateway_base(ctx).rstrip("/")
        old, new = (gateway, backend) if self.section in REQUEST_SIDE else (backend, gateway)
        body = await read_body(ctx, self.section, self.tag)
        if old.encode() in body.data:
            body.replace(body.data.replace(old.encode(), new.encode()))
        return None


# A callback is a JavaScript name or a dotted path of names: anything else could inject script.
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*$")
MAX_CALLBACK = 128


@policy
class Jsonp(Policy):
    tag = "jsonp"
    sections = frozenset({"outbound"})
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"callback-parameter-name"})
        node.check_children(frozenset())
        self.parameter = node.value("callback-parameter-name", required=True)

    async def run(self, ctx: Context) -> Any:
        assert self.parameter is not None
        # the client's own query string: rewrite-uri may have left the parameter out of the backend's
        callback = QueryMap.parse(ctx.query_text).get(self.parameter.text(ctx))
        if callback is None or callback == "":
            return None
        if len(callback) > MAX_CALLBACK or not _CALLBACK.match(callback):
            raise Reject(
                400,
                f"The JSONP callback must be a JavaScript function name of at most {MAX_CALLBACK} characters.",
                source=self.tag,
                reason="InvalidCallback",
            )
        body = await read_body(ctx, self.section, self.tag)
        if not body.data:
            return None
        body.replace(b"%s(%s);" % (callback.encode(), body.data), "application/javascript; charset=utf-8")
        body.headers().set("X-Content-Type-Options", ["nosniff"])
        return None


__all__ = ["FindAndReplace", "JsonToXml", "Jsonp", "RedirectContentUrls", "XmlToJson", "gateway_base"]
