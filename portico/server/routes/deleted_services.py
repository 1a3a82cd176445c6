"""Soft-deleted services (`Microsoft.ApiManagement/deletedservices`): list, read, purge.

Deleting a service keeps it here for 48 hours (`scheduledPurgeDate`); a PUT of the service with
`properties.restore: true` brings it back (`routes/services.py`), a DELETE here removes it for good.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError, invalid_field
from portico.arm.http import json_response
from portico.resources.providers import NAMESPACE, deleted_service_id, location_key, render_deleted
from portico.store import services as S


def _missing(name: str, location: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The soft-deleted service '{name}' was not found in location '{location}' (it may have been purged).",
    )


async def list_deleted(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    sub = call.subscription_id
    await call.authorize(f"{NAMESPACE}/deletedservices/read", f"/subscriptions/{sub}")
    async with call.rt.db.read() as conn:
        items = await S.list_deleted(conn, sub)
    return json_response({"value": [render_deleted(d) for d in items]})


async def _find(conn: AsyncConnection, sub: str, location: str, name: str) -> S.DeletedService:
    found = await S.get_deleted(conn, name)
    if (
        found is None
        or found.subscription_id != sub
        or location_key(found.location) != location_key(location)
    ):
        raise _missing(name, location)
    return found


async def deleted_service(call: Call) -> Response:
    sub, location, name = call.subscription_id, call.params["location"], call.params["serviceName"]
    scope = deleted_service_id(sub, location, name)
    if call.method == "GET":
        await call.authorize(f"{NAMESPACE}/deletedservices/read", scope)
        async with call.rt.db.read() as conn:
            found = await _find(conn, sub, location, name)
        return json_response(render_deleted(found))
    if call.method == "DELETE":  # purge: the service and its configuration are gone for good
        await call.authorize(f"{NAMESPACE}/deletedservices/delete", scope)
        async with call.rt.db.write() as conn:
            found = await _find(conn, sub, location, name)
            await S.purge_deleted(conn, name)
        return json_response(render_deleted(found))
    raise method_not_allowed(call.method)


def restore_requested(body: Any) -> bool:
    """`properties.restore` of a service PUT: true asks to bring back a soft-deleted service."""
    props = body.get("properties") if isinstance(body, dict) else None
    restore = props.get("restore", False) if isinstance(props, dict) else False
    if not isinstance(restore, bool):
        raise invalid_field("properties.restore", "must be a boolean")
    return restore


async def undelete_if_asked(
    conn: AsyncConnection, body: Any, sub: str, rg: str, name: str
) -> S.Service | None:
    """For a PUT of a service that does not exist: restore the soft-deleted one if the body says
    `properties.restore: true` (the rest of the body is then ignored, as ARM does), refuse a new
    service under a soft-deleted name (409), or return None to create a new one."""
    restore = restore_requested(body)
    await S.purge_expired(conn)
    deleted = await S.get_deleted(conn, name)
    if deleted is None:
        if restore:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"There is no soft-deleted service '{name}' to restore (properties.restore is true).",
            )
        return None
    if not restore:
        raise ArmError(
            409,
            "ServiceAlreadyExistsInSoftDeletedState",
            f"Api service {name} was soft-deleted. In order to create the new service with the same name, "
            "you have to either undelete the service or purge it.",
        )
    if deleted.subscription_id != sub or deleted.resource_group.casefold() != rg.casefold():
        raise ArmError(
            409,
            "ServiceRestoreLocationMismatch",
            f"The soft-deleted service '{name}' was in subscription '{deleted.subscription_id}', resource "
            f"group '{deleted.resource_group}'; restore it there (properties.restore: true).",
        )
    service_id = await S.undelete_service(conn, deleted)
    svc = await S.get_service_by_id(conn, service_id)
    assert svc is not None
    return svc
