"""HTTP side of long-running operations: POST backup/restore → 202 + Location; polling endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Response

from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.jobs import store as J
from portico.store import services as S

if TYPE_CHECKING:
    from portico.arm.call import Call


def _iso(ts: Any) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def _links(call: Call, svc_path: str, op_id: str) -> dict[str, str]:
    base = call.base_url() + svc_path
    v = call.api_version
    return {
        "Location": f"{base}/operationresults/{op_id}?api-version={v}",
        "Azure-AsyncOperation": f"{base}/operationstatuses/{op_id}?api-version={v}",
        "Retry-After": "1",
    }


async def start_backup_restore(call: Call, sub: str, rg: str, name: str, kind: str) -> Response:
    from portico.dr.access import check_identity, parse_request
    from portico.dr.operations import begin

    if call.method != "POST":
        raise ArmError(405, "MethodNotAllowed", f"Use POST to {kind} a service.")
    svc_path = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"
    await call.authorize(f"Microsoft.ApiManagement/service/{kind}/action", svc_path)
    body = await call.body()
    req = parse_request(body, call.api_version, call.rt.settings)
    async with call.rt.db.read() as conn:
        svc = await S.get_service(conn, sub, rg, name)
    if svc is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.ApiManagement/service/{name}' under resource group '{rg}' was not found.",
        )
    if svc.sku_name in ("Consumption", "BasicV2", "StandardV2"):
        raise ArmError(
            400,
            "MethodNotAllowedInPricingTier",
            f"{kind.capitalize()} is not supported in the {svc.sku_name} tier; it is available in the Developer, Basic, Standard and Premium tiers.",
        )
    check_identity(req, svc.identity, svc.name)
    op = await begin(call.rt, svc, kind, req, started_by(call))
    return empty(202, _links(call, svc.arm_id, op.id))


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


async def operation_result(
    call: Call, sub: str, rg: str, name: str, op_id: str, *, status_resource: bool
) -> Response:
    if call.method != "GET":
        raise ArmError(405, "MethodNotAllowed", "Use GET to read an operation.")
    svc_scope = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"
    await call.authorize("Microsoft.ApiManagement/service/operationresults/read", svc_scope)
    async with call.rt.db.read() as conn:
        op = await J.get(conn, op_id[:64])
        svc = await S.get_service_by_id(conn, op.service_id) if op else None
    if op is None or op.service_path.lower() != svc_scope.lower():
        raise ArmError(
            404, "ResourceNotFound", f"Operation '{op_id[:64]}' was not found for service '{name}'."
        )
    if status_resource:
        return json_response(render_status(op))
    if op.status == J.IN_PROGRESS:
        return empty(202, _links(call, svc_scope, op.id))
    if op.status == J.FAILED:
        # 4xx, never 5xx: azure-core retries 5xx, and the failure is final.
        code = op.error_code or f"{op.kind.capitalize()}Failed"
        return json_response(
            {"error": {"code": code, "message": op.error_message or "The operation failed.", "details": []}},
            400,
        )
    if svc is None:
        return empty(204)
    from portico.resources.service import render_service

    return json_response(render_service(svc, call.rt.settings.gateway_domain))


def render_status(op: J.Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"{op.service_path}/operationstatuses/{op.id}",
        "name": op.id,
        "status": op.status,
        "percentComplete": op.percent,
        "startTime": _iso(op.started_at),
        "endTime": _iso(op.ended_at),
        "properties": {
            "operation": op.kind,
            "phase": op.phase,
            "counters": op.counters,
            "bytes": op.bytes,
            **op.params,
        },
    }
    if op.status == J.FAILED:
        out["error"] = {
            "code": op.error_code or f"{op.kind.capitalize()}Failed",
            "message": op.error_message or "The operation failed.",
        }
    return out
