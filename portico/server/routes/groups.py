"""Resource groups (Microsoft.Resources): list, create or update, read, delete."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from portico.arm.call import Call, group_scope, method_not_allowed
from portico.arm.errors import ArmError, invalid_field
from portico.arm.http import empty, json_response
from portico.resources.service import check_location
from portico.store import deployments as D
from portico.store import services as S

_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")


def _render_group(g: S.ResourceGroup) -> dict[str, Any]:
    return {
        "id": group_scope(g.subscription_id, g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "tags": g.tags,
        "properties": {"provisioningState": "Succeeded"},
    }


async def list_groups(call: Call) -> Response:
    sub = call.subscription_id
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", f"/subscriptions/{sub}")
    async with call.rt.db.read() as conn:
        groups = await S.list_groups(conn, sub)
    return json_response({"value": [_render_group(g) for g in groups]})


async def resource_group(call: Call) -> Response:
    sub, rg = call.subscription_id, call.group_name
    if not _RG_NAME.match(rg) or rg.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroupName",
            f"Resource group name '{rg[:100]}' is invalid: 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'.",
        )
    scope = group_scope(sub, rg)
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
                await S.soft_delete_service(conn, svc)  # as ARM: restorable for 48 hours
            await D.remove_group(conn, sub, rg)
            deleted = await S.delete_group(conn, sub, rg)
        return empty(200 if deleted else 204)
    raise method_not_allowed(call.method)
