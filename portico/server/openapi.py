"""An OpenAPI 3.1 document of the management API, generated from the route table and the entity kinds.

Served at `GET /openapi.json` (no token needed: it describes, it holds no data). Entity paths come
from the kinds tree (`portico/resources/kinds.py`) with each kind's pydantic model as the request
body, so a new kind is described as soon as it exists; the other routes are described from their
URL templates, with the api-versions their family speaks.
"""

from __future__ import annotations

import re
from typing import Any

from portico.arm.versions import ApiVersions
from portico.resources import kinds as K
from portico.server.routes import entities
from portico.server.routes.table import RouteTable

_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_ERRORS = {
    "default": {"description": "ARM error", "content": {"application/json": {"schema": _ERROR}}},
}
_ENTITY_VERBS = ("get", "put", "patch", "delete", "head")


def _param(
    name: str, where: str = "path", schema: dict[str, Any] | None = None, required: bool = True
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema or {"type": "string", "minLength": 1},
    }


def _api_version(versions: ApiVersions) -> dict[str, Any]:
    return _param("api-version", "query", {"type": "string", "enum": list(versions.listed)})


def _responses(codes: tuple[str, ...], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = dict(_ERRORS)
    for code in codes:
        out[code] = {"description": "OK"}
        if schema is not None and code in ("200", "201"):
            out[code]["content"] = {"application/json": {"schema": schema}}
    return out


def _op_id(path: str, verb: str) -> str:
    return verb + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def build_document(table: RouteTable, base_url: str) -> dict[str, Any]:
    components: dict[str, Any] = {
        "ErrorResponse": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "target": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object"}},
                    },
                    "required": ["code", "message"],
                }
            },
            "required": ["error"],
        }
    }
    paths: dict[str, Any] = {}
    for route in table.routes:
        params = [p for p in route.template.split("/") if p.startswith("{")]
        if route.handler is entities.entity:
            prefix = "/" + route.template.rsplit("/", 1)[0]
            base_params = [_param(p.strip("{}")) for p in params if not p.endswith("*}")]
            _entity_paths(paths, components, prefix, base_params, route.versions, K.TOP_LEVEL)
            continue
        path = "/" + route.template.replace("*}", "}")  # a rest-of-path parameter, as one segment
        item: dict[str, Any] = {}
        for verb in sorted(m.lower() for m in route.methods):
            if verb == "head" and "GET" not in route.methods:
                continue
            op: dict[str, Any] = {
                "operationId": _op_id(path, verb),
                "parameters": [_param(p.strip("{}*")) for p in params] + [_api_version(route.versions)],
                "responses": _responses(("200", "201", "202", "204")),
            }
            if not route.authenticated:
                op["security"] = []
            if verb in ("put", "patch", "post"):
                op["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            item[verb] = op
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Portico management API",
            "version": "2024-05-01",
            "description": "Azure Resource Manager dialect of Azure API Management, as Portico serves it.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _model_ref(components: dict[str, Any], kind: K.Kind) -> dict[str, Any]:
    name = kind.model.__name__
    if name not in components:
        schema = kind.model.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            components.setdefault(def_name, definition)
        components[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def _entity_paths(
    paths: dict[str, Any],
    components: dict[str, Any],
    prefix: str,
    params: list[dict[str, Any]],
    versions: ApiVersions,
    table: dict[str, K.Kind],
) -> None:
    for kind in table.values():
        collection = f"{prefix}/{kind.segment}"
        taken = {str(p["name"]) for p in params}
        id_param = f"{kind.kind}Name" if f"{kind.kind}Name" not in taken else f"{kind.kind}Name{len(taken)}"
        item_path = (
            f"{collection}/{{{id_param}}}" if kind.fixed_name is None else f"{collection}/{kind.fixed_name}"
        )
        item_params = (
            [*params, _param(id_param, schema={"type": "string", "minLength": 1, "maxLength": kind.id_max})]
            if kind.fixed_name is None
            else list(params)
        )
        props = _model_ref(components, kind)
        resource = {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "type": {"type": "string"},
                "properties": props,
            },
        }
        body = {"type": "object", "properties": {"properties": props}}
        version = _api_version(versions)
        paths[collection] = {
            "get": {
                "operationId": _op_id(collection, "list"),
                "parameters": [
                    *params,
                    version,
                    _param("$filter", "query", required=False),
                    _param("$top", "query", {"type": "integer", "minimum": 1}, required=False),
                    _param("$skip", "query", {"type": "integer", "minimum": 0}, required=False),
                ],
                "responses": _responses(
                    ("200",),
                    {
                        "type": "object",
                        "properties": {
                            "value": {"type": "array", "items": resource},
                            "nextLink": {"type": "string"},
                        },
                    },
                ),
            }
        }
        item: dict[str, Any] = {}
        if_match = _param("If-Match", "header", required=False)
        for verb in _ENTITY_VERBS:
            op: dict[str, Any] = {
                "operationId": _op_id(item_path, verb),
                "parameters": [*item_params, version],
            }
            if verb in ("put", "patch"):
                op["parameters"].append(if_match)
                op["requestBody"] = {
                    "required": not kind.link_target,
                    "content": {"application/json": {"schema": body}},
                }
                op["responses"] = _responses(("200", "201"), resource)
            elif verb == "delete":
                op["parameters"].append(if_match)
                op["responses"] = _responses(("200", "202", "204"))
            else:
                op["responses"] = _responses(
                    ("200", "204") if verb == "head" else ("200",), resource if verb == "get" else None
                )
            item[verb] = op
        paths[item_path] = item
        for k, action in sorted(K.ACTIONS):
            if k == kind.kind:
                action_path = f"{item_path}/{action}"
                paths[action_path] = {
                    "post": {
                        "operationId": _op_id(action_path, "post"),
                        "parameters": [*item_params, version],
                        "responses": _responses(("200", "204")),
                    }
                }
        if kind.children and kind.fixed_name is None and not kind.link_target:
            _entity_paths(paths, components, item_path, item_params, versions, kind.children)
