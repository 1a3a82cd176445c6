"""PUT /apis/{id} with a definition (`format` + `value`): import; GET /apis/{id}?export=true:
export; and the signed export link. Every other request on an API goes to the entity handler."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portico.arm.call import Call
from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.resources import api_import, export_links, revisions
from portico.resources import kinds as K
from portico.resources.api_export import DOCUMENTS, RESULT_FORMAT, as_text, document_format, export
from portico.resources.engine import EntityEngine, quote_etag
from portico.resources.importers.fetch import FetchLimits
from portico.server.routes.entities import entity
from portico.store import entities as E

READ = "Microsoft.ApiManagement/service/apis/read"
WRITE = "Microsoft.ApiManagement/service/apis/write"


async def api(call: Call) -> Response:
    api_id = call.params["apiId"]
    call.params["path"] = f"apis/{api_id}"
    base, rev = revisions.split(api_id)
    if call.method == "PUT":
        body = await call.body()
        if rev is not None and await _names_the_api_itself(call, base, rev, body):
            call.params["apiId"] = base
            call.params["path"] = f"apis/{base}"
            rev = None
        if api_import.wants_import(body):
            return await _import(call, body)
        if rev is not None:
            return await _put_revision(call, base, rev, body)
    elif call.method == "GET" and call.query().get("export", "").lower() == "true":
        return await _export(call)
    elif call.method in ("GET", "HEAD", "PATCH") and rev is not None:
        # `echo;rev=N` of the current revision N is the API `echo` itself.
        await call.authorize_service(READ if call.method != "PATCH" else WRITE)
        async with call.rt.db.read() as conn:
            svc = await call.service(conn)
            row = await E.get(conn, svc.active_store_id, "api", "", base)
        if row is not None and str(row.data.get("apiRevision", "1")) == rev:
            call.params["path"] = f"apis/{base}"
    return await entity(call)


async def _names_the_api_itself(call: Call, base: str, rev: str, body: Any) -> bool:
    """Whether a PUT of `base;rev=N` writes the API `base` itself: N is its current revision, or
    there is no API `base` yet (a first import with a revision number, as `az apim api import
    --api-revision` sends), which then starts at revision N."""
    await call.authorize_service(WRITE)
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        name = await E.find_name(conn, svc.active_store_id, "api", "", base)
        row = await E.get(conn, svc.active_store_id, "api", "", name) if name is not None else None
    if row is not None and str(row.data.get("apiRevision", "1")) != rev:
        return False
    props = body.get("properties") if isinstance(body, dict) else None
    if isinstance(props, dict):
        props.setdefault("apiRevision", rev)
    return True


async def _put_revision(call: Call, base: str, rev: str, body: Any) -> Response:
    await call.authorize_service(WRITE)
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ArmError(
            400, "InvalidRequestContent", "The request body must be a JSON object with properties."
        )
    async with call.rt.db.write() as conn:
        svc = await call.service(conn, lock=True)
        engine = EntityEngine(conn, svc)
        engine.check_writable()
        stored_base = await _stored_name(call, conn, svc.active_store_id, base)
        name, created = await revisions.create(conn, svc.active_store_id, stored_base, rev, props)
        target = K.resolve(["apis", name])
        assert target is not None
        res = await engine.get(target)
    return json_response(res.body, 201 if created else 200, headers={"ETag": quote_etag(res.etag or "")})


async def list_revisions(call: Call) -> Response:
    """GET /apis/{id}/revisions: every revision of the API, the current one included."""
    if call.method != "GET":
        raise ArmError(405, "MethodNotAllowed", f"The {call.method} method is not allowed on this resource.")
    await call.authorize_service(READ)
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        base = await _stored_name(call, conn, svc.active_store_id, revisions.split(call.params["apiId"])[0])
        items = await revisions.list_revisions(conn, svc.active_store_id, base)
    return json_response({"value": items, "count": len(items)})


async def _import(call: Call, body: dict[str, Any]) -> Response:
    await call.authorize_service(WRITE)
    target = K.resolve(["apis", call.params["apiId"]])
    assert target is not None
    req = api_import.read_request(body)
    s = call.rt.settings
    limits = FetchLimits(s.import_fetch_timeout, s.import_max_bytes, s.import_allow_private_networks)
    imported = await api_import.load(req, limits)
    base, rev = revisions.split(call.params["apiId"])
    async with call.rt.db.write() as conn:
        svc = await call.service(conn, lock=True)
        if rev is not None:
            # Importing into a revision: the revision exists (copied from the API) and stays
            # not current until released.
            stored_base = await _stored_name(call, conn, svc.active_store_id, base)
            name, _ = await revisions.create(conn, svc.active_store_id, stored_base, rev, req.props)
            target = K.resolve(["apis", name])
            assert target is not None
            req.props.update(isCurrent=False, apiRevision=rev)
        res = await api_import.apply(conn, svc, target, req, imported, call.request.headers.get("if-match"))
    return json_response(res.body, 201 if res.created else 200, headers={"ETag": quote_etag(res.etag or "")})


async def _stored_name(call: Call, conn: Any, store: int, requested: str | None = None) -> str:
    requested = requested or call.params["apiId"]
    name = await E.find_name(conn, store, "api", "", requested)
    if name is None:
        raise ArmError(404, "ResourceNotFound", f"Api '{requested[:256]}' was not found.")
    return name


async def _export(call: Call) -> Response:
    await call.authorize_service(READ)
    fmt, link = document_format(call.query().get("format"))
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        name = await _stored_name(call, conn, svc.active_store_id)
        _, document = await export(conn, svc.active_store_id, name, fmt)
    api_id = f"{call.service_scope}/apis/{name}"
    if not link:
        return _export_result(api_id, fmt, document)
    url = export_links.make_link(
        call.rt.scheduler.box.mac_key(export_links.PURPOSE),
        call.base_url(),
        call.service_scope,
        name,
        fmt,
        call.api_version,
        call.rt.settings.export_link_seconds,
    )
    return _export_result(api_id, RESULT_FORMAT[fmt], {"link": url})


def _export_result(api_id: str, fmt: str, value: Any) -> Response:
    """An export result in both shapes clients read: API Management answers `format` and `value`
    under `properties` (the Azure CLI reads the link there), while the published ApiExportResult
    model (the SDKs) has them at the top level."""
    result = {"format": fmt, "value": value}
    return json_response({"id": api_id, **result, "properties": result})


async def export_document(call: Call) -> Response:
    """The document behind an export link: no bearer token, the link's signature instead."""
    if call.method != "GET":
        raise ArmError(405, "MethodNotAllowed", f"The {call.method} method is not allowed on this resource.")
    q = call.query()
    fmt = q.get("format", "")
    export_links.check_link(
        call.rt.scheduler.box.mac_key(export_links.PURPOSE),
        call.service_scope,
        call.params["apiId"],
        fmt,
        q.get("se", ""),
        q.get("sig", ""),
    )
    if fmt not in DOCUMENTS:
        raise ArmError(403, "AuthenticationFailed", "The export link is invalid or has expired.")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        name = await _stored_name(call, conn, svc.active_store_id)
        media, document = await export(conn, svc.active_store_id, name, fmt)
    return Response(as_text(document), media_type=media)
