"""`<set-body template="liquid">` in API policies, as API Management defines it: the template sees
`body`, the current request (inbound, backend) or response (outbound, on-error) body as an object
— JSON when the message's Content-Type is JSON (`application/json`, `text/json`, `*+json`), XML
when it is XML (`application/xml`, `text/xml`, `*+xml`: elements by local name, looked up without
regard to case as `body.envelope.body` reads `<soap:Envelope><soap:Body>`; attributes as keys;
repeated elements as lists; the text of an element with attributes or children as `#text`) and
the body as a string otherwise — and `context` (Request, Response, Variables...). Date-like strings
become dates unless `parse-date="false"`; `xsi:nil` elements are "" (`xsi-nil="blank"`, the
default) or nil (`"null"`). The body read is bounded, and XML is parsed with defusedxml."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

import orjson
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from portico.gateway.context import Response
from portico.gateway.liquid import TemplateError, compile_template, render, to_datetime
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.proxy import BodyTooLarge, request_body
from portico.gateway.upstream import UpstreamError

if TYPE_CHECKING:
    from portico.gateway.context import Context, HeaderMap

MAX_BODY_BYTES = 8 * 1024 * 1024  # what a template may be given to read (it is parsed whole)
XSI_PREFIX = "{http://www.w3.org/2001/XMLSchema-instance}"
XSI_NIL = XSI_PREFIX + "nil"
_DATE_LIKE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?|/Date\(-?\d+\)/"
)


class LiquidDate(datetime):
    """A date parsed from the body; shown as API Management shows a DateTime."""

    def __str__(self) -> str:
        return self.strftime("%m/%d/%Y %H:%M:%S")


class XmlObject(dict[str, Any]):
    """An XML element's children and attributes; a name missing in this case is looked up in any case."""

    def __missing__(self, key: object) -> Any:
        if isinstance(key, str):
            low = key.lower()
            for k, v in self.items():
                if k.lower() == low:
                    return v
        raise KeyError(key)


def _date(text: str) -> Any:
    when = to_datetime(text) if _DATE_LIKE.fullmatch(text) else None
    if when is None:
        return text
    return LiquidDate(
        when.year, when.month, when.day, when.hour, when.minute, when.second, when.microsecond, when.tzinfo
    )


def _dates(value: Any) -> Any:
    if isinstance(value, str):
        return _date(value)
    if isinstance(value, dict):
        return {k: _dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    return value


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def xml_object(el: Element, nil_blank: bool, parse_date: bool) -> Any:
    if el.get(XSI_NIL) in ("true", "1"):
        return "" if nil_blank else None
    kids = [c for c in el if isinstance(c.tag, str)]
    # xsi:type and the like describe the element rather than hold data
    attrs = {_local(k): v for k, v in el.attrib.items() if not k.startswith(XSI_PREFIX)}
    text = el.text or ""
    if not kids and not attrs:
        return _date(text) if parse_date else text
    out = XmlObject(attrs)
    repeated: set[str] = set()
    for c in kids:
        name = _local(c.tag)
        value = xml_object(c, nil_blank, parse_date)
        if name in repeated:
            out[name].append(value)
        elif name in out and name not in attrs:
            out[name] = [out[name], value]
            repeated.add(name)
        else:
            out[name] = value
    if text.strip():
        out["#text"] = text
    return out


def _kind(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("application/json", "text/json") or media.endswith("+json"):
        return "json"
    if media in ("application/xml", "text/xml") or media.endswith("+xml"):
        return "xml"
    return "text"


def body_object(
    data: bytes, content_type: str | None, nil_blank: bool = True, parse_date: bool = True
) -> Any:
    """What `body` is in a template, for a message with this body and Content-Type."""
    kind = _kind(content_type)
    if kind == "json" and data.strip():
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise Reject(
                400, "The body is not valid JSON.", source="set-body", reason="InvalidBody"
            ) from None
        return _dates(value) if parse_date else value
    if kind == "xml" and data.strip():
        try:
            root = fromstring(data, forbid_dtd=True)
        except (ParseError, DefusedXmlException, ValueError):
            raise Reject(400, "The body is not valid XML.", source="set-body", reason="InvalidBody") from None
        return XmlObject({_local(root.tag): xml_object(root, nil_blank, parse_date)})
    return data.decode("utf-8", "replace")


def _headers(h: HeaderMap) -> dict[str, str]:
    return {name: ",".join(values) for name, values in h.d.values()}


def _url(scheme: str, host: str, port: int, path: str, query: str) -> dict[str, Any]:
    pairs = [p.partition("=") for p in query.split("&") if p]
    default = port == (443 if scheme == "https" else 80)
    text = f"{scheme}://{host}{'' if default else f':{port}'}{path}{'?' + query if query else ''}"
    return {
        "Scheme": scheme,
        "Host": host,
        "Port": port,
        "Path": path,
        "Query": {k: v for k, _, v in pairs},
        "QueryString": "?" + query if query else "",
        "ToUri": text,
        "ToString": text,
    }


def liquid_context(ctx: Context, has_body: bool) -> dict[str, Any]:
    """`context` as a template sees it."""
    request = {
        "Method": ctx.method,
        "OriginalMethod": ctx.method,
        "Url": _url(ctx.scheme, ctx.host, ctx.port, ctx.path, ctx.current_query()),
        "OriginalUrl": _url(ctx.scheme, ctx.host, ctx.port, ctx.path, ctx.query_text),
        "IpAddress": ctx.client_ip,
        "MatchedParameters": dict(ctx.params),
        "HasBody": has_body,
        "Headers": _headers(ctx.headers),
    }
    scope: dict[str, Any] = {"Request": request, "Variables": dict(ctx.variables)}
    r = ctx.response
    if r is not None:
        scope["Response"] = {
            "StatusCode": r.status,
            "Method": ctx.method,
            "Headers": _headers(r.header_map()),
        }
    return scope


class LiquidSetBody(Policy):
    """The `template="liquid"` form of set-body (portico/gateway/policies/transform.py delegates)."""

    tag = "set-body"
    is_async = True  # the body may still be streaming in

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        if (node.get("template") or "").lower() != "liquid":
            raise PolicyDocumentError("attribute 'template' must be 'liquid'.", node)
        self.nil_blank = node.choice("xsi-nil", ("blank", "null"), "blank") == "blank"
        self.parse_date = node.boolean("parse-date", True)
        try:
            self.template = compile_template(node.text.strip())
        except TemplateError as exc:
            raise PolicyDocumentError(str(exc), node) from None
        self.request_side = section in ("inbound", "backend")

    async def run(self, ctx: Context) -> Any:
        limit = min(getattr(ctx.backend, "max_body_bytes", MAX_BODY_BYTES), MAX_BODY_BYTES)
        if self.request_side:
            data = await _request_bytes(ctx, limit)
            ctype = ctx.headers.get("content-type")
        else:
            data = await _response_bytes(ctx, limit)
            ctype = ctx.response.header_map().get("content-type") if ctx.response is not None else None
        body = body_object(data, ctype, self.nil_blank, self.parse_date)
        out = render(self.template, body=body, context=liquid_context(ctx, bool(data))).encode()
        if self.request_side:
            ctx.request_body = out
            ctx.headers.delete("content-length")
            ctx.headers.delete("transfer-encoding")
        else:
            if ctx.response is None:  # on-error before any answer: the body makes one
                ctx.response = Response(200)
            ctx.response.body = out
            h = ctx.response.header_map()
            h.delete("content-length")
            h.delete("transfer-encoding")
        return None


def _too_large(limit: int) -> Reject:
    return Reject(
        413,
        f"The body exceeds the {limit} bytes a Liquid template may read.",
        source="set-body",
        reason="RequestEntityTooLarge",
    )


async def _request_bytes(ctx: Context, limit: int) -> bytes:
    if ctx.request_body is None:
        if ctx.headers.get("content-length") in (None, "0") and "transfer-encoding" not in ctx.headers:
            ctx.request_body = b""
        else:
            parts: list[bytes] = []
            try:
                async for chunk in request_body(ctx, limit):
                    parts.append(chunk)
            except BodyTooLarge:
                raise _too_large(limit) from None
            ctx.request_body = b"".join(parts)
    if len(ctx.request_body) > limit:
        raise _too_large(limit)
    return ctx.request_body


async def _response_bytes(ctx: Context, limit: int) -> bytes:
    r = ctx.response
    if r is None:
        return b""
    if r.upstream is not None:
        upstream, r.upstream = r.upstream, None
        try:
            r.body = await upstream.read(limit)
        except UpstreamError:
            raise Reject(
                502,
                f"The backend's response body could not be read whole (at most {limit} bytes).",
                source="set-body",
                reason="BackendResponseUnreadable",
            ) from None
    if len(r.body) > limit:
        raise _too_large(limit)
    return r.body


__all__ = ["LiquidSetBody", "body_object", "liquid_context"]
