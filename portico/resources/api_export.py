"""API export (`GET /apis/{id}?format=...&export=true`): the API's configuration written back as a
definition — OpenAPI 3.0 (YAML or JSON), Swagger 2.0, WADL, or the WSDL a SOAP API was imported
from. Operation names become operationIds and display names summaries, so importing an export
gives the same operations back."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, SubElement, tostring

import orjson
import yaml
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError, invalid_field
from portico.resources.importers.openapi import OAS3_SCHEMAS, SWAGGER_SCHEMAS
from portico.resources.importers.wsdl import WSDL_CONTENT_TYPE
from portico.store import entities as E

# export format → (document format, media type)
LINKS = {
    "openapi-link": "openapi",
    "openapi+json-link": "openapi+json",
    "swagger-link": "swagger",
    "swagger-link-json": "swagger",
    "wsdl-link": "wsdl",
    "wadl-link": "wadl",
    "wadl-link-json": "wadl",
}
DOCUMENTS = {
    "openapi": "application/yaml",
    "openapi+json": "application/json",
    "swagger": "application/json",
    "swagger-json": "application/json",
    "wsdl": "text/xml",
    "wadl": "application/xml",
    "wadl-xml": "application/xml",
}
# The `format` Azure answers for a link export.
RESULT_FORMAT = {
    "swagger": "swagger-link-json",
    "wsdl": "wsdl-link+xml",
    "wadl": "wadl-link-json",
    "openapi": "openapi-link",
    "openapi+json": "openapi+json-link",
}
_QUERY_TEMPLATE = re.compile(r"([^&=]+)=\{([^{}]+)\}")
WADL_NS = "http://wadl.dev.java.net/2009/02"


def document_format(fmt: str | None) -> tuple[str, bool]:
    """(document format, is a link) of the `format` query parameter."""
    low = (fmt or "").lower()
    if low in LINKS:
        return LINKS[low], True
    if low in DOCUMENTS:
        return low, False
    known = ", ".join(sorted({*LINKS, *DOCUMENTS}))
    raise invalid_field("format", f"'{low[:40]}' is not an export format; use one of {known}")


async def export(
    conn: AsyncConnection, store: int, api_name: str, doc_format: str
) -> tuple[str, str | dict[str, Any]]:
    """(media type, document) of the stored API: a dict for JSON formats, text for the others."""
    row = await E.get(conn, store, "api", "", api_name)
    if row is None:
        raise ArmError(404, "ResourceNotFound", f"Api '{api_name}' was not found.")
    if row.data.get("type") == "odata":
        # Its definition is the service's metadata, kept as the API's OData schema; API Management
        # exports no Swagger, OpenAPI, WSDL or WADL for it.
        raise invalid_field(
            "format",
            f"an OData API cannot be exported as '{doc_format}'; its definition is its OData schema "
            f"(GET apis/{api_name}/schemas)",
        )
    parent = f"apis/{api_name}"
    ops = await E.list_children(conn, store, "operation", parent)
    schemas = await E.list_children(conn, store, "schema", parent)
    media = DOCUMENTS[doc_format]
    if doc_format == "wsdl":
        wsdl = next((s for s in schemas if s.data.get("contentType") == WSDL_CONTENT_TYPE), None)
        if wsdl is None or row.data.get("type") != "soap":
            raise invalid_field("format", "WSDL export is available for SOAP APIs imported from a WSDL")
        return media, str((wsdl.data.get("document") or {}).get("value", ""))
    if doc_format in ("wadl", "wadl-xml"):
        return media, _wadl(row.data, ops)
    definitions: dict[str, Any] = {}
    for s in schemas:
        doc = s.data.get("document") or {}
        if s.data.get("contentType") == OAS3_SCHEMAS:
            definitions.update((doc.get("components") or {}).get("schemas") or {})
        elif s.data.get("contentType") == SWAGGER_SCHEMAS:
            definitions.update(doc.get("definitions") or {})
    if doc_format in ("swagger", "swagger-json"):
        return media, swagger_document(row.data, [(o.name, o.data) for o in ops], definitions)
    document = openapi_document(row.data, [(o.name, o.data) for o in ops], definitions)
    if doc_format == "openapi":
        return media, yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return media, document


def _split(url_template: str) -> tuple[str, list[str]]:
    path, _, query = url_template.partition("?")
    return path, [m.group(2) for m in _QUERY_TEMPLATE.finditer(query)]


def _info(api: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "title": api.get("displayName") or "API",
        "version": api.get("apiVersion") or "1.0",
    }
    if api.get("description"):
        info["description"] = api["description"]
    for src, dst in (("termsOfServiceUrl", "termsOfService"), ("contact", "contact"), ("license", "license")):
        if api.get(src):
            info[dst] = api[src]
    return info


def _param(p: dict[str, Any], where: str, *, v2: bool, required: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p["name"],
        "in": where,
        "required": bool(p.get("required") if required is None else required),
    }
    if p.get("description"):
        out["description"] = p["description"]
    schema: dict[str, Any] = {"type": p.get("type") or "string"}
    if p.get("typeName"):
        schema = {"$ref": ("#/definitions/" if v2 else "#/components/schemas/") + p["typeName"]}
    if p.get("values"):
        schema["enum"] = p["values"]
    if p.get("defaultValue") is not None:
        schema["default"] = p["defaultValue"]
    if v2:
        out.update(schema)
    else:
        out["schema"] = schema
        ex = (p.get("examples") or {}).get("default")
        if isinstance(ex, dict) and "value" in ex:
            out["example"] = ex["value"]
    return out


def _parameters(op: dict[str, Any], *, v2: bool) -> list[dict[str, Any]]:
    _, query_names = _split(op["urlTemplate"])
    params: list[dict[str, Any]] = []
    for p in op.get("templateParameters") or []:
        in_query = p["name"] in query_names
        params.append(_param(p, "query" if in_query else "path", v2=v2, required=True))
    request = op.get("request") or {}
    params += [_param(p, "query", v2=v2) for p in request.get("queryParameters") or []]
    params += [_param(p, "header", v2=v2) for p in request.get("headers") or []]
    return params


def _responses(op: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key in the definition's responses, response): by status code, then `default` and ranges
    (2XX) kept from an import (`otherResponses`)."""
    out = [(str(r["statusCode"]), r) for r in op.get("responses") or []]
    return out + [(str(r["status"]), r) for r in op.get("otherResponses") or []]


def _media(rep: dict[str, Any], prefix: str) -> dict[str, Any]:
    media: dict[str, Any] = {}
    if rep.get("typeName"):
        media["schema"] = {"$ref": prefix + rep["typeName"]}
    examples = rep.get("examples") or {}
    if (
        list(examples) == ["default"]
        and isinstance(examples["default"], dict)
        and "value" in examples["default"]
    ):
        media["example"] = examples["default"]["value"]
    elif examples:
        media["examples"] = examples
    return media


def openapi_document(
    api: dict[str, Any], ops: list[tuple[str, dict[str, Any]]], definitions: dict[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"openapi": "3.0.1", "info": _info(api)}
    if api.get("serviceUrl"):
        doc["servers"] = [{"url": api["serviceUrl"]}]
    paths: dict[str, Any] = {}
    prefix = "#/components/schemas/"
    for name, op in ops:
        path, _ = _split(op["urlTemplate"])
        entry: dict[str, Any] = {"summary": op.get("displayName"), "operationId": name}
        if op.get("description"):
            entry["description"] = op["description"]
        entry["parameters"] = _parameters(op, v2=False)
        reps = (op.get("request") or {}).get("representations") or []
        if reps:
            entry["requestBody"] = {"content": {r["contentType"]: _media(r, prefix) for r in reps}}
        responses: dict[str, Any] = {}
        for key, resp in _responses(op):
            item: dict[str, Any] = {"description": resp.get("description") or ""}
            if resp.get("representations"):
                item["content"] = {r["contentType"]: _media(r, prefix) for r in resp["representations"]}
            if resp.get("headers"):
                item["headers"] = {
                    h["name"]: {"schema": {"type": h.get("type") or "string"}} for h in resp["headers"]
                }
            responses[key] = item
        entry["responses"] = responses or {"default": {"description": ""}}
        paths.setdefault(path, {})[op["method"].lower()] = entry
    doc["paths"] = paths
    if definitions:
        doc["components"] = {"schemas": definitions}
    return doc


def swagger_document(
    api: dict[str, Any], ops: list[tuple[str, dict[str, Any]]], definitions: dict[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"swagger": "2.0", "info": _info(api)}
    if api.get("serviceUrl"):
        parts = urlsplit(api["serviceUrl"])
        doc.update(host=parts.netloc, basePath=parts.path or "/", schemes=[parts.scheme])
    paths: dict[str, Any] = {}
    prefix = "#/definitions/"
    for name, op in ops:
        path, _ = _split(op["urlTemplate"])
        entry: dict[str, Any] = {"summary": op.get("displayName"), "operationId": name}
        if op.get("description"):
            entry["description"] = op["description"]
        params = _parameters(op, v2=True)
        reps = (op.get("request") or {}).get("representations") or []
        if reps:
            entry["consumes"] = [r["contentType"] for r in reps]
            body: dict[str, Any] = {"name": "body", "in": "body"}
            body["schema"] = {"$ref": prefix + reps[0]["typeName"]} if reps[0].get("typeName") else {}
            params.append(body)
        entry["parameters"] = params
        responses: dict[str, Any] = {}
        produces: list[str] = []
        for key, resp in _responses(op):
            item: dict[str, Any] = {"description": resp.get("description") or ""}
            for r in resp.get("representations") or []:
                produces.append(r["contentType"])
                if r.get("typeName"):
                    item["schema"] = {"$ref": prefix + r["typeName"]}
            responses[key] = item
        if produces:
            entry["produces"] = sorted(set(produces))
        entry["responses"] = responses or {"default": {"description": ""}}
        paths.setdefault(path, {})[op["method"].lower()] = entry
    doc["paths"] = paths
    if definitions:
        doc["definitions"] = definitions
    return doc


def _wadl(api: dict[str, Any], ops: list[E.Row]) -> str:
    app = Element("application", {"xmlns": WADL_NS})
    doc = SubElement(app, "doc", {"title": api.get("displayName") or "API"})
    doc.text = api.get("description") or ""
    resources = SubElement(app, "resources", {"base": api.get("serviceUrl") or ""})
    for row in ops:
        op = row.data
        path, query_names = _split(op["urlTemplate"])
        res = SubElement(resources, "resource", {"path": path})
        method = SubElement(res, "method", {"name": op["method"], "id": row.name})
        SubElement(method, "doc", {"title": op.get("displayName") or row.name})
        request = SubElement(method, "request")
        for p in op.get("templateParameters") or []:
            style = "query" if p["name"] in query_names else "template"
            SubElement(
                request,
                "param",
                {"name": p["name"], "style": style, "type": p.get("type") or "string", "required": "true"},
            )
        req = op.get("request") or {}
        for style, key in (("query", "queryParameters"), ("header", "headers")):
            for p in req.get(key) or []:
                attrs = {"name": p["name"], "style": style, "type": p.get("type") or "string"}
                attrs["required"] = "true" if p.get("required") else "false"
                SubElement(request, "param", attrs)
        for r in req.get("representations") or []:
            SubElement(request, "representation", {"mediaType": r["contentType"]})
        for resp in op.get("responses") or []:
            el = SubElement(method, "response", {"status": str(resp["statusCode"])})
            for r in resp.get("representations") or []:
                SubElement(el, "representation", {"mediaType": r["contentType"]})
    return '<?xml version="1.0" encoding="utf-8"?>\n' + tostring(app, encoding="unicode")


def as_text(document: str | dict[str, Any]) -> bytes:
    return (
        document.encode() if isinstance(document, str) else orjson.dumps(document, option=orjson.OPT_INDENT_2)
    )
