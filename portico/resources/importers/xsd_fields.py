"""The XML Schema of a WSDL's `types`, read as far as SOAP-to-REST needs it: a message element as a
tree of fields (name, simple type or children, optional, repeated, nillable), and that tree as a
JSON schema. Element and type references are resolved by local name across the WSDL's schemas;
`xs:import`/`xs:include` of other documents are not followed (as in Azure API Management)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

from portico.resources.importers.model import ImportFailed
from portico.resources.importers.xml_util import children, local, qname_local

MAX_DEPTH = 12  # nesting of a message's elements; recursive types stop here
MAX_FIELDS = 5_000  # fields of all messages of one WSDL
_INTEGER = frozenset(
    {
        "int",
        "integer",
        "long",
        "short",
        "byte",
        "unsignedInt",
        "unsignedLong",
        "unsignedShort",
        "unsignedByte",
        "positiveInteger",
        "negativeInteger",
        "nonNegativeInteger",
        "nonPositiveInteger",
    }
)
_NUMBER = frozenset({"decimal", "float", "double"})
_FORMATS = {"dateTime": "date-time", "date": "date", "base64Binary": "byte", "anyURI": "uri"}


@dataclass
class Field:
    name: str
    qualified: bool  # in the schema's target namespace (elementFormDefault / form)
    optional: bool = False
    repeated: bool = False
    nillable: bool = False
    simple: str | None = None  # the XSD built-in type of a simple field ("string", "int"...)
    enum: list[str] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)

    @property
    def json_kind(self) -> str:
        if self.simple in _INTEGER:
            return "integer"
        if self.simple in _NUMBER:
            return "number"
        if self.simple == "boolean":
            return "boolean"
        return "string" if self.simple is not None else "object"


@dataclass
class _Schema:
    target: str
    qualified: bool


class Schemas:
    """Global elements, complex types and simple types of the WSDL's schemas, by local name."""

    def __init__(self, types: Element | None) -> None:
        self.elements: dict[str, tuple[Element, _Schema]] = {}
        self.complex: dict[str, tuple[Element, _Schema]] = {}
        self.simple: dict[str, Element] = {}
        self.namespace = ""
        self.count = 0
        for schema in children(types, "schema") if types is not None else ():
            info = _Schema(
                schema.get("targetNamespace") or "", schema.get("elementFormDefault") == "qualified"
            )
            self.namespace = self.namespace or info.target
            for el in schema:
                name = el.get("name")
                if not name:
                    continue
                if local(el.tag) == "element":
                    self.elements.setdefault(name, (el, info))
                elif local(el.tag) == "complexType":
                    self.complex.setdefault(name, (el, info))
                elif local(el.tag) == "simpleType":
                    self.simple.setdefault(name, el)

    def target_of(self, element: str) -> str:
        found = self.elements.get(element)
        return found[1].target if found is not None else self.namespace

    def message_element(self, name: str) -> Field:
        """The global element `name` (a message part's element) as a field tree."""
        found = self.elements.get(name)
        if found is None:
            raise ImportFailed(f"element '{name[:100]}' of a message is not defined in the WSDL's types")
        el, info = found
        out = Field(name, True)
        self._fill(out, el, info, 0, frozenset())
        return out

    def _fill(self, out: Field, el: Element, info: _Schema, depth: int, seen: frozenset[str]) -> None:
        self.count += 1
        if self.count > MAX_FIELDS:
            raise ImportFailed(f"the WSDL's messages have more than {MAX_FIELDS} fields")
        out.nillable = el.get("nillable") == "true"
        type_name = qname_local(el.get("type")) if el.get("type") else ""
        inline_complex = next(children(el, "complexType"), None)
        inline_simple = next(children(el, "simpleType"), None)
        if inline_complex is not None:
            self._complex(out, inline_complex, info, depth, seen)
        elif inline_simple is not None:
            self._simple(out, inline_simple)
        elif type_name in self.complex and type_name not in seen:
            ctype, cinfo = self.complex[type_name]
            self._complex(out, ctype, cinfo, depth, seen | {type_name})
        elif type_name in self.complex:
            out.simple = "string"  # a recursive type: its deeper levels are carried as text
        elif type_name in self.simple:
            self._simple(out, self.simple[type_name])
        elif type_name:
            out.simple = type_name
        elif el.get("ref") is None:
            out.simple = "string"  # no type: xs:anyType, carried as text

    def _complex(self, out: Field, ctype: Element, info: _Schema, depth: int, seen: frozenset[str]) -> None:
        if depth >= MAX_DEPTH:
            out.simple = "string"
            return
        content = next(children(ctype, "complexContent"), None)
        if content is not None:
            ext = next((c for c in content if local(c.tag) in ("extension", "restriction")), None)
            base = qname_local(ext.get("base")) if ext is not None else ""
            if ext is not None and base in self.complex and base not in seen:
                bel, binfo = self.complex[base]
                self._complex(out, bel, binfo, depth, seen | {base})
            if ext is not None:
                self._particles(out, ext, info, depth, seen)
            return
        simple_content = next(children(ctype, "simpleContent"), None)
        if simple_content is not None:
            ext = next((c for c in simple_content if local(c.tag) in ("extension", "restriction")), None)
            out.simple = qname_local(ext.get("base")) if ext is not None else "string"
            return
        self._particles(out, ctype, info, depth, seen)

    def _particles(
        self, out: Field, holder: Element, info: _Schema, depth: int, seen: frozenset[str]
    ) -> None:
        for group in holder:
            kind = local(group.tag)
            if kind not in ("sequence", "all", "choice"):
                continue
            for item in group:
                if local(item.tag) in ("sequence", "all", "choice"):
                    self._particles(out, _wrap(item), info, depth, seen)
                    continue
                if local(item.tag) != "element":
                    continue
                out.children.append(self._child(item, info, depth, seen, choice=kind == "choice"))

    def _child(self, item: Element, info: _Schema, depth: int, seen: frozenset[str], choice: bool) -> Field:
        ref = item.get("ref")
        if ref:
            name = qname_local(ref)
            found = self.elements.get(name)
            if found is None:
                raise ImportFailed(f"element reference '{name[:100]}' is not defined in the WSDL's types")
            target, tinfo = found
            f = Field(name, True)
            self._fill(f, target, tinfo, depth + 1, seen)
        else:
            name = item.get("name") or ""
            if not name:
                raise ImportFailed("an element of the WSDL's types has neither a name nor a ref")
            form = item.get("form")
            f = Field(name, form == "qualified" if form else info.qualified)
            self._fill(f, item, info, depth + 1, seen)
        f.optional = choice or item.get("minOccurs") == "0"
        f.repeated = item.get("maxOccurs") not in (None, "0", "1")
        if item.get("nillable") == "true":
            f.nillable = True
        return f

    def _simple(self, out: Field, stype: Element) -> None:
        restriction = next(children(stype, "restriction"), None)
        if restriction is None:
            out.simple = "string"  # lists and unions: text
            return
        base = qname_local(restriction.get("base"))
        while base in self.simple and base != out.simple:  # a named simple type over another
            inner = next(children(self.simple[base], "restriction"), None)
            out.simple = base
            base = qname_local(inner.get("base")) if inner is not None else "string"
        out.simple = base or "string"
        out.enum = [str(e.get("value")) for e in children(restriction, "enumeration")]


def _wrap(group: Element) -> Element:
    holder = Element("wrapper")
    holder.append(group)
    return holder


def camel(name: str) -> str:
    """Azure's JSON property name for an XML element: the first letter in lower case."""
    return name[:1].lower() + name[1:]


def json_schema(f: Field) -> dict[str, Any]:
    """The JSON schema of a field's value (its element's content)."""
    if f.simple is not None:
        out: dict[str, Any] = {"type": f.json_kind}
        fmt = _FORMATS.get(f.simple)
        if fmt:
            out["format"] = fmt
        if f.enum:
            out["enum"] = f.enum
    else:
        out = {
            "type": "object",
            "properties": {camel(c.name): _property(c) for c in f.children},
        }
        required = [camel(c.name) for c in f.children if not c.optional and not c.nillable]
        if required:
            out["required"] = required
    if f.nillable:
        out["x-nullable"] = True
    return out


def _property(f: Field) -> dict[str, Any]:
    inner = json_schema(f)
    return {"type": "array", "items": inner} if f.repeated else inner


__all__ = ["Field", "Schemas", "camel", "json_schema"]
