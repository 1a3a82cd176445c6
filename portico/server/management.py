"""The management REST API: ARM paths under /subscriptions, dispatched case-insensitively as ARM does."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import IntegrityError

from portico.arm.errors import ArmError, invalid_field
from portico.arm.paging import next_link, parse_page
from portico.arm.versions import check_api_version
from portico.resources import kinds as K
from portico.resources.engine import EntityEngine, quote_etag
from portico.resources.service import check_location, check_service_name, render_service, validate_service
from portico.server.http import empty, json_response, read_json
from portico.server.runtime import Runtime
from portico.store import entities as E
from portico.store import services as S

PROVIDER = "microsoft.apimanagement"
_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")
_SUB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass
class Call:
    """One management request after protocol checks and authentication."""

    rt: Runtime
    request: Request
    api_version: str
    principal: Any
    segments: list[str]

    @property
    def method(self) -> str:
        return self.request.method

    def base_url(self) -> str:
        return self.rt.settings.resolved_public_url

    async def authorize(self, action: str, scope: str) -> None:
        from portico.identity.rbac import authorize

        await authorize(self.rt.db, self.principal, action, scope)

    async def body(self, required: bool = True) -> Any:
        return await read_json(self.request, self.rt.settings.max_request_bytes, required=required)

    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)


Handler = Callable[[Call], Awaitable[Response]]


def build_management_router(rt: Runtime) -> APIRouter:
    router = APIRouter()

    async def management(request: Request) -> Response:
        rest: str = request.path_params["rest"]
        segments = [s for s in rest.split("/") if s != ""]
        api_version = check_api_version(
            request.query_params.get("api-version"), resource_groups=_is_group_path(segments)
        )
        principal = await rt.validator.validate(request.headers.get("authorization"))
        call = Call(rt, request, api_version, principal, segments)
        return await dispatch(call)

    # A plain Starlette route: FastAPI's per-request parameter machinery is not needed here and
    # costs measurable CPU on every management call.
    router.add_route(
        "/subscriptions/{rest:path}", management, methods=["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD"]
    )
    return router


def _is_group_path(segments: list[str]) -> bool:
    """`/subscriptions/{s}/resourceGroups[/{rg}]`: Microsoft.Resources, with its own api-versions."""
    return 2 <= len(segments) <= 3 and segments[1].lower() == "resourcegroups"


def _method_not_allowed(call: Call) -> ArmError:
    return ArmError(405, "MethodNotAllowed", f"The {call.method} method is not allowed on this resource.")


async def dispatch(call: Call) -> Response:
    seg = call.segments
    low = [s.lower() for s in seg]
    if not seg or not _SUB_ID.match(seg[0]):
        raise ArmError(400, "InvalidSubscriptionId", "The subscription identifier is malformed.")
    sub = seg[0]
    if len(seg) >= 4 and low[1] == "providers" and low[2] == PROVIDER:
        if len(seg) == 4 and low[3] == "service":
            return await list_services(call, sub, None)
        if len(seg) == 4 and low[3] == "checknameavailability":
            return await check_name(call, sub)
        raise _no_route(call)
    if len(seg) >= 2 and low[1] == "resourcegroups":
        if len(seg) == 2:
            return await list_groups(call, sub)
        rg = seg[2]
        if len(seg) == 3:
            return await resource_group(call, sub, rg)
        if len(seg) >= 6 and low[3] == "providers" and low[4] == PROVIDER and low[5] == "service":
            if len(seg) == 6:
                return await list_services(call, sub, rg)
            name = seg[6]
            rest = seg[7:]
            if not rest:
                return await service(call, sub, rg, name)
            head = rest[0].lower()
            if len(rest) == 1 and head in ("backup", "restore"):
                from portico.jobs.api import start_backup_restore

                return await start_backup_restore(call, sub, rg, name, head)
            if len(rest) == 1 and head in ("listbackups", "verifybackup", "restorepreview"):
                from portico.dr.catalog import handle

                return await handle(call, sub, rg, name, head)
            # --- backup schedules and recovery-point status (issue 5; portico/dr/schedules.py) ---
            if head == "backupschedules" and len(rest) <= 3:
                from portico.dr.schedules import handle as handle_schedules

                return await handle_schedules(call, sub, rg, name, rest)
            if len(rest) == 1 and head == "backupstatus":
                from portico.dr.status import handle_status

                return await handle_status(call, sub, rg, name)
            # --- end issue 5 ---
            if len(rest) == 2 and head == "reports":
                from portico.analytics.reports import handle as handle_reports

                return await handle_reports(call, sub, rg, name, rest[1])
            if len(rest) == 2 and head in ("operationresults", "operationstatuses"):
                from portico.jobs.api import operation_result

                return await operation_result(
                    call, sub, rg, name, rest[1], status_resource=head == "operationstatuses"
                )
            return await entity(call, sub, rg, name, rest)
    raise _no_route(call)


def _no_route(call: Call) -> ArmError:
    path = "/subscriptions/" + "/".join(call.segments)
    return ArmError(404, "ResourceNotFound", f"No resource type matches '{path[:300]}'.")


def _rg_scope(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def _svc_scope(sub: str, rg: str, name: str) -> str:
    return f"{_rg_scope(sub, rg)}/providers/Microsoft.ApiManagement/service/{name}"


# --- resource groups ---------------------------------------------------------------------------------
def _render_group(g: S.ResourceGroup) -> dict[str, Any]:
    return {
        "id": _rg_scope(g.subscription_id, g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "tags": g.tags,
        "properties": {"provisioningState": "Succeeded"},
    }


async def list_groups(call: Call, sub: str) -> Response:
    if call.method != "GET":
        raise _method_not_allowed(call)
    await call.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", f"/subscriptions/{sub}")
    async with call.rt.db.read() as conn:
        groups = await S.list_groups(conn, sub)
    return json_response({"value": [_render_group(g) for g in groups]})


async def resource_group(call: Call, sub: str, rg: str) -> Response:
    if not _RG_NAME.match(rg) or rg.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroupName",
            f"Resource group name '{rg[:100]}' is invalid: 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'.",
        )
    scope = _rg_scope(sub, rg)
    db = call.rt.db
    if call.method in ("GET", "HEAD"):
        await call.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", scope)
        async with db.read() as conn:
            g = await S.get_group(conn, sub, rg)
        if g is None:
            if call.method == "HEAD":
                return empty(404)
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        return empty(204) if call.method == "HEAD" else json_response(_render_group(g))
    if call.method in ("PUT", "PATCH"):
        await call.authorize("Microsoft.Resources/subscriptions/resourceGroups/write", scope)
        body = await call.body()
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request body must be a JSON object.")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict):
            raise invalid_field("tags", "must be a map of strings")
        async with db.write() as conn:
            existing = await S.get_group(conn, sub, rg)
            location = check_location(body.get("location") or (existing.location if existing else None))
            created = await S.put_group(conn, sub, rg, location, {str(k): str(v) for k, v in tags.items()})
            g = await S.get_group(conn, sub, rg)
        assert g is not None
        return json_response(_render_group(g), 201 if created else 200)
    if call.method == "DELETE":
        await call.authorize("Microsoft.Resources/subscriptions/resourceGroups/delete", scope)
        async with db.write() as conn:
            for svc in await S.list_services(conn, sub, rg):
                if svc.busy:
                    raise ArmError(
                        409,
                        "ServiceBusy",
                        f"Service '{svc.name}' in this group is running {svc.busy.split(':')[0]}; try again when it completes.",
                    )
                await S.delete_service(conn, svc.id)
            deleted = await S.delete_group(conn, sub, rg)
        return empty(200 if deleted else 204)
    raise _method_not_allowed(call)


# --- services ------------------------------------------------------------------------------------------
def _render(call: Call, svc: S.Service) -> dict[str, Any]:
    return render_service(svc, call.rt.settings.gateway_domain)


async def list_services(call: Call, sub: str, rg: str | None) -> Response:
    if call.method != "GET":
        raise _method_not_allowed(call)
    await call.authorize(
        "Microsoft.ApiManagement/service/read", _rg_scope(sub, rg) if rg else f"/subscriptions/{sub}"
    )
    async with call.rt.db.read() as conn:
        if rg is not None and await S.get_group(conn, sub, rg) is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        items = await S.list_services(conn, sub, rg)
    return json_response({"value": [_render(call, s) for s in items]})


async def check_name(call: Call, sub: str) -> Response:
    if call.method != "POST":
        raise _method_not_allowed(call)
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


async def service(call: Call, sub: str, rg: str, name: str) -> Response:
    scope = _svc_scope(sub, rg, name)
    db = call.rt.db
    if call.method in ("GET", "HEAD"):
        await call.authorize("Microsoft.ApiManagement/service/read", scope)
        async with db.read() as conn:
            svc = await S.get_service(conn, sub, rg, name)
        if svc is None:
            raise _service_missing(name, rg)
        return json_response(_render(call, svc), headers={"ETag": quote_etag(svc.etag)})
    if call.method in ("PUT", "PATCH"):
        check_service_name(name)
        await call.authorize("Microsoft.ApiManagement/service/write", scope)
        body = await call.body()
        async with db.write() as conn:
            if await S.get_group(conn, sub, rg) is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            existing = await S.get_service(conn, sub, rg, name, exclusive=True)
            if existing is None and call.method == "PATCH":
                raise _service_missing(name, rg)
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
            await S.delete_service(conn, existing.id)
        return empty(200)
    raise _method_not_allowed(call)


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


def _service_missing(name: str, rg: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.ApiManagement/service/{name}' under resource group '{rg}' was not found.",
    )


# --- entities ------------------------------------------------------------------------------------------
async def entity(call: Call, sub: str, rg: str, name: str, rest: list[str]) -> Response:
    target = K.resolve(rest)
    if target is None:
        raise _no_route(call)
    scope = _svc_scope(sub, rg, name)
    noun = target.kind.rbac_noun
    method = call.method
    db = call.rt.db
    if_match = call.request.headers.get("if-match")

    if target.action is not None:
        if method != "POST":
            raise _method_not_allowed(call)
        action_names = {
            "listsecrets": "listSecrets",
            "listvalue": "listValue",
            "regenerateprimarykey": "regeneratePrimaryKey",
            "regeneratesecondarykey": "regenerateSecondaryKey",
        }
        await call.authorize(
            f"Microsoft.ApiManagement/service/{noun}/{action_names[target.action]}/action", scope
        )
        writes = target.action.startswith("regenerate")
        async with db.write() if writes else db.read() as conn:
            svc = await _get_svc(conn, sub, rg, name, lock=writes)
            res = await EntityEngine(conn, svc).action(target)
        headers = {"ETag": quote_etag(res.etag)} if res.etag else None
        return empty(204, headers) if res.body is None else json_response(res.body, headers=headers)

    if target.name is None:
        if method != "GET":
            raise _method_not_allowed(call)
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/read", scope)
        q = call.query()
        page = parse_page(q.get("$top"), q.get("$skip"), q.get("$filter"))
        async with db.read() as conn:
            svc = await _get_svc(conn, sub, rg, name)
            items, total, more = await EntityEngine(conn, svc).list(target, page)
        url = f"{call.base_url()}/subscriptions/{'/'.join(call.segments)}"
        out: dict[str, Any] = {"value": items, "count": total}
        link = next_link(url, q, page, len(items), more)
        if link:
            out["nextLink"] = link
        return json_response(out)

    if method in ("GET", "HEAD"):
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/read", scope)
        async with db.read() as conn:
            try:
                if not target.ancestors and not target.kind.link_target:
                    # Fast path: the service and a top-level entity in one statement.
                    svc_or_none, row = await S.get_service_and_entity(
                        conn, sub, rg, name, target.kind.kind, target.parent, target.name
                    )
                    if svc_or_none is None:
                        raise _service_missing(name, rg)
                    engine = EntityEngine(conn, svc_or_none)
                    # not under this exact name: maybe under another case (ARM names ignore case)
                    res = engine.result_of(target, row) if row is not None else await engine.get(target)
                else:
                    svc = await _get_svc(conn, sub, rg, name)
                    res = await EntityEngine(conn, svc).get(target)
            except ArmError as exc:
                if method == "HEAD" and exc.status == 404:
                    return empty(404)
                raise
        headers = {"ETag": quote_etag(res.etag or "")}
        if method == "HEAD":
            return empty(target.kind.head_status, headers)
        return json_response(res.body, headers=headers)
    if method in ("PUT", "PATCH"):
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/write", scope)
        body = await call.body(required=not target.kind.link_target)
        async with db.write() as conn:
            svc = await _get_svc(conn, sub, rg, name, lock=True)
            engine = EntityEngine(conn, svc)
            res = await (
                engine.put(target, body, if_match)
                if method == "PUT"
                else engine.patch(target, body, if_match)
            )
        return json_response(
            res.body, 201 if res.created else 200, headers={"ETag": quote_etag(res.etag or "")}
        )
    if method == "DELETE":
        await call.authorize(f"Microsoft.ApiManagement/service/{noun}/delete", scope)
        async with db.write() as conn:
            svc = await _get_svc(conn, sub, rg, name, lock=True)
            deleted = await EntityEngine(conn, svc).delete(target, if_match, call.query())
        return empty(target.kind.delete_status if deleted else 204)
    raise _method_not_allowed(call)


async def _get_svc(conn: Any, sub: str, rg: str, name: str, lock: bool = False) -> S.Service:
    svc = await S.get_service(conn, sub, rg, name, lock=lock)
    if svc is None:
        raise _service_missing(name, rg)
    return svc
