"""`GET .../service/{name}/backupStatus`: the service's recovery point (Portico extension)."""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call
from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.dr.status import service_status


async def backup_status(call: Call) -> Response:
    if call.method != "GET":
        raise ArmError(405, "MethodNotAllowed", "Use GET to read the backup status.")
    await call.authorize_service("Microsoft.ApiManagement/service/backupStatus/read")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        body = await service_status(conn, svc)
    return json_response(body)
