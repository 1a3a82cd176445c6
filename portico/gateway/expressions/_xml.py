"""XML bodies in expressions: `Body.As<XDocument>()`, `As<XElement>()` and `As<XNode>()` (LINQ to
XML), read-only. Parsed with defusedxml (no DTDs, no entities); names follow XName's rules: `"ID"`
is an element without a namespace, `"{http://ns}ID"` one in that namespace (as ElementTree writes
tags). Only the members listed in _catalog.py reach these objects."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from portico.gateway.expressions._base import ExpressionError
from portico.gateway.expressions._runtime import to_text


def parse_xml(data: bytes, generic: str | None) -> Any:
    """The body as XDocument (`generic` XDocument) or its root XElement; null when empty."""
    if not data.strip():
        return None
    try:
        root = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        raise ExpressionError(f"The body is not valid XML (As<{generic}>).") from None
    element = XElement(root)
    return XDocument(element) if (generic or "").lower() == "xdocument" else element


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


class XName:
    """An element's or attribute's name: `LocalName`, `NamespaceName`; ToString() is `{ns}local`."""

    __slots__ = ("tag",)
    expr_type = "XName"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def expr_member(self, name: str) -> Any:
        if name == "LocalName":
            return _split(self.tag)[1]
        if name == "NamespaceName":
            return _split(self.tag)[0]
        raise ExpressionError(f"'XName' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "ToString":
            return self.tag
        raise ExpressionError(f"'XName' does not contain a method '{name}'.")

    def expr_text(self) -> str:
        return self.tag


class XAttribute:
    __slots__ = ("tag", "value")
    expr_type = "XAttribute"

    def __init__(self, tag: str, value: str) -> None:
        self.tag, self.value = tag, value

    def expr_member(self, name: str) -> Any:
        if name == "Value":
            return self.value
        if name == "Name":
            return XName(self.tag)
        raise ExpressionError(f"'XAttribute' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "ToString":
            return self.expr_text()
        raise ExpressionError(f"'XAttribute' does not contain a method '{name}'.")

    def expr_string_cast(self) -> str:
        return self.value

    def expr_text(self) -> str:
        return f'{_split(self.tag)[1]}="{self.value}"'


def _name_arg(args: list[Any]) -> str | None:
    if not args:
        return None
    if args[0] is None:
        raise ExpressionError("Value cannot be null (parameter 'name').")
    return args[0].tag if isinstance(args[0], XName) else to_text(args[0])


class XElement:
    """An element: `Name`, `Value` (its text and its descendants'), `HasElements`, `HasAttributes`,
    `Element(name)` (null when absent), `Elements([name])`, `Descendants([name])`,
    `Attribute(name)` (null when absent); `(string)e` is its Value."""

    __slots__ = ("node",)
    expr_type = "XElement"

    def __init__(self, node: Element) -> None:
        self.node = node

    def expr_member(self, name: str) -> Any:
        if name == "Value":
            return "".join(self.node.itertext())
        if name == "Name":
            return XName(self.node.tag)
        if name == "HasElements":
            return len(self.node) > 0
        if name == "HasAttributes":
            return bool(self.node.attrib)
        raise ExpressionError(f"'XElement' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        tag = _name_arg(args)
        if name == "Element":
            if tag is None:
                raise ExpressionError("Value cannot be null (parameter 'name').")
            found = next((e for e in self.node if e.tag == tag), None)
            return XElement(found) if found is not None else None
        if name == "Elements":
            return [XElement(e) for e in self.node if tag is None or e.tag == tag]
        if name == "Descendants":
            return [
                XElement(e) for e in self.node.iter() if e is not self.node and (tag is None or e.tag == tag)
            ]
        if name == "Attribute":
            if tag is None:
                raise ExpressionError("Value cannot be null (parameter 'name').")
            value = self.node.attrib.get(tag)
            return XAttribute(tag, value) if value is not None else None
        raise ExpressionError(f"'XElement' does not contain a method '{name}'.")

    def expr_string_cast(self) -> str:
        return "".join(self.node.itertext())

    def expr_text(self) -> str:
        return "System.Xml.Linq.XElement"


class XDocument:
    """A document: `Root`, and `Element`, `Elements`, `Descendants` as on its root's parent."""

    __slots__ = ("root",)
    expr_type = "XDocument"

    def __init__(self, root: XElement) -> None:
        self.root = root

    def expr_member(self, name: str) -> Any:
        if name == "Root":
            return self.root
        raise ExpressionError(f"'XDocument' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        tag = _name_arg(args)
        if name in ("Element", "Elements"):
            match = tag is None or self.root.node.tag == tag
            if name == "Element":
                return self.root if tag is not None and match else None
            return [self.root] if match else []
        if name == "Descendants":
            return [XElement(e) for e in self.root.node.iter() if tag is None or e.tag == tag]
        raise ExpressionError(f"'XDocument' does not contain a method '{name}'.")

    def expr_text(self) -> str:
        return "System.Xml.Linq.XDocument"
