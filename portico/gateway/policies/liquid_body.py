"""`<set-body template="liquid">` in API policies, as API Management defines it: the template sees
`body`, the current request (inbound, backend) or response (outbound, on-error) body as an object
— JSON when the message's Content-Type is JSON (`application/json`, `text/json`, `*+json`), XML
when it is XML (`application/xml`, `text/xml`, `*+xml`: elements by local name, looked up without
regard to case as `body.envelope.body` reads `<soap:Envelope><soap:Body>`; attributes as keys;
repeated elements as lists; the text of an element with attributes or children as `#text`) and
the body as a string otherwise — and `context` (Request, Response, Variables...). Date-like strings
become dates unless `parse-date="false"`; `xsi:nil` elements are "" (`xsi-nil="blank"`, the
default) or nil (`"null"`). The body is read whole by bodies.py (bounded, gzip/deflate decoded); XML is parsed with defusedxml."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

import orjson
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from portico.gateway.liquid import TemplateError, compile_template, render, to_datetime
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy
from portico.gateway.policies.bodies import is_media, read_body
from portico.gateway.policies.conversions import OFF_LOOP_BYTES
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context, HeaderMap

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


def body_object(
    data: bytes, content_type: str | None, nil_blank: bool = True, parse_date: bool = True
) -> Any:
    """What `body` is in a template, for a message with this body and Content-Type."""
    if is_media(content_type or "", "json") and data.strip():
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise Reject(
                400, "The body is not valid JSON.", source="set-body", reason="InvalidBody"
            ) from None
        return _dates(value) if parse_date else value
    if is_media(content_type or "", "xml") and data.strip():
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

    async def run(self, ctx: Context) -> Any:
        body = await read_body(ctx, self.section, "set-body")
        scope = liquid_context(ctx, bool(body.data))
        ctype = body.headers().get("content-type")
        if len(body.data) < OFF_LOOP_BYTES:
            out = self._render(body.data, ctype, scope)
        else:  # parsed and rendered in a thread: the event loop keeps serving
            out = await asyncio.to_thread(self._render, body.data, ctype, scope)
        body.replace(out)
        return None

    def _render(self, data: bytes, content_type: str | None, scope: dict[str, Any]) -> bytes:
        value = body_object(data, content_type, self.nil_blank, self.parse_date)
        return render(self.template, body=value, context=scope).encode()


__all__ = ["LiquidSetBody", "body_object", "liquid_context"]
