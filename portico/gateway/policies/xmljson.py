"""XML ⇄ JSON conversion of message bodies, as the xml-to-json and json-to-xml policies do it.

XML is parsed with defusedxml (no DTD, no entities, no external references), so a body cannot
expand or reach outside the gateway; the element tree is walked with a depth bound.

xml-to-json (kind="direct") reflects the document: the XML declaration's fields at the top level,
attributes (namespace declarations included) as "@name", a prefix's ":" as "$" ("soap$Body"),
text next to attributes or child elements as "#text", repeated elements as arrays, an empty
element as null. kind="javascript-friendly" gives the same shape without what JavaScript code has
no use for: no declaration, no namespace declarations, attributes as plain properties.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree
from xml.sax import SAXParseException
from xml.sax.handler import ContentHandler

import orjson
from defusedxml import DefusedXmlException, sax

MAX_DEPTH = 256


class ConversionError(Exception):
    """The body is not what the conversion takes (not XML, not JSON, nested too deeply)."""


# --- XML → JSON ----------------------------------------------------------------------------------
# The declaration is not reported by SAX; it can only stand at the very start (after a BOM).
_DECLARATION = re.compile(
    rb"""^(?:\xef\xbb\xbf)?<\?xml\s+version\s*=\s*["']([^"']*)["']"""
    rb"""(?:\s+encoding\s*=\s*["']([^"']*)["'])?(?:\s+standalone\s*=\s*["']([^"']*)["'])?\s*\?>"""
)


class _Frame:
    __slots__ = ("children", "members", "name", "parts", "segments")

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        self.name = name
        self.members = members
        self.parts: list[str] = []  # the text since the last child element (SAX hands it in pieces)
        self.segments: list[str] = []  # the texts before each child element
        self.children: dict[str, list[Any]] = {}


class _JsonBuilder(ContentHandler):
    """SAX events (qualified names, namespace declarations as attributes) → the JSON value, one
    element at a time: memory in proportion to the output, not to a DOM of the input."""

    def __init__(self, friendly: bool, always_array: bool) -> None:
        super().__init__()
        self.friendly = friendly
        self.always_array = always_array
        self.stack: list[_Frame] = []
        self.root: tuple[str, Any] | None = None

    def startElement(self, name: str, attrs: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise ConversionError(f"the XML document is nested more than {MAX_DEPTH} levels deep")
        members: dict[str, Any] = {}
        for qname, value in attrs.items():
            if self.friendly and (qname == "xmlns" or qname.startswith("xmlns:")):
                continue
            key = _json_name(qname)
            members[key if self.friendly else "@" + key] = value
        if self.stack:
            parent = self.stack[-1]
            parent.segments.append("".join(parent.parts))
            parent.parts.clear()
        self.stack.append(_Frame(_json_name(name), members))

    def characters(self, content: str) -> None:
        self.stack[-1].parts.append(content)

    def endElement(self, name: str) -> None:
        frame = self.stack.pop()
        value = self._value(frame)
        if self.stack:
            self.stack[-1].children.setdefault(frame.name, []).append(value)
        else:
            self.root = (frame.name, value)

    def _value(self, frame: _Frame) -> Any:
        # text split by child elements (mixed content) joins; whitespace between elements is not text
        text = "".join(t for t in (*frame.segments, "".join(frame.parts)) if t.strip())
        members = frame.members
        if not members and not frame.children:
            return text or None
        if text:
            members["#text"] = text
        for name, values in frame.children.items():
            value: Any = values if self.always_array or len(values) > 1 else values[0]
            if name in members:  # an attribute (javascript-friendly) with a child element's name
                value = [members[name], *(values if isinstance(value, list) else [value])]
            members[name] = value
        return members


def xml_to_json(data: bytes, *, friendly: bool, always_array: bool = False) -> dict[str, Any]:
    builder = _JsonBuilder(friendly, always_array)
    try:
        sax.parseString(data, builder, forbid_dtd=True)
    except SAXParseException as exc:
        raise ConversionError(
            f"the body is not well-formed XML ({exc.getMessage()} at line {exc.getLineNumber()})"
        ) from None
    except DefusedXmlException:
        raise ConversionError("the body has a DTD or entity declarations, which are not allowed") from None
    assert builder.root is not None
    out: dict[str, Any] = {}
    declaration = _DECLARATION.match(data)
    if not friendly and declaration:
        version, encoding, standalone = (
            g.decode("latin-1") if g is not None else None for g in declaration.groups()
        )
        out["version"] = version
        if encoding:
            out["encoding"] = encoding
        if standalone:
            out["standalone"] = standalone
    name, value = builder.root
    out[name] = value
    return out


def _json_name(qname: str) -> str:
    return qname.replace(":", "$")


# --- JSON → XML ----------------------------------------------------------------------------------
_ISO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")
_NAME_START = re.compile(
    r"[A-Za-z_\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C-\uFFFD]"
)
_NAME_CHAR = re.compile(r"[-.0-9\u00B7\u0300-\u036F\u203F-\u2040]")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
DOCUMENT = "Document"  # the root when the JSON has no single top-level property to be it
ARRAY_ITEM = "Array"  # an element of a top-level array


class XmlOptions:
    """json-to-xml's attributes, evaluated for one request."""

    def __init__(
        self,
        *,
        parse_date: bool = True,
        separator: str = "_",
        namespace_prefix: str = "",
        attribute_block: str = "",
    ) -> None:
        self.parse_date = parse_date
        self.separator = separator
        self.namespace_prefix = namespace_prefix
        self.attribute_block = attribute_block


def json_to_xml(data: bytes, options: XmlOptions) -> bytes:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConversionError(f"the body is not valid JSON ({exc})") from None
    builder = _XmlBuilder(options)
    if isinstance(value, dict) and len(value) == 1:
        ((name, inner),) = value.items()
        if not isinstance(inner, list) and not builder.is_special(name):
            return builder.document(name, inner)
    if isinstance(value, list):
        return builder.document(DOCUMENT, {ARRAY_ITEM: value})
    return builder.document(DOCUMENT, value)


def xml_name(name: str) -> str:
    """A JSON property name as an XML name: characters a name cannot hold are encoded `_xHHHH_`
    (the .NET convention, XmlConvert.EncodeName)."""
    if not name:
        return "_"
    out = []
    for i, ch in enumerate(name):
        ok = _NAME_START.match(ch) or (i > 0 and _NAME_CHAR.match(ch))
        out.append(ch if ok else f"_x{ord(ch):04X}_")
    return "".join(out)


def _text(value: Any, parse_date: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if parse_date:
            m = _ISO_DATE.match(value)
            if m:  # as .NET writes a parsed date back: fraction without trailing zeros, 7 digits at most
                fraction = (m.group(2) or "")[:7].rstrip("0")
                value = m.group(1) + ("." + fraction if fraction else "") + (m.group(3) or "")
        return _XML_INVALID.sub("\ufffd", value)
    return orjson.dumps(value).decode()


class _XmlBuilder:
    def __init__(self, options: XmlOptions) -> None:
        self.o = options

    def is_special(self, name: str) -> bool:
        return (
            bool(self.o.attribute_block and name == self.o.attribute_block)
            or self._namespace(name) is not None
        )

    def _namespace(self, name: str) -> str | None:
        """The declared prefix ("" for the default namespace) when `name` declares a namespace."""
        prefix = self.o.namespace_prefix
        if not prefix or not name.startswith(prefix):
            return None
        rest = name[len(prefix) :]
        if not rest:
            return ""
        if self.o.separator and rest.startswith(self.o.separator) and len(rest) > len(self.o.separator):
            return rest[len(self.o.separator) :]
        return None

    def _qualified(self, name: str, declared: frozenset[str]) -> str:
        sep = self.o.separator
        if sep and sep in name:
            prefix, _, local = name.partition(sep)
            if prefix in declared and local:
                return f"{xml_name(prefix)}:{xml_name(local)}"
        return xml_name(name)

    def document(self, name: str, value: Any) -> bytes:
        [root] = self._element(name, value, frozenset(), 0)
        return ElementTree.tostring(root, encoding="unicode").encode()

    def _element(
        self, name: str, value: Any, declared: frozenset[str], depth: int
    ) -> list[ElementTree.Element]:
        if depth > MAX_DEPTH:
            raise ConversionError(f"the JSON document is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, list):
            out: list[ElementTree.Element] = []
            for item in value:
                out.extend(self._element(name, item, declared, depth + 1))
            return out
        if not isinstance(value, dict):
            el = ElementTree.Element(self._qualified(name, declared))
            if value is not None:
                el.text = _text(value, self.o.parse_date)
            return [el]
        attrs: dict[str, str] = {}
        scope = set(declared)
        for key, inner in value.items():
            ns = self._namespace(key)
            if ns is not None:
                attrs["xmlns" if ns == "" else f"xmlns:{xml_name(ns)}"] = _text(inner, False)
                if ns:
                    scope.add(ns)
        inner_scope = frozenset(scope)
        el = ElementTree.Element(self._qualified(name, inner_scope))
        el.attrib.update(attrs)
        for key, inner in value.items():
            if self._namespace(key) is not None:
                continue
            if self.o.attribute_block and key == self.o.attribute_block and isinstance(inner, dict):
                for attr, attr_value in inner.items():
                    el.set(self._qualified(attr, inner_scope), _text(attr_value, self.o.parse_date))
                continue
            el.extend(self._element(key, inner, inner_scope, depth + 1))
        return [el]


__all__ = ["ConversionError", "XmlOptions", "json_to_xml", "xml_name", "xml_to_json"]
