"""API Management services: list, name availability, create or update, read, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from portico.arm.call import Call, group_scope, method_not_allowed, service_missing, service_scope
from portico.arm.errors import ArmError, invalid_field
from portico.arm.http import empty, json_response
from portico.arm.versions import DELETED_SERVICES_SINCE
from portico.resources import kind_builtins
from portico.resources import kinds as K
from portico.resources.engine import quote_etag
from portico.resources.keyvault_hostnames import read_hostname_certificates
from portico.resources.service import check_service_name, render_service, validate_service
from portico.server.routes.deleted_services import restore_requested, undelete_if_asked
from portico.store import entities as E
from portico.store import services as S


def _render(call: Call, svc: S.Service) -> dict[str, Any]:
    return render_service(svc, call.rt.settings.gateway_domain)


async def list_in_subscription(call: Call) -> Response:
    return await _list_services(call, call.subscription_id, None)


async def list_in_group(call: Call) -> Response:
    return await _list_services(call, call.subscription_id, call.group_name)


async def _list_services(call: Call, sub: str, rg: str | None) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize(
        "Microsoft.ApiManagement/service/read", group_scope(sub, rg) if rg else f"/subscriptions/{sub}"
    )
    async with call.rt.db.read() as conn:
        if rg is not None and await S.get_group(conn, sub, rg) is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        items = await S.list_services(conn, sub, rg)
    return json_response({"value": [_render(call, s) for s in items]})


async def check_name(call: Call) -> Response:
    sub = call.subscription_id
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize("Microsoft.ApiManagement/checkNameAvailability/read", f"/subscriptions/{sub}")
    body = await call.body()
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise invalid_field("name", "is required")
    try:
        check_service_name(name)
    except ArmError as exc:
        return json_response({"nameAvailable": False, "reason": "Invalid", "message": exc.message})
    async with call.rt.db.read() as conn:
        taken = await S.name_taken(conn, name)
    if taken:
        return json_response(
            {"nameAvailable": False, "reason": "AlreadyExists", "message": f"{name} is already in use."}
        )
    return json_response({"nameAvailable": True, "reason": "Valid", "message": ""})


async def service(call: Call) -> Response:
    sub, rg, name = call.subscription_id, call.group_name, call.service_name
    scope = service_scope(sub, rg, name)
    db = call.rt.db
    if call.method in ("GET", "HEAD"):
        await call.authorize("Microsoft.ApiManagement/service/read", scope)
        async with db.read() as conn:
            svc = await S.get_service(conn, sub, rg, name)
        if svc is None:
            raise service_missing(name, rg)
        return json_response(_render(call, svc), headers={"ETag": quote_etag(svc.etag)})
    if call.method in ("PUT", "PATCH"):
        check_service_name(name)
        await call.authorize("Microsoft.ApiManagement/service/write", scope)
        body = await call.body()
        # certificates of custom hostnames held in Key Vault are read before the write transaction
        await read_hostname_certificates(call.rt.keyvault.access, body)
        async with db.write() as conn:
            if await S.get_group(conn, sub, rg) is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            existing = await S.get_service(conn, sub, rg, name, exclusive=True)
            if existing is None and call.method == "PATCH":
                raise service_missing(name, rg)
            if existing is None:
                restored = await undelete_if_asked(conn, body, sub, rg, name)
                if restored is not None:
                    return json_response(_render(call, restored), 201)
            elif restore_requested(body):
                raise invalid_field(
                    "properties.restore", f"applies to a soft-deleted service only; service '{name}' exists"
                )
            values = validate_service(
                body, api_version=call.api_version, existing=existing, patch=call.method == "PATCH"
            )
            if existing is None:
                if await S.name_taken(conn, name):
                    raise ArmError(
                        409, "ServiceNameNotAvailable", f"Service name '{name}' is already in use."
                    )
                try:
                    service_id = await S.create_service(
                        conn, subscription_id=sub, group=rg, name=name, values=values
                    )
                except IntegrityError:  # created by a concurrent request since name_taken (PostgreSQL)
                    raise ArmError(
                        409, "ServiceNameNotAvailable", f"Service name '{name}' is already in use."
                    ) from None
                svc = await S.get_service_by_id(conn, service_id)
                assert svc is not None
                await _create_builtins(conn, svc)
                return json_response(_render(call, svc), 201)
            _check_service_write_allowed(existing, values)
            await S.update_service(conn, existing.id, values)
            svc = await S.get_service_by_id(conn, existing.id)
        assert svc is not None
        return json_response(_render(call, svc), 200)
    if call.method == "DELETE":
        await call.authorize("Microsoft.ApiManagement/service/delete", scope)
        async with db.write() as conn:
            existing = await S.get_service(conn, sub, rg, name, exclusive=True)
            if existing is None:
                return empty(204)
            if existing.busy:
                raise ArmError(
                    409,
                    "ServiceBusy",
                    f"Service '{name}' is running a {existing.busy.split(':')[0]}; delete it when that completes.",
                )
            if call.api_version >= DELETED_SERVICES_SINCE:  # kept 48 hours, restorable, as ARM does
                await S.soft_delete_service(conn, existing)
            else:
                await S.delete_service(conn, existing.id)
        return empty(200)
    raise method_not_allowed(call.method)


def _check_service_write_allowed(existing: S.Service, values: dict[str, Any]) -> None:
    if not existing.busy:
        return
    op, op_id = existing.busy.split(":", 1)
    if op == "restore":
        raise ArmError(
            409,
            "ServiceRestoreInProgress",
            f"Service '{existing.name}' is being restored (operation {op_id}); changes are refused until it completes.",
        )
    changes_sku = "sku_name" in values and (values["sku_name"], values["sku_capacity"]) != (
        existing.sku_name,
        existing.sku_capacity,
    )
    old_hosts = existing.properties.get("hostnameConfigurations") or []
    new_hosts = values.get("properties", {}).get("hostnameConfigurations", old_hosts)
    if changes_sku or new_hosts != old_hosts:
        raise ArmError(
            409,
            "ServiceBackupInProgress",
            f"Service '{existing.name}' is being backed up (operation {op_id}); SKU and hostname changes are refused until it completes.",
        )


async def _create_builtins(conn: Any, svc: S.Service) -> None:
    for gid, (display, description) in K.BUILTIN_GROUPS.items():
        data = {"displayName": display, "description": description, "builtIn": True, "type": "system"}
        await E.put(conn, svc.active_store_id, "group", "", gid, display, data, exists=False)
    for kind, parent, name, builtin in kind_builtins.builtins():
        await E.put(conn, svc.active_store_id, kind, parent, name, None, builtin, exists=False)
