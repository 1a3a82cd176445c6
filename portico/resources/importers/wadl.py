"""WADL import: `resources/@base` → serviceUrl, one operation per method of each (nested) resource,
template/query/header parameters, request and response representations, grammars kept as the
API's schema."""

from __future__ import annotations

from xml.etree.ElementTree import Element, tostring

from portico.resources.importers.model import Imported, ImportFailed, clip
from portico.resources.importers.xml_util import child, children, local, qname_local

GRAMMARS_CONTENT_TYPE = "application/vnd.ms-azure-apim.wadl.grammars+xml"


def import_wadl(root: Element) -> Imported:
    if local(root.tag) != "application":
        raise ImportFailed(f"the root element is '{local(root.tag)[:80]}', not a WADL 'application'")
    out = Imported()
    resources_blocks = list(children(root, "resources"))
    if not resources_blocks:
        raise ImportFailed("the WADL defines no resources")
    base = resources_blocks[0].get("base")
    if base:
        out.api["serviceUrl"] = base.rstrip("/")
    doc = child(root, "doc")
    if doc is not None:
        if title := clip(doc.get("title"), 300):
            out.api["displayName"] = title
        if desc := clip("".join(doc.itertext()).strip(), 100_000):
            out.api["description"] = desc
    for block in resources_blocks:
        for res in children(block, "resource"):
            _resource(out, res, "", [])
    if not out.operations:
        raise ImportFailed("the WADL defines no methods (an API without operations)")
    grammars = child(root, "grammars")
    if grammars is not None and len(grammars):
        out.schemas.append(
            (
                "wadl-grammars",
                {
                    "contentType": GRAMMARS_CONTENT_TYPE,
                    "document": {"value": tostring(grammars, encoding="unicode")},
                },
            )
        )
    return out


def _resource(out: Imported, res: Element, prefix: str, inherited: list[Element]) -> None:
    path = f"{prefix.rstrip('/')}/{(res.get('path') or '').strip('/')}" if res.get("path") else prefix or "/"
    params = inherited + list(children(res, "param"))
    for method in children(res, "method"):
        _method(out, method, path or "/", params)
    for sub in children(res, "resource"):
        _resource(out, sub, path, params)


def _param(p: Element) -> dict[str, object]:
    out: dict[str, object] = {
        "name": p.get("name") or "",
        "type": qname_local(p.get("type")) or "string",
        "required": (p.get("required") or "false").lower() == "true",
        "values": [o.get("value") or "" for o in children(p, "option")],
    }
    if p.get("default") is not None:
        out["defaultValue"] = p.get("default")
    doc = child(p, "doc")
    if doc is not None and (d := clip("".join(doc.itertext()).strip(), 1000)):
        out["description"] = d
    return out


def _reps(el: Element | None) -> list[dict[str, object]]:
    if el is None:
        return []
    reps: list[dict[str, object]] = []
    for r in children(el, "representation"):
        rep: dict[str, object] = {"contentType": r.get("mediaType") or "application/xml"}
        if r.get("element"):
            rep["typeName"] = qname_local(r.get("element"))
        reps.append(rep)
    return reps


def _method(out: Imported, method: Element, path: str, inherited: list[Element]) -> None:
    verb = (method.get("name") or "").upper()
    if not verb.isalpha():
        raise ImportFailed(f"a method of resource '{path[:200]}' has no valid name")
    request = child(method, "request")
    params = inherited + (list(children(request, "param")) if request is not None else [])
    template = [_param(p) for p in params if p.get("style") == "template"]
    for t in template:
        t["required"] = True
    query = [_param(p) for p in params if p.get("style") == "query"]
    headers = [_param(p) for p in params if p.get("style") == "header"]
    responses: list[dict[str, object]] = []
    for resp in children(method, "response"):
        for status in (resp.get("status") or "200").split():
            if status.isdigit() and 100 <= int(status) <= 599:
                responses.append({"statusCode": int(status), "representations": _reps(resp)})
    name = method.get("id") or f"{verb}-{path}"
    doc = child(method, "doc")
    props: dict[str, object] = {
        "displayName": (
            (doc.get("title") if doc is not None else None) or method.get("id") or f"{verb} - {path}"
        )[:300],
        "method": verb,
        "urlTemplate": path,
        "templateParameters": template,
        "request": {"queryParameters": query, "headers": headers, "representations": _reps(request)},
        "responses": responses,
    }
    if doc is not None and (d := clip("".join(doc.itertext()).strip(), 1000)):
        props["description"] = d
    out.add_operation(name, props)
