"""Creating or replacing an API from a definition (`format` + `value` on PUT /apis/{id}).

Three steps, so that nothing is written unless the whole definition imports: the request is read
(`read_request`), the definition fetched and parsed outside any transaction (`load`), and then the
API, its operations and its schemas are written in the caller's write transaction (`apply`).
Re-importing over an API keeps the operations whose names match (and their policies and tags)
and deletes the others, as Azure does.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import invalid_field
from portico.resources import kinds as K
from portico.resources import models as m
from portico.resources.engine import EntityEngine, Result
from portico.resources.importers import (
    LINK_FORMATS,
    SUPPORTED_FORMATS,
    Imported,
    ImportFailed,
    Options,
    parse,
)
from portico.resources.importers.fetch import FetchLimits, fetch_text
from portico.resources.importers.graphql import INTROSPECTION_QUERY
from portico.resources.importers.parse import REFUSED_FORMATS
from portico.resources.policy_xml import check_policy_document
from portico.store import entities as E
from portico.store.services import Service

log = logging.getLogger(__name__)

# Request fields that steer the import and are not properties of the API.
IMPORT_FIELDS = ("format", "value", "wsdlSelector", "translateRequiredQueryParameters")


@dataclass
class ImportRequest:
    fmt: str
    value: str
    props: dict[str, Any]  # the API's own properties from the request
    options: Options = field(default_factory=Options)


def wants_import(body: Any) -> bool:
    props = body.get("properties") if isinstance(body, dict) else None
    return isinstance(props, dict) and ("format" in props or "value" in props)


def read_request(body: dict[str, Any]) -> ImportRequest:
    props = dict(body["properties"])
    fmt = props.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise invalid_field("properties.format", "is required with properties.value (e.g. 'openapi+json')")
    fmt = fmt.lower()
    if fmt in REFUSED_FORMATS:
        raise invalid_field(
            "properties.format",
            f"import of '{fmt}' definitions is not supported by this server (gRPC needs HTTP/2, "
            "which its gateway does not speak)",
        )
    if fmt not in SUPPORTED_FORMATS:
        raise invalid_field(
            "properties.format",
            f"'{fmt[:40]}' is not a known format; use one of {', '.join(sorted(SUPPORTED_FORMATS))}",
        )
    value = props.get("value")
    if isinstance(value, dict | list) and fmt in ("openapi+json", "swagger-json"):
        value = orjson.dumps(value).decode()
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(
            "properties.value", f"the {'URL' if fmt in LINK_FORMATS else 'definition'} is required"
        )
    translate: Literal["template", "query"] = "template"
    raw_translate = props.get("translateRequiredQueryParameters") or "template"
    if raw_translate == "query":
        translate = "query"
    elif raw_translate != "template":
        raise invalid_field("properties.translateRequiredQueryParameters", "must be 'template' or 'query'")
    selector = props.get("wsdlSelector") or {}
    if not isinstance(selector, dict):
        raise invalid_field("properties.wsdlSelector", "must be an object")
    api_type = props.get("apiType") or props.get("type")
    if str(api_type or "").lower() == "websocket":
        raise invalid_field(
            "properties.apiType",
            "a WebSocket API is not imported from a definition: create it with a ws:// or wss:// serviceUrl",
        )
    if fmt == "graphql-link" and api_type not in (None, "graphql"):
        raise invalid_field("properties.apiType", "a graphql-link import creates a 'graphql' API")
    if fmt in ("odata", "odata-link") and api_type not in (None, "odata"):
        raise invalid_field("properties.apiType", f"an {fmt} import creates an 'odata' API")
    if fmt == "odata" and not (isinstance(props.get("serviceUrl"), str) and props["serviceUrl"].strip()):
        raise invalid_field(
            "properties.serviceUrl",
            "is required with format 'odata' (the OData service root the metadata describes); "
            "'odata-link' takes it from the link",
        )
    if fmt in ("wsdl", "wsdl-link") and api_type is None:
        raise invalid_field(
            "properties.apiType",
            "WSDL import needs 'soap' (a SOAP pass-through API) or 'http' (SOAP-to-REST: a REST API)",
        )
    options = Options(
        translate_required_query=translate,
        api_type=api_type,
        wsdl_service=selector.get("wsdlServiceName"),
        wsdl_endpoint=selector.get("wsdlEndpointName"),
    )
    for f in IMPORT_FIELDS:
        props.pop(f, None)
    return ImportRequest(fmt, value, props, options)


async def load(req: ImportRequest, limits: FetchLimits) -> Imported:
    """The definition, fetched when it is a link and parsed (in a worker thread: a large document
    takes a while and must not stall other requests)."""
    text, link = req.value, None
    opts = req.options
    if req.fmt in LINK_FORMATS:
        link = req.value.strip()
        body = {"query": INTROSPECTION_QUERY} if req.fmt == "graphql-link" else None
        text, final = await fetch_text(link, limits, json_body=body)
        opts = replace(opts, source_url=final)
    return await asyncio.to_thread(parse_checked, req.fmt, text, opts, link)


def parse_checked(fmt: str, text: str, opts: Options, link: str | None) -> Imported:
    try:
        imported = parse(fmt, text, opts, link=link)
    except RecursionError:
        raise ImportFailed("the document is nested too deeply") from None
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
        # A shape the importer did not foresee is still bad input, not a server error; where it
        # failed is logged (never the document: it may hold anything).
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        log.warning(
            "%s import: unexpected %s at %s:%s", fmt, type(exc).__name__, frame.filename, frame.lineno
        )
        raise ImportFailed(f"the document's structure is not a valid '{fmt}' definition") from None
    checked: list[tuple[str, dict[str, Any]]] = []
    for name, props in imported.operations:
        try:
            op = m.OperationProps.model_validate(props)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ImportFailed(f"operation '{name}' cannot be stored: {loc}: {err['msg']}") from None
        checked.append((name, op.model_dump(exclude_none=True)))
    imported.operations = checked
    return imported


async def apply(
    conn: AsyncConnection,
    svc: Service,
    target: K.Target,
    req: ImportRequest,
    imported: Imported,
    if_match: str | None,
) -> Result:
    """Writes the API (request properties over what the definition says), then its operations
    and schemas, in the caller's transaction."""
    props = {**imported.api, **{k: v for k, v in req.props.items() if v is not None}}
    if imported.api.get("type"):
        props["type"] = imported.api["type"]
        props.pop("apiType", None)
    engine = EntityEngine(conn, svc)
    result = await engine.put(target, {"properties": props}, if_match)
    assert result.body is not None
    api_name = result.body["name"]
    api_path = f"{target.kind.segment}/{api_name}"
    store = svc.active_store_id
    await _replace(conn, store, "operation", api_path, imported.operations, keep_subtrees=True)
    await _replace(conn, store, "schema", api_path, imported.schemas, keep_subtrees=False)
    if imported.policies:  # SOAP-to-REST: each operation's translation
        stored = {r.name.lower(): r.name for r in await E.list_children(conn, store, "operation", api_path)}
        for op_name, xml in imported.policies:
            check_policy_document(xml, resolver=False)
            parent = f"{api_path}/operations/{stored.get(op_name.lower(), op_name)}"
            data = {"value": xml, "format": "xml"}
            if [r.data for r in await E.list_children(conn, store, "policy", parent)] != [data]:
                await E.put(conn, store, "policy", parent, "policy", None, data)  # unchanged: ETag kept
    return result


async def _replace(
    conn: AsyncConnection,
    store: int,
    kind: str,
    parent: str,
    items: list[tuple[str, dict[str, Any]]],
    *,
    keep_subtrees: bool,
) -> None:
    existing = {r.name.lower(): r for r in await E.list_children(conn, store, kind, parent)}
    wanted = {name.lower() for name, _ in items}
    if keep_subtrees:
        await _inherit_subtrees(conn, store, parent, existing, items)
    for low, row in existing.items():
        if low not in wanted:
            await E.remove_subtree(conn, store, f"{parent}/{_segment(kind)}/{row.name}")
            await E.remove(conn, store, kind, parent, row.name)
    rows: list[tuple[str, str | None, dict[str, Any]]] = []
    for name, data in items:
        # Same name in another case: the stored one is replaced (ARM names ignore case).
        stored = existing.get(name.lower())
        if stored is not None and stored.data == data:
            continue  # unchanged: a re-import of the same definition rewrites nothing (ETag kept)
        if not keep_subtrees and stored is not None:
            await E.remove_subtree(conn, store, f"{parent}/{_segment(kind)}/{stored.name}")
        display = data.get("displayName") if isinstance(data.get("displayName"), str) else None
        rows.append((stored.name if stored else name, display, data))
    await E.put_many(conn, store, kind, parent, rows, {r.name for r in existing.values()})


async def _inherit_subtrees(
    conn: AsyncConnection,
    store: int,
    parent: str,
    existing: dict[str, E.Row],
    items: list[tuple[str, dict[str, Any]]],
) -> None:
    """A new operation takes the policies and tags of an operation that goes away with the same
    method and URL template (its operationId was renamed), as Azure's import does."""
    leaving = {
        (str(r.data.get("method", "")).upper(), r.data.get("urlTemplate")): r.name
        for low, r in existing.items()
        if low not in {n.lower() for n, _ in items}
    }
    if not leaving:
        return
    for name, data in items:
        old = leaving.pop((str(data.get("method", "")).upper(), data.get("urlTemplate")), None)
        if old is None or name.lower() in existing:
            continue
        src, dst = f"{parent}/operations/{old}", f"{parent}/operations/{name}"
        for row in await E.list_subtree(conn, store, src):
            await E.put(
                conn, store, row.kind, dst + row.parent[len(src) :], row.name, row.display_name, row.data
            )


def _segment(kind: str) -> str:
    return {"operation": "operations", "schema": "schemas"}[kind]


def fetch_limits(timeout: float, max_bytes: int, allow_private: bool) -> FetchLimits:
    return FetchLimits(timeout=timeout, max_bytes=max_bytes, allow_private_networks=allow_private)
