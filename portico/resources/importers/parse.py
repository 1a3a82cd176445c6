"""Dispatch of a definition to the importer of its `format`."""

from __future__ import annotations

from portico.resources.importers.documents import load_json, load_structured, load_xml
from portico.resources.importers.graphql import import_graphql, sdl_from_introspection, sdl_from_text
from portico.resources.importers.model import Imported, ImportFailed, Options
from portico.resources.importers.odata import import_odata
from portico.resources.importers.openapi import import_openapi
from portico.resources.importers.wadl import import_wadl
from portico.resources.importers.wsdl import import_wsdl

# format → the inline format its fetched document is read as
LINK_FORMATS = {
    "openapi-link": "openapi",
    "openapi+json-link": "openapi+json",
    "swagger-link-json": "swagger-json",
    "wsdl-link": "wsdl",
    "wadl-link-json": "wadl-xml",
    "graphql-link": "graphql",
    "odata-link": "odata",
}
INLINE_FORMATS = frozenset({"openapi", "openapi+json", "swagger-json", "wsdl", "wadl-xml", "odata"})
SUPPORTED_FORMATS = INLINE_FORMATS | frozenset(LINK_FORMATS)
# Known to Azure, not implemented here: refused by name rather than half-imported (gRPC needs
# HTTP/2 end to end, which the gateway does not speak).
REFUSED_FORMATS = frozenset({"grpc", "grpc-link"})


def parse(fmt: str, text: str, opts: Options, *, link: str | None = None) -> Imported:
    """The configuration `text` (in `fmt`, inline or as fetched for a link format) describes."""
    kind = LINK_FORMATS.get(fmt, fmt)
    if kind == "openapi":
        return import_openapi(load_structured(text), opts)
    if kind == "openapi+json":
        return import_openapi(load_json(text), opts)
    if kind == "swagger-json":
        doc = load_json(text)
        if not isinstance(doc, dict) or "swagger" not in doc:
            raise ImportFailed("format 'swagger-json' needs a Swagger 2.0 document ('swagger': '2.0')")
        return import_openapi(doc, opts)
    if kind == "wsdl":
        return import_wsdl(load_xml(text), text, opts)
    if kind == "wadl-xml":
        return import_wadl(load_xml(text))
    if kind == "graphql":
        assert link is not None
        stripped = text.lstrip()
        sdl = sdl_from_introspection(load_json(text)) if stripped.startswith("{") else sdl_from_text(text)
        return import_graphql(link, sdl)
    if kind == "odata":
        return import_odata(text, link)
    raise ImportFailed(f"format '{fmt[:40]}' is not supported")
