"""Backup and restore of a service (`POST .../backup|restore`, answered 202 with polling headers),
and the Portico extensions beside them: `listBackups`, `verifyBackup`, `restorePreview` (POST, the
same body; authorised as backup — the preview as restore — of that service)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portico.arm.call import Call
from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.dr import catalog
from portico.dr.access import BackupRequest, parse_request
from portico.dr.operations import start
from portico.server.routes.operations import poll_headers
from portico.store import services as S


def started_by(call: Call) -> dict[str, str] | None:
    """Who starts an operation, as recorded in its status: a person by sign-in name, an app by id."""
    p = call.principal
    if p is None:
        return None
    if p.claims.get("idtyp") == "user":
        name = p.claims.get("upn") or p.claims.get("preferred_username") or p.principal_id
        return {"principalId": p.principal_id, "name": str(name), "type": "User"}
    return {
        "principalId": p.principal_id,
        "name": str(p.claims.get("appid") or p.principal_id),
        "type": "ServicePrincipal",
    }


async def _start(call: Call, kind: str) -> Response:
    if call.method != "POST":
        raise ArmError(405, "MethodNotAllowed", f"Use POST to {kind} a service.")
    await call.authorize_service(f"Microsoft.ApiManagement/service/{kind}/action")
    req = parse_request(await call.body(), call.api_version, call.rt.settings)
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
    op = await start(call.rt, svc, kind, req, started_by(call))
    return empty(202, poll_headers(call, svc.arm_id, op.id))


async def backup(call: Call) -> Response:
    return await _start(call, "backup")


async def restore(call: Call) -> Response:
    return await _start(call, "restore")


async def _catalog_request(call: Call, action: str, verb: str) -> tuple[Any, BackupRequest, S.Service]:
    if call.method != "POST":
        raise ArmError(405, "MethodNotAllowed", f"Use POST for {action.lower()}.")
    await call.authorize_service(f"Microsoft.ApiManagement/service/{verb}/action")
    body = await call.body()
    req = parse_request(body, call.api_version, call.rt.settings, need_name=action != "listBackups")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
    return body, req, svc


async def list_backups(call: Call) -> Response:
    body, req, _ = await _catalog_request(call, "listBackups", "backup")
    prefix = body.get("prefix") or "" if isinstance(body, dict) else ""
    return json_response({"value": await catalog.list_backups(call.rt.settings, req, str(prefix))})


async def verify_backup(call: Call) -> Response:
    _, req, _ = await _catalog_request(call, "verifyBackup", "backup")
    return json_response(await catalog.verify(call.rt.settings, req))


async def restore_preview(call: Call) -> Response:
    _, req, svc = await _catalog_request(call, "restorePreview", "restore")
    return json_response(await catalog.preview(call.rt.db, call.rt.settings, req, svc))
