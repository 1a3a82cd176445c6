"""Small helpers over ElementTree for namespaced definition languages (WSDL, WADL)."""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import Element


def local(tag: object) -> str:
    """`{ns}name` → `name` (comments and processing instructions have no string tag)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def ns_of(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def children(el: Element, name: str) -> Iterator[Element]:
    return (c for c in el if local(c.tag) == name)


def child(el: Element, name: str) -> Element | None:
    return next(children(el, name), None)


def qname_local(value: str | None) -> str:
    """`tns:Add` → `Add`."""
    return (value or "").rsplit(":", 1)[-1]
